package apply

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/broker"
	"github.com/edgesync/edgesync/transport/wire"
)

// newHoldRig is newSinkRig with the sink's configuration read from a file,
// so that store.gap_wait has its default unless extra sets it.
func newHoldRig(t *testing.T, extra string) *sinkRig {
	b, err := broker.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	cfg, err := ParseSinkConfig([]byte(fmt.Sprintf("sink_id: s1\nbroker:\n  url: %s\n  reconnect_min: 50ms\nstore:\n  url: sqlite://%s\n%s",
		b.URL(), filepath.Join(t.TempDir(), "sink.db"), extra)))
	if err != nil {
		t.Fatal(err)
	}
	return startSinkRig(t, b, cfg)
}

// TestSinkHoldsEarlyBatches: batches of a device that arrive before the one
// in front of them (paho hands messages over on goroutines of their own; a
// shared group deals a device's batches to several sinks) are held, not
// answered gap; meanwhile the worker goes on with other devices' batches.
func TestSinkHoldsEarlyBatches(t *testing.T) {
	// gap_wait well above the test's own waits: under qemu on a loaded
	// machine the other device's first apply alone can take seconds, and
	// the held batches must still be held when the batch in front comes.
	r := newHoldRig(t, "  gap_wait: 60s\n")
	// A device on the same worker as gw-1, to show that a held batch does
	// not block the batches behind it.
	other := ""
	for i := 2; other == ""; i++ {
		if d := fmt.Sprintf("gw-%d", i); r.sink.queueOf(d) == r.sink.queueOf("gw-1") {
			other = d
		}
	}
	r.publish("gw-1", testBatch(t, "gw-1", 7, 11, 5, "reading", 3))
	r.publish("gw-1", testBatch(t, "gw-1", 7, 6, 5, "reading", 2))
	r.publish(other, testBatch(t, other, 9, 1, 5, "reading", 1))
	waitUntil(t, "the other device applied", func() bool { a := r.lastAck(other); return a != nil && a.AppliedThrough == 5 })
	if a := r.lastAck("gw-1"); a != nil {
		t.Fatalf("gw-1 answered %+v before the batch in front arrived", a)
	}
	r.publish("gw-1", testBatch(t, "gw-1", 7, 1, 5, "reading", 1))
	deadline := time.Now().Add(10 * time.Second)
	for a := r.lastAck("gw-1"); a == nil || a.AppliedThrough != 15; a = r.lastAck("gw-1") {
		if time.Now().After(deadline) {
			r.mu.Lock()
			var got []string
			for _, a := range r.acks {
				got = append(got, fmt.Sprintf("%s:%d:%d", a.Device, a.AppliedThrough, a.Status))
			}
			t.Fatalf("gw-1 not applied through 15 within 10s; acks in arrival order %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitUntil(t, "every batch answered", func() bool { return r.ackCount() == 4 })
	r.mu.Lock()
	for _, a := range r.acks {
		if a.Status != wire.StatusOK {
			t.Errorf("ack %+v, want status ok", a)
		}
	}
	r.mu.Unlock()
	if n := r.sink.GapAcks.Load(); n != 0 {
		t.Errorf("%d gap answers, want 0", n)
	}
	if m := r.sink.Devices()["gw-1"]; m.Applied.Load() != 15 || m.Duplicates.Load() != 0 {
		t.Errorf("gw-1: applied %d, duplicates %d; want 15 and 0", m.Applied.Load(), m.Duplicates.Load())
	}
}

// TestSinkAnswersGapAfterGapWait: a batch whose predecessor does not come is
// answered gap once its device's watermark has not moved for gap_wait, not
// before, and the agent's resend then applies.
func TestSinkAnswersGapAfterGapWait(t *testing.T) {
	r := newHoldRig(t, "")
	wait := r.sink.cfg.Store.GapWait
	if wait != 2*time.Second {
		t.Fatalf("gap_wait %v, want the default 2s", wait)
	}
	start := time.Now()
	r.publish("gw-1", testBatch(t, "gw-1", 7, 6, 5, "reading", 2))
	waitUntil(t, "gap answer", func() bool { return r.lastAck("gw-1") != nil })
	if d := time.Since(start); d < wait {
		t.Errorf("gap answered after %v, before gap_wait (%v)", d, wait)
	}
	if a := r.lastAck("gw-1"); a.Status != wire.StatusGap || a.AppliedThrough != 0 || a.InReplyTo != 2 {
		t.Fatalf("ack %+v, want gap at 0 in reply to 2", a)
	}
	r.publish("gw-1", testBatch(t, "gw-1", 7, 1, 10, "reading", 3))
	waitUntil(t, "resend applied", func() bool { a := r.lastAck("gw-1"); return a.AppliedThrough == 10 && a.Status == wire.StatusOK })
}
