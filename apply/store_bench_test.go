package apply

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/transport/wire"
)

// benchBatch returns a batch of n records of about 200 bytes each on the
// wire (stream, key, times, and CBOR data of about 150 bytes).
func benchBatch(b testing.TB, n int) *wire.Batch {
	data := cborOf(b, map[string]any{
		"sensor":   "sensor-0042",
		"temp":     21.5,
		"humidity": 40.25,
		"ok":       true,
		"note":     strings.Repeat("x", 96),
	})
	rs := make([]wire.Record, n)
	for i := range rs {
		rs[i] = wire.Record{
			Stream:        "temps",
			Key:           "sensor-0042",
			Schema:        "reading",
			SchemaVersion: 1,
			CapturedAt:    time.Now().UnixNano(),
			Data:          data,
		}
	}
	return &wire.Batch{V: wire.Version, Device: "gw-bench", Epoch: 1, Records: rs}
}

func benchApply(b *testing.B, open opener) {
	s := open(b, StoreConfig{})
	const n = 1000
	bt := benchBatch(b, n)
	size := 0
	for i := range bt.Records {
		size += bt.Records[i].Size()
	}
	p := &Policy{Streams: map[string]StreamPolicy{"temps": {Mode: ModeLog, Schemas: []string{"reading@1"}}}}
	ctx := context.Background()
	next := uint64(1)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		for i := range bt.Records {
			bt.Records[i].Seq = next
			next++
		}
		bt.First, bt.Last = bt.Records[0].Seq, bt.Records[n-1].Seq
		res, err := s.Apply(ctx, bt.Device, bt, p)
		if err != nil {
			b.Fatal(err)
		}
		if res.Applied != n {
			b.Fatalf("applied %d, want %d", res.Applied, n)
		}
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N*n)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(size)/n, "bytes/record")
}

// BenchmarkApplySQLite applies 1000-record batches of 200-byte records into
// SQLite (WAL, synchronous=FULL) in t.TempDir().
func BenchmarkApplySQLite(b *testing.B) { benchApply(b, openSQLiteT) }

// BenchmarkApplyPostgres applies 1000-record batches of 200-byte records
// into PostgreSQL (the test server: fsync off, synchronous_commit on).
func BenchmarkApplyPostgres(b *testing.B) { benchApply(b, openPostgresT) }
