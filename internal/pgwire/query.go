package pgwire

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Type OIDs the client encodes and decodes.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidText        = 25
	oidTimestamp   = 1114
	oidTimestamptz = 1184
)

// stmt is a statement prepared on one connection.
type stmt struct {
	name   string
	fields []field
}

// field is one column of a result.
type field struct {
	name string
	oid  uint32
}

// CommandTag is the server's summary of a statement: "INSERT 0 5".
type CommandTag string

// RowsAffected returns the row count at the end of the tag.
func (t CommandTag) RowsAffected() int64 {
	s := string(t)
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	n, _ := strconv.ParseInt(s[i:], 10, 64)
	return n
}

// Exec runs one statement with arguments ($1, $2, …) and returns its tag.
// Arguments may be nil (NULL), string, []byte, bool, int, int32, int64,
// uint32, uint64 (up to the bigint maximum), float64, time.Time, and the arrays []string, []int64, []bool,
// []time.Time and [][]byte (sent in binary; write the parameter with a
// cast, $4::bigint[], so the server knows its type).
func (c *Conn) Exec(ctx context.Context, sql string, args ...any) (CommandTag, error) {
	var rows Rows
	return c.run(ctx, sql, args, &rows, false)
}

// Query runs one statement and returns all its rows, read into memory:
// meant for results of modest size.
func (c *Conn) Query(ctx context.Context, sql string, args ...any) (*Rows, error) {
	rows := &Rows{i: -1}
	if _, err := c.run(ctx, sql, args, rows, true); err != nil {
		return nil, err
	}
	return rows, nil
}

// QueryRow runs a statement for its first row; Scan returns ErrNoRows when
// there is none.
func (c *Conn) QueryRow(ctx context.Context, sql string, args ...any) *Row {
	rows, err := c.Query(ctx, sql, args...)
	return &Row{rows: rows, err: err}
}

// SimpleExec runs sql, which may hold several statements separated by
// semicolons and no parameters, with the simple query protocol: for
// migrations and transaction control.
func (c *Conn) SimpleExec(ctx context.Context, sql string) error {
	if c.broken != nil {
		return c.brokenErr()
	}
	return c.guard(ctx, func() error {
		c.w.b = c.w.b[:0]
		c.w.begin('Q')
		c.w.str(sql)
		c.w.end()
		if err := c.flush(); err != nil {
			return err
		}
		return c.untilReady(func(t byte, _ []byte, _ bool) error {
			switch t {
			case 'C', 'T', 'D', 'I':
				return nil
			case 'G', 'H', 'W':
				return errors.New("pgwire: COPY is not supported")
			}
			return fmt.Errorf("pgwire: unexpected message %q", t)
		})
	})
}

// untilReady reads the replies up to ReadyForQuery and returns the first
// ErrorResponse; handle sees every other message (failed: an error came
// before it) and may end the read with an error.
func (c *Conn) untilReady(handle func(t byte, body []byte, failed bool) error) error {
	var first error
	for {
		t, body, err := c.recv()
		if err != nil {
			// The server's reason (a FATAL before it hung up) first.
			return errors.Join(first, err)
		}
		switch t {
		case 'E':
			if first == nil {
				first = parseError(body)
			}
		case 'Z':
			if len(body) > 0 {
				c.txStatus = body[0]
			}
			return first
		default:
			if err := handle(t, body, first != nil); err != nil {
				// The rest of the reply is unread: the connection is
				// out of step with the server for good.
				if c.broken == nil {
					c.broken = err
				}
				return err
			}
		}
	}
}

// closeStmt closes a prepared statement on the server (best effort; the
// reply is read, so the connection stays in step).
func (c *Conn) closeStmt(name string) {
	if c.broken != nil {
		return
	}
	c.w.b = c.w.b[:0]
	c.w.begin('C')
	c.w.b = append(c.w.b, 'S')
	c.w.str(name)
	c.w.end()
	c.w.begin('S')
	c.w.end()
	if c.flush() != nil {
		return
	}
	_ = c.untilReady(func(t byte, _ []byte, _ bool) error {
		if t == '3' { // CloseComplete
			return nil
		}
		return fmt.Errorf("pgwire: unexpected message %q", t)
	})
}

// Ping checks that the server answers.
func (c *Conn) Ping(ctx context.Context) error { return c.SimpleExec(ctx, "") }

