package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/time/rate"

	"github.com/edgesync/edgesync/internal/latency"
	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

// Outbox is what the uplink needs of the outbox.
type Outbox interface {
	Read(from outbox.Seq, maxRecords, maxBytes int, dst []outbox.Record) (outbox.Epoch, []outbox.Record, error)
	Ack(e outbox.Epoch, through outbox.Seq) (outbox.AckResult, error)
	Changed() <-chan struct{}
	Position() outbox.Position
	CheckpointFor(s outbox.Seq) (outbox.Checkpoint, bool)
}

// Link is what the uplink needs of the MQTT connection (mqttx.Conn).
type Link interface {
	Up() bool
	Changed() <-chan struct{}
	Client() mqtt.Client
}

// Metrics of the uplink. All fields are safe for concurrent use.
type Metrics struct {
	BatchesSent   atomic.Uint64 // batches published (first sends and resends)
	BatchesResent atomic.Uint64 // batches published again after a resend
	RecordsSent   atomic.Uint64
	BytesSent     atomic.Uint64 // payload bytes on the wire
	Resends       atomic.Uint64 // times the uplink went back to the watermark
	AcksApplied   atomic.Uint64 // acks that moved the watermark
	AcksDuplicate atomic.Uint64 // acks at or below the watermark
	AcksStale     atomic.Uint64 // acks for another epoch
	AcksForeign   atomic.Uint64 // acks naming another device
	AcksInvalid   atomic.Uint64 // undecodable acks
	AcksGap       atomic.Uint64
	AcksPaused    atomic.Uint64
	Parked        atomic.Uint64 // records the sink reported parked
	PublishErrors atomic.Uint64
	Inflight      atomic.Int64
	RateWaitNs    atomic.Int64 // time spent waiting on uplink.rate_bytes
	Paused        atomic.Bool  // the sink holds this device
	NewEpochs     atomic.Uint64
	LastAckUnixNs atomic.Int64 // wall clock of the last ack that moved the watermark
	Commands      atomic.Uint64

	DurableToPuback latency.Histogram // record durable -> broker PUBACK
	PubackToAck     latency.Histogram // PUBACK -> the sink's ack
	CaptureToAck    latency.Histogram // handed to the outbox -> the sink's ack
}

// Config of an Uplink.
type Config struct {
	TopicPrefix string
	DeviceID    string
	BootID      string
	Batch       BatchConfig
	Uplink      UplinkConfig
	Logger      *slog.Logger
}

// Uplink sends the outbox to the sink over MQTT and applies the sink's
// acknowledgements to the outbox. See the package documentation.
type Uplink struct {
	cfg     Config
	ob      Outbox
	link    Link
	log     *slog.Logger
	metrics *Metrics
	limiter *rate.Limiter
	burst   int

	upTopic, ackTopic, cmdTopic, stateTopic string

	acks    chan []byte
	cmds    chan []byte
	pubacks chan puback
	kick    chan struct{}
	resend  chan outbox.Seq
	reconf  chan liveConfig

	// owned by the Run goroutine
	epoch        outbox.Epoch
	watermark    outbox.Seq
	sentThrough  outbox.Seq
	claimFloor   outbox.Seq // resend-from: claim no more than this as trimmed until sentThrough passes the watermark
	claiming     bool
	highWater    outbox.Seq // the highest seq any batch of this epoch covered
	inflight     []*flight
	nextSendID   uint64
	resendFloor  uint64 // gap replies to batches sent before this SendID are stale
	lastProgress time.Time
	pausedUntil  time.Time
	recs         []outbox.Record
	wrecs        []wire.Record
	buf          []byte
	pending      *pendingPublish
	wasUp        bool
}

type flight struct {
	sendID   uint64
	first    outbox.Seq
	covers   outbox.Seq // highest seq this batch tells the sink about (records or drops)
	records  int
	sentAt   time.Time
	pubacked time.Time
	enq      time.Time // when its newest record was handed to the outbox
	durable  time.Time
}

type puback struct {
	sendID uint64
	err    error
	at     time.Time
}

type pendingPublish struct {
	payload []byte
	fl      *flight
	at      time.Time // when the rate limiter allows it
	resend  bool
}

