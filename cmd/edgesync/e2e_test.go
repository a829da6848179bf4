package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/edgesync/edgesync/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// proc is an edgesync process started by a test.
type proc struct {
	t    *testing.T
	bin  string
	args []string
	cmd  *exec.Cmd
	log  *os.File
}

func startProc(t *testing.T, bin, logPath string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, bin: bin, args: args}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.log = f
	p.start()
	t.Cleanup(func() {
		p.kill()
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("log of %v (tail):\n%s", args, b)
		}
	})
	return p
}

func (p *proc) start() {
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

func (p *proc) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			p.t.Errorf("%v did not stop within 20s of SIGTERM", p.args)
			_ = p.cmd.Process.Kill()
			<-done
		}
		p.cmd = nil
	}
}

type e2e struct {
	t        *testing.T
	bin      string
	dir      string
	mq       *testenv.Broker
	agentCfg string
	sinkCfg  string
	ingest   string
	dbPath   string
	agent    *proc
	sink     *proc
}

func newE2E(t *testing.T, agentExtra string) *e2e {
	bin := testenv.BuildBinary(t)
	dir := t.TempDir()
	mq := testenv.Mosquitto(t, testenv.WithPersistence())
	e := &e2e{t: t, bin: bin, dir: dir, mq: mq, dbPath: filepath.Join(dir, "sink.db")}
	port := testenv.FreePort(t)
	e.ingest = fmt.Sprintf("127.0.0.1:%d", port)
	e.agentCfg = filepath.Join(dir, "agent.yaml")
	writeFile(t, e.agentCfg, fmt.Sprintf(`device_id: gw-e2e
data_dir: %s
broker:
  url: %s
  reconnect_min: 100ms
  reconnect_max: 1s
ingest:
  listen: %s
uplink:
  ack_timeout: 3s
%s`, filepath.Join(dir, "agent"), mq.URL(), e.ingest, agentExtra))
	e.sinkCfg = filepath.Join(dir, "sink.yaml")
	writeFile(t, e.sinkCfg, fmt.Sprintf(`sink_id: sink-e2e
broker:
  url: %s
  reconnect_min: 100ms
  reconnect_max: 1s
store:
  url: sqlite://%s
`, mq.URL(), e.dbPath))
	e.sink = startProc(t, bin, filepath.Join(dir, "sink.log"), "sink", "--config", e.sinkCfg)
	e.agent = startProc(t, bin, filepath.Join(dir, "agent.log"), "agent", "--config", e.agentCfg)
	e.waitIngest(30 * time.Second)
	return e
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *e2e) waitIngest(timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + e.ingest + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("the agent's ingest API did not come up on %s", e.ingest)
}

// post sends n records with ids prefix-i; it returns whether the agent said 200.
func (e *e2e) post(client *http.Client, prefix string, first, n int) (bool, error) {
	var body bytes.Buffer
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&body, `{"stream":"temps","key":"k-%d","id":"%s-%d","schema":"reading@1","data":{"v":%d}}`+"\n", i%13, prefix, i, i)
	}
	resp, err := client.Post("http://"+e.ingest+"/v1/records", "application/x-ndjson", &body)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	var r struct{ FirstSeq, LastSeq uint64 }
	if err := json.Unmarshal(b, &r); err != nil {
		return false, err
	}
	return true, nil
}

// sinkIDs returns how often each id of the e2e device is in edgesync_log.
func (e *e2e) sinkIDs() map[string]int { return e.sinkIDsFor("gw-e2e") }

// waitApplied waits until every id in want is in the sink.
func (e *e2e) waitApplied(want map[string]bool, timeout time.Duration) map[string]int {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := e.sinkIDs()
		missing := 0
		for id := range want {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d of %d acknowledged records never reached the sink", missing, len(want))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func checkExactlyOnce(t *testing.T, got map[string]int, want map[string]bool) {
	t.Helper()
	for id, n := range got {
		if n != 1 {
			t.Errorf("record %s applied %d times", id, n)
		}
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("acknowledged record %s is in the sink %d times", id, got[id])
		}
	}
}

