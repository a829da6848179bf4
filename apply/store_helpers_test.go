package apply

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/edgesync/edgesync/internal/testenv"
	"github.com/edgesync/edgesync/transport/wire"
)

func TestMain(m *testing.M) { testenv.Main(m, testenv.VerifyNoLeaks()) }

// opener opens a fresh, empty store for one test, closed when it ends.
type opener func(t testing.TB, cfg StoreConfig) *Store

// openSQLiteT opens a store in t.TempDir().
func openSQLiteT(t testing.TB, cfg StoreConfig) *Store {
	t.Helper()
	cfg.URL = "sqlite://" + filepath.Join(t.TempDir(), "sink.db")
	return openT(t, cfg)
}

// openPostgresT opens a store on a fresh database of the shared server.
func openPostgresT(t testing.TB, cfg StoreConfig) *Store {
	t.Helper()
	cfg.URL = testenv.SharedPostgres(t).DSN()
	return openT(t, cfg)
}

func openT(t testing.TB, cfg StoreConfig) *Store {
	t.Helper()
	s, err := cfg.Open(context.Background())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// cborOf encodes v as CBOR, as the agent holds record data.
func cborOf(t testing.TB, v any) cbor.RawMessage {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatalf("cbor: %v", err)
	}
	return b
}

// rec is a record of stream with key, data {"n": seq}, captured at seq
// seconds after 2026-01-01.
func rec(t testing.TB, seq uint64, stream, key string) wire.Record {
	return wire.Record{
		Seq:        seq,
		Stream:     stream,
		Key:        key,
		CapturedAt: baseTime.Add(time.Duration(seq) * time.Second).UnixNano(),
		Data:       cborOf(t, map[string]any{"n": seq}),
	}
}

var baseTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// recs returns records first..last of stream, key "k<seq>".
func recs(t testing.TB, first, last uint64, stream string) []wire.Record {
	var out []wire.Record
	for s := first; s <= last; s++ {
		out = append(out, rec(t, s, stream, "k"+strconv.FormatUint(s, 10)))
	}
	return out
}

// batch wraps records into a batch of device "gw-1" (or the device given by
// the test), epoch.
func batch(epoch uint64, rs ...wire.Record) *wire.Batch {
	b := &wire.Batch{V: wire.Version, Device: "gw-1", Epoch: epoch, Records: rs}
	if len(rs) > 0 {
		b.First, b.Last = rs[0].Seq, rs[len(rs)-1].Seq
	}
	return b
}

// mustApply applies b for its device and fails the test on error.
func mustApply(t testing.TB, s *Store, b *wire.Batch, p *Policy) Result {
	t.Helper()
	res, err := s.Apply(context.Background(), b.Device, b, p)
	if err != nil {
		t.Fatalf("apply %s epoch %d [%d,%d]: %v", b.Device, b.Epoch, b.First, b.Last, err)
	}
	return res
}

// want compares the interesting fields of a Result.
type want struct {
	through    uint64
	status     uint8
	applied    int
	duplicates int
	lost       uint64
	parked     int
}

func checkResult(t testing.TB, got Result, w want) {
	t.Helper()
	g := want{got.AppliedThrough, got.Status, got.Applied, got.Duplicates, got.Lost, got.ParkedRecords}
	if g != w {
		t.Errorf("result: got %+v, want %+v", g, w)
	}
}

// query runs q (with ? placeholders) on s and calls scan for every row.
func query(t testing.TB, s *Store, q string, args []any, scan func(scan func(dest ...any) error) error) {
	t.Helper()
	ctx := context.Background()
	switch be := s.be.(type) {
	case *sqliteBackend:
		rows, err := be.db.QueryContext(ctx, q, args...)
		if err != nil {
			t.Fatalf("query %q: %v", q, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows.Scan); err != nil {
				t.Fatalf("scan %q: %v", q, err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("query %q: %v", q, err)
		}
	case *pgBackend:
		var sb strings.Builder
		n := 0
		for _, c := range q {
			if c == '?' {
				n++
				fmt.Fprintf(&sb, "$%d", n)
				continue
			}
			sb.WriteRune(c)
		}
		c, err := be.pool.acquire(ctx)
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
		defer be.pool.release(c)
		rows, err := c.Query(ctx, sb.String(), args...)
		if err != nil {
			t.Fatalf("query %q: %v", q, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows.Scan); err != nil {
				t.Fatalf("scan %q: %v", q, err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("query %q: %v", q, err)
		}
	default:
		t.Fatalf("unknown backend %T", s.be)
	}
}

// count returns SELECT COUNT(*) FROM <from>.
func count(t testing.TB, s *Store, from string, args ...any) int {
	t.Helper()
	var n int
	query(t, s, "SELECT COUNT(*) FROM "+from, args, func(scan func(...any) error) error { return scan(&n) })
	return n
}

// logSeqs returns the seqs in edgesync_log of device and epoch, ascending.
func logSeqs(t testing.TB, s *Store, device string, epoch uint64) []int64 {
	t.Helper()
	var out []int64
	query(t, s, "SELECT seq FROM edgesync_log WHERE device_id = ? AND epoch = ? ORDER BY seq",
		[]any{device, int64(epoch)}, func(scan func(...any) error) error {
			var v int64
			err := scan(&v)
			out = append(out, v)
			return err
		})
	return out
}

// seqRange returns first..last.
func seqRange(first, last int64) []int64 {
	var out []int64
	for s := first; s <= last; s++ {
		out = append(out, s)
	}
	return out
}

// stateRow is a row of edgesync_state.
type stateRow struct {
	epochGen, epoch, seq int64
	deleted              bool
	data                 sql.NullString
}

// state returns the edgesync_state row of (device, stream, key); ok false
// when there is none.
func state(t testing.TB, s *Store, device, stream, key string) (r stateRow, ok bool) {
	t.Helper()
	query(t, s, "SELECT epoch_gen, epoch, seq, deleted, data FROM edgesync_state WHERE device_id = ? AND stream = ? AND key = ?",
		[]any{device, stream, key}, func(scan func(...any) error) error {
			ok = true
			return scan(&r.epochGen, &r.epoch, &r.seq, &r.deleted, &r.data)
		})
	return r, ok
}

// device returns the edgesync_devices rows of device, failing on error.
func device(t testing.TB, s *Store, dev string) []DeviceRow {
	t.Helper()
	rows, err := s.Device(context.Background(), dev)
	if err != nil {
		t.Fatalf("Device(%s): %v", dev, err)
	}
	return rows
}

// jsonEqual reports whether JSON texts a and b hold the same value.
func jsonEqual(t testing.TB, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("not JSON: %q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("not JSON: %q: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}