// New returns an Uplink. Call HandleAck and HandleCmd from the MQTT
// subscriptions (they never block), and Run.
func New(cfg Config, ob Outbox, link Link, m *Metrics) *Uplink {
	cfg.Batch.EnsureDefaults()
	cfg.Uplink.EnsureDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if m == nil {
		m = &Metrics{}
	}
	u := &Uplink{
		cfg:        cfg,
		ob:         ob,
		link:       link,
		log:        cfg.Logger,
		metrics:    m,
		upTopic:    wire.UpTopic(cfg.TopicPrefix, cfg.DeviceID),
		ackTopic:   wire.AckTopic(cfg.TopicPrefix, cfg.DeviceID),
		cmdTopic:   wire.CmdTopic(cfg.TopicPrefix, cfg.DeviceID),
		stateTopic: wire.StateTopic(cfg.TopicPrefix, cfg.DeviceID),
		acks:       make(chan []byte, 1024),
		cmds:       make(chan []byte, 64),
		pubacks:    make(chan puback, 2*cfg.Uplink.MaxInflight+8),
		kick:       make(chan struct{}, 1),
		resend:     make(chan outbox.Seq, 1),
		reconf:     make(chan liveConfig, 1),
		// SendIDs grow across restarts too (a wall-clock start), so that a gap
		// reply to the previous process's batches is recognised as stale.
		nextSendID: uint64(time.Now().UnixNano()),
	}
	if r := cfg.Uplink.RateBytes; r > 0 {
		// The burst holds at least one batch (PITFALLS 21): twice batch.max_bytes
		// covers the per-record overhead of an uncompressed batch. A payload
		// larger than the burst takes the whole burst.
		u.burst = max(int(r), 2*int(cfg.Batch.MaxBytes))
		u.limiter = rate.NewLimiter(rate.Limit(r), u.burst)
	}
	return u
}

// Metrics returns the uplink's metrics.
func (u *Uplink) Metrics() *Metrics { return u.metrics }

// AckTopic, CmdTopic: what the caller subscribes to (QoS 1) on every connect.
func (u *Uplink) AckTopic() string { return u.ackTopic }

// CmdTopic is the command topic of this device.
func (u *Uplink) CmdTopic() string { return u.cmdTopic }

// HandleAck hands an ack payload to the uplink. It never blocks: when the
// queue is full the ack is dropped (acks are cumulative; a later one covers it).
func (u *Uplink) HandleAck(payload []byte) {
	select {
	case u.acks <- payload:
	default:
	}
}

// HandleCmd hands a command payload to the uplink; it never blocks.
func (u *Uplink) HandleCmd(payload []byte) {
	select {
	case u.cmds <- payload:
	default:
	}
}

// Subscribe subscribes to the ack and cmd topics without waiting; call it
// from the connection's OnConnect.
func (u *Uplink) Subscribe(c mqtt.Client) {
	tok := c.SubscribeMultiple(map[string]byte{u.ackTopic: 1, u.cmdTopic: 1}, func(_ mqtt.Client, m mqtt.Message) {
		u.Handle(m)
	})
	mqttx.WatchSubscribe(tok, func(err error) {
		if err != nil {
			u.log.Error("uplink: acknowledgements cannot arrive, so the outbox will not drain", "err", err)
		}
	})
}

// Handle takes an ack or command message and reports whether the topic was
// one of the uplink's. Use it in the connection's default handler too: with a
// persistent session, queued acks arrive before the subscription is renewed.
func (u *Uplink) Handle(m mqtt.Message) bool {
	switch m.Topic() {
	case u.ackTopic:
		u.HandleAck(m.Payload())
	case u.cmdTopic:
		u.HandleCmd(m.Payload())
	default:
		return false
	}
	return true
}

// Kick makes the uplink look at the outbox now (for example after a resend
// command from the control socket).
func (u *Uplink) Kick() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// Run sends and applies acks until ctx ends.
func (u *Uplink) Run(ctx context.Context) error {
	pos := u.ob.Position()
	u.epoch, u.watermark = pos.Epoch, pos.Watermark
	u.sentThrough = pos.Watermark
	u.lastProgress = time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	stateTick := time.NewTicker(u.cfg.Uplink.StateInterval)
	defer stateTick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		wake := u.step(ctx, &wg)
		if !wake.IsZero() {
			d := time.Until(wake)
			if d < time.Millisecond {
				d = time.Millisecond
			}
			timer.Reset(d)
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			return nil
		case p := <-u.acks:
			u.handleAck(p)
		case p := <-u.cmds:
			u.handleCmd(p)
		case pa := <-u.pubacks:
			u.handlePuback(pa)
		case <-u.ob.Changed():
		case <-u.link.Changed():
		case <-u.kick:
		case from := <-u.resend:
			u.metrics.Commands.Add(1)
			u.ResendFrom(from)
		case lc := <-u.reconf:
			u.apply(lc)
		case <-stateTick.C:
			u.publishState(true)
		case <-timer.C:
		}
		// Drain what else is ready before the next step, acks first.
		for drained := false; !drained; {
			select {
			case p := <-u.acks:
				u.handleAck(p)
			case pa := <-u.pubacks:
				u.handlePuback(pa)
			default:
				drained = true
			}
		}
	}
}

