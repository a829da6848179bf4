package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgesync/edgesync/capture"
	"github.com/edgesync/edgesync/internal/latency"
	"github.com/edgesync/edgesync/internal/version"
	"github.com/edgesync/edgesync/outbox"
)

// Status is the JSON behind `edgesync status --json` and GET /v1/status.
// Ages and latencies come from the monotonic clock, so a gateway that booted
// without a real-time clock still reports them right.
type Status struct {
	DeviceID      string  `json:"device_id"`
	Version       string  `json:"version"`
	BootID        string  `json:"boot_id"`
	Running       bool    `json:"running"` // false when read from the outbox of a stopped agent
	UptimeSeconds float64 `json:"uptime_seconds"`
	Epoch         string  `json:"epoch"` // a string: 63-bit integers do not survive JSON numbers
	EpochReason   string  `json:"epoch_reason,omitempty"`
	Head          uint64  `json:"head"`
	Watermark     uint64  `json:"watermark"`

	Outbox  OutboxStatus            `json:"outbox"`
	Link    LinkStatus              `json:"link"`
	Rates   RateStatus              `json:"rates"`
	Latency map[string]LatencyStats `json:"latency"`
	Ingest  IngestStatus            `json:"ingest"`
	Clock   ClockStatus             `json:"clock"`
}

// OutboxStatus: depth, bytes and staleness.
type OutboxStatus struct {
	Records          uint64  `json:"records"` // not yet acknowledged by the sink
	Bytes            int64   `json:"bytes"`
	UsedBytes        int64   `json:"used_bytes"` // including acknowledged records kept for retain_acked
	MaxBytes         int64   `json:"max_bytes"`
	OldestSeq        uint64  `json:"oldest_seq,omitempty"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"` // the staleness the product exists to keep low
	Dropped          uint64  `json:"dropped"`
	Drops            []Range `json:"drops,omitempty"`
	Durability       string  `json:"durability"`
	WhenFull         string  `json:"when_full"`
	DiskLow          bool    `json:"disk_low"`
	DiskBytesWritten uint64  `json:"disk_bytes_written"`
	MemoryRecords    int     `json:"memory_records,omitempty"`
	Failed           string  `json:"failed,omitempty"`
}

// Range is a seq range in JSON.
type Range struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

// LinkStatus: the MQTT link and the uplink.
type LinkStatus struct {
	State         string  `json:"state"` // up | down
	Broker        string  `json:"broker"`
	UpSeconds     float64 `json:"up_seconds,omitempty"`
	Reconnects    uint64  `json:"reconnects"`
	LastError     string  `json:"last_error,omitempty"`
	Paused        bool    `json:"paused"` // the sink holds this device (unknown schema)
	Inflight      int64   `json:"inflight_batches"`
	BatchesSent   uint64  `json:"batches_sent"`
	BatchesResent uint64  `json:"batches_resent"`
	Parked        uint64  `json:"parked"` // records the sink parked
	LastAckAgeSec float64 `json:"last_ack_age_seconds,omitempty"`
}

// RateStatus: per-second rates over the last 10 seconds.
type RateStatus struct {
	AppendedPerSec  float64 `json:"appended_per_sec"`
	AckedPerSec     float64 `json:"acked_per_sec"`
	WireBytesPerSec float64 `json:"wire_bytes_per_sec"`
}

// LatencyStats per stage, in milliseconds.
type LatencyStats struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
}

// IngestStatus: the HTTP ingest API.
type IngestStatus struct {
	Listen   string `json:"listen"`
	Requests uint64 `json:"requests"`
	Records  uint64 `json:"records"`
	Rejected uint64 `json:"rejected"`
}

// ClockStatus says whether the wall clock looks synchronised.
type ClockStatus struct {
	Wall         time.Time `json:"wall"`
	Synchronized bool      `json:"synchronized"`
	Note         string    `json:"note,omitempty"`
}

func latencyStats(h *latency.Histogram) LatencyStats {
	s := h.Summary()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return LatencyStats{Count: s.Count, P50: ms(s.P50), P95: ms(s.P95), P99: ms(s.P99)}
}

