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
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgesync/edgesync/agent"
	"github.com/edgesync/edgesync/apply"
	"github.com/edgesync/edgesync/internal/broker"
	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/transport/wire"
)

func init() {
	register(command{name: "bench", summary: "the load and fault benchmark: real agent and sink processes, a broker, clients on the ingest API", run: runBench})
}

type benchOpts struct {
	bin        string
	dir        string
	brokerMode string // mosquitto | embedded
	clients    int
	perRequest int
	duration   time.Duration
	steadyRate int
	steadyFor  time.Duration
	faults     bool
	durability string
	asJSON     bool
	ceilingFor time.Duration
	batchRecs  int
	batchBytes string
	inflight   int
	agentBin   string
}

// BenchReport is what `edgesync bench --json` prints.
type BenchReport struct {
	Broker      string      `json:"broker"`
	Durability  string      `json:"durability"`
	Clients     int         `json:"clients"`
	PerRequest  int         `json:"records_per_request"`
	SinkCeiling float64     `json:"sink_apply_records_per_sec"`
	FullLoad    *BenchPhase `json:"full_load,omitempty"`
	Steady      *BenchPhase `json:"steady,omitempty"`
	Faults      *BenchPhase `json:"faults,omitempty"`
	OK          bool        `json:"ok"`
	Problems    []string    `json:"problems,omitempty"`
}

// BenchPhase is one phase's result.
type BenchPhase struct {
	Name            string                        `json:"name"`
	Accepted        int64                         `json:"accepted_records"`
	Seconds         float64                       `json:"seconds"`
	IngestPerSec    float64                       `json:"ingest_records_per_sec"`
	EndToEndPerSec  float64                       `json:"end_to_end_records_per_sec"` // accepted / time until all acknowledged
	Latency         map[string]agent.LatencyStats `json:"latency"`
	InSink          int64                         `json:"in_sink"`
	DistinctInSink  int64                         `json:"distinct_in_sink"`
	Resent          uint64                        `json:"batches_resent"`
	Sent            uint64                        `json:"batches_sent"`
	RecoverySeconds float64                       `json:"recovery_seconds,omitempty"`
	AgentRSSKiB     int64                         `json:"agent_max_rss_kib,omitempty"`
}

func runBench(args []string) int {
	fs := newFlags("bench", "the load and fault benchmark: starts a broker, `edgesync sink` (SQLite) and `edgesync agent` (fsync outbox) as processes, drives the ingest API with several clients, and reports throughput and latency per stage",
		"bench [--clients 4] [--duration 20s] [--steady-rate 1000] [--steady-for 20s] [--faults] [--json]")
	o := benchOpts{}
	fs.StringVar(&o.bin, "bin", "", "the edgesync binary to run as agent and sink (default: this one)")
	fs.StringVar(&o.dir, "dir", "", "working directory (default: a temporary directory, removed at the end)")
	fs.StringVar(&o.brokerMode, "broker", "auto", "mosquitto (needs /usr/sbin/mosquitto), embedded, or auto (mosquitto when installed)")
	fs.IntVar(&o.clients, "clients", 4, "concurrent HTTP clients in the full-load phase")
	fs.IntVar(&o.perRequest, "per-request", 100, "records per ingest request")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "full-load phase length (0 skips it)")
	fs.IntVar(&o.steadyRate, "steady-rate", 1000, "records/s in the steady phase")
	fs.DurationVar(&o.steadyFor, "steady-for", 20*time.Second, "steady phase length (0 skips it)")
	fs.BoolVar(&o.faults, "faults", true, "a fault phase: kill -9 the agent and restart the broker under steady load, then check exactly once")
	fs.StringVar(&o.durability, "durability", "fsync", "outbox.durability of the agent: fsync or spill")
	fs.DurationVar(&o.ceilingFor, "ceiling-for", 15*time.Second, "how long to measure the sink's own apply rate on the same store, in three rounds (0 skips it)")
	fs.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	fs.StringVar(&o.agentBin, "agent-bin", "", "run the agent from this binary (for example the nosink build a gateway runs); default --bin")
	fs.IntVar(&o.batchRecs, "batch-records", 1000, "the agent's batch.max_records")
	fs.StringVar(&o.batchBytes, "batch-bytes", "256KiB", "the agent's batch.max_bytes")
	fs.IntVar(&o.inflight, "inflight", 8, "the agent's uplink.max_inflight")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if o.clients < 1 || o.perRequest < 1 || o.steadyRate < 1 {
		fmt.Fprintln(os.Stderr, "edgesync bench: --clients, --per-request and --steady-rate must be at least 1")
		return exitUsage
	}
	if o.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return exitFor(err)
		}
		o.bin = exe
	}
	if o.agentBin == "" {
		o.agentBin = o.bin
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "edgesync-bench-")
		if err != nil {
			return exitFor(err)
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	ctx, stop := signalContext()
	defer stop()
	rep, err := benchRun(ctx, o)
	if err != nil {
		return exitFor(err)
	}
	if o.asJSON {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Println(string(b))
	} else {
		printBench(os.Stdout, rep)
	}
	if !rep.OK {
		return exitFailure
	}
	return exitOK
}

