package capture

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

// Payload kinds of an MQTT source.
const (
	PayloadJSON   = "json"   // the payload is the record's data, as JSON (default)
	PayloadCBOR   = "cbor"   // the payload is the record's data, as one CBOR item
	PayloadText   = "text"   // the payload is UTF-8 text; the data is that JSON string
	PayloadRecord = "record" // the payload is a record object (or an array of them) as the ingest API takes
)

// DefaultLocalBroker is the broker an MQTT source subscribes to by default.
const DefaultLocalBroker = "tcp://127.0.0.1:1883"

// MQTTSourceConfig is one entry of `sources.mqtt:` in the agent
// configuration: subscribe to topics on a broker on the gateway (where PLC
// adapters and Node-RED publish) and capture every message as a record.
//
//	sources:
//	  mqtt:
//	    - topics: ["plant/+/+/#"]   # plant/<line>/<sensor>/...
//	      stream: "{2}"             # the 2nd topic level
//	      key: "{3}"                # the 3rd
//	      schema: reading@1
//
// Stream and Key are templates: text in which {1}, {2}, ... stand for the
// levels of the message's topic (1-based) and {topic} for the whole topic;
// "line-{2}" is allowed. A message whose topic lacks a level the template
// names, or whose stream comes out invalid, is refused (counted and
// acknowledged, so that it does not block the queue).
type MQTTSourceConfig struct {
	// Broker is the local broker; broker.url defaults to
	// tcp://127.0.0.1:1883, broker.client_id to "edgesync-capture-" and a
	// hash of the topics, stream and key (stable across restarts, so that
	// the persistent session and its queued messages are found again).
	Broker mqttx.BrokerConfig `yaml:"broker"`
	// Topics are the topic filters to subscribe to ("+" and "#" allowed).
	// Required.
	Topics []string `yaml:"topics"`
	// QoS of the subscription: 1 (default; 0 means the default) or 2.
	// Messages are acknowledged to the broker only once stored.
	QoS byte `yaml:"qos"`
	// Stream template; required unless Payload is "record", where it fills
	// records without a stream.
	Stream string `yaml:"stream"`
	// Key template; "" (default) is the empty key (payload record: none).
	Key string `yaml:"key"`
	// Schema, NAME@VERSION, of every record; "" (default) none.
	Schema string `yaml:"schema"`
	// Payload is json (default), cbor, text or record; see the Payload*
	// constants. With record, Stream, Key and Schema fill what records leave
	// out.
	Payload string `yaml:"payload"`
	// IncludeRetained captures retained messages that the broker sends on
	// subscribing. Default false: they were captured when first published,
	// and would be captured again at every reconnect.
	IncludeRetained bool `yaml:"include_retained"`
	// MaxBatch is how many messages are appended together at most; default
	// 256. (The broker bounds the messages in flight too: mosquitto's
	// max_inflight_messages, 20 by default.)
	MaxBatch int `yaml:"max_batch"`
}

// EnsureDefaults fills zero fields with their defaults.
func (c *MQTTSourceConfig) EnsureDefaults() {
	if c.Broker.URL == "" {
		c.Broker.URL = DefaultLocalBroker
	}
	if c.Broker.ClientID == "" {
		h := fnv.New32a()
		h.Write([]byte(strings.Join(c.Topics, "\x00") + "\x01" + c.Stream + "\x01" + c.Key))
		c.Broker.ClientID = fmt.Sprintf("edgesync-capture-%08x", h.Sum32())
	}
	c.Broker.EnsureDefaults()
	if c.QoS == 0 {
		c.QoS = 1
	}
	if c.Payload == "" {
		c.Payload = PayloadJSON
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 256
	}
}

