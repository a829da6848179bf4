package jsoncbor

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// unhex decodes hex with optional spaces.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

type vector struct {
	Name string `json:"name"`
	JSON string `json:"json"` // FromJSON input
	In   string `json:"in"`   // FromCBOR input, hex
	CBOR string `json:"cbor"` // canonical CBOR, hex
	Out  string `json:"out"`  // ToJSON output
}

func loadVectors(t testing.TB, name string) []vector {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(vs) == 0 {
		t.Fatalf("%s: no vectors", name)
	}
	return vs
}

// jsonEqual compares two JSON texts semantically: numbers by value (exactly
// for integers, as float64 otherwise), objects regardless of key order.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	va, vb := decodeNumbers(t, a), decodeNumbers(t, b)
	return valueEqual(va, vb)
}

func decodeNumbers(t testing.TB, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("encoding/json cannot decode %q: %v", b, err)
	}
	return v
}

func valueEqual(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !valueEqual(va, vb) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !valueEqual(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		return ok && numberEqual(string(a), string(b))
	default:
		return a == b
	}
}

func numberEqual(a, b string) bool {
	if ia, err := strconv.ParseInt(a, 10, 64); err == nil {
		if ib, err := strconv.ParseInt(b, 10, 64); err == nil {
			return ia == ib
		}
	}
	if ua, err := strconv.ParseUint(a, 10, 64); err == nil {
		if ub, err := strconv.ParseUint(b, 10, 64); err == nil {
			return ua == ub
		}
	}
	fa, errA := strconv.ParseFloat(a, 64)
	fb, errB := strconv.ParseFloat(b, 64)
	return errA == nil && errB == nil && fa == fb
}

func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t, "vectors.json") {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.CBOR)
			got, err := FromJSON(nil, []byte(v.JSON))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("FromJSON(%s) = %x, %v; want %x", v.JSON, got, err, want)
			}
			out, err := ToJSON(nil, want)
			if err != nil || string(out) != v.Out {
				t.Fatalf("ToJSON(%x) = %s, %v; want %s", want, out, err, v.Out)
			}
			if !jsonEqual(t, []byte(v.JSON), out) {
				t.Errorf("ToJSON output %s is not semantically %s", out, v.JSON)
			}
			again, err := FromCBOR(nil, want)
			if err != nil || !bytes.Equal(again, want) {
				t.Errorf("FromCBOR(canonical %x) = %x, %v; want it unchanged", want, again, err)
			}
			back, err := FromJSON(nil, out)
			if err != nil || !bytes.Equal(back, want) {
				t.Errorf("FromJSON(ToJSON output %s) = %x, %v; want %x", out, back, err, want)
			}
			if err := Valid(want); err != nil {
				t.Errorf("Valid(%x) = %v", want, err)
			}
		})
	}
}

