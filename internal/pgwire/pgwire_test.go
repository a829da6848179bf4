package pgwire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func connect(t *testing.T, url string) *Conn {
	t.Helper()
	cfg, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTrip(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	c := connect(t, pg.DSN())
	ctx := context.Background()
	ts := time.Date(2026, 11, 26, 16, 16, 0, 123456789, time.FixedZone("x", 3600))
	var (
		s   string
		b   []byte
		ok  bool
		n   int64
		i   int
		f   float64
		tt  time.Time
		nul []byte
	)
	err := c.QueryRow(ctx, `SELECT $1::text, $2::bytea, $3::boolean, $4::bigint, $5::int, $6::float8, $7::timestamptz, NULL::bytea`,
		`q"uo\te ü {,}`, []byte{0, 1, 0xff, '\\'}, true, int64(-1<<62), 42, 2.5, ts).Scan(&s, &b, &ok, &n, &i, &f, &tt, &nul)
	if err != nil {
		t.Fatal(err)
	}
	if s != `q"uo\te ü {,}` || !slices.Equal(b, []byte{0, 1, 0xff, '\\'}) || !ok || n != -1<<62 || i != 42 || f != 2.5 || nul != nil {
		t.Errorf("got %q %v %v %d %d %v %v", s, b, ok, n, i, f, nul)
	}
	if want := ts.Truncate(time.Microsecond).UTC(); !tt.Equal(want) || tt.Location() != time.UTC {
		t.Errorf("timestamptz %v, want %v in UTC", tt, want)
	}

	// Arrays go in binary, unnested into rows.
	strs := []string{`a"b`, `c\d`, "", "NULL", "{x,y}", "ünï"}
	ints := []int64{1, -2, 1 << 62, 0, 5, 6}
	bools := []bool{true, false, true, false, true, false}
	times := []time.Time{ts, ts.Add(time.Hour), time.Unix(0, 0), ts, ts, ts}
	raws := [][]byte{{1}, {}, {0, 0}, []byte("x"), {0xfe}, {7}}
	rows, err := c.Query(ctx, `SELECT s, i, b, t, r FROM unnest($1::text[], $2::bigint[], $3::boolean[], $4::timestamptz[], $5::bytea[]) AS u(s, i, b, t, r)`,
		strs, ints, bools, times, raws)
	if err != nil {
		t.Fatal(err)
	}
	if rows.Len() != len(strs) {
		t.Fatalf("%d rows, want %d", rows.Len(), len(strs))
	}
	for k := 0; rows.Next(); k++ {
		var (
			s  string
			i  int64
			b  bool
			tt time.Time
			r  []byte
		)
		if err := rows.Scan(&s, &i, &b, &tt, &r); err != nil {
			t.Fatal(err)
		}
		if s != strs[k] || i != ints[k] || b != bools[k] || !tt.Equal(times[k].Truncate(time.Microsecond)) || !slices.Equal(r, raws[k]) {
			t.Errorf("row %d: %q %d %v %v %v", k, s, i, b, tt, r)
		}
	}
	// Empty arrays.
	var cnt int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM unnest($1::text[])`, []string{}).Scan(&cnt); err != nil || cnt != 0 {
		t.Errorf("empty array: %d, %v", cnt, err)
	}
	// No row.
	if err := c.QueryRow(ctx, `SELECT 1 WHERE false`).Scan(&cnt); !errors.Is(err, ErrNoRows) {
		t.Errorf("no row: %v, want ErrNoRows", err)
	}
	// NULL into a string is an error naming the column.
	if err := c.QueryRow(ctx, `SELECT NULL::text AS nothing`).Scan(&s); err == nil || !strings.Contains(err.Error(), "nothing") {
		t.Errorf("NULL into string: %v, want an error naming the column", err)
	}
	// An unsupported argument type names the argument; the connection is fine.
	if _, err := c.Exec(ctx, `SELECT $1::int`, struct{}{}); err == nil || !strings.Contains(err.Error(), "$1") {
		t.Errorf("unsupported argument: %v", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Errorf("ping after a refused argument: %v", err)
	}
}

func TestStatementsAndErrors(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	c := connect(t, pg.DSN())
	ctx := context.Background()
	if err := c.SimpleExec(ctx, `CREATE TABLE t (id bigint PRIMARY KEY, v text); CREATE INDEX ON t (v)`); err != nil {
		t.Fatal(err)
	}
	const ins = `INSERT INTO t SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING RETURNING id`
	for round := range 3 {
		rows, err := c.Query(ctx, ins, []int64{1, 2, 3}, []string{"a", "b", "c"})
		if err != nil {
			t.Fatal(err)
		}
		want := 3
		if round > 0 {
			want = 0
		}
		if rows.Len() != want {
			t.Errorf("round %d: %d rows returned, want %d", round, rows.Len(), want)
		}
	}
	if c.nstmt != 1 {
		t.Errorf("%d statements prepared for one SQL text, want 1", c.nstmt)
	}
	tag, err := c.Exec(ctx, `UPDATE t SET v = $1 WHERE id >= $2`, "z", int64(2))
	if err != nil || tag.RowsAffected() != 2 {
		t.Errorf("update: %q, %v; want 2 rows", tag, err)
	}

	// A server error: typed, with its SQLSTATE; the connection goes on.
	_, err = c.Exec(ctx, `SELEC 1`)
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "42601" {
		t.Fatalf("syntax error: %v, want SQLSTATE 42601", err)
	}
	if _, cached := c.stmts["SELEC 1"]; cached {
		t.Errorf("a statement that failed to parse was cached")
	}
	// A failed transaction until rollback.
	if err := c.SimpleExec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO t VALUES ($1, $2)`, int64(1), "dup"); !errors.As(err, &pe) || pe.Code != "23505" || pe.Constraint != "t_pkey" {
		t.Fatalf("duplicate key: %v", err)
	}
	if c.TxStatus() != 'E' {
		t.Errorf("TxStatus %q after an error in a transaction, want E", c.TxStatus())
	}
	if err := c.SimpleExec(ctx, "ROLLBACK"); err != nil || c.TxStatus() != 'I' {
		t.Errorf("rollback: %v, TxStatus %q", err, c.TxStatus())
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM t WHERE v = 'z'`).Scan(&n); err != nil || n != 2 {
		t.Errorf("count: %d, %v", n, err)
	}
	// Too few arguments: the server's error.
	if _, err := c.Exec(ctx, `SELECT $1::int + $2::int`, 1); err == nil {
		t.Error("a missing argument was accepted")
	}
}

func TestContextEndsCall(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	c := connect(t, pg.DSN())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Exec(ctx, `SELECT pg_sleep(30)`)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("returned after %v", d)
	}
	if !c.IsClosed() {
		t.Error("the connection is not marked broken")
	}
	if _, err := c.Exec(context.Background(), `SELECT 1`); !errors.Is(err, ErrClosed) {
		t.Errorf("use after break: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestServerGone(t *testing.T) {
	pg := testenv.Postgres(t)
	c := connect(t, pg.DSN())
	pg.Kill()
	if err := c.Ping(context.Background()); err == nil || !c.IsClosed() {
		t.Fatalf("ping after a server crash: %v, closed %v", err, c.IsClosed())
	}
	pg.Start()
	c = connect(t, pg.DSN())
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestUnixSocket(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	c := connect(t, "postgres://edgesync@/"+pg.Database()+"?host="+pg.SocketDir()+"&port="+strconv.Itoa(pg.Port()))
	var db string
	if err := c.QueryRow(context.Background(), `SELECT current_database()`).Scan(&db); err != nil || db != pg.Database() {
		t.Fatalf("over the socket: %q, %v", db, err)
	}
}

func TestFailover(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	// The first host refuses; the second is the server.
	c := connect(t, fmt.Sprintf("postgres://edgesync@127.0.0.1:1,127.0.0.1:%d/%s?sslmode=disable", pg.Port(), pg.Database()))
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestServerWithoutTLS: prefer (the default) goes on in the clear when the
// server has no TLS; require refuses to.
func TestServerWithoutTLS(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	base := fmt.Sprintf("postgres://edgesync@127.0.0.1:%d/%s", pg.Port(), pg.Database())
	c := connect(t, base)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseURL(base + "?sslmode=require")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "does not accept TLS") {
		t.Fatalf("require against a server without TLS: %v", err)
	}
}

// TestCachedStatementGone: a cached statement that the server dropped
// (DISCARD ALL) or whose result changed (a migration) fails once, and is
// prepared afresh on the next call.
func TestCachedStatementGone(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	c := connect(t, pg.DSN())
	ctx := context.Background()
	if err := c.SimpleExec(ctx, `CREATE TABLE t (id int); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	const q = `SELECT * FROM t`
	var id int
	if err := c.QueryRow(ctx, q).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := c.SimpleExec(ctx, `DISCARD ALL`); err != nil {
		t.Fatal(err)
	}
	_ = c.QueryRow(ctx, q).Scan(&id) // may fail once
	if err := c.QueryRow(ctx, q).Scan(&id); err != nil || id != 1 {
		t.Fatalf("after DISCARD ALL: %v", err)
	}
	if err := c.SimpleExec(ctx, `ALTER TABLE t ALTER COLUMN id TYPE bigint`); err != nil {
		t.Fatal(err)
	}
	_ = c.QueryRow(ctx, q).Scan(&id)
	if err := c.QueryRow(ctx, q).Scan(&id); err != nil || id != 1 {
		t.Fatalf("after a column type change: %v", err)
	}
}

// TestLargeValues: a value of several MiB goes out and comes back whole,
// read in pieces; the buffers are not kept that large.
func TestLargeValues(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	c := connect(t, pg.DSN())
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
	var got []byte
	if err := c.QueryRow(context.Background(), `SELECT $1::bytea`, big).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("got %d bytes back, want %d", len(got), len(big))
	}
	if cap(c.rbuf) > chunk || cap(c.w.b) > chunk {
		t.Errorf("buffers kept at %d and %d bytes", cap(c.rbuf), cap(c.w.b))
	}
}

