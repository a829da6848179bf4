package transport

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgesync/edgesync/internal/broker"
	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

func TestMain(m *testing.M) {
	// testenv.Main is not needed: no shared servers here.
	m.Run()
}

func quiet() *slog.Logger {
	if os.Getenv("EDGESYNC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testSink is the peer of the uplink in these tests: a real MQTT subscriber
// that applies batches by the sink's rules (watermark per device and epoch,
// duplicates skipped, gaps answered with status gap) and acknowledges them.
// It counts how often each record is applied, which must be exactly once.
type testSink struct {
	t      testing.TB
	client paho.Client
	prefix string

	mu      sync.Mutex
	wm      map[uint64]uint64 // epoch -> applied_through
	applied map[string]int    // "epoch/seq" -> times applied
	ids     map[string]bool   // record IDs applied (across epochs)
	batches int
	lost    uint64
	held    [][]byte
	acks    int

	// knobs
	dupAcks     atomic.Bool                   // publish every ack twice
	reorder     atomic.Bool                   // hold back every 3rd ack, publish it after the next
	lose        func(b *wire.Batch) bool      // pretend a batch never arrived
	pauseSchema atomic.Value                  // string: stop before records of this schema, status paused
	silent      atomic.Bool                   // apply but never acknowledge
	onBatch     func(b *wire.Batch, st uint8) // observe
}

func newTestSink(t testing.TB, url, prefix string) *testSink {
	s := &testSink{t: t, prefix: prefix, wm: map[uint64]uint64{}, applied: map[string]int{}, ids: map[string]bool{}}
	t.Cleanup(func() {
		if t.Failed() {
			s.mu.Lock()
			t.Logf("test sink: %d batches received, %d acks published, watermarks %v, connected %v",
				s.batches, s.acks, s.wm, s.client.IsConnected())
			s.mu.Unlock()
		}
	})
	s.pauseSchema.Store("")
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("testsink-%d", time.Now().UnixNano())).
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).SetOrderMatters(true)
	opts.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(wire.TopicFilter(prefix, wire.SuffixUp), 1, func(_ paho.Client, m paho.Message) { s.handle(m) })
	})
	s.client = paho.NewClient(opts)
	tok := s.client.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("test sink connect: %v", tok.Error())
	}
	t.Cleanup(func() { s.client.Disconnect(0) })
	return s
}

func (s *testSink) handle(m paho.Message) {
	device, err := wire.DeviceFromTopic(s.prefix, m.Topic(), wire.SuffixUp)
	if err != nil {
		s.t.Errorf("test sink: topic %s: %v", m.Topic(), err)
		return
	}
	b, err := wire.DecodeBatch(m.Payload())
	if err != nil {
		s.t.Errorf("test sink: decode: %v", err)
		return
	}
	if s.lose != nil && s.lose(b) {
		return
	}
	s.mu.Lock()
	s.batches++
	w := s.wm[b.Epoch]
	status := wire.StatusOK
	if b.Acked > w {
		s.lost += b.Acked - w
		w = b.Acked
	}
	items := mergeItems(b)
	pause := s.pauseSchema.Load().(string)
	for _, it := range items {
		if it.first > w+1 {
			status = wire.StatusGap
			break
		}
		if it.drop {
			if it.last > w {
				s.lost += it.last - max(it.first, w+1) + 1
				w = it.last
			}
			continue
		}
		r := it.rec
		if r.Seq <= w {
			continue
		}
		if pause != "" && r.Schema == pause {
			status = wire.StatusPaused
			break
		}
		s.applied[fmt.Sprintf("%d/%d", b.Epoch, r.Seq)]++
		s.ids[r.ID] = true
		w = r.Seq
	}
	s.wm[b.Epoch] = w
	if s.onBatch != nil {
		s.onBatch(b, status)
	}
	s.mu.Unlock()
	if s.silent.Load() {
		return
	}
	ack, err := wire.EncodeAck(nil, &wire.Ack{V: wire.Version, Device: device, Epoch: b.Epoch, AppliedThrough: w,
		Status: status, SinkID: "test", InReplyTo: b.SendID})
	if err != nil {
		s.t.Errorf("test sink: encode ack: %v", err)
		return
	}
	s.publishAck(device, ack)
}

func (s *testSink) publishAck(device string, ack []byte) {
	topic := wire.AckTopic(s.prefix, device)
	s.mu.Lock()
	s.acks++
	n := s.acks
	var late [][]byte
	if s.reorder.Load() && n%3 == 0 {
		s.held = append(s.held, ack)
		s.mu.Unlock()
		return
	}
	late, s.held = s.held, nil
	s.mu.Unlock()
	s.client.Publish(topic, 1, false, ack)
	if s.dupAcks.Load() {
		s.client.Publish(topic, 1, false, ack)
	}
	for _, a := range late {
		s.client.Publish(topic, 1, false, a) // an older ack, after a newer one
	}
}

