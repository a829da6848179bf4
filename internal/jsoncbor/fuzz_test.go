package jsoncbor

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

func addJSONSeeds(f *testing.F) {
	f.Add([]byte(sensorJSON))
	for _, v := range loadVectors(f, "vectors.json") {
		f.Add([]byte(v.JSON))
	}
	for _, s := range []string{`{"a":1,"a":2}`, `"\ud800"`, `[1e400]`, `[[[[[[]]]]]]`, `{"a":{"b":[1,{"c":null}]}}`,
		`-`, `"\u00e9\ud83d\ude00"`, "\"\xff\"", `123456789012345678901234567890`, `1E-400`} {
		f.Add([]byte(s))
	}
}

func addCBORSeeds(f *testing.F) {
	for _, v := range loadVectors(f, "vectors.json") {
		f.Add(unhex(f, v.CBOR))
	}
	for _, v := range loadVectors(f, "cbor_vectors.json") {
		f.Add(unhex(f, v.In))
	}
	for _, s := range []string{"c101", "f7", "f97e00", "a10102", "a2616101616102", "5f4101ff", "7f6161ff", "bf6161019f02ffff", "ff", "1c"} {
		f.Add(unhex(f, s))
	}
}

// maxNesting is the deepest nesting of arrays and objects in valid JSON.
func maxNesting(t *testing.T, data []byte) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	depth, most := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return most
		}
		if err != nil {
			t.Fatalf("encoding/json tokens of valid JSON: %v", err)
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
			most = max(most, depth)
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
}

// hasDupKey reports whether some object in valid JSON repeats a key.
func hasDupKey(t *testing.T, data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // the next string token in this object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatalf("encoding/json tokens of valid JSON: %v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k := tok.(string)
			if top.keys[k] {
				return true
			}
			top.keys[k] = true
			top.key = false
			continue
		}
		if top != nil && top.obj {
			top.key = true // this token is a value; a key follows
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, keys: map[string]bool{}, key: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

var surrogateEscape = regexp.MustCompile(`\\u[dD][89a-fA-F]`)

func FuzzFromJSON(f *testing.F) {
	addJSONSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := FromJSON(nil, data)
		valid := json.Valid(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Offset < 0 || e.Offset > len(data) {
				t.Fatalf("error %v: want *Error with an offset in [0, %d]", err, len(data))
			}
			if !valid {
				return
			}
			// encoding/json accepts it: the refusal must be one we chose.
			switch {
			case errors.Is(err, ErrInvalidUTF8):
				if utf8.Valid(data) && !surrogateEscape.Match(data) {
					t.Fatalf("%v, but the input is valid UTF-8 without surrogate escapes", err)
				}
			case errors.Is(err, ErrDepth):
				if n := maxNesting(t, data); n <= MaxDepth {
					t.Fatalf("%v, but the input nests only %d deep", err, n)
				}
			case errors.Is(err, ErrDuplicateKey):
				if !hasDupKey(t, data) {
					t.Fatalf("%v, but encoding/json finds no duplicate key", err)
				}
			case errors.Is(err, ErrRange):
				i := e.Offset
				for i < len(data) && bytes.IndexByte([]byte("+-.0123456789eE"), data[i]) >= 0 {
					i++
				}
				if _, perr := strconv.ParseFloat(string(data[e.Offset:i]), 64); !errors.Is(perr, strconv.ErrRange) {
					t.Fatalf("%v, but %q parses: %v", err, data[e.Offset:i], perr)
				}
			case errors.Is(err, ErrTooLarge):
				if len(data) <= MaxLen {
					t.Fatalf("%v for %d bytes", err, len(data))
				}
			default:
				t.Fatalf("encoding/json accepts %q; we say %v", data, err)
			}
			return
		}
		if !valid {
			t.Fatalf("FromJSON accepts %q, encoding/json.Valid does not", data)
		}
		if len(c) > 3*len(data)+9 {
			t.Fatalf("%d bytes of JSON became %d bytes of CBOR", len(data), len(c))
		}
		if again, err := FromCBOR(nil, c); err != nil || !bytes.Equal(again, c) {
			t.Fatalf("FromCBOR(FromJSON(x)) = %x, %v; want %x", again, err, c)
		}
		out, err := ToJSON(nil, c)
		if err != nil {
			t.Fatalf("ToJSON(%x): %v", c, err)
		}
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("ToJSON wrote invalid JSON %q", out)
		}
		if !jsonEqual(t, data, out) {
			t.Fatalf("round trip changed the value: %q -> %q", data, out)
		}
		if back, err := FromJSON(nil, out); err != nil || !bytes.Equal(back, c) {
			t.Fatalf("FromJSON(ToJSON(c)) = %x, %v; want %x", back, err, c)
		}
	})
}