// Status builds the current status.
func (a *Agent) Status() Status {
	st := a.ob.Stats()
	m := a.up.Metrics()
	cs := a.conn.Stats()
	s := baseStatus(a.cfg, st)
	s.Running = true
	s.BootID = a.bootID
	s.UptimeSeconds = time.Since(a.started).Seconds()
	s.Link = LinkStatus{
		State: "down", Broker: a.cfg.Broker.URL, Reconnects: cs.Reconnects, LastError: cs.LastError,
		Paused: m.Paused.Load(), Inflight: m.Inflight.Load(), BatchesSent: m.BatchesSent.Load(),
		BatchesResent: m.BatchesResent.Load(), Parked: m.Parked.Load(),
	}
	if cs.Up {
		s.Link.State = "up"
		s.Link.UpSeconds = time.Since(cs.UpSince).Seconds()
	}
	if t := m.LastAckUnixNs.Load(); t != 0 {
		s.Link.LastAckAgeSec = time.Since(time.Unix(0, t)).Seconds()
	}
	s.Rates = a.rates.current()
	s.Latency = map[string]LatencyStats{
		"capture_to_durable": latencyStats(&a.capture.CaptureToDurable),
		"durable_to_puback":  latencyStats(&m.DurableToPuback),
		"puback_to_ack":      latencyStats(&m.PubackToAck),
		"capture_to_ack":     latencyStats(&m.CaptureToAck),
	}
	var rejected uint64
	for _, reason := range capture.Reasons {
		rejected += a.capture.Rejected(reason)
	}
	s.Ingest = IngestStatus{Listen: a.cfg.Ingest.Listen, Requests: a.capture.Requests.Load(),
		Records: a.capture.Accepted.Load(), Rejected: rejected}
	return s
}

// baseStatus fills what an outbox alone can tell.
func baseStatus(cfg *Config, st outbox.Stats) Status {
	s := Status{
		DeviceID:    cfg.DeviceID,
		Version:     version.String(),
		Epoch:       strconv.FormatUint(uint64(st.Epoch), 10),
		EpochReason: st.EpochReason,
		Head:        uint64(st.Head),
		Watermark:   uint64(st.Watermark),
		Outbox: OutboxStatus{
			Records: st.Depth, Bytes: st.DepthBytes, UsedBytes: st.UsedBytes, MaxBytes: st.MaxBytes,
			OldestSeq: uint64(st.OldestSeq), OldestAgeSeconds: st.OldestAge.Seconds(),
			Dropped: st.Dropped, Durability: cfg.Outbox.Durability, WhenFull: cfg.Outbox.WhenFull,
			DiskLow: st.DiskLow, DiskBytesWritten: st.DiskBytesWritten, MemoryRecords: st.MemoryRecords,
		},
		Link:    LinkStatus{State: "down", Broker: cfg.Broker.URL},
		Latency: map[string]LatencyStats{},
		Clock:   clockStatus(),
	}
	for _, d := range st.Drops {
		s.Outbox.Drops = append(s.Outbox.Drops, Range{uint64(d.First), uint64(d.Last)})
	}
	if st.Failed != nil {
		s.Outbox.Failed = st.Failed.Error()
	}
	return s
}

// clockStatus asks the kernel whether NTP considers the clock synchronised,
// and distrusts a wall clock before the year this binary was built.
func clockStatus() ClockStatus {
	now := time.Now()
	c := ClockStatus{Wall: now.UTC(), Synchronized: true}
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	switch {
	case now.Year() < 2025:
		c.Synchronized = false
		c.Note = "the wall clock is before 2025: no real-time clock and no time sync yet"
	case err != nil:
		c.Note = "cannot ask the kernel about time synchronisation: " + err.Error()
	case state == unix.TIME_ERROR || tx.Status&unix.STA_UNSYNC != 0:
		c.Synchronized = false
		c.Note = "the kernel reports the clock as not synchronised (no NTP yet?); ages and latencies use the monotonic clock and are right, capture times from this device may be off"
	}
	return c
}

