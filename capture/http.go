package capture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgesync/edgesync/outbox"
)

// RecordsPath is where the ingest handler serves.
const RecordsPath = "/v1/records"

// Appender stores records durably. *outbox.Outbox satisfies it. The handler
// and the sources answer or acknowledge a producer only after
// AppendWithSource returned without error; it must store the records and
// src (when not nil) all or nothing, and when full in block mode wait until
// ctx ends and then return an error matching outbox.ErrFull.
type Appender interface {
	AppendWithSource(ctx context.Context, recs []outbox.Record, src *outbox.SourcePosition) (first, last outbox.Seq, err error)
}

// HTTPConfig configures the ingest handler (the `ingest:` block, less the
// listen address, which the agent owns). The zero value of every field
// means its default.
type HTTPConfig struct {
	// MaxRequestBytes bounds one request body; larger is 413. Default 16MiB.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// BlockTimeout is how long a request waits for space when the outbox is
	// full in block mode before the answer is 503. Default 2s.
	BlockTimeout time.Duration `yaml:"block_timeout"`
	// TokenFile holds a bearer token (surrounding white space ignored) that
	// every request must present as "Authorization: Bearer <token>"; read
	// once by NewHandler. "" (default): no token.
	TokenFile string `yaml:"token_file"`
	// RetryAfter is the Retry-After of a 503, rounded up to whole seconds.
	// Default 1s.
	RetryAfter time.Duration `yaml:"retry_after"`
}

// Defaults of HTTPConfig.
const (
	DefaultMaxRequestBytes = 16 << 20
	DefaultBlockTimeout    = 2 * time.Second
	DefaultRetryAfter      = time.Second
)

// EnsureDefaults fills zero fields with their defaults.
func (c *HTTPConfig) EnsureDefaults() {
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.BlockTimeout == 0 {
		c.BlockTimeout = DefaultBlockTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
}

// Validate reports every problem at once, naming the keys (ingest.*). Zero
// values are valid (they mean the defaults). It reads the token file.
func (c *HTTPConfig) Validate() error {
	var errs []error
	if c.MaxRequestBytes < 0 || c.MaxRequestBytes > 0 && c.MaxRequestBytes < 1024 {
		errs = append(errs, fmt.Errorf("ingest.max_request_bytes: must be at least 1KiB, got %d", c.MaxRequestBytes))
	}
	if c.BlockTimeout < 0 {
		errs = append(errs, fmt.Errorf("ingest.block_timeout: must be >= 0, got %v", c.BlockTimeout))
	}
	if c.RetryAfter < 0 {
		errs = append(errs, fmt.Errorf("ingest.retry_after: must be >= 0, got %v", c.RetryAfter))
	}
	if c.TokenFile != "" {
		if _, err := readToken(c.TokenFile); err != nil {
			errs = append(errs, fmt.Errorf("ingest.token_file: %w", err))
		}
	}
	return errors.Join(errs...)
}

func readToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t := bytes.TrimSpace(b)
	if len(t) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return t, nil
}

type handler struct {
	cfg        HTTPConfig
	a          Appender
	m          *Metrics
	log        *rateLog
	token      *[sha256.Size]byte // nil: no token required
	tokenErr   error              // the token file could not be read: refuse everything
	retryAfter string
	parsers    sync.Pool // *parser
	bufs       sync.Pool // *[]byte
}

// NewHandler returns the handler of POST /v1/records (mount it at
// RecordsPath). It answers 200 {"first_seq": N, "last_seq": M} only once
// a.AppendWithSource returned, so only once the records are stored as
// outbox.durability promises. See the package documentation for every
// status. m may be nil. The token file is read once, here: if it cannot
// be read, every request is refused with 503 (call cfg.Validate first to
// fail at start instead).
func NewHandler(cfg HTTPConfig, a Appender, m *Metrics, log *slog.Logger) http.Handler {
	cfg.EnsureDefaults()
	if m == nil {
		m = new(Metrics)
	}
	h := &handler{cfg: cfg, a: a, m: m, log: newRateLog(log)}
	h.retryAfter = strconv.Itoa(max(1, int(math.Ceil(cfg.RetryAfter.Seconds()))))
	if cfg.TokenFile != "" {
		t, err := readToken(cfg.TokenFile)
		if err != nil {
			h.tokenErr = fmt.Errorf("ingest.token_file: %w", err)
			h.log.log.Error("ingest: cannot read the token file; refusing every request", "err", err)
		} else {
			sum := sha256.Sum256(t)
			h.token = &sum
		}
	}
	h.parsers.New = func() any { return new(parser) }
	h.bufs.New = func() any { return new([]byte) }
	return h
}