// step sends what it can and returns when it wants to be woken up (zero: on events only).
func (u *Uplink) step(ctx context.Context, wg *sync.WaitGroup) time.Time {
	now := time.Now()
	up := u.link.Up()
	if up != u.wasUp {
		u.wasUp = up
		if up {
			// A new connection: what was in flight may be lost; start again
			// from the watermark, never more than the window at once.
			u.resendFromWatermark("reconnected")
			u.publishState(true)
		}
	}
	if !up {
		return time.Time{}
	}
	var wake time.Time
	later := func(t time.Time) {
		if wake.IsZero() || t.Before(wake) {
			wake = t
		}
	}
	// No progress for ack_timeout: send everything again from the watermark.
	if len(u.inflight) > 0 && now.Sub(u.lastProgress) >= u.cfg.Uplink.AckTimeout {
		u.log.Warn("uplink: no acknowledgement in time; sending again from the watermark",
			"watermark", u.watermark, "inflight", len(u.inflight), "ack_timeout", u.cfg.Uplink.AckTimeout)
		u.resendFromWatermark("ack timeout")
	}
	if len(u.inflight) > 0 {
		later(u.lastProgress.Add(u.cfg.Uplink.AckTimeout))
	}
	if u.metrics.Paused.Load() {
		if now.Before(u.pausedUntil) {
			later(u.pausedUntil)
			return wake
		}
		if len(u.inflight) > 0 {
			return wake // the probe is out
		}
	}
	for len(u.inflight) < u.cfg.Uplink.MaxInflight {
		if u.pending == nil {
			lingerUntil, ok := u.prepare(now, false)
			if !lingerUntil.IsZero() {
				later(lingerUntil)
			}
			if !ok {
				break
			}
		}
		p := u.pending
		if p.at.After(now) {
			later(p.at)
			break
		}
		u.publish(ctx, wg, p)
		u.pending = nil
		if u.metrics.Paused.Load() {
			break // one probe at a time
		}
	}
	if u.pending == nil && len(u.inflight) >= u.cfg.Uplink.MaxInflight && !u.metrics.Paused.Load() {
		// The window is full: read and encode the next batch now, while the
		// acks are on their way, so that it goes out the moment one makes
		// room. With max_inflight 1 this takes the read and the encoding
		// (about a third of a round trip) off every round trip. Only a full
		// batch: a partial one waits, as before, to take in what arrives
		// meanwhile.
		u.prepare(now, true)
	}
	return wake
}

