package apply

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgesync/edgesync/internal/broker"
	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/transport/wire"
)

// sinkRig runs a Sink on the embedded broker with SQLite, and a device-side
// client that publishes batches and collects acks.
type sinkRig struct {
	t      testing.TB
	sink   *Sink
	store  *Store
	client paho.Client
	mu     sync.Mutex
	acks   []*wire.Ack
	cancel context.CancelFunc
	done   chan struct{}
}

func newSinkRig(t testing.TB, policy Policy) *sinkRig {
	b, err := broker.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	cfg := &SinkConfig{SinkID: "s1", Broker: mqttx.BrokerConfig{URL: b.URL(), ReconnectMin: 50 * time.Millisecond}, Policy: policy,
		Store: DefaultStoreConfig()}
	cfg.Store.URL = "sqlite://" + filepath.Join(t.TempDir(), "sink.db")
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return startSinkRig(t, b, cfg)
}

// startSinkRig runs a sink with cfg on b, and a device-side client.
func startSinkRig(t testing.TB, b *broker.Broker, cfg *SinkConfig) *sinkRig {
	store, err := cfg.Store.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := &sinkRig{t: t, store: store, done: make(chan struct{})}
	r.sink = NewSink(cfg, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { _ = r.sink.Run(ctx); close(r.done) }()
	t.Cleanup(func() { cancel(); <-r.done; store.Close() })

	// Acks in the order the sink sent them (the tests read the last one):
	// with SetOrderMatters(false) paho runs each handler on a goroutine of
	// its own, and under qemu an ack through 10 was seen after the one
	// through 15. The handler only appends, so it never blocks paho.
	opts := paho.NewClientOptions().AddBroker(b.URL()).SetClientID("device-side").SetOrderMatters(true)
	r.client = paho.NewClient(opts)
	if tok := r.client.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { r.client.Disconnect(0) })
	tok := r.client.Subscribe("edgesync/+/ack", 1, func(_ paho.Client, m paho.Message) {
		a, err := wire.DecodeAck(m.Payload())
		if err != nil {
			t.Errorf("undecodable ack: %v", err)
			return
		}
		r.mu.Lock()
		r.acks = append(r.acks, a)
		r.mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	waitUntil(t, "sink subscribed", r.sink.Subscribed)
	return r
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *sinkRig) publish(topicDevice string, payload []byte) {
	r.t.Helper()
	tok := r.client.Publish(wire.UpTopic("edgesync", topicDevice), 1, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		r.t.Fatal(tok.Error())
	}
}

func testBatch(t testing.TB, device string, epoch, first, n uint64, schema string, sendID uint64) []byte {
	t.Helper()
	b := wire.Batch{V: wire.Version, Device: device, Epoch: epoch, SentAt: time.Now().UnixNano(), SendID: sendID}
	for s := first; s < first+n; s++ {
		b.Records = append(b.Records, wire.Record{Seq: s, Stream: "temps", Key: "k", ID: fmt.Sprintf("%s-%d-%d", device, epoch, s),
			Schema: schema, SchemaVersion: 1, CapturedAt: time.Now().UnixNano(), Data: []byte{0xa1, 0x61, 'v', 0x01}})
	}
	if n > 0 {
		b.First, b.Last = first, first+n-1
	}
	p, err := wire.EncodeBatch(nil, &b, wire.CompressionZstd)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *sinkRig) lastAck(device string) *wire.Ack {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.acks) - 1; i >= 0; i-- {
		if r.acks[i].Device == device {
			return r.acks[i]
		}
	}
	return nil
}

func (r *sinkRig) ackCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acks)
}

func TestSinkAppliesAndAcks(t *testing.T) {
	r := newSinkRig(t, Policy{})
	r.publish("gw-1", testBatch(t, "gw-1", 7, 1, 10, "reading", 100))
	waitUntil(t, "ack", func() bool { a := r.lastAck("gw-1"); return a != nil && a.AppliedThrough == 10 })
	a := r.lastAck("gw-1")
	if a.Status != wire.StatusOK || a.Epoch != 7 || a.SinkID != "s1" || a.InReplyTo != 100 {
		t.Fatalf("ack %+v", a)
	}
	// The same batch again: applied once, acked again (cumulative).
	r.publish("gw-1", testBatch(t, "gw-1", 7, 1, 10, "reading", 101))
	waitUntil(t, "second ack", func() bool { return r.ackCount() == 2 })
	m := r.sink.Devices()["gw-1"]
	if m.Applied.Load() != 10 || m.Duplicates.Load() != 10 {
		t.Fatalf("applied %d duplicates %d, want 10 and 10", m.Applied.Load(), m.Duplicates.Load())
	}
	// A gap: answered with status gap and the watermark.
	r.publish("gw-1", testBatch(t, "gw-1", 7, 20, 5, "reading", 102))
	waitUntil(t, "gap ack", func() bool { return r.ackCount() == 3 })
	if a := r.lastAck("gw-1"); a.Status != wire.StatusGap || a.AppliedThrough != 10 || a.InReplyTo != 102 {
		t.Fatalf("gap ack %+v", a)
	}
}

