package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"
)

// pipeConn is a net.Conn that reads what a server would have sent from a
// buffer and drops what the client writes.
type pipeConn struct{ r *bytes.Reader }

func (p *pipeConn) Read(b []byte) (int, error)       { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)      { return len(b), nil }
func (p *pipeConn) Close() error                     { return nil }
func (p *pipeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (p *pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (p *pipeConn) SetDeadline(time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }

// msg builds one backend message.
func msg(t byte, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	out := []byte{t, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(body)+4))
	return append(out, body...)
}

func i32(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
func i16(v int) []byte   { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func cstr(s string) []byte {
	return append([]byte(s), 0)
}

func seedReplies() [][]byte {
	ready := msg('Z', []byte{'I'})
	ok := msg('R', i32(0))
	desc := msg('T', i16(2),
		cstr("n"), i32(0), i16(0), i32(20), i16(8), i32(-1), i16(0),
		cstr("b"), i32(0), i16(0), i32(17), i16(-1), i32(-1), i16(0))
	row := msg('D', i16(2), i32(2), []byte("42"), i32(6), []byte(`\x0aff`))
	nullRow := msg('D', i16(2), i32(-1), i32(-1))
	query := bytes.Join([][]byte{msg('1'), msg('t', i16(0)), desc, msg('2'), row, nullRow, msg('C', cstr("SELECT 2")), ready}, nil)
	errResp := msg('E', []byte("SERROR\x00C42601\x00Msyntax error\x00\x00"))
	return [][]byte{
		append(append(append([]byte{}, ok...), msg('S', cstr("server_version"), cstr("15.8"))...), append(ready, query...)...),
		bytes.Join([][]byte{msg('R', i32(10), cstr("SCRAM-SHA-256"), cstr("")), msg('R', i32(11), []byte("r=abc,s=c2FsdA==,i=4096")), ok, ready}, nil),
		bytes.Join([][]byte{msg('R', i32(5), []byte{1, 2, 3, 4}), ok, ready, msg('1'), errResp, ready}, nil),
		bytes.Join([][]byte{msg('R', i32(3)), errResp}, nil),
		bytes.Join([][]byte{ok, msg('N', []byte("SNOTICE\x00Mhi\x00\x00")), ready, msg('1'), msg('t', i16(0)), desc, msg('2'), msg('D', i16(1)), ready}, nil),
	}
}

// FuzzServerReplies feeds arbitrary bytes as the server's side of a
// startup and a query: no panic, no hang, no allocation past the message
// limit.
func FuzzServerReplies(f *testing.F) {
	for _, s := range seedReplies() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pc := &pipeConn{r: bytes.NewReader(data)}
		c := &Conn{nc: pc, br: bufio.NewReader(pc), params: map[string]string{}, stmts: map[string]*stmt{}}
		cfg := &Config{User: "u", Database: "d", Password: "pw", Params: map[string]string{}}
		if err := c.startup(cfg, cfg.Password); err != nil {
			return
		}
		rows, err := c.Query(context.Background(), "SELECT n, b FROM t WHERE x = $1", []int64{1, 2})
		if err != nil {
			return
		}
		for rows.Next() {
			var n, b any
			_ = rows.Scan(&n, &b)
			var s string
			var raw []byte
			_ = rows.Scan(&s, &raw)
		}
	})
}

// FuzzDecode feeds arbitrary column text to every scan target.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"42", "-9223372036854775808", "t", `\x00ff`, "2026-11-26 16:16:00.123456+05:30", "2026-01-01 00:00:00+00", "1.5e3", "infinity", ""} {
		f.Add([]byte(s), uint32(oidText))
		f.Add([]byte(s), uint32(oidBytea))
		f.Add([]byte(s), uint32(oidTimestamptz))
	}
	f.Fuzz(func(t *testing.T, v []byte, oid uint32) {
		var (
			s  string
			b  []byte
			ok bool
			i  int
			n  int64
			u  uint64
			x  float64
			tt time.Time
			a  any
		)
		for _, d := range []any{&s, &b, &ok, &i, &n, &u, &x, &tt, &a} {
			_ = decode(v, oid, d)
		}
		if err := decode(v, oidTimestamptz, &tt); err == nil && tt.Location() != time.UTC {
			t.Errorf("timestamp %q not in UTC", v)
		}
		if err := decode(v, oidBytea, &b); err == nil && len(b) != (len(v)-2)/2 {
			t.Errorf("bytea %q decoded to %d bytes", v, len(b))
		}
	})
}

func TestSeedRepliesWork(t *testing.T) {
	pc := &pipeConn{r: bytes.NewReader(seedReplies()[0])}
	c := &Conn{nc: pc, br: bufio.NewReader(pc), params: map[string]string{}, stmts: map[string]*stmt{}}
	if err := c.startup(&Config{User: "u", Database: "d"}, ""); err != nil {
		t.Fatal(err)
	}
	if c.ServerVersion() != "15.8" {
		t.Errorf("server_version %q", c.ServerVersion())
	}
	rows, err := c.Query(context.Background(), "SELECT n, b FROM t")
	if err != nil {
		t.Fatal(err)
	}
	var (
		n int64
		b []byte
	)
	if !rows.Next() || rows.Scan(&n, &b) != nil || n != 42 || !bytes.Equal(b, []byte{0x0a, 0xff}) {
		t.Fatalf("first row: %d %v %v", n, b, rows.Err())
	}
	if !rows.Next() || rows.Scan(new(any), &b) != nil || b != nil || rows.Next() {
		t.Fatalf("second row: NULLs not read")
	}
}

// TestSCRAMNoDowngrade: once SCRAM started, the server may neither ask for
// a password in the clear nor declare success without its proof.
func TestSCRAMNoDowngrade(t *testing.T) {
	ok := msg('R', i32(0))
	ready := msg('Z', []byte{'I'})
	sasl := msg('R', i32(10), cstr("SCRAM-SHA-256"), cstr(""))
	for name, reply := range map[string][]byte{
		"cleartext after SASL":    bytes.Join([][]byte{sasl, msg('R', i32(3))}, nil),
		"ok without server proof": bytes.Join([][]byte{sasl, ok, ready}, nil),
		"ok after continue only":  bytes.Join([][]byte{sasl, msg('R', i32(11), []byte("r=abc,s=c2FsdA==,i=4096")), ok, ready}, nil),
		"md5 after SASL":          bytes.Join([][]byte{sasl, msg('R', i32(5), []byte{1, 2, 3, 4})}, nil),
	} {
		pc := &pipeConn{r: bytes.NewReader(reply)}
		c := &Conn{nc: pc, br: bufio.NewReader(pc), params: map[string]string{}, stmts: map[string]*stmt{}}
		err := c.startup(&Config{User: "u", Database: "d"}, "pw")
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestStartupMessageLimit: before authentication a server cannot make the
// client take in a large message.
func TestStartupMessageLimit(t *testing.T) {
	big := []byte{'S', 0x7f, 0, 0, 0}
	pc := &pipeConn{r: bytes.NewReader(big)}
	c := &Conn{nc: pc, br: bufio.NewReader(pc), params: map[string]string{}, stmts: map[string]*stmt{}}
	err := c.startup(&Config{User: "u", Database: "d"}, "")
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("err = %v, want the size limit", err)
	}
}
