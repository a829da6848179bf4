// Package backoff computes capped, jittered exponential delays between retries.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff returns delays that grow from Min by Factor up to Max, each drawn
// uniformly from [d/2, d] ("equal jitter") so that a fleet of devices that lost
// the same broker does not come back in lockstep. The zero value is usable:
// Min 500ms, Max 30s, Factor 2. Not safe for concurrent use.
type Backoff struct {
	Min    time.Duration // first delay; default 500ms
	Max    time.Duration // cap; default 30s
	Factor float64       // growth per attempt; default 2
	// Rand returns a float64 in [0, 1); default math/rand/v2.Float64.
	Rand func() float64

	attempt int
}

// Next returns the delay before the next attempt.
func (b *Backoff) Next() time.Duration {
	lo, hi, f := b.Min, b.Max, b.Factor
	if lo <= 0 {
		lo = 500 * time.Millisecond
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	if f <= 1 {
		f = 2
	}
	d := float64(lo)
	for i := 0; i < b.attempt && d < float64(hi); i++ {
		d *= f
	}
	if d > float64(hi) {
		d = float64(hi)
	}
	b.attempt++
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	return time.Duration(d/2 + r()*d/2)
}

// Attempts is how many delays were handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }
