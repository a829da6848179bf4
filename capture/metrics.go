package capture

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgesync/edgesync/internal/latency"
)

// Reasons a request is rejected, as Metrics counts them (Prometheus label
// values).
const (
	ReasonBadRequest   = "bad_request"  // 400 (and 405, 404)
	ReasonTooLarge     = "too_large"    // 413
	ReasonUnsupported  = "unsupported"  // 415
	ReasonFull         = "full"         // 503: the outbox is full (block mode)
	ReasonUnavailable  = "unavailable"  // 503: the outbox is closed or failed; 500
	ReasonUnauthorized = "unauthorized" // 401
)

// Reasons lists every rejection reason.
var Reasons = []string{ReasonBadRequest, ReasonTooLarge, ReasonUnsupported, ReasonFull, ReasonUnavailable, ReasonUnauthorized}

// Metrics are the counters of the ingest API and the sources. The zero value
// is ready; every field is safe for concurrent use. One Metrics may be
// shared by the handler and the sources.
type Metrics struct {
	// Requests to POST /v1/records, whatever their answer.
	Requests atomic.Uint64
	// Accepted counts records stored in the outbox, from every source.
	Accepted atomic.Uint64
	// Rejected requests, by reason.
	RejectedBadRequest   atomic.Uint64
	RejectedTooLarge     atomic.Uint64
	RejectedUnsupported  atomic.Uint64
	RejectedFull         atomic.Uint64
	RejectedUnavailable  atomic.Uint64
	RejectedUnauthorized atomic.Uint64
	// SourceRejected counts MQTT messages and file lines the sources refused
	// (acknowledged or skipped so that they do not block what follows).
	SourceRejected atomic.Uint64
	// CaptureToDurable is the time from a record's arrival (the request, the
	// MQTT message, the file read) to the outbox's Append returning, one
	// observation per record.
	CaptureToDurable latency.Histogram
}

// Rejected returns the count of requests rejected for reason (one of
// Reasons), 0 for an unknown reason.
func (m *Metrics) Rejected(reason string) uint64 {
	if c := m.counter(reason); c != nil {
		return c.Load()
	}
	return 0
}

func (m *Metrics) counter(reason string) *atomic.Uint64 {
	switch reason {
	case ReasonBadRequest:
		return &m.RejectedBadRequest
	case ReasonTooLarge:
		return &m.RejectedTooLarge
	case ReasonUnsupported:
		return &m.RejectedUnsupported
	case ReasonFull:
		return &m.RejectedFull
	case ReasonUnavailable:
		return &m.RejectedUnavailable
	case ReasonUnauthorized:
		return &m.RejectedUnauthorized
	}
	return nil
}

func (m *Metrics) reject(reason string) {
	if c := m.counter(reason); c != nil {
		c.Add(1)
	}
}

// rateLog logs the first event of each kind, then at most one a minute with
// the number suppressed in between: never a line per record or request.
type rateLog struct {
	log   *slog.Logger
	every time.Duration
	mu    sync.Mutex
	kinds map[string]*rateKind
}

type rateKind struct {
	last       time.Time
	suppressed uint64
}

func newRateLog(log *slog.Logger) *rateLog {
	if log == nil {
		log = slog.Default()
	}
	return &rateLog{log: log, every: time.Minute, kinds: map[string]*rateKind{}}
}

// log logs msg unless an event of this kind was logged less than a minute ago.
func (l *rateLog) logf(level slog.Level, kind, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	k := l.kinds[kind]
	if k == nil {
		k = &rateKind{}
		l.kinds[kind] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < l.every {
		k.suppressed++
		l.mu.Unlock()
		return
	}
	k.last = now
	n := k.suppressed
	k.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", strconv.FormatUint(n, 10))
	}
	l.log.Log(context.Background(), level, msg, args...)
}
