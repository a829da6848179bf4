package apply

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"sort"
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
// applies nothing twice. A batch that arrives before the one in front of it
// is held for up to store.gap_wait rather than answered gap at once (see
// worker).
type Sink struct {
	cfg    *SinkConfig
	store  *Store
	log    *slog.Logger
	policy atomic.Pointer[Policy]
	conn   atomic.Pointer[mqttx.Conn] // set by Run; read by Reload and Conn on other goroutines
	// subscribed: the broker granted the batch subscription of the current
	// connection (reset on each connect, set on its SUBACK).
	subscribed atomic.Bool

	queues  []chan message
	wakes   []chan wake   // per worker: acks of other sinks, which may let held batches through
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
		s.wakes = append(s.wakes, make(chan wake, 256))
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
		// In a shared group a persistent session outlives a dead sink, and
		// the broker goes on handing it its share of every device's batches
		// (mosquitto, EMQX), to be resent after gap_wait or ack_timeout,
		// until the sink returns, which it may never do. A clean session
		// leaves the group when the sink goes.
		CleanSession: s.cfg.SharedGroup != "",
		Logger:       s.log,
		OnConnect: func(c mqtt.Client) {
			s.subscribed.Store(false)
			mqttx.WatchSubscribe(c.Subscribe(filter, 1, s.handle), func(err error) {
				if err != nil {
					s.log.Error("sink: no batches will arrive", "subscription", filter, "err", err)
					return
				}
				s.subscribed.Store(true)
				s.log.Info("sink: subscribed", "subscription", filter)
			})
			if s.cfg.SharedGroup != "" {
				// Every sink's acks, to learn at once that another sink
				// applied the batch in front of a held one. QoS 0: a lost
				// ack only means the held batch waits for its next poll.
				c.Subscribe(wire.TopicFilter(s.cfg.TopicPrefix, wire.SuffixAck), 0, s.handleAck)
			}
		},
	})
	if err != nil {
		return err
	}
	s.conn.Store(conn)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return conn.Run(gctx, nil) })
	for i := range s.queues {
		g.Go(func() error { s.worker(gctx, s.queues[i], s.wakes[i]); return nil })
	}
	s.log.Info("sink: running", "sink_id", s.cfg.SinkID, "subscription", filter, "store", redactURL(s.cfg.Store.URL),
		"workers", len(s.queues))
	return g.Wait()
}

// Subscribed reports whether the broker granted the sink's subscription to
// the devices' batches on the current connection (its SUBACK arrived).
func (s *Sink) Subscribed() bool { return s.subscribed.Load() }

// Conn is the MQTT connection (nil before Run).
func (s *Sink) Conn() *mqttx.Conn { return s.conn.Load() }

// handle runs on paho's goroutine: it only hands the message to the worker of
// its device. When that queue is full the message is dropped: it was not
// acknowledged, so the agent sends it again.
func (s *Sink) handle(_ mqtt.Client, m mqtt.Message) {
	device, err := wire.DeviceFromTopic(s.cfg.TopicPrefix, m.Topic(), wire.SuffixUp)
	if err != nil {
		s.Refused.Add(1)
		return
	}
	q := s.queues[s.queueOf(device)]
	select {
	case q <- message{device: device, payload: m.Payload(), at: time.Now()}:
	default:
		s.dropped.Add(1)
	}
}

// queueOf is the worker of device: always the same, so that a device's
// batches are applied in the order they arrive.
func (s *Sink) queueOf(device string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(device))
	return int(h.Sum32() % uint32(len(s.queues)))
}

// wake is an ack published by a sink (with shared_group).
type wake struct {
	device  string
	payload []byte
}

// handleAck runs on paho's goroutine: it hands an ack of any sink to the
// worker of its device, or drops it when that worker is busy (it is a hint).
func (s *Sink) handleAck(_ mqtt.Client, m mqtt.Message) {
	device, err := wire.DeviceFromTopic(s.cfg.TopicPrefix, m.Topic(), wire.SuffixAck)
	if err != nil {
		return
	}
	select {
	case s.wakes[s.queueOf(device)] <- wake{device: device, payload: m.Payload()}:
	default:
	}
}

