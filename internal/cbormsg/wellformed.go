package cbormsg

import (
	"errors"
	"io"
	"strconv"
)

// Limits bound what Wellformed and Unmarshal accept, as the DecOptions of
// the same names do in package cbor.
type Limits struct {
	// MaxNestedLevels bounds the nesting of arrays, maps and tags: a flat
	// map is level 1.
	MaxNestedLevels int
	// MaxArrayElements and MaxMapPairs bound every array and map.
	MaxArrayElements int
	MaxMapPairs      int
	// Lenient allows indefinite lengths and tags (IndefLengthAllowed,
	// TagsAllowed); otherwise both are refused. Unmarshal requires false.
	Lenient bool
}

// LimitError is a breach of Limits: too deep, an array or a map too long.
type LimitError struct{ msg string }

func (e *LimitError) Error() string { return e.msg }

// SyntaxError is data that is not well formed.
type SyntaxError struct{ msg string }

func (e *SyntaxError) Error() string { return e.msg }

// ModeError is an indefinite length or a tag where Limits refuse them.
type ModeError struct{ msg string }

func (e *ModeError) Error() string { return e.msg }

// typeNames are package cbor's names of the major types.
var typeNames = [8]string{"positive integer", "negative integer", "byte string",
	"UTF-8 text string", "array", "map", "tag", "primitives"}

// Wellformed reports whether data is exactly one well-formed data item
// within l. The error is package cbor's, word for word: io.EOF for no data,
// io.ErrUnexpectedEOF for a truncated item, a *LimitError, a *ModeError or a
// *SyntaxError otherwise. It does not check that text is UTF-8.
func Wellformed(data []byte, l Limits) error {
	if len(data) == 0 {
		return io.EOF
	}
	c := checker{data: data, l: l}
	if err := c.item(0); err != nil {
		return err
	}
	if c.off != len(data) {
		return &SyntaxError{"cbor: " + strconv.Itoa(len(data)-c.off) + " bytes of extraneous data starting at index " + strconv.Itoa(c.off)}
	}
	return nil
}

type checker struct {
	data []byte
	off  int
	l    Limits
}

// head reads the head of an item: its major type, additional information
// and argument.
func (c *checker) head() (major, ai byte, val uint64, err error) {
	if c.off >= len(c.data) {
		return 0, 0, 0, io.ErrUnexpectedEOF
	}
	ib := c.data[c.off]
	c.off++
	major, ai = ib>>5, ib&31
	switch {
	case ai < 24:
		return major, ai, uint64(ai), nil
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(c.data)-c.off < n {
			return 0, 0, 0, io.ErrUnexpectedEOF
		}
		for _, b := range c.data[c.off : c.off+n] {
			val = val<<8 | uint64(b)
		}
		c.off += n
		if major == 7 && ai == 24 && val < 32 {
			return 0, 0, 0, &SyntaxError{"cbor: invalid simple value " + strconv.Itoa(int(val)) + " for type primitives"}
		}
		return major, ai, val, nil
	case ai == 31:
		switch major {
		case 0, 1, 6:
			return 0, 0, 0, &SyntaxError{"cbor: invalid additional information 31 for type " + typeNames[major]}
		case 7:
			return 0, 0, 0, &SyntaxError{`cbor: unexpected "break" code`}
		}
		return major, ai, 0, nil
	}
	return 0, 0, 0, &SyntaxError{"cbor: invalid additional information " + strconv.Itoa(int(ai)) + " for type " + typeNames[major]}
}

