package transport

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/testenv"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

func TestHappyPath(t *testing.T) {
	b := startMochi(t)
	sink := newTestSink(t, b.URL(), "edgesync")
	r := newRig(t, rigOpts{url: b.URL(), batch: BatchConfig{MaxRecords: 100}})
	for i := 0; i < 50; i++ {
		r.add(100)
	}
	r.waitDrained(30 * time.Second)
	sink.check(t, r.ids)
	m := r.up.Metrics()
	if got := sink.appliedCount(); got != 5000 {
		t.Fatalf("applied %d, want 5000", got)
	}
	if m.RecordsSent.Load() < 5000 || m.AcksApplied.Load() == 0 {
		t.Fatalf("metrics: sent %d acks %d", m.RecordsSent.Load(), m.AcksApplied.Load())
	}
	if m.DurableToPuback.Count() == 0 || m.PubackToAck.Count() == 0 || m.CaptureToAck.Count() == 0 {
		t.Fatalf("latency not recorded: %v %v %v", m.DurableToPuback.Count(), m.PubackToAck.Count(), m.CaptureToAck.Count())
	}
	// Wire bytes per record: batches of 100 small records compress well.
	if per := float64(m.BytesSent.Load()) / float64(m.RecordsSent.Load()); per > 40 {
		t.Errorf("%.1f wire bytes per record, want well under the record size", per)
	}
}

func TestBrokerRestartMidStream(t *testing.T) {
	mq := testenv.Mosquitto(t, testenv.WithPersistence())
	sink := newTestSink(t, mq.URL(), "edgesync")
	r := newRig(t, rigOpts{url: mq.URL(), batch: BatchConfig{MaxRecords: 50}, uplink: UplinkConfig{AckTimeout: 2 * time.Second}})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r.add(20)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	mq.Stop()
	time.Sleep(time.Second)
	mq.Start()
	time.Sleep(500 * time.Millisecond)
	mq.Kill()
	mq.Start()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	r.waitDrained(60 * time.Second)
	sink.check(t, r.ids)
	if r.conn.Stats().Reconnects < 2 {
		t.Fatalf("reconnects %d, want at least 2", r.conn.Stats().Reconnects)
	}
}

func TestPartition(t *testing.T) {
	mq := testenv.Mosquitto(t)
	proxy := testenv.NewProxy(t, mq.Addr())
	sink := newTestSink(t, mq.URL(), "edgesync")
	r := newRig(t, rigOpts{url: proxy.URL(), batch: BatchConfig{MaxRecords: 100},
		uplink: UplinkConfig{AckTimeout: 2 * time.Second}})
	r.add(500)
	r.waitDrained(20 * time.Second)
	// A silent 10-second partition: packets vanish, connections stay open.
	proxy.Blackhole()
	for i := 0; i < 10; i++ {
		r.add(100)
		time.Sleep(time.Second)
	}
	if pos := r.ob.Position(); pos.Watermark >= pos.Head {
		t.Fatalf("records acknowledged during the partition: %+v", pos)
	}
	proxy.Heal()
	r.waitDrained(60 * time.Second)
	sink.check(t, r.ids)
	if got := sink.appliedCount(); got != 1500 {
		t.Fatalf("applied %d, want 1500", got)
	}
}

func TestDuplicateAndReorderedAcks(t *testing.T) {
	b := startMochi(t)
	sink := newTestSink(t, b.URL(), "edgesync")
	sink.dupAcks.Store(true)
	sink.reorder.Store(true)
	// A held-back last ack is only released by the next batch: the short ack
	// timeout makes the agent resend, and that resend is acknowledged.
	r := newRig(t, rigOpts{url: b.URL(), batch: BatchConfig{MaxRecords: 10, Linger: -1}, uplink: UplinkConfig{AckTimeout: time.Second}})
	// Watch that the watermark never moves back.
	var back atomic.Bool
	stop := make(chan struct{})
	go func() {
		var last outbox.Seq
		for {
			select {
			case <-stop:
				return
			default:
			}
			w := r.ob.Position().Watermark
			if w < last {
				back.Store(true)
			}
			last = w
			time.Sleep(time.Millisecond)
		}
	}()
	for i := 0; i < 30; i++ {
		r.add(10)
		time.Sleep(2 * time.Millisecond)
	}
	r.waitDrained(30 * time.Second)
	close(stop)
	sink.check(t, r.ids)
	if back.Load() {
		t.Fatal("the watermark moved back")
	}
	if r.up.Metrics().AcksDuplicate.Load() == 0 {
		t.Fatal("no duplicate acks counted")
	}
}