func (c *Conn) brokenErr() error {
	if errors.Is(c.broken, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %v", ErrClosed, c.broken)
}

// guard runs f with ctx able to interrupt it: when ctx ends first, the
// socket's deadline is set in the past, f fails, and the connection is
// broken for good (a half-read reply cannot be resumed).
func (c *Conn) guard(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() {
		c.nc.SetDeadline(time.Unix(1, 0))
		go c.cancel()
	})
	err := f()
	// A large batch or row leaves large buffers: not kept for the life of
	// a pooled connection.
	if cap(c.rbuf) > chunk {
		c.rbuf = nil
	}
	if cap(c.w.b) > chunk {
		c.w.b = nil
	}
	if !stop() {
		if c.broken == nil {
			c.broken = ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
	}
	return err
}

func (c *Conn) run(ctx context.Context, sql string, args []any, rows *Rows, keep bool) (CommandTag, error) {
	if c.broken != nil {
		return "", c.brokenErr()
	}
	var tag CommandTag
	err := c.guard(ctx, func() error {
		st, cached := c.stmts[sql]
		c.w.b = c.w.b[:0]
		if !cached {
			c.nstmt++
			st = &stmt{name: c.prefix + strconv.Itoa(c.nstmt)}
			c.w.begin('P')
			c.w.str(st.name)
			c.w.str(sql)
			c.w.int16(0)
			c.w.end()
			c.w.begin('D')
			c.w.b = append(c.w.b, 'S')
			c.w.str(st.name)
			c.w.end()
		}
		if err := c.bind(st.name, args); err != nil {
			return err
		}
		c.w.begin('E')
		c.w.str("")
		c.w.int32(0)
		c.w.end()
		c.w.begin('S')
		c.w.end()
		if err := c.flush(); err != nil {
			return err
		}
		err := c.untilReady(func(t byte, body []byte, failed bool) error {
			switch t {
			case '1': // ParseComplete
				c.stmts[sql] = st
			case 't', '2', 'n', 's', 'I': // ParameterDescription, BindComplete, NoData, PortalSuspended, EmptyQuery
			case 'T':
				// Only in answer to the Describe of a new statement,
				// before any row.
				if cached || len(rows.rows) > 0 {
					return errors.New("pgwire: unexpected row description from the server")
				}
				f, err := parseFields(body)
				if err != nil {
					return err
				}
				st.fields = f
			case 'D':
				if keep && !failed {
					return rows.add(body, len(st.fields))
				}
			case 'C':
				r := reader{b: body}
				tag = CommandTag(r.cstring())
			default:
				return fmt.Errorf("pgwire: unexpected message %q", t)
			}
			return nil
		})
		rows.fields = st.fields
		var pe *Error
		if cached && errors.As(err, &pe) && (pe.Code == "0A000" || pe.Code == "26000") {
			// The cached statement went (DISCARD ALL, a pooler) or its
			// result type changed (a migration): prepare it afresh next
			// time. A Close of a statement that does not exist is fine.
			delete(c.stmts, sql)
			c.closeStmt(st.name)
		}
		return err
	})
	return tag, err
}

func parseFields(body []byte) ([]field, error) {
	r := reader{b: body}
	n := r.int16()
	if n < 0 || n > len(body) {
		return nil, errShort
	}
	out := make([]field, n)
	for i := range out {
		out[i].name = r.cstring()
		r.bytes(6) // table oid, column number
		out[i].oid = uint32(r.int32())
		r.bytes(8) // type size, modifier, format
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// bind writes the Bind message: arrays and []byte in binary, the rest as
// text; results all as text.
func (c *Conn) bind(name string, args []any) error {
	w := &c.w
	w.begin('B')
	w.str("")
	w.str(name)
	w.int16(len(args))
	for _, a := range args {
		switch a.(type) {
		case []byte, []string, []int64, []bool, []time.Time, [][]byte:
			w.int16(1)
		default:
			w.int16(0)
		}
	}
	w.int16(len(args))
	for i, a := range args {
		if err := encodeArg(w, a); err != nil {
			return fmt.Errorf("pgwire: argument $%d: %w", i+1, err)
		}
	}
	w.int16(1)
	w.int16(0) // all results as text
	w.end()
	return nil
}

// pgEpoch is 2000-01-01 UTC, where PostgreSQL's binary timestamps count from.
const pgEpochMicros = 946684800 * 1_000_000

func encodeArg(w *writer, a any) error {
	lenAt := len(w.b)
	w.int32(0)
	done := func() { binary.BigEndian.PutUint32(w.b[lenAt:], uint32(len(w.b)-lenAt-4)) }
	switch v := a.(type) {
	case nil:
		binary.BigEndian.PutUint32(w.b[lenAt:], math.MaxUint32) // -1: NULL
		return nil
	case string:
		w.b = append(w.b, v...)
	case []byte:
		if v == nil {
			binary.BigEndian.PutUint32(w.b[lenAt:], math.MaxUint32)
			return nil
		}
		w.b = append(w.b, v...)
	case bool:
		if v {
			w.b = append(w.b, 't')
		} else {
			w.b = append(w.b, 'f')
		}
	case int:
		w.b = strconv.AppendInt(w.b, int64(v), 10)
	case int32:
		w.b = strconv.AppendInt(w.b, int64(v), 10)
	case int64:
		w.b = strconv.AppendInt(w.b, v, 10)
	case uint32:
		w.b = strconv.AppendUint(w.b, uint64(v), 10)
	case uint64:
		if v > math.MaxInt64 {
			return fmt.Errorf("%d is out of range for bigint", v)
		}
		w.b = strconv.AppendUint(w.b, v, 10)
	case float64:
		w.b = strconv.AppendFloat(w.b, v, 'g', -1, 64)
	case time.Time:
		w.b = appendTimestamp(w.b, v)
	case []string:
		arrayHeader(w, oidText, len(v))
		for _, s := range v {
			w.int32(int32(len(s)))
			w.b = append(w.b, s...)
		}
	case [][]byte:
		arrayHeader(w, oidBytea, len(v))
		for _, s := range v {
			if s == nil {
				return errors.New("a NULL inside an array is not supported")
			}
			w.int32(int32(len(s)))
			w.b = append(w.b, s...)
		}
	case []int64:
		arrayHeader(w, oidInt8, len(v))
		for _, n := range v {
			w.int32(8)
			w.b = binary.BigEndian.AppendUint64(w.b, uint64(n))
		}
	case []bool:
		arrayHeader(w, oidBool, len(v))
		for _, b := range v {
			w.int32(1)
			if b {
				w.b = append(w.b, 1)
			} else {
				w.b = append(w.b, 0)
			}
		}
	case []time.Time:
		arrayHeader(w, oidTimestamptz, len(v))
		for _, t := range v {
			w.int32(8)
			w.b = binary.BigEndian.AppendUint64(w.b, uint64(t.UnixMicro()-pgEpochMicros))
		}
	default:
		return fmt.Errorf("type %T is not supported", a)
	}
	done()
	return nil
}

// arrayHeader writes a one-dimensional binary array header.
func arrayHeader(w *writer, elem int32, n int) {
	if n == 0 {
		w.int32(0) // no dimensions
		w.int32(0)
		w.int32(elem)
		return
	}
	w.int32(1)
	w.int32(0) // no NULLs
	w.int32(elem)
	w.int32(int32(n))
	w.int32(1) // lower bound
}

// appendTimestamp writes t in UTC to the microsecond (truncated, as
// PostgreSQL stores it), in ISO form.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	t = t.Add(-time.Duration(t.Nanosecond() % 1000))
	b = t.AppendFormat(b, "2006-01-02 15:04:05.999999")
	return append(b, "+00"...)
}

// Rows is a statement's result, read into memory.
type Rows struct {
	fields []field
	rows   [][][]byte // nil value: NULL
	i      int
	err    error
}

func (r *Rows) add(body []byte, want int) error {
	rd := reader{b: body}
	n := rd.int16()
	if rd.err != nil || n != want {
		return fmt.Errorf("pgwire: malformed row: %d columns, the description says %d", n, want)
	}
	// One copy of the whole row; the values point into it.
	buf := append([]byte(nil), rd.b...)
	rd.b = buf
	vals := make([][]byte, n)
	for i := range vals {
		l := rd.int32()
		if l == -1 {
			continue
		}
		vals[i] = rd.bytes(int(l))
		if vals[i] == nil {
			vals[i] = []byte{}
		}
	}
	if rd.err != nil {
		return fmt.Errorf("pgwire: malformed row: %w", rd.err)
	}
	r.rows = append(r.rows, vals)
	return nil
}

// Next moves to the next row; false at the end.
func (r *Rows) Next() bool {
	if r.i+1 >= len(r.rows) {
		r.i = len(r.rows)
		return false
	}
	r.i++
	return true
}

// Len returns the number of rows.
func (r *Rows) Len() int { return len(r.rows) }

// Err returns the first Scan error.
func (r *Rows) Err() error { return r.err }

// Close releases the rows; nothing is left to read on the connection.
func (r *Rows) Close() { r.rows = nil }

// Scan copies the current row's columns into dest: *string, *[]byte, *bool,
// *int, *int32, *int64, *uint64, *float64, *time.Time, *any (text) or a
// sql.Scanner (sql.NullString, …). A NULL column scans into *[]byte (nil),
// *any (nil) and sql.Scanners only.
func (r *Rows) Scan(dest ...any) error {
	if r.i < 0 || r.i >= len(r.rows) {
		return errors.New("pgwire: Scan without a current row")
	}
	row := r.rows[r.i]
	if len(row) != len(r.fields) {
		r.err = errors.New("pgwire: row and row description disagree")
		return r.err
	}
	if len(dest) != len(row) {
		err := fmt.Errorf("pgwire: Scan into %d destinations, the row has %d columns", len(dest), len(row))
		r.err = err
		return err
	}
	for i, d := range dest {
		if err := decode(row[i], r.fields[i].oid, d); err != nil {
			err = fmt.Errorf("pgwire: column %d (%s): %w", i+1, r.fields[i].name, err)
			r.err = err
			return err
		}
	}
	return nil
}

// Row is QueryRow's result.
type Row struct {
	rows *Rows
	err  error
}

// Scan scans the first row, or returns the query's error or ErrNoRows.
func (r *Row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	if !r.rows.Next() {
		return ErrNoRows
	}
	return r.rows.Scan(dest...)
}

func decode(v []byte, oid uint32, dest any) error {
	if sc, ok := dest.(sql.Scanner); ok {
		val, err := scanValue(v, oid)
		if err != nil {
			return err
		}
		return sc.Scan(val)
	}
	if v == nil {
		switch d := dest.(type) {
		case *[]byte:
			*d = nil
			return nil
		case *any:
			*d = nil
			return nil
		}
		return fmt.Errorf("NULL cannot be scanned into %T", dest)
	}
	switch d := dest.(type) {
	case *string:
		*d = string(v)
	case *[]byte:
		if oid == oidBytea {
			b, err := decodeBytea(v)
			if err != nil {
				return err
			}
			*d = b
		} else {
			*d = append([]byte(nil), v...)
		}
	case *bool:
		switch string(v) {
		case "t":
			*d = true
		case "f":
			*d = false
		default:
			return fmt.Errorf("%q is not a boolean", v)
		}
	case *int:
		n, err := strconv.ParseInt(string(v), 10, strconv.IntSize)
		if err != nil {
			return err
		}
		*d = int(n)
	case *int32:
		n, err := strconv.ParseInt(string(v), 10, 32)
		if err != nil {
			return err
		}
		*d = int32(n)
	case *int64:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return err
		}
		*d = n
	case *uint64:
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return err
		}
		*d = n
	case *float64:
		n, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return err
		}
		*d = n
	case *time.Time:
		t, err := parseTimestamp(string(v))
		if err != nil {
			return err
		}
		*d = t
	case *any:
		*d = string(v)
	default:
		return fmt.Errorf("cannot scan into %T", dest)
	}
	return nil
}

