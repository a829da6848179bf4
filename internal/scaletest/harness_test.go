package scaletest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edgesync/edgesync/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// proc is an edgesync process started by a test. It dies with the test
// binary (parent-death signal) and is killed when the test ends.
type proc struct {
	t       *testing.T
	bin     string
	args    []string
	logPath string

	mu  sync.Mutex
	cmd *exec.Cmd
}

func startProc(t *testing.T, bin, logPath string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, bin: bin, args: args, logPath: logPath}
	p.start()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("log of edgesync %s (tail):\n%s", strings.Join(args, " "), b)
		}
	})
	return p
}

// start starts the process; its output is appended to its log.
func (p *proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close() // the child holds its own descriptor
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
}

// kill sends SIGKILL and reaps the process; a no-op when it is not running.
func (p *proc) kill() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

// pid is the process id, 0 when it is not running.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// clockTicks is USER_HZ, the unit of CPU times in /proc: 100 on every Linux
// the tests run on.
const clockTicks = 100

// cpuSeconds is the user and system CPU time of process pid (0: none), with
// children it reaped when children is set.
func cpuSeconds(pid int, children bool) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
	if len(f) < 15 {
		return 0
	}
	var ticks float64
	n := 2
	if children {
		n = 4
	}
	for _, v := range f[11 : 11+n] {
		x, _ := strconv.ParseFloat(v, 64)
		ticks += x
	}
	return ticks / clockTicks
}

// treeCPUSeconds is the CPU time of pid, of its living children and of the
// children it reaped: for PostgreSQL, the postmaster and every backend.
func treeCPUSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	total := cpuSeconds(pid, true)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			total += cpuSeconds(child, false)
		}
	}
	return total
}

// findProcess returns the pid of a process whose program's base name is
// name and whose command line (NUL-separated) holds arg; 0 when none.
func findProcess(name, arg string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		argv0, _, _ := bytes.Cut(b, []byte{0})
		if filepath.Base(string(argv0)) == name && bytes.Contains(append(b, 0), []byte(arg)) {
			return pid
		}
	}
	return 0
}

// sinkSettings are the sink configuration keys the tests vary; zero values
// leave the key out (the sink's default).
type sinkSettings struct {
	GapWait  string // store.gap_wait
	MaxConns int    // store.max_conns
	Workers  int    // workers
}

// agentSettings are the agent configuration keys the tests vary.
type agentSettings struct {
	MaxInflight int    // uplink.max_inflight
	AckTimeout  string // uplink.ack_timeout; "" is 5s here
	MaxRecords  int    // batch.max_records
}

// clusterConfig describes one deployment under test.
type clusterConfig struct {
	Sinks   int
	Group   string // shared_group; "" subscribes without a group (one sink only)
	Devices int
	Sink    sinkSettings
	Agent   agentSettings
	// Partitioned: the agents reach the broker through a proxy that starts
	// partitioned, so that records pile up in their outboxes until Release.
	Partitioned bool
}

type sinkProc struct {
	id      string
	metrics string // host:port of /metrics
	proc    *proc
}

type agentProc struct {
	id     string
	ingest string // host:port of the ingest API (and /metrics, /v1/status)
	proc   *proc
}

// cluster is a broker, a PostgreSQL database, sinks and agents, all real
// processes.
type cluster struct {
	t      *testing.T
	cfg    clusterConfig
	bin    string
	dir    string
	mq     *testenv.Broker
	pg     *testenv.PG
	proxy  *testenv.Proxy
	db     *pgx.Conn
	sinks  []*sinkProc
	agents []*agentProc
	client *http.Client
}

