package outbox

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
)

// The benchmarks of issue 2, section 4. Run them together, several times,
// and compare medians: the disk is shared and its sync latency varies.
//
//	go test -run '^$' -bench . -count 5 ./outbox/

// benchRecord is a 200-byte record: a sensor reading of 150 bytes of CBOR
// data plus stream, key, schema and the fixed fields.
func benchRecord(i int) Record {
	return Record{
		Stream:        "temps",
		Key:           fmt.Sprintf("sensor-%03d", i%1000),
		Schema:        "reading",
		SchemaVersion: 1,
		CapturedAt:    time.Now().UnixNano(),
		Data:          make([]byte, 150),
	}
}

func reportRate(b *testing.B, records int) {
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppend: durable (fsync) appends by concurrent producers, each
// appending `records` records per call and waiting for the call to return
// before the next. Producers build their records once: allocs/op is the
// outbox's own. records/commit is how many records shared a synced batch;
// us/commit is the wall time per group commit (a sync plus the rest).
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct{ producers, per int }{{1, 1}, {8, 1}, {64, 1}, {8, 100}} {
		b.Run(fmt.Sprintf("producers=%d/records=%d", c.producers, c.per), func(b *testing.B) {
			ob := mustOpen(b, b.TempDir(), Options{MaxBytes: 8 << 30})
			defer ob.Close()
			var next atomic.Int64
			total := int64(b.N)
			recs := make([][]Record, c.producers)
			for p := range recs {
				recs[p] = make([]Record, c.per)
				for i := range recs[p] {
					recs[p][i] = benchRecord(p*c.per + i)
				}
			}
			commits0 := ob.Stats().Commits
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for p := 0; p < c.producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						n := next.Add(int64(c.per))
						if n-int64(c.per) >= total {
							return
						}
						if _, _, err := ob.Append(context.Background(), recs[p]); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			st := ob.Stats()
			commits := float64(st.Commits - commits0)
			reportRate(b, int(st.Head))
			b.ReportMetric(float64(st.Head)/commits, "records/commit")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/commits, "us/commit")
		})
	}
}

// syncLatencies reports the mean and median of a set of latencies.
func syncLatencies(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	b.ReportMetric(float64(sum.Microseconds())/float64(len(lat)), "mean-us")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds()), "p90-us")
}

