package agent

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/resync"
)

// ExportOptions maps the batch block to the export's batches.
func (c *Config) ExportOptions() resync.ExportOptions {
	return resync.ExportOptions{MaxRecords: c.Batch.MaxRecords, MaxBytes: int(c.Batch.MaxBytes), Compression: c.Batch.Compression}
}

// TrustedKeys loads resync.trusted_keys.
func (c *Config) TrustedKeys() ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for i, f := range c.Resync.TrustedKeys {
		k, err := resync.LoadPublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("resync.trusted_keys[%d]: %w", i, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("resync.trusted_keys: no sink key is trusted; add the sink's public key (edgesync keygen) to the agent configuration")
	}
	return keys, nil
}

// AckImport verifies a receipt with the trusted keys and acknowledges it.
func AckImport(cfg *Config, ob resync.Acker, receipt []byte) (outbox.AckResult, *resync.Receipt, error) {
	keys, err := cfg.TrustedKeys()
	if err != nil {
		return outbox.AckResult{}, nil, err
	}
	r, err := resync.ParseReceipt(receipt)
	if err != nil {
		return outbox.AckResult{}, nil, err
	}
	res, err := resync.Acknowledge(ob, cfg.DeviceID, r, keys)
	return res, r, err
}

// serveExport: POST /v1/export?from=N streams a bundle of every unacknowledged
// record (from N when given).
func (a *Agent) serveExport(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSONError(w, http.StatusMethodNotAllowed, errors.New("use POST"))
		return
	}
	var from uint64
	if s := r.URL.Query().Get("from"); s != "" {
		var err error
		if from, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeJSONError(w, http.StatusBadRequest, fmt.Errorf("from: %v", err))
			return
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", "X-Edgesync-Error")
	sum, err := resync.Export(w, a.ob, a.cfg.DeviceID, outbox.Seq(from), a.cfg.ExportOptions())
	if err != nil {
		// The status is sent already: the error goes in the trailer (and the
		// bundle lacks its own trailer, so no reader would take it).
		w.Header().Set("X-Edgesync-Error", err.Error())
		a.log.Error("agent: export failed", "err", err)
		return
	}
	a.log.Info("agent: exported a resync bundle", "first", sum.First, "last", sum.Last, "records", sum.Records)
}

// serveAckImport: POST /v1/ack-import with the receipt as the body.
func (a *Agent) serveAckImport(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSONError(w, http.StatusMethodNotAllowed, errors.New("use POST"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	res, rc, err := AckImport(a.cfg, a.ob, body)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, outbox.ErrAckAboveHead) {
			code = http.StatusConflict
		}
		writeJSONError(w, code, err)
		return
	}
	a.up.Kick()
	a.log.Info("agent: import receipt acknowledged", "epoch", rc.Epoch, "applied_through", rc.AppliedThrough,
		"sink_id", rc.SinkID, "advanced", res.Advanced)
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, "{\"watermark\": %d, \"advanced\": %t}\n", res.Watermark, res.Advanced)
}
