package backoff

import (
	"testing"
	"time"
)

func TestBackoffGrowsCapsAndJitters(t *testing.T) {
	r := 0.0
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second, Rand: func() float64 { return r }}
	// With r = 0 each delay is exactly half the nominal one.
	want := []time.Duration{50, 100, 200, 400, 500, 500}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("attempt %d: got %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	r = 0.999999
	if got := b.Next(); got < 99*time.Millisecond || got > 100*time.Millisecond {
		t.Fatalf("after reset with r≈1: got %v, want ≈100ms", got)
	}
	// Real randomness stays within [d/2, d].
	var z Backoff
	for i := 0; i < 100; i++ {
		d := z.Next()
		if d < 250*time.Millisecond || d > 30*time.Second {
			t.Fatalf("default backoff gave %v", d)
		}
	}
	if z.Attempts() != 100 {
		t.Fatalf("Attempts = %d, want 100", z.Attempts())
	}
}