// scanValue converts a column for a sql.Scanner (sql.NullString, …): nil,
// int64, bool, []byte, time.Time or string, by the column's type.
func scanValue(v []byte, oid uint32) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch oid {
	case 20, 21, 23: // int8, int2, int4
		return strconv.ParseInt(string(v), 10, 64)
	case oidBool:
		return string(v) == "t", nil
	case oidBytea:
		return decodeBytea(v)
	case oidTimestamp, oidTimestamptz:
		return parseTimestamp(string(v))
	}
	return string(v), nil
}

// decodeBytea decodes bytea's hex output, \x0a0b….
func decodeBytea(v []byte) ([]byte, error) {
	if len(v) < 2 || v[0] != '\\' || v[1] != 'x' {
		return nil, errors.New("bytea not in hex format (bytea_output = hex expected)")
	}
	out := make([]byte, hex.DecodedLen(len(v)-2))
	if _, err := hex.Decode(out, v[2:]); err != nil {
		return nil, fmt.Errorf("bytea: %w", err)
	}
	return out, nil
}

// parseTimestamp parses timestamp and timestamptz text output in the ISO
// DateStyle: 2026-11-26 16:16:00.123456+00 (zone +hh, +hh:mm or +hh:mm:ss).
func parseTimestamp(s string) (time.Time, error) {
	switch s {
	case "infinity", "-infinity":
		return time.Time{}, fmt.Errorf("timestamp %s cannot be represented", s)
	}
	for _, layout := range []string{
		"2006-01-02 15:04:05.999999999Z07",
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999Z07:00:00",
		"2006-01-02 15:04:05.999999999",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp %q not in ISO format", s)
}
