package apply

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/edgesync/edgesync/internal/backoff"
	"github.com/edgesync/edgesync/internal/latency"
	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/transport/wire"
)

// Sink subscribes to the devices' batches, applies each in one transaction
// with its watermark, and publishes the cumulative acknowledgement only after
// the commit. A crash between commit and ack only causes a resend, which
// applies nothing twice.
type Sink struct {
	cfg    *SinkConfig
	store  *Store
	log    *slog.Logger
	policy atomic.Pointer[Policy]
	conn   *mqttx.Conn

	queues  []chan message
	dropped atomic.Uint64 // messages dropped because a worker queue was full

	mu      sync.Mutex
	devices map[string]*DeviceMetrics
	paused  map[string]pausedDevice
	lastLog map[string]time.Time // device -> last "undecodable" log

	Batches      atomic.Uint64 // batches applied (any status)
	Undecodable  atomic.Uint64 // batches that could not be read
	Refused      atomic.Uint64 // batches refused (payload names another device, bad range)
	StoreErrors  atomic.Uint64 // transient store errors (retried)
	AcksSent     atomic.Uint64
	GapAcks      atomic.Uint64
	PausedAcks   atomic.Uint64
	ApplyLatency latency.Histogram
}

type message struct {
	device  string
	payload []byte
	at      time.Time
}

type pausedDevice struct {
	epoch     uint64
	watermark uint64
}

// DeviceMetrics are the sink's counters for one device.
type DeviceMetrics struct {
	Applied    atomic.Uint64
	Duplicates atomic.Uint64
	Lost       atomic.Uint64
	Parked     atomic.Uint64
	LastSeen   atomic.Int64 // unix ns
	// Lag is now minus the capture time of the newest applied record, as of
	// the last batch that applied records (ns).
	NewestCaptured atomic.Int64
	Watermark      atomic.Uint64
	Epoch          atomic.Uint64
	Paused         atomic.Bool
}

// NewSink returns a sink applying to store.
func NewSink(cfg *SinkConfig, store *Store, log *slog.Logger) *Sink {
	if log == nil {
		log = slog.Default()
	}
	s := &Sink{cfg: cfg, store: store, log: log, devices: map[string]*DeviceMetrics{},
		paused: map[string]pausedDevice{}, lastLog: map[string]time.Time{}}
	p := cfg.Policy
	s.policy.Store(&p)
	for i := 0; i < cfg.Workers; i++ {
		s.queues = append(s.queues, make(chan message, 256))
	}
	return s
}

// Reload swaps the policy (SIGHUP). Devices held for an unknown schema get an
// ok ack at their watermark, so that they resend at once and the new policy
// decides again.
func (s *Sink) Reload(p Policy) {
	s.policy.Store(&p)
	s.mu.Lock()
	held := s.paused
	s.paused = map[string]pausedDevice{}
	s.mu.Unlock()
	s.log.Info("sink: policy reloaded", "streams", len(p.Streams), "on_unknown_schema", p.OnUnknownSchema,
		"paused_devices_released", len(held))
	for device, pd := range held {
		if m := s.device(device); m != nil {
			m.Paused.Store(false)
		}
		s.publishAck(device, wire.Ack{V: wire.Version, Device: device, Epoch: pd.epoch, AppliedThrough: pd.watermark,
			Status: wire.StatusOK, SinkID: s.cfg.SinkID})
	}
}

// Policy is the policy in use.
func (s *Sink) Policy() *Policy { return s.policy.Load() }

// Run subscribes and applies until ctx ends.
func (s *Sink) Run(ctx context.Context) error {
	filter := s.cfg.Filter()
	conn, err := mqttx.New(s.cfg.Broker, mqttx.Options{
		ClientID: s.cfg.Broker.ClientID,
		Logger:   s.log,
		OnConnect: func(c mqtt.Client) {
			c.Subscribe(filter, 1, s.handle)
		},
	})
	if err != nil {
		return err
	}
	s.conn = conn
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return conn.Run(gctx, nil) })
	for i := range s.queues {
		q := s.queues[i]
		g.Go(func() error { s.worker(gctx, q); return nil })
	}
	s.log.Info("sink: running", "sink_id", s.cfg.SinkID, "subscription", filter, "store", redactURL(s.cfg.Store.URL),
		"workers", len(s.queues))
	return g.Wait()
}

// Conn is the MQTT connection (nil before Run).
func (s *Sink) Conn() *mqttx.Conn { return s.conn }