func TestCBORVectors(t *testing.T) {
	for _, v := range loadVectors(t, "cbor_vectors.json") {
		t.Run(v.Name, func(t *testing.T) {
			in, want := unhex(t, v.In), unhex(t, v.CBOR)
			got, err := FromCBOR(nil, in)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("FromCBOR(%x) = %x, %v; want %x", in, got, err, want)
			}
			out, err := ToJSON(nil, in)
			if err != nil || string(out) != v.Out {
				t.Fatalf("ToJSON(%x) = %s, %v; want %s", in, out, err, v.Out)
			}
			out2, err := ToJSON(nil, want)
			if err != nil || !jsonEqual(t, out, out2) {
				t.Errorf("ToJSON(canonical %x) = %s, %v; want the same value as %s", want, out2, err, out)
			}
			back, err := FromJSON(nil, out)
			if err != nil || !bytes.Equal(back, want) {
				t.Errorf("FromJSON(%s) = %x, %v; want %x (both ingest paths must agree)", out, back, err, want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"compacts whitespace", " {\n\t\"a\" : [ 1 , 2 ] ,\r\n \"b\" : { } } \n", `{"a":[1,2],"b":{}}`},
		{"normalizes numbers", `[1.50, 1E+2, 2e-3, -0, -0.0, 0.000001, 0.0000001, 123e18, 1e21]`,
			`[1.5,100.0,0.002,0,-0.0,0.000001,1e-7,123000000000000000000.0,1e+21]`},
		{"huge integer literal becomes float", `123456789012345678901234567890`, `1.2345678901234568e+29`},
		{"long mantissa rounds", `3.141592653589793238462643383279`, `3.141592653589793`},
		{"normalizes escapes", `"\u0041\/\u00E9\ud834\udd1e\u2028"`, "\"A/é\U0001D11E\u2028\""},
		{"keeps non-ASCII", `{"ключ":"значение","🔑":"✓"}`, `{"ключ":"значение","🔑":"✓"}`},
		{"escapes control characters", `"\u0001\u0008\u000c\u001b"`, `"\u0001\b\f\u001b"`},
		{"nested empties", `[[],{},[[]],{"":{}}]`, `[[],{},[[]],{"":{}}]`},
		{"empty key", `{"":1}`, `{"":1}`},
		{"keys equal only before unescaping", `{"a\"":1,"a":2}`, `{"a\"":1,"a":2}`},
		{"top-level scalar", ` "x" `, `"x"`},
		{"del is not escaped", "\"\x7f\"", "\"\x7f\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromJSON(nil, []byte(tt.in))
			if err != nil {
				t.Fatalf("FromJSON(%s): %v", tt.in, err)
			}
			got, err := ToJSON(nil, c)
			if err != nil {
				t.Fatalf("ToJSON(%x): %v", c, err)
			}
			if string(got) != tt.want {
				t.Errorf("round trip of %s = %s; want %s", tt.in, got, tt.want)
			}
			if !jsonEqual(t, []byte(tt.in), got) {
				t.Errorf("round trip of %s = %s; not semantically equal", tt.in, got)
			}
		})
	}
}

func TestFromJSONErrors(t *testing.T) {
	tests := []struct {
		name, in string
		kind     error
		msg      string
	}{
		{"empty", ``, ErrSyntax, "offset 0: unexpected end of JSON input"},
		{"only space", "  \n", ErrSyntax, "offset 3: unexpected end of JSON input"},
		{"bad start", `x`, ErrSyntax, "offset 0: invalid character 'x' looking for beginning of value"},
		{"trailing data", `{} x`, ErrSyntax, "offset 3: invalid character 'x' after top-level value"},
		{"two values", `1 2`, ErrSyntax, "offset 2: invalid character '2' after top-level value"},
		{"leading zero", `01`, ErrSyntax, "offset 1: invalid character '1' after top-level value"},
		{"bad in object", `{"a":1 x}`, ErrSyntax, "offset 7: invalid character 'x' after object key:value pair"},
		{"missing colon", `{"a" 1}`, ErrSyntax, "offset 5: invalid character '1' after object key"},
		{"unquoted key", `{a:1}`, ErrSyntax, "offset 1: invalid character 'a' looking for beginning of object key string"},
		{"trailing comma in object", `{"a":1,}`, ErrSyntax, "offset 7: invalid character '}' looking for beginning of object key string"},
		{"trailing comma in array", `[1,]`, ErrSyntax, "offset 3: invalid character ']' looking for beginning of value"},
		{"bad in array", `[1 2]`, ErrSyntax, "offset 3: invalid character '2' after array element"},
		{"unclosed array", `[1,2`, ErrSyntax, "offset 4: unexpected end of JSON input"},
		{"unclosed object", `{"a":1`, ErrSyntax, "offset 6: unexpected end of JSON input"},
		{"unclosed string", `"abc`, ErrSyntax, "offset 4: unexpected end of JSON input"},
		{"bad literal", `tru`, ErrSyntax, "offset 3: unexpected end of JSON input"},
		{"wrong literal", `nul1`, ErrSyntax, "offset 3: invalid character '1' in literal null"},
		{"capital literal", `True`, ErrSyntax, "offset 0: invalid character 'T' looking for beginning of value"},
		{"NaN", `NaN`, ErrSyntax, "offset 0: invalid character 'N' looking for beginning of value"},
		{"plus sign", `+1`, ErrSyntax, "offset 0: invalid character '+' looking for beginning of value"},
		{"minus alone", `-`, ErrSyntax, "offset 1: unexpected end of JSON input"},
		{"minus letter", `-x`, ErrSyntax, "offset 1: invalid character 'x' in numeric literal"},
		{"dot without digits", `1.`, ErrSyntax, "offset 2: unexpected end of JSON input"},
		{"dot letter", `1.e3`, ErrSyntax, "offset 2: invalid character 'e' after decimal point in numeric literal"},
		{"leading dot", `.5`, ErrSyntax, "offset 0: invalid character '.' looking for beginning of value"},
		{"empty exponent", `1e+`, ErrSyntax, "offset 3: unexpected end of JSON input"},
		{"bad exponent", `1ex`, ErrSyntax, "offset 2: invalid character 'x' in exponent of numeric literal"},
		{"control in string", "\"a\tb\"", ErrSyntax, `offset 2: invalid character '\x09' in string literal`},
		{"newline in string", "\"a\nb\"", ErrSyntax, `offset 2: invalid character '\x0a' in string literal`},
		{"bad escape", `"\x"`, ErrSyntax, "offset 2: invalid character 'x' in string escape code"},
		{"short unicode escape", `"\u12"`, ErrSyntax, `offset 5: invalid character '"' in \u hexadecimal character escape`},
		{"bad hex", `"\u12g4"`, ErrSyntax, `offset 5: invalid character 'g' in \u hexadecimal character escape`},
		{"bad hex in low surrogate", `"\ud83d\ude0x"`, ErrSyntax, `offset 12: invalid character 'x' in \u hexadecimal character escape`},
		{"byte order mark", "\ufeff{}", ErrSyntax, `offset 0: invalid character '\xef' looking for beginning of value`},
		{"single quotes", `'a'`, ErrSyntax, `offset 0: invalid character '\'' looking for beginning of value`},
		{"comment", `[1 /* c */]`, ErrSyntax, "offset 3: invalid character '/' after array element"},
		{"lone high surrogate", `"a\ud800"`, ErrInvalidUTF8, `offset 2: lone surrogate \ud800 in string escape`},
		{"high surrogate then char", `"\ud800x"`, ErrInvalidUTF8, `offset 1: lone surrogate \ud800 in string escape`},
		{"high surrogate then high", `"\ud800\ud800"`, ErrInvalidUTF8, `offset 1: lone surrogate \ud800 in string escape`},
		{"lone low surrogate", `"\udc00"`, ErrInvalidUTF8, `offset 1: lone surrogate \udc00 in string escape`},
		{"invalid UTF-8", "\"ab\xff\"", ErrInvalidUTF8, "offset 3: invalid UTF-8 in string"},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\"", ErrInvalidUTF8, "offset 1: invalid UTF-8 in string"},
		{"invalid UTF-8 after escape", "\"\\n\xc3\"", ErrInvalidUTF8, "offset 3: invalid UTF-8 in string"},
		{"duplicate key", `{"a":1,"b":2,"a":3}`, ErrDuplicateKey, `offset 13: duplicate key "a" in object`},
		{"duplicate key after unescaping", `{"a":1,"\u0061":2}`, ErrDuplicateKey, `offset 7: duplicate key "a" in object`},
		{"duplicate key nested", `[{"x":{"k":1,"k":1}}]`, ErrDuplicateKey, `offset 13: duplicate key "k" in object`},
		{"duplicate long key", `{"` + strings.Repeat("k", 50) + `":1,"` + strings.Repeat("k", 50) + `":2}`, ErrDuplicateKey,
			`offset 56: duplicate key "` + strings.Repeat("k", 40) + `"... in object`},
		{"number too large", `[1e400]`, ErrRange, "offset 1: number 1e400 is out of the range of float64"},
		{"negative number too large", `-1.8e308`, ErrRange, "offset 0: number -1.8e308 is out of the range of float64"},
		{"integer literal too large", strings.Repeat("9", 400), ErrRange,
			"offset 0: number " + strings.Repeat("9", 40) + " is out of the range of float64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("prefix")
			got, err := FromJSON(dst, []byte(tt.in))
			if err == nil {
				t.Fatalf("FromJSON(%q) = %x, nil; want error %q", tt.in, got, tt.msg)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("FromJSON(%q) error %v is not %v", tt.in, err, tt.kind)
			}
			if want := "jsoncbor: " + tt.msg; err.Error() != want {
				t.Errorf("FromJSON(%q) error\n got %s\nwant %s", tt.in, err, want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not *Error", err)
			}
			if string(got) != "prefix" {
				t.Errorf("on error FromJSON returned %q; want dst unchanged", got)
			}
			if json.Valid([]byte(tt.in)) && (tt.kind == ErrSyntax) {
				t.Errorf("encoding/json accepts %q that we call a syntax error", tt.in)
			}
		})
	}
}

