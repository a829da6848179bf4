package resync

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

const testDevice = "gw-0001"

var testNow = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return testNow }

func openOutbox(t testing.TB, o outbox.Options) *outbox.Outbox {
	t.Helper()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	o.MinFreeDisk, o.Ballast = -1, -1
	ob, err := outbox.Open(t.TempDir(), o)
	if err != nil {
		t.Fatalf("outbox.Open: %v", err)
	}
	t.Cleanup(func() { _ = ob.Close() })
	return ob
}

// cborText returns s as a CBOR text string (record data).
func cborText(s string) []byte {
	var b []byte
	switch n := len(s); {
	case n < 24:
		b = append(b, 0x60|byte(n))
	case n < 256:
		b = append(b, 0x78, byte(n))
	case n < 65536:
		b = append(b, 0x79, byte(n>>8), byte(n))
	default:
		b = append(b, 0x7a, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

func testRecord(i, dataSize int) outbox.Record {
	data := fmt.Sprintf("r%d-", i)
	for len(data) < dataSize {
		data += "x"
	}
	return outbox.Record{
		Stream:        "temps",
		Key:           fmt.Sprintf("sensor-%d", i%7),
		ID:            fmt.Sprintf("id-%d", i),
		Schema:        "reading",
		SchemaVersion: 1,
		CapturedAt:    testNow.UnixNano() + int64(i),
		Data:          cborText(data),
	}
}

// appendRecords appends n records numbered base.. with about dataSize bytes
// of data each, in chunks so that drop_oldest can work in between.
func appendRecords(t testing.TB, ob *outbox.Outbox, base, n, dataSize int) {
	t.Helper()
	for done := 0; done < n; {
		k := min(50, n-done)
		recs := make([]outbox.Record, k)
		for i := range recs {
			recs[i] = testRecord(base+done+i, dataSize)
		}
		if _, _, err := ob.Append(context.Background(), recs); err != nil {
			t.Fatalf("Append: %v", err)
		}
		done += k
	}
}

// testSink applies batches by the sink's rules (docs/PROTOCOL.md, "Meaning
// at the sink"): a watermark per (device, epoch), duplicates skipped, drops
// counted as lost, a gap stops the batch.
type testSink struct {
	w       map[string]uint64 // device/epoch -> applied_through
	applied map[uint64]int    // seq -> times applied (one device, one epoch in these tests)
	data    map[uint64]string // seq -> data as applied
	lost    uint64
	dups    uint64
	batches int
}

func newTestSink() *testSink {
	return &testSink{w: map[string]uint64{}, applied: map[uint64]int{}, data: map[uint64]string{}}
}

func (s *testSink) key(device string, epoch uint64) string {
	return fmt.Sprintf("%s/%d", device, epoch)
}

func (s *testSink) apply(device string, b *wire.Batch) (uint64, uint8, error) {
	s.batches++
	k := s.key(device, b.Epoch)
	w := s.w[k]
	if b.Acked > w {
		s.lost += b.Acked - w
		w = b.Acked
	}
	type item struct {
		first, last uint64
		rec         *wire.Record
	}
	var items []item
	for _, d := range b.Drops {
		items = append(items, item{first: d.First, last: d.Last})
	}
	for i := range b.Records {
		r := &b.Records[i]
		items = append(items, item{first: r.Seq, last: r.Seq, rec: r})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].first < items[j].first })
	status := wire.StatusOK
	for _, it := range items {
		if it.first > w+1 {
			status = wire.StatusGap
			break
		}
		if it.rec == nil {
			if it.last > w {
				s.lost += it.last - max(it.first, w+1) + 1
				w = it.last
			}
			continue
		}
		if it.rec.Seq <= w {
			s.dups++
			continue
		}
		s.applied[it.rec.Seq]++
		s.data[it.rec.Seq] = string(it.rec.Data)
		w = it.rec.Seq
	}
	s.w[k] = w
	return w, status, nil
}

// exportBytes exports src to memory.
func exportBytes(t testing.TB, src Source, from outbox.Seq, opts ExportOptions) ([]byte, Summary) {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	var buf bytes.Buffer
	sum, err := Export(&buf, src, testDevice, from, opts)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if sum.Bytes != int64(buf.Len()) {
		t.Fatalf("Summary.Bytes = %d, want the %d bytes written", sum.Bytes, buf.Len())
	}
	return buf.Bytes(), sum
}