// maxPooled is the largest buffer kept for reuse between requests.
const maxPooled = 1 << 20

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	h.m.Requests.Add(1)
	if h.tokenErr != nil {
		h.fail(w, http.StatusServiceUnavailable, ReasonUnavailable, "the ingest token file cannot be read")
		return
	}
	if h.token != nil && !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="edgesync"`)
		h.fail(w, http.StatusUnauthorized, ReasonUnauthorized, "missing or wrong bearer token (Authorization: Bearer <token>)")
		return
	}
	if r.URL.Path != RecordsPath {
		h.fail(w, http.StatusNotFound, ReasonBadRequest, "not found: records are posted to "+RecordsPath)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, http.StatusMethodNotAllowed, ReasonBadRequest, "method "+r.Method+" not allowed: use POST")
		return
	}
	f, err := contentFormat(r.Header.Get("Content-Type"))
	if err != nil {
		h.fail(w, http.StatusUnsupportedMediaType, ReasonUnsupported, err.Error())
		return
	}
	if r.ContentLength > h.cfg.MaxRequestBytes {
		h.fail(w, http.StatusRequestEntityTooLarge, ReasonTooLarge, h.tooLargeMsg(r.ContentLength))
		return
	}
	bp, err := h.readBody(w, r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.fail(w, http.StatusRequestEntityTooLarge, ReasonTooLarge, h.tooLargeMsg(-1))
		} else {
			h.fail(w, http.StatusBadRequest, ReasonBadRequest, "reading the body: "+err.Error())
		}
		return
	}
	defer h.putBuf(bp)

	p := h.parsers.Get().(*parser)
	defer h.putParser(p)
	p.reset(arrived)
	if err := p.parse(f, *bp, nil); err != nil {
		if errors.Is(err, ErrTooLarge) {
			h.fail(w, http.StatusRequestEntityTooLarge, ReasonTooLarge, err.Error())
		} else {
			h.fail(w, http.StatusBadRequest, ReasonBadRequest, err.Error())
		}
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.BlockTimeout)
	first, last, err := h.a.AppendWithSource(ctx, p.recs, nil)
	cancel()
	if err != nil {
		h.appendFailed(w, err)
		return
	}
	n := uint64(len(p.recs))
	h.m.CaptureToDurable.ObserveN(time.Since(arrived), n)
	h.m.Accepted.Add(n)

	out := make([]byte, 0, 64)
	out = append(out, `{"first_seq":`...)
	out = strconv.AppendUint(out, uint64(first), 10)
	out = append(out, `,"last_seq":`...)
	out = strconv.AppendUint(out, uint64(last), 10)
	out = append(out, "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

func (h *handler) tooLargeMsg(n int64) string {
	if n < 0 {
		return fmt.Sprintf("request body over the limit of %d bytes (ingest.max_request_bytes)", h.cfg.MaxRequestBytes)
	}
	return fmt.Sprintf("request body of %d bytes is over the limit of %d bytes (ingest.max_request_bytes)", n, h.cfg.MaxRequestBytes)
}

// appendFailed answers a request whose append failed; nothing of it was
// stored, except possibly when the outbox failed mid-commit (see
// outbox: producers that retry should set an id).
func (h *handler) appendFailed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, outbox.ErrFull):
		w.Header().Set("Retry-After", h.retryAfter)
		h.fail(w, http.StatusServiceUnavailable, ReasonFull, "the outbox is full; retry later: "+err.Error())
	case errors.Is(err, outbox.ErrTooLarge), errors.Is(err, outbox.ErrRecordTooLarge):
		h.fail(w, http.StatusRequestEntityTooLarge, ReasonTooLarge, err.Error())
	case errors.Is(err, outbox.ErrClosed), errors.Is(err, outbox.ErrFailed):
		w.Header().Set("Retry-After", h.retryAfter)
		h.fail(w, http.StatusServiceUnavailable, ReasonUnavailable, "the outbox is not accepting records: "+err.Error())
	default:
		h.fail(w, http.StatusInternalServerError, ReasonUnavailable, "storing the records: "+err.Error())
	}
}

// fail answers with status and {"error": msg}, counts the rejection and logs
// the first of its kind a minute.
func (h *handler) fail(w http.ResponseWriter, status int, reason, msg string) {
	h.m.reject(reason)
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	h.log.logf(level, "http-"+strconv.Itoa(status), "ingest: request refused", "status", status, "reason", reason, "err", msg)
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// authorized checks the bearer token in constant time.
func (h *handler) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], h.token[:]) == 1
}

// readBody reads the whole body, at most cfg.MaxRequestBytes, into a pooled
// buffer.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) (*[]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, h.cfg.MaxRequestBytes)
	bp := h.bufs.Get().(*[]byte)
	buf := (*bp)[:0]
	if r.ContentLength >= 0 && r.ContentLength < 1<<30 {
		// Room for the body and the read that reports EOF.
		if need := int(r.ContentLength) + 512; cap(buf) < need {
			buf = make([]byte, 0, need)
		}
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = buf
			h.putBuf(bp)
			return nil, err
		}
	}
	*bp = buf
	return bp, nil
}

func (h *handler) putBuf(bp *[]byte) {
	if cap(*bp) <= maxPooled {
		*bp = (*bp)[:0]
		h.bufs.Put(bp)
	}
}

func (h *handler) putParser(p *parser) {
	if cap(p.arena) > maxPooled || cap(p.recs) > 16384 {
		return
	}
	clear(p.recs) // drop the strings
	p.reset(time.Time{})
	p.rr = rawRecord{}
	h.parsers.Put(p)
}
