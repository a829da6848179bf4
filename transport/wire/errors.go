package wire

import (
	"errors"
	"strconv"
)

// Sentinel errors. Every error returned by this package matches exactly one of
// them with errors.Is.
var (
	// ErrTooLarge: a payload, a decoded body or a list is over its limit. An
	// encoder returns it (wrapped in a *FieldError naming what overflowed)
	// before writing anything, so the caller can split the batch and retry.
	ErrTooLarge = errors.New("wire: payload too large")
	// ErrVersion: the message's V is not Version. The message may be well
	// formed for another protocol version; it is not an attack.
	ErrVersion = errors.New("wire: unsupported protocol version")
	// ErrCompression: the first byte of a batch payload is not a known
	// compression.
	ErrCompression = errors.New("wire: unknown compression")
	// ErrMalformed: the bytes are not a well-formed message (truncated or
	// corrupt zstd, CBOR that is not well formed, a field of the wrong type,
	// a duplicate map key, trailing bytes).
	ErrMalformed = errors.New("wire: malformed payload")
	// ErrInvalid: the message decodes but breaks a rule of the protocol (an
	// invalid device id, records out of order, ...). The *FieldError around
	// it names the field.
	ErrInvalid = errors.New("wire: invalid message")
	// ErrTopic: a topic is not of the form the caller expects.
	ErrTopic = errors.New("wire: unexpected topic")
	// ErrUnsigned: a config carries no signature but one is required.
	ErrUnsigned = errors.New("wire: config not signed")
	// ErrSignature: a config's signature does not verify with the given key.
	ErrSignature = errors.New("wire: bad config signature")
)

// FieldError says what is wrong with which field of which message, for
// example
//
//	wire: batch: records[3].stream: invalid "a b"
//
// Err is the sentinel it matches: ErrInvalid, ErrVersion, ErrTooLarge,
// ErrMalformed or ErrCompression. None of these is recoverable by resending
// the same bytes; ErrTooLarge from an encoder is recoverable by splitting.
type FieldError struct {
	Message string // "batch", "ack", "state", "cmd", "config", "config status", "record"
	Field   string // a path such as "records[3].stream"; "" for the message as a whole
	Reason  string // what is wrong, for example `invalid "a b"`
	Err     error  // the sentinel
}

func (e *FieldError) Error() string {
	s := "wire: " + e.Message + ": "
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Reason
}

// Unwrap returns the sentinel.
func (e *FieldError) Unwrap() error { return e.Err }

func invalid(msg, field, reason string) *FieldError {
	return &FieldError{Message: msg, Field: field, Reason: reason, Err: ErrInvalid}
}

// invalidValue reports a string field's bad value, quoted and cut to 80
// bytes so that a hostile payload cannot flood a log line.
func invalidValue(msg, field, value string) *FieldError {
	return invalid(msg, field, "invalid "+quote(value))
}

func tooLarge(msg, field, reason string) *FieldError {
	return &FieldError{Message: msg, Field: field, Reason: reason, Err: ErrTooLarge}
}

func malformed(msg string, err error) *FieldError {
	return &FieldError{Message: msg, Reason: "malformed: " + err.Error(), Err: ErrMalformed}
}

func quote(s string) string {
	const max = 80
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

func itoa(i int) string { return strconv.Itoa(i) }

func utoa(u uint64) string { return strconv.FormatUint(u, 10) }