func newCluster(t *testing.T, cfg clusterConfig) *cluster {
	t.Helper()
	c := &cluster{
		t:      t,
		cfg:    cfg,
		bin:    testenv.BuildBinary(t),
		dir:    t.TempDir(),
		mq:     testenv.Mosquitto(t),
		pg:     testenv.SharedPostgres(t),
		client: &http.Client{Timeout: 30 * time.Second},
	}
	brokerURL := c.mq.URL()
	agentBroker := brokerURL
	if cfg.Partitioned {
		c.proxy = testenv.NewProxy(t, c.mq.Addr())
		c.proxy.Partition()
		agentBroker = c.proxy.URL()
	}
	for i := 1; i <= cfg.Sinks; i++ {
		c.startSink(fmt.Sprintf("sink-%d", i), brokerURL)
	}
	for i := 1; i <= cfg.Devices; i++ {
		c.startAgent(fmt.Sprintf("gw-%04d", i), agentBroker)
	}
	for _, s := range c.sinks {
		c.waitHTTP("http://"+s.metrics+"/metrics", 30*time.Second)
		// Subscribed (SUBACK), so that no batch of the test is published
		// to no one.
		c.waitLog(s.proc, "sink: subscribed", 30*time.Second)
	}
	for _, a := range c.agents {
		c.waitHTTP("http://"+a.ingest+"/healthz", 30*time.Second)
	}
	// The sinks migrate the schema at start, before they serve /metrics.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := pgx.Connect(ctx, c.pg.DSN())
	if err != nil {
		t.Fatalf("connect to the sinks' database: %v", err)
	}
	c.db = db
	t.Cleanup(func() { db.Close(context.Background()) })
	return c
}

func (c *cluster) writeConfig(name, text string) string {
	c.t.Helper()
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

func (c *cluster) startSink(id, brokerURL string) {
	c.t.Helper()
	s := &sinkProc{id: id, metrics: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(c.t))}
	var b strings.Builder
	fmt.Fprintf(&b, "sink_id: %s\nbroker:\n  url: %s\n  reconnect_min: 100ms\n  reconnect_max: 1s\n", id, brokerURL)
	if c.cfg.Group != "" {
		fmt.Fprintf(&b, "shared_group: %s\n", c.cfg.Group)
	}
	fmt.Fprintf(&b, "store:\n  url: %s\n", c.pg.DSN())
	if v := c.cfg.Sink.GapWait; v != "" {
		fmt.Fprintf(&b, "  gap_wait: %s\n", v)
	}
	if v := c.cfg.Sink.MaxConns; v != 0 {
		fmt.Fprintf(&b, "  max_conns: %d\n", v)
	}
	if v := c.cfg.Sink.Workers; v != 0 {
		fmt.Fprintf(&b, "workers: %d\n", v)
	}
	fmt.Fprintf(&b, "metrics:\n  listen: %s\n", s.metrics)
	cfg := c.writeConfig(id+".yaml", b.String())
	s.proc = startProc(c.t, c.bin, filepath.Join(c.dir, id+".log"), "sink", "--config", cfg)
	c.sinks = append(c.sinks, s)
}

func (c *cluster) startAgent(id, brokerURL string) {
	c.t.Helper()
	a := &agentProc{id: id, ingest: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(c.t))}
	ackTimeout := c.cfg.Agent.AckTimeout
	if ackTimeout == "" {
		ackTimeout = "5s"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "device_id: %s\ndata_dir: %s\nbroker:\n  url: %s\n  reconnect_min: 100ms\n  reconnect_max: 500ms\n",
		id, filepath.Join(c.dir, id), brokerURL)
	fmt.Fprintf(&b, "ingest:\n  listen: %s\n", a.ingest)
	fmt.Fprintf(&b, "uplink:\n  ack_timeout: %s\n", ackTimeout)
	if v := c.cfg.Agent.MaxInflight; v != 0 {
		fmt.Fprintf(&b, "  max_inflight: %d\n", v)
	}
	if v := c.cfg.Agent.MaxRecords; v != 0 {
		fmt.Fprintf(&b, "batch:\n  max_records: %d\n", v)
	}
	cfg := c.writeConfig(id+".yaml", b.String())
	a.proc = startProc(c.t, c.bin, filepath.Join(c.dir, id+".log"), "agent", "--config", cfg)
	c.agents = append(c.agents, a)
}