// benchEnv holds the processes of one run.
type benchEnv struct {
	o         benchOpts
	brokerURL string
	stopBroker,
	startBroker func() error
	agentCfg, sinkCfg, db, ingest string
	agent, sink                   *exec.Cmd
	logs                          *os.File
}

func benchRun(ctx context.Context, o benchOpts) (*BenchReport, error) {
	env := &benchEnv{o: o}
	logs, err := os.Create(filepath.Join(o.dir, "bench.log"))
	if err != nil {
		return nil, err
	}
	defer logs.Close()
	env.logs = logs
	if err := env.startBrokerFor(); err != nil {
		return nil, err
	}
	defer func() { _ = env.stopBroker() }()
	rep := &BenchReport{Broker: o.brokerMode, Durability: o.durability, Clients: o.clients, PerRequest: o.perRequest, OK: true}
	if o.ceilingFor > 0 {
		// Three rounds on fresh databases, the median: one round is at the
		// mercy of a checkpoint or another process's burst.
		var rounds []float64
		for i := 0; i < 3; i++ {
			c, err := sinkCeiling(ctx, filepath.Join(o.dir, fmt.Sprintf("ceiling%d.db", i)), o.ceilingFor/3, o.perRequest)
			if err != nil {
				return nil, fmt.Errorf("sink ceiling: %w", err)
			}
			rounds = append(rounds, c)
		}
		sort.Float64s(rounds)
		rep.SinkCeiling = rounds[1]
	}
	phase := 0
	run := func(name string, f func(p *BenchPhase) error) (*BenchPhase, error) {
		phase++
		if err := env.startProcesses(phase); err != nil {
			return nil, err
		}
		defer env.stopProcesses()
		p := &BenchPhase{Name: name}
		if err := f(p); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := env.finish(ctx, p); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if p.InSink != p.Accepted || p.DistinctInSink != p.Accepted {
			rep.OK = false
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %d records accepted, %d rows in the sink (%d distinct ids)",
				name, p.Accepted, p.InSink, p.DistinctInSink))
		}
		return p, nil
	}
	if o.duration > 0 {
		if rep.FullLoad, err = run("full load", func(p *BenchPhase) error {
			return env.load(ctx, p, o.clients, 0, o.duration, nil)
		}); err != nil {
			return nil, err
		}
	}
	if o.steadyFor > 0 {
		if rep.Steady, err = run(fmt.Sprintf("steady %d records/s", o.steadyRate), func(p *BenchPhase) error {
			return env.load(ctx, p, 2, o.steadyRate, o.steadyFor, nil)
		}); err != nil {
			return nil, err
		}
	}
	if o.faults {
		if rep.Faults, err = run("faults (kill -9 agent, broker restart)", func(p *BenchPhase) error {
			d := max(o.steadyFor, 10*time.Second)
			return env.load(ctx, p, 2, o.steadyRate, d, func(elapsed time.Duration) {
				switch {
				case elapsed >= d/3 && elapsed < d/3+200*time.Millisecond:
					env.killAgent()
				case elapsed >= 2*d/3 && elapsed < 2*d/3+200*time.Millisecond:
					_ = env.stopBroker()
					time.Sleep(time.Second)
					_ = env.startBroker()
				}
			})
		}); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	go func() {
		<-ch
		cancel()
	}()
	notifySignals(ch)
	return ctx, cancel
}

