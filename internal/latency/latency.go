// Package latency keeps lock-free latency histograms with fixed exponential
// buckets, answers quantiles (p50/p95/p99) for the status command, and
// writes them in the Prometheus text format.
package latency

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/edgesync/edgesync/internal/promtext"
)

// Bucket upper bounds grow by factor from 50µs; the last bucket is +Inf.
const (
	nBuckets = 64
	first    = 50 * time.Microsecond
	factor   = 1.3
)

var bounds = func() [nBuckets]float64 {
	var b [nBuckets]float64
	v := first.Seconds()
	for i := 0; i < nBuckets-1; i++ {
		b[i] = v
		v *= factor
	}
	b[nBuckets-1] = math.Inf(1)
	return b
}()

// Histogram counts durations. The zero value is ready; safe for concurrent use.
type Histogram struct {
	counts [nBuckets]atomic.Uint64
	count  atomic.Uint64
	sumNs  atomic.Int64
}

// Observe records one duration (negative durations count as 0).
func (h *Histogram) Observe(d time.Duration) {
	h.ObserveN(d, 1)
}

// ObserveN records n durations of d.
func (h *Histogram) ObserveN(d time.Duration, n uint64) {
	if d < 0 {
		d = 0
	}
	s := d.Seconds()
	i := 0
	if s > first.Seconds() {
		i = int(math.Ceil(math.Log(s/first.Seconds()) / math.Log(factor)))
		if i >= nBuckets-1 {
			i = nBuckets - 1
		}
		for i > 0 && s <= bounds[i-1] {
			i--
		}
		for i < nBuckets-1 && s > bounds[i] {
			i++
		}
	}
	h.counts[i].Add(n)
	h.count.Add(n)
	h.sumNs.Add(int64(d) * int64(n))
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Quantile returns an estimate of quantile q (0..1), interpolated within its
// bucket; 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	var c [nBuckets]uint64
	var total uint64
	for i := range c {
		c[i] = h.counts[i].Load()
		total += c[i]
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum float64
	for i := range c {
		if c[i] == 0 {
			continue
		}
		if cum+float64(c[i]) >= rank {
			lo := 0.0
			if i > 0 {
				lo = bounds[i-1]
			}
			hi := bounds[i]
			if math.IsInf(hi, 1) {
				return time.Duration(lo * float64(time.Second))
			}
			frac := (rank - cum) / float64(c[i])
			return time.Duration((lo + (hi-lo)*frac) * float64(time.Second))
		}
		cum += float64(c[i])
	}
	return time.Duration(bounds[nBuckets-2] * float64(time.Second))
}

// Summary is p50/p95/p99 and the count.
type Summary struct {
	Count         uint64
	P50, P95, P99 time.Duration
}

// Summary returns the usual quantiles.
func (h *Histogram) Summary() Summary {
	return Summary{Count: h.Count(), P50: h.Quantile(0.5), P95: h.Quantile(0.95), P99: h.Quantile(0.99)}
}

// Write writes the histogram as a Prometheus histogram in seconds.
func (h *Histogram) Write(w *promtext.Writer, name, help string, labels ...string) {
	bs := make([]float64, 0, nBuckets-1)
	cum := make([]uint64, 0, nBuckets-1)
	var c uint64
	for i := 0; i < nBuckets-1; i++ {
		c += h.counts[i].Load()
		bs = append(bs, bounds[i])
		cum = append(cum, c)
	}
	total := c + h.counts[nBuckets-1].Load()
	w.Histogram(name, help, bs, cum, total, float64(h.sumNs.Load())/1e9, labels...)
}