// sendAck publishes an arbitrary ack, as a misbehaving or foreign sink would.
func (s *testSink) sendAck(device string, a wire.Ack) {
	a.V, a.Device = wire.Version, device
	if a.SinkID == "" {
		a.SinkID = "test"
	}
	p, err := wire.EncodeAck(nil, &a)
	if err != nil {
		s.t.Fatal(err)
	}
	s.client.Publish(wire.AckTopic(s.prefix, device), 1, false, p).WaitTimeout(5 * time.Second)
}

type item struct {
	first, last uint64
	drop        bool
	rec         wire.Record
}

func mergeItems(b *wire.Batch) []item {
	var out []item
	ri, di := 0, 0
	for ri < len(b.Records) || di < len(b.Drops) {
		if di < len(b.Drops) && (ri >= len(b.Records) || b.Drops[di].First <= b.Records[ri].Seq) {
			d := b.Drops[di]
			out = append(out, item{first: d.First, last: d.Last, drop: true})
			di++
			continue
		}
		r := b.Records[ri]
		out = append(out, item{first: r.Seq, last: r.Seq, rec: r})
		ri++
	}
	return out
}

// check asserts that every record in want (IDs) was applied exactly once.
func (s *testSink) check(t testing.TB, wantIDs []string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, n := range s.applied {
		if n != 1 {
			t.Errorf("record %s applied %d times", k, n)
		}
	}
	for _, id := range wantIDs {
		if !s.ids[id] {
			t.Errorf("record %s never applied", id)
		}
	}
}

func (s *testSink) appliedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.applied)
}

// rig is one device: an outbox, a connection and an uplink.
type rig struct {
	t      testing.TB
	ob     *outbox.Outbox
	conn   *mqttx.Conn
	up     *Uplink
	cancel context.CancelFunc
	done   chan struct{}
	ids    []string
	next   int
}

type rigOpts struct {
	url    string
	device string
	batch  BatchConfig
	uplink UplinkConfig
	outbox outbox.Options
	dir    string
}

func newRig(t testing.TB, o rigOpts) *rig {
	if o.device == "" {
		o.device = "gw-1"
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.outbox.Logger == nil {
		o.outbox.Logger = quiet()
	}
	o.outbox.MinFreeDisk, o.outbox.Ballast = -1, -1
	ob, err := outbox.Open(o.dir, o.outbox)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, ob: ob, done: make(chan struct{})}
	cfg := Config{TopicPrefix: "edgesync", DeviceID: o.device, BootID: "boot-1", Batch: o.batch, Uplink: o.uplink, Logger: quiet()}
	var up *Uplink
	conn, err := mqttx.New(mqttx.BrokerConfig{URL: o.url, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
		KeepAlive: 2 * time.Second, ConnectTimeout: 2 * time.Second},
		mqttx.Options{ClientID: o.device, Logger: quiet(),
			Will:      &mqttx.Will{Topic: wire.StateTopic("edgesync", o.device), Payload: OfflineState(o.device, "boot-1"), Retained: true},
			OnConnect: func(c paho.Client) { up.Subscribe(c) },
			Default:   func(_ paho.Client, m paho.Message) { up.Handle(m) }})
	if err != nil {
		t.Fatal(err)
	}
	up = New(cfg, ob, conn, nil)
	r.conn, r.up = conn, up
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = conn.Run(ctx, nil) }()
	go func() { defer wg.Done(); _ = up.Run(ctx) }()
	go func() { wg.Wait(); close(r.done) }()
	t.Cleanup(r.stop)
	return r
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
	_ = r.ob.Close()
}

// add appends n records (schema reading@1) and remembers their IDs.
func (r *rig) add(n int) {
	r.addSchema(n, "reading", 1)
}

func (r *rig) addSchema(n int, schema string, version uint32) {
	r.t.Helper()
	recs := make([]outbox.Record, n)
	for i := range recs {
		id := fmt.Sprintf("r-%d", r.next)
		r.next++
		recs[i] = outbox.Record{Stream: "temps", Key: fmt.Sprintf("s-%d", i%7), ID: id, Schema: schema, SchemaVersion: version,
			CapturedAt: time.Now().UnixNano(), Data: []byte{0xa1, 0x61, 't', 0x18, byte(i % 24)}}
		r.ids = append(r.ids, id)
	}
	if _, _, err := r.ob.Append(context.Background(), recs); err != nil {
		r.t.Fatal(err)
	}
}

// waitDrained waits until the outbox has nothing unacknowledged.
func (r *rig) waitDrained(timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pos := r.ob.Position()
		if pos.Watermark == pos.Head && len(pos.Drops) == 0 {
			return
		}
		if time.Now().After(deadline) {
			m := r.up.Metrics()
			r.t.Fatalf("outbox not drained after %v: head %d watermark %d drops %v; sent %d resent %d resends %d acks %d gaps %d paused %v",
				timeout, pos.Head, pos.Watermark, pos.Drops, m.BatchesSent.Load(), m.BatchesResent.Load(), m.Resends.Load(),
				m.AcksApplied.Load(), m.AcksGap.Load(), m.Paused.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startMochi(t testing.TB) *broker.Broker {
	b, err := broker.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
