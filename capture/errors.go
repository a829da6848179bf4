package capture

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// Sentinel errors. Every error Parse returns matches one of them with
// errors.Is; the ingest handler maps them to HTTP statuses.
var (
	// ErrInvalid: a record (or the body around it) breaks a rule of the
	// ingest API. Nothing of the request was stored; fix the input. HTTP 400.
	ErrInvalid = errors.New("capture: invalid input")
	// ErrTooLarge: a record's data is over transport.MaxDataBytes (after
	// transcoding to CBOR), or its JSON or CBOR text over 1 MiB. Nothing of
	// the request was stored; split the data. HTTP 413.
	ErrTooLarge = errors.New("capture: too large")
	// ErrUnsupportedType: the content type is not application/json,
	// application/x-ndjson or application/cbor (or its charset is not
	// UTF-8). HTTP 415.
	ErrUnsupportedType = errors.New("capture: unsupported content type")
)

// RecordError says which record of a request is wrong, which field, and why.
// Its text names both, for example
//
//	records[3].stream: must match [A-Za-z0-9._-]{1,64}, got "a b"
//	records[0] (line 7): invalid character '}' looking for a field name (column 12)
//
// It unwraps to ErrInvalid or ErrTooLarge.
type RecordError struct {
	// Index is the 0-based position of the record in the request: in the
	// array, or among the non-blank NDJSON lines; 0 for a single object.
	// -1 when the error is about the body as a whole (empty, no records).
	Index int
	// Field is the record's field ("stream", "data", or an unknown field's
	// name); "" when the record as a whole is wrong (syntax, not an object).
	Field string
	// Line is the 1-based line of the body where the error is, when known:
	// always for NDJSON, for syntax and data errors in JSON; 0 otherwise.
	Line int
	// Msg says what is wrong.
	Msg string
	// Err is ErrInvalid or ErrTooLarge.
	Err error
}

func (e *RecordError) Error() string {
	var b []byte
	if e.Index < 0 {
		b = append(b, "body"...)
	} else {
		b = append(b, "records["...)
		b = strconv.AppendInt(b, int64(e.Index), 10)
		b = append(b, ']')
		if e.Field != "" {
			b = append(b, '.')
			b = append(b, e.Field...)
		}
	}
	if e.Line > 0 {
		b = append(b, " (line "...)
		b = strconv.AppendInt(b, int64(e.Line), 10)
		b = append(b, ')')
	}
	b = append(b, ": "...)
	b = append(b, e.Msg...)
	return string(b)
}

// Unwrap returns ErrInvalid or ErrTooLarge.
func (e *RecordError) Unwrap() error { return e.Err }

// quoteValue renders an input value for an error message, shortened when
// long.
func quoteValue(b []byte) string {
	const max = 64
	if len(b) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return strconv.Quote(string(b[:cut])) + "..."
	}
	return strconv.Quote(string(b))
}

// fieldName renders an unknown field's name for RecordError.Field: as is
// when it looks like a name, quoted otherwise.
func fieldName(b []byte) string {
	if len(b) == 0 || len(b) > 64 {
		return quoteValue(b)
	}
	for _, c := range b {
		if !nameByte(c) {
			return quoteValue(b)
		}
	}
	return string(b)
}

// nameByte reports whether c is in [A-Za-z0-9._-].
func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}