// TestKill9Agent: clients post records concurrently while the agent is
// killed with SIGKILL at random moments and restarted, at least 20 times.
// Every record that got a 200 is in the sink exactly once.
func TestKill9Agent(t *testing.T) {
	e := newE2E(t, "")
	kills := 20
	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			prefix := fmt.Sprintf("c%d", c)
			for i := 0; ; i += 10 {
				select {
				case <-stop:
					return
				default:
				}
				ok, _ := e.post(client, prefix, i, 10)
				if ok {
					mu.Lock()
					for j := i; j < i+10; j++ {
						acked[fmt.Sprintf("%s-%d", prefix, j)] = true
					}
					mu.Unlock()
				} else {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}(c)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		e.agent.kill()
		e.agent.start()
		e.waitIngest(30 * time.Second)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 1000 {
		t.Fatalf("only %d records acknowledged by the agent: the test did not exercise much", len(acked))
	}
	got := e.waitApplied(acked, 90*time.Second)
	checkExactlyOnce(t, got, acked)
	t.Logf("%d records acknowledged across %d kills; all in the sink exactly once", len(acked), kills)
}

// TestRestartBrokerAndSink: the broker and the sink restart during the stream.
func TestRestartBrokerAndSink(t *testing.T) {
	e := newE2E(t, "")
	acked := map[string]bool{}
	client := &http.Client{Timeout: 10 * time.Second}
	i := 0
	send := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			if ok, _ := e.post(client, "r", i, 20); ok {
				for j := i; j < i+20; j++ {
					acked[fmt.Sprintf("r-%d", j)] = true
				}
			}
			i += 20
			time.Sleep(5 * time.Millisecond)
		}
	}
	send(time.Second)
	e.mq.Stop()
	send(time.Second)
	e.mq.Start()
	send(time.Second)
	e.sink.kill()
	send(time.Second)
	e.sink.start()
	send(time.Second)
	e.mq.Kill()
	e.sink.stop()
	send(500 * time.Millisecond)
	e.mq.Start()
	e.sink.start()
	send(time.Second)
	got := e.waitApplied(acked, 90*time.Second)
	checkExactlyOnce(t, got, acked)
}

// TestMalformedRequests: every kind of bad request gets a clear 4xx and the
// outbox does not change.
func TestMalformedRequests(t *testing.T) {
	e := newE2E(t, "")
	client := &http.Client{Timeout: 10 * time.Second}
	if ok, err := e.post(client, "good", 0, 5); !ok {
		t.Fatalf("good request refused: %v", err)
	}
	head := func() uint64 {
		var st struct{ Head uint64 }
		resp, err := http.Get("http://" + e.ingest + "/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st.Head
	}
	before := head()
	big := `{"stream":"s","data":"` + strings.Repeat("x", 17<<20) + `"}`
	cases := []struct {
		name, ctype, body string
		code              int
		mention           string
	}{
		{"bad json", "application/json", `{"stream": "s", "data": `, 400, ""},
		{"missing stream", "application/json", `{"data": {"a": 1}}`, 400, "stream"},
		{"missing data", "application/json", `{"stream": "s"}`, 400, "data"},
		{"wrong type", "application/json", `{"stream": 5, "data": 1}`, 400, "stream"},
		{"bad stream", "application/json", `{"stream": "a b", "data": 1}`, 400, "stream"},
		{"bad op", "application/json", `{"stream": "s", "op": "merge", "data": 1}`, 400, "op"},
		{"bad schema", "application/json", `{"stream": "s", "schema": "x@0", "data": 1}`, 400, "schema"},
		{"bad ts", "application/json", `{"stream": "s", "ts": "yesterday", "data": 1}`, 400, "ts"},
		{"second of two bad", "application/json", `[{"stream": "s", "data": 1}, {"stream": "s"}]`, 400, "1"},
		{"bad ndjson line", "application/x-ndjson", "{\"stream\":\"s\",\"data\":1}\n{oops}\n", 400, ""},
		{"bad cbor", "application/cbor", "\xff\xfe\x00", 400, ""},
		{"wrong content type", "text/plain", `{"stream":"s","data":1}`, 415, ""},
		{"oversize", "application/json", big, 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := client.Post("http://"+e.ingest+"/v1/records", c.ctype, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.code {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, b, c.code)
			}
			if c.mention != "" && !strings.Contains(string(b), c.mention) {
				t.Fatalf("error %s does not name %q", b, c.mention)
			}
		})
	}
	if after := head(); after != before {
		t.Fatalf("the outbox head moved from %d to %d on bad requests", before, after)
	}
}