func (s *Sink) worker(ctx context.Context, q chan message, wakes chan wake) {
	w := &worker{s: s, b: new(wire.Batch), marks: map[string]mark{}}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Acks first: they are cheap, let held batches through, and tell
		// which polls are not needed.
		for drained := false; !drained; {
			select {
			case k := <-wakes:
				w.woken(ctx, k)
			default:
				drained = true
			}
		}
		var wake <-chan time.Time
		if next, ok := w.nextTry(); ok {
			timer.Reset(time.Until(next))
			wake = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case k := <-wakes:
			w.woken(ctx, k)
		case <-wake:
			w.retryDue(ctx)
		case m := <-q:
			w.receive(ctx, m)
		}
	}
}

// The reorder buffer of a worker. A batch that starts past its device's
// watermark is usually not lost but a moment early: the batch in front of it
// is behind it in this worker's queue (paho hands each message over on a
// goroutine of its own, so even a single sink sees a device's batches out of
// order), or it is being applied by another sink of the shared group, often
// behind more batches of the same device. So the worker does not answer gap
// at once, nor does it wait and block the batches behind it: it holds the
// batch and goes on. It tries a device's held batches again, lowest seq
// first, as soon as a batch of the device was applied here or an ack of
// another sink shows the batch in front applied, and otherwise polls the
// lowest one every 5 to 40ms, every 200ms while acks show the device moving
// (each try locks the device's watermark row, so it also waits for a commit
// in progress at another sink). Only when the device's watermark has not
// moved for store.gap_wait is the batch answered gap (and then the device's
// other held batches at once), and the agent resends from its watermark.
//
// The worker remembers the highest watermark of each of its devices that
// acks and its own commits have shown (a mark). A batch that starts past it
// is held without a try: the mark can only lag the database, and the ack
// that moves it wakes the batch.
const (
	maxHeld       = 64                    // batches held per worker; past it the one held longest is answered at once
	holdFirstPoll = 5 * time.Millisecond  // the first poll of a held batch
	holdMaxPoll   = 40 * time.Millisecond // polls back off to this
	// holdAckPoll is the poll while acks show the device moving: they wake
	// the batch, and the poll only covers an ack that got lost.
	holdAckPoll = 200 * time.Millisecond
)

// mark is the highest watermark of a device the worker knows of.
type mark struct{ epoch, through uint64 }

// heldBatch is a decoded batch waiting for the batch in front of it.
type heldBatch struct {
	device   string
	b        *wire.Batch
	pb       *preparedBatch
	p        *Policy
	first    uint64    // the lowest seq it covers (records or drops)
	seen     uint64    // the watermark of its (device, epoch) at the last try
	deadline time.Time // when it is answered gap, unless the watermark moves
	next     time.Time // its next try
	delay    time.Duration
}

// worker applies the batches of the devices hashed to one queue in the order
// they arrive, except for held batches. It is owned by one goroutine.
type worker struct {
	s     *Sink
	b     *wire.Batch  // decode buffer; replaced when its batch is held
	held  []*heldBatch // by first seq: a device's batches in the order they apply
	marks map[string]mark
}

// learn raises device's mark; a new epoch replaces it.
func (w *worker) learn(device string, epoch, through uint64) {
	if m, ok := w.marks[device]; !ok || m.epoch != epoch || through > m.through {
		w.marks[device] = mark{epoch: epoch, through: through}
	}
}

// outcome of one try.
type outcome uint8

const (
	outcomeHeld   outcome = iota // met a gap, and may still wait for it
	outcomeDone                  // applied and answered (or refused for good)
	outcomeGapped                // answered gap: the agent resends from its watermark
)

