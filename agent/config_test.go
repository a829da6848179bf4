package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/bytesize"
	"github.com/edgesync/edgesync/transport/wire"
)

const minimal = "device_id: gw-0001\ndata_dir: /var/lib/edgesync\nbroker:\n  url: tcp://127.0.0.1:1883\n"

func TestContractDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"topic_prefix", c.TopicPrefix, "edgesync"},
		{"broker.client_id", c.Broker.ClientID, "gw-0001"},
		{"ingest.listen", c.Ingest.Listen, "127.0.0.1:7070"},
		{"control.socket", c.Control.Socket, "/var/lib/edgesync/control.sock"},
		{"metrics.listen", c.Metrics.Listen, ""},
		{"outbox.max_bytes", c.Outbox.MaxBytes, bytesize.GiB},
		{"outbox.when_full", c.Outbox.WhenFull, "block"},
		{"outbox.durability", c.Outbox.Durability, "fsync"},
		{"outbox.retain_acked", c.Outbox.RetainAcked, time.Duration(0)},
		{"batch.max_records", c.Batch.MaxRecords, 1000},
		{"batch.max_bytes", c.Batch.MaxBytes, 256 * bytesize.KiB},
		{"batch.linger", c.Batch.Linger, 20 * time.Millisecond},
		{"batch.compression", c.Batch.Compression, "zstd"},
		{"uplink.max_inflight", c.Uplink.MaxInflight, 8},
		{"uplink.ack_timeout", c.Uplink.AckTimeout, 30 * time.Second},
		{"uplink.rate_bytes", c.Uplink.RateBytes, bytesize.Size(0)},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v (CONTRACT.md)", ch.name, ch.got, ch.want)
		}
	}
}

func TestIngestListenEmptyDisables(t *testing.T) {
	c, err := Parse([]byte(minimal + "ingest:\n  listen: \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Ingest.Listen != "" {
		t.Fatalf(`ingest.listen: "" gave %q, want the listener disabled`, c.Ingest.Listen)
	}
}

func TestEveryProblemNamed(t *testing.T) {
	_, err := Parse([]byte("device_id: _x\nbroker:\n  url: ftp://h\noutbox:\n  max_bytes: 0.5KiB\n  durability: sometimes\nbatch:\n  max_records: 0\n  compression: lz4\nuplink:\n  max_inflight: 5000\nlog:\n  level: loud\n"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"device_id", "data_dir", "broker.url", "outbox.max_bytes", "outbox.durability",
		"batch.compression", "uplink.max_inflight", "log.level"} {
		if !strings.Contains(err.Error(), "config: "+key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestRemoteOverlay(t *testing.T) {
	local := []byte(minimal + "uplink:\n  ack_timeout: 10s\n  max_inflight: 4\n")
	fleet := &wire.Config{V: wire.Version, Target: wire.FleetID, Version: 3, Body: []byte("uplink:\n  ack_timeout: 20s\nlog:\n  level: warn\n")}
	device := &wire.Config{V: wire.Version, Target: "gw-0001", Version: 7, Body: []byte("uplink:\n  ack_timeout: 5s\n")}
	merged, err := mergeRemote(local, fleet, device)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(merged)
	if err != nil {
		t.Fatal(err)
	}
	// The device's overlay wins over the fleet's, which wins over the file;
	// keys the overlays leave alone keep the file's value.
	if c.Uplink.AckTimeout != 5*time.Second || c.Log.Level != "warn" || c.Uplink.MaxInflight != 4 || c.DeviceID != "gw-0001" {
		t.Fatalf("merged: ack_timeout %v, log.level %s, max_inflight %d, device_id %s", c.Uplink.AckTimeout, c.Log.Level, c.Uplink.MaxInflight, c.DeviceID)
	}
	for _, body := range []string{"device_id: other\n", "data_dir: /tmp\n", "broker:\n  url: tcp://evil:1883\n", "remote_config:\n  allow_unsigned: true\n"} {
		bad := &wire.Config{V: wire.Version, Target: "gw-0001", Version: 8, Body: []byte(body)}
		if _, err := mergeRemote(local, nil, bad); err == nil || !strings.Contains(err.Error(), "local file") {
			t.Errorf("overlay %q: err = %v, want a refusal naming the local-only key", body, err)
		}
	}
}

func TestLoadWithRemoteFallsBack(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(path, []byte("device_id: gw-1\ndata_dir: "+data+"\nbroker:\n  url: tcp://127.0.0.1:1883\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := storeRemote(data, "device.cbor", &wire.Config{V: wire.Version, Target: "gw-1", Version: 2,
		Body: []byte("uplink:\n  max_inflight: 16\n")}); err != nil {
		t.Fatal(err)
	}
	c, warn, err := LoadWithRemote(path)
	if err != nil || warn != nil || c.Uplink.MaxInflight != 16 {
		t.Fatalf("stored overlay: max_inflight %d, warn %v, err %v", c.Uplink.MaxInflight, warn, err)
	}
	// The stored overlay no longer validates over the file (a key the file now
	// refuses): run on the file alone, and say why.
	if err := storeRemote(data, "device.cbor", &wire.Config{V: wire.Version, Target: "gw-1", Version: 3,
		Body: []byte("uplink:\n  max_inflight: 99999\n")}); err != nil {
		t.Fatal(err)
	}
	c, warn, err = LoadWithRemote(path)
	if err != nil || warn == nil || c.Uplink.MaxInflight != 8 {
		t.Fatalf("invalid overlay: max_inflight %d, warn %v, err %v", c.Uplink.MaxInflight, warn, err)
	}
}

// A key whose zero stands for "the default" is refused when written as zero,
// naming it; left out it gets the default.
func TestExplicitZeroRefused(t *testing.T) {
	_, err := Parse([]byte("device_id: gw-1\ndata_dir: /tmp/x\nbroker:\n  url: tcp://127.0.0.1:1883\n  keepalive: 0s\n" +
		"outbox:\n  max_bytes: 0\n  cache_size: 0B\ningest:\n  block_timeout: 0s\n" +
		"batch:\n  max_records: 0\n  linger: 0s\nuplink:\n  ack_timeout: 0s\ndrain_timeout: 0s\n"))
	if err == nil {
		t.Fatal("explicit zeros accepted")
	}
	for _, key := range []string{"broker.keepalive", "outbox.max_bytes", "outbox.cache_size", "ingest.block_timeout",
		"batch.max_records", "batch.linger", "uplink.ack_timeout", "drain_timeout"} {
		if !strings.Contains(err.Error(), "config: "+key+": must be > 0") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	if !strings.Contains(err.Error(), "a negative linger sends at once") {
		t.Errorf("no hint for batch.linger:\n%v", err)
	}
	// Left out, or written with no value: the defaults, no error.
	c, err := Parse([]byte("device_id: gw-1\ndata_dir: /tmp/x\nbroker:\n  url: tcp://127.0.0.1:1883\noutbox:\n  max_bytes:\nbatch:\n  linger: -1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Outbox.MaxBytes != bytesize.GiB || c.Batch.Linger >= 0 {
		t.Fatalf("max_bytes %v, linger %v", c.Outbox.MaxBytes, c.Batch.Linger)
	}
}
