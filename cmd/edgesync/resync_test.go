package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/testenv"
)

// TestFieldResync: a gateway with no link exports its outbox to a "USB
// stick", the sink imports the bundle and signs a receipt, the receipt goes
// back and ack-import trims the outbox. Importing twice applies nothing twice.
func TestFieldResync(t *testing.T) {
	bin := testenv.BuildBinary(t)
	dir := t.TempDir()
	// Sink key pair.
	if out, code := runBin(t, bin, "keygen", "--out", filepath.Join(dir, "sink")); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	dead := testenv.FreePort(t) // nothing listens: the link stays down
	ingest := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	agentCfg := filepath.Join(dir, "agent.yaml")
	writeFile(t, agentCfg, fmt.Sprintf(`device_id: gw-usb
data_dir: %s
broker:
  url: tcp://127.0.0.1:%d
ingest:
  listen: %s
resync:
  trusted_keys: [%s]
`, filepath.Join(dir, "agent"), dead, ingest, filepath.Join(dir, "sink.pub")))
	sinkCfg := filepath.Join(dir, "sink.yaml")
	db := filepath.Join(dir, "sink.db")
	writeFile(t, sinkCfg, fmt.Sprintf(`sink_id: sink-hq
broker:
  url: tcp://127.0.0.1:%d
store:
  url: sqlite://%s
resync:
  key_file: %s
`, dead, db, filepath.Join(dir, "sink.key")))

	ag := startProc(t, bin, filepath.Join(dir, "agent.log"), "agent", "--config", agentCfg)
	e := &e2e{t: t, ingest: ingest, dbPath: db}
	e.waitIngest(30 * time.Second)
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 30; i++ {
		if ok, err := e.post(client, "usb", i*100, 100); !ok {
			t.Fatalf("post: %v", err)
		}
	}
	// Export while the agent runs (through the control socket).
	usb := filepath.Join(dir, "usb")
	os.Mkdir(usb, 0o755)
	bundle := filepath.Join(usb, "gw-usb.bundle")
	if out, code := runBin(t, bin, "export", "--config", agentCfg, "--out", bundle); code != 0 {
		t.Fatalf("export: %s", out)
	}
	// Import at the sink, twice: the second applies nothing new.
	out, code := runBin(t, bin, "import", "--config", sinkCfg, bundle)
	if code != 0 || !strings.Contains(out, "applied through 3000") {
		t.Fatalf("import (exit %d): %s", code, out)
	}
	// The hint names the receipt with its path, ready to copy.
	if !strings.Contains(out, "ack-import --config FILE "+bundle+".receipt") {
		t.Fatalf("import does not name the receipt's path in its hint: %s", out)
	}
	if out, code := runBin(t, bin, "import", "--config", sinkCfg, "--receipt", filepath.Join(usb, "again.receipt"), bundle); code != 0 {
		t.Fatalf("second import: %s", out)
	}
	e.dbPath = db
	got := e.sinkIDsFor("gw-usb")
	if len(got) != 3000 {
		t.Fatalf("sink holds %d ids, want 3000", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("%s applied %d times", id, n)
		}
	}
	// A tampered receipt is refused and changes nothing.
	rcpt := bundle + ".receipt"
	b, err := os.ReadFile(rcpt)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), b...)
	bad[len(bad)-1] ^= 1
	writeFile(t, filepath.Join(usb, "bad.receipt"), string(bad))
	if out, code := runBin(t, bin, "ack-import", "--config", agentCfg, filepath.Join(usb, "bad.receipt")); code == 0 {
		t.Fatalf("a tampered receipt was accepted: %s", out)
	}
	// An agent configuration that trusts no sink key: a configuration error
	// (exit 2) naming the key, before anything is read.
	noKeys := filepath.Join(dir, "agent-nokeys.yaml")
	writeFile(t, noKeys, fmt.Sprintf("device_id: gw-usb\ndata_dir: %s\nbroker:\n  url: tcp://127.0.0.1:%d\n",
		filepath.Join(dir, "agent"), dead))
	if out, code := runBin(t, bin, "ack-import", "--config", noKeys, rcpt); code != 2 || !strings.Contains(out, "resync.trusted_keys") {
		t.Fatalf("ack-import without trusted keys (exit %d): %s", code, out)
	}
	// The receipt travels back; the running agent trims its outbox.
	if out, code := runBin(t, bin, "ack-import", "--config", agentCfg, rcpt); code != 0 {
		t.Fatalf("ack-import: %s", out)
	}
	out, code = runBin(t, bin, "status", "--config", agentCfg, "--json")
	if code != 0 {
		t.Fatalf("status: %s", out)
	}
	var st struct {
		Head, Watermark uint64
		Running         bool
		Outbox          struct{ Records uint64 }
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	if !st.Running || st.Head != 3000 || st.Watermark != 3000 || st.Outbox.Records != 0 {
		t.Fatalf("status after ack-import: %+v", st)
	}
	// With the agent stopped, export and ack-import work on the outbox directly.
	for i := 0; i < 5; i++ {
		e.post(client, "later", i*10, 10)
	}
	ag.stop()
	bundle2 := filepath.Join(usb, "second.bundle")
	if out, code := runBin(t, bin, "export", "--config", agentCfg, "--out", bundle2); code != 0 {
		t.Fatalf("offline export: %s", out)
	}
	if out, code := runBin(t, bin, "import", "--config", sinkCfg, bundle2); code != 0 || !strings.Contains(out, "applied through 3050") {
		t.Fatalf("import of the second bundle: %s", out)
	}
	if out, code := runBin(t, bin, "ack-import", "--config", agentCfg, bundle2+".receipt"); code != 0 {
		t.Fatalf("offline ack-import: %s", out)
	}
	out, _ = runBin(t, bin, "status", "--config", agentCfg, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Running || st.Watermark != 3050 {
		t.Fatalf("offline status after ack-import: %+v %v\n%s", st, err, out)
	}
}

func (e *e2e) sinkIDsFor(device string) map[string]int {
	e.t.Helper()
	db := openRO(e.t, e.dbPath)
	defer db.Close()
	rows, err := db.Query(`SELECT id, count(*) FROM edgesync_log WHERE device_id = ? GROUP BY id`, device)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			e.t.Fatal(err)
		}
		out[id] = n
	}
	return out
}
