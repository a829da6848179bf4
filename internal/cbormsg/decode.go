package cbormsg

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Field is one field of a struct that Unmarshal decodes: the value of map
// key Key goes to Dest, which is one of *uint8, *uint32, *uint64, *int64,
// *bool, *string, *[]byte, *map[string]string, **uint64 (nil for null) or
// *Structs.
type Field struct {
	Key  int64
	Dest any
	// Type is the field's Go type as errors name it, when it is not Dest's
	// own ("outbox.Seq" for a *uint64 converted from an *outbox.Seq).
	Type string
}

// Structs is the destination of an array of structs each encoded as an
// array (package cbor's toarray), such as []wire.Parked.
type Structs struct {
	Type     string // the slice's Go type as errors name it: "[]wire.Parked"
	ElemType string // the element's: "wire.Parked"
	NumField int
	// Make sets the slice to a new slice of length n, or to nil when n < 0.
	Make func(n int)
	// Field returns the destination of field j of element i (a pointer of
	// a kind Field.Dest allows, but not *Structs).
	Field func(i, j int) any
}

// TypeError is a value that cannot be decoded into its field.
type TypeError struct {
	CBORType string // "positive integer", "UTF-8 text string", ...
	GoType   string
	Field    string // "wire.Ack.5", or "" for the top-level value
	Msg      string // more detail; may be empty
}

func (e *TypeError) Error() string {
	var s string
	if e.Field != "" {
		s = "cbor: cannot unmarshal " + e.CBORType + " into Go struct field " + e.Field + " of type " + e.GoType
	} else {
		s = "cbor: cannot unmarshal " + e.CBORType + " into Go value of type " + e.GoType
	}
	if e.Msg != "" {
		s += " (" + e.Msg + ")"
	}
	return s
}

// DupKeyError is a map key that appears twice.
type DupKeyError struct {
	Key   any
	Index int
}

func (e *DupKeyError) Error() string {
	return fmt.Sprintf("cbor: found duplicate map key %#v at map element index %d", e.Key, e.Index)
}

// errUTF8 is text that is not valid UTF-8.
var errUTF8 = &SemanticError{"cbor: invalid UTF-8 string"}

// SemanticError is well-formed data that means nothing valid.
type SemanticError struct{ msg string }

func (e *SemanticError) Error() string { return e.msg }

// simpleValue is a simple value used as a map key, printed as package cbor
// prints its SimpleValue in DupKeyError.
type simpleValue uint8

// Unmarshal decodes data, which must be one map, into fields, as package
// cbor decodes it into a struct of Go type name (such as "wire.Ack") with
// the options and limits the package documentation lists. Fields of keys
// that data does not hold keep their values. l.Lenient must be false.
func Unmarshal(data []byte, l Limits, name string, fields []Field) error {
	if l.Lenient {
		return errors.New("cbormsg: Unmarshal needs definite lengths and no tags")
	}
	if err := Wellformed(data, l); err != nil {
		return err
	}
	d := decoder{data: data}
	switch major, ai := d.peek(); {
	case major == 5:
		return d.object(name, fields)
	case major == 4:
		d.skip()
		return &TypeError{CBORType: "array", GoType: name, Msg: "cannot decode CBOR array to struct without toarray option"}
	case major == 7 && (ai == 22 || ai == 23):
		d.skip() // null: the struct stays as it is
		return nil
	}
	return d.mismatch(name)
}

// decoder reads data that Wellformed accepted with definite lengths and no
// tags: it never checks bounds.
type decoder struct {
	data []byte
	off  int
}

func (d *decoder) peek() (major, ai byte) {
	ib := d.data[d.off]
	return ib >> 5, ib & 31
}