// prepare reads the next batch into u.pending. It returns false when there is
// nothing to send now, and when to look again because of linger. With
// fullOnly it prepares only a batch cut by batch.max_records or
// batch.max_bytes (or a resend), and never asks to be woken.
func (u *Uplink) prepare(now time.Time, fullOnly bool) (time.Time, bool) {
	bc := u.cfg.Batch
	maxRecords := bc.MaxRecords
	for {
		epoch, recs, err := u.ob.Read(u.sentThrough+1, maxRecords, int(bc.MaxBytes), u.recs[:0])
		if err != nil {
			u.log.Error("uplink: read outbox", "err", err)
			return now.Add(time.Second), false
		}
		u.recs = recs
		if epoch != u.epoch {
			u.newEpoch(epoch)
			continue
		}
		pos := u.ob.Position()
		var drops []wire.Range
		var dropsCover outbox.Seq
		for _, d := range pos.Drops {
			if d.Last > pos.Watermark {
				drops = append(drops, wire.Range{First: uint64(d.First), Last: uint64(d.Last)})
				dropsCover = max(dropsCover, d.Last)
			}
		}
		if len(recs) == 0 && dropsCover <= u.sentThrough {
			return time.Time{}, false
		}
		resend := u.sentThrough < u.maxSent()
		if fullOnly && !resend && len(recs) < maxRecords {
			var bytes int
			for i := range recs {
				bytes += len(recs[i].Data)
			}
			if bytes < int(bc.MaxBytes)*3/4 {
				return time.Time{}, false
			}
		}
		// Linger: a batch that is not full waits for more records, counted
		// from when its first record became durable.
		if len(recs) > 0 && !resend && bc.Linger > 0 && len(recs) < maxRecords {
			var bytes int
			for i := range recs {
				bytes += len(recs[i].Data)
			}
			if bytes < int(bc.MaxBytes)*3/4 {
				if cp, ok := u.ob.CheckpointFor(recs[0].Seq); ok {
					if until := cp.Durable.Add(bc.Linger); until.After(now) {
						return until, false
					}
				}
			}
		}
		b := wire.Batch{
			V:      wire.Version,
			Device: u.cfg.DeviceID,
			Epoch:  uint64(epoch),
			Acked:  uint64(u.claimedAcked(pos)),
			Drops:  drops,
			SentAt: time.Now().UnixNano(),
			SendID: u.nextSendID,
		}
		u.wrecs = FillRecords(&b, u.wrecs, recs)
		comp := CompressionByte(bc.Compression)
		payload, err := wire.EncodeBatch(u.buf[:0], &b, comp)
		if errors.Is(err, wire.ErrTooLarge) && len(recs) > 1 {
			maxRecords = max(1, len(recs)/2)
			continue
		}
		if err != nil {
			// A record the wire refuses can never be sent: this is a bug
			// upstream (capture validates); say so loudly and retry later.
			u.log.Error("uplink: cannot encode batch", "first", b.First, "last", b.Last, "err", err)
			return now.Add(5 * time.Second), false
		}
		u.buf = payload
		covers := max(outbox.Seq(b.Last), dropsCover)
		fl := &flight{sendID: b.SendID, first: outbox.Seq(b.First), covers: covers, records: len(recs), sentAt: now}
		if len(recs) > 0 {
			if cp, ok := u.ob.CheckpointFor(recs[len(recs)-1].Seq); ok {
				fl.enq, fl.durable = cp.Enqueued, cp.Durable
			}
		}
		u.nextSendID++
		u.sentThrough = max(u.sentThrough, covers)
		p := &pendingPublish{payload: append([]byte(nil), payload...), fl: fl, at: now, resend: resend}
		if u.limiter != nil {
			r := u.limiter.ReserveN(now, min(len(payload), u.burst))
			if d := r.DelayFrom(now); d > 0 {
				p.at = now.Add(d)
				u.metrics.RateWaitNs.Add(int64(d))
			}
		}
		u.pending = p
		return time.Time{}, true
	}
}

// maxSent is the highest seq any batch of this epoch has covered: sends
// below it are resends.
func (u *Uplink) maxSent() outbox.Seq {
	return u.highWater
}

func (u *Uplink) claimedAcked(pos outbox.Position) outbox.Seq {
	if u.claiming && u.sentThrough < pos.Watermark {
		return min(max(u.claimFloor, pos.Low-1), pos.Watermark)
	}
	u.claiming = false
	return pos.Watermark
}

func (u *Uplink) publish(ctx context.Context, wg *sync.WaitGroup, p *pendingPublish) {
	fl := p.fl
	fl.sentAt = time.Now()
	u.inflight = append(u.inflight, fl)
	u.metrics.Inflight.Store(int64(len(u.inflight)))
	u.metrics.BatchesSent.Add(1)
	if p.resend {
		u.metrics.BatchesResent.Add(1)
	}
	u.highWater = max(u.highWater, fl.covers)
	u.metrics.RecordsSent.Add(uint64(fl.records))
	u.metrics.BytesSent.Add(uint64(len(p.payload)))
	if len(u.inflight) == 1 {
		u.lastProgress = fl.sentAt
	}
	tok := u.link.Client().Publish(u.upTopic, 1, false, p.payload)
	timeout := u.cfg.Uplink.AckTimeout
	wg.Add(1)
	go func(id uint64) {
		defer wg.Done()
		var err error
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-tok.Done():
			err = tok.Error()
		case <-t.C:
			err = errors.New("no PUBACK in time")
		case <-ctx.Done():
			return
		}
		select {
		case u.pubacks <- puback{sendID: id, err: err, at: time.Now()}:
		case <-ctx.Done():
		}
	}(fl.sendID)
}