// Validate reports every problem at once, naming keys under prefix (for
// example "sources.mqtt[0]"). Zero values are valid where they have a
// default.
func (c *MQTTSourceConfig) Validate(prefix string) error {
	cc := *c
	cc.Topics = append([]string(nil), c.Topics...)
	cc.EnsureDefaults()
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, key, fmt.Sprintf(format, args...)))
	}
	if err := cc.Broker.Validate(prefix + ".broker"); err != nil {
		errs = append(errs, err)
	}
	if len(cc.Topics) == 0 {
		bad("topics", "at least one topic filter is required")
	}
	for i, t := range cc.Topics {
		if msg := validTopicFilter(t); msg != "" {
			bad(fmt.Sprintf("topics[%d]", i), "%s: %q", msg, t)
		}
	}
	if cc.QoS > 2 {
		bad("qos", "must be 1 or 2, got %d", cc.QoS)
	}
	switch cc.Payload {
	case PayloadJSON, PayloadCBOR, PayloadText, PayloadRecord:
	default:
		bad("payload", "must be json, cbor, text or record, got %q", cc.Payload)
	}
	if st, err := parseTemplate(cc.Stream); err != nil {
		bad("stream", "%v", err)
	} else if lit, ok := st.literal(); ok {
		switch {
		case lit == "" && cc.Payload != PayloadRecord:
			bad("stream", "required: a stream name, or a template such as \"{2}\" (the 2nd topic level)")
		case lit != "" && !wire.ValidStream(lit):
			bad("stream", "must match [A-Za-z0-9._-]{1,64}, got %q", lit)
		}
	}
	if kt, err := parseTemplate(cc.Key); err != nil {
		bad("key", "%v", err)
	} else if lit, ok := kt.literal(); ok && checkKey([]byte(lit)) != "" {
		bad("key", "%s", checkKey([]byte(lit)))
	}
	if _, _, err := wire.ParseSchema(cc.Schema); err != nil {
		bad("schema", "must be NAME@VERSION, got %q", cc.Schema)
	}
	if cc.MaxBatch < 0 {
		bad("max_batch", "must be > 0, got %d", cc.MaxBatch)
	}
	return errors.Join(errs...)
}

// SourceStats count what a source did.
type SourceStats struct {
	Received uint64 // messages or lines read
	Records  uint64 // records stored
	Rejected uint64 // messages or lines refused (bad input), acknowledged or skipped
	Skipped  uint64 // retained messages ignored (MQTT), blank lines (file)
}

type sourceStats struct {
	received, records, rejected, skipped atomic.Uint64
}

func (s *sourceStats) get() SourceStats {
	return SourceStats{Received: s.received.Load(), Records: s.records.Load(), Rejected: s.rejected.Load(), Skipped: s.skipped.Load()}
}

// MQTTSource captures the messages of a local broker. See MQTTSourceConfig.
//
// A message is acknowledged to the broker (PUBACK) only after the records
// made from it were appended, so a crash of the agent (or a full outbox)
// never loses a message: the broker keeps it in the persistent session and
// sends it again. A message may therefore be captured twice (a crash
// between the append and the PUBACK); set record ids (payload record) to let
// the sink drop the second copy. Messages are handed from paho's callback
// to Run through a channel of MaxBatch messages and appended in groups of
// at most MaxBatch, in order. While the outbox is full (block mode) the
// messages wait unacknowledged; when the channel is full paho stops reading
// from the broker (flow control), which holds them in its queue. QoS 0
// messages cannot be acknowledged and are lost if the agent stops first.
type MQTTSource struct {
	cfg         MQTTSourceConfig
	stream, key topicTemplate
	schemaName  string
	schemaVer   uint32
	a           Appender
	m           *Metrics
	log         *rateLog
	slog        *slog.Logger
	msgs        chan inMsg
	stop        chan struct{}
	stopOnce    sync.Once
	ran         atomic.Bool
	stats       sourceStats

	// Run's state.
	p    parser
	def  defaults
	pend []pending
}

type inMsg struct {
	m  mqtt.Message
	at time.Time
}

type pending struct {
	msg         inMsg
	first, last int // its records in p.recs
}

// NewMQTTSource checks cfg and returns a source; Run connects it. m and log
// may be nil.
func NewMQTTSource(cfg MQTTSourceConfig, a Appender, m *Metrics, log *slog.Logger) (*MQTTSource, error) {
	if err := cfg.Validate("mqtt_source"); err != nil {
		return nil, err
	}
	cfg.Topics = append([]string(nil), cfg.Topics...)
	cfg.EnsureDefaults()
	if m == nil {
		m = new(Metrics)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &MQTTSource{cfg: cfg, a: a, m: m, log: newRateLog(log), slog: log,
		msgs: make(chan inMsg, cfg.MaxBatch), stop: make(chan struct{})}
	s.stream, _ = parseTemplate(cfg.Stream)
	s.key, _ = parseTemplate(cfg.Key)
	s.schemaName, s.schemaVer, _ = wire.ParseSchema(cfg.Schema)
	return s, nil
}

// Stats returns the source's counters.
func (s *MQTTSource) Stats() SourceStats { return s.stats.get() }

// Run connects to the broker (retrying with backoff while it is away),
// subscribes, and captures messages until ctx ends; then it disconnects
// without acknowledging what it did not store. It returns nil when ctx
// ends, or the error of an append that cannot succeed (the outbox closed or
// failed). Run may be called once.
func (s *MQTTSource) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("capture: MQTTSource.Run called twice")
	}
	opts, err := s.clientOptions()
	if err != nil {
		return err
	}
	client := mqtt.NewClient(opts)
	client.Connect() // with ConnectRetry, it keeps trying in the background
	err = s.loop(ctx)
	s.stopOnce.Do(func() { close(s.stop) })
	client.Disconnect(250)
	return err
}

