package agent

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgesync/edgesync/capture"
	"github.com/edgesync/edgesync/internal/version"

	"net/http"
)

// The agent's metrics; names and meanings are listed in docs/OPERATIONS.md.
var (
	mDepth        = prometheus.NewDesc("edgesync_outbox_depth_records", "Records in the outbox not yet acknowledged by the sink.", nil, nil)
	mDepthBytes   = prometheus.NewDesc("edgesync_outbox_depth_bytes", "Bytes of the records not yet acknowledged.", nil, nil)
	mUsedBytes    = prometheus.NewDesc("edgesync_outbox_used_bytes", "Bytes held by the outbox, including acknowledged records retained for retain_acked.", nil, nil)
	mMaxBytes     = prometheus.NewDesc("edgesync_outbox_max_bytes", "The outbox's bound (outbox.max_bytes).", nil, nil)
	mOldestAge    = prometheus.NewDesc("edgesync_outbox_oldest_age_seconds", "Age of the oldest unacknowledged record (monotonic clock): the staleness at the sink.", nil, nil)
	mAppended     = prometheus.NewDesc("edgesync_outbox_appended_records_total", "Records appended to the outbox by this process.", nil, nil)
	mAcked        = prometheus.NewDesc("edgesync_outbox_acked_records_total", "Records acknowledged by the sink in this process.", nil, nil)
	mDropped      = prometheus.NewDesc("edgesync_outbox_dropped_records_total", "Records dropped (drop_oldest, or lost in a crash in spill mode) in the outbox's life.", nil, nil)
	mDiskWritten  = prometheus.NewDesc("edgesync_outbox_disk_written_bytes_total", "Bytes Pebble wrote to disk in this process (WAL, flushes, compactions): flash wear.", nil, nil)
	mDiskLow      = prometheus.NewDesc("edgesync_outbox_disk_low", "1 when free disk space is below outbox.min_free_disk.", nil, nil)
	mEpochs       = prometheus.NewDesc("edgesync_outbox_epochs", "Epochs the outbox has had (a new one after corruption or a restored disk).", nil, nil)
	mSent         = prometheus.NewDesc("edgesync_uplink_batches_sent_total", "Batches published, first sends and resends.", nil, nil)
	mResent       = prometheus.NewDesc("edgesync_uplink_batches_resent_total", "Batches published again.", nil, nil)
	mResends      = prometheus.NewDesc("edgesync_uplink_resends_total", "Times the uplink went back to the watermark (ack timeout, gap, reconnect).", nil, nil)
	mRecordsSent  = prometheus.NewDesc("edgesync_uplink_records_sent_total", "Records published (with resends).", nil, nil)
	mWireBytes    = prometheus.NewDesc("edgesync_uplink_wire_bytes_total", "Payload bytes published.", nil, nil)
	mInflight     = prometheus.NewDesc("edgesync_uplink_inflight_batches", "Batches published and not yet acknowledged.", nil, nil)
	mRateWait     = prometheus.NewDesc("edgesync_uplink_rate_limit_wait_seconds_total", "Time batches waited on uplink.rate_bytes.", nil, nil)
	mAcks         = prometheus.NewDesc("edgesync_uplink_acks_total", "Acknowledgements received, by what they did.", []string{"result"}, nil)
	mParked       = prometheus.NewDesc("edgesync_uplink_parked_records_total", "Records the sink reported parked (unknown schema).", nil, nil)
	mPaused       = prometheus.NewDesc("edgesync_uplink_paused", "1 while the sink holds this device for an unknown schema.", nil, nil)
	mConnected    = prometheus.NewDesc("edgesync_mqtt_connected", "1 while connected to the broker.", nil, nil)
	mReconnects   = prometheus.NewDesc("edgesync_mqtt_reconnects_total", "Successful reconnections to the broker.", nil, nil)
	mAttempts     = prometheus.NewDesc("edgesync_mqtt_connect_attempts_total", "Connection attempts.", nil, nil)
	mLatency      = prometheus.NewDesc("edgesync_latency_seconds", "Latency per stage: capture_to_durable, durable_to_puback, puback_to_ack, capture_to_ack.", []string{"stage"}, nil)
	mIngestReq    = prometheus.NewDesc("edgesync_ingest_requests_total", "HTTP ingest requests.", nil, nil)
	mIngestRec    = prometheus.NewDesc("edgesync_ingest_records_total", "Records accepted by the HTTP ingest API.", nil, nil)
	mIngestReject = prometheus.NewDesc("edgesync_ingest_rejected_total", "HTTP ingest requests refused, by reason.", []string{"reason"}, nil)
	mConfigVer    = prometheus.NewDesc("edgesync_config_version", "Version of the remote configuration applied; 0 when only the local file.", nil, nil)
	mInfo         = prometheus.NewDesc("edgesync_info", "Constant 1, labelled with the version, device and epoch.", []string{"version", "device_id", "epoch"}, nil)
)