// TestAgentConfigErrors: a bad file exits 2 naming every wrong key; a locked
// outbox exits 75.
func TestAgentConfigErrors(t *testing.T) {
	bin := testenv.BuildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	writeFile(t, cfg, "device_id: _bad\nbroker:\n  url: ftp://x\noutbox:\n  max_bytes: lots\n  when_full: sometimes\nbogus: 1\n")
	out, code := runBin(t, bin, "agent", "--config", cfg)
	if code != 2 {
		t.Fatalf("exit %d, want 2; output:\n%s", code, out)
	}
	for _, want := range []string{"outbox.max_bytes", "bogus"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not name %q:\n%s", want, out)
		}
	}
	writeFile(t, cfg, "device_id: _bad\nbroker:\n  url: ftp://x\noutbox:\n  when_full: sometimes\n")
	out, code = runBin(t, bin, "agent", "--config", cfg)
	if code != 2 {
		t.Fatalf("exit %d, want 2; output:\n%s", code, out)
	}
	for _, want := range []string{"device_id", "data_dir", "broker.url", "outbox.when_full"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not name %q:\n%s", want, out)
		}
	}
	// A second agent on the same data_dir: exit 75.
	mq := testenv.Mosquitto(t)
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, fmt.Sprintf("device_id: gw-lock\ndata_dir: %s\nbroker:\n  url: %s\ningest:\n  listen: \"\"\n", filepath.Join(dir, "data"), mq.URL()))
	first := startProc(t, bin, filepath.Join(dir, "first.log"), "agent", "--config", good)
	waitSocket(t, filepath.Join(dir, "data", "control.sock"))
	out, code = runBin(t, bin, "agent", "--config", good)
	if code != 75 {
		t.Fatalf("second agent exit %d, want 75; output:\n%s", code, out)
	}
	first.stop()
}

func waitSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no control socket at %s", path)
}

func runBin(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("%v: %v", args, err)
	}
	return string(out), 0
}