func TestCBORErrors(t *testing.T) {
	tests := []struct {
		name, in string // hex
		kind     error
		msg      string
	}{
		{"empty", ``, ErrMalformed, "offset 0: unexpected end of CBOR input"},
		{"truncated head", `19 01`, ErrMalformed, "offset 2: unexpected end of CBOR input"},
		{"truncated string", `63 6161`, ErrMalformed, "offset 3: unexpected end of CBOR input"},
		{"truncated array", `82 82 01 01`, ErrMalformed, "offset 4: unexpected end of CBOR input"},
		{"array count beyond input", `82 01`, ErrMalformed, "offset 0: array of 2 elements is longer than the rest of the input"},
		{"array longer than input", `9a 7fffffff 00`, ErrMalformed, "offset 0: array of 2147483647 elements is longer than the rest of the input"},
		{"map longer than input", `a2 616100`, ErrMalformed, "offset 0: map of 2 pairs is longer than the rest of the input"},
		{"huge string length", `7b ffffffffffffffff 00`, ErrMalformed, "offset 10: unexpected end of CBOR input"},
		{"trailing data", `01 02`, ErrMalformed, "offset 1: extra data after the CBOR item"},
		{"reserved additional info", `1c`, ErrMalformed, "offset 0: reserved additional information 28 in initial byte 0x1c"},
		{"reserved in nested", `81 fe`, ErrMalformed, "offset 1: reserved additional information 30 in initial byte 0xfe"},
		{"lone break", `ff`, ErrMalformed, "offset 0: break outside an indefinite-length item"},
		{"break in definite array", `82 01 ff`, ErrMalformed, "offset 2: break outside an indefinite-length item"},
		{"indefinite integer", `1f`, ErrMalformed, "offset 0: indefinite length is not allowed for an unsigned integer"},
		{"indefinite tag", `df`, ErrMalformed, "offset 0: indefinite length is not allowed for a tag"},
		{"unterminated indefinite array", `9f 01`, ErrMalformed, "offset 2: unexpected end of CBOR input"},
		{"unterminated indefinite map", `bf 6161 01`, ErrMalformed, "offset 4: unexpected end of CBOR input"},
		{"indefinite map with odd items", `bf 6161 ff`, ErrMalformed, "offset 3: break outside an indefinite-length item"},
		{"unterminated indefinite string", `7f 6161`, ErrMalformed, "offset 3: unexpected end of CBOR input"},
		{"wrong chunk type", `7f 4161 ff`, ErrMalformed, "offset 1: indefinite-length text string holds a byte string, not a text string chunk"},
		{"nested indefinite chunk", `5f 5f ff ff`, ErrMalformed, "offset 1: indefinite-length byte string holds a nested indefinite-length chunk"},
		{"integer in indefinite byte string", `5f 01 ff`, ErrMalformed, "offset 1: indefinite-length byte string holds an unsigned integer, not a byte string chunk"},
		{"truncated chunk", `5f 42 01`, ErrMalformed, "offset 3: unexpected end of CBOR input"},
		{"two-byte simple below 32", `f8 14`, ErrMalformed, "offset 0: simple value 20 encoded in two bytes"},
		{"tag", `c1 01`, ErrUnsupported, "offset 0: tag 1 is not allowed (JSON has no tags)"},
		{"bignum tag", `c2 41 01`, ErrUnsupported, "offset 0: tag 2 is not allowed (JSON has no tags)"},
		{"self-describe tag", `d9d9f7 01`, ErrUnsupported, "offset 0: tag 55799 is not allowed (JSON has no tags)"},
		{"nested tag", `a1 6161 c0 60`, ErrUnsupported, "offset 3: tag 0 is not allowed (JSON has no tags)"},
		{"undefined", `f7`, ErrUnsupported, "offset 0: undefined is not allowed (JSON has no undefined)"},
		{"simple 16", `f0`, ErrUnsupported, "offset 0: simple value 16 is not allowed (only false, true, null)"},
		{"simple 255", `f8 ff`, ErrUnsupported, "offset 0: simple value 255 is not allowed (only false, true, null)"},
		{"NaN half", `f9 7e00`, ErrUnsupported, "offset 0: float NaN is not allowed (JSON has no NaN or infinity)"},
		{"Inf half", `f9 7c00`, ErrUnsupported, "offset 0: float +Inf is not allowed (JSON has no NaN or infinity)"},
		{"-Inf single", `fa ff800000`, ErrUnsupported, "offset 0: float -Inf is not allowed (JSON has no NaN or infinity)"},
		{"NaN double", `fb 7ff8000000000001`, ErrUnsupported, "offset 0: float NaN is not allowed (JSON has no NaN or infinity)"},
		{"integer key", `a1 01 02`, ErrUnsupported, "offset 1: map key is an unsigned integer, not a text string"},
		{"byte string key", `a1 4161 02`, ErrUnsupported, "offset 1: map key is a byte string, not a text string"},
		{"array key", `a1 80 02`, ErrUnsupported, "offset 1: map key is an array, not a text string"},
		{"null key", `a1 f6 02`, ErrUnsupported, "offset 1: map key is null, not a text string"},
		{"float key", `a1 f93c00 02`, ErrUnsupported, "offset 1: map key is a float, not a text string"},
		{"invalid UTF-8", `62 c328`, ErrInvalidUTF8, "offset 1: invalid UTF-8 in text string"},
		{"invalid UTF-8 in chunk", `7f 6161 62 61ff ff`, ErrInvalidUTF8, "offset 5: invalid UTF-8 in text string chunk"},
		{"code point split across chunks", `7f 61c3 61a9 ff`, ErrInvalidUTF8, "offset 2: invalid UTF-8 in text string chunk"},
		{"invalid UTF-8 key", `a1 61ff 01`, ErrInvalidUTF8, "offset 2: invalid UTF-8 in text string"},
		{"duplicate key", `a3 6161 01 6162 02 6161 03`, ErrDuplicateKey, `offset 7: duplicate key "a" in map`},
		{"duplicate key, one indefinite", `a2 6161 01 7f 6161 ff 02`, ErrDuplicateKey, `offset 4: duplicate key "a" in map`},
		{"duplicate key in indefinite map", `bf 6178 01 6178 02 ff`, ErrDuplicateKey, `offset 4: duplicate key "x" in map`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := unhex(t, tt.in)
			check := func(fn string, got []byte, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s(%x) = %x, nil; want error %q", fn, in, got, tt.msg)
				}
				if !errors.Is(err, tt.kind) {
					t.Errorf("%s(%x) error %v is not %v", fn, in, err, tt.kind)
				}
				if want := "jsoncbor: " + tt.msg; err.Error() != want {
					t.Errorf("%s(%x) error\n got %s\nwant %s", fn, in, err, want)
				}
				if string(got) != "prefix" {
					t.Errorf("on error %s returned %q; want dst unchanged", fn, got)
				}
			}
			got, err := FromCBOR([]byte("prefix"), in)
			check("FromCBOR", got, err)
			got, err = ToJSON([]byte("prefix"), in)
			check("ToJSON", got, err)
			if err := Valid(in); err == nil || !errors.Is(err, tt.kind) {
				t.Errorf("Valid(%x) = %v; want %v", in, err, tt.kind)
			}
		})
	}
}

