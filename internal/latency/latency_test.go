package latency

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Fatal("empty histogram has a quantile")
	}
	// 1..1000 ms, uniformly.
	for i := 1; i <= 1000; i++ {
		h.Observe(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.95, 950 * time.Millisecond}, {0.99, 990 * time.Millisecond}} {
		got := h.Quantile(c.q)
		// Buckets grow by 30%: the estimate is within one bucket.
		if got < c.want*75/100 || got > c.want*130/100 {
			t.Errorf("q%.2f = %v, want about %v", c.q, got, c.want)
		}
	}
	s := h.Summary()
	if s.Count != 1000 || !(s.P50 < s.P95 && s.P95 <= s.P99) {
		t.Fatalf("summary %+v", s)
	}
	h.Observe(-time.Second)
	h.Observe(time.Hour * 1000)
	if h.Count() != 1002 {
		t.Fatalf("count %d, want 1002", h.Count())
	}
}

type coll struct {
	h    *Histogram
	desc *prometheus.Desc
}

func (c coll) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c coll) Collect(ch chan<- prometheus.Metric) { ch <- c.h.Metric(c.desc, "x") }

func TestPrometheus(t *testing.T) {
	var h Histogram
	h.Observe(2 * time.Millisecond)
	h.Observe(2 * time.Second)
	desc := prometheus.NewDesc("test_seconds", "test", []string{"stage"}, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(coll{&h, desc})
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("gather: %d metric families, %v", len(mfs), err)
	}
	got := mfs[0].GetMetric()[0].GetHistogram()
	if got.GetSampleCount() != 2 || got.GetSampleSum() < 2.0 || got.GetSampleSum() > 2.01 {
		t.Fatalf("histogram count %d sum %v", got.GetSampleCount(), got.GetSampleSum())
	}
	if !strings.Contains(mfs[0].String(), "stage") {
		t.Fatal("label missing")
	}
}
