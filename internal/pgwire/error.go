package pgwire

import (
	"errors"
	"fmt"
)

// ErrNoRows: QueryRow's statement returned no row.
var ErrNoRows = errors.New("pgwire: no rows in result set")

// ErrClosed: the connection was closed, or broke and must be closed.
var ErrClosed = errors.New("pgwire: connection closed")

// Error is an ErrorResponse from the server. Code is the SQLSTATE
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
type Error struct {
	Severity string // ERROR, FATAL, PANIC
	Code     string
	Message  string
	Detail   string
	Hint     string
	Where    string
	Table    string
	Column   string
	// Constraint names the violated constraint, for integrity errors.
	Constraint string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// parseError decodes the fields of an ErrorResponse or NoticeResponse.
func parseError(body []byte) *Error {
	e := &Error{}
	var localized string // S: the severity in the server's language
	field := map[byte]*string{
		'V': &e.Severity, 'S': &localized, 'C': &e.Code, 'M': &e.Message, 'D': &e.Detail,
		'H': &e.Hint, 'W': &e.Where, 't': &e.Table, 'c': &e.Column, 'n': &e.Constraint,
	}
	r := reader{b: body}
	for {
		t := r.byte()
		if t == 0 || r.err != nil {
			break
		}
		v := r.cstring()
		if p := field[t]; p != nil {
			*p = v
		}
	}
	if e.Severity == "" {
		e.Severity = localized
	}
	if e.Severity == "" {
		e.Severity = "ERROR"
	}
	return e
}