// receive decodes and applies one message, holding it when it meets a gap,
// and then tries the held batches of its device that it may have let
// through.
func (w *worker) receive(ctx context.Context, m message) {
	s := w.s
	if err := wire.DecodeBatchInto(m.payload, w.b); err != nil {
		s.Undecodable.Add(1)
		s.logLimited(m.device, "undecodable", "sink: cannot read a batch; not acknowledged", "err", err)
		return
	}
	if err := checkBatch(m.device, w.b); err != nil {
		s.Refused.Add(1)
		s.logLimited(m.device, "refused", "sink: batch refused; not acknowledged", "err", err)
		return
	}
	p := s.policy.Load()
	h := &heldBatch{device: m.device, b: w.b, pb: s.store.prepare(w.b, p), p: p, first: firstSeq(w.b),
		deadline: time.Now().Add(s.cfg.Store.GapWait), delay: holdFirstPoll}
	if k, ok := w.marks[m.device]; ok && k.epoch == w.b.Epoch && k.through+1 < h.first && s.cfg.Store.GapWait > 0 {
		// Known to start past the watermark: hold it without a try; the
		// ack that lets it through wakes it, and polls are the fallback.
		h.seen = k.through
		h.delay = holdAckPoll
		w.b = new(wire.Batch)
		w.hold(ctx, h)
		return
	}
	switch w.try(ctx, h) {
	case outcomeHeld:
		w.b = new(wire.Batch) // h keeps the records
		w.hold(ctx, h)
	case outcomeDone:
		w.follow(ctx, m.device)
	case outcomeGapped:
		w.expire(ctx, m.device)
	}
}

// firstSeq is the lowest seq b covers with a record or a drop (0: none).
func firstSeq(b *wire.Batch) uint64 {
	var first uint64
	for i := range b.Records {
		if s := b.Records[i].Seq; first == 0 || s < first {
			first = s
		}
	}
	for _, d := range b.Drops {
		if first == 0 || d.First < first {
			first = d.First
		}
	}
	return first
}

// try applies h; a gap is held for until h.deadline, which moves on while
// the device's watermark does. Application is retried while the store is
// down; the batch is not acknowledged meanwhile.
func (w *worker) try(ctx context.Context, h *heldBatch) outcome {
	s := w.s
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}
	for {
		start := time.Now()
		res, err := s.store.tryApply(ctx, h.device, h.pb, h.p, start.Before(h.deadline))
		if err == nil {
			s.ApplyLatency.Observe(time.Since(start))
			w.learn(h.device, res.Epoch, res.AppliedThrough)
			s.applied(h.device, h.b, res)
			if res.Status == wire.StatusGap {
				return outcomeGapped
			}
			return outcomeDone
		}
		if errors.Is(err, errGapRetry) {
			w.learn(h.device, res.Epoch, res.AppliedThrough)
			if res.AppliedThrough > h.seen { // the device moves on: keep waiting
				h.seen = res.AppliedThrough
				h.deadline = time.Now().Add(s.cfg.Store.GapWait)
				h.delay = holdFirstPoll
			}
			return outcomeHeld
		}
		var be *BatchError
		if errors.As(err, &be) {
			s.Refused.Add(1)
			s.logLimited(h.device, "refused", "sink: batch refused; not acknowledged", "err", err)
			return outcomeDone
		}
		if ctx.Err() != nil {
			return outcomeDone
		}
		s.StoreErrors.Add(1)
		s.logLimited("", "store", "sink: store error; retrying", "err", err)
		t := time.NewTimer(bo.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return outcomeDone
		case <-t.C:
		}
	}
}

// hold keeps h for another try. When the buffer is full, the device of the
// batch held longest is answered now.
func (w *worker) hold(ctx context.Context, h *heldBatch) {
	if len(w.held) >= maxHeld {
		oldest := w.held[0]
		for _, o := range w.held {
			if o.deadline.Before(oldest.deadline) {
				oldest = o
			}
		}
		w.expire(ctx, oldest.device)
	}
	h.schedule(time.Now())
	i := sort.Search(len(w.held), func(i int) bool { return w.held[i].first > h.first })
	w.held = append(w.held, nil)
	copy(w.held[i+1:], w.held[i:])
	w.held[i] = h
}

// schedule sets h's next try: after its delay, never past its deadline.
func (h *heldBatch) schedule(now time.Time) {
	h.next = now.Add(h.delay)
	if h.next.After(h.deadline) {
		h.next = h.deadline
	}
	if h.delay < holdMaxPoll {
		h.delay = min(2*h.delay, holdMaxPoll)
	}
}

func (w *worker) remove(h *heldBatch) {
	for i, o := range w.held {
		if o == h {
			copy(w.held[i:], w.held[i+1:])
			w.held[len(w.held)-1] = nil
			w.held = w.held[:len(w.held)-1]
			return
		}
	}
}

