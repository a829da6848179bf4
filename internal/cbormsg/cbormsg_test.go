package cbormsg

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"pgregory.net/rapid"
)

// Package cbor is the reference: the tests check that this package agrees
// with it byte for byte and error for error.

// elem is a struct encoded as an array, as wire.Parked.
type elem struct {
	_ struct{} `cbor:",toarray"`
	A uint64
	B uint64
	C string
}

// all has a field of every kind Unmarshal supports.
type all struct {
	U8  uint8             `cbor:"1,keyasint"`
	U32 uint32            `cbor:"2,keyasint"`
	U64 uint64            `cbor:"3,keyasint"`
	I64 int64             `cbor:"4,keyasint"`
	B   bool              `cbor:"5,keyasint"`
	S   string            `cbor:"6,keyasint"`
	Bs  []byte            `cbor:"7,keyasint"`
	M   map[string]string `cbor:"8,keyasint"`
	P   *uint64           `cbor:"9,keyasint"`
	E   []elem            `cbor:"10,keyasint"`
	N   int64             `cbor:"-3,keyasint"`
}

const allName = "cbormsg.all"

func (a *all) fields() []Field {
	e := &Structs{Type: "[]cbormsg.elem", ElemType: "cbormsg.elem", NumField: 3,
		Make: func(n int) {
			a.E = nil
			if n >= 0 {
				a.E = make([]elem, n)
			}
		},
		Field: func(i, j int) any {
			switch j {
			case 0:
				return &a.E[i].A
			case 1:
				return &a.E[i].B
			}
			return &a.E[i].C
		},
	}
	return []Field{{Key: 1, Dest: &a.U8}, {Key: 2, Dest: &a.U32}, {Key: 3, Dest: &a.U64},
		{Key: 4, Dest: &a.I64}, {Key: 5, Dest: &a.B}, {Key: 6, Dest: &a.S}, {Key: 7, Dest: &a.Bs},
		{Key: 8, Dest: &a.M}, {Key: 9, Dest: &a.P}, {Key: 10, Dest: e}, {Key: -3, Dest: &a.N}}
}

// named has a field whose Go type is a named integer type.
type seq uint64

type named struct {
	S seq `cbor:"1,keyasint"`
}

var (
	strict = Limits{MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 16}
	data   = Limits{MaxNestedLevels: 64, MaxArrayElements: math.MaxInt32, MaxMapPairs: math.MaxInt32, Lenient: true}
)

func decMode(l Limits) cbor.DecMode {
	opts := cbor.DecOptions{
		DupMapKey:           cbor.DupMapKeyEnforcedAPF,
		UTF8:                cbor.UTF8RejectInvalid,
		ByteStringToString:  cbor.ByteStringToStringForbidden,
		FieldNameByteString: cbor.FieldNameByteStringForbidden,
		IndefLength:         cbor.IndefLengthForbidden,
		TagsMd:              cbor.TagsForbidden,
		MaxNestedLevels:     l.MaxNestedLevels,
		MaxArrayElements:    l.MaxArrayElements,
		MaxMapPairs:         l.MaxMapPairs,
	}
	if l.Lenient {
		opts.IndefLength, opts.TagsMd = cbor.IndefLengthAllowed, cbor.TagsAllowed
	}
	dm, err := opts.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}

var (
	strictDec = decMode(strict)
	dataDec   = decMode(data)
	encMode   = func() cbor.EncMode {
		em, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return em
	}()
)

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// checkWellformed compares Wellformed with package cbor's.
func checkWellformed(t *testing.T, in []byte) {
	t.Helper()
	for _, c := range []struct {
		l  Limits
		dm cbor.DecMode
	}{{strict, strictDec}, {data, dataDec}} {
		got, want := Wellformed(in, c.l), c.dm.Wellformed(in)
		if errText(got) != errText(want) {
			t.Fatalf("Wellformed(%x, %+v) = %v, package cbor says %v", in, c.l, got, want)
		}
		var le *LimitError
		var ne *cbor.MaxNestedLevelError
		var ae *cbor.MaxArrayElementsError
		var pe *cbor.MaxMapPairsError
		if errors.As(got, &le) != (errors.As(want, &ne) || errors.As(want, &ae) || errors.As(want, &pe)) {
			t.Fatalf("Wellformed(%x): %T is not package cbor's %T", in, got, want)
		}
	}
}

