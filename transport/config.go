package transport

import (
	"errors"
	"fmt"
	"time"

	"github.com/edgesync/edgesync/internal/bytesize"
	"github.com/edgesync/edgesync/internal/yamlcfg"
	"github.com/edgesync/edgesync/transport/wire"
)

// MaxDataBytes is the largest data of one record that always fits in a
// batch: wire.MaxRecordBytes less the largest stream, key, id and schema.
// The agent gives it to the outbox as MaxRecordBytes.
const MaxDataBytes = wire.MaxRecordBytes - 2048

// BatchConfig is the `batch:` block of the agent configuration.
type BatchConfig struct {
	// MaxRecords per batch; default 1000 (0 means the default).
	MaxRecords int `yaml:"max_records"`
	// MaxBytes of record data per batch before compression; default 256KiB.
	MaxBytes bytesize.Size `yaml:"max_bytes"`
	// Linger is how long a batch that is not full waits for more records;
	// default 20ms. Negative means do not wait.
	Linger time.Duration `yaml:"linger"`
	// Compression is zstd (default) or none.
	Compression string `yaml:"compression"`
}

// UplinkConfig is the `uplink:` block of the agent configuration.
type UplinkConfig struct {
	// MaxInflight is how many batches may be published and not yet
	// acknowledged by the sink; default 8.
	MaxInflight int `yaml:"max_inflight"`
	// AckTimeout: without progress for this long, everything from the
	// acknowledged watermark is sent again; default 30s.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// RateBytes limits the bytes per second on the wire; 0 (default) is unlimited.
	RateBytes bytesize.Size `yaml:"rate_bytes"`
	// PauseProbe: while the sink holds this device (status paused), one batch
	// is sent this often to learn whether it still does; default 1m.
	PauseProbe time.Duration `yaml:"pause_probe"`
	// StateInterval is how often the retained state message is refreshed; default 30s.
	StateInterval time.Duration `yaml:"state_interval"`
}

// EnsureDefaults fills zero fields with their defaults.
// ZeroChecks are the batch keys EnsureDefaults fills when zero, for
// yamlcfg.ExplicitZeros.
func (c *BatchConfig) ZeroChecks() []yamlcfg.ZeroCheck {
	return []yamlcfg.ZeroCheck{
		{Key: "batch.max_records", Zero: c.MaxRecords == 0},
		{Key: "batch.max_bytes", Zero: c.MaxBytes == 0},
		{Key: "batch.linger", Zero: c.Linger == 0, Hint: "a negative linger sends at once"},
	}
}

func (c *BatchConfig) EnsureDefaults() {
	if c.MaxRecords == 0 {
		c.MaxRecords = 1000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 256 * bytesize.KiB
	}
	if c.Linger == 0 {
		c.Linger = 20 * time.Millisecond
	}
	if c.Compression == "" {
		c.Compression = "zstd"
	}
}

// Validate reports every problem, naming the key.
func (c *BatchConfig) Validate() error {
	var errs []error
	if c.MaxRecords < 1 || c.MaxRecords > wire.MaxRecords {
		errs = append(errs, fmt.Errorf("batch.max_records: must be 1..%d, got %d", wire.MaxRecords, c.MaxRecords))
	}
	if c.MaxBytes < 1024 || c.MaxBytes > wire.MaxDecodedBytes/2 {
		errs = append(errs, fmt.Errorf("batch.max_bytes: must be 1KiB..%s, got %s", bytesize.Size(wire.MaxDecodedBytes/2), c.MaxBytes))
	}
	if c.Linger > 10*time.Second {
		errs = append(errs, fmt.Errorf("batch.linger: at most 10s, got %v", c.Linger))
	}
	switch c.Compression {
	case "zstd", "none":
	default:
		errs = append(errs, fmt.Errorf("batch.compression: must be zstd or none, got %q", c.Compression))
	}
	return errors.Join(errs...)
}

// EnsureDefaults fills zero fields with their defaults.
// ZeroChecks are the uplink keys EnsureDefaults fills when zero, for
// yamlcfg.ExplicitZeros.
func (c *UplinkConfig) ZeroChecks() []yamlcfg.ZeroCheck {
	return []yamlcfg.ZeroCheck{
		{Key: "uplink.max_inflight", Zero: c.MaxInflight == 0},
		{Key: "uplink.ack_timeout", Zero: c.AckTimeout == 0},
		{Key: "uplink.pause_probe", Zero: c.PauseProbe == 0},
		{Key: "uplink.state_interval", Zero: c.StateInterval == 0},
	}
}

func (c *UplinkConfig) EnsureDefaults() {
	if c.MaxInflight == 0 {
		c.MaxInflight = 8
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 30 * time.Second
	}
	if c.PauseProbe == 0 {
		c.PauseProbe = time.Minute
	}
	if c.StateInterval == 0 {
		c.StateInterval = 30 * time.Second
	}
}

// Validate reports every problem, naming the key.
func (c *UplinkConfig) Validate() error {
	var errs []error
	if c.MaxInflight < 1 || c.MaxInflight > 1024 {
		errs = append(errs, fmt.Errorf("uplink.max_inflight: must be 1..1024, got %d", c.MaxInflight))
	}
	if c.AckTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("uplink.ack_timeout: must be at least 100ms, got %v", c.AckTimeout))
	}
	if c.RateBytes < 0 {
		errs = append(errs, fmt.Errorf("uplink.rate_bytes: must be >= 0, got %d", c.RateBytes))
	} else if c.RateBytes > 0 && c.RateBytes < 1024 {
		errs = append(errs, fmt.Errorf("uplink.rate_bytes: at least 1KiB/s when set, got %d", c.RateBytes))
	}
	if c.PauseProbe < time.Second {
		errs = append(errs, fmt.Errorf("uplink.pause_probe: must be at least 1s, got %v", c.PauseProbe))
	}
	if c.StateInterval < time.Second {
		errs = append(errs, fmt.Errorf("uplink.state_interval: must be at least 1s, got %v", c.StateInterval))
	}
	return errors.Join(errs...)
}