func openRO(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestPutAndStatus: `edgesync put` fills --stream/--key/--schema, sends NDJSON
// from stdin and prints the seqs; bad input exits 2 naming the problem;
// `edgesync status` shows depth, link and latency, as text and as JSON.
func TestPutAndStatus(t *testing.T) {
	e := newE2E(t, "")
	put := func(stdin string, args ...string) (string, int) {
		cmd := exec.Command(e.bin, append([]string{"put", "--config", e.agentCfg}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := put(`{"id":"p-1","data":{"v":1}}`+"\n"+`{"id":"p-2","key":"own","data":{"v":2}}`+"\n", "--stream", "temps", "--key", "k1", "--schema", "reading@1")
	if code != 0 || !strings.Contains(out, `"first_seq"`) || !strings.Contains(out, `"last_seq"`) {
		t.Fatalf("put (exit %d): %s", code, out)
	}
	out, code = put(`{"stream":"temps","data":{"v":3},"id":"p-3"}`, "--data", `{"stream":"temps","id":"p-4","data":{"v":4}}`)
	if code != 0 {
		t.Fatalf("put --data (exit %d): %s", code, out)
	}
	out, code = put(`{"stream":"a b","data":1}`)
	if code != 2 || !strings.Contains(out, "stream") {
		t.Fatalf("bad put (exit %d): %s", code, out)
	}
	got := e.waitApplied(map[string]bool{"p-1": true, "p-2": true, "p-4": true}, 30*time.Second)
	if got["p-3"] != 0 {
		t.Fatal("put read stdin although --data was given")
	}
	db := openRO(t, e.dbPath)
	defer db.Close()
	var key, schema string
	if err := db.QueryRow(`SELECT key, schema FROM edgesync_log WHERE id = 'p-1'`).Scan(&key, &schema); err != nil {
		t.Fatal(err)
	}
	if key != "k1" || schema != "reading@1" {
		t.Fatalf("p-1 stored with key %q schema %q, want k1 and reading@1", key, schema)
	}
	if err := db.QueryRow(`SELECT key FROM edgesync_log WHERE id = 'p-2'`).Scan(&key); err != nil || key != "own" {
		t.Fatalf("p-2 key %q (%v): --key must not override a record's own key", key, err)
	}
	text, code := runBin(t, e.bin, "status", "--config", e.agentCfg)
	if code != 0 {
		t.Fatalf("status: %s", text)
	}
	for _, want := range []string{"outbox", "link     UP", "capture_to_ack", "watermark"} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
	js, code := runBin(t, e.bin, "status", "--config", e.agentCfg, "--json")
	var st struct {
		DeviceID string `json:"device_id"`
		Epoch    string `json:"epoch"`
		Running  bool   `json:"running"`
		Outbox   struct {
			Records          uint64  `json:"records"`
			OldestAgeSeconds float64 `json:"oldest_age_seconds"`
		} `json:"outbox"`
		Link    struct{ State string } `json:"link"`
		Latency map[string]struct {
			P99 float64 `json:"p99_ms"`
		} `json:"latency"`
		Clock struct{ Synchronized bool } `json:"clock"`
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil || code != 0 {
		t.Fatalf("status --json (exit %d): %v\n%s", code, err, js)
	}
	if st.DeviceID != "gw-e2e" || st.Epoch == "" || !st.Running || st.Link.State != "up" || len(st.Latency) != 4 {
		t.Fatalf("status %+v", st)
	}
}

// TestSinkConfigErrors: a bad sink configuration exits 2 and names every
// wrong key, the PostgreSQL URL's parameters included, before connecting
// anywhere; the password in the URL is not repeated.
func TestSinkConfigErrors(t *testing.T) {
	bin := testenv.BuildBinary(t)
	cfg := filepath.Join(t.TempDir(), "sink.yaml")
	writeFile(t, cfg, "sink_id: \"bad id\"\nbroker:\n  url: tcp://127.0.0.1:1\nstore:\n  url: postgres://u:topsecret@db1,db2/x?sslmode=on\n  gap_wait: -1s\n")
	out, code := runBin(t, bin, "sink", "--config", cfg)
	if code != 2 {
		t.Fatalf("exit %d, want 2; output:\n%s", code, out)
	}
	for _, want := range []string{"sink_id", `store.url: sslmode "on"`, "store.gap_wait"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not name %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "topsecret") {
		t.Errorf("output repeats the password:\n%s", out)
	}
}

// TestHealthzWhenFull: with the link down and the outbox full in block mode,
// ingest answers 503 and so does /healthz ("outbox full"); once the link is
// back and the sink has acknowledged, both take records again.
func TestHealthzWhenFull(t *testing.T) {
	e := newE2E(t, "outbox:\n  max_bytes: 64KiB\n  when_full: block\n")
	e.mq.Stop()
	client := &http.Client{Timeout: 10 * time.Second}
	var refused error
	for i := 0; i < 1000 && refused == nil; i++ {
		ok, err := e.post(client, "fill", i*20, 20)
		if !ok {
			refused = err
		}
	}
	if refused == nil || !strings.Contains(refused.Error(), "HTTP 503") {
		t.Fatalf("filling a 64 KiB outbox with the broker down: %v, want HTTP 503", refused)
	}
	resp, err := http.Get("http://" + e.ingest + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "outbox full") {
		t.Fatalf("/healthz with ingest refusing: HTTP %d %q, want 503 outbox full", resp.StatusCode, body)
	}
	e.mq.Start()
	e.waitIngest(60 * time.Second) // healthz 200 again
	if ok, err := e.post(client, "after", 0, 5); !ok {
		t.Fatalf("ingest after the outbox drained: %v", err)
	}
}

// TestHelp: every command's --help prints its usage once, to stdout, and
// exits 0; an unknown flag prints the error and the usage to stderr, exit 2.
func TestHelp(t *testing.T) {
	bin := testenv.BuildBinary(t)
	for _, c := range [][]string{{"ack-import"}, {"agent"}, {"bench"}, {"config", "push"}, {"demo"}, {"export"},
		{"import"}, {"keygen"}, {"put"}, {"sink"}, {"sink", "replay-parked"}, {"status"}} {
		name := strings.Join(c, " ")
		cmd := exec.Command(bin, append(c, "--help")...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("%s --help: %v", name, err)
			continue
		}
		if n := strings.Count(stdout.String(), "Usage: edgesync "+name); n != 1 || stderr.Len() != 0 {
			t.Errorf("%s --help: usage %d times on stdout, stderr %q", name, n, stderr.String())
		}
		cmd = exec.Command(bin, append(c, "--no-such-flag")...)
		stdout.Reset()
		stderr.Reset()
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || stdout.Len() != 0 ||
			!strings.Contains(stderr.String(), "no-such-flag") || strings.Count(stderr.String(), "Usage: edgesync "+name) != 1 {
			t.Errorf("%s --no-such-flag: %v, stdout %q, stderr %q", name, err, stdout.String(), stderr.String())
		}
	}
}

// TestStopDeliversLastRecords: records stored just before SIGTERM are sent
// and acknowledged during the drain, not left for the next start.
func TestStopDeliversLastRecords(t *testing.T) {
	e := newE2E(t, "batch:\n  linger: 200ms\n")
	client := &http.Client{Timeout: 10 * time.Second}
	want := make(map[string]bool)
	for round := 0; round < 3; round++ {
		if round > 0 {
			e.agent.start()
			e.waitIngest(30 * time.Second)
		}
		if ok, err := e.post(client, fmt.Sprintf("last%d", round), 0, 3); !ok {
			t.Fatalf("post: %v", err)
		}
		for i := 0; i < 3; i++ {
			want[fmt.Sprintf("last%d-%d", round, i)] = true
		}
		e.agent.stop() // at once: the batch is still lingering
		got := e.sinkIDs()
		for id := range want {
			if got[id] != 1 {
				t.Fatalf("round %d: record %s is in the sink %d times right after the agent stopped", round, id, got[id])
			}
		}
	}
}