// checkUnmarshal compares Unmarshal with package cbor's.
func checkUnmarshal(t *testing.T, in []byte) {
	t.Helper()
	var got, want all
	gerr := Unmarshal(in, strict, allName, got.fields())
	werr := strictDec.Unmarshal(in, &want)
	if errText(gerr) != errText(werr) {
		t.Fatalf("Unmarshal(%x) = %v, package cbor says %v", in, gerr, werr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("Unmarshal(%x):\ngot  %#v\nwant %#v", in, got, want)
	}
	var gn, wn named
	gerr = Unmarshal(in, strict, "cbormsg.named", []Field{{Key: 1, Dest: (*uint64)(&gn.S), Type: "cbormsg.seq"}})
	werr = strictDec.Unmarshal(in, &wn)
	if errText(gerr) != errText(werr) || werr == nil && gn != wn {
		t.Fatalf("Unmarshal(%x) into named = %v, %v; package cbor says %v, %v", in, gn, gerr, wn, werr)
	}
}

// cb builds CBOR by hand.
type cb []byte

func (b cb) head(major byte, n uint64) cb { return AppendHead(b, major, n) }
func (b cb) uint(n uint64) cb             { return AppendUint(b, n) }
func (b cb) text(s string) cb             { return AppendText(b, s) }
func (b cb) raw(p ...byte) cb             { return append(b, p...) }

func m(pairs uint64) cb { return cb(nil).head(MajorMap, pairs) }

// seeds are inputs worth checking whatever the fuzzer finds: every branch
// of package cbor's struct decoding that the protocol's messages can meet.
func seeds(t testing.TB) [][]byte {
	p := uint64(7)
	full, err := encMode.Marshal(&all{U8: 200, U32: 1 << 31, U64: 1 << 63, I64: -1 << 63, B: true, S: "héllo",
		Bs: []byte{1, 2}, M: map[string]string{"a": "b", "bb": "c", "c": ""}, P: &p,
		E: []elem{{A: 1, B: 2, C: "x"}, {}}, N: -5})
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{
		full,
		nil,
		{0xf6}, {0xf7}, {0xa0}, {0x80}, {0x01}, {0x20}, {0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0}, {0x41, 0}, {0x61, 'a'}, {0x61, 0xff},
		{0xf4}, {0xf9, 0x3c, 0}, {0xe0}, {0xf8, 0x20}, {0xf8, 0x1f}, {0xc1, 0}, {0xbf, 0xff}, {0x9f, 0xff}, {0xff}, {0x1c},
		m(1).uint(1).uint(256),                            // overflow
		m(1).uint(2).raw(0x1b, 0, 0, 0, 1, 0, 0, 0, 0),    // overflow uint32
		m(1).uint(4).raw(0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0), // overflow int64
		m(1).uint(4).raw(0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		m(1).uint(3).raw(0x20),                                              // negative into uint
		m(1).uint(3).raw(0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0),                   // big negative
		m(1).uint(3).raw(0xe5),                                              // simple value into uint
		m(1).uint(1).raw(0xf8, 0xff),                                        // simple 255 into uint8
		m(1).uint(5).raw(0xe5),                                              // simple value into bool
		m(1).uint(5).uint(1),                                                // int into bool
		m(1).uint(3).raw(0xf5),                                              // bool into uint
		m(1).uint(3).raw(0xf9, 0x3c, 0),                                     // float into uint
		m(2).uint(3).raw(0xf6).uint(6).raw(0xf7),                            // null and undefined
		m(3).uint(7).raw(0xf6).uint(8).raw(0xf6).uint(10).raw(0xf6),         // null slices and maps
		m(1).uint(9).raw(0xf6),                                              // null pointer
		m(1).uint(9).text("x"),                                              // text into pointer
		m(1).uint(6).raw(0x41, 'x'),                                         // bytes into string
		m(1).uint(6).raw(0x62, 0xc3, 0x28),                                  // invalid UTF-8
		m(1).uint(7).text("x"),                                              // text into bytes
		m(1).uint(7).raw(0x62, 0xc3, 0x28),                                  // invalid text into bytes
		m(1).uint(7).raw(0x83, 1, 0xf6, 0x18, 0xff),                         // array into bytes
		m(1).uint(7).raw(0x82, 0x19, 1, 0, 0x61, 'a'),                       // array into bytes, bad elements
		m(1).uint(7).raw(0x80),                                              // empty array into bytes
		m(1).uint(7).raw(0x40),                                              // empty bytes
		m(1).uint(6).raw(0x80),                                              // array into string
		m(1).uint(6).raw(0xa0),                                              // map into string
		m(1).uint(8).raw(0xa2).text("a").text("1").text("a").text("2"),      // dup in map
		m(1).uint(8).raw(0xa2).raw(0xf6).text("1").text("").text("2"),       // null key dup
		m(1).uint(8).raw(0xa2).uint(1).text("1").text("a").uint(2),          // bad key, bad value
		m(1).uint(8).raw(0xa1).raw(0x41, 'a').text("1"),                     // byte string key
		m(1).uint(8).raw(0xa1).text("a").raw(0x62, 0xc3, 0x28),              // invalid UTF-8 value
		m(1).uint(8).raw(0x80),                                              // array into map
		m(1).uint(10).raw(0x82, 0x83, 1, 2, 0x61, 'a', 0xf6),                // elements
		m(1).uint(10).raw(0x82, 0x82, 1, 2, 0xa0),                           // wrong length, map
		m(1).uint(10).raw(0x83, 0x01, 0x41, 0, 0x83, 0x61, 'a', 1, 1),       // int, bytes, bad field
		m(1).uint(10).raw(0x81, 0x83, 0x20, 0xf5, 0x62, 0xc3, 0x28),         // bad fields
		m(1).uint(10).raw(0xa0),                                             // map into slice
		m(2).uint(1).uint(1).uint(1).uint(2),                                // duplicate key
		m(3).uint(1).text("x").uint(2).uint(1).uint(2).uint(1),              // error, then duplicate
		m(2).uint(11).uint(1).uint(11).uint(2),                              // duplicate unknown key
		m(2).text("a").uint(1).text("a").uint(2),                            // duplicate text key
		m(2).raw(0x22).uint(1).raw(0x22).uint(2),                            // negative keys
		m(1).raw(0x22).uint(1),                                              // the negative field
		m(2).raw(0xf5).uint(1).raw(0xf5).uint(2),                            // bool keys
		m(2).raw(0xf6).uint(1).raw(0xf7).uint(2),                            // null and undefined keys
		m(2).raw(0xf9, 0x3c, 0).uint(1).raw(0xfa, 0x3f, 0x80, 0, 0).uint(2), // equal floats
		m(2).raw(0xf9, 0x7e, 0).uint(1).raw(0xf9, 0x7e, 0).uint(2),          // NaN keys
		m(2).raw(0xf9, 0x80, 0).uint(1).raw(0xf9, 0, 0).uint(2),             // -0 and 0
		m(2).raw(0xe3).uint(1).raw(0xe3).uint(2),                            // simple keys
		m(2).raw(0x41, 0).uint(1).raw(0x41, 0).uint(2),                      // byte string keys
		m(1).raw(0x80).uint(1),                                              // array key
		m(1).raw(0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0).uint(1),                   // key over int64
		m(1).raw(0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0).uint(1),                   // negative key over int64
		m(1).raw(0x62, 0xc3, 0x28).uint(1),                                  // invalid UTF-8 key
		m(1).uint(1).uint(1).raw(0),                                         // extraneous
		m(17),                                                               // too many pairs
		m(1).uint(7).head(MajorArray, 17),                                   // too many elements
		m(1).uint(10).raw(0x81, 0x83, 0x81, 0x81, 0, 0, 0),                  // too deep
		m(1).uint(1).raw(0xc1, 1),                                           // tag
		m(1).uint(6).raw(0x7f, 0x61, 'a', 0xff),                             // indefinite
		m(1).uint(6).raw(0x7a, 0x80, 0, 0, 0),                               // huge length
		m(1).uint(7).raw(0x9a, 0x80, 0, 0, 0),                               // huge array
	}
}

func TestUnmarshalSeeds(t *testing.T) {
	for _, s := range seeds(t) {
		checkWellformed(t, s)
		checkUnmarshal(t, s)
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkWellformed(t, in)
		checkUnmarshal(t, in)
	})
}

func TestWellformed(t *testing.T) {
	cases := [][]byte{
		{0x5f, 0x41, 0, 0xff}, {0x5f, 0x61, 0, 0xff}, {0x5f, 0x5f, 0xff, 0xff}, {0x5f, 0x41},
		{0xbf, 0x01, 0xff}, {0xbf, 0x01, 0x02, 0xff}, {0x9f, 0x9f, 0xff, 0xff},
		{0xd8, 0x20, 0x7f, 0x61, 'x', 0xff}, {0xc1, 0xc1, 0xc1}, {0xc1}, {0xdf, 0}, {0xdc, 0},
		{0x18}, {0x19, 0}, {0x1a, 0, 0, 0}, {0x1b, 0, 0, 0, 0, 0, 0, 0}, {0xf8}, {0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0},
		{0x3f}, {0xdf}, {0x1f}, {0x7b, 0x80, 0, 0, 0, 0, 0, 0, 0}, {0x9b, 0x80, 0, 0, 0, 0, 0, 0, 0}, {0x9b, 0, 0, 0, 0, 0x80, 0, 0, 0},
	}
	nested := func(n int, b byte) []byte { return append(bytes.Repeat([]byte{b}, n), 0) }
	cases = append(cases, nested(64, 0x81), nested(65, 0x81), nested(64, 0xc1), nested(65, 0xc1),
		append(nested(64, 0xc1)[:64], 0x80), append(bytes.Repeat([]byte{0x81, 0xc1}, 32), 0))
	for _, c := range cases {
		checkWellformed(t, c)
	}
	if err := Wellformed(nil, data); err != io.EOF {
		t.Errorf("Wellformed(nil) = %v, want io.EOF", err)
	}
}

func FuzzWellformed(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Add([]byte{0xbf, 0x61, 'a', 0xc1, 0x9f, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) { checkWellformed(t, in) })
}

// TestAppend: the Append functions write what package cbor's core
// deterministic encoding writes.
func TestAppend(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		check := func(got []byte, v any) {
			want, err := encMode.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%#v: got %x, want %x", v, got, want)
			}
		}
		u := rapid.OneOf(rapid.Uint64(), rapid.Uint64Range(0, 300), rapid.Uint64Range(0, 70000)).Draw(t, "u")
		check(AppendUint(nil, u), u)
		i := rapid.OneOf(rapid.Int64(), rapid.Int64Range(-300, 300)).Draw(t, "i")
		check(AppendInt(nil, i), i)
		s := rapid.StringN(0, 300, 300).Draw(t, "s")
		check(AppendText(nil, s), s)
		b := rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "b")
		check(AppendBytes(nil, b), b)
		check(AppendBytes(nil, nil), []byte(nil))
		bo := rapid.Bool().Draw(t, "bool")
		check(AppendBool(nil, bo), bo)
	})
}
