package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgesync/edgesync/capture"
	"github.com/edgesync/edgesync/internal/bytesize"
	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/internal/yamlcfg"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport"
	"github.com/edgesync/edgesync/transport/wire"
)

// Config is the agent's configuration file (see CONTRACT.md). Every field
// says its default and what zero means.
type Config struct {
	// DeviceID is required: [A-Za-z0-9._-], 1..64 characters, not starting with "_".
	DeviceID string `yaml:"device_id"`
	// DataDir is required: it holds the outbox, agent state and the control socket.
	DataDir string `yaml:"data_dir"`
	// TopicPrefix of every topic; default "edgesync".
	TopicPrefix string `yaml:"topic_prefix"`
	// Broker to publish to. broker.client_id defaults to the device_id.
	Broker mqttx.BrokerConfig `yaml:"broker"`
	Ingest IngestConfig       `yaml:"ingest"`
	// Metrics.Listen: a separate listener for /metrics only; "" (default) none.
	Metrics struct {
		Listen string `yaml:"listen"`
	} `yaml:"metrics"`
	// Control.Socket: the control socket; default <data_dir>/control.sock.
	Control struct {
		Socket string `yaml:"socket"`
	} `yaml:"control"`
	Outbox OutboxConfig           `yaml:"outbox"`
	Batch  transport.BatchConfig  `yaml:"batch"`
	Uplink transport.UplinkConfig `yaml:"uplink"`
	// Sources beyond the HTTP ingest API.
	Sources SourcesConfig `yaml:"sources"`
	// Resync configures export bundles and the receipts that come back.
	Resync ResyncConfig `yaml:"resync"`
	// RemoteConfig: configuration pushed over MQTT (edgesync config push).
	RemoteConfig RemoteConfig `yaml:"remote_config"`
	// Log.Level is debug, info (default), warn or error.
	Log struct {
		Level string `yaml:"level"`
	} `yaml:"log"`
	// DrainTimeout bounds the graceful shutdown; default 10s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`

	ingestSet bool // ingest.listen was written in the file (possibly as "")

	raw          []byte       // the local file, under any remote overlay
	remoteDevice *wire.Config // the device's remote configuration in use
	remoteFleet  *wire.Config // the fleet's
}

// IngestConfig is the `ingest:` block.
type IngestConfig struct {
	// Listen is the HTTP ingest address (host:port, or unix:/path); default
	// 127.0.0.1:7070; "" disables the listener.
	Listen string `yaml:"listen"`
	// TokenFile holds a bearer token that requests must present; "" (default) none.
	TokenFile string `yaml:"token_file"`
	// MaxRequestBytes bounds one request body; default 16MiB.
	MaxRequestBytes bytesize.Size `yaml:"max_request_bytes"`
	// BlockTimeout: how long a request waits for space when the outbox is full
	// in block mode before the answer is 503; default 2s.
	BlockTimeout time.Duration `yaml:"block_timeout"`
}

// OutboxConfig is the `outbox:` block.
type OutboxConfig struct {
	MaxBytes    bytesize.Size `yaml:"max_bytes"`    // default 1GiB
	WhenFull    string        `yaml:"when_full"`    // block (default) | drop_oldest
	Durability  string        `yaml:"durability"`   // fsync (default) | spill
	RetainAcked time.Duration `yaml:"retain_acked"` // default 0s: delete at once
	SpillDelay  time.Duration `yaml:"spill_delay"`  // spill: default 2s
	SpillMemory bytesize.Size `yaml:"spill_memory"` // spill: default 8MiB
	// MinFreeDisk: free disk space below this counts as full; default 64MiB; -1 disables.
	MinFreeDisk bytesize.Size `yaml:"min_free_disk"`
	// Ballast released when the disk fills; default 16MiB; -1 disables.
	Ballast bytesize.Size `yaml:"ballast"`
	// CacheSize and MemTableSize of Pebble; defaults 1MiB each, which keeps
	// the agent under 32 MiB of RSS at 5,000 records/s. Without cgo both live
	// on the Go heap. Boards with memory to spare write less to flash during
	// an outage with memtable_size: 4MiB (docs/BENCHMARKS.md).
	CacheSize    bytesize.Size `yaml:"cache_size"`
	MemTableSize bytesize.Size `yaml:"memtable_size"`
}

