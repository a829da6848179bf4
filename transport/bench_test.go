package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/internal/testenv"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

// The benchmarks of issue 3, section 5, against a real mosquitto on
// loopback:
//
//	go test -run '^$' -bench 'Uplink|WireBytes' -benchtime 200000x -count 5 ./transport/
//
// BenchmarkUplink drains an outbox of realistic sensor records through the
// uplink (default batching: 1000 records, 256 KiB, zstd) to an acking
// consumer, with max_inflight 1, 8 and 32, and in the same run sends the
// same records the way users write it by hand: one JSON message per record,
// QoS 1, 64 publishes outstanding, to a consumer that only counts.
// BenchmarkWireBytes counts the TCP bytes each way puts on the wire from
// the device to the broker, through a counting proxy.

const benchPrefix = "edgesync"

// benchBroker is mosquitto as installed, except that it queues any number
// of QoS 1 messages for a subscriber (default 1000, then it drops silently:
// PITFALLS 13), so that the JSON baseline loses nothing when the counting
// consumer falls behind. The uplink never has more than max_inflight
// batches out.
func benchBroker(b *testing.B) *testenv.Broker {
	return testenv.Mosquitto(b, testenv.WithConfig("max_queued_messages 0"))
}

type sensorSet struct {
	recs []outbox.Record // data as CBOR, as the ingest API stores it
	json [][]byte        // the same records, one JSON message each
}

// sensorRecords returns n realistic records: 100 sensors reporting every
// second, a few ms apart (the generator of transport/wire's benchmarks).
func sensorRecords(tb testing.TB, n int) *sensorSet {
	rng := rand.New(rand.NewPCG(1, 2))
	round := func(f, digits float64) float64 {
		p := math.Pow(10, digits)
		return math.Round(f*p) / p
	}
	start := time.Unix(1_700_000_000, 0)
	s := &sensorSet{}
	for i := range n {
		sensor := i % 100
		at := start.Add(time.Duration(i/100)*time.Second + time.Duration(sensor)*7*time.Millisecond +
			time.Duration(rng.IntN(1000))*time.Microsecond)
		data := map[string]any{
			"t":       round(18+float64(sensor%7)+rng.NormFloat64(), 1),
			"h":       round(35+float64(sensor%11)+2*rng.NormFloat64(), 1),
			"p":       round(1013+rng.NormFloat64(), 1),
			"unit":    "C",
			"site":    fmt.Sprintf("plant-%d", sensor%4),
			"line":    fmt.Sprintf("L%d", sensor%3+1),
			"fw":      "1.4.2",
			"battery": 60 + sensor%40,
			"rssi":    -50 - rng.IntN(40),
			"ok":      rng.IntN(50) != 0,
		}
		dj, err := json.Marshal(data)
		if err != nil {
			tb.Fatal(err)
		}
		dc, err := jsoncbor.FromJSON(nil, dj)
		if err != nil {
			tb.Fatal(err)
		}
		key := fmt.Sprintf("sensor-%d", sensor)
		s.recs = append(s.recs, outbox.Record{Stream: "temps", Key: key, Schema: "reading", SchemaVersion: 1,
			CapturedAt: at.UnixNano(), Data: dc})
		js, err := json.Marshal(struct {
			Stream string          `json:"stream"`
			Key    string          `json:"key"`
			Schema string          `json:"schema"`
			TS     string          `json:"ts"`
			Data   json.RawMessage `json:"data"`
		}{"temps", key, "reading@1", at.UTC().Format(time.RFC3339Nano), dj})
		if err != nil {
			tb.Fatal(err)
		}
		s.json = append(s.json, js)
	}
	return s
}

// benchSet is shared by all benchmarks: 10,000 distinct records, reused in
// turn (their seqs are the outbox's).
var benchSet *sensorSet

func sensors(tb testing.TB) *sensorSet {
	if benchSet == nil {
		benchSet = sensorRecords(tb, 10_000)
	}
	return benchSet
}