func TestForeignEpochAndDeviceAcks(t *testing.T) {
	b := startMochi(t)
	sink := newTestSink(t, b.URL(), "edgesync")
	sink.silent.Store(true) // only our own acks below
	r := newRig(t, rigOpts{url: b.URL()})
	r.add(100)
	waitFor(t, "batches sent", func() bool { return r.up.Metrics().RecordsSent.Load() >= 100 })
	e := uint64(r.ob.Epoch())
	other := e ^ 1
	if other == 0 {
		other = 2
	}
	sink.sendAck("gw-1", wire.Ack{Epoch: other, AppliedThrough: 100})
	sink.sendAck("gw-2", wire.Ack{Epoch: e, AppliedThrough: 100}) // another device's topic: never seen
	waitFor(t, "stale ack counted", func() bool { return r.up.Metrics().AcksStale.Load() == 1 })
	if w := r.ob.Position().Watermark; w != 0 {
		t.Fatalf("a foreign-epoch ack moved the watermark to %d", w)
	}
	// The right ack, twice: applied once.
	sink.sendAck("gw-1", wire.Ack{Epoch: e, AppliedThrough: 60})
	sink.sendAck("gw-1", wire.Ack{Epoch: e, AppliedThrough: 60})
	sink.sendAck("gw-1", wire.Ack{Epoch: e, AppliedThrough: 30})
	waitFor(t, "acks processed", func() bool { return r.up.Metrics().AcksDuplicate.Load() == 2 })
	if w := r.ob.Position().Watermark; w != 60 {
		t.Fatalf("watermark %d, want 60", w)
	}
	if n := r.up.Metrics().AcksApplied.Load(); n != 1 {
		t.Fatalf("acks applied %d, want 1", n)
	}
}

func TestGapTriggersImmediateResend(t *testing.T) {
	b := startMochi(t)
	sink := newTestSink(t, b.URL(), "edgesync")
	var lost atomic.Bool
	sink.lose = func(b *wire.Batch) bool {
		// Lose the batch holding seq 11 once, as a broker dropping a message would.
		return b.First <= 11 && b.Last >= 11 && lost.CompareAndSwap(false, true)
	}
	r := newRig(t, rigOpts{url: b.URL(), batch: BatchConfig{MaxRecords: 10, Linger: -1}, uplink: UplinkConfig{AckTimeout: time.Minute}})
	for i := 0; i < 10; i++ {
		r.add(10)
	}
	start := time.Now()
	r.waitDrained(20 * time.Second)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v: the gap waited for the ack timeout instead of resending at once", d)
	}
	sink.check(t, r.ids)
	m := r.up.Metrics()
	if m.AcksGap.Load() == 0 || m.Resends.Load() == 0 {
		t.Fatalf("gap acks %d resends %d, want both > 0", m.AcksGap.Load(), m.Resends.Load())
	}
	// Gap replies to batches sent before the resend do not trigger more resends.
	if m.Resends.Load() > 2 {
		t.Fatalf("%d resends for one lost batch: gap replies to stale batches were not ignored", m.Resends.Load())
	}
}

func TestPausedHoldsResends(t *testing.T) {
	b := startMochi(t)
	sink := newTestSink(t, b.URL(), "edgesync")
	sink.pauseSchema.Store("reading")
	r := newRig(t, rigOpts{url: b.URL(), batch: BatchConfig{MaxRecords: 10, Linger: -1},
		uplink: UplinkConfig{AckTimeout: 500 * time.Millisecond, PauseProbe: time.Hour}})
	r.addSchema(5, "other", 1)
	r.add(20)
	waitFor(t, "paused", func() bool { return r.up.Metrics().Paused.Load() })
	if w := r.ob.Position().Watermark; w != 5 {
		t.Fatalf("watermark %d, want 5 (stopped before the unknown schema)", w)
	}
	// While paused nothing is resent, although the ack timeout is short.
	sent := r.up.Metrics().BatchesSent.Load()
	time.Sleep(2 * time.Second)
	if now := r.up.Metrics().BatchesSent.Load(); now != sent {
		t.Fatalf("%d batches sent while paused", now-sent)
	}
	// The sink learns the schema and says ok: the device resumes.
	sink.pauseSchema.Store("")
	sink.sendAck("gw-1", wire.Ack{Epoch: uint64(r.ob.Epoch()), AppliedThrough: 5, Status: wire.StatusOK})
	r.waitDrained(20 * time.Second)
	sink.check(t, r.ids)
}

func TestPauseProbe(t *testing.T) {
	b := startMochi(t)
	sink := newTestSink(t, b.URL(), "edgesync")
	sink.pauseSchema.Store("reading")
	r := newRig(t, rigOpts{url: b.URL(), batch: BatchConfig{MaxRecords: 10, Linger: -1},
		uplink: UplinkConfig{PauseProbe: time.Second}})
	r.add(20)
	waitFor(t, "paused", func() bool { return r.up.Metrics().Paused.Load() })
	// The sink restarts knowing the schema but sends nothing by itself: the
	// probe finds out.
	sink.pauseSchema.Store("")
	r.waitDrained(20 * time.Second)
	sink.check(t, r.ids)
}

