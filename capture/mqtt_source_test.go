package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgesync/edgesync/internal/broker"
	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/internal/testenv"
	"github.com/edgesync/edgesync/outbox"
)

func startBroker(t *testing.T) *broker.Broker {
	t.Helper()
	b, err := broker.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// publisher is a plain MQTT client standing in for a PLC adapter.
type publisher struct {
	t *testing.T
	c paho.Client
}

func newPublisher(t *testing.T, url string) *publisher {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(false))
	if err := mqttx.WaitToken(context.Background(), c.Connect(), 10*time.Second); err != nil {
		t.Fatalf("publisher connect: %v", err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &publisher{t: t, c: c}
}

func (p *publisher) publish(topic string, qos byte, retained bool, payload string) {
	p.t.Helper()
	if err := mqttx.WaitToken(context.Background(), p.c.Publish(topic, qos, retained, []byte(payload)), 10*time.Second); err != nil {
		p.t.Fatalf("publish %s: %v", topic, err)
	}
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runSource starts s.Run and returns a function that stops it and returns
// Run's error.
func runSource(t *testing.T, run func(context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func recJSON(t *testing.T, r outbox.Record) string {
	t.Helper()
	j, err := jsoncbor.ToJSON(nil, r.Data)
	if err != nil {
		t.Fatalf("data of %d: %v", r.Seq, err)
	}
	return string(j)
}

// waitSubscribed waits until s is subscribed, by publishing probes that it
// captures into stream probe until one arrives.
func waitSubscribed(t *testing.T, s *MQTTSource, pub *publisher, topic string) {
	t.Helper()
	eventually(t, "the source to subscribe", 10*time.Second, func() bool {
		pub.publish(topic, 1, false, `"probe"`)
		time.Sleep(20 * time.Millisecond)
		return s.Stats().Received > 0
	})
}

func TestMQTTSourceMapsTopics(t *testing.T) {
	b := startBroker(t)
	ob := openOutbox(t, "", outbox.Options{})
	m := new(Metrics)
	s, err := NewMQTTSource(MQTTSourceConfig{
		Broker: mqttx.BrokerConfig{URL: b.URL(), ClientID: "capture-map"},
		Topics: []string{"plant/#", "other/+"},
		Stream: "{2}", Key: "{3}", Schema: "reading@1",
	}, ob, m, quiet())
	if err != nil {
		t.Fatal(err)
	}
	stop := runSource(t, s.Run)
	pub := newPublisher(t, b.URL())
	waitSubscribed(t, s, pub, "plant/probe/p")

	pub.publish("plant/line-1/temp-7/raw", 1, false, `{"t":21.5}`)
	pub.publish("plant/line-1/temp-8", 1, false, `22`)
	pub.publish("plant/line 2/temp-9", 1, false, `23`)    // invalid stream: refused
	pub.publish("plant/line-2/temp-9", 1, false, `{"t":`) // invalid JSON: refused
	pub.publish("plant/line-2", 1, false, `24`)           // no level 3: refused
	pub.publish("plant/line-2/temp-10", 0, false, `[1,"two"]`)
	pub.publish("plant/line-3/hum", 2, false, `null`)
	eventually(t, "the messages", 10*time.Second, func() bool {
		st := s.Stats()
		return st.Records+st.Rejected >= uint64(1+4+3)
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := readAll(t, ob)
	var kept []outbox.Record
	for _, r := range got {
		if r.Stream != "probe" {
			kept = append(kept, r)
		}
	}
	wants := []struct{ stream, key, data string }{
		{"line-1", "temp-7", `{"t":21.5}`},
		{"line-1", "temp-8", `22`},
		{"line-2", "temp-10", `[1,"two"]`},
		{"line-3", "hum", `null`},
	}
	if len(kept) != len(wants) {
		t.Fatalf("got %d records, want %d: %+v", len(kept), len(wants), kept)
	}
	for i, w := range wants {
		r := kept[i]
		if r.Stream != w.stream || r.Key != w.key || recJSON(t, r) != w.data || r.Schema != "reading" || r.SchemaVersion != 1 {
			t.Errorf("record %d: %s/%s %s %s@%d, want %s/%s %s reading@1", i, r.Stream, r.Key, recJSON(t, r), r.Schema, r.SchemaVersion, w.stream, w.key, w.data)
		}
		if d := time.Since(time.Unix(0, r.CapturedAt)); d < 0 || d > time.Minute {
			t.Errorf("record %d captured at %v", i, time.Unix(0, r.CapturedAt))
		}
	}
	st := s.Stats()
	if st.Rejected != 3 || m.SourceRejected.Load() != 3 {
		t.Errorf("rejected %d (metrics %d), want 3", st.Rejected, m.SourceRejected.Load())
	}
	if m.Accepted.Load() != uint64(len(got)) || m.CaptureToDurable.Count() != uint64(len(got)) {
		t.Errorf("metrics accepted %d, latency %d, want %d", m.Accepted.Load(), m.CaptureToDurable.Count(), len(got))
	}
}

func TestMQTTSourcePayloads(t *testing.T) {
	b := startBroker(t)
	tests := []struct {
		name    string
		cfg     MQTTSourceConfig
		payload string
		want    []string // stream/key/id data
	}{
		{"record", MQTTSourceConfig{Stream: "{2}", Payload: PayloadRecord},
			`[{"key":"k1","id":"m-1","data":{"a":1}},{"stream":"own","data":2}]`,
			[]string{"dev/k1 m-1 {\"a\":1}", "own/  2"}},
		{"record single", MQTTSourceConfig{Payload: PayloadRecord},
			`{"stream":"s","key":"k","op":"delete","data":null}`, []string{"s/k  null"}},
		{"text", MQTTSourceConfig{Stream: "txt", Key: "{topic}", Payload: PayloadText},
			`ON "quoted"`, []string{`txt/in/dev  "ON \"quoted\""`}},
		{"cbor", MQTTSourceConfig{Stream: "c-{1}", Key: "{1}-{2}", Payload: PayloadCBOR},
			string([]byte{0xa1, 0x61, 'x', 0x43, 1, 2, 3}), []string{`c-in/in-dev  {"x":"AQID"}`}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ob := openOutbox(t, "", outbox.Options{})
			cfg := tt.cfg
			cfg.Broker = mqttx.BrokerConfig{URL: b.URL(), ClientID: fmt.Sprintf("capture-payload-%d", i)}
			cfg.Topics = []string{"in/#"}
			s, err := NewMQTTSource(cfg, ob, nil, quiet())
			if err != nil {
				t.Fatal(err)
			}
			stop := runSource(t, s.Run)
			pub := newPublisher(t, b.URL())
			// Wait for the subscription with messages the source refuses.
			eventually(t, "the subscription", 10*time.Second, func() bool {
				pub.publish("in/probe", 1, false, "\xff")
				time.Sleep(20 * time.Millisecond)
				return s.Stats().Rejected > 0
			})
			pub.publish("in/dev", 1, false, tt.payload)
			eventually(t, "the records", 10*time.Second, func() bool { return s.Stats().Records >= uint64(len(tt.want)) })
			stop()
			got := readAll(t, ob)
			if len(got) != len(tt.want) {
				t.Fatalf("%d records, want %d", len(got), len(tt.want))
			}
			for k, r := range got {
				if s := fmt.Sprintf("%s/%s %s %s", r.Stream, r.Key, r.ID, recJSON(t, r)); s != tt.want[k] {
					t.Errorf("record %d: %q, want %q", k, s, tt.want[k])
				}
			}
			if tt.name == "record single" && got[0].Op != outbox.OpDelete {
				t.Errorf("op %v, want delete", got[0].Op)
			}
		})
	}
}

func TestMQTTSourceSkipsRetained(t *testing.T) {
	b := startBroker(t)
	pub := newPublisher(t, b.URL())
	pub.publish("ret/a", 1, true, `"old"`)
	ob := openOutbox(t, "", outbox.Options{})
	s, err := NewMQTTSource(MQTTSourceConfig{Broker: mqttx.BrokerConfig{URL: b.URL(), ClientID: "capture-ret"},
		Topics: []string{"ret/#"}, Stream: "r"}, ob, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	stop := runSource(t, s.Run)
	eventually(t, "the retained message", 10*time.Second, func() bool { return s.Stats().Skipped == 1 })
	pub.publish("ret/a", 1, false, `"new"`)
	eventually(t, "the new message", 10*time.Second, func() bool { return s.Stats().Records == 1 })
	stop()
	got := readAll(t, ob)
	if len(got) != 1 || recJSON(t, got[0]) != `"new"` {
		t.Errorf("records %+v, want only the new message", got)
	}
}

// TestMQTTSourceAcksOnlyWhenStored: a message is acknowledged to the broker
// only after its append returned. The first source receives messages but
// its appends never return; it is killed (its connection cut, no
// DISCONNECT). A second source with the same client id gets the messages
// again from the broker's persistent session and stores them. A third sees
// nothing more: the second acknowledged what it stored.
func TestMQTTSourceAcksOnlyWhenStored(t *testing.T) {
	mq := testenv.Mosquitto(t)
	proxy := testenv.NewProxy(t, mq.Addr())
	cfg := MQTTSourceConfig{Broker: mqttx.BrokerConfig{ClientID: "capture-crash", ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond},
		Topics: []string{"crash/+"}, Stream: "crash", Key: "{2}"}

	// 1. A source that never finishes an append.
	var calls atomic.Int32
	blocking := appenderFunc(func(ctx context.Context, recs []outbox.Record, _ *outbox.SourcePosition) (outbox.Seq, outbox.Seq, error) {
		calls.Add(1)
		<-ctx.Done()
		return 0, 0, &outbox.FullError{Reason: "max_bytes"}
	})
	c1 := cfg
	c1.Broker.URL = proxy.URL()
	s1, err := NewMQTTSource(c1, blocking, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runSource(t, s1.Run)
	pub := newPublisher(t, mq.URL())
	eventually(t, "the first source to receive", 10*time.Second, func() bool {
		pub.publish("crash/probe", 1, false, `0`)
		time.Sleep(20 * time.Millisecond)
		return calls.Load() > 0
	})
	for i := 1; i <= 5; i++ {
		pub.publish(fmt.Sprintf("crash/m%d", i), 1, false, fmt.Sprint(i))
	}
	time.Sleep(100 * time.Millisecond)
	proxy.Close() // the crash: the connection dies without DISCONNECT or PUBACK
	if err := stop1(); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	if st := s1.Stats(); st.Records != 0 {
		t.Fatalf("the first source stored %d records", st.Records)
	}

	// 2. The restarted source gets every message again and stores it.
	ob := openOutbox(t, "", outbox.Options{})
	c2 := cfg
	c2.Broker.URL = mq.URL()
	s2, err := NewMQTTSource(c2, ob, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	stop2 := runSource(t, s2.Run)
	eventually(t, "the redelivered messages", 15*time.Second, func() bool {
		keys := map[string]bool{}
		for _, r := range readAll(t, ob) {
			keys[r.Key] = true
		}
		return len(keys) == 6
	})
	time.Sleep(200 * time.Millisecond) // let the PUBACKs go out
	if err := stop2(); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	got := readAll(t, ob)
	seen := map[string]int{}
	for _, r := range got {
		seen[r.Key]++
	}
	for i := 1; i <= 5; i++ {
		if k := fmt.Sprintf("m%d", i); seen[k] == 0 {
			t.Errorf("message %s was lost", k)
		}
	}

	// 3. What the second source stored was acknowledged: nothing comes again.
	var again atomic.Int32
	counting := appenderFunc(func(ctx context.Context, recs []outbox.Record, _ *outbox.SourcePosition) (outbox.Seq, outbox.Seq, error) {
		for _, r := range recs {
			if r.Key != "after" {
				again.Add(1)
			}
		}
		return 1, 1, nil
	})
	s3, err := NewMQTTSource(c2, counting, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	stop3 := runSource(t, s3.Run)
	pub.publish("crash/after", 1, false, `1`)
	eventually(t, "the third source", 10*time.Second, func() bool { return s3.Stats().Records > 0 })
	time.Sleep(200 * time.Millisecond)
	stop3()
	if n := again.Load(); n != 0 {
		t.Errorf("%d stored messages were delivered again", n)
	}
}

// TestMQTTSourceWaitsWhenFull: while the outbox is full the message stays
// unacknowledged and is appended once there is room.
func TestMQTTSourceWaitsWhenFull(t *testing.T) {
	b := startBroker(t)
	var calls atomic.Int32
	var stored atomic.Int32
	a := appenderFunc(func(ctx context.Context, recs []outbox.Record, _ *outbox.SourcePosition) (outbox.Seq, outbox.Seq, error) {
		if calls.Add(1) <= 2 {
			return 0, 0, &outbox.FullError{Reason: "disk"}
		}
		stored.Add(int32(len(recs)))
		return 1, 1, nil
	})
	s, err := NewMQTTSource(MQTTSourceConfig{Broker: mqttx.BrokerConfig{URL: b.URL(), ClientID: "capture-full"},
		Topics: []string{"full"}, Stream: "f"}, a, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	stop := runSource(t, s.Run)
	pub := newPublisher(t, b.URL())
	eventually(t, "the subscription", 10*time.Second, func() bool {
		if s.Stats().Received == 0 {
			pub.publish("full", 1, false, `1`)
			time.Sleep(50 * time.Millisecond)
		}
		return s.Stats().Received > 0
	})
	eventually(t, "the append after the retries", 10*time.Second, func() bool { return stored.Load() > 0 })
	stop()
	if calls.Load() < 3 {
		t.Errorf("%d append calls, want retries", calls.Load())
	}
}

// TestMQTTSourceOutboxClosed: Run returns the error of an outbox that cannot
// take records.
func TestMQTTSourceOutboxClosed(t *testing.T) {
	b := startBroker(t)
	ob := openOutbox(t, "", outbox.Options{})
	ob.Close()
	s, err := NewMQTTSource(MQTTSourceConfig{Broker: mqttx.BrokerConfig{URL: b.URL(), ClientID: "capture-closed"},
		Topics: []string{"closed"}, Stream: "c"}, ob, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	pub := newPublisher(t, b.URL())
	deadline := time.After(10 * time.Second)
	for {
		pub.publish("closed", 1, false, `1`)
		select {
		case err := <-done:
			if !errors.Is(err, outbox.ErrClosed) {
				t.Errorf("Run: %v, want ErrClosed", err)
			}
			if err := s.Run(context.Background()); err == nil {
				t.Errorf("a second Run succeeded")
			}
			return
		case <-deadline:
			t.Fatal("Run did not return")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestMQTTSourceConfig(t *testing.T) {
	var c MQTTSourceConfig
	c.Topics = []string{"a/#"}
	c.Stream = "s"
	if err := c.Validate("sources.mqtt[0]"); err != nil {
		t.Errorf("minimal config: %v", err)
	}
	c.EnsureDefaults()
	if c.Broker.URL != DefaultLocalBroker || !strings.HasPrefix(c.Broker.ClientID, "edgesync-capture-") || c.QoS != 1 ||
		c.Payload != PayloadJSON || c.MaxBatch != 256 {
		t.Errorf("defaults: %+v", c)
	}
	c2 := MQTTSourceConfig{Topics: []string{"a/#"}, Stream: "s"}
	c2.EnsureDefaults()
	if c2.Broker.ClientID != c.Broker.ClientID {
		t.Errorf("the default client id is not stable: %q %q", c.Broker.ClientID, c2.Broker.ClientID)
	}
	bad := MQTTSourceConfig{
		Broker: mqttx.BrokerConfig{URL: "http://x"},
		Topics: []string{"a/#/b", "a+", ""},
		QoS:    3, Stream: "{0}", Key: "{x", Schema: "nope", Payload: "xml", MaxBatch: -1,
	}
	err := bad.Validate("sources.mqtt[1]")
	for _, key := range []string{"sources.mqtt[1].broker.url", "sources.mqtt[1].topics[0]", "sources.mqtt[1].topics[1]",
		"sources.mqtt[1].topics[2]", "sources.mqtt[1].qos", "sources.mqtt[1].stream", "sources.mqtt[1].key",
		"sources.mqtt[1].schema", "sources.mqtt[1].payload", "sources.mqtt[1].max_batch"} {
		if err == nil || !strings.Contains(err.Error(), key+":") {
			t.Errorf("Validate: %v\nwant it to name %s", err, key)
		}
	}
	for _, c := range []MQTTSourceConfig{
		{Stream: "s"},                           // no topics
		{Topics: []string{"a"}},                 // no stream
		{Topics: []string{"a"}, Stream: "a b"},  // bad literal stream
		{Topics: []string{"a"}, Stream: "a}"},   // unbalanced
		{Topics: []string{"a"}, Stream: "{65}"}, // level out of range
	} {
		if err := c.Validate("m"); err == nil {
			t.Errorf("Validate(%+v) accepted it", c)
		}
	}
	if err := (&MQTTSourceConfig{Topics: []string{"a"}, Payload: PayloadRecord}).Validate("m"); err != nil {
		t.Errorf("payload record without stream: %v", err)
	}
	if _, err := NewMQTTSource(bad, nil, nil, nil); err == nil {
		t.Errorf("NewMQTTSource accepted a bad config")
	}
}

func TestTopicTemplate(t *testing.T) {
	tests := []struct {
		tmpl, topic, want string
		missing           int
	}{
		{"", "a/b", "", 0},
		{"fixed", "a/b", "fixed", 0},
		{"{1}", "a/b/c", "a", 0},
		{"{2}", "a/b/c", "b", 0},
		{"{3}", "a/b/c", "c", 0},
		{"{4}", "a/b/c", "", 4},
		{"{2}", "a//c", "", 0},
		{"{topic}", "a/b/c", "a/b/c", 0},
		{"line-{2}.{3}", "plant/7/t", "line-7.t", 0},
		{"{1}{2}", "x", "", 2},
		{"{1}", "/lead", "", 0},
		{"{2}", "/lead", "lead", 0},
	}
	for _, tt := range tests {
		tp, err := parseTemplate(tt.tmpl)
		if err != nil {
			t.Fatalf("parseTemplate(%q): %v", tt.tmpl, err)
		}
		got, miss := tp.expand(tt.topic)
		if got != tt.want || miss != tt.missing {
			t.Errorf("%q on %q = %q, %d; want %q, %d", tt.tmpl, tt.topic, got, miss, tt.want, tt.missing)
		}
	}
	for _, bad := range []string{"{", "}", "{}", "{0}", "{01}", "{+1}", "{-1}", "{65}", "{name}", "a{1", "a}{1}"} {
		if _, err := parseTemplate(bad); err == nil {
			t.Errorf("parseTemplate(%q) accepted it", bad)
		}
	}
	for f, ok := range map[string]bool{"a": true, "a/+/b": true, "#": true, "a/#": true, "+": true, "/": true,
		"a#": false, "a/#/b": false, "a+/b": false, "": false, "a\x00": false} {
		if got := validTopicFilter(f) == ""; got != ok {
			t.Errorf("validTopicFilter(%q) ok=%v, want %v", f, got, ok)
		}
	}
}
