package outbox

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
)

// benchRecord is a 200-byte record: a sensor reading of about 150 bytes of
// CBOR data plus stream, key, id and schema.
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

// BenchmarkAppend: durable (fsync) appends by concurrent producers.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct{ producers, per int }{{1, 1}, {8, 1}, {64, 1}, {8, 100}} {
		b.Run(fmt.Sprintf("producers=%d/records=%d", c.producers, c.per), func(b *testing.B) {
			ob := mustOpen(b, b.TempDir(), Options{MaxBytes: 8 << 30})
			defer ob.Close()
			b.ReportAllocs()
			var next atomic.Int64
			total := int64(b.N)
			b.ResetTimer()
			var wg sync.WaitGroup
			for p := 0; p < c.producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					recs := make([]Record, c.per)
					for {
						n := next.Add(int64(c.per))
						if n-int64(c.per) >= total {
							return
						}
						for i := range recs {
							recs[i] = benchRecord(int(n) + i)
						}
						if _, _, err := ob.Append(context.Background(), recs); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			reportRate(b, b.N)
			st := ob.Stats()
			b.ReportMetric(float64(st.Head)/float64(st.Commits), "records/commit")
		})
	}
}

// BenchmarkPebbleSyncedSet is the disk's floor: one synced Set per record.
func BenchmarkPebbleSyncedSet(b *testing.B) {
	db, err := pebble.Open(b.TempDir(), &pebble.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	r := benchRecord(0)
	v := appendRecordValue(nil, &r, 0, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := db.Set(recordKey(1, Seq(i)), v, pebble.Sync); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N)
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
	b.ResetTimer()
	for i := 0; i < b.N; i += 1000 {
		batch := db.NewBatch()
		for j := i; j < i+1000 && j < b.N; j++ {
			_ = batch.Set(recordKey(1, Seq(j)), v, nil)
		}
		if err := batch.Commit(pebble.Sync); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	reportRate(b, b.N)
}

// BenchmarkCycle: append 100 records, read them, acknowledge them; with an
// empty outbox and behind a backlog of 1,000,000 unacknowledged records. The
// per-record cost must not grow with the backlog.
func BenchmarkCycle(b *testing.B) {
	for _, backlog := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			ob := mustOpen(b, b.TempDir(), Options{MaxBytes: 8 << 30})
			defer ob.Close()
			recs := make([]Record, 1000)
			for done := 0; done < backlog; done += len(recs) {
				for i := range recs {
					recs[i] = benchRecord(i)
				}
				if _, _, err := ob.Append(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
			}
			// The consumer reads behind the backlog from its own cursor; acks
			// then cover the backlog too once the cursor passes it. To keep the
			// backlog in place, the cursor starts after it and acks stay below it.
			cursor := Seq(backlog) + 1
			epoch := ob.Epoch()
			batch := make([]Record, 100)
			var buf []Record
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(batch) {
				for j := range batch {
					batch[j] = benchRecord(j)
				}
				if _, _, err := ob.Append(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
				_, got, err := ob.Read(cursor, 100, 1<<20, buf[:0])
				if err != nil || len(got) != 100 {
					b.Fatalf("read %d records from %d: %v", len(got), cursor, err)
				}
				cursor = got[len(got)-1].Seq + 1
				buf = got
				if backlog == 0 {
					if _, err := ob.Ack(epoch, cursor-1); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			reportRate(b, b.N)
		})
	}
}

// BenchmarkDiskBytesPerPayloadByte: a healthy consumer acknowledges every
// batch right away. Reports the bytes Pebble wrote (WAL, flushes,
// compactions) per byte of record data.
func BenchmarkDiskBytesPerPayloadByte(b *testing.B) {
	for _, mode := range []Durability{Fsync, Spill} {
		b.Run(string(mode), func(b *testing.B) {
			ob := mustOpen(b, b.TempDir(), Options{Durability: mode, MaxBytes: 8 << 30})
			defer ob.Close()
			batch := make([]Record, 100)
			var payload int64
			before := ob.Stats().DiskBytesWritten
			b.ResetTimer()
			for i := 0; i < b.N; i += len(batch) {
				for j := range batch {
					batch[j] = benchRecord(j)
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
			reportRate(b, b.N)
		})
	}
}