// TestCancelOnContextEnd: a call whose context ends is cancelled in the
// server too, not left running.
func TestCancelOnContextEnd(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	c := connect(t, pg.DSN())
	watch := connect(t, pg.DSN())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, _ = c.Exec(ctx, `SELECT pg_sleep(60) /* cancel-me */`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := watch.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%cancel-me%' AND state = 'active' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the statement still runs in the server 10s after its context ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFailoverStartingUp: a first host that answers "the database system
// is starting up" (57P03) is passed over for the next, as libpq does; one
// that refuses the login is not.
func TestFailoverStartingUp(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	fake := func(code string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				buf := make([]byte, 1024)
				c.Read(buf) // the startup message
				c.Write(msg('E', []byte("SFATAL\x00C"+code+"\x00Mnot now\x00\x00")))
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	url := func(first string) string {
		return fmt.Sprintf("postgres://edgesync@%s,127.0.0.1:%d/%s?sslmode=disable", first, pg.Port(), pg.Database())
	}
	c := connect(t, url(fake("57P03")))
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseURL(url(fake("28P01")))
	if err != nil {
		t.Fatal(err)
	}
	var pe *Error
	if _, err := Connect(context.Background(), cfg); !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("a refused login: %v, want SQLSTATE 28P01 and no second host", err)
	}
}

// TestDefaultHostIsLocalSocket: a URL without a host reaches a local server
// through its unix socket, as libpq does.
func TestDefaultHostIsLocalSocket(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	old := socketDirs
	socketDirs = []string{t.TempDir(), pg.SocketDir()}
	t.Cleanup(func() { socketDirs = old })
	cfg, err := ParseURL(fmt.Sprintf("postgres://edgesync@/%s?port=%d", pg.Database(), pg.Port()))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hosts[0].Name != pg.SocketDir() {
		t.Fatalf("default host %v, want the socket directory %s", cfg.Hosts[0], pg.SocketDir())
	}
	c, err := Connect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}
