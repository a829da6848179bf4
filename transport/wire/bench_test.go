package wire

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// sensorReading is one reading of the benchmark's sensors, the data of a
// record.
func sensorReading(rng *rand.Rand, sensor int) map[string]any {
	round := func(f float64, digits float64) float64 {
		p := math.Pow(10, digits)
		return math.Round(f*p) / p
	}
	return map[string]any{
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
}

// jsonRecord is the JSON message a producer would send per record: what the
// batch replaces.
type jsonRecord struct {
	Stream string         `json:"stream"`
	Key    string         `json:"key"`
	Schema string         `json:"schema"`
	TS     string         `json:"ts"`
	Data   map[string]any `json:"data"`
}

// sensorBatch returns a batch of n realistic sensor records (100 sensors
// reporting every second, a few ms apart) and the mean size of the same
// records as one JSON message each.
func sensorBatch(tb testing.TB, n int) (b *Batch, jsonPerRecord float64) {
	rng := rand.New(rand.NewPCG(1, 2))
	b = &Batch{V: Version, Device: "gw-0001", Epoch: testEpoch, First: 1001, Last: uint64(1000 + n),
		Acked: 1000, SentAt: testTime, SendID: 42}
	start := time.Unix(0, testTime).Add(-time.Hour)
	jsonBytes := 0
	for i := range n {
		sensor := i % 100
		at := start.Add(time.Duration(i/100)*time.Second + time.Duration(sensor)*7*time.Millisecond + time.Duration(rng.IntN(1000))*time.Microsecond)
		data := sensorReading(rng, sensor)
		key := fmt.Sprintf("sensor-%d", sensor)
		b.Records = append(b.Records, Record{Seq: uint64(1001 + i), Stream: "temps", Key: key,
			Schema: "reading", SchemaVersion: 1, CapturedAt: at.UnixNano(), Data: mustData(tb, data)})
		js, err := json.Marshal(jsonRecord{Stream: "temps", Key: key, Schema: "reading@1",
			TS: at.UTC().Format(time.RFC3339Nano), Data: data})
		if err != nil {
			tb.Fatal(err)
		}
		jsonBytes += len(js)
	}
	return b, float64(jsonBytes) / float64(n)
}

const benchRecords = 1000

// BenchmarkEncodeBatch encodes 1000 sensor records. MB/s counts the CBOR
// body (before compression); wire-B/rec is the payload per record,
// json-B/rec one JSON message per record, wire/json their ratio.
func BenchmarkEncodeBatch(b *testing.B) {
	batch, jsonPerRecord := sensorBatch(b, benchRecords)
	for _, c := range []struct {
		name        string
		compression byte
	}{{"none", CompressionNone}, {"zstd", CompressionZstd}} {
		b.Run(c.name, func(b *testing.B) {
			buf, err := EncodeBatch(nil, batch, c.compression)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(batch.BodySize()))
			b.ReportAllocs()
			for b.Loop() {
				buf, err = EncodeBatch(buf[:0], batch, c.compression)
				if err != nil {
					b.Fatal(err)
				}
			}
			perRecord := float64(len(buf)) / benchRecords
			b.ReportMetric(perRecord, "wire-B/rec")
			b.ReportMetric(jsonPerRecord, "json-B/rec")
			b.ReportMetric(perRecord/jsonPerRecord, "wire/json")
		})
	}
}

// BenchmarkDecodeBatch decodes what BenchmarkEncodeBatch encodes, into a
// new Batch each time ("new") or into one reused Batch ("into").
func BenchmarkDecodeBatch(b *testing.B) {
	batch, jsonPerRecord := sensorBatch(b, benchRecords)
	for _, c := range []struct {
		name        string
		compression byte
	}{{"none", CompressionNone}, {"zstd", CompressionZstd}} {
		payload, err := EncodeBatch(nil, batch, c.compression)
		if err != nil {
			b.Fatal(err)
		}
		report := func(b *testing.B) {
			b.ReportMetric(float64(len(payload))/benchRecords, "wire-B/rec")
			b.ReportMetric(jsonPerRecord, "json-B/rec")
		}
		b.Run(c.name+"/new", func(b *testing.B) {
			b.SetBytes(int64(batch.BodySize()))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeBatch(payload); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		b.Run(c.name+"/into", func(b *testing.B) {
			var into Batch
			b.SetBytes(int64(batch.BodySize()))
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeBatchInto(payload, &into); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
}

// BenchmarkZstdLevel compresses the sensor batch body at each level the
// shared encoder could use, with its other options; it is how the default
// level was chosen.
func BenchmarkZstdLevel(b *testing.B) {
	batch, jsonPerRecord := sensorBatch(b, benchRecords)
	body := appendBatch(nil, batch)
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		b.Run(level.String(), func(b *testing.B) {
			enc := mustEncoder(level)
			defer enc.Close()
			out := enc.EncodeAll(body, nil)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				out = enc.EncodeAll(body, out[:0])
			}
			perRecord := float64(len(out)+1) / benchRecords
			b.ReportMetric(perRecord, "wire-B/rec")
			b.ReportMetric(perRecord/jsonPerRecord, "wire/json")
		})
	}
}

// TestSensorBatchSize checks the size target: a zstd batch of the
// benchmark's sensor records takes at most a quarter of the bytes of one
// JSON message per record.
func TestSensorBatchSize(t *testing.T) {
	batch, jsonPerRecord := sensorBatch(t, benchRecords)
	payload, err := EncodeBatch(nil, batch, CompressionZstd)
	if err != nil {
		t.Fatal(err)
	}
	perRecord := float64(len(payload)) / benchRecords
	t.Logf("body %d bytes (%.1f B/record); zstd payload %d bytes (%.1f B/record); JSON %.1f B/record; ratio %.3f",
		batch.BodySize(), float64(batch.BodySize())/benchRecords, len(payload), perRecord, jsonPerRecord, perRecord/jsonPerRecord)
	if perRecord > jsonPerRecord/4 {
		t.Errorf("%.1f wire bytes a record, more than a quarter of %.1f JSON bytes", perRecord, jsonPerRecord)
	}
}