func FuzzFromCBOR(f *testing.F) {
	addCBORSeeds(f)
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		DefaultMapType:   reflect.TypeOf(map[string]any{}),
		MaxNestedLevels:  MaxDepth + 1,
		IndefLength:      cbor.IndefLengthAllowed,
		UTF8:             cbor.UTF8RejectInvalid,
		MaxArrayElements: MaxLen,
		MaxMapPairs:      MaxLen,
		BigIntDec:        cbor.BigIntDecodePointer,
	}.DecMode()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := FromCBOR(nil, data)
		j, jerr := ToJSON(nil, data)
		if (err == nil) != (jerr == nil) || err != nil && err.Error() != jerr.Error() {
			t.Fatalf("FromCBOR error %v, ToJSON error %v", err, jerr)
		}
		if verr := Valid(data); (verr == nil) != (err == nil) {
			t.Fatalf("Valid = %v, FromCBOR error %v", verr, err)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Offset < 0 || e.Offset > len(data) {
				t.Fatalf("error %v: want *Error with an offset in [0, %d]", err, len(data))
			}
			return
		}
		// fxamacker/cbor must agree that it is well-formed and read the
		// same value (byte strings become base64 in encoding/json too).
		var v any
		if err := dm.Unmarshal(data, &v); err != nil {
			t.Fatalf("we accept %x; fxamacker/cbor: %v", data, err)
		}
		if fj, err := json.Marshal(v); err != nil || !jsonEqual(t, fj, j) {
			t.Fatalf("fxamacker/cbor + encoding/json give %s, %v; ToJSON gives %s", fj, err, j)
		}
		if again, err := FromCBOR(nil, c); err != nil || !bytes.Equal(again, c) {
			t.Fatalf("FromCBOR is not idempotent: %x -> %x -> %x, %v", data, c, again, err)
		}
		if cj, err := ToJSON(nil, c); err != nil || !jsonEqual(t, cj, j) {
			t.Fatalf("ToJSON(canonical) = %s, %v; ToJSON(input) = %s", cj, err, j)
		}
		if len(j) <= MaxLen {
			if back, err := FromJSON(nil, j); err != nil || !bytes.Equal(back, c) {
				t.Fatalf("ingest paths disagree: FromCBOR = %x, FromJSON(ToJSON) = %x, %v", c, back, err)
			}
		}
	})
}

func FuzzToJSON(f *testing.F) {
	addCBORSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := ToJSON(nil, data)
		if err != nil {
			if _, cerr := FromCBOR(nil, data); cerr == nil && len(data) <= MaxLen {
				t.Fatalf("ToJSON refuses %x (%v), FromCBOR accepts it", data, err)
			}
			return
		}
		if len(j) > 8*len(data)+2 {
			t.Fatalf("%d bytes of CBOR became %d bytes of JSON", len(data), len(j))
		}
		if !json.Valid(j) || !utf8.Valid(j) {
			t.Fatalf("ToJSON(%x) wrote invalid JSON %q", data, j)
		}
		if len(j) <= MaxLen {
			if _, err := FromJSON(nil, j); err != nil {
				t.Fatalf("FromJSON(ToJSON(%x) = %s): %v", data, j, err)
			}
		}
	})
}