type collector struct{ a *Agent }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mDepth, mDepthBytes, mUsedBytes, mMaxBytes, mOldestAge, mAppended, mAcked,
		mDropped, mDiskWritten, mDiskLow, mEpochs, mSent, mResent, mResends, mRecordsSent, mWireBytes, mInflight,
		mRateWait, mAcks, mParked, mPaused, mConnected, mReconnects, mAttempts, mLatency, mIngestReq, mIngestRec,
		mIngestReject, mConfigVer, mInfo} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	st := a.ob.Stats()
	m := a.up.Metrics()
	cs := a.conn.Stats()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	ct := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	g(mDepth, float64(st.Depth))
	g(mDepthBytes, float64(st.DepthBytes))
	g(mUsedBytes, float64(st.UsedBytes))
	g(mMaxBytes, float64(st.MaxBytes))
	g(mOldestAge, st.OldestAge.Seconds())
	ct(mAppended, float64(st.Appended))
	ct(mAcked, float64(st.Acked))
	ct(mDropped, float64(st.Dropped))
	ct(mDiskWritten, float64(st.DiskBytesWritten))
	g(mDiskLow, b2f(st.DiskLow))
	g(mEpochs, float64(st.Epochs))
	ct(mSent, float64(m.BatchesSent.Load()))
	ct(mResent, float64(m.BatchesResent.Load()))
	ct(mResends, float64(m.Resends.Load()))
	ct(mRecordsSent, float64(m.RecordsSent.Load()))
	ct(mWireBytes, float64(m.BytesSent.Load()))
	g(mInflight, float64(m.Inflight.Load()))
	ct(mRateWait, float64(m.RateWaitNs.Load())/1e9)
	ct(mAcks, float64(m.AcksApplied.Load()), "applied")
	ct(mAcks, float64(m.AcksDuplicate.Load()), "duplicate")
	ct(mAcks, float64(m.AcksStale.Load()), "stale_epoch")
	ct(mAcks, float64(m.AcksForeign.Load()), "foreign_device")
	ct(mAcks, float64(m.AcksInvalid.Load()), "invalid")
	ct(mAcks, float64(m.AcksGap.Load()), "gap")
	ct(mAcks, float64(m.AcksPaused.Load()), "paused")
	ct(mParked, float64(m.Parked.Load()))
	g(mPaused, b2f(m.Paused.Load()))
	g(mConnected, b2f(cs.Up))
	ct(mReconnects, float64(cs.Reconnects))
	ct(mAttempts, float64(cs.Attempts))
	ch <- a.capture.CaptureToDurable.Metric(mLatency, "capture_to_durable")
	ch <- m.DurableToPuback.Metric(mLatency, "durable_to_puback")
	ch <- m.PubackToAck.Metric(mLatency, "puback_to_ack")
	ch <- m.CaptureToAck.Metric(mLatency, "capture_to_ack")
	ct(mIngestReq, float64(a.capture.Requests.Load()))
	ct(mIngestRec, float64(a.capture.Accepted.Load()))
	for _, reason := range capture.Reasons {
		ct(mIngestReject, float64(a.capture.Rejected(reason)), reason)
	}
	g(mConfigVer, float64(a.ConfigVersion()))
	g(mInfo, 1, version.Version, a.cfg.DeviceID, strconv.FormatUint(uint64(st.Epoch), 10))
}

// metricsHandler serves /metrics: the agent's metrics plus Go runtime and
// process metrics (RSS, open files).
func (a *Agent) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{a}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