// item checks one item at nesting level depth (the level of the array or
// map holding it; 0 at the top).
func (c *checker) item(depth int) error {
	major, ai, val, err := c.head()
	if err != nil {
		return err
	}
	switch major {
	case 2, 3:
		if ai == 31 {
			if !c.l.Lenient {
				return &ModeError{"cbor: indefinite-length " + typeNames[major] + " isn't allowed"}
			}
			return c.chunks(major, depth)
		}
		n := int(val)
		if n < 0 {
			return errors.New("cbor: " + typeNames[major] + " length " + strconv.FormatUint(val, 10) + " is too large, causing integer overflow")
		}
		if len(c.data)-c.off < n {
			return io.ErrUnexpectedEOF
		}
		c.off += n
	case 4, 5:
		depth++
		if depth > c.l.MaxNestedLevels {
			return &LimitError{"cbor: exceeded max nested level " + strconv.Itoa(c.l.MaxNestedLevels)}
		}
		if ai == 31 {
			if !c.l.Lenient {
				return &ModeError{"cbor: indefinite-length " + typeNames[major] + " isn't allowed"}
			}
			return c.indefinite(major, depth)
		}
		n := int(val)
		if n < 0 {
			return errors.New("cbor: " + typeNames[major] + " length " + strconv.FormatUint(val, 10) + " is too large, it would cause integer overflow")
		}
		if major == 4 && n > c.l.MaxArrayElements {
			return c.tooManyElements()
		}
		if major == 5 && n > c.l.MaxMapPairs {
			return c.tooManyPairs()
		}
		count := 1 // items per element: a map has a key and a value
		if major == 5 {
			count = 2
		}
		for range count {
			for range n {
				if err := c.item(depth); err != nil {
					return err
				}
			}
		}
	case 6:
		if !c.l.Lenient {
			return &ModeError{"cbor: CBOR tag isn't allowed"}
		}
		// A tag's content nests one level deeper only when it is another
		// tag, as in package cbor.
		for {
			if c.off == len(c.data) {
				return io.ErrUnexpectedEOF
			}
			if c.data[c.off]>>5 != 6 {
				break
			}
			if _, _, _, err := c.head(); err != nil {
				return err
			}
			depth++
			if depth > c.l.MaxNestedLevels {
				return &LimitError{"cbor: exceeded max nested level " + strconv.Itoa(c.l.MaxNestedLevels)}
			}
		}
		return c.item(depth)
	}
	return nil
}

func (c *checker) tooManyElements() error {
	return &LimitError{"cbor: exceeded max number of elements " + strconv.Itoa(c.l.MaxArrayElements) + " for CBOR array"}
}

func (c *checker) tooManyPairs() error {
	return &LimitError{"cbor: exceeded max number of key-value pairs " + strconv.Itoa(c.l.MaxMapPairs) + " for CBOR map"}
}

// chunks checks the chunks of an indefinite-length string, after its head.
func (c *checker) chunks(major byte, depth int) error {
	for {
		if c.off == len(c.data) {
			return io.ErrUnexpectedEOF
		}
		ib := c.data[c.off]
		if ib == 0xff {
			c.off++
			return nil
		}
		if ib>>5 != major {
			return &SyntaxError{"cbor: wrong element type " + typeNames[ib>>5] + " for indefinite-length " + typeNames[major]}
		}
		if ib&31 == 31 {
			return &SyntaxError{"cbor: indefinite-length " + typeNames[major] + " chunk is not definite-length"}
		}
		if err := c.item(depth); err != nil {
			return err
		}
	}
}

// indefinite checks the items of an indefinite-length array or map, after
// its head.
func (c *checker) indefinite(major byte, depth int) error {
	i := 0
	for {
		if c.off == len(c.data) {
			return io.ErrUnexpectedEOF
		}
		if c.data[c.off] == 0xff {
			c.off++
			break
		}
		if err := c.item(depth); err != nil {
			return err
		}
		i++
		if major == 4 && i > c.l.MaxArrayElements {
			return c.tooManyElements()
		}
		if major == 5 && i%2 == 0 && i/2 > c.l.MaxMapPairs {
			return c.tooManyPairs()
		}
	}
	if major == 5 && i%2 == 1 {
		return &SyntaxError{`cbor: unexpected "break" code`}
	}
	return nil
}
