package promtext

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestParsesAsPrometheusText: the output is read back by Prometheus's own parser.
func TestParsesAsPrometheusText(t *testing.T) {
	h := Handler(func(w *Writer) {
		w.Gauge("t_depth", "Depth.", 3)
		w.Counter("t_acks_total", "Acks by result.", 5, "result", "applied")
		w.Counter("t_acks_total", "Acks by result.", 1, "result", `weird "quoted"\ value`)
		w.Histogram("t_latency_seconds", "Latency.\nSecond line.", []float64{0.1, 1}, []uint64{2, 3}, 4, 2.5, "stage", "x")
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); ct != ContentType {
		t.Fatalf("content type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("not valid Prometheus text: %v\n%s", err, rec.Body.String())
	}
	if got := fams["t_depth"].GetMetric()[0].GetGauge().GetValue(); got != 3 {
		t.Fatalf("t_depth = %v", got)
	}
	acks := fams["t_acks_total"].GetMetric()
	if len(acks) != 2 || acks[1].GetLabel()[0].GetValue() != `weird "quoted"\ value` {
		t.Fatalf("acks %v", acks)
	}
	hist := fams["t_latency_seconds"].GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 4 || hist.GetSampleSum() != 2.5 || len(hist.GetBucket()) != 3 || hist.GetBucket()[1].GetCumulativeCount() != 3 {
		t.Fatalf("histogram %v", hist)
	}
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines", "process_cpu_seconds_total", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	if rss := fams["process_resident_memory_bytes"].GetMetric()[0].GetGauge().GetValue(); rss < 1<<20 {
		t.Errorf("RSS %v implausible", rss)
	}
}