// SourcesConfig lists capture sources beyond the HTTP API.
type SourcesConfig struct {
	MQTT  []capture.MQTTSourceConfig `yaml:"mqtt"`
	Files []capture.FileSourceConfig `yaml:"files"`
}

// ResyncConfig configures field resync.
type ResyncConfig struct {
	// TrustedKeys are files holding the ed25519 public keys of sinks whose
	// import receipts ack-import accepts (PEM or base64). Empty: ack-import
	// refuses every receipt.
	TrustedKeys []string `yaml:"trusted_keys"`
}

var deviceIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Load reads, defaults and validates the file at path. Every problem is
// reported at once, naming its key.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(b)
}

// Parse is Load from bytes.
func Parse(b []byte) (*Config, error) {
	var c Config
	decErr := yamlcfg.Decode(b, &c)
	if decErr != nil && !yamlcfg.Partial(decErr) {
		return nil, decErr
	}
	// Was ingest.listen written (even as "")? Then "" disables the listener.
	var raw map[string]any
	var zeroErr error
	if err := yaml.Unmarshal(b, &raw); err == nil {
		if ing, ok := raw["ingest"].(map[string]any); ok {
			_, c.ingestSet = ing["listen"]
		}
		zeroErr = yamlcfg.ExplicitZeros(raw, c.zeroChecks())
	}
	c.raw = b
	c.EnsureDefaults()
	// Report what the file got wrong and what the rest breaks, at once.
	if err := errors.Join(decErr, zeroErr, c.Validate()); err != nil {
		return nil, err
	}
	return &c, nil
}

// zeroChecks are the keys EnsureDefaults fills when zero: written as zero in
// the file they are an error (yamlcfg.ExplicitZeros).
func (c *Config) zeroChecks() []yamlcfg.ZeroCheck {
	checks := []yamlcfg.ZeroCheck{
		{Key: "ingest.max_request_bytes", Zero: c.Ingest.MaxRequestBytes == 0},
		{Key: "ingest.block_timeout", Zero: c.Ingest.BlockTimeout == 0},
		{Key: "outbox.max_bytes", Zero: c.Outbox.MaxBytes == 0},
		{Key: "outbox.cache_size", Zero: c.Outbox.CacheSize == 0},
		{Key: "outbox.memtable_size", Zero: c.Outbox.MemTableSize == 0},
		{Key: "drain_timeout", Zero: c.DrainTimeout == 0},
	}
	checks = append(checks, c.Broker.ZeroChecks("broker")...)
	checks = append(checks, c.Batch.ZeroChecks()...)
	return append(checks, c.Uplink.ZeroChecks()...)
}

// EnsureDefaults fills zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	if c.TopicPrefix == "" {
		c.TopicPrefix = "edgesync"
	}
	if c.Broker.ClientID == "" {
		c.Broker.ClientID = c.DeviceID
	}
	c.Broker.EnsureDefaults()
	if c.Ingest.Listen == "" && !c.ingestSet {
		c.Ingest.Listen = "127.0.0.1:7070"
	}
	if c.Ingest.MaxRequestBytes == 0 {
		c.Ingest.MaxRequestBytes = 16 * bytesize.MiB
	}
	if c.Ingest.BlockTimeout == 0 {
		c.Ingest.BlockTimeout = 2 * time.Second
	}
	if c.Control.Socket == "" && c.DataDir != "" {
		c.Control.Socket = filepath.Join(c.DataDir, "control.sock")
	}
	if c.Outbox.MaxBytes == 0 {
		c.Outbox.MaxBytes = bytesize.GiB
	}
	if c.Outbox.CacheSize == 0 {
		c.Outbox.CacheSize = bytesize.MiB
	}
	if c.Outbox.MemTableSize == 0 {
		c.Outbox.MemTableSize = bytesize.MiB
	}
	if c.Outbox.WhenFull == "" {
		c.Outbox.WhenFull = string(outbox.Block)
	}
	if c.Outbox.Durability == "" {
		c.Outbox.Durability = string(outbox.Fsync)
	}
	c.Batch.EnsureDefaults()
	c.Uplink.EnsureDefaults()
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
}