func (s *MQTTSource) clientOptions() (*mqtt.ClientOptions, error) {
	b := s.cfg.Broker
	tc, err := b.TLSConfig()
	if err != nil {
		return nil, err
	}
	password, err := b.Password()
	if err != nil {
		return nil, err
	}
	url := b.URL
	switch {
	case strings.HasPrefix(url, "mqtt://"):
		url = "tcp://" + strings.TrimPrefix(url, "mqtt://")
	case strings.HasPrefix(url, "mqtts://"):
		url = "ssl://" + strings.TrimPrefix(url, "mqtts://")
	}
	o := mqtt.NewClientOptions().
		AddBroker(url).
		SetClientID(b.ClientID).
		SetCleanSession(false). // the broker keeps unacknowledged messages for us
		SetStore(mqtt.NewMemoryStore()).
		SetKeepAlive(b.KeepAlive).
		SetPingTimeout(b.ConnectTimeout).
		SetConnectTimeout(b.ConnectTimeout).
		SetWriteTimeout(b.WriteTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(b.ReconnectMin).
		SetMaxReconnectInterval(b.ReconnectMax).
		SetOrderMatters(true).    // one handler call at a time, in order
		SetAutoAckDisabled(true). // PUBACK only once stored
		SetDefaultPublishHandler(s.onMessage).
		SetOnConnectHandler(s.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			s.log.logf(slog.LevelWarn, "mqtt-lost", "mqtt source: connection lost; reconnecting", "broker", b.URL, "err", err)
		})
	if b.Username != "" {
		o.SetUsername(b.Username)
	}
	if password != "" {
		o.SetPassword(password)
	}
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	return o, nil
}

// onConnect subscribes (again) on every connection. paho runs it in its own
// goroutine.
func (s *MQTTSource) onConnect(c mqtt.Client) {
	filters := make(map[string]byte, len(s.cfg.Topics))
	for _, t := range s.cfg.Topics {
		filters[t] = s.cfg.QoS
	}
	// No callback: messages go to the default handler, which also catches
	// what the session delivers before the subscription is renewed.
	tok := c.SubscribeMultiple(filters, nil)
	t := time.NewTimer(s.cfg.Broker.ConnectTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-t.C:
		s.log.logf(slog.LevelWarn, "mqtt-subscribe", "mqtt source: no answer to subscribe", "broker", s.cfg.Broker.URL, "topics", s.cfg.Topics)
		return
	case <-s.stop:
		return
	}
	if err := tok.Error(); err != nil {
		s.log.logf(slog.LevelWarn, "mqtt-subscribe", "mqtt source: subscribe failed", "broker", s.cfg.Broker.URL, "topics", s.cfg.Topics, "err", err)
		return
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for topic, q := range st.Result() {
			if q == 0x80 {
				s.log.logf(slog.LevelError, "mqtt-subscribe", "mqtt source: the broker refused the subscription", "broker", s.cfg.Broker.URL, "topic", topic)
			}
		}
	}
	s.log.logf(slog.LevelInfo, "mqtt-connected", "mqtt source: connected and subscribed", "broker", s.cfg.Broker.URL, "topics", s.cfg.Topics)
}

// onMessage is paho's handler: it only hands the message to Run. It waits
// when Run is behind (which holds back the broker: flow control), but never
// past the source's stop.
func (s *MQTTSource) onMessage(_ mqtt.Client, m mqtt.Message) {
	s.stats.received.Add(1)
	if m.Retained() && !s.cfg.IncludeRetained {
		s.stats.skipped.Add(1)
		m.Ack()
		return
	}
	select {
	case s.msgs <- inMsg{m: m, at: time.Now()}:
	case <-s.stop:
	}
}

