package apply

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	sApplied    = prometheus.NewDesc("edgesync_sink_applied_records_total", "Records applied, per device.", []string{"device_id"}, nil)
	sDuplicates = prometheus.NewDesc("edgesync_sink_duplicate_records_total", "Records skipped as already applied, per device.", []string{"device_id"}, nil)
	sLost       = prometheus.NewDesc("edgesync_sink_lost_records_total", "Sequence numbers given up (dropped on the device, or trimmed before the sink had them), per device.", []string{"device_id"}, nil)
	sParked     = prometheus.NewDesc("edgesync_sink_parked_records_total", "Records parked for an unknown schema, per device.", []string{"device_id"}, nil)
	sLastSeen   = prometheus.NewDesc("edgesync_sink_last_seen_timestamp_seconds", "When the device's last batch was applied (unix time).", []string{"device_id"}, nil)
	sLag        = prometheus.NewDesc("edgesync_sink_lag_seconds", "Now minus the capture time of the newest record applied for the device.", []string{"device_id"}, nil)
	sWatermark  = prometheus.NewDesc("edgesync_sink_applied_through", "The device's watermark in its current epoch.", []string{"device_id"}, nil)
	sPaused     = prometheus.NewDesc("edgesync_sink_device_paused", "1 while the device is held for an unknown schema.", []string{"device_id"}, nil)
	sBatches    = prometheus.NewDesc("edgesync_sink_batches_total", "Batches by outcome.", []string{"result"}, nil)
	sAcks       = prometheus.NewDesc("edgesync_sink_acks_sent_total", "Acknowledgements published.", nil, nil)
	sStoreErr   = prometheus.NewDesc("edgesync_sink_store_errors_total", "Transient store errors (the batch is retried).", nil, nil)
	sApplyLat   = prometheus.NewDesc("edgesync_sink_apply_seconds", "Time to apply one batch (one transaction).", nil, nil)
)

type sinkCollector struct{ s *Sink }

func (c sinkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sApplied, sDuplicates, sLost, sParked, sLastSeen, sLag, sWatermark, sPaused,
		sBatches, sAcks, sStoreErr, sApplyLat} {
		ch <- d
	}
}

func (c sinkCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	now := time.Now()
	for dev, d := range s.Devices() {
		ch <- prometheus.MustNewConstMetric(sApplied, prometheus.CounterValue, float64(d.Applied.Load()), dev)
		ch <- prometheus.MustNewConstMetric(sDuplicates, prometheus.CounterValue, float64(d.Duplicates.Load()), dev)
		ch <- prometheus.MustNewConstMetric(sLost, prometheus.CounterValue, float64(d.Lost.Load()), dev)
		ch <- prometheus.MustNewConstMetric(sParked, prometheus.CounterValue, float64(d.Parked.Load()), dev)
		ch <- prometheus.MustNewConstMetric(sLastSeen, prometheus.GaugeValue, float64(d.LastSeen.Load())/1e9, dev)
		if nc := d.NewestCaptured.Load(); nc != 0 {
			ch <- prometheus.MustNewConstMetric(sLag, prometheus.GaugeValue, now.Sub(time.Unix(0, nc)).Seconds(), dev)
		}
		ch <- prometheus.MustNewConstMetric(sWatermark, prometheus.GaugeValue, float64(d.Watermark.Load()), dev)
		p := 0.0
		if d.Paused.Load() {
			p = 1
		}
		ch <- prometheus.MustNewConstMetric(sPaused, prometheus.GaugeValue, p, dev)
	}
	ch <- prometheus.MustNewConstMetric(sBatches, prometheus.CounterValue, float64(s.Batches.Load()), "applied")
	ch <- prometheus.MustNewConstMetric(sBatches, prometheus.CounterValue, float64(s.Undecodable.Load()), "undecodable")
	ch <- prometheus.MustNewConstMetric(sBatches, prometheus.CounterValue, float64(s.Refused.Load()), "refused")
	ch <- prometheus.MustNewConstMetric(sBatches, prometheus.CounterValue, float64(s.GapAcks.Load()), "gap")
	ch <- prometheus.MustNewConstMetric(sBatches, prometheus.CounterValue, float64(s.PausedAcks.Load()), "paused")
	ch <- prometheus.MustNewConstMetric(sBatches, prometheus.CounterValue, float64(s.Dropped()), "dropped_queue_full")
	ch <- prometheus.MustNewConstMetric(sAcks, prometheus.CounterValue, float64(s.AcksSent.Load()))
	ch <- prometheus.MustNewConstMetric(sStoreErr, prometheus.CounterValue, float64(s.StoreErrors.Load()))
	ch <- s.ApplyLatency.Metric(sApplyLat)
}

// MetricsHandler serves the sink's /metrics.
func (s *Sink) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(sinkCollector{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
