package apply

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/broker"
	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/internal/testenv"
	"github.com/edgesync/edgesync/transport/wire"
)

// TestPostgresConcurrent applies reordered and duplicated batches of several
// devices, each with two epochs, from several goroutines at once, as sinks in
// one shared subscription group would: every record must be applied exactly
// once and every watermark must end at the last seq.
func TestPostgresConcurrent(t *testing.T) {
	s := openPostgresT(t, StoreConfig{GapWait: 20 * time.Millisecond, MaxConns: 8})
	const (
		devices   = 4
		batchSize = 25
		workers   = 8
	)
	epochs := []struct {
		epoch uint64
		n     uint64
	}{{1 << 40, 600}, {77, 300}}
	p := statePolicy

	type item struct {
		device string
		b      *wire.Batch
	}
	var queue []item
	total := 0
	for d := range devices {
		dev := fmt.Sprintf("gw-%d", d)
		for _, e := range epochs {
			for first := uint64(1); first <= e.n; first += batchSize {
				var rs []wire.Record
				for s := first; s < first+batchSize; s++ {
					r := rec(t, s, "temps", "k")
					if s%2 == 0 {
						r = rec(t, s, "inv", fmt.Sprintf("k%d", s%10))
					}
					r.ID = fmt.Sprintf("id-%d-%d", e.epoch, s)
					rs = append(rs, r)
				}
				b := batch(e.epoch, rs...)
				b.Device = dev
				queue = append(queue, item{dev, b})
				total += len(rs)
				if rand.IntN(4) == 0 { // delivered twice
					queue = append(queue, item{dev, b})
				}
			}
		}
	}
	rand.Shuffle(len(queue), func(i, j int) { queue[i], queue[j] = queue[j], queue[i] })

	var (
		mu            sync.Mutex
		pending       = len(queue)
		applied, dups atomic.Int64
		gaps, waited  atomic.Int64
		firstErr      error
		ctx, cancel   = context.WithTimeout(context.Background(), 2*time.Minute)
		wg            sync.WaitGroup
		take          func() (item, bool)
		done          func(it item, resend bool)
	)
	defer cancel()
	take = func() (item, bool) {
		for {
			mu.Lock()
			if pending == 0 || firstErr != nil {
				mu.Unlock()
				return item{}, false
			}
			if len(queue) > 0 {
				i := rand.IntN(len(queue))
				it := queue[i]
				queue[i] = queue[len(queue)-1]
				queue = queue[:len(queue)-1]
				mu.Unlock()
				return it, true
			}
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}
	done = func(it item, resend bool) {
		mu.Lock()
		defer mu.Unlock()
		if resend {
			queue = append(queue, it)
			return
		}
		pending--
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				it, ok := take()
				if !ok {
					return
				}
				res, err := s.Apply(ctx, it.device, it.b, p)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				applied.Add(int64(res.Applied))
				dups.Add(int64(res.Duplicates))
				if res.Attempts > 1 {
					waited.Add(1)
				}
				// A gap is answered by the agent resending from the
				// watermark; here the same batch comes again.
				if res.Status == wire.StatusGap {
					gaps.Add(1)
				}
				done(it, res.Status == wire.StatusGap)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("apply: %v", firstErr)
	}
	t.Logf("%d records, %d duplicates skipped, %d gap answers, %d batches waited or retried",
		applied.Load(), dups.Load(), gaps.Load(), waited.Load())
	if got := applied.Load(); got != int64(total) {
		t.Errorf("applied %d records, want each of %d once", got, total)
	}
	var dbDups uint64
	for d := range devices {
		dev := fmt.Sprintf("gw-%d", d)
		rows := device(t, s, dev)
		if len(rows) != 2 {
			t.Fatalf("%s: %d epochs, want 2", dev, len(rows))
		}
		gens := map[int64]uint64{}
		for _, r := range rows {
			dbDups += r.Duplicates
			gens[r.EpochGen] = r.Epoch
			var n uint64
			for _, e := range epochs {
				if e.epoch == r.Epoch {
					n = e.n
				}
			}
			if r.AppliedThrough != n || r.Lost != 0 {
				t.Errorf("%s epoch %d: applied_through %d lost %d, want %d 0", dev, r.Epoch, r.AppliedThrough, r.Lost, n)
			}
			var odd []int64
			for s := int64(1); s <= int64(n); s += 2 {
				odd = append(odd, s)
			}
			if got := logSeqs(t, s, dev, r.Epoch); !slices.Equal(got, odd) {
				t.Errorf("%s epoch %d: log seqs %v, want the odd ones up to %d", dev, r.Epoch, got, n)
			}
		}
		if len(gens) != 2 || gens[1] == 0 || gens[2] == 0 {
			t.Fatalf("%s: epoch_gens %v, want 1 and 2", dev, gens)
		}
		// State rows come from the epoch seen second, at the last seq of
		// each key.
		newest := gens[2]
		var n uint64
		for _, e := range epochs {
			if e.epoch == newest {
				n = e.n
			}
		}
		for k := uint64(0); k < 10; k += 2 {
			last := n - (n-k)%10
			row, ok := state(t, s, dev, "inv", fmt.Sprintf("k%d", k))
			if !ok || row.epoch != int64(newest) || row.seq != int64(last) || row.epochGen != 2 {
				t.Errorf("%s key k%d: %+v %v, want epoch %d seq %d", dev, k, row, ok, newest, last)
			}
		}
	}
	if dbDups != uint64(dups.Load()) {
		t.Errorf("duplicates in edgesync_devices %d, in results %d", dbDups, dups.Load())
	}
	if n := count(t, s, "edgesync_state_ids"); n != total/2 {
		t.Errorf("state ids %d, want %d", n, total/2)
	}
}

// TestPostgresGapWait: a batch that arrives before the one in front of it
// waits for it instead of answering gap.
func TestPostgresGapWait(t *testing.T) {
	s := openPostgresT(t, StoreConfig{GapWait: 5 * time.Second})
	ctx := context.Background()
	b1 := batch(7, recs(t, 1, 10, "temps")...)
	b2 := batch(7, recs(t, 11, 20, "temps")...)
	waiting := make(chan struct{})
	var once sync.Once
	s.onGapWait = func() { once.Do(func() { close(waiting) }) }
	got := make(chan Result, 1)
	go func() {
		res, err := s.Apply(ctx, "gw-1", b2, nil)
		if err != nil {
			t.Errorf("apply b2: %v", err)
		}
		got <- res
	}()
	select {
	case <-waiting: // b2 found the gap and waits
	case res := <-got:
		t.Fatalf("b2 returned without waiting for the gap: %+v", res)
	}
	checkResult(t, mustApply(t, s, b1, nil), want{through: 10, applied: 10})
	res := <-got
	checkResult(t, res, want{through: 20, applied: 10})
	if res.Attempts < 2 {
		t.Errorf("b2 took %d attempts, want it to have waited", res.Attempts)
	}

	// A real gap is answered once GapWait has passed.
	s2 := openPostgresT(t, StoreConfig{GapWait: 150 * time.Millisecond})
	start := time.Now()
	res = mustApply(t, s2, batch(7, recs(t, 5, 6, "temps")...), nil)
	checkResult(t, res, want{through: 0, status: wire.StatusGap})
	if d := time.Since(start); d < 150*time.Millisecond || res.Attempts < 2 {
		t.Errorf("gap answered after %v and %d attempts, want after GapWait", d, res.Attempts)
	}
	// A context that ends while waiting ends the wait.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	s3 := openPostgresT(t, StoreConfig{GapWait: time.Minute})
	if _, err := s3.Apply(cctx, "gw-1", batch(7, recs(t, 5, 6, "temps")...), nil); err == nil {
		t.Error("apply with an ended context: no error")
	}
}

// TestSQLiteNoGapWait: SQLite has one sink, so a gap is answered at once.
func TestSQLiteNoGapWait(t *testing.T) {
	s := openSQLiteT(t, StoreConfig{GapWait: time.Minute})
	res := mustApply(t, s, batch(7, recs(t, 5, 6, "temps")...), nil)
	checkResult(t, res, want{through: 0, status: wire.StatusGap})
	if res.Attempts != 1 {
		t.Errorf("attempts %d, want 1", res.Attempts)
	}
}

// TestPostgresEpochGenRace: first batches of many epochs of one device,
// applied at once, get distinct epoch_gens 1..n.
func TestPostgresEpochGenRace(t *testing.T) {
	s := openPostgresT(t, StoreConfig{MaxConns: 8})
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Apply(context.Background(), "gw-1", batch(uint64(100+i), recs(t, 1, 3, "temps")...), nil); err != nil {
				t.Errorf("apply epoch %d: %v", 100+i, err)
			}
		}()
	}
	wg.Wait()
	rows := device(t, s, "gw-1")
	var gens []int64
	for _, r := range rows {
		gens = append(gens, r.EpochGen)
	}
	if want := seqRange(1, n); !slices.Equal(gens, want) {
		t.Errorf("epoch_gens %v, want %v", gens, want)
	}
}