func (s *MQTTSource) loop(ctx context.Context) error {
	batch := make([]inMsg, 0, s.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case it := <-s.msgs:
			batch = append(batch, it)
		}
	fill:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case it := <-s.msgs:
				batch = append(batch, it)
			default:
				break fill
			}
		}
		if err := s.process(ctx, batch); err != nil {
			return err
		}
		clear(batch)
	}
}

// process appends the records of a group of messages, then acknowledges
// them. Messages that fail validation are acknowledged at once and counted.
func (s *MQTTSource) process(ctx context.Context, batch []inMsg) error {
	p := &s.p
	p.reset(time.Now())
	s.pend = s.pend[:0]
	for _, it := range batch {
		first := len(p.recs)
		if err := s.add(it); err != nil {
			s.refuse(it.m, err)
			continue
		}
		s.pend = append(s.pend, pending{msg: it, first: first, last: len(p.recs)})
	}
	if len(p.recs) > 0 {
		err := s.append(ctx, p.recs)
		switch {
		case err == nil:
			for _, pe := range s.pend {
				s.stored(pe)
			}
		case errors.Is(err, outbox.ErrTooLarge) || errors.Is(err, outbox.ErrRecordTooLarge):
			// Find the messages that can never be stored; store the rest.
			for _, pe := range s.pend {
				err := s.append(ctx, p.recs[pe.first:pe.last])
				switch {
				case err == nil:
					s.stored(pe)
				case errors.Is(err, outbox.ErrTooLarge) || errors.Is(err, outbox.ErrRecordTooLarge):
					s.refuse(pe.msg.m, err)
				default:
					return s.appendErr(ctx, err)
				}
			}
		default:
			return s.appendErr(ctx, err)
		}
	} else {
		clear(s.pend)
	}
	for i := range p.recs {
		p.recs[i] = outbox.Record{}
	}
	return nil
}

// append appends recs, waiting while the outbox is full.
func (s *MQTTSource) append(ctx context.Context, recs []outbox.Record) error {
	for {
		_, _, err := s.a.AppendWithSource(ctx, recs, nil)
		if err == nil || !errors.Is(err, outbox.ErrFull) || ctx.Err() != nil {
			return err
		}
		s.log.logf(slog.LevelWarn, "mqtt-full", "mqtt source: outbox full; holding messages unacknowledged", "err", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// appendErr: when ctx ended the messages stay unacknowledged (the broker
// sends them again) and Run returns nil; otherwise the outbox cannot take
// records and Run returns the error.
func (s *MQTTSource) appendErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("mqtt source: append: %w", err)
}

func (s *MQTTSource) stored(pe pending) {
	n := uint64(pe.last - pe.first)
	s.m.CaptureToDurable.ObserveN(time.Since(pe.msg.at), n)
	s.m.Accepted.Add(n)
	s.stats.records.Add(n)
	pe.msg.m.Ack()
}

func (s *MQTTSource) refuse(m mqtt.Message, err error) {
	s.stats.rejected.Add(1)
	s.m.SourceRejected.Add(1)
	s.log.logf(slog.LevelWarn, "mqtt-refused", "mqtt source: message refused (acknowledged and dropped)", "topic", m.Topic(), "err", err)
	m.Ack()
}

// add parses one message into s.p.recs.
func (s *MQTTSource) add(it inMsg) error {
	p := &s.p
	topic := it.m.Topic()
	stream, miss := s.stream.expand(topic)
	if miss != 0 {
		return fmt.Errorf("stream: topic %q has no level %d", topic, miss)
	}
	key, miss := s.key.expand(topic)
	if miss != 0 {
		return fmt.Errorf("key: topic %q has no level %d", topic, miss)
	}
	s.def = defaults{stream: stream, key: key, schemaName: s.schemaName, schemaVer: s.schemaVer}
	p.now = it.at.UnixNano()
	payload := it.m.Payload()
	if s.cfg.Payload == PayloadRecord {
		return p.parse(formatJSON, payload, &s.def)
	}
	p.full, p.b, p.pos, p.format, p.line, p.def = payload, payload, 0, formatJSON, 0, &s.def
	defer func() { p.full, p.b = nil, nil }()
	r := &p.rr
	*r = rawRecord{set: 1 << fData, seen: 1 << fData, data: payload}
	switch s.cfg.Payload {
	case PayloadCBOR:
		r.dataKind, p.format = dataCBOR, formatCBOR
	case PayloadText:
		r.dataKind = dataText
	}
	return p.build(0, r)
}