// ackSink is the lightest consumer that acknowledges like the sink: it
// decodes each batch, moves its watermark when the batch continues it, and
// acks. Decoding and acking run off the paho callback.
type ackSink struct {
	client           paho.Client
	in               chan paho.Message
	records, batches atomic.Int64
}

func newAckSink(tb testing.TB, url string) *ackSink {
	s := &ackSink{in: make(chan paho.Message, 4096)}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("acksink-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(true)
	opts.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(wire.TopicFilter(benchPrefix, wire.SuffixUp), 1, func(_ paho.Client, m paho.Message) { s.in <- m })
	})
	s.client = paho.NewClient(opts)
	if tok := s.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("ack sink: connect: %v", tok.Error())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		wm := map[uint64]uint64{} // epoch -> applied through
		var batch wire.Batch
		var ack []byte
		for {
			var m paho.Message
			select {
			case <-ctx.Done():
				return
			case m = <-s.in:
			}
			device, err := wire.DeviceFromTopic(benchPrefix, m.Topic(), wire.SuffixUp)
			if err != nil {
				continue
			}
			if err := wire.DecodeBatchInto(m.Payload(), &batch); err != nil {
				tb.Errorf("ack sink: %v", err)
				continue
			}
			s.batches.Add(1)
			w := max(wm[batch.Epoch], batch.Acked)
			status := wire.StatusOK
			switch {
			case batch.First > w+1:
				status = wire.StatusGap
			case batch.Last > w:
				s.records.Add(int64(batch.Last - w))
				w = batch.Last
			}
			wm[batch.Epoch] = w
			ack, err = wire.EncodeAck(ack[:0], &wire.Ack{V: wire.Version, Device: device, Epoch: batch.Epoch,
				AppliedThrough: w, Status: status, SinkID: "bench", InReplyTo: batch.SendID})
			if err != nil {
				tb.Errorf("ack sink: %v", err)
				continue
			}
			s.client.Publish(wire.AckTopic(benchPrefix, device), 1, false, append([]byte(nil), ack...))
		}
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
		s.client.Disconnect(0)
	})
	return s
}

var benchDevice atomic.Int64

// runUplink appends n sensor records to a new outbox, then starts an uplink
// to url and waits until the consumer acknowledged them all. It returns the
// time from the start of the uplink to the last ack and the uplink's
// metrics.
func runUplink(b *testing.B, url string, n, inflight int) (time.Duration, *Metrics) {
	b.StopTimer()
	set := sensors(b)
	dir := b.TempDir()
	ob, err := outbox.Open(dir, outbox.Options{Logger: quiet(), MinFreeDisk: -1, Ballast: -1, MaxBytes: 8 << 30})
	if err != nil {
		b.Fatal(err)
	}
	for done := 0; done < n; {
		k := min(n-done, 1000)
		off := done % len(set.recs)
		k = min(k, len(set.recs)-off)
		if _, _, err := ob.Append(context.Background(), set.recs[off:off+k]); err != nil {
			b.Fatal(err)
		}
		done += k
	}
	if err := ob.Close(); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	r := newRig(b, rigOpts{url: url, dir: dir, device: fmt.Sprintf("gw-%d", benchDevice.Add(1)),
		uplink: UplinkConfig{MaxInflight: inflight}})
	deadline := time.Now().Add(5 * time.Minute)
	for {
		pos := r.ob.Position()
		if pos.Watermark == pos.Head {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not drained after 5 minutes: watermark %d head %d", pos.Watermark, pos.Head)
		}
		time.Sleep(200 * time.Microsecond)
	}
	el := time.Since(start)
	r.stop()
	return el, r.up.Metrics()
}

