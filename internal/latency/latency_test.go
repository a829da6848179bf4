package latency

import (
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/promtext"
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

func TestPrometheus(t *testing.T) {
	var h Histogram
	h.Observe(2 * time.Millisecond)
	h.Observe(2 * time.Second)
	var b strings.Builder
	w := promtext.NewWriter(&b)
	h.Write(w, "test_seconds", "test", "stage", "x")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# TYPE test_seconds histogram",
		`test_seconds_bucket{stage="x",le="+Inf"} 2`,
		`test_seconds_count{stage="x"} 2`,
		`test_seconds_sum{stage="x"} 2.002`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
