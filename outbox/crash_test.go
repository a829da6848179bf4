package outbox

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// crash simulates a power cut on a strict in-memory filesystem: everything not
// synced is lost.
func crash(t *testing.T, fs *vfs.MemFS, ob *Outbox) {
	t.Helper()
	fs.SetIgnoreSyncs(true)
	_ = ob.Close()
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
}

// TestCrashConsistency cuts the power at random moments under concurrent
// appends and acks: every append that returned is there after the restart,
// seqs are contiguous, and no seq or epoch is handed out twice.
func TestCrashConsistency(t *testing.T) {
	t.Run("acked-promptly", func(t *testing.T) {
		crashConsistency(t, Options{}, func(st Stats, intn func(int) int) Seq {
			if st.Head > st.Watermark+10 {
				return st.Watermark + Seq(intn(10))
			}
			return 0
		})
	})
	// Acks 2,000 records behind the head with 64 KiB memtables: records are
	// deleted from disk later than for readers, in isolated chunks
	// (purgeIsolated), and crashes fall between the two.
	t.Run("behind-a-backlog", func(t *testing.T) {
		n := crashConsistency(t, Options{MemTableSize: 64 << 10}, func(st Stats, intn func(int) int) Seq {
			if st.Head > st.Watermark+2000 {
				return st.Head - 2000 + Seq(intn(10))
			}
			return 0
		})
		if n == 0 {
			t.Fatal("no chunk was purged behind the backlog: the test does not test what it says")
		}
		t.Logf("%d chunks purged", n)
	})
}

// crashConsistency runs the test with an acker that acknowledges through
// ackThrough (nothing when 0), and returns how many chunks were purged by
// purgeIsolated.
func crashConsistency(t *testing.T, opts Options, ackThrough func(st Stats, intn func(int) int) Seq) (chunkPurges uint64) {
	rounds := 25
	if testing.Short() {
		rounds = 5
	}
	fs := vfs.NewStrictMem()
	opts.FS = fs
	ob := mustOpen(t, "/ob", opts)
	epoch := ob.Epoch()
	// seq -> ID of every append that returned before its crash.
	durable := map[Seq]string{}
	var acked Seq
	rng := rand.New(rand.NewPCG(1, 2))
	var rngMu sync.Mutex
	intn := func(n int) int {
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.IntN(n)
	}
	next := 0
	for round := 0; round < rounds; round++ {
		var crashed atomic.Bool
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for p := 0; p < 8; p++ {
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					n := 1 + intn(5)
					recs := make([]Record, n)
					for j := range recs {
						recs[j] = rec(next)
						next++
					}
					mu.Unlock()
					first, _, err := ob.Append(context.Background(), recs)
					if err != nil {
						return // closed by the crash
					}
					if !crashed.Load() {
						mu.Lock()
						for j := range recs {
							s := first + Seq(j)
							if prev, ok := durable[s]; ok {
								t.Errorf("round %d: seq %d handed out twice (%s, %s)", round, s, prev, recs[j].ID)
							}
							durable[s] = recs[j].ID
						}
						mu.Unlock()
					}
				}
			}(p)
		}
		// An acker now and then.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(intn(3)) * time.Millisecond):
				}
				st := ob.Stats()
				if through := ackThrough(st, intn); through > 0 {
					ob.Ack(st.Epoch, through)
				}
			}
		}()
		time.Sleep(time.Duration(5+intn(30)) * time.Millisecond)
		crashed.Store(true)
		fs.SetIgnoreSyncs(true)
		close(stop)
		wg.Wait()
		_ = ob.Close()
		fs.ResetToSyncedState()
		fs.SetIgnoreSyncs(false)
		chunkPurges += ob.chunkPurges.Load()

		ob = mustOpen(t, "/ob", opts)
		if ob.Epoch() != epoch {
			t.Fatalf("round %d: epoch changed from %d to %d after a crash", round, epoch, ob.Epoch())
		}
		st := ob.Stats()
		if st.Watermark < acked {
			// An ack is not synced on its own: it may be lost; the sink dedups.
			t.Logf("round %d: watermark went back from %d to %d", round, acked, st.Watermark)
		}
		acked = st.Watermark
		recs := readAll(t, ob, 1)
		for i := 1; i < len(recs); i++ {
			if recs[i].Seq != recs[i-1].Seq+1 {
				t.Fatalf("round %d: hole between %d and %d", round, recs[i-1].Seq, recs[i].Seq)
			}
		}
		have := map[Seq]string{}
		for _, r := range recs {
			have[r.Seq] = r.ID
		}
		for s, id := range durable {
			if s <= st.Watermark {
				continue
			}
			if have[s] != id {
				t.Fatalf("round %d: durable record %d (%s) missing or changed after crash: got %q", round, s, id, have[s])
			}
		}
		if len(recs) > 0 && recs[len(recs)-1].Seq != st.Head {
			t.Fatalf("round %d: last record %d, head %d", round, recs[len(recs)-1].Seq, st.Head)
		}
		// Seqs above the new head were never durable: forget them so a reuse
		// of those (never acknowledged, never visible) numbers is allowed.
		for s := range durable {
			if s > st.Head {
				t.Fatalf("round %d: durable seq %d above head %d", round, s, st.Head)
			}
		}
	}
	chunkPurges += ob.chunkPurges.Load()
	ob.Close()
	return chunkPurges
}