// waitLog waits until p's log holds want.
func (c *cluster) waitLog(p *proc, want string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(p.logPath)
		if bytes.Contains(b, []byte(want)) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%q not in %s within %v", want, p.logPath, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cluster) waitHTTP(url string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not answer 200 within %v (last error: %v)", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Release heals the agents' partition: they connect and send their outboxes.
func (c *cluster) Release() { c.proxy.Heal() }

// load is records posted to every agent's ingest API, ids "<device>-<i>".
type load struct {
	PerDevice  int     // records per device
	PerRequest int     // records per HTTP request
	Rate       float64 // records/s per device; 0: as fast as the agent takes them
	PadBytes   int     // filler in each record's data
}

// loadResult says which records the agents acknowledged: per device, the
// ids below acked[device] (requests go in order and each is retried until it
// gets 200, so what is acknowledged is a prefix).
type loadResult struct {
	acked []atomic.Int64
}

// Total is the number of records acknowledged.
func (r *loadResult) Total() int64 {
	var n int64
	for i := range r.acked {
		n += r.acked[i].Load()
	}
	return n
}

// Run posts l to every agent concurrently and returns at once; the returned
// function waits until every record is acknowledged by its agent and fails
// the test when one could not be within the deadline.
func (c *cluster) Run(l load, deadline time.Duration) (*loadResult, func()) {
	res := &loadResult{acked: make([]atomic.Int64, len(c.agents))}
	errs := make(chan error, len(c.agents))
	pad := strings.Repeat("x", l.PadBytes)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	var wg sync.WaitGroup
	for d, a := range c.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.feed(ctx, a, l, pad, &res.acked[d])
		}()
	}
	return res, func() {
		c.t.Helper()
		wg.Wait()
		cancel()
		close(errs)
		for err := range errs {
			if err != nil {
				c.t.Fatal(err)
			}
		}
	}
}

func (c *cluster) feed(ctx context.Context, a *agentProc, l load, pad string, acked *atomic.Int64) error {
	start := time.Now()
	var body bytes.Buffer
	for i := 0; i < l.PerDevice; i += l.PerRequest {
		if l.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / l.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return fmt.Errorf("%s: load not done in time: %d of %d records acknowledged", a.id, i, l.PerDevice)
				}
			}
		}
		n := min(l.PerRequest, l.PerDevice-i)
		body.Reset()
		for j := i; j < i+n; j++ {
			fmt.Fprintf(&body, `{"stream":"temps","key":"sensor-%d","id":"%s-%d","schema":"reading@1","data":{"v":%d,"c":21.5,"pad":"%s"}}`+"\n",
				j%16, a.id, j, j, pad)
		}
		payload := body.Bytes()
		for attempt := 0; ; attempt++ {
			err := c.post(ctx, a, payload)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s: load not done in time: %d of %d records acknowledged; last error: %v", a.id, i, l.PerDevice, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		acked.Store(int64(i + n))
	}
	return nil
}

func (c *cluster) post(ctx context.Context, a *agentProc, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.ingest+"/v1/records", bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// Applied is the sum of the devices' watermarks: how many records the sinks
// have applied (cheap to read, committed with the records).
func (c *cluster) Applied() int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int64
	if err := c.db.QueryRow(ctx, `SELECT COALESCE(SUM(applied_through), 0)::bigint FROM edgesync_devices`).Scan(&n); err != nil {
		c.t.Fatalf("read watermarks: %v", err)
	}
	return n
}

// progress is when the sinks had applied how many records.
type progress struct {
	at time.Time
	n  int64
}

