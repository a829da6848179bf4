package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testOpts(o Options) Options {
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	if o.MinFreeDisk == 0 {
		o.MinFreeDisk = -1
	}
	if o.Ballast == 0 {
		o.Ballast = -1
	}
	return o
}

func mustOpen(t testing.TB, dir string, o Options) *Outbox {
	t.Helper()
	ob, err := Open(dir, testOpts(o))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return ob
}

func rec(i int) Record {
	return Record{
		Stream:        "temps",
		Key:           fmt.Sprintf("sensor-%d", i%10),
		ID:            fmt.Sprintf("id-%d", i),
		Schema:        "reading",
		SchemaVersion: 1,
		CapturedAt:    1700000000000000000 + int64(i),
		Data:          []byte(fmt.Sprintf("\xa1at%d", i%24)),
	}
}

func appendN(t testing.TB, ob *Outbox, n, base int) (Seq, Seq) {
	t.Helper()
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = rec(base + i)
	}
	first, last, err := ob.Append(context.Background(), recs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return first, last
}

func readAll(t testing.TB, ob *Outbox, from Seq) []Record {
	t.Helper()
	var out []Record
	for {
		_, recs, err := ob.Read(from, 1000, 1<<20, nil)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		from = recs[len(recs)-1].Seq + 1
	}
}

func TestAppendReadAckReopen(t *testing.T) {
	dir := t.TempDir()
	ob := mustOpen(t, dir, Options{})
	first, last := appendN(t, ob, 10, 0)
	if first != 1 || last != 10 {
		t.Fatalf("got seqs %d..%d, want 1..10", first, last)
	}
	first, last = appendN(t, ob, 5, 10)
	if first != 11 || last != 15 {
		t.Fatalf("got seqs %d..%d, want 11..15", first, last)
	}
	recs := readAll(t, ob, 1)
	if len(recs) != 15 {
		t.Fatalf("read %d records, want 15", len(recs))
	}
	for i, r := range recs {
		want := rec(i)
		want.Seq = Seq(i + 1)
		if r.Seq != want.Seq || r.Stream != want.Stream || r.Key != want.Key || r.ID != want.ID ||
			r.Schema != want.Schema || r.SchemaVersion != want.SchemaVersion || r.CapturedAt != want.CapturedAt ||
			!bytes.Equal(r.Data, want.Data) {
			t.Fatalf("record %d = %+v, want %+v", i, r, want)
		}
	}
	epoch := ob.Epoch()
	if epoch == 0 || epoch >= 1<<63 {
		t.Fatalf("epoch %d not a positive 63-bit integer", epoch)
	}
	res, err := ob.Ack(epoch, 7)
	if err != nil || !res.Advanced || res.Watermark != 7 {
		t.Fatalf("Ack(7) = %+v, %v", res, err)
	}
	// Idempotent: the same and lower acks change nothing.
	for _, through := range []Seq{7, 3} {
		res, err = ob.Ack(epoch, through)
		if err != nil || res.Advanced || res.Watermark != 7 {
			t.Fatalf("Ack(%d) again = %+v, %v", through, res, err)
		}
	}
	if _, err := ob.Ack(epoch+1, 9); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("foreign-epoch ack: err = %v, want ErrStaleEpoch", err)
	}
	st := ob.Stats()
	if st.Depth != 8 || st.Head != 15 || st.Watermark != 7 || st.OldestSeq != 8 {
		t.Fatalf("stats = %+v", st)
	}
	if got := readAll(t, ob, 1); len(got) != 8 || got[0].Seq != 8 {
		t.Fatalf("after ack read %d records from %d, want 8 from 8", len(got), got[0].Seq)
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ob.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	ob = mustOpen(t, dir, Options{})
	defer ob.Close()
	if ob.Epoch() != epoch {
		t.Fatalf("epoch after reopen %d, want %d", ob.Epoch(), epoch)
	}
	st = ob.Stats()
	if st.Head != 15 || st.Watermark != 7 || st.Depth != 8 {
		t.Fatalf("stats after reopen = %+v", st)
	}
	first, _ = appendN(t, ob, 1, 15)
	if first != 16 {
		t.Fatalf("first seq after reopen %d, want 16", first)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	ob := mustOpen(t, dir, Options{})
	defer ob.Close()
	_, err := Open(dir, testOpts(Options{}))
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
}

func TestConcurrentProducersReaderAcker(t *testing.T) {
	ob := mustOpen(t, t.TempDir(), Options{})
	defer ob.Close()
	const producers, per = 16, 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[Seq]string{}
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				r := rec(p*per + i)
				first, last, err := ob.Append(context.Background(), []Record{r})
				if err != nil || first != last {
					t.Errorf("Append: %d..%d %v", first, last, err)
					return
				}
				mu.Lock()
				if prev, dup := got[first]; dup {
					t.Errorf("seq %d handed out twice (%s, %s)", first, prev, r.ID)
				}
				got[first] = r.ID
				mu.Unlock()
			}
		}(p)
	}
	// Reader + acker: reads what is there and acknowledges it.
	done := make(chan struct{})
	var seen []Seq
	go func() {
		defer close(done)
		next := Seq(1)
		for next <= producers*per {
			e, recs, err := ob.Read(next, 100, 1<<20, nil)
			if err != nil {
				t.Errorf("Read: %v", err)
				return
			}
			if len(recs) == 0 {
				select {
				case <-ob.Changed():
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			for _, r := range recs {
				if r.Seq != next {
					t.Errorf("read seq %d, want %d", r.Seq, next)
					return
				}
				seen = append(seen, r.Seq)
				next++
			}
			if _, err := ob.Ack(e, next-1); err != nil {
				t.Errorf("Ack: %v", err)
				return
			}
		}
	}()
	wg.Wait()
	<-done
	if len(got) != producers*per || len(seen) != producers*per {
		t.Fatalf("appended %d, read %d, want %d", len(got), len(seen), producers*per)
	}
	st := ob.Stats()
	if st.Depth != 0 || st.UsedBytes != 0 || st.Watermark != producers*per {
		t.Fatalf("stats after everything acked: %+v", st)
	}
	if st.Commits >= producers*per {
		t.Logf("no group commit happened: %d commits for %d appends", st.Commits, producers*per)
	}
}

var _ = vfs.Default
