//go:build !nosink

package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgesync/edgesync/agent"
	"github.com/edgesync/edgesync/apply"
	"github.com/edgesync/edgesync/internal/broker"
	"github.com/edgesync/edgesync/internal/mqttx"
)

func init() {
	register(command{name: "demo", summary: "the one-command tour: broker, agent, sink (SQLite) and a record generator in one process", run: runDemo})
}

func runDemo(args []string) int {
	fs := newFlags("demo", "the one-command tour: an embedded MQTT broker, an agent, a sink on SQLite and a record generator in one process",
		"demo [--records N] [--rate R] [--dir DIR]")
	records := fs.Int("records", 20000, "records to generate")
	ratePerSec := fs.Int("rate", 2000, "records per second (0: as fast as the agent takes them)")
	dir := fs.String("dir", "", "working directory (default: a temporary directory, removed at the end)")
	restart := fs.Bool("restart-broker", true, "restart the broker halfway, to show that nothing is lost or applied twice")
	quiet := fs.Bool("quiet", false, "no live progress line")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *records < 1 {
		fmt.Fprintln(os.Stderr, "edgesync demo: --records must be at least 1")
		return exitUsage
	}
	if *ratePerSec < 0 {
		fmt.Fprintln(os.Stderr, "edgesync demo: --rate must be >= 0")
		return exitUsage
	}
	work := *dir
	if work != "" {
		// --dir names where to keep the demo's files: made when missing.
		if err := os.MkdirAll(work, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "edgesync demo: --dir:", err)
			return exitUsage
		}
	} else {
		d, err := os.MkdirTemp("", "edgesync-demo-")
		if err != nil {
			return exitFor(err)
		}
		defer os.RemoveAll(d)
		work = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d := &demo{records: *records, rate: *ratePerSec, dir: work, restartBroker: *restart, quiet: *quiet}
	if err := d.run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "\nedgesync demo: FAILED:", err)
		return exitFailure
	}
	return exitOK
}

type demo struct {
	records, rate int
	dir           string
	restartBroker bool
	quiet         bool

	generated atomic.Int64
	durable   atomic.Int64
}

const demoDevice = "demo-gw-1"