func TestDepth(t *testing.T) {
	for _, open := range []string{"[", `{"k":`} {
		closer := map[string]string{"[": "]", `{"k":`: "}"}[open]
		for _, depth := range []int{MaxDepth - 1, MaxDepth, MaxDepth + 1, 10000} {
			in := strings.Repeat(open, depth) + "1" + strings.Repeat(closer, depth)
			c, err := FromJSON(nil, []byte(in))
			if depth <= MaxDepth {
				if err != nil {
					t.Fatalf("depth %d %s: %v", depth, open, err)
				}
				out, err := ToJSON(nil, c)
				if err != nil || string(out) != in {
					t.Fatalf("depth %d %s: ToJSON = %.40s..., %v", depth, open, out, err)
				}
				if _, err := FromCBOR(nil, c); err != nil {
					t.Fatalf("depth %d %s: FromCBOR: %v", depth, open, err)
				}
				continue
			}
			wantOff := MaxDepth * len(open)
			want := fmt.Sprintf("jsoncbor: offset %d: arrays and objects nest deeper than %d", wantOff, MaxDepth)
			if !errors.Is(err, ErrDepth) || err.Error() != want {
				t.Errorf("depth %d %s: err = %v; want %s", depth, open, err, want)
			}
		}
	}
	// CBOR: 65 nested arrays, definite and indefinite.
	for _, lead := range []byte{0x81, 0x9f} {
		in := bytes.Repeat([]byte{lead}, MaxDepth+1)
		in = append(in, 0x01)
		if lead == 0x9f {
			in = append(in, bytes.Repeat([]byte{0xff}, MaxDepth+1)...)
		}
		want := fmt.Sprintf("jsoncbor: offset %d: arrays and maps nest deeper than %d", MaxDepth, MaxDepth)
		for fn, f := range map[string]func([]byte, []byte) ([]byte, error){"FromCBOR": FromCBOR, "ToJSON": ToJSON} {
			if _, err := f(nil, in); !errors.Is(err, ErrDepth) || err.Error() != want {
				t.Errorf("%s(%x...) err = %v; want %s", fn, lead, err, want)
			}
			if _, err := f(nil, in[1:len(in)-boolInt(lead == 0x9f)]); err != nil {
				t.Errorf("%s(depth %d, %x) = %v", fn, MaxDepth, lead, err)
			}
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestTooLarge(t *testing.T) {
	big := make([]byte, MaxLen+1)
	for i := range big {
		big[i] = ' '
	}
	big[0] = '1'
	if _, err := FromJSON(nil, big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("FromJSON(%d bytes) = %v; want ErrTooLarge", len(big), err)
	}
	if _, err := FromJSON(nil, big[:MaxLen]); err != nil {
		t.Errorf("FromJSON(%d bytes) = %v; want nil", MaxLen, err)
	}
	// A byte string of MaxLen-5 bytes: at the limit, fine; one more, too large.
	c := appendHead(nil, majBytes, MaxLen-5)
	c = append(c, make([]byte, MaxLen-5)...)
	if len(c) != MaxLen {
		t.Fatalf("test input is %d bytes", len(c))
	}
	out, err := FromCBOR(nil, c)
	if err != nil {
		t.Fatalf("FromCBOR(%d bytes): %v", len(c), err)
	}
	if want := 5 + (MaxLen-5+2)/3*4; len(out) != want {
		t.Errorf("FromCBOR(%d zero bytes) is %d bytes; want %d", len(c), len(out), want)
	}
	c = append(c, 0)
	if _, err := FromCBOR(nil, c); !errors.Is(err, ErrTooLarge) {
		t.Errorf("FromCBOR(%d bytes) = %v; want ErrTooLarge", len(c), err)
	}
	if err := Valid(c); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Valid(%d bytes) = %v; want ErrTooLarge", len(c), err)
	}
	// ToJSON has no limit; it only sees the extra byte.
	if _, err := ToJSON(nil, c); !errors.Is(err, ErrMalformed) {
		t.Errorf("ToJSON(%d bytes) = %v; want ErrMalformed for the extra byte", len(c), err)
	}
}

// TestHeadBoundaries checks counts and lengths where the head grows or,
// after unescaping, shrinks.
func TestHeadBoundaries(t *testing.T) {
	for _, n := range []int{0, 1, 23, 24, 255, 256, 65535, 65536} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			// Array of n elements.
			in := "[" + strings.TrimSuffix(strings.Repeat("7,", n), ",") + "]"
			c, err := FromJSON(nil, []byte(in))
			if err != nil {
				t.Fatal(err)
			}
			want := appendHead(nil, majArray, uint64(n))
			want = append(want, bytes.Repeat([]byte{7}, n)...)
			if !bytes.Equal(c, want) {
				t.Errorf("array of %d: head % x; want % x", n, c[:headLen(uint64(n))], want[:headLen(uint64(n))])
			}
			checkRoundTrip(t, in, c)

			// Object of n keys.
			var sb strings.Builder
			sb.WriteByte('{')
			for i := range n {
				if i > 0 {
					sb.WriteByte(',')
				}
				fmt.Fprintf(&sb, `"k%d":%d`, i, i%24)
			}
			sb.WriteByte('}')
			c, err = FromJSON(nil, []byte(sb.String()))
			if err != nil {
				t.Fatal(err)
			}
			if h := appendHead(nil, majMap, uint64(n)); !bytes.HasPrefix(c, h) {
				t.Errorf("object of %d: head % x; want % x", n, c[:len(h)], h)
			}
			checkRoundTrip(t, sb.String(), c)

			// String of n decoded bytes written with 2n bytes of escapes:
			// the head reserved for 2n bytes shrinks.
			in = `"` + strings.Repeat(`\t`, n) + `"`
			c, err = FromJSON(nil, []byte(in))
			if err != nil {
				t.Fatal(err)
			}
			want = appendHead(nil, majText, uint64(n))
			want = append(want, bytes.Repeat([]byte{'\t'}, n)...)
			if !bytes.Equal(c, want) {
				t.Errorf("escaped string of %d: % x...; want % x...", n, c[:min(len(c), 6)], want[:min(len(want), 6)])
			}
			checkRoundTrip(t, in, c)

			// Indefinite-length array of n elements and text of n bytes.
			ind := []byte{0x9f}
			ind = append(ind, bytes.Repeat([]byte{7}, n)...)
			ind = append(ind, 0xff)
			got, err := FromCBOR(nil, ind)
			want = appendHead(nil, majArray, uint64(n))
			want = append(want, bytes.Repeat([]byte{7}, n)...)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("indefinite array of %d: %v", n, err)
			}
			ind = []byte{0x7f, 0x78, byte(min(n, 255))}
			ind = append(ind, bytes.Repeat([]byte{'x'}, min(n, 255))...)
			if n > 255 {
				ind = appendHead(ind, majText, uint64(n-255))
				ind = append(ind, bytes.Repeat([]byte{'x'}, n-255)...)
			}
			ind = append(ind, 0xff)
			got, err = FromCBOR(nil, ind)
			want = appendHead(nil, majText, uint64(n))
			want = append(want, bytes.Repeat([]byte{'x'}, n)...)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("indefinite text of %d: %v", n, err)
			}
		})
	}
}