// WaitApplied polls until the sinks have applied want records and returns
// the progress it saw, the last entry at or past want; it fails the test
// after timeout.
func (c *cluster) WaitApplied(want int64, timeout time.Duration) []progress {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var seen []progress
	for {
		n := c.Applied()
		seen = append(seen, progress{time.Now(), n})
		if n >= want {
			return seen
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the sinks applied %d of %d records within %v", n, want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// steadyRate is the rate between the first samples at or past lo and hi
// (fractions of want): what the sinks sustain, without connecting and
// without the last batches.
func steadyRate(seen []progress, want int64, lo, hi float64) float64 {
	var a, b *progress
	for i := range seen {
		p := &seen[i]
		if a == nil && float64(p.n) >= lo*float64(want) {
			a = p
		}
		if b == nil && float64(p.n) >= hi*float64(want) {
			b = p
		}
	}
	if a == nil || b == nil || !b.at.After(a.at) {
		return 0
	}
	return float64(b.n-a.n) / b.at.Sub(a.at).Seconds()
}

// agentStatus is the part of the agent's /v1/status the tests read.
type agentStatus struct {
	Outbox struct {
		Records uint64 `json:"records"`
	} `json:"outbox"`
	Link struct {
		State         string `json:"state"`
		BatchesSent   uint64 `json:"batches_sent"`
		BatchesResent uint64 `json:"batches_resent"`
	} `json:"link"`
}

func (c *cluster) status(a *agentProc) agentStatus {
	c.t.Helper()
	resp, err := c.client.Get("http://" + a.ingest + "/v1/status")
	if err != nil {
		c.t.Fatalf("%s status: %v", a.id, err)
	}
	defer resp.Body.Close()
	var st agentStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		c.t.Fatalf("%s status: %v", a.id, err)
	}
	return st
}

// WaitDrained waits until every agent's outbox holds nothing unacknowledged.
func (c *cluster) WaitDrained(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for _, a := range c.agents {
		for {
			st := c.status(a)
			if st.Outbox.Records == 0 {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s still holds %d unacknowledged records after %v", a.id, st.Outbox.Records, timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// WaitBacklog waits until every agent's outbox holds want records (all of
// the load, none sent).
func (c *cluster) WaitBacklog(want uint64, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for _, a := range c.agents {
		for {
			st := c.status(a)
			if st.Outbox.Records == want {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s holds %d records, want %d", a.id, st.Outbox.Records, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// metrics scrapes a Prometheus text endpoint into series -> value, a series
// written as in the text: name{label="value"}.
func (c *cluster) metrics(hostport string) (map[string]float64, error) {
	resp, err := c.client.Get("http://" + hostport + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// counters are the figures a run reports, summed over agents and sinks.
type counters struct {
	BatchesSent   float64 // agents: batches published, first sends and resends
	BatchesResent float64 // agents: batches published again
	Resends       float64 // agents: times an uplink went back to its watermark
	AgentGapAcks  float64 // agents: acks with status gap received
	SinkBatches   float64 // sinks: batches applied (any status)
	SinkGapAcks   float64 // sinks: batches answered with status gap
	SinkDropped   float64 // sinks: batches dropped because a worker queue was full
	StoreErrors   float64 // sinks: transient store errors
	Rollbacks     float64 // database: transactions rolled back (tries of held batches)
	Commits       float64 // database: transactions committed
	ApplySeconds  float64 // sinks: time in transactions that applied a batch
	Applies       float64 // sinks: such transactions
	// CPU seconds (user and system) used by each kind of process.
	CPUDatabase, CPUSinks, CPUBroker, CPUAgents float64
}

func (k counters) sub(o counters) counters {
	return counters{
		BatchesSent: k.BatchesSent - o.BatchesSent, BatchesResent: k.BatchesResent - o.BatchesResent,
		Resends: k.Resends - o.Resends, AgentGapAcks: k.AgentGapAcks - o.AgentGapAcks,
		SinkBatches: k.SinkBatches - o.SinkBatches, SinkGapAcks: k.SinkGapAcks - o.SinkGapAcks,
		SinkDropped: k.SinkDropped - o.SinkDropped, StoreErrors: k.StoreErrors - o.StoreErrors,
		Rollbacks: k.Rollbacks - o.Rollbacks, Commits: k.Commits - o.Commits,
		ApplySeconds: k.ApplySeconds - o.ApplySeconds, Applies: k.Applies - o.Applies,
		CPUDatabase: k.CPUDatabase - o.CPUDatabase, CPUSinks: k.CPUSinks - o.CPUSinks,
		CPUBroker: k.CPUBroker - o.CPUBroker, CPUAgents: k.CPUAgents - o.CPUAgents,
	}
}

// MeanApply is the mean time of a transaction that applied a batch.
func (k counters) MeanApply() time.Duration {
	if k.Applies == 0 {
		return 0
	}
	return time.Duration(k.ApplySeconds / k.Applies * float64(time.Second))
}

// ResentPct is the share of published batches that were resends.
func (k counters) ResentPct() float64 {
	if k.BatchesSent == 0 {
		return 0
	}
	return 100 * k.BatchesResent / k.BatchesSent
}

// Counters sums the agents' and the running sinks' counters. A sink that is
// not running is skipped (its counters died with it).
func (c *cluster) Counters() counters {
	c.t.Helper()
	var k counters
	for _, a := range c.agents {
		m, err := c.metrics(a.ingest)
		if err != nil {
			c.t.Fatalf("%s metrics: %v", a.id, err)
		}
		k.BatchesSent += m["edgesync_uplink_batches_sent_total"]
		k.BatchesResent += m["edgesync_uplink_batches_resent_total"]
		k.Resends += m["edgesync_uplink_resends_total"]
		k.AgentGapAcks += m[`edgesync_uplink_acks_total{result="gap"}`]
	}
	for _, s := range c.sinks {
		m, err := c.metrics(s.metrics)
		if err != nil {
			continue
		}
		k.SinkBatches += m[`edgesync_sink_batches_total{result="applied"}`]
		k.SinkGapAcks += m[`edgesync_sink_batches_total{result="gap"}`]
		k.SinkDropped += m[`edgesync_sink_batches_total{result="dropped_queue_full"}`]
		k.StoreErrors += m["edgesync_sink_store_errors_total"]
		k.ApplySeconds += m["edgesync_sink_apply_seconds_sum"]
		k.Applies += m["edgesync_sink_apply_seconds_count"]
	}
	for _, s := range c.sinks {
		k.CPUSinks += cpuSeconds(s.proc.pid(), false)
	}
	for _, a := range c.agents {
		k.CPUAgents += cpuSeconds(a.proc.pid(), false)
	}
	k.CPUBroker = cpuSeconds(findProcess("mosquitto", c.mq.ConfigFile()), false)
	k.CPUDatabase = treeCPUSeconds(findProcess("postgres", "-p\x00"+strconv.Itoa(c.pg.Port())+"\x00"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Statistics reach pg_stat_database within a second or so.
	if err := c.db.QueryRow(ctx, `SELECT xact_commit::float8, xact_rollback::float8 FROM pg_stat_database
		WHERE datname = current_database()`).Scan(&k.Commits, &k.Rollbacks); err != nil {
		c.t.Fatalf("read pg_stat_database: %v", err)
	}
	return k
}

// VerifyExactlyOnce checks the database against what the agents
// acknowledged: every acknowledged record is in edgesync_log exactly once,
// nothing else is, each device's rows are seq 1..n without a hole, and no
// sequence number was given up as lost.
func (c *cluster) VerifyExactlyOnce(res *loadResult) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := res.Total()
	var rows, distinct int64
	if err := c.db.QueryRow(ctx, `SELECT count(*), count(DISTINCT (device_id, id)) FROM edgesync_log`).Scan(&rows, &distinct); err != nil {
		c.t.Fatal(err)
	}
	if rows != want || distinct != want {
		c.t.Errorf("edgesync_log: count(*) = %d, count(DISTINCT (device_id, id)) = %d; want %d and %d", rows, distinct, want, want)
	}
	for d, a := range c.agents {
		n := res.acked[d].Load()
		var cnt, minSeq, maxSeq, distinctSeq int64
		err := c.db.QueryRow(ctx, `SELECT count(*), COALESCE(min(seq), 0), COALESCE(max(seq), 0), count(DISTINCT seq)
			FROM edgesync_log WHERE device_id = $1`, a.id).Scan(&cnt, &minSeq, &maxSeq, &distinctSeq)
		if err != nil {
			c.t.Fatal(err)
		}
		if cnt != n || distinctSeq != n || (n > 0 && (minSeq != 1 || maxSeq != n)) {
			c.t.Errorf("%s: %d rows, %d distinct seqs, seq %d..%d; want %d rows, seq 1..%d", a.id, cnt, distinctSeq, minSeq, maxSeq, n, n)
		}
		present := make([]bool, n)
		r, err := c.db.Query(ctx, `SELECT id FROM edgesync_log WHERE device_id = $1`, a.id)
		if err != nil {
			c.t.Fatal(err)
		}
		prefix := a.id + "-"
		var stray int
		for r.Next() {
			var id string
			if err := r.Scan(&id); err != nil {
				c.t.Fatal(err)
			}
			i, err := strconv.ParseInt(strings.TrimPrefix(id, prefix), 10, 64)
			if !strings.HasPrefix(id, prefix) || err != nil || i < 0 || i >= n {
				stray++
				continue
			}
			present[i] = true
		}
		if err := r.Err(); err != nil {
			c.t.Fatal(err)
		}
		missing := 0
		for i, ok := range present {
			if !ok {
				if missing < 5 {
					c.t.Errorf("%s: acknowledged record %s-%d is not in edgesync_log", a.id, a.id, i)
				}
				missing++
			}
		}
		if missing > 0 || stray > 0 {
			c.t.Errorf("%s: %d acknowledged records missing, %d rows that were never acknowledged", a.id, missing, stray)
		}
	}
	var lost, devices int64
	if err := c.db.QueryRow(ctx, `SELECT COALESCE(SUM(lost), 0)::bigint, count(*) FROM edgesync_devices`).Scan(&lost, &devices); err != nil {
		c.t.Fatal(err)
	}
	if lost != 0 || devices != int64(len(c.agents)) {
		c.t.Errorf("edgesync_devices: %d rows with %d lost; want one row per device (%d), none lost", devices, lost, len(c.agents))
	}
}