func (d *demo) run(ctx context.Context) error {
	start := time.Now()
	// Logs go to a file: the terminal shows the progress line.
	logFile, err := os.Create(filepath.Join(d.dir, "demo.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	b, err := broker.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	// The broker restarted halfway replaces b; bmu guards it.
	var bmu sync.Mutex
	defer func() { bmu.Lock(); _ = b.Close(); bmu.Unlock() }()

	// The sink, on SQLite.
	dbPath := filepath.Join(d.dir, "sink.db")
	scfg := &apply.SinkConfig{SinkID: "demo-sink", Broker: mqttx.BrokerConfig{URL: b.URL()}, Store: apply.DefaultStoreConfig()}
	scfg.Store.URL = "sqlite://" + dbPath
	scfg.EnsureDefaults()
	scfg.Broker.ReconnectMin, scfg.Broker.ReconnectMax = 100*time.Millisecond, time.Second
	if err := scfg.Validate(); err != nil {
		return err
	}
	store, err := scfg.Store.Open(ctx)
	if err != nil {
		return fmt.Errorf("sink store: %w", err)
	}
	defer store.Close()
	sink := apply.NewSink(scfg, store, log.With("component", "sink"))

	// The agent, with its HTTP ingest API on a free port.
	acfg, err := agent.Parse([]byte(fmt.Sprintf(`
device_id: %s
data_dir: %s
broker:
  url: %s
  reconnect_min: 100ms
  reconnect_max: 1s
ingest:
  listen: 127.0.0.1:0
uplink:
  ack_timeout: 2s
`, demoDevice, filepath.Join(d.dir, "agent"), b.URL())))
	if err != nil {
		return err
	}
	ag := agent.New(acfg, log.With("component", "agent"), nil)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- sink.Run(runCtx) }()
	go func() { defer wg.Done(); errs <- ag.Run(runCtx) }()
	defer func() { cancel(); wg.Wait() }()
	select {
	case <-ag.Ready():
	case err := <-errs:
		return fmt.Errorf("start: %w", err)
	case <-time.After(30 * time.Second):
		return errors.New("the agent did not start in 30s")
	}
	url := "http://" + ag.IngestAddr() + "/v1/records"

	fmt.Printf("edgesync demo: %d records at %s into an agent (fsync outbox), over MQTT to a sink on SQLite\n", d.records, rateText(d.rate))
	fmt.Printf("  broker %s, agent ingest %s, sink db %s\n", b.URL(), url, dbPath)
	if d.restartBroker {
		fmt.Println("  the broker restarts halfway: watch the link go down and every record still arrive once")
	}

	// Progress line.
	progDone, progExited := make(chan struct{}), make(chan struct{})
	go func() { d.progress(ag, sink, progDone); close(progExited) }()
	// stopProgress prints the last progress line and returns once it is out,
	// so that nothing is printed after what follows.
	stopProgress := func() { close(progDone); <-progExited }

	genErr := make(chan error, 1)
	go func() { genErr <- d.generate(runCtx, url) }()
	if d.restartBroker {
		go func() {
			for d.generated.Load() < int64(d.records/2) {
				select {
				case <-runCtx.Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			bmu.Lock()
			addr := b.Addr()
			_ = b.Close()
			bmu.Unlock()
			time.Sleep(time.Second)
			// The port may be taken for a moment (a client's outgoing
			// connection): try again for a while.
			for i := 0; i < 50 && runCtx.Err() == nil; i++ {
				nb, err := broker.Start(addr)
				if err == nil {
					bmu.Lock()
					b = nb
					bmu.Unlock()
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	if err := <-genErr; err != nil {
		stopProgress()
		return err
	}
	// Wait until the sink acknowledged everything.
	deadline := time.Now().Add(60 * time.Second)
	for {
		pos := ag.Outbox().Position()
		if pos.Watermark >= pos.Head {
			break
		}
		if time.Now().After(deadline) {
			stopProgress()
			return fmt.Errorf("not everything was acknowledged within 60s: head %d, watermark %d", pos.Head, pos.Watermark)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopProgress()
	elapsed := time.Since(start)
	st := ag.Status()

	// Check with a query of the sink database: every generated record exactly once.
	rows, distinct, err := countApplied(ctx, dbPath)
	if err != nil {
		return err
	}
	fmt.Printf("\n\nsummary\n")
	fmt.Printf("  generated %d, accepted %d, applied rows %d, distinct ids %d\n", d.generated.Load(), d.durable.Load(), rows, distinct)
	fmt.Printf("  %d records in %s: %.0f records/s end to end\n", d.records, elapsed.Round(10*time.Millisecond), float64(d.records)/elapsed.Seconds())
	fmt.Printf("  link: %d reconnects, %d batches sent, %d resent\n", st.Link.Reconnects, st.Link.BatchesSent, st.Link.BatchesResent)
	m := ag.Uplink().Metrics()
	if n := m.RecordsSent.Load(); n > 0 {
		fmt.Printf("  wire: %.1f bytes per record (CBOR + zstd batches)\n", float64(m.BytesSent.Load())/float64(n))
	}
	fmt.Printf("  latency      p50       p95       p99\n")
	for _, k := range []string{"capture_to_durable", "durable_to_puback", "puback_to_ack", "capture_to_ack"} {
		l := st.Latency[k]
		fmt.Printf("  %-20s %7.1fms %7.1fms %7.1fms\n", k, l.P50, l.P95, l.P99)
	}
	if rows != int64(d.records) || distinct != int64(d.records) || d.durable.Load() != int64(d.records) {
		return fmt.Errorf("the sink holds %d rows (%d distinct ids) for %d generated records", rows, distinct, d.records)
	}
	fmt.Printf("  OK: every generated record was applied exactly once\n")
	return nil
}

func rateText(r int) string {
	if r == 0 {
		return "full speed"
	}
	return fmt.Sprintf("%d records/s", r)
}

// generate posts the records in 100-record NDJSON requests, at the rate,
// retrying a request until it is accepted (the record ids make retries safe).
func (d *demo) generate(ctx context.Context, url string) error {
	client := &http.Client{Timeout: 30 * time.Second}
	const per = 100
	start := time.Now()
	var body bytes.Buffer
	for i := 0; i < d.records; i += per {
		n := min(per, d.records-i)
		body.Reset()
		for j := i; j < i+n; j++ {
			fmt.Fprintf(&body, `{"stream":"temps","key":"sensor-%d","id":"demo-%d","schema":"reading@1","data":{"t":%.1f,"h":%.1f,"unit":"C","site":"plant-3"}}`+"\n",
				j%50, j, 15+float64(j%200)/10, 30+float64(j%400)/10)
		}
		payload := append([]byte(nil), body.Bytes()...)
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
			req.Header.Set("Content-Type", "application/x-ndjson")
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if attempt > 100 {
				return fmt.Errorf("ingest request refused: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		d.generated.Add(int64(n))
		d.durable.Add(int64(n))
		if d.rate > 0 {
			// Pace: i+n records should take (i+n)/rate seconds.
			due := start.Add(time.Duration(float64(i+n) / float64(d.rate) * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
		}
	}
	return nil
}

func (d *demo) progress(ag *agent.Agent, sink *apply.Sink, done chan struct{}) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-done:
			d.printProgress(ag, sink, start)
			return
		case <-t.C:
			if !d.quiet {
				d.printProgress(ag, sink, start)
			}
		}
	}
}

func (d *demo) printProgress(ag *agent.Agent, sink *apply.Sink, start time.Time) {
	pos := ag.Outbox().Position()
	var applied uint64
	for _, m := range sink.Devices() {
		applied += m.Applied.Load()
	}
	m := ag.Uplink().Metrics()
	link := "up  "
	if !ag.LinkUp() {
		link = "DOWN"
	}
	p99 := m.CaptureToAck.Quantile(0.99)
	fmt.Printf("\r  generated %6d  durable %6d  acknowledged %6d  applied %6d  link %s  %6.0f rec/s  p99 %6.1fms ",
		d.generated.Load(), pos.Head, pos.Watermark, applied, link,
		float64(pos.Watermark)/time.Since(start).Seconds(), float64(p99.Microseconds())/1000)
}

// countApplied queries the sink database: rows and distinct ids for the demo device.
func countApplied(ctx context.Context, dbPath string) (rows, distinct int64, err error) {
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	err = db.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT id) FROM edgesync_log WHERE device_id = ?`, demoDevice).Scan(&rows, &distinct)
	if err != nil {
		return 0, 0, fmt.Errorf("query the sink database: %w", err)
	}
	return rows, distinct, nil
}

var _ = json.Marshal
