package jsoncbor

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// sensorJSON is a typical record's data, about 200 bytes.
const sensorJSON = `{"t":21.5,"h":40.12,"unit":"C","site":"plant-3","line":7,"ok":true,"tags":["a","b"],` +
	`"sensor":"th-0042","fw":"1.4.2","rssi":-67,"batt":3.71,"seq":123456,"alarm":null,"note":"door open, fan \"B\""}`

// sensor is sensorJSON as a Go struct, whose fields fxamacker/cbor encodes
// as a map in field order.
type sensor struct {
	T      float64  `cbor:"t"`
	H      float64  `cbor:"h"`
	Unit   string   `cbor:"unit"`
	Site   string   `cbor:"site"`
	Line   int      `cbor:"line"`
	OK     bool     `cbor:"ok"`
	Tags   []string `cbor:"tags"`
	Sensor string   `cbor:"sensor"`
	FW     string   `cbor:"fw"`
	RSSI   int      `cbor:"rssi"`
	Batt   float64  `cbor:"batt"`
	Seq    uint64   `cbor:"seq"`
	Alarm  *int     `cbor:"alarm"`
	Note   string   `cbor:"note"`
}

func shortestEncMode(t testing.TB) cbor.EncMode {
	em, err := cbor.EncOptions{ShortestFloat: cbor.ShortestFloat16}.EncMode()
	if err != nil {
		t.Fatal(err)
	}
	return em
}

// TestMatchesFxamacker compares FromJSON with fxamacker/cbor encoding the
// same values with shortest floats: they must agree byte for byte.
func TestMatchesFxamacker(t *testing.T) {
	em := shortestEncMode(t)
	tests := []struct {
		name string
		json string
		v    any
	}{
		{"small uint", "10", uint64(10)},
		{"uint 1000", "1000", 1000},
		{"uint64 max", "18446744073709551615", uint64(math.MaxUint64)},
		{"negative", "-500", -500},
		{"int64 min", "-9223372036854775808", int64(math.MinInt64)},
		{"float16", "21.5", 21.5},
		{"float32", "100000.5", 100000.5},
		{"float64", "40.12", 40.12},
		{"negative zero", "-0.0", math.Copysign(0, -1)},
		{"float16 subnormal", "6.103515625e-5", 6.103515625e-5},
		{"string", `"plant-3"`, "plant-3"},
		{"long string", `"` + strings.Repeat("é", 200) + `"`, strings.Repeat("é", 200)},
		{"escaped string", `"a\nb\u00e9"`, "a\nbé"},
		{"array", `[1,"a",[true,null]]`, []any{1, "a", []any{true, nil}}},
		{"long array", "[" + strings.Repeat("1,", 299) + "1]", bytesRepeat(300)},
		{"single-key object", `{"k":[false]}`, map[string]any{"k": []any{false}}},
		{"sensor", sensorJSON, sensor{T: 21.5, H: 40.12, Unit: "C", Site: "plant-3", Line: 7, OK: true,
			Tags: []string{"a", "b"}, Sensor: "th-0042", FW: "1.4.2", RSSI: -67, Batt: 3.71, Seq: 123456,
			Note: `door open, fan "B"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := em.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FromJSON(nil, []byte(tt.json))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("FromJSON(%.40s) = %x, %v\nfxamacker/cbor:  %x", tt.json, got, err, want)
			}
		})
	}
}

func bytesRepeat(n int) []any {
	v := make([]any, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// TestDecodesWithFxamacker checks that fxamacker/cbor, configured as the
// pitfalls note says, reads our canonical output as the same value that
// encoding/json reads from the input.
func TestDecodesWithFxamacker(t *testing.T) {
	dm, err := cbor.DecOptions{
		DupMapKey:      cbor.DupMapKeyEnforcedAPF,
		DefaultMapType: reflect.TypeOf(map[string]any{}),
	}.DecMode()
	if err != nil {
		t.Fatal(err)
	}
	c, err := FromJSON(nil, []byte(sensorJSON))
	if err != nil {
		t.Fatal(err)
	}
	var got any
	if err := dm.Unmarshal(c, &got); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, j, []byte(sensorJSON)) {
		t.Errorf("fxamacker/cbor read %s", j)
	}
}

func BenchmarkFromJSON(b *testing.B) {
	src := []byte(sensorJSON)
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		var err error
		if dst, err = FromJSON(dst[:0], src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNaiveFromJSON is the path FromJSON replaces: decode into any,
// encode with fxamacker/cbor.
func BenchmarkNaiveFromJSON(b *testing.B) {
	src := []byte(sensorJSON)
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		var v any
		if err := json.Unmarshal(src, &v); err != nil {
			b.Fatal(err)
		}
		if _, err := cbor.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromCBOR(b *testing.B) {
	src, err := FromJSON(nil, []byte(sensorJSON))
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if dst, err = FromCBOR(dst[:0], src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkToJSON(b *testing.B) {
	src, err := FromJSON(nil, []byte(sensorJSON))
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if dst, err = ToJSON(dst[:0], src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNaiveToJSON is the path ToJSON replaces: decode with
// fxamacker/cbor into any, encode with encoding/json.
func BenchmarkNaiveToJSON(b *testing.B) {
	src, err := FromJSON(nil, []byte(sensorJSON))
	if err != nil {
		b.Fatal(err)
	}
	dm, err := cbor.DecOptions{DefaultMapType: reflect.TypeOf(map[string]any{})}.DecMode()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		var v any
		if err := dm.Unmarshal(src, &v); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}