// handle runs on paho's goroutine: it only hands the message to the worker of
// its device. When that queue is full the message is dropped: it was not
// acknowledged, so the agent sends it again.
func (s *Sink) handle(_ mqtt.Client, m mqtt.Message) {
	device, err := wire.DeviceFromTopic(s.cfg.TopicPrefix, m.Topic(), wire.SuffixUp)
	if err != nil {
		s.Refused.Add(1)
		return
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(device))
	q := s.queues[int(h.Sum32())%len(s.queues)]
	select {
	case q <- message{device: device, payload: m.Payload(), at: time.Now()}:
	default:
		s.dropped.Add(1)
	}
}

func (s *Sink) worker(ctx context.Context, q chan message) {
	var b wire.Batch
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-q:
			s.process(ctx, m, &b)
		}
	}
}

// logLimited logs at most once per device and kind per minute.
func (s *Sink) logLimited(device, kind, msg string, args ...any) {
	key := device + "\x00" + kind
	s.mu.Lock()
	last := s.lastLog[key]
	now := time.Now()
	ok := now.Sub(last) >= time.Minute
	if ok {
		s.lastLog[key] = now
	}
	s.mu.Unlock()
	if ok {
		s.log.Warn(msg, append([]any{"device", device}, args...)...)
	}
}

func (s *Sink) process(ctx context.Context, m message, b *wire.Batch) {
	if err := wire.DecodeBatchInto(m.payload, b); err != nil {
		s.Undecodable.Add(1)
		s.logLimited(m.device, "undecodable", "sink: cannot read a batch; not acknowledged", "err", err)
		return
	}
	// Application is retried while the store is down; the batch is not
	// acknowledged meanwhile.
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}
	for {
		start := time.Now()
		res, err := s.store.Apply(ctx, m.device, b, s.policy.Load())
		if err == nil {
			s.ApplyLatency.Observe(time.Since(start))
			s.applied(m.device, b, res)
			return
		}
		var be *BatchError
		if errors.As(err, &be) {
			s.Refused.Add(1)
			s.logLimited(m.device, "refused", "sink: batch refused; not acknowledged", "err", err)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.StoreErrors.Add(1)
		s.logLimited("", "store", "sink: store error; retrying", "err", err)
		t := time.NewTimer(bo.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *Sink) device(device string) *DeviceMetrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[device]
	if d == nil {
		d = &DeviceMetrics{}
		s.devices[device] = d
	}
	return d
}

func (s *Sink) applied(device string, b *wire.Batch, res Result) {
	s.Batches.Add(1)
	d := s.device(device)
	d.Applied.Add(uint64(res.Applied))
	d.Duplicates.Add(uint64(res.Duplicates))
	d.Lost.Add(res.Lost)
	d.Parked.Add(uint64(res.ParkedRecords))
	d.LastSeen.Store(time.Now().UnixNano())
	d.Watermark.Store(res.AppliedThrough)
	d.Epoch.Store(res.Epoch)
	if !res.NewestCapturedAt.IsZero() {
		d.NewestCaptured.Store(res.NewestCapturedAt.UnixNano())
	}
	if res.ParkedRecords > 0 {
		s.logLimited(device, "parked", "sink: records parked (schema not accepted); replay them with `edgesync sink replay-parked`",
			"count", res.ParkedRecords, "reason", res.Parked[0].Reason)
	}
	switch res.Status {
	case wire.StatusGap:
		s.GapAcks.Add(1)
	case wire.StatusPaused:
		s.PausedAcks.Add(1)
		d.Paused.Store(true)
		s.mu.Lock()
		s.paused[device] = pausedDevice{epoch: res.Epoch, watermark: res.AppliedThrough}
		s.mu.Unlock()
		s.logLimited(device, "paused", "sink: device held for a schema the sink does not accept (on_unknown_schema: pause); add it and reload (SIGHUP)",
			"watermark", res.AppliedThrough)
	default:
		d.Paused.Store(false)
	}
	s.publishAck(device, res.Ack(device, s.cfg.SinkID, b.SendID))
}

func (s *Sink) publishAck(device string, a wire.Ack) {
	p, err := wire.EncodeAck(nil, &a)
	if err != nil {
		s.log.Error("sink: encode ack", "device", device, "err", err)
		return
	}
	if s.conn == nil || !s.conn.Up() {
		return // the agent resends; the next batch gets the ack
	}
	s.conn.Client().Publish(wire.AckTopic(s.cfg.TopicPrefix, device), 1, false, p)
	s.AcksSent.Add(1)
}

// Devices returns a snapshot of per-device metrics.
func (s *Sink) Devices() map[string]*DeviceMetrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*DeviceMetrics, len(s.devices))
	for k, v := range s.devices {
		out[k] = v
	}
	return out
}

// Dropped is how many messages were dropped because a worker queue was full.
func (s *Sink) Dropped() uint64 { return s.dropped.Load() }
