package main

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/testenv"
)

// TestRemoteConfig: a signed configuration is applied (the agent restarts
// in-process with it and keeps it across a real restart); an unsigned one and
// one touching local-only keys are refused with the reason on config/status.
func TestRemoteConfig(t *testing.T) {
	bin := testenv.BuildBinary(t)
	dir := t.TempDir()
	mq := testenv.Mosquitto(t, testenv.WithPersistence())
	if out, code := runBin(t, bin, "keygen", "--out", filepath.Join(dir, "ops")); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	ingest := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	agentCfg := filepath.Join(dir, "agent.yaml")
	writeFile(t, agentCfg, fmt.Sprintf(`device_id: gw-rc
data_dir: %s
broker:
  url: %s
  reconnect_min: 100ms
ingest:
  listen: %s
remote_config:
  trusted_keys: [%s]
`, filepath.Join(dir, "agent"), mq.URL(), ingest, filepath.Join(dir, "ops.pub")))
	sinkCfg := filepath.Join(dir, "sink.yaml")
	writeFile(t, sinkCfg, fmt.Sprintf("sink_id: ops\nbroker:\n  url: %s\nstore:\n  url: sqlite://%s\n", mq.URL(), filepath.Join(dir, "sink.db")))
	ag := startProc(t, bin, filepath.Join(dir, "agent.log"), "agent", "--config", agentCfg)
	e := &e2e{t: t, ingest: ingest}
	e.waitIngest(30 * time.Second)

	metric := func(name string) string {
		resp, err := http.Get("http://" + ingest + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, name+" ") {
				return strings.TrimPrefix(l, name+" ")
			}
		}
		return ""
	}
	overlay := filepath.Join(dir, "overlay.yaml")
	writeFile(t, overlay, "uplink:\n  ack_timeout: 7s\nlog:\n  level: debug\n")
	out, code := runBin(t, bin, "config", "push", "--config", sinkCfg, "--device", "gw-rc", "--file", overlay,
		"--key", filepath.Join(dir, "ops.key"), "--wait", "30s")
	if code != 0 || !strings.Contains(out, "applied version 1") {
		t.Fatalf("signed push (exit %d):\n%s", code, out)
	}
	e.waitIngest(30 * time.Second)
	if v := metric("edgesync_config_version"); v != "1" {
		t.Fatalf("edgesync_config_version = %q after the push, want 1", v)
	}
	// Unsigned: refused, the version in use stays.
	out, code = runBin(t, bin, "config", "push", "--config", sinkCfg, "--device", "gw-rc", "--file", overlay, "--wait", "30s")
	if code == 0 || !strings.Contains(out, "refused version 2") || !strings.Contains(out, "signature") {
		t.Fatalf("unsigned push (exit %d):\n%s", code, out)
	}
	// A local-only key: refused, naming it.
	writeFile(t, overlay, "device_id: someone-else\n")
	out, code = runBin(t, bin, "config", "push", "--config", sinkCfg, "--device", "gw-rc", "--file", overlay,
		"--key", filepath.Join(dir, "ops.key"), "--version", "3", "--wait", "30s")
	if code == 0 || !strings.Contains(out, "device_id") {
		t.Fatalf("push of device_id (exit %d):\n%s", code, out)
	}
	// An invalid value: refused, naming the key.
	writeFile(t, overlay, "outbox:\n  when_full: sometimes\n")
	out, code = runBin(t, bin, "config", "push", "--config", sinkCfg, "--device", "gw-rc", "--file", overlay,
		"--key", filepath.Join(dir, "ops.key"), "--version", "4", "--wait", "30s")
	if code == 0 || !strings.Contains(out, "outbox.when_full") {
		t.Fatalf("push of a bad value (exit %d):\n%s", code, out)
	}
	// The accepted configuration survives a restart without the broker.
	ag.stop()
	mq.Stop()
	ag.start()
	e.waitIngest(30 * time.Second)
	if v := metric("edgesync_config_version"); v != "1" {
		t.Fatalf("edgesync_config_version = %q after a restart, want 1", v)
	}
}
