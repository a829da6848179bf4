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

// TestRemoteConfigWithoutTrustedKeys: an agent that trusts no key refuses
// every configuration, a signed one too (anyone can make a key), unless
// remote_config.allow_unsigned is set.
func TestRemoteConfigWithoutTrustedKeys(t *testing.T) {
	bin := testenv.BuildBinary(t)
	dir := t.TempDir()
	mq := testenv.Mosquitto(t)
	if out, code := runBin(t, bin, "keygen", "--out", filepath.Join(dir, "anyone")); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	ingest := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	agentCfg := filepath.Join(dir, "agent.yaml")
	base := fmt.Sprintf("device_id: gw-nokeys\ndata_dir: %s\nbroker:\n  url: %s\n  reconnect_min: 100ms\ningest:\n  listen: %s\n",
		filepath.Join(dir, "agent"), mq.URL(), ingest)
	writeFile(t, agentCfg, base)
	sinkCfg := filepath.Join(dir, "sink.yaml")
	writeFile(t, sinkCfg, fmt.Sprintf("sink_id: ops\nbroker:\n  url: %s\nstore:\n  url: sqlite://%s\n", mq.URL(), filepath.Join(dir, "sink.db")))
	ag := startProc(t, bin, filepath.Join(dir, "agent.log"), "agent", "--config", agentCfg)
	e := &e2e{t: t, ingest: ingest}
	e.waitIngest(30 * time.Second)

	overlay := filepath.Join(dir, "overlay.yaml")
	writeFile(t, overlay, "uplink:\n  ack_timeout: 7s\n")
	push := func(version string, signed bool) (string, int) {
		args := []string{"config", "push", "--config", sinkCfg, "--device", "gw-nokeys", "--file", overlay,
			"--version", version, "--wait", "30s"}
		if signed {
			args = append(args, "--key", filepath.Join(dir, "anyone.key"))
		}
		return runBin(t, bin, args...)
	}
	out, code := push("1", true)
	if code == 0 || !strings.Contains(out, "refused version 1") || !strings.Contains(out, "remote_config.trusted_keys") {
		t.Fatalf("push signed by an untrusted key (exit %d):\n%s", code, out)
	}
	out, code = push("2", false)
	if code == 0 || !strings.Contains(out, "refused version 2") {
		t.Fatalf("unsigned push (exit %d):\n%s", code, out)
	}
	// allow_unsigned: no authentication asked for, both are taken.
	ag.stop()
	writeFile(t, agentCfg, base+"remote_config:\n  allow_unsigned: true\n")
	ag.start()
	e.waitIngest(30 * time.Second)
	out, code = push("3", false)
	if code != 0 || !strings.Contains(out, "applied version 3") {
		t.Fatalf("unsigned push with allow_unsigned (exit %d):\n%s", code, out)
	}
}
