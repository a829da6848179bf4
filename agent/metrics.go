package agent

import (
	"net/http"
	"strconv"

	"github.com/edgesync/edgesync/capture"
	"github.com/edgesync/edgesync/internal/promtext"
	"github.com/edgesync/edgesync/internal/version"
)

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// writeMetrics writes the agent's metrics; names and meanings are listed in
// docs/OPERATIONS.md.
func (a *Agent) writeMetrics(w *promtext.Writer) {
	st := a.ob.Stats()
	m := a.up.Metrics()
	cs := a.conn.Stats()
	w.Gauge("edgesync_outbox_depth_records", "Records in the outbox not yet acknowledged by the sink.", float64(st.Depth))
	w.Gauge("edgesync_outbox_depth_bytes", "Bytes of the records not yet acknowledged.", float64(st.DepthBytes))
	w.Gauge("edgesync_outbox_used_bytes", "Bytes held by the outbox, including acknowledged records retained for retain_acked.", float64(st.UsedBytes))
	w.Gauge("edgesync_outbox_max_bytes", "The outbox's bound (outbox.max_bytes).", float64(st.MaxBytes))
	w.Gauge("edgesync_outbox_oldest_age_seconds", "Age of the oldest unacknowledged record (monotonic clock): the staleness at the sink.", st.OldestAge.Seconds())
	w.Counter("edgesync_outbox_appended_records_total", "Records appended to the outbox by this process.", float64(st.Appended))
	w.Counter("edgesync_outbox_acked_records_total", "Records acknowledged by the sink in this process.", float64(st.Acked))
	w.Counter("edgesync_outbox_dropped_records_total", "Records dropped (drop_oldest, or lost in a crash in spill mode) in the outbox's life.", float64(st.Dropped))
	w.Counter("edgesync_outbox_disk_written_bytes_total", "Bytes Pebble wrote to disk in this process (WAL, flushes, compactions): flash wear.", float64(st.DiskBytesWritten))
	w.Gauge("edgesync_outbox_disk_low", "1 when free disk space is below outbox.min_free_disk.", b2f(st.DiskLow))
	w.Gauge("edgesync_outbox_epochs", "Epochs the outbox has had (a new one after corruption or a restored disk).", float64(st.Epochs))
	w.Counter("edgesync_uplink_batches_sent_total", "Batches published, first sends and resends.", float64(m.BatchesSent.Load()))
	w.Counter("edgesync_uplink_batches_resent_total", "Batches published again.", float64(m.BatchesResent.Load()))
	w.Counter("edgesync_uplink_resends_total", "Times the uplink went back to the watermark (ack timeout, gap, reconnect).", float64(m.Resends.Load()))
	w.Counter("edgesync_uplink_records_sent_total", "Records published (with resends).", float64(m.RecordsSent.Load()))
	w.Counter("edgesync_uplink_wire_bytes_total", "Payload bytes published.", float64(m.BytesSent.Load()))
	w.Gauge("edgesync_uplink_inflight_batches", "Batches published and not yet acknowledged.", float64(m.Inflight.Load()))
	w.Counter("edgesync_uplink_rate_limit_wait_seconds_total", "Time batches waited on uplink.rate_bytes.", float64(m.RateWaitNs.Load())/1e9)
	const acksHelp = "Acknowledgements received, by what they did."
	w.Counter("edgesync_uplink_acks_total", acksHelp, float64(m.AcksApplied.Load()), "result", "applied")
	w.Counter("edgesync_uplink_acks_total", acksHelp, float64(m.AcksDuplicate.Load()), "result", "duplicate")
	w.Counter("edgesync_uplink_acks_total", acksHelp, float64(m.AcksStale.Load()), "result", "stale_epoch")
	w.Counter("edgesync_uplink_acks_total", acksHelp, float64(m.AcksForeign.Load()), "result", "foreign_device")
	w.Counter("edgesync_uplink_acks_total", acksHelp, float64(m.AcksInvalid.Load()), "result", "invalid")
	w.Counter("edgesync_uplink_acks_total", acksHelp, float64(m.AcksGap.Load()), "result", "gap")
	w.Counter("edgesync_uplink_acks_total", acksHelp, float64(m.AcksPaused.Load()), "result", "paused")
	w.Counter("edgesync_uplink_parked_records_total", "Records the sink reported parked (unknown schema).", float64(m.Parked.Load()))
	w.Gauge("edgesync_uplink_paused", "1 while the sink holds this device for an unknown schema.", b2f(m.Paused.Load()))
	w.Gauge("edgesync_mqtt_connected", "1 while connected to the broker.", b2f(cs.Up))
	w.Counter("edgesync_mqtt_reconnects_total", "Successful reconnections to the broker.", float64(cs.Reconnects))
	w.Counter("edgesync_mqtt_connect_attempts_total", "Connection attempts.", float64(cs.Attempts))
	const latHelp = "Latency per stage: capture_to_durable, durable_to_puback, puback_to_ack, capture_to_ack."
	a.capture.CaptureToDurable.Write(w, "edgesync_latency_seconds", latHelp, "stage", "capture_to_durable")
	m.DurableToPuback.Write(w, "edgesync_latency_seconds", latHelp, "stage", "durable_to_puback")
	m.PubackToAck.Write(w, "edgesync_latency_seconds", latHelp, "stage", "puback_to_ack")
	m.CaptureToAck.Write(w, "edgesync_latency_seconds", latHelp, "stage", "capture_to_ack")
	w.Counter("edgesync_ingest_requests_total", "HTTP ingest requests.", float64(a.capture.Requests.Load()))
	w.Counter("edgesync_ingest_records_total", "Records accepted by the ingest API and the sources.", float64(a.capture.Accepted.Load()))
	for _, reason := range capture.Reasons {
		w.Counter("edgesync_ingest_rejected_total", "HTTP ingest requests refused, by reason.", float64(a.capture.Rejected(reason)), "reason", reason)
	}
	w.Counter("edgesync_source_rejected_total", "MQTT messages and file lines the sources refused.", float64(a.capture.SourceRejected.Load()))
	w.Gauge("edgesync_config_version", "Version of the remote configuration applied; 0 when only the local file.", float64(a.ConfigVersion()))
	w.Gauge("edgesync_info", "Constant 1, labelled with the version, device and epoch.", 1,
		"version", version.Version, "device_id", a.cfg.DeviceID, "epoch", strconv.FormatUint(uint64(st.Epoch), 10))
}

// metricsHandler serves /metrics: the agent's metrics plus Go runtime and
// process metrics (RSS, open files, CPU).
func (a *Agent) metricsHandler() http.Handler { return promtext.Handler(a.writeMetrics) }
