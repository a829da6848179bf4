package apply

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/transport/wire"
)

// BenchmarkSinkRunner: 1,000-record batches of ~200-byte records through the
// embedded broker into the sink runner (decode, apply on SQLite, ack) for one
// device, with the agent's default window of 8 batches in flight.
func BenchmarkSinkRunner(b *testing.B) {
	r := newSinkRig(b, Policy{})
	const per = 1000
	data := []byte(`{"t":21.5,"h":40.1,"unit":"C","site":"plant-3","line":1,"ok":true,"tags":["a","b"],"note":"steady"}`)
	cb, err := jsonCBOR(data)
	if err != nil {
		b.Fatal(err)
	}
	batches := (b.N + per - 1) / per
	payloads := make([][]byte, batches)
	for i := range payloads {
		bt := wire.Batch{V: wire.Version, Device: "gw-b", Epoch: 9, SentAt: time.Now().UnixNano(), SendID: uint64(i + 1)}
		for s := uint64(i*per + 1); s <= uint64((i+1)*per); s++ {
			bt.Records = append(bt.Records, wire.Record{Seq: s, Stream: "temps", Key: fmt.Sprintf("sensor-%d", s%100),
				ID: fmt.Sprintf("id-%d", s), Schema: "reading", SchemaVersion: 1, CapturedAt: time.Now().UnixNano(), Data: cb})
		}
		bt.First, bt.Last = bt.Records[0].Seq, bt.Records[len(bt.Records)-1].Seq
		if payloads[i], err = wire.EncodeBatch(nil, &bt, wire.CompressionZstd); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	const window = 8
	for i := range payloads {
		for {
			a := r.lastAck("gw-b")
			done := 0
			if a != nil {
				done = int(a.AppliedThrough / per)
			}
			if i-done < window {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		r.publish("gw-b", payloads[i])
	}
	waitUntil(b, "all applied", func() bool {
		a := r.lastAck("gw-b")
		return a != nil && a.AppliedThrough == uint64(batches*per)
	})
	b.StopTimer()
	b.ReportMetric(float64(batches*per)/b.Elapsed().Seconds(), "records/s")
}

func jsonCBOR(b []byte) ([]byte, error) { return jsoncbor.FromJSON(nil, b) }