// head reads a head.
func (d *decoder) head() (major, ai byte, val uint64) {
	ib := d.data[d.off]
	d.off++
	major, ai = ib>>5, ib&31
	if ai < 24 {
		return major, ai, uint64(ai)
	}
	n := 1 << (ai - 24)
	for _, b := range d.data[d.off : d.off+n] {
		val = val<<8 | uint64(b)
	}
	d.off += n
	return major, ai, val
}

// skip steps over one item.
func (d *decoder) skip() {
	major, _, val := d.head()
	switch major {
	case 2, 3:
		d.off += int(val)
	case 4:
		for range int(val) {
			d.skip()
		}
	case 5:
		for range int(val) {
			d.skip()
			d.skip()
		}
	}
}

// str reads a byte or text string, aliasing data.
func (d *decoder) str() []byte {
	_, _, n := d.head()
	b := d.data[d.off : d.off+int(n)]
	d.off += int(n)
	return b
}

// text reads a text string and checks that it is UTF-8.
func (d *decoder) text() ([]byte, error) {
	b := d.str()
	if !utf8.Valid(b) {
		return nil, errUTF8
	}
	return b, nil
}

// mismatch reads an item that is no integer for an integer field, no
// string for a string field, and so on, and returns package cbor's error.
// Text is checked for UTF-8 first, as package cbor does.
func (d *decoder) mismatch(goType string) error {
	major, _ := d.peek()
	if major == 1 {
		if _, _, val := d.head(); val > math.MaxInt64 {
			return &TypeError{CBORType: typeNames[1], GoType: goType, Msg: negString(val) + " overflows Go's int64"}
		}
		return &TypeError{CBORType: typeNames[1], GoType: goType}
	}
	if major == 3 {
		if _, err := d.text(); err != nil {
			return err
		}
		return &TypeError{CBORType: typeNames[3], GoType: goType}
	}
	d.skip()
	return &TypeError{CBORType: typeNames[major], GoType: goType}
}

// negString is -1-val in decimal, for val > MaxInt64.
func negString(val uint64) string {
	if val == math.MaxUint64 {
		return "-18446744073709551616"
	}
	return "-" + strconv.FormatUint(val+1, 10)
}

// object decodes a map into fields: package cbor's parseMapToStruct for a
// struct whose fields are all keyasint.
func (d *decoder) object(name string, fields []Field) error {
	_, _, val := d.head()
	count := int(val)
	var found [16]bool
	if len(fields) > len(found) {
		return errors.New("cbormsg: more than 16 fields")
	}
	var unmatched map[any]struct{} // keys of no field seen so far
	var err error
	keep := func(e error) {
		if err == nil {
			err = e
		}
	}
	for i := range count {
		var key any
		switch major, ai := d.peek(); major {
		case 3:
			k, kerr := d.text()
			if kerr != nil {
				keep(kerr)
				d.skip() // the value
				continue
			}
			key = string(k) // no field has a name: all are keyasint
		case 0, 1:
			_, _, v := d.head()
			if v > math.MaxInt64 {
				msg := strconv.FormatUint(v, 10)
				if major == 1 {
					msg = "-1-" + msg
				}
				keep(&TypeError{CBORType: typeNames[major], GoType: "int64", Msg: msg + " overflows Go's int64"})
				d.skip()
				continue
			}
			k := int64(v)
			if major == 1 {
				k = -1 ^ k
			}
			if f := fieldOf(fields, k); f >= 0 {
				if found[f] {
					d.skip()
					d.skipPairs(count - i - 1)
					return &DupKeyError{Key: k, Index: i}
				}
				found[f] = true
				if ferr := d.value(fields[f].Dest, fields[f].Type); ferr != nil {
					var te *TypeError
					if errors.As(ferr, &te) {
						te.Field = name + "." + strconv.FormatInt(k, 10)
					}
					keep(ferr)
				}
				continue
			}
			key = k
		default:
			// Byte strings, arrays, maps and simple values cannot name a
			// field; package cbor still looks for duplicates among those
			// it can compare.
			keep(&TypeError{CBORType: typeNames[major], GoType: "string",
				Msg: "map key is of type " + typeNames[major] + " and cannot be used to match struct field name"})
			if major != 7 {
				d.skip() // the key: not comparable
				d.skip() // the value
				continue
			}
			key = d.simpleKey(ai)
		}
		if unmatched == nil {
			unmatched = make(map[any]struct{})
		}
		if _, dup := unmatched[key]; dup {
			d.skip()
			d.skipPairs(count - i - 1)
			return &DupKeyError{Key: key, Index: i}
		}
		unmatched[key] = struct{}{}
		d.skip() // the value of an unknown key
	}
	return err
}