func TestSinkRefusesBadBatches(t *testing.T) {
	r := newSinkRig(t, Policy{})
	// Fuzzed bytes, an unknown version, a zip bomb-like frame: counted, never acked.
	r.publish("gw-1", []byte("\x01garbage"))
	r.publish("gw-1", []byte{0x00, 0xa1, 0x01, 0x18, 0x63}) // {1: 99}: version 99
	// A payload naming another device than its topic.
	r.publish("gw-1", testBatch(t, "gw-2", 7, 1, 3, "reading", 1))
	waitUntil(t, "counted", func() bool { return r.sink.Undecodable.Load() == 2 && r.sink.Refused.Load() == 1 })
	// The sink still works afterwards.
	r.publish("gw-1", testBatch(t, "gw-1", 7, 1, 3, "reading", 2))
	waitUntil(t, "ack", func() bool { return r.lastAck("gw-1") != nil })
	if n := r.ackCount(); n != 1 {
		t.Fatalf("%d acks, want 1: bad batches must not be acknowledged", n)
	}
}

func TestSinkPauseAndReload(t *testing.T) {
	p := Policy{OnUnknownSchema: OnUnknownPause, Streams: map[string]StreamPolicy{"temps": {Mode: ModeLog, Schemas: []string{"reading@1"}}}}
	r := newSinkRig(t, p)
	r.publish("gw-1", testBatch(t, "gw-1", 7, 1, 5, "reading", 1))
	r.publish("gw-1", testBatch(t, "gw-1", 7, 6, 5, "other", 2))
	waitUntil(t, "paused ack", func() bool { a := r.lastAck("gw-1"); return a != nil && a.Status == wire.StatusPaused })
	if a := r.lastAck("gw-1"); a.AppliedThrough != 5 {
		t.Fatalf("paused at %d, want 5", a.AppliedThrough)
	}
	if !r.sink.Devices()["gw-1"].Paused.Load() {
		t.Fatal("device not marked paused")
	}
	// The operator adds the schema and reloads: the device gets an ok ack at
	// its watermark, so that it resends at once.
	p.Streams = map[string]StreamPolicy{"temps": {Mode: ModeLog, Schemas: []string{"reading@1", "other@1"}}}
	n := r.ackCount()
	r.sink.Reload(p)
	waitUntil(t, "release ack", func() bool { return r.ackCount() > n })
	if a := r.lastAck("gw-1"); a.Status != wire.StatusOK || a.AppliedThrough != 5 {
		t.Fatalf("release ack %+v", a)
	}
	r.publish("gw-1", testBatch(t, "gw-1", 7, 6, 5, "other", 3))
	waitUntil(t, "applied", func() bool { a := r.lastAck("gw-1"); return a.AppliedThrough == 10 })
}

func TestSinkParksUnknownSchema(t *testing.T) {
	p := Policy{OnUnknownSchema: OnUnknownPark, Streams: map[string]StreamPolicy{"temps": {Mode: ModeLog, Schemas: []string{"reading@1"}}}}
	r := newSinkRig(t, p)
	r.publish("gw-1", testBatch(t, "gw-1", 7, 1, 5, "other", 1))
	waitUntil(t, "ack", func() bool { a := r.lastAck("gw-1"); return a != nil && a.AppliedThrough == 5 })
	a := r.lastAck("gw-1")
	if a.Status != wire.StatusOK || len(a.Parked) != 1 || a.Parked[0].First != 1 || a.Parked[0].Last != 5 {
		t.Fatalf("ack %+v, want ok with parked 1..5", a)
	}
	if n := r.sink.Devices()["gw-1"].Parked.Load(); n != 5 {
		t.Fatalf("parked metric %d, want 5", n)
	}
	// Replay after learning the schema.
	p.Streams["temps"] = StreamPolicy{Mode: ModeLog, Schemas: []string{"reading@1", "other@1"}}
	replayed, remaining, err := r.store.ReplayParked(context.Background(), &p)
	if err != nil || replayed != 5 || remaining != 0 {
		t.Fatalf("replay: %d %d %v", replayed, remaining, err)
	}
}