// follow tries the held batches of device, lowest first, after one of its
// batches was applied; it stops at the first that still meets a gap, which
// is polled from now on.
func (w *worker) follow(ctx context.Context, device string) {
	for {
		h := w.head(device)
		if h == nil {
			return
		}
		// The device has just moved on: its next batch waits afresh.
		if d := time.Now().Add(w.s.cfg.Store.GapWait); h.deadline.Before(d) {
			h.deadline = d
		}
		if k := w.marks[device]; k.epoch == h.b.Epoch && k.through+1 < h.first {
			return // not its turn yet: the batch in front is elsewhere
		}
		switch w.try(ctx, h) {
		case outcomeHeld:
			h.schedule(time.Now())
			return
		case outcomeDone:
			w.remove(h)
		case outcomeGapped:
			w.remove(h)
			w.expire(ctx, device)
			return
		}
	}
}

// expire answers every held batch of device now: after a gap reply the agent
// sends again from its watermark anyway.
func (w *worker) expire(ctx context.Context, device string) {
	for h := w.head(device); h != nil; h = w.head(device) {
		h.deadline = time.Time{}
		w.try(ctx, h)
		w.remove(h)
	}
}

// head is device's held batch with the lowest seq (nil: none).
func (w *worker) head(device string) *heldBatch {
	for _, h := range w.held {
		if h.device == device {
			return h
		}
	}
	return nil
}

// isHead reports whether w.held[i] is the lowest held batch of its device:
// only those are polled, the others follow them.
func (w *worker) isHead(i int) bool {
	for _, o := range w.held[:i] {
		if o.device == w.held[i].device {
			return false
		}
	}
	return true
}

// retryDue tries the held batches whose next try is due.
func (w *worker) retryDue(ctx context.Context) {
	for again := true; again; {
		again = false
		for i, h := range w.held {
			if w.isHead(i) && !time.Now().Before(h.next) && w.retryHead(ctx, h) {
				again = true // w.held changed
				break
			}
		}
	}
}

// retryHead tries h, the lowest held batch of its device, and the batches
// it lets through. It reports whether h left the buffer.
func (w *worker) retryHead(ctx context.Context, h *heldBatch) bool {
	switch w.try(ctx, h) {
	case outcomeDone:
		w.remove(h)
		w.follow(ctx, h.device)
		return true
	case outcomeGapped:
		w.remove(h)
		w.expire(ctx, h.device)
		return true
	}
	h.schedule(time.Now())
	return false
}

// woken tries the device's lowest held batch at once when an ack shows that
// another sink applied the batch in front of it, and keeps waiting while
// acks show that the device moves on.
func (w *worker) woken(ctx context.Context, k wake) {
	a, err := wire.DecodeAck(k.payload)
	if err != nil || a.Device != k.device || !wire.ValidEpoch(a.Epoch) {
		return
	}
	w.learn(a.Device, a.Epoch, a.AppliedThrough)
	h := w.head(k.device)
	if h == nil || a.Epoch != h.b.Epoch || a.AppliedThrough <= h.seen {
		return
	}
	if a.AppliedThrough+1 < h.first {
		// The device moves on, and acks say so: wait for the next one
		// rather than poll.
		now := time.Now()
		h.seen = a.AppliedThrough
		h.deadline = now.Add(w.s.cfg.Store.GapWait)
		h.delay = holdAckPoll
		h.schedule(now)
		return
	}
	w.retryHead(ctx, h)
}

// nextTry is when the earliest held batch that is polled is due.
func (w *worker) nextTry() (time.Time, bool) {
	var next time.Time
	for i, h := range w.held {
		if w.isHead(i) && (next.IsZero() || h.next.Before(next)) {
			next = h.next
		}
	}
	return next, !next.IsZero()
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
		if device != "" {
			args = append([]any{"device", device}, args...)
		}
		s.log.Warn(msg, args...)
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
		s.logLimited(device, "parked", "sink: records parked (see reason); replay them with `edgesync sink replay-parked` once the sink can take them",
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
	conn := s.conn.Load()
	if conn == nil || !conn.Up() {
		return // the agent resends; the next batch gets the ack
	}
	conn.Client().Publish(wire.AckTopic(s.cfg.TopicPrefix, device), 1, false, p)
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