// WriteText renders the status for people: readable at a glance.
func (s Status) WriteText(w io.Writer) {
	var b strings.Builder
	state := "running"
	if !s.Running {
		state = "not running (read from the outbox)"
	}
	fmt.Fprintf(&b, "edgesync agent %s — %s, %s\n", s.DeviceID, state, s.Version)
	fmt.Fprintf(&b, "  epoch %s   head %d   watermark %d\n", s.Epoch, s.Head, s.Watermark)
	o := s.Outbox
	pct := 0.0
	if o.MaxBytes > 0 {
		pct = 100 * float64(o.UsedBytes) / float64(o.MaxBytes)
	}
	fmt.Fprintf(&b, "outbox   %d records unacknowledged, %s (%.1f%% of %s), oldest %s old\n",
		o.Records, human(o.Bytes), pct, human(o.MaxBytes), dur(o.OldestAgeSeconds))
	fmt.Fprintf(&b, "         durability %s, when full %s, dropped %d", o.Durability, o.WhenFull, o.Dropped)
	if o.DiskLow {
		b.WriteString(", DISK LOW")
	}
	if o.Failed != "" {
		b.WriteString(", FAILED: " + o.Failed)
	}
	b.WriteString("\n")
	l := s.Link
	fmt.Fprintf(&b, "link     %s to %s", strings.ToUpper(l.State), l.Broker)
	if l.State == "up" {
		fmt.Fprintf(&b, " for %s", dur(l.UpSeconds))
	}
	fmt.Fprintf(&b, ", %d reconnects, %d in flight, %d batches sent (%d resent), parked %d",
		l.Reconnects, l.Inflight, l.BatchesSent, l.BatchesResent, l.Parked)
	if l.Paused {
		b.WriteString(", PAUSED by the sink (unknown schema)")
	}
	if l.LastError != "" && l.State != "up" {
		b.WriteString("\n         last error: " + l.LastError)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "rates    %.0f appended/s, %.0f acknowledged/s, %s/s on the wire\n",
		s.Rates.AppendedPerSec, s.Rates.AckedPerSec, human(int64(s.Rates.WireBytesPerSec)))
	if len(s.Latency) > 0 {
		b.WriteString("latency  stage                   p50        p95        p99      count\n")
		for _, k := range []string{"capture_to_durable", "durable_to_puback", "puback_to_ack", "capture_to_ack"} {
			v := s.Latency[k]
			fmt.Fprintf(&b, "         %-20s %8.1fms %8.1fms %8.1fms %10d\n", k, v.P50, v.P95, v.P99, v.Count)
		}
	}
	if !s.Clock.Synchronized {
		fmt.Fprintf(&b, "clock    NOT SYNCHRONISED: %s\n", s.Clock.Note)
	}
	_, _ = io.WriteString(w, b.String())
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func dur(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// rates samples counters every second and reports rates over 10 seconds.
type rates struct {
	a       *Agent
	mu      sync.Mutex
	samples []rateSample
}

type rateSample struct {
	at                   time.Time
	appended, acked, wbs uint64
}

func newRates(a *Agent) *rates { return &rates{a: a} }

func (r *rates) sample() rateSample {
	st := r.a.ob.Stats()
	return rateSample{at: time.Now(), appended: st.Appended, acked: st.Acked, wbs: r.a.up.Metrics().BytesSent.Load()}
}

func (r *rates) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s := r.sample()
			r.mu.Lock()
			r.samples = append(r.samples, s)
			if len(r.samples) > 11 {
				r.samples = r.samples[1:]
			}
			r.mu.Unlock()
		}
	}
}

func (r *rates) current() RateStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < 2 {
		return RateStatus{}
	}
	a, b := r.samples[0], r.samples[len(r.samples)-1]
	sec := b.at.Sub(a.at).Seconds()
	return RateStatus{
		AppendedPerSec:  float64(b.appended-a.appended) / sec,
		AckedPerSec:     float64(b.acked-a.acked) / sec,
		WireBytesPerSec: float64(b.wbs-a.wbs) / sec,
	}
}

// MarshalIndent is the status as indented JSON.
func (s Status) MarshalIndent() []byte {
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}

// OfflineStatus reads the status from the outbox of an agent that is not
// running. It fails with outbox.ErrLocked when an agent has it open.
func OfflineStatus(cfg *Config) (Status, error) {
	if _, err := os.Stat(cfg.OutboxDir()); err != nil {
		return Status{}, fmt.Errorf("no outbox at %s: the agent has not run yet (%v)", cfg.OutboxDir(), err)
	}
	oo := cfg.OutboxOptions()
	oo.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ob, err := outbox.Open(cfg.OutboxDir(), oo)
	if err != nil {
		return Status{}, err
	}
	defer ob.Close()
	s := baseStatus(cfg, ob.Stats())
	s.Running = false
	return s, nil
}
