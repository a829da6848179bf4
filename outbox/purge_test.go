package outbox

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
)

// liveRecordKeys counts the records of epoch e with seq <= through that are
// still in Pebble (not deleted from disk).
func liveRecordKeys(t *testing.T, ob *Outbox, e Epoch, through Seq) int {
	t.Helper()
	it, err := ob.db.NewIter(&pebble.IterOptions{LowerBound: recordKey(e, 1), UpperBound: recordKey(e, through+1)})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPurgeBehindBacklog: a consumer far behind the head acknowledges as it
// reads. Records leave the reads at once and the disk in chunks of about a
// memtable; nothing is lost or repeated, and a reopen finds the same state.
func TestPurgeBehindBacklog(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MemTableSize: 64 << 10}
	ob := mustOpen(t, dir, opts)
	t.Cleanup(func() { ob.Close() })
	appendN(t, ob, 20_000, 0)
	epoch := ob.Epoch()
	next := 20_000
	cursor := Seq(1)
	for i := 0; i < 40; i++ {
		_, recs, err := ob.Read(cursor, 500, 1<<20, nil)
		if err != nil || len(recs) != 500 {
			t.Fatalf("read from %d: %d records, %v", cursor, len(recs), err)
		}
		for j, r := range recs {
			if want := rec(int(cursor) - 1 + j).ID; r.Seq != cursor+Seq(j) || r.ID != want {
				t.Fatalf("record %d: seq %d id %s, want %s", cursor+Seq(j), r.Seq, r.ID, want)
			}
		}
		cursor += 500
		if _, err := ob.Ack(epoch, cursor-1); err != nil {
			t.Fatal(err)
		}
		appendN(t, ob, 500, next)
		next += 500
	}
	if n := ob.chunkPurges.Load(); n == 0 {
		t.Fatal("nothing was purged in chunks behind the backlog")
	}
	st := ob.Stats()
	if st.Watermark != 20_000 || st.Depth != 20_000 {
		t.Fatalf("watermark %d depth %d, want 20000 20000", st.Watermark, st.Depth)
	}
	// Deleted for readers at once: a read from 1 starts after the watermark.
	if _, recs, _ := ob.Read(1, 1, 1<<20, nil); len(recs) != 1 || recs[0].Seq != 20_001 {
		t.Fatalf("read from 1 after acks: %v", recs)
	}
	// Deleted from disk in chunks: at most a memtable's worth is left.
	left := liveRecordKeys(t, ob, epoch, 20_000)
	if left > 2_000 {
		t.Fatalf("%d acknowledged records left on disk, want at most the chunk in progress (< 2000)", left)
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}

	ob = mustOpen(t, dir, opts)
	t.Cleanup(func() { ob.Close() })
	st = ob.Stats()
	if st.Head != 40_000 || st.Watermark != 20_000 {
		t.Fatalf("after reopen head %d watermark %d, want 40000 20000", st.Head, st.Watermark)
	}
	got := readAll(t, ob, 1)
	if len(got) != 20_000 || got[0].Seq != 20_001 || got[0].ID != rec(20_000).ID {
		t.Fatalf("after reopen read %d records from %d", len(got), got[0].Seq)
	}
	// Caught up: what is left is deleted from disk with the acks.
	if _, err := ob.Ack(epoch, 40_000); err != nil {
		t.Fatal(err)
	}
	// The chunk is deleted from disk right after the ack is answered.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		left := liveRecordKeys(t, ob, epoch, 40_000)
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records left on disk after everything was acknowledged", left)
		}
	}
	ob.Close()
}

// TestFormat1Upgrade: a store of format 1 (the meta at 'm', rewritten with
// every batch) opens, keeps its records and acknowledgements, and is
// refused by a format-1 binary afterwards.
func TestFormat1Upgrade(t *testing.T) {
	dir := t.TempDir()
	ob := mustOpen(t, dir, Options{})
	appendN(t, ob, 10, 0)
	epoch := ob.Epoch()
	if _, err := ob.Ack(epoch, 3); err != nil {
		t.Fatal(err)
	}
	ob.Close()

	// Turn it into format 1.
	db, err := pebble.Open(filepath.Join(dir, "db"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, closer, err := db.Get(metaKey)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeMeta(v)
	closer.Close()
	if err != nil {
		t.Fatal(err)
	}
	m.format = 1
	m.purged, m.purgedCum = 0, 0
	v1 := m.encode(nil)
	v1 = v1[:len(v1)-2] // format 1 has no purged position (two one-byte zeros here)
	if err := db.Set(formatKey, v1, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(metaKey, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()

	ob = mustOpen(t, dir, Options{})
	st := ob.Stats()
	if st.Epoch != epoch || st.Head != 10 || st.Watermark != 3 {
		t.Fatalf("after upgrade epoch %d head %d watermark %d, want %d 10 3", st.Epoch, st.Head, st.Watermark, epoch)
	}
	if got := readAll(t, ob, 1); len(got) != 7 || got[0].Seq != 4 || got[0].ID != rec(3).ID {
		t.Fatalf("after upgrade read %v", got)
	}
	if first, _, err := ob.Append(context.Background(), []Record{rec(10)}); err != nil || first != 11 {
		t.Fatalf("append after upgrade: seq %d, %v", first, err)
	}
	ob.Close()

	// What a format-1 binary reads at 'm' now: a newer format.
	db, err = pebble.Open(filepath.Join(dir, "db"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, closer, err = db.Get(formatKey)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := decodeMeta(v); m.format != 2 {
		t.Fatalf("marker says format %d, want 2", m.format)
	}
	closer.Close()
	db.Close()
	ob = mustOpen(t, dir, Options{})
	if st := ob.Stats(); st.Head != 11 || st.Watermark != 3 {
		t.Fatalf("second open: head %d watermark %d", st.Head, st.Watermark)
	}
	ob.Close()
}