func (u *Uplink) handlePuback(pa puback) {
	if pa.err != nil {
		u.metrics.PublishErrors.Add(1)
		// A failed publish is resent by the ack timeout or the reconnect.
		return
	}
	for _, fl := range u.inflight {
		if fl.sendID == pa.sendID {
			fl.pubacked = pa.at
			if !fl.durable.IsZero() {
				u.metrics.DurableToPuback.ObserveN(pa.at.Sub(fl.durable), uint64(max(fl.records, 1)))
			}
			return
		}
	}
}

func (u *Uplink) resendFromWatermark(why string) {
	if len(u.inflight) > 0 || u.sentThrough > u.watermark {
		u.metrics.Resends.Add(1)
		u.log.Debug("uplink: resending from the watermark", "why", why, "watermark", u.watermark)
	}
	u.sentThrough = u.watermark
	u.inflight = u.inflight[:0]
	u.metrics.Inflight.Store(0)
	u.resendFloor = u.nextSendID
	u.pending = nil
	u.lastProgress = time.Now()
}

func (u *Uplink) newEpoch(e outbox.Epoch) {
	u.log.Warn("uplink: the outbox moved to a new epoch", "old", u.epoch, "new", e)
	u.metrics.NewEpochs.Add(1)
	pos := u.ob.Position()
	u.epoch, u.watermark = e, pos.Watermark
	u.highWater = 0
	u.claiming = false
	u.metrics.Paused.Store(false)
	u.resendFromWatermark("new epoch")
}

func (u *Uplink) handleAck(payload []byte) {
	a, err := wire.DecodeAck(payload)
	if err != nil {
		u.metrics.AcksInvalid.Add(1)
		return
	}
	if a.Device != u.cfg.DeviceID {
		u.metrics.AcksForeign.Add(1)
		return
	}
	if outbox.Epoch(a.Epoch) != u.epoch {
		u.metrics.AcksStale.Add(1)
		return
	}
	through := outbox.Seq(a.AppliedThrough)
	res, err := u.ob.Ack(u.epoch, through)
	switch {
	case errors.Is(err, outbox.ErrAckAboveHead):
		u.log.Error("uplink: the sink acknowledged records this device never wrote; the outbox started a new epoch",
			"through", through, "err", err)
		u.newEpoch(u.ob.Position().Epoch)
		return
	case errors.Is(err, outbox.ErrStaleEpoch):
		u.metrics.AcksStale.Add(1)
		return
	case err != nil:
		u.log.Error("uplink: apply ack", "err", err)
		return
	}
	now := time.Now()
	if res.Advanced {
		u.metrics.AcksApplied.Add(1)
		u.metrics.LastAckUnixNs.Store(time.Now().UnixNano())
		u.watermark = res.Watermark
		u.lastProgress = now
		k := 0
		for _, fl := range u.inflight {
			if fl.covers <= u.watermark {
				n := uint64(max(fl.records, 1))
				if !fl.pubacked.IsZero() {
					u.metrics.PubackToAck.ObserveN(now.Sub(fl.pubacked), n)
				}
				if !fl.enq.IsZero() {
					u.metrics.CaptureToAck.ObserveN(now.Sub(fl.enq), n)
				}
				continue
			}
			u.inflight[k] = fl
			k++
		}
		u.inflight = u.inflight[:k]
		u.metrics.Inflight.Store(int64(k))
		if u.sentThrough < u.watermark {
			u.sentThrough = u.watermark
		}
	} else {
		u.metrics.AcksDuplicate.Add(1)
	}
	for _, p := range a.Parked {
		u.metrics.Parked.Add(p.Last - p.First + 1)
	}
	switch a.Status {
	case wire.StatusOK:
		if u.metrics.Paused.Swap(false) {
			u.log.Info("uplink: the sink resumed this device", "watermark", u.watermark)
			u.resendFromWatermark("resumed")
		}
	case wire.StatusGap:
		u.metrics.AcksGap.Add(1)
		// Only a reply to a batch sent after the last resend means news.
		if a.InReplyTo == 0 || a.InReplyTo >= u.resendFloor {
			u.resendFromWatermark("gap")
		}
	case wire.StatusPaused:
		u.metrics.AcksPaused.Add(1)
		if !u.metrics.Paused.Swap(true) {
			u.log.Warn("uplink: the sink paused this device (unknown schema); holding resends",
				"watermark", u.watermark, "probe_every", u.cfg.Uplink.PauseProbe)
		}
		u.resendFromWatermark("paused")
		u.pausedUntil = now.Add(u.cfg.Uplink.PauseProbe)
	}
}

