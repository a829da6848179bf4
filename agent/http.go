package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/edgesync/edgesync/capture"
	"github.com/edgesync/edgesync/outbox"
)

// ingestHandler is the capture handler, refusing while the agent is not accepting.
func (a *Agent) ingestHandler() http.Handler {
	h := capture.NewHandler(capture.HTTPConfig{
		MaxRequestBytes: int64(a.cfg.Ingest.MaxRequestBytes),
		BlockTimeout:    a.cfg.Ingest.BlockTimeout,
		TokenFile:       a.cfg.Ingest.TokenFile,
	}, a.ob, a.capture, a.log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.accepting.Load() {
			w.Header().Set("Retry-After", "5")
			http.Error(w, `{"error":"the agent is starting or shutting down"}`, http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// mainMux serves the ingest listener: records, health, status and (unless
// metrics.listen is set) metrics.
func (a *Agent) mainMux(ingest http.Handler, withMetrics bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/records", ingest)
	mux.HandleFunc("/healthz", a.healthz)
	mux.HandleFunc("/v1/status", a.serveStatus)
	if withMetrics {
		mux.Handle("/metrics", a.metricsHandler())
	}
	return mux
}

func (a *Agent) metricsMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", a.metricsHandler())
	return mux
}

// healthz is 200 while the agent can accept records.
func (a *Agent) healthz(w http.ResponseWriter, _ *http.Request) {
	st := a.ob.Stats()
	switch {
	case !a.accepting.Load():
		http.Error(w, "not accepting: starting or shutting down\n", http.StatusServiceUnavailable)
	case st.Failed != nil:
		http.Error(w, "outbox failed: "+st.Failed.Error()+"\n", http.StatusServiceUnavailable)
	case st.DiskLow:
		http.Error(w, "disk space below outbox.min_free_disk\n", http.StatusServiceUnavailable)
	case st.Full:
		http.Error(w, "outbox full\n", http.StatusServiceUnavailable)
	default:
		_, _ = w.Write([]byte("ok\n"))
	}
}

func (a *Agent) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(a.Status().MarshalIndent())
}

// controlMux serves the control socket: status, records (so that put works
// with ingest.listen ""), resend, export and ack-import.
func (a *Agent) controlMux(ingest http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/records", ingest)
	mux.HandleFunc("/healthz", a.healthz)
	mux.HandleFunc("/v1/status", a.serveStatus)
	mux.Handle("/metrics", a.metricsHandler())
	mux.HandleFunc("/v1/resend", a.serveResend)
	mux.HandleFunc("/v1/export", a.serveExport)
	mux.HandleFunc("/v1/ack-import", a.serveAckImport)
	return mux
}

func writeJSONError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// serveResend: POST /v1/resend?from=N sends again from N (see uplink.ResendFrom).
func (a *Agent) serveResend(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSONError(w, http.StatusMethodNotAllowed, errors.New("use POST"))
		return
	}
	from, err := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
	if err != nil || from < 1 {
		writeJSONError(w, http.StatusBadRequest, errors.New("from: a sequence number >= 1 is required"))
		return
	}
	a.up.Command(outbox.Seq(from))
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, "{\"resending_from\": %d}\n", from)
}

// listenControl listens on the control socket, mode 0600, replacing a stale
// socket file.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		_ = c.Close()
		return nil, fmt.Errorf("%s: another agent is listening", path)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

// ControlClient returns an HTTP client that talks to the control socket at
// path; URLs are http://agent/... .
func ControlClient(path string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
}