func checkRoundTrip(t *testing.T, in string, c []byte) {
	t.Helper()
	out, err := ToJSON(nil, c)
	if err != nil {
		t.Fatalf("ToJSON: %v", err)
	}
	if !jsonEqual(t, []byte(in), out) {
		t.Errorf("round trip of %.60s... differs: %.60s...", in, out)
	}
	again, err := FromCBOR(nil, c)
	if err != nil || !bytes.Equal(again, c) {
		t.Errorf("FromCBOR(FromJSON(x)) != FromJSON(x): %v", err)
	}
}

// TestManyKeys exercises the sorted duplicate check of large objects.
func TestManyKeys(t *testing.T) {
	for _, n := range []int{smallKeys, smallKeys + 1, 100, 5000} {
		var sb strings.Builder
		sb.WriteByte('{')
		for i := range n {
			fmt.Fprintf(&sb, `"key%04d":%d,`, i, i)
		}
		okJSON := strings.TrimSuffix(sb.String(), ",") + "}"
		if _, err := FromJSON(nil, []byte(okJSON)); err != nil {
			t.Fatalf("%d distinct keys: %v", n, err)
		}
		// Repeat key n/2 and, later, key 1: the first repeat is reported.
		off := sb.Len()
		fmt.Fprintf(&sb, `"key%04d":0,"key0001":0}`, n/2)
		_, err := FromJSON(nil, []byte(sb.String()))
		want := fmt.Sprintf(`jsoncbor: offset %d: duplicate key "key%04d" in object`, off, n/2)
		if !errors.Is(err, ErrDuplicateKey) || err.Error() != want {
			t.Errorf("%d keys: err = %v; want %s", n, err, want)
		}
		// The same in CBOR, through ToJSON (which compares escaped keys).
		c, err := FromJSON(nil, []byte(okJSON))
		if err != nil {
			t.Fatal(err)
		}
		c = append(appendHead(nil, majMap, uint64(n+1)), c[headLen(uint64(n)):]...)
		koff := len(c)
		c = append(c, 0x67, 'k', 'e', 'y', '0', '0', '0', '3', 0x01)
		for fn, f := range map[string]func([]byte, []byte) ([]byte, error){"FromCBOR": FromCBOR, "ToJSON": ToJSON} {
			_, err = f(nil, c)
			want = fmt.Sprintf(`jsoncbor: offset %d: duplicate key "key0003" in map`, koff-headLen(uint64(n))+headLen(uint64(n+1)))
			if !errors.Is(err, ErrDuplicateKey) || err.Error() != want {
				t.Errorf("%s %d keys: err = %v; want %s", fn, n, err, want)
			}
		}
	}
}