func (u *Uplink) handleCmd(payload []byte) {
	c, err := wire.DecodeCmd(payload)
	if err != nil {
		u.log.Warn("uplink: ignoring an undecodable command", "err", err)
		return
	}
	if c.Epoch != 0 && outbox.Epoch(c.Epoch) != u.epoch {
		u.log.Info("uplink: ignoring a command for another epoch", "id", c.ID, "epoch", c.Epoch)
		return
	}
	switch c.Name {
	case wire.CmdResend:
		u.metrics.Commands.Add(1)
		u.ResendFrom(outbox.Seq(c.From))
		u.log.Info("uplink: resending on command", "id", c.ID, "from", c.From)
	default:
		u.log.Info("uplink: ignoring an unknown command", "id", c.ID, "name", c.Name)
	}
}

type liveConfig struct {
	batch  BatchConfig
	uplink UplinkConfig
}

// Reconfigure changes the batch and uplink settings of a running uplink
// (SIGHUP): batch size and linger, compression, window, ack timeout, rate
// limit and probe interval take effect from the next batch. It never blocks;
// a newer call replaces one not yet taken. The values must be validated.
func (u *Uplink) Reconfigure(b BatchConfig, up UplinkConfig) {
	b.EnsureDefaults()
	up.EnsureDefaults()
	lc := liveConfig{batch: b, uplink: up}
	for {
		select {
		case u.reconf <- lc:
			return
		default:
		}
		select {
		case <-u.reconf:
		default:
		}
	}
}

func (u *Uplink) apply(lc liveConfig) {
	u.cfg.Batch, u.cfg.Uplink = lc.batch, lc.uplink
	u.limiter, u.burst = nil, 0
	if r := lc.uplink.RateBytes; r > 0 {
		u.burst = max(int(r), 2*int(lc.batch.MaxBytes))
		u.limiter = rate.NewLimiter(rate.Limit(r), u.burst)
	}
	// A batch already cut (u.pending) goes out as it is.
	u.log.Info("uplink: settings changed", "max_records", lc.batch.MaxRecords, "linger", lc.batch.Linger,
		"max_inflight", lc.uplink.MaxInflight, "rate_bytes", lc.uplink.RateBytes, "ack_timeout", lc.uplink.AckTimeout)
}

// Command asks the uplink to send again from seq from (the control socket's
// resend). It never blocks; a newer request replaces one not yet taken.
func (u *Uplink) Command(from outbox.Seq) {
	for {
		select {
		case u.resend <- from:
			return
		default:
		}
		select {
		case <-u.resend:
		default:
		}
	}
}

// ResendFrom makes the uplink send again from seq from (records retained
// after acknowledgement included). Only call it from the Run goroutine or via
// a command; it is not safe for concurrent use.
func (u *Uplink) ResendFrom(from outbox.Seq) {
	if from < 1 {
		from = 1
	}
	u.resendFromWatermark("command")
	if from-1 < u.watermark {
		u.sentThrough = from - 1
		u.claimFloor = from - 1
		u.claiming = true
	}
}

// publishState publishes the retained state message (online).
func (u *Uplink) publishState(online bool) {
	if !u.link.Up() {
		return
	}
	payload, err := wire.EncodeState(nil, u.State(online))
	if err != nil {
		u.log.Error("uplink: encode state", "err", err)
		return
	}
	u.link.Client().Publish(u.stateTopic, 1, true, payload)
}

// State builds the state message from the outbox.
func (u *Uplink) State(online bool) *wire.State {
	pos := u.ob.Position()
	st := &wire.State{
		V: wire.Version, Device: u.cfg.DeviceID, Online: online, BootID: u.cfg.BootID,
		Epoch: uint64(pos.Epoch), Head: uint64(pos.Head), Watermark: uint64(pos.Watermark),
		Time: time.Now().UnixNano(),
	}
	if pos.Head > pos.Watermark {
		low := max(pos.Watermark+1, pos.Low)
		if pos.Head >= low {
			st.Depth = uint64(pos.Head - low + 1)
		}
		if cp, ok := u.ob.CheckpointFor(low); ok {
			st.OldestAgeMillis = uint64(time.Since(cp.Enqueued).Milliseconds())
		}
	}
	return st
}

// OfflineState is the last will: the same message with Online false.
func OfflineState(device, bootID string) []byte {
	p, err := wire.EncodeState(nil, &wire.State{V: wire.Version, Device: device, BootID: bootID, Time: time.Now().UnixNano()})
	if err != nil {
		panic(fmt.Sprintf("transport: encode offline state: %v", err))
	}
	return p
}