func (e *benchEnv) startBrokerFor() error {
	mode := e.o.brokerMode
	path, lookErr := exec.LookPath("mosquitto")
	if lookErr != nil {
		if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
			path, lookErr = "/usr/sbin/mosquitto", nil
		}
	}
	if mode == "auto" {
		mode = "embedded"
		if lookErr == nil {
			mode = "mosquitto"
		}
		e.o.brokerMode = mode
	}
	switch mode {
	case "embedded":
		var b *broker.Broker
		start := func(addr string) error {
			nb, err := broker.Start(addr)
			if err != nil {
				return err
			}
			b = nb
			return nil
		}
		if err := start("127.0.0.1:0"); err != nil {
			return err
		}
		addr := b.Addr()
		e.brokerURL = b.URL()
		e.stopBroker = func() error { return b.Close() }
		e.startBroker = func() error {
			var err error
			for i := 0; i < 50; i++ {
				if err = start(addr); err == nil {
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return err
		}
		return nil
	case "mosquitto":
		if lookErr != nil {
			return errors.New("bench: --broker mosquitto: mosquitto is not installed (apt-get install mosquitto)")
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		conf := filepath.Join(e.o.dir, "mosquitto.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 0\n", port)), 0o600); err != nil {
			return err
		}
		var cmd *exec.Cmd
		e.brokerURL = fmt.Sprintf("tcp://127.0.0.1:%d", port)
		e.startBroker = func() error {
			cmd = exec.Command(path, "-c", conf)
			cmd.Stdout, cmd.Stderr = e.logs, e.logs
			if err := cmd.Start(); err != nil {
				return err
			}
			return waitTCP(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
		}
		e.stopBroker = func() error {
			if cmd == nil || cmd.Process == nil {
				return nil
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			cmd = nil
			return nil
		}
		return e.startBroker()
	}
	return fmt.Errorf("bench: --broker: %q is not mosquitto, embedded or auto", mode)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitTCP(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s after %v", addr, d)
}

func (e *benchEnv) startProcesses(phase int) error {
	dir := filepath.Join(e.o.dir, fmt.Sprintf("phase%d", phase))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	e.ingest = fmt.Sprintf("127.0.0.1:%d", port)
	e.db = filepath.Join(dir, "sink.db")
	e.agentCfg = filepath.Join(dir, "agent.yaml")
	e.sinkCfg = filepath.Join(dir, "sink.yaml")
	if err := os.WriteFile(e.agentCfg, []byte(fmt.Sprintf(`device_id: bench-gw
data_dir: %s
broker:
  url: %s
  reconnect_min: 100ms
  reconnect_max: 1s
ingest:
  listen: %s
outbox:
  durability: %s
batch:
  max_records: %d
  max_bytes: %s
uplink:
  ack_timeout: 5s
  max_inflight: %d
`, filepath.Join(dir, "agent"), e.brokerURL, e.ingest, e.o.durability, e.o.batchRecs, e.o.batchBytes, e.o.inflight)), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(e.sinkCfg, []byte(fmt.Sprintf("sink_id: bench-sink\nbroker:\n  url: %s\n  reconnect_min: 100ms\nstore:\n  url: sqlite://%s\n",
		e.brokerURL, e.db)), 0o600); err != nil {
		return err
	}
	e.sink = exec.Command(e.o.bin, "sink", "--config", e.sinkCfg)
	e.sink.Stdout, e.sink.Stderr = e.logs, e.logs
	if err := e.sink.Start(); err != nil {
		return err
	}
	return e.startAgent()
}

func (e *benchEnv) startAgent() error {
	e.agent = exec.Command(e.o.agentBin, "agent", "--config", e.agentCfg)
	e.agent.Stdout, e.agent.Stderr = e.logs, e.logs
	if err := e.agent.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + e.ingest + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the agent did not come up (see bench.log)")
}

func (e *benchEnv) killAgent() {
	if e.agent != nil && e.agent.Process != nil {
		_ = e.agent.Process.Signal(syscall.SIGKILL)
		_ = e.agent.Wait()
	}
	_ = e.startAgent()
}

func (e *benchEnv) stopProcesses() {
	for _, c := range []*exec.Cmd{e.agent, e.sink} {
		if c != nil && c.Process != nil {
			_ = c.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = c.Process.Kill()
				<-done
			}
		}
	}
}

// load runs clients; rate 0 means as fast as they can.
func (e *benchEnv) load(ctx context.Context, p *BenchPhase, clients, rate int, d time.Duration, tick func(time.Duration)) error {
	var accepted atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	perClient := 0.0
	if rate > 0 {
		perClient = float64(rate) / float64(clients)
	}
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			var body []byte
			sent := 0
			for seq := 0; time.Since(start) < d && ctx.Err() == nil; {
				// Built with appends, not fmt: the generator shares the
				// machine with agent, broker and sink and must cost little.
				body = body[:0]
				for i := 0; i < e.o.perRequest; i++ {
					body = appendBenchRecord(body, c, seq+i)
				}
				resp, err := client.Post("http://"+e.ingest+"/v1/records", "application/x-ndjson", bytes.NewReader(body))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						accepted.Add(int64(e.o.perRequest))
						seq += e.o.perRequest
						sent += e.o.perRequest
					} else {
						time.Sleep(50 * time.Millisecond)
					}
				} else {
					time.Sleep(50 * time.Millisecond) // the agent is restarting
				}
				if perClient > 0 {
					due := start.Add(time.Duration(float64(sent) / perClient * float64(time.Second)))
					if w := time.Until(due); w > 0 {
						time.Sleep(w)
					}
				}
			}
		}(c)
	}
	if tick != nil {
		go func() {
			for time.Since(start) < d && ctx.Err() == nil {
				tick(time.Since(start))
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	p.Accepted = accepted.Load()
	p.Seconds = time.Since(start).Seconds()
	p.IngestPerSec = float64(p.Accepted) / p.Seconds
	return ctx.Err()
}

// finish waits until the agent has everything acknowledged, then reads the
// latencies and checks the sink.
func (e *benchEnv) finish(ctx context.Context, p *BenchPhase) error {
	start := time.Now().Add(-time.Duration(p.Seconds * float64(time.Second)))
	deadline := time.Now().Add(120 * time.Second)
	var st agent.Status
	for {
		resp, err := http.Get("http://" + e.ingest + "/v1/status")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && st.Watermark >= st.Head && st.Outbox.Records == 0 {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not everything acknowledged within 120s (head %d, watermark %d)", st.Head, st.Watermark)
		}
		time.Sleep(20 * time.Millisecond)
	}
	total := time.Since(start).Seconds()
	p.EndToEndPerSec = float64(p.Accepted) / total
	p.RecoverySeconds = total - p.Seconds
	p.Latency = st.Latency
	p.Sent, p.Resent = st.Link.BatchesSent, st.Link.BatchesResent
	if pid := e.agent.Process.Pid; pid > 0 {
		p.AgentRSSKiB = maxRSS(pid)
	}
	db, err := sql.Open("sqlite", "file:"+e.db+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	// The sink commits before it acknowledges: everything acknowledged is there.
	return db.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT id) FROM edgesync_log WHERE device_id = 'bench-gw'`).
		Scan(&p.InSink, &p.DistinctInSink)
}

// maxRSS reads VmHWM (peak resident set) of a process, in KiB.
func maxRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// sinkCeiling measures the sink's own apply rate on the same kind of store:
// batches of 1,000 records like the agent sends, applied in one process.
func sinkCeiling(ctx context.Context, path string, d time.Duration, _ int) (float64, error) {
	store, err := apply.OpenStore(ctx, "sqlite://"+path, "")
	if err != nil {
		return 0, err
	}
	defer store.Close()
	policy := apply.DefaultPolicy()
	recs := make([]wire.Record, 1000)
	data := []byte(`{"t":21.5,"h":40.1,"unit":"C","site":"plant-3","line":1,"ok":true}`)
	cb, err := jsonToCBOR(data)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	var seq uint64
	n := 0
	for time.Since(start) < d {
		for i := range recs {
			seq++
			recs[i] = wire.Record{Seq: seq, Stream: "temps", Key: fmt.Sprintf("sensor-%d", seq%100), ID: fmt.Sprintf("x-%d", seq),
				Schema: "reading", SchemaVersion: 1, CapturedAt: time.Now().UnixNano(), Data: cb}
		}
		b := &wire.Batch{V: wire.Version, Device: "ceiling", Epoch: 1, First: recs[0].Seq, Last: seq, Acked: seq - 1000,
			SentAt: time.Now().UnixNano(), SendID: uint64(n + 1), Records: recs}
		if _, err := store.Apply(ctx, "ceiling", b, &policy); err != nil {
			return 0, err
		}
		n += len(recs)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func printBench(w io.Writer, r *BenchReport) {
	fmt.Fprintf(w, "edgesync bench: broker %s, outbox %s, %d clients × %d records per request\n", r.Broker, r.Durability, r.Clients, r.PerRequest)
	if r.SinkCeiling > 0 {
		fmt.Fprintf(w, "sink's own apply rate on SQLite (1,000-record batches): %.0f records/s\n", r.SinkCeiling)
	}
	for _, p := range []*BenchPhase{r.FullLoad, r.Steady, r.Faults} {
		if p == nil {
			continue
		}
		fmt.Fprintf(w, "\n%s: %d records in %.1fs\n", p.Name, p.Accepted, p.Seconds)
		fmt.Fprintf(w, "  ingest %.0f records/s, end to end %.0f records/s (all acknowledged %.1fs after the load stopped)\n",
			p.IngestPerSec, p.EndToEndPerSec, p.RecoverySeconds)
		if r.SinkCeiling > 0 {
			fmt.Fprintf(w, "  end to end is %.0f%% of the sink's own apply rate\n", 100*p.EndToEndPerSec/r.SinkCeiling)
		}
		fmt.Fprintf(w, "  batches sent %d, resent %d; agent peak RSS %.1f MiB\n", p.Sent, p.Resent, float64(p.AgentRSSKiB)/1024)
		fmt.Fprintf(w, "  %-20s %9s %9s %9s\n", "latency", "p50", "p95", "p99")
		for _, k := range []string{"capture_to_durable", "durable_to_puback", "puback_to_ack", "capture_to_ack"} {
			l := p.Latency[k]
			fmt.Fprintf(w, "  %-20s %7.1fms %7.1fms %7.1fms\n", k, l.P50, l.P95, l.P99)
		}
		fmt.Fprintf(w, "  sink: %d rows, %d distinct ids\n", p.InSink, p.DistinctInSink)
	}
	if r.OK {
		fmt.Fprintln(w, "\nOK: every accepted record is in the sink exactly once")
	} else {
		fmt.Fprintln(w, "\nFAILED:")
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
}

func notifySignals(ch chan os.Signal) { signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM) }

func jsonToCBOR(b []byte) ([]byte, error) { return jsoncbor.FromJSON(nil, b) }

// appendBenchRecord appends one ~200-byte sensor record as an NDJSON line.
func appendBenchRecord(b []byte, client, n int) []byte {
	b = append(b, `{"stream":"temps","key":"sensor-`...)
	b = strconv.AppendInt(b, int64(n%100), 10)
	b = append(b, `","id":"c`...)
	b = strconv.AppendInt(b, int64(client), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `","schema":"reading@1","data":{"t":`...)
	b = strconv.AppendInt(b, int64(15+n%20), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(n%10), 10)
	b = append(b, `,"h":`...)
	b = strconv.AppendInt(b, int64(30+n%40), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(n%7), 10)
	b = append(b, `,"unit":"C","site":"plant-3","line":`...)
	b = strconv.AppendInt(b, int64(client), 10)
	return append(b, ",\"ok\":true}}\n"...)
}
