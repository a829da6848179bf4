package jsoncbor

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Sentinel errors. Every error returned by this package is an *Error whose
// Unwrap returns one of these, so callers branch with errors.Is.
var (
	// ErrSyntax: the input is not JSON text (RFC 8259), or has data after
	// the value.
	ErrSyntax = errors.New("jsoncbor: syntax error")
	// ErrMalformed: the input is not one well-formed CBOR item (RFC 8949),
	// or has data after the item.
	ErrMalformed = errors.New("jsoncbor: malformed CBOR")
	// ErrUnsupported: well-formed CBOR that JSON cannot hold: a tag, a
	// simple value other than false/true/null, NaN, ±Inf, or a map key that
	// is not a text string.
	ErrUnsupported = errors.New("jsoncbor: not representable as JSON")
	// ErrRange: a JSON number beyond the range of float64 (such as 1e400).
	ErrRange = errors.New("jsoncbor: number out of range")
	// ErrInvalidUTF8: a string is not valid UTF-8, or a JSON \u escape
	// holds a lone UTF-16 surrogate.
	ErrInvalidUTF8 = errors.New("jsoncbor: invalid UTF-8")
	// ErrDuplicateKey: a key occurs twice in one object or map.
	ErrDuplicateKey = errors.New("jsoncbor: duplicate key")
	// ErrDepth: arrays and objects nest deeper than MaxDepth.
	ErrDepth = errors.New("jsoncbor: nesting too deep")
	// ErrTooLarge: the input is longer than MaxLen bytes (FromJSON,
	// FromCBOR and Valid only). Ingest answers 413 for it.
	ErrTooLarge = errors.New("jsoncbor: input too large")
)

// Error describes what is wrong with an input and where.
type Error struct {
	Offset int    // 0-based byte offset into the input
	Err    error  // one of the sentinels above
	Msg    string // what is wrong, without the offset
}

func (e *Error) Error() string {
	return "jsoncbor: offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

func errorf(off int, kind error, format string, args ...any) error {
	return &Error{Offset: off, Err: kind, Msg: fmt.Sprintf(format, args...)}
}

// quoteChar renders one input byte for an error message.
func quoteChar(c byte) string {
	switch {
	case c == '\'':
		return `'\''`
	case c == '"':
		return `'"'`
	case c >= 0x20 && c < 0x7f:
		return "'" + string(rune(c)) + "'"
	}
	return fmt.Sprintf(`'\x%02x'`, c)
}

// quoteKey renders a key for an error message, shortened when long.
func quoteKey(k []byte) string {
	const max = 40
	if len(k) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(k[cut]) {
			cut--
		}
		return strconv.Quote(string(k[:cut])) + "..."
	}
	return strconv.Quote(string(k))
}

// invalidUTF8At returns the offset of the first byte of b that does not
// start a valid UTF-8 sequence, or len(b).
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}
