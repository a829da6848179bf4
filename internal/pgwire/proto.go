package pgwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// maxMessage bounds one backend message: a row of the parked table holds a
// record of at most a batch's size, hex-encoded. Before authentication
// ends, maxStartupMessage: a server that has not proven anything yet
// cannot make the client buffer much.
const (
	maxMessage        = 64 << 20
	maxStartupMessage = 64 << 10
)

// errShort: a backend message ended before one of its fields.
var errShort = errors.New("pgwire: malformed message from the server (too short)")

// reader reads the fields of one backend message body.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.err = errShort
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) int16() int {
	if len(r.b) < 2 {
		r.err = errShort
		return 0
	}
	v := int16(binary.BigEndian.Uint16(r.b))
	r.b = r.b[2:]
	return int(v)
}

func (r *reader) int32() int32 {
	if len(r.b) < 4 {
		r.err = errShort
		return 0
	}
	v := int32(binary.BigEndian.Uint32(r.b))
	r.b = r.b[4:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.err = errShort
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) cstring() string {
	for i, c := range r.b {
		if c == 0 {
			s := string(r.b[:i])
			r.b = r.b[i+1:]
			return s
		}
	}
	r.err = errShort
	r.b = nil
	return ""
}

// writer builds frontend messages into one buffer, flushed at once.
type writer struct {
	b     []byte
	start int // offset of the current message's length field
}

// begin starts a message of type t (0: the untyped startup messages).
func (w *writer) begin(t byte) {
	if t != 0 {
		w.b = append(w.b, t)
	}
	w.start = len(w.b)
	w.b = append(w.b, 0, 0, 0, 0)
}

// end fills in the current message's length.
func (w *writer) end() {
	binary.BigEndian.PutUint32(w.b[w.start:], uint32(len(w.b)-w.start))
}

func (w *writer) int16(v int)   { w.b = binary.BigEndian.AppendUint16(w.b, uint16(v)) }
func (w *writer) int32(v int32) { w.b = binary.BigEndian.AppendUint32(w.b, uint32(v)) }
func (w *writer) str(s string)  { w.b = append(append(w.b, s...), 0) }
func (w *writer) raw(p []byte)  { w.b = append(w.b, p...) }

// chunk is the largest piece of a message allocated ahead of its bytes: a
// header that claims a large message costs memory only as the bytes come.
const chunk = 1 << 20

// readMessage reads one backend message of at most limit bytes into buf
// (grown as needed) and returns its type and body, which stay valid until
// buf is reused.
func readMessage(r io.Reader, buf []byte, limit int) (byte, []byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, buf, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[1:])) - 4
	if n < 0 || n > int64(limit) {
		return 0, nil, buf, fmt.Errorf("pgwire: server message %q of %d bytes: not a PostgreSQL server, or over the %d-byte limit", hdr[0], n+4, limit)
	}
	size := int(n)
	if cap(buf) < min(size, chunk) {
		buf = make([]byte, 0, min(size, chunk))
	}
	body := buf[:0]
	for len(body) < size {
		if len(body) == cap(body) {
			body = append(body, make([]byte, min(size-len(body), cap(body)))...)[:len(body)]
		}
		part := body[len(body):min(size, cap(body))]
		if _, err := io.ReadFull(r, part); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, body, err
		}
		body = body[:len(body)+len(part)]
	}
	return hdr[0], body, body, nil
}