// TestSpillCrashReportsLoss: in spill mode a crash loses what was only in
// memory; the reserved block becomes a dropped range and seqs move past it.
func TestSpillCrashReportsLoss(t *testing.T) {
	fs := vfs.NewStrictMem()
	opts := Options{FS: fs, Durability: Spill, SeqBlock: 100, SpillDelay: time.Hour}
	ob := mustOpen(t, "/ob", opts)
	appendN(t, ob, 10, 0)
	if got := readAll(t, ob, 1); len(got) != 10 {
		t.Fatalf("spill: read %d records from memory, want 10", len(got))
	}
	crash(t, fs, ob)
	ob = mustOpen(t, "/ob", opts)
	st := ob.Stats()
	if len(st.Drops) != 1 || st.Drops[0] != (Range{1, 110}) || st.Head != 110 {
		t.Fatalf("after spill crash: drops %v head %d; want [1..110] 110", st.Drops, st.Head)
	}
	first, _ := appendN(t, ob, 1, 10)
	if first != 111 {
		t.Fatalf("first seq after crash %d, want 111 (never reuse a reserved seq)", first)
	}
	// A clean close writes memory to disk and releases the reservation.
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}
	ob = mustOpen(t, "/ob", opts)
	defer ob.Close()
	st = ob.Stats()
	if st.Head != 111 || len(st.Drops) != 1 {
		t.Fatalf("after clean close: head %d drops %v; want 111 and the old drop only", st.Head, st.Drops)
	}
	if got := readAll(t, ob, 1); len(got) != 1 || got[0].Seq != 111 {
		t.Fatalf("after clean close read %v", got)
	}
}

func TestSpillHealthyLinkWritesNothing(t *testing.T) {
	ob := mustOpen(t, t.TempDir(), Options{Durability: Spill, SeqBlock: 1 << 20})
	defer ob.Close()
	appendN(t, ob, 1, 0) // the first reservation
	before := ob.Stats().DiskBytesWritten
	for i := 0; i < 50; i++ {
		first, last := appendN(t, ob, 100, 1+i*100)
		if _, err := ob.Ack(ob.Epoch(), last); err != nil {
			t.Fatal(err)
		}
		_ = first
	}
	after := ob.Stats().DiskBytesWritten
	if after != before {
		t.Fatalf("spill mode with a healthy consumer wrote %d bytes to disk, want 0", after-before)
	}
}

func TestSpillWritesWhenLinkIsSlow(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Durability: Spill, SpillDelay: 100 * time.Millisecond}
	ob := mustOpen(t, dir, opts)
	appendN(t, ob, 20, 0)
	deadline := time.Now().Add(5 * time.Second)
	for ob.Stats().MemoryRecords != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("records not spilled after the delay: %+v", ob.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := readAll(t, ob, 1); len(got) != 20 {
		t.Fatalf("read %d spilled records, want 20", len(got))
	}
	// Memory over budget spills at once.
	ob.Close()
	opts.SpillDelay = time.Hour
	opts.SpillMemory = 4 << 10
	ob = mustOpen(t, dir, opts)
	defer ob.Close()
	appendN(t, ob, 200, 20)
	if st := ob.Stats(); st.MemoryBytes > opts.SpillMemory {
		t.Fatalf("memory %d over budget %d", st.MemoryBytes, opts.SpillMemory)
	}
	if got := readAll(t, ob, 1); len(got) != 220 {
		t.Fatalf("read %d records, want 220", len(got))
	}
}

// TestSpillCrashKeepsSpilledRecords: records spilled to disk before a crash
// stay readable; only what was in memory is reported lost, as a dropped range
// after them; acknowledging through that range works and frees their bytes.
func TestSpillCrashKeepsSpilledRecords(t *testing.T) {
	fs := vfs.NewStrictMem()
	opts := Options{FS: fs, Durability: Spill, SeqBlock: 100, SpillDelay: 50 * time.Millisecond}
	ob := mustOpen(t, "/ob", opts)
	appendN(t, ob, 10, 0) // 1..10, spilled after 50ms
	waitFor(t, "spilled", func() bool { return ob.Stats().MemoryRecords == 0 })
	ob.Close()
	opts.SpillDelay = time.Hour
	ob = mustOpen(t, "/ob", opts)
	appendN(t, ob, 5, 10) // 11..15, only in memory
	crash(t, fs, ob)
	ob = mustOpen(t, "/ob", opts)
	defer ob.Close()
	st := ob.Stats()
	if len(st.Drops) != 1 || st.Drops[0].First != 11 {
		t.Fatalf("drops %v, want one range from 11", st.Drops)
	}
	recs := readAll(t, ob, 1)
	if len(recs) != 10 || recs[0].Seq != 1 || recs[9].Seq != 10 || recs[9].ID != rec(9).ID {
		t.Fatalf("after the crash read %d records (%v...), want the 10 spilled ones", len(recs), recs)
	}
	first, _ := appendN(t, ob, 1, 100)
	if first != st.Drops[0].Last+1 {
		t.Fatalf("next seq %d, want %d", first, st.Drops[0].Last+1)
	}
	if got := readAll(t, ob, 11); len(got) != 1 || got[0].Seq != first {
		t.Fatalf("read from 11: %v, want the new record %d", got, first)
	}
	// The sink applies 1..10, counts the hole as lost, applies the new one.
	if _, err := ob.Ack(ob.Epoch(), st.Drops[0].Last); err != nil {
		t.Fatal(err)
	}
	if _, err := ob.Ack(ob.Epoch(), first); err != nil {
		t.Fatal(err)
	}
	st = ob.Stats()
	if st.Depth != 0 || st.UsedBytes != 0 || len(st.Drops) != 0 {
		t.Fatalf("after acking everything: depth %d used %d drops %v", st.Depth, st.UsedBytes, st.Drops)
	}
}