// TestPostgresPasswordFile: the password comes from the file (its trailing
// newline dropped), not the URL. The test server trusts loopback clients, so
// what is checked is the configuration the connections are made with.
func TestPostgresPasswordFile(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(context.Background(), pg.DSN(), pw)
	if err != nil {
		t.Fatalf("open with password file: %v", err)
	}
	defer s.Close()
	if got := s.be.(*pgBackend).pool.cfg.Password; got != "s3cret" {
		t.Errorf("password %q, want the file's", got)
	}
	mustApply(t, s, batch(7, recs(t, 1, 2, "temps")...), nil)
	_, err = OpenStore(context.Background(), pg.DSN(), filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "password_file") {
		t.Errorf("missing password file: %v, want an error naming password_file", err)
	}
}

// TestSinkPostgresRestart: the database crashes under a running sink. The
// sink acknowledges nothing while it is down, retries, and once it is back
// applies what waited, exactly once; a resend of what was applied before
// the crash changes nothing.
func TestSinkPostgresRestart(t *testing.T) {
	pg := testenv.Postgres(t)
	b, err := broker.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	cfg := &SinkConfig{SinkID: "s1", Broker: mqttx.BrokerConfig{URL: b.URL(), ReconnectMin: 50 * time.Millisecond}, Store: DefaultStoreConfig()}
	cfg.Store.URL = pg.DSN()
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := startSinkRig(t, b, cfg)
	acked := func(through uint64) func() bool {
		return func() bool { a := r.lastAck("gw-1"); return a != nil && a.AppliedThrough == through }
	}
	r.publish("gw-1", testBatch(t, "gw-1", 7, 1, 100, "temp", 1))
	waitUntil(t, "ack through 100", acked(100))

	pg.Kill()
	r.publish("gw-1", testBatch(t, "gw-1", 7, 101, 100, "temp", 2))
	waitUntil(t, "a store error", func() bool { return r.sink.StoreErrors.Load() > 0 })
	time.Sleep(300 * time.Millisecond)
	if a := r.lastAck("gw-1"); a.AppliedThrough != 100 {
		t.Fatalf("acknowledged through %d while the database was down", a.AppliedThrough)
	}
	pg.Start()
	waitUntil(t, "ack through 200 after the restart", acked(200))
	r.publish("gw-1", testBatch(t, "gw-1", 7, 1, 100, "temp", 3))
	waitUntil(t, "the resend answered", func() bool { a := r.lastAck("gw-1"); return a != nil && a.InReplyTo == 3 })
	if got := logSeqs(t, r.store, "gw-1", 7); !slices.Equal(got, seqRange(1, 200)) {
		t.Errorf("edgesync_log holds %d rows, want seqs 1..200 once each", len(got))
	}
}

// TestPostgresPoolAfterRestart: after the server restarted, the pool's idle
// connections are dead; the next apply finds that out with a ping and
// succeeds at the first try.
func TestPostgresPoolAfterRestart(t *testing.T) {
	pg := testenv.Postgres(t)
	s := openT(t, StoreConfig{URL: pg.DSN(), MaxConns: 4})
	mustApply(t, s, batch(7, recs(t, 1, 10, "temps")...), nil)
	pg.Stop()
	pg.Start()
	time.Sleep(pingIdle + 100*time.Millisecond)
	mustApply(t, s, batch(7, recs(t, 11, 20, "temps")...), nil)
	if got := logSeqs(t, s, "gw-1", 7); !slices.Equal(got, seqRange(1, 20)) {
		t.Errorf("seqs %v, want 1..20", got)
	}
}