// Validate reports every problem at once, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.DeviceID == "":
		bad("device_id", "required")
	case !deviceIDRe.MatchString(c.DeviceID) || strings.HasPrefix(c.DeviceID, "_"):
		bad("device_id", "must be 1..64 of [A-Za-z0-9._-], not starting with \"_\", got %q", c.DeviceID)
	}
	if c.DataDir == "" {
		bad("data_dir", "required")
	}
	if !wire.ValidTopicPrefix(c.TopicPrefix) {
		bad("topic_prefix", "not a valid MQTT topic prefix: %q", c.TopicPrefix)
	}
	if err := c.Broker.Validate("broker"); err != nil {
		errs = append(errs, prefixErrs("config: ", err))
	}
	if c.Ingest.MaxRequestBytes < 1024 {
		bad("ingest.max_request_bytes", "must be at least 1KiB, got %d", c.Ingest.MaxRequestBytes)
	}
	if c.Ingest.BlockTimeout < 0 {
		bad("ingest.block_timeout", "must be >= 0, got %v", c.Ingest.BlockTimeout)
	}
	if c.Ingest.TokenFile != "" {
		if _, err := os.Stat(c.Ingest.TokenFile); err != nil {
			bad("ingest.token_file", "%v", err)
		}
	}
	oo := c.OutboxOptions()
	if err := oo.Validate(); err != nil {
		errs = append(errs, prefixErrs("config: ", err))
	}
	if c.Outbox.MaxBytes <= 0 {
		bad("outbox.max_bytes", "must be > 0")
	}
	if err := c.Batch.Validate(); err != nil {
		errs = append(errs, prefixErrs("config: ", err))
	}
	if err := c.Uplink.Validate(); err != nil {
		errs = append(errs, prefixErrs("config: ", err))
	}
	for i := range c.Sources.MQTT {
		if err := c.Sources.MQTT[i].Validate(fmt.Sprintf("sources.mqtt[%d]", i)); err != nil {
			errs = append(errs, prefixErrs("config: ", err))
		}
	}
	for i := range c.Sources.Files {
		if err := c.Sources.Files[i].Validate(fmt.Sprintf("sources.files[%d]", i)); err != nil {
			errs = append(errs, prefixErrs("config: ", err))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.DrainTimeout < 0 {
		bad("drain_timeout", "must be >= 0")
	}
	for i, f := range c.RemoteConfig.TrustedKeys {
		if _, err := os.Stat(f); err != nil {
			bad(fmt.Sprintf("remote_config.trusted_keys[%d]", i), "%v", err)
		}
	}
	for i, f := range c.Resync.TrustedKeys {
		if _, err := os.Stat(f); err != nil {
			bad(fmt.Sprintf("resync.trusted_keys[%d]", i), "%v", err)
		}
	}
	return errors.Join(errs...)
}

// prefixErrs adds prefix to each joined error's line, unless already there.
func prefixErrs(prefix string, err error) error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, prefix) {
			line = prefix + line
		}
		out = append(out, errors.New(line))
	}
	return errors.Join(out...)
}

// OutboxDir is where the outbox lives.
func (c *Config) OutboxDir() string { return filepath.Join(c.DataDir, "outbox") }

// OutboxOptions maps the outbox block to outbox.Options.
func (c *Config) OutboxOptions() outbox.Options {
	return outbox.Options{
		MaxBytes:       int64(c.Outbox.MaxBytes),
		WhenFull:       outbox.WhenFull(c.Outbox.WhenFull),
		Durability:     outbox.Durability(c.Outbox.Durability),
		RetainAcked:    c.Outbox.RetainAcked,
		SpillDelay:     c.Outbox.SpillDelay,
		SpillMemory:    int64(c.Outbox.SpillMemory),
		MinFreeDisk:    int64(c.Outbox.MinFreeDisk),
		Ballast:        int64(c.Outbox.Ballast),
		CacheSize:      int64(c.Outbox.CacheSize),
		MemTableSize:   uint64(max(c.Outbox.MemTableSize, 0)),
		MaxRecordBytes: transport.MaxDataBytes,
	}
}
