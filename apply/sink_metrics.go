package apply

import (
	"net/http"
	"sort"
	"time"

	"github.com/edgesync/edgesync/internal/promtext"
)

func (s *Sink) writeMetrics(w *promtext.Writer) {
	devs := s.Devices()
	names := make([]string, 0, len(devs))
	for d := range devs {
		names = append(names, d)
	}
	sort.Strings(names)
	now := time.Now()
	per := func(name, help string, counter bool, v func(d *DeviceMetrics) (float64, bool)) {
		for _, dev := range names {
			x, ok := v(devs[dev])
			if !ok {
				continue
			}
			if counter {
				w.Counter(name, help, x, "device_id", dev)
			} else {
				w.Gauge(name, help, x, "device_id", dev)
			}
		}
	}
	per("edgesync_sink_applied_records_total", "Records applied, per device.", true,
		func(d *DeviceMetrics) (float64, bool) { return float64(d.Applied.Load()), true })
	per("edgesync_sink_duplicate_records_total", "Records skipped as already applied, per device.", true,
		func(d *DeviceMetrics) (float64, bool) { return float64(d.Duplicates.Load()), true })
	per("edgesync_sink_lost_records_total", "Sequence numbers given up (dropped on the device, or trimmed before the sink had them), per device.", true,
		func(d *DeviceMetrics) (float64, bool) { return float64(d.Lost.Load()), true })
	per("edgesync_sink_parked_records_total", "Records parked for an unknown schema, per device.", true,
		func(d *DeviceMetrics) (float64, bool) { return float64(d.Parked.Load()), true })
	per("edgesync_sink_last_seen_timestamp_seconds", "When the device's last batch was applied (unix time).", false,
		func(d *DeviceMetrics) (float64, bool) { return float64(d.LastSeen.Load()) / 1e9, true })
	per("edgesync_sink_lag_seconds", "Now minus the capture time of the newest record applied for the device.", false,
		func(d *DeviceMetrics) (float64, bool) {
			nc := d.NewestCaptured.Load()
			return now.Sub(time.Unix(0, nc)).Seconds(), nc != 0
		})
	per("edgesync_sink_applied_through", "The device's watermark in its current epoch.", false,
		func(d *DeviceMetrics) (float64, bool) { return float64(d.Watermark.Load()), true })
	per("edgesync_sink_device_paused", "1 while the device is held for an unknown schema.", false,
		func(d *DeviceMetrics) (float64, bool) {
			if d.Paused.Load() {
				return 1, true
			}
			return 0, true
		})
	const bh = "Batches by outcome."
	w.Counter("edgesync_sink_batches_total", bh, float64(s.Batches.Load()), "result", "applied")
	w.Counter("edgesync_sink_batches_total", bh, float64(s.Undecodable.Load()), "result", "undecodable")
	w.Counter("edgesync_sink_batches_total", bh, float64(s.Refused.Load()), "result", "refused")
	w.Counter("edgesync_sink_batches_total", bh, float64(s.GapAcks.Load()), "result", "gap")
	w.Counter("edgesync_sink_batches_total", bh, float64(s.PausedAcks.Load()), "result", "paused")
	w.Counter("edgesync_sink_batches_total", bh, float64(s.Dropped()), "result", "dropped_queue_full")
	w.Counter("edgesync_sink_acks_sent_total", "Acknowledgements published.", float64(s.AcksSent.Load()))
	w.Counter("edgesync_sink_store_errors_total", "Transient store errors (the batch is retried).", float64(s.StoreErrors.Load()))
	s.ApplyLatency.Write(w, "edgesync_sink_apply_seconds", "Time to apply one batch (one transaction).")
}

// MetricsHandler serves the sink's /metrics.
func (s *Sink) MetricsHandler() http.Handler { return promtext.Handler(s.writeMetrics) }