func (d *decoder) skipPairs(n int) {
	for range n {
		d.skip()
		d.skip()
	}
}

func fieldOf(fields []Field, key int64) int {
	for i := range fields {
		if fields[i].Key == key {
			return i
		}
	}
	return -1
}

// simpleKey reads a simple value or float as package cbor decodes it into
// an interface value.
func (d *decoder) simpleKey(ai byte) any {
	_, _, val := d.head()
	switch ai {
	case 20, 21:
		return ai == 21
	case 22, 23:
		return nil
	case 25:
		return halfToFloat(uint16(val))
	case 26:
		return float64(math.Float32frombits(uint32(val)))
	case 27:
		return math.Float64frombits(val)
	}
	return simpleValue(val)
}

// halfToFloat converts an IEEE 754 half-precision float.
func halfToFloat(h uint16) float64 {
	exp, frac := int(h>>10&0x1f), float64(h&0x3ff)
	var f float64
	switch exp {
	case 0:
		f = math.Ldexp(frac, -24)
	case 0x1f:
		if frac == 0 {
			f = math.Inf(1)
		} else {
			f = math.NaN()
		}
	default:
		f = math.Ldexp(frac+0x400, exp-25)
	}
	if h&0x8000 != 0 {
		f = -f
	}
	return f
}

// typeOf names the Go type of a destination.
func typeOf(dst any) string {
	switch dst := dst.(type) {
	case *uint8:
		return "uint8"
	case *uint32:
		return "uint32"
	case *uint64, **uint64:
		return "uint64"
	case *int64:
		return "int64"
	case *bool:
		return "bool"
	case *string:
		return "string"
	case *[]byte:
		return "[]uint8"
	case *map[string]string:
		return "map[string]string"
	case *Structs:
		return dst.Type
	}
	panic(fmt.Sprintf("cbormsg: unsupported destination %T", dst))
}

// value decodes one item into dst: package cbor's parseToValue.
func (d *decoder) value(dst any, goType string) error {
	if goType == "" {
		goType = typeOf(dst)
	}
	major, ai := d.peek()
	null := major == 7 && (ai == 22 || ai == 23)
	if p, ok := dst.(**uint64); ok {
		if null {
			d.skip()
			*p = nil
			return nil
		}
		if *p == nil {
			*p = new(uint64)
		}
		dst = *p
	}
	switch {
	case null:
		d.skip()
		switch dst := dst.(type) {
		case *[]byte:
			*dst = nil
		case *map[string]string:
			*dst = nil
		case *Structs:
			dst.Make(-1)
		}
		return nil
	case major == 0 || major == 7 && (ai < 20 || ai == 24):
		// Simple values other than false, true, null and undefined decode
		// like unsigned integers in package cbor.
		cborType := typeNames[major]
		_, _, val := d.head()
		return setUint(dst, goType, cborType, val)
	case major == 1:
		_, _, val := d.head()
		if val > math.MaxInt64 {
			return &TypeError{CBORType: typeNames[1], GoType: goType, Msg: negString(val) + " overflows Go's int64"}
		}
		if p, ok := dst.(*int64); ok {
			*p = -1 ^ int64(val)
			return nil
		}
		return &TypeError{CBORType: typeNames[1], GoType: goType}
	case major == 2:
		if p, ok := dst.(*[]byte); ok {
			*p = append([]byte{}, d.str()...)
			return nil
		}
	case major == 3:
		if p, ok := dst.(*string); ok {
			b, err := d.text()
			if err != nil {
				return err
			}
			*p = string(b)
			return nil
		}
	case major == 4:
		switch dst := dst.(type) {
		case *[]byte:
			_, _, n := d.head()
			s := make([]byte, int(n))
			var err error
			for i := range s {
				if e := d.value(&s[i], ""); e != nil && err == nil {
					err = e
				}
			}
			*dst = s
			return err
		case *Structs:
			return d.structs(dst)
		}
	case major == 5:
		if p, ok := dst.(*map[string]string); ok {
			return d.textMap(p)
		}
	case major == 7 && (ai == 20 || ai == 21):
		if p, ok := dst.(*bool); ok {
			d.skip()
			*p = ai == 21
			return nil
		}
	}
	return d.mismatch(goType)
}

