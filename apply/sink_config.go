package apply

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/internal/yamlcfg"
	"github.com/edgesync/edgesync/transport/wire"
	"gopkg.in/yaml.v3"
)

// SinkConfig is the sink's configuration file (see CONTRACT.md). Every field
// says its default and what zero means.
type SinkConfig struct {
	// SinkID is required and unique per sink process: [A-Za-z0-9._-], 1..64.
	SinkID string `yaml:"sink_id"`
	// Broker: the same keys as the agent's; client_id defaults to edgesync-sink-<sink_id>.
	Broker mqttx.BrokerConfig `yaml:"broker"`
	// TopicPrefix; default "edgesync".
	TopicPrefix string `yaml:"topic_prefix"`
	// SharedGroup, when set, subscribes through $share/<group>/...; several
	// sinks then split the devices' batches. It needs a PostgreSQL store.
	SharedGroup string `yaml:"shared_group"`
	// Store is the database; default sqlite:///var/lib/edgesync/sink.db.
	Store StoreConfig `yaml:"store"`
	// Metrics.Listen serves /metrics (per-device applied, duplicates, lost,
	// parked, last seen, lag); "" (default) none.
	Metrics struct {
		Listen string `yaml:"listen"`
	} `yaml:"metrics"`
	// Policy: streams and on_unknown_schema, at the top level of the file.
	Policy `yaml:",inline"`
	// Workers apply batches of different devices in parallel (a device
	// always goes to the same worker, in order); default 4.
	Workers int `yaml:"workers"`
	// Resync.KeyFile is the ed25519 private key that signs import receipts;
	// "" (default): import writes no receipt.
	Resync struct {
		KeyFile string `yaml:"key_file"`
	} `yaml:"resync"`
	// Log.Level is debug, info (default), warn or error.
	Log struct {
		Level string `yaml:"level"`
	} `yaml:"log"`
}

var sinkIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// LoadSinkConfig reads, defaults and validates the sink's file.
func LoadSinkConfig(path string) (*SinkConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseSinkConfig(b)
}

// ParseSinkConfig is LoadSinkConfig from bytes.
func ParseSinkConfig(b []byte) (*SinkConfig, error) {
	var c SinkConfig
	c.Store = DefaultStoreConfig() // so that gap_wait: 0 in the file means "do not wait"
	decErr := yamlcfg.Decode(b, &c)
	if decErr != nil && !yamlcfg.Partial(decErr) {
		return nil, decErr
	}
	// Keys that EnsureDefaults fills when zero: written as zero, an error.
	var zeroErr error
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err == nil {
		zeroErr = yamlcfg.ExplicitZeros(raw, append(c.Broker.ZeroChecks("broker"),
			yamlcfg.ZeroCheck{Key: "workers", Zero: c.Workers == 0}))
	}
	c.EnsureDefaults()
	// Report what the file got wrong and what the rest breaks, at once.
	if err := errors.Join(decErr, zeroErr, c.Validate()); err != nil {
		return nil, err
	}
	return &c, nil
}

// EnsureDefaults fills zero fields with their defaults.
func (c *SinkConfig) EnsureDefaults() {
	if c.Broker.ClientID == "" {
		c.Broker.ClientID = "edgesync-sink-" + c.SinkID
	}
	c.Broker.EnsureDefaults()
	if c.TopicPrefix == "" {
		c.TopicPrefix = "edgesync"
	}
	if c.Store.URL == "" {
		c.Store.URL = "sqlite:///var/lib/edgesync/sink.db"
	}
	if c.OnUnknownSchema == "" {
		c.OnUnknownSchema = OnUnknownPark
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
}

// Validate reports every problem at once, each naming its key.
func (c *SinkConfig) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	add := func(err error) {
		if err == nil {
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if line != "" && !strings.HasPrefix(line, "config: ") {
				line = "config: " + line
			}
			if line != "" {
				errs = append(errs, errors.New(line))
			}
		}
	}
	if c.SinkID == "" {
		bad("sink_id", "required")
	} else if !sinkIDRe.MatchString(c.SinkID) {
		bad("sink_id", "must be 1..64 of [A-Za-z0-9._-], got %q", c.SinkID)
	}
	add(c.Broker.Validate("broker"))
	if !wire.ValidTopicPrefix(c.TopicPrefix) {
		bad("topic_prefix", "not a valid MQTT topic prefix: %q", c.TopicPrefix)
	}
	if c.SharedGroup != "" && !sinkIDRe.MatchString(c.SharedGroup) {
		bad("shared_group", "must be 1..64 of [A-Za-z0-9._-], got %q", c.SharedGroup)
	}
	add(c.Store.Validate())
	if c.SharedGroup != "" {
		if k, err := StoreKind(c.Store.URL); err == nil && k == KindSQLite {
			bad("shared_group", "needs a PostgreSQL store: several sinks cannot share one SQLite file (store.url is %s)", c.Store.URL)
		}
	}
	add(c.Policy.Validate())
	if c.Workers < 1 || c.Workers > 256 {
		bad("workers", "must be 1..256, got %d", c.Workers)
	}
	if c.Resync.KeyFile != "" {
		if _, err := os.Stat(c.Resync.KeyFile); err != nil {
			bad("resync.key_file", "%v", err)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	return errors.Join(errs...)
}

// Filter is the subscription of this sink: {p}/+/up, through $share/<group>/
// when shared_group is set.
func (c *SinkConfig) Filter() string {
	f := wire.TopicFilter(c.TopicPrefix, wire.SuffixUp)
	if c.SharedGroup != "" {
		return wire.SharedFilter(c.SharedGroup, f)
	}
	return f
}