func TestRecordTooLargeRefused(t *testing.T) {
	dir := t.TempDir()
	ob, err := outbox.Open(dir, outbox.Options{MaxRecordBytes: MaxDataBytes, Logger: quiet(), MinFreeDisk: -1, Ballast: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	big := outbox.Record{Stream: "s", Data: append([]byte{0x5a, 0, 0x0c, 0, 0}, make([]byte, MaxDataBytes)...)}
	_, _, err = ob.Append(context.Background(), []outbox.Record{big})
	if !errors.Is(err, outbox.ErrRecordTooLarge) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("err = %v, want a clear ErrRecordTooLarge", err)
	}
	// The largest record that is accepted fits in a batch on the wire, even
	// when it does not compress.
	data := make([]byte, MaxDataBytes-5)
	for i := range data {
		data[i] = byte(i*7919 + i>>8)
	}
	raw := append([]byte{0x5a}, byte(len(data)>>24), byte(len(data)>>16), byte(len(data)>>8), byte(len(data)))
	raw = append(raw, data...)
	if len(raw) > MaxDataBytes {
		t.Fatalf("test record %d bytes", len(raw))
	}
	bt := wire.Batch{V: wire.Version, Device: "gw-1", Epoch: 1, First: 1, Last: 1, SendID: 1,
		Records: []wire.Record{{Seq: 1, Stream: strings.Repeat("s", 64), Key: strings.Repeat("k", wire.MaxKeyBytes),
			ID: strings.Repeat("\u00e9", wire.MaxIDRunes), Schema: strings.Repeat("n", 64), SchemaVersion: 1 << 31, Data: raw}}}
	if _, err := wire.EncodeBatch(nil, &bt, wire.CompressionZstd); err != nil {
		t.Fatalf("largest record does not fit a batch: %v", err)
	}
}

func TestMemoryBoundedWhileLinkDown(t *testing.T) {
	mq := testenv.Mosquitto(t)
	proxy := testenv.NewProxy(t, mq.Addr())
	proxy.Partition()
	r := newRig(t, rigOpts{url: proxy.URL()})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 100; i++ {
		r.add(500) // 50,000 records while the link is down
	}
	time.Sleep(time.Second)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	if growth > 16<<20 {
		t.Fatalf("heap grew by %d bytes with the link down; the backlog must stay on disk", growth)
	}
	if r.up.Metrics().BatchesSent.Load() != 0 {
		t.Fatal("batches sent while the link was down")
	}
	sink := newTestSink(t, mq.URL(), "edgesync")
	proxy.Heal()
	r.waitDrained(60 * time.Second)
	sink.check(t, r.ids)
}

func TestRateLimit(t *testing.T) {
	b := startMochi(t)
	sink := newTestSink(t, b.URL(), "edgesync")
	r := newRig(t, rigOpts{url: b.URL(), batch: BatchConfig{MaxRecords: 50, MaxBytes: 4 << 10, Compression: "none", Linger: -1},
		uplink: UplinkConfig{RateBytes: 20 << 10}})
	// About 115 KB on the wire at 20 KiB/s, after a burst of two batches: several seconds.
	appendRateLoad(t, r.ob)
	start := time.Now()
	r.waitDrained(60 * time.Second)
	m := r.up.Metrics()
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("%d bytes sent in %v: the rate limit did not hold", m.BytesSent.Load(), took)
	}
	if m.RateWaitNs.Load() == 0 {
		t.Fatal("no rate-limit wait recorded")
	}
	_ = sink
}

// appendRateLoad appends 1,000 records of about 100 bytes of data each:
// about 115 KB on the wire uncompressed, several seconds at 20 KiB/s.
func appendRateLoad(t testing.TB, ob *outbox.Outbox) {
	t.Helper()
	for i := 0; i < 20; i++ {
		recs := make([]outbox.Record, 50)
		for j := range recs {
			recs[j] = outbox.Record{Stream: "temps", ID: "x", Data: append([]byte{0x58, 96}, make([]byte, 96)...)}
		}
		if _, _, err := ob.Append(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReconfigureRateLive: a rate limit set on a running uplink (SIGHUP)
// takes effect without a restart.
func TestReconfigureRateLive(t *testing.T) {
	b := startMochi(t)
	newTestSink(t, b.URL(), "edgesync")
	r := newRig(t, rigOpts{url: b.URL(), batch: BatchConfig{MaxRecords: 50, MaxBytes: 4 << 10, Compression: "none", Linger: -1}})
	r.add(100)
	r.waitDrained(20 * time.Second)
	if r.up.Metrics().RateWaitNs.Load() != 0 {
		t.Fatal("rate wait without a rate limit")
	}
	r.up.Reconfigure(BatchConfig{MaxRecords: 50, MaxBytes: 4 << 10, Compression: "none", Linger: -1}, UplinkConfig{RateBytes: 20 << 10})
	time.Sleep(100 * time.Millisecond)
	appendRateLoad(t, r.ob)
	start := time.Now()
	r.waitDrained(60 * time.Second)
	if took := time.Since(start); took < 2*time.Second || r.up.Metrics().RateWaitNs.Load() == 0 {
		t.Fatalf("drained in %v with rate wait %d: the new rate limit did not apply", took, r.up.Metrics().RateWaitNs.Load())
	}
}