// setUint stores an unsigned integer (or simple value) val.
func setUint(dst any, goType, cborType string, val uint64) error {
	overflow := func() error {
		return &TypeError{CBORType: cborType, GoType: goType, Msg: strconv.FormatUint(val, 10) + " overflows " + goType}
	}
	switch dst := dst.(type) {
	case *uint8:
		if val > math.MaxUint8 {
			return overflow()
		}
		*dst = uint8(val)
	case *uint32:
		if val > math.MaxUint32 {
			return overflow()
		}
		*dst = uint32(val)
	case *uint64:
		*dst = val
	case *int64:
		if val > math.MaxInt64 {
			return overflow()
		}
		*dst = int64(val)
	default:
		return &TypeError{CBORType: cborType, GoType: goType}
	}
	return nil
}

// structs decodes an array of toarray structs: parseArrayToSlice.
func (d *decoder) structs(s *Structs) error {
	_, _, n := d.head()
	s.Make(int(n))
	var err error
	for i := range int(n) {
		if e := d.element(s, i); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// element decodes element i of s: parseToValue of a toarray struct.
func (d *decoder) element(s *Structs, i int) error {
	switch major, ai := d.peek(); {
	case major == 4:
		start := d.off
		if _, _, n := d.head(); int(n) != s.NumField {
			d.off = start
			d.skip()
			return &TypeError{CBORType: "array", GoType: s.ElemType, Msg: "cannot decode CBOR array to struct with different number of elements"}
		}
		var err error
		for j := range s.NumField {
			if e := d.value(s.Field(i, j), ""); e != nil && err == nil {
				err = e
			}
		}
		return err
	case major == 5:
		d.skip()
		return &TypeError{CBORType: "map", GoType: s.ElemType, Msg: "cannot decode CBOR map to struct with toarray option"}
	case major == 7 && (ai == 22 || ai == 23):
		d.skip()
		return nil
	}
	return d.mismatch(s.ElemType)
}

// textMap decodes a map into a map of strings: parseMapToMap.
func (d *decoder) textMap(m *map[string]string) error {
	_, _, val := d.head()
	count := int(val)
	if *m == nil {
		*m = make(map[string]string, count)
	}
	existing := make(map[string]bool, len(*m))
	for k := range *m {
		existing[k] = true
	}
	var err error
	for i := 0; i < count; i++ {
		var key, elem string
		if e := d.value(&key, ""); e != nil {
			if err == nil {
				err = e
			}
			d.skip() // the value
			continue
		}
		if e := d.value(&elem, ""); e != nil {
			if err == nil {
				err = e
			}
			continue
		}
		n := len(*m)
		(*m)[key] = elem
		if len(*m) == n {
			if !existing[key] {
				(*m)[key] = ""
				d.skipPairs(count - i - 1)
				return &DupKeyError{Key: key, Index: i}
			}
			delete(existing, key)
		}
	}
	return err
}