// runJSON publishes n JSON messages at QoS 1 with at most outstanding
// publishes not yet PUBACKed, to a consumer that counts them, and returns
// the time until the consumer has them all and the payload bytes sent.
func runJSON(b *testing.B, pubURL, subURL string, n, outstanding int) (time.Duration, int64) {
	set := sensors(b)
	id := benchDevice.Add(1)
	topic := fmt.Sprintf("%s/gw-%d/json", benchPrefix, id)
	var got atomic.Int64
	all := make(chan struct{})
	subOpts := paho.NewClientOptions().AddBroker(subURL).SetClientID(fmt.Sprintf("count-%d", id)).
		SetCleanSession(true).SetAutoReconnect(false)
	sub := paho.NewClient(subOpts)
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("counter: connect: %v", tok.Error())
	}
	defer sub.Disconnect(0)
	if tok := sub.Subscribe(topic, 1, func(_ paho.Client, _ paho.Message) {
		if got.Add(1) == int64(n) {
			close(all)
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("counter: subscribe: %v", tok.Error())
	}
	pubOpts := paho.NewClientOptions().AddBroker(pubURL).SetClientID(fmt.Sprintf("json-%d", id)).
		SetCleanSession(true).SetAutoReconnect(false)
	pub := paho.NewClient(pubOpts)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("publisher: connect: %v", tok.Error())
	}
	defer pub.Disconnect(0)
	wait := func(tok paho.Token) {
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				b.Fatalf("publish: %v", err)
			}
		case <-time.After(30 * time.Second):
			b.Fatal("publish: no PUBACK in 30s")
		}
	}
	start := time.Now()
	var bytes int64
	window := make(chan paho.Token, outstanding)
	for i := 0; i < n; i++ {
		if len(window) == outstanding {
			wait(<-window)
		}
		msg := set.json[i%len(set.json)]
		bytes += int64(len(msg))
		window <- pub.Publish(topic, 1, false, msg)
	}
	for len(window) > 0 {
		wait(<-window)
	}
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		b.Fatalf("counter got %d of %d messages", got.Load(), n)
	}
	return time.Since(start), bytes
}

// BenchmarkUplink: records/s and batches/s from the outbox through
// mosquitto to an acking consumer, against one JSON message per record.
func BenchmarkUplink(b *testing.B) {
	mq := benchBroker(b)
	sensors(b)
	for _, inflight := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("uplink/max_inflight=%d", inflight), func(b *testing.B) {
			newAckSink(b, mq.URL())
			b.ReportAllocs()
			b.ResetTimer()
			el, m := runUplink(b, mq.URL(), b.N, inflight)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
			b.ReportMetric(float64(m.BatchesSent.Load())/el.Seconds(), "batches/s")
			b.ReportMetric(float64(m.BytesSent.Load())/float64(b.N), "payload-B/rec")
			if rs := m.BatchesResent.Load(); rs > 0 {
				b.ReportMetric(float64(rs), "resent-batches")
			}
		})
	}
	b.Run("json-qos1/outstanding=64", func(b *testing.B) {
		b.ReportAllocs()
		b.ResetTimer()
		el, bytes := runJSON(b, mq.URL(), mq.URL(), b.N, 64)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
		b.ReportMetric(float64(bytes)/float64(b.N), "payload-B/rec")
	})
}

// BenchmarkWireBytes: TCP bytes from the device to the broker per record
// (MQTT framing, topics, PUBACKs for acks and pings included), counted by
// a proxy between the publisher and mosquitto: the uplink (max_inflight 8)
// against one JSON message per record.
func BenchmarkWireBytes(b *testing.B) {
	mq := benchBroker(b)
	sensors(b)
	b.Run("uplink", func(b *testing.B) {
		newAckSink(b, mq.URL())
		proxy := testenv.NewProxy(b, mq.Addr())
		b.ReportAllocs()
		_, _ = runUplink(b, proxy.URL(), b.N, 8)
		b.ReportMetric(float64(proxy.BytesUp())/float64(b.N), "tcp-up-B/rec")
		b.ReportMetric(float64(proxy.BytesDown())/float64(b.N), "tcp-down-B/rec")
	})
	b.Run("json-qos1", func(b *testing.B) {
		proxy := testenv.NewProxy(b, mq.Addr())
		b.ReportAllocs()
		_, _ = runJSON(b, proxy.URL(), mq.URL(), b.N, 64)
		b.ReportMetric(float64(proxy.BytesUp())/float64(b.N), "tcp-up-B/rec")
		b.ReportMetric(float64(proxy.BytesDown())/float64(b.N), "tcp-down-B/rec")
	})
}