func TestFloat16Exhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := f16To64(uint16(h))
		if math.IsNaN(f) || math.IsInf(f, 0) {
			if h&0x7c00 != 0x7c00 {
				t.Fatalf("%04x decodes to %v", h, f)
			}
			continue
		}
		got := appendFloat(nil, f)
		want := []byte{cborF16, byte(h >> 8), byte(h)}
		if !bytes.Equal(got, want) {
			t.Fatalf("float16 %04x = %v encodes as %x; want %x", h, f, got, want)
		}
		// Through text and back.
		c, err := FromJSON(nil, appendJSONFloat(nil, f))
		if err != nil || !bytes.Equal(c, want) {
			t.Fatalf("float16 %04x via JSON %s: %x, %v", h, appendJSONFloat(nil, f), c, err)
		}
	}
	// Values next to float16 ones are not float16.
	for _, f := range []float64{65504 + 32, 1 + 1.0/2048, math.Ldexp(1, -25), math.Ldexp(3, -25), 0.1, math.MaxFloat32, math.SmallestNonzeroFloat32} {
		if got := appendFloat(nil, f); got[0] == cborF16 {
			t.Errorf("%v encodes as float16 %x", f, got)
		}
	}
}

func TestFloatWidths(t *testing.T) {
	tests := []struct {
		f    float64
		want byte
	}{
		{0, cborF16}, {math.Copysign(0, -1), cborF16}, {1, cborF16}, {65504, cborF16}, {65536, cborF32},
		{math.Ldexp(1, -24), cborF16}, {math.Ldexp(1, -25), cborF32}, {math.MaxFloat32, cborF32},
		{math.SmallestNonzeroFloat32, cborF32}, {0.5 + math.Ldexp(1, -24), cborF32}, {0.1, cborF64},
		{math.MaxFloat64, cborF64}, {math.SmallestNonzeroFloat64, cborF64}, {1e300, cborF64},
	}
	for _, tt := range tests {
		got := appendFloat(nil, tt.f)
		if got[0] != tt.want {
			t.Errorf("appendFloat(%v) = %x; want width %x", tt.f, got, tt.want)
			continue
		}
		// It decodes to the same float64.
		out, err := ToJSON(nil, got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := strconv.ParseFloat(string(out), 64)
		if err != nil || math.Float64bits(back) != math.Float64bits(tt.f) {
			t.Errorf("%v -> %x -> %s -> %v, %v", tt.f, got, out, back, err)
		}
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	dst := make([]byte, 3, 64)
	copy(dst, "abc")
	c, err := FromJSON(dst, []byte(`{"a":[1,2]}`))
	if err != nil || string(c[:3]) != "abc" || !bytes.Equal(c[3:], unhex(t, "a1 6161 82 01 02")) {
		t.Fatalf("FromJSON appended: %x, %v", c, err)
	}
	j, err := ToJSON([]byte("x="), c[3:])
	if err != nil || string(j) != `x={"a":[1,2]}` {
		t.Fatalf("ToJSON appended: %s, %v", j, err)
	}
	c2, err := FromCBOR([]byte{0xee}, c[3:])
	if err != nil || !bytes.Equal(c2, append([]byte{0xee}, c[3:]...)) {
		t.Fatalf("FromCBOR appended: %x, %v", c2, err)
	}
}

func TestNoAllocs(t *testing.T) {
	src := []byte(sensorJSON)
	dst := make([]byte, 0, 1024)
	c, err := FromJSON(dst, src)
	if err != nil {
		t.Fatal(err)
	}
	c = bytes.Clone(c)
	for name, fn := range map[string]func(){
		"FromJSON": func() { _, _ = FromJSON(dst[:0], src) },
		"ToJSON":   func() { _, _ = ToJSON(dst[:0], c) },
		"FromCBOR": func() { _, _ = FromCBOR(dst[:0], c) },
		"Valid":    func() { _ = Valid(c) },
	} {
		if name == "Valid" && raceEnabled {
			continue // the race detector makes sync.Pool drop items
		}
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocations per call; want 0", name, n)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	c, err := FromJSON(nil, []byte(sensorJSON))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ToJSON(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	bad := unhex(t, "a2 6161 01 6161 02")
	done := make(chan error)
	for range 4 {
		go func() {
			var dst []byte
			for range 200 {
				var err error
				if dst, err = FromJSON(dst[:0], []byte(sensorJSON)); err != nil || !bytes.Equal(dst, c) {
					done <- fmt.Errorf("FromJSON: %x, %v", dst, err)
					return
				}
				if err := Valid(c); err != nil {
					done <- err
					return
				}
				if err := Valid(bad); !errors.Is(err, ErrDuplicateKey) {
					done <- fmt.Errorf("Valid(dup) = %v", err)
					return
				}
				if dst, err = ToJSON(dst[:0], c); err != nil || !bytes.Equal(dst, want) {
					done <- fmt.Errorf("ToJSON: %s, %v", dst, err)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