// BenchmarkPebbleSyncedSet is the disk's floor: one synced Set per record.
// mean-us, p50-us and p90-us describe the latency of one synced Set, which
// is one WAL fdatasync.
func BenchmarkPebbleSyncedSet(b *testing.B) {
	db, err := pebble.Open(b.TempDir(), &pebble.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	r := benchRecord(0)
	v := appendRecordValue(nil, &r, 0, 0)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		if err := db.Set(recordKey(1, Seq(i)), v, pebble.Sync); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	reportRate(b, b.N)
	syncLatencies(b, lat)
}

// BenchmarkPebbleSyncedBatch1000 is the ceiling: one synced 1,000-record
// batch after another, from one goroutine.
func BenchmarkPebbleSyncedBatch1000(b *testing.B) {
	db, err := pebble.Open(b.TempDir(), &pebble.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	r := benchRecord(0)
	v := appendRecordValue(nil, &r, 0, 0)
	var lat []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 1000 {
		t := time.Now()
		batch := db.NewBatch()
		for j := i; j < i+1000 && j < b.N; j++ {
			_ = batch.Set(recordKey(1, Seq(j)), v, nil)
		}
		if err := batch.Commit(pebble.Sync); err != nil {
			b.Fatal(err)
		}
		batch.Close()
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	reportRate(b, b.N)
	syncLatencies(b, lat)
}

// BenchmarkCycle: a queue in steady state. Each cycle appends 100 records
// at the head (one synced commit), reads the 100 oldest unacknowledged
// records and acknowledges them, so the depth stays constant: 0 (the
// consumer reads what was just appended) or 1,000,000 records (the consumer
// reads 1,000,000 records behind the head, just above every range deleted
// so far). The per-record cost must not grow with the backlog: reads must
// not walk deleted ranges (pebble#3744), acks must not read records back,
// and deleting acknowledged records must not make Pebble rewrite the
// backlog.
//
// The two outboxes run interleaved, a cycle of each in turn, so that both
// see the same disk: its sync latency drifts too much over minutes for runs
// one after the other to compare. ns/op is per record of each. The backlog
// is built once (100 synced 10,000-record appends) and stays in place
// across the b.N rounds.
func BenchmarkCycle(b *testing.B) {
	const backlog = 1_000_000
	type side struct {
		name                 string
		ob                   *Outbox
		cursor               Seq
		buf                  []Record
		tAppend, tRead, tAck time.Duration
		written0             uint64
	}
	recs := make([]Record, 10_000)
	for i := range recs {
		recs[i] = benchRecord(i)
	}
	batch := recs[:100]
	var sides []*side
	for _, depth := range []int{0, backlog} {
		ob := mustOpen(b, b.TempDir(), Options{MaxBytes: 8 << 30})
		defer ob.Close()
		for done := 0; done < depth; done += len(recs) {
			if _, _, err := ob.Append(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
		}
		if depth > 0 {
			// Steady state: the backlog sits in sstables and the compactions
			// its writing caused are done.
			settle(b, ob)
		}
		sides = append(sides, &side{name: map[int]string{0: "empty", backlog: "backlog"}[depth], ob: ob, cursor: 1})
	}
	cycle := func(b *testing.B, s *side) {
		t0 := time.Now()
		if _, _, err := s.ob.Append(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		_, got, err := s.ob.Read(s.cursor, len(batch), 1<<20, s.buf[:0])
		if err != nil || len(got) != len(batch) {
			b.Fatalf("%s: read %d records from %d: %v", s.name, len(got), s.cursor, err)
		}
		s.cursor = got[len(got)-1].Seq + 1
		s.buf = got
		t2 := time.Now()
		if _, err := s.ob.Ack(s.ob.Epoch(), s.cursor-1); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		s.tAppend += t1.Sub(t0)
		s.tRead += t2.Sub(t1)
		s.tAck += t3.Sub(t2)
	}
	b.Run(fmt.Sprintf("empty-vs-backlog=%d", backlog), func(b *testing.B) {
		for _, s := range sides {
			s.tAppend, s.tRead, s.tAck = 0, 0, 0
			s.written0 = s.ob.Stats().DiskBytesWritten
		}
		cycles := 0
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += len(batch) {
			// Alternate which goes first.
			cycle(b, sides[cycles%2])
			cycle(b, sides[1-cycles%2])
			cycles++
		}
		b.StopTimer()
		var perRec [2]float64
		for i, s := range sides {
			total := s.tAppend + s.tRead + s.tAck
			perRec[i] = float64(total.Nanoseconds()) / float64(cycles*len(batch))
			b.ReportMetric(perRec[i], s.name+"-ns/rec")
			b.ReportMetric(float64(s.tAppend.Microseconds())/float64(cycles), s.name+"-append-us/cycle")
			b.ReportMetric(float64(s.tRead.Microseconds())/float64(cycles), s.name+"-read-us/cycle")
			b.ReportMetric(float64(s.tAck.Microseconds())/float64(cycles), s.name+"-ack-us/cycle")
			// What Pebble wrote (WAL, flushes, compactions) per record:
			// deleting behind a backlog must not make it rewrite the backlog.
			b.ReportMetric(float64(s.ob.Stats().DiskBytesWritten-s.written0)/float64(cycles*len(batch)), s.name+"-disk-B/rec")
			if st := s.ob.Stats(); st.Depth != uint64(map[string]int{"empty": 0, "backlog": backlog}[s.name]) {
				b.Fatalf("%s: depth %d", s.name, st.Depth)
			}
		}
		b.ReportMetric(perRec[1]/perRec[0], "backlog/empty")
	})
}

// settle flushes the memtable and waits for background compactions to end.
func settle(b *testing.B, ob *Outbox) {
	if err := ob.db.Flush(); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		m := ob.db.Metrics()
		if m.Compact.NumInProgress == 0 && m.Compact.EstimatedDebt == 0 && m.Flush.NumInProgress == 0 {
			return
		}
	}
	b.Fatal("compactions did not settle in 5 minutes")
}

// procWriteBytes returns the bytes this process caused to be written to the
// block layer (/proc/self/io write_bytes): page-granular, so it counts a
// 4 KiB page again each time a sync writes it; journal writes of the file
// system are not included. ok is false where /proc/self/io is missing.
func procWriteBytes() (n int64, ok bool) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, found := strings.CutPrefix(sc.Text(), "write_bytes: "); found {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// BenchmarkDiskBytesPerPayloadByte: a healthy consumer acknowledges every
// 100-record append right away. disk-bytes/payload-byte is what Pebble
// wrote (WAL, flushes, compactions) per byte of record data; the payload is
// the 150 bytes of data of each 200-byte record. dev-bytes/payload-byte is
// what the process sent to the block device (page-granular, see
// procWriteBytes): the figure that wears flash.
func BenchmarkDiskBytesPerPayloadByte(b *testing.B) {
	for _, mode := range []Durability{Fsync, Spill} {
		b.Run(string(mode), func(b *testing.B) {
			ob := mustOpen(b, b.TempDir(), Options{Durability: mode, MaxBytes: 8 << 30})
			defer ob.Close()
			batch := make([]Record, 100)
			for j := range batch {
				batch[j] = benchRecord(j)
			}
			var payload int64
			before := ob.Stats().DiskBytesWritten
			dev0, devOK := procWriteBytes()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(batch) {
				for j := range batch {
					payload += int64(len(batch[j].Data))
				}
				_, last, err := ob.Append(context.Background(), batch)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ob.Ack(ob.Epoch(), last); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			written := ob.Stats().DiskBytesWritten - before
			b.ReportMetric(float64(written)/float64(payload), "disk-bytes/payload-byte")
			b.ReportMetric(float64(written)/float64(b.N), "disk-bytes/record")
			if dev1, ok := procWriteBytes(); ok && devOK {
				b.ReportMetric(float64(dev1-dev0)/float64(payload), "dev-bytes/payload-byte")
			}
			reportRate(b, b.N)
		})
	}
}
