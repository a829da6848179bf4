package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/outbox"
)

// benchRecord is a typical record of about 200 bytes of JSON.
func benchRecord(i int) string {
	return fmt.Sprintf(`{"stream":"temps","key":"sensor-%d","id":"b7f3c2d1-%08d","schema":"reading@1",`+
		`"ts":"2026-11-26T10:00:%02d.123Z","data":{"t":21.5,"h":40.12,"unit":"C","site":"plant-3","line":%d,"ok":true}}`,
		i%50, i, i%60, i%12)
}

// benchBody is a 100-record request in format f.
func benchBody(tb testing.TB, f format) []byte {
	var b bytes.Buffer
	switch f {
	case formatJSON:
		b.WriteByte('[')
		for i := 0; i < 100; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(benchRecord(i))
		}
		b.WriteByte(']')
	case formatNDJSON:
		for i := 0; i < 100; i++ {
			b.WriteString(benchRecord(i))
			b.WriteByte('\n')
		}
	case formatCBOR:
		var items [][]byte
		for i := 0; i < 100; i++ {
			items = append(items, jsonToCBOR(tb, []byte(benchRecord(i))))
		}
		b.Write(appendCBORHead(nil, majArray, uint64(len(items))))
		for _, it := range items {
			b.Write(it)
		}
	}
	return b.Bytes()
}

func jsonToCBOR(tb testing.TB, j []byte) []byte {
	c, err := jsoncbor.FromJSON(nil, j)
	if err != nil {
		tb.Fatalf("FromJSON(%s): %v", j, err)
	}
	return c
}

func benchParse(b *testing.B, f format, ct string) {
	body := benchBody(b, f)
	now := time.Now()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		recs, err := Parse(ct, body, now)
		if err != nil || len(recs) != 100 {
			b.Fatalf("Parse: %d records, %v", len(recs), err)
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkParseJSON(b *testing.B)   { benchParse(b, formatJSON, ContentTypeJSON) }
func BenchmarkParseNDJSON(b *testing.B) { benchParse(b, formatNDJSON, ContentTypeNDJSON) }
func BenchmarkParseCBOR(b *testing.B)   { benchParse(b, formatCBOR, ContentTypeCBOR) }

// BenchmarkParseReused is the handler's path: a pooled parser.
func BenchmarkParseReused(b *testing.B) {
	body := benchBody(b, formatJSON)
	now := time.Now()
	p := new(parser)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		p.reset(now)
		if err := p.parse(formatJSON, body, nil); err != nil || len(p.recs) != 100 {
			b.Fatalf("parse: %d records, %v", len(p.recs), err)
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkParseEncodingJSON is the obvious alternative, for comparison:
// encoding/json into structs with json.RawMessage data, then FromJSON.
func BenchmarkParseEncodingJSON(b *testing.B) {
	body := benchBody(b, formatJSON)
	type rec struct {
		Stream, Key, ID, Op, Schema, TS string
		Data                            json.RawMessage
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var recs []rec
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&recs); err != nil {
			b.Fatal(err)
		}
		var arena []byte
		for i := range recs {
			var err error
			if arena, err = jsoncbor.FromJSON(arena, recs[i].Data); err != nil {
				b.Fatal(err)
			}
			if _, err := time.Parse(time.RFC3339Nano, recs[i].TS); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkHandler is the ingest handler's own cost per 100-record JSON
// request: reading the body, parsing, answering (the append is a no-op).
func BenchmarkHandler(b *testing.B) {
	body := benchBody(b, formatJSON)
	h := NewHandler(HTTPConfig{}, appenderFunc(func(_ context.Context, recs []outbox.Record, _ *outbox.SourcePosition) (outbox.Seq, outbox.Seq, error) {
		return 1, outbox.Seq(len(recs)), nil
	}), nil, quiet())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rd := bytes.NewReader(body)
		req := httptest.NewRequest("POST", RecordsPath, rd)
		req.Header.Set("Content-Type", ContentTypeJSON)
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			rd.Reset(body)
			req.Body = io.NopCloser(rd)
			w.code = 0
			h.ServeHTTP(w, req)
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
		}
	})
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "records/s")
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkIngestDurable posts 100-record JSON requests over HTTP (loopback)
// from 8 clients to the handler on a real outbox in fsync mode: records/s
// answered 200, so durable.
func BenchmarkIngestDurable(b *testing.B) {
	body := benchBody(b, formatJSON)
	ob := openOutbox(b, "", outbox.Options{})
	m := new(Metrics)
	srv := httptest.NewServer(NewHandler(HTTPConfig{}, ob, m, quiet()))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.SetParallelism(4) // 4 x GOMAXPROCS clients
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(srv.URL+RecordsPath, ContentTypeJSON, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "records/s")
	s := m.CaptureToDurable.Summary()
	b.ReportMetric(float64(s.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(s.P99.Microseconds())/1000, "p99-ms")
}
