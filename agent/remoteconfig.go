package agent

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"gopkg.in/yaml.v3"

	"github.com/edgesync/edgesync/internal/atomicfile"
	"github.com/edgesync/edgesync/resync"
	"github.com/edgesync/edgesync/transport/wire"
)

// Remote configuration: an operator publishes a versioned YAML overlay
// (retained) on {p}/{d}/config or, for every device, on {p}/_fleet/config.
// The device's overlay goes over the fleet's, which goes over the local file.
// The agent checks the merged result like a local file, keeps the overlays in
// <data_dir>/remote-config/ (so that a restart without a link runs the same
// configuration), reports the outcome retained on {p}/{d}/config/status, and
// restarts itself in-process to apply it. A version at or below the one in
// use is ignored (retained messages come again on every reconnect).
//
// Keys that could cut a device off for good are refused remotely: device_id,
// data_dir, control, remote_config and broker.url/client_id/credentials —
// change those in the local file.

// ErrRestart is returned by Run when a new remote configuration was accepted:
// the caller loads the configuration again and runs the agent again.
var ErrRestart = errors.New("agent: restart to apply a new remote configuration")

// RemoteConfig is the `remote_config:` block.
type RemoteConfig struct {
	// Enabled subscribes to the config topics; default true. Set false to
	// manage the device only through its local file.
	Enabled *bool `yaml:"enabled"`
	// TrustedKeys are files holding the ed25519 public keys allowed to sign
	// configurations (edgesync keygen). When set, unsigned configurations are
	// refused. When empty, unsigned configurations are accepted only with
	// allow_unsigned: true (rely on broker ACLs then).
	TrustedKeys []string `yaml:"trusted_keys"`
	// AllowUnsigned accepts unsigned configurations when no key is trusted;
	// default false.
	AllowUnsigned bool `yaml:"allow_unsigned"`
}

func (r RemoteConfig) enabled() bool { return r.Enabled == nil || *r.Enabled }

func remoteDir(dataDir string) string { return filepath.Join(dataDir, "remote-config") }

// loadRemote reads the stored overlays (verified when they were accepted).
func loadRemote(dataDir string) (device, fleet *wire.Config) {
	read := func(name string) *wire.Config {
		b, err := os.ReadFile(filepath.Join(remoteDir(dataDir), name))
		if err != nil {
			return nil
		}
		c, err := wire.DecodeConfig(b)
		if err != nil {
			return nil
		}
		return c
	}
	return read("device.cbor"), read("fleet.cbor")
}

func storeRemote(dataDir, name string, c *wire.Config) error {
	if err := os.MkdirAll(remoteDir(dataDir), 0o750); err != nil {
		return err
	}
	b, err := wire.EncodeConfig(nil, c)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(remoteDir(dataDir), name), 0o600, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// LoadWithRemote loads the local file and lays the stored remote overlays
// over it. When the merge no longer validates (the local file changed), it
// runs on the local file alone and says why in the returned warning.
func LoadWithRemote(path string) (cfg *Config, warning error, err error) {
	local, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	cfg, err = Parse(local)
	if err != nil {
		return nil, nil, err
	}
	cfg.raw = local
	if !cfg.RemoteConfig.enabled() {
		return cfg, nil, nil
	}
	device, fleet := loadRemote(cfg.DataDir)
	if device == nil && fleet == nil {
		return cfg, nil, nil
	}
	merged, err := mergeRemote(local, fleet, device)
	if err == nil {
		var mc *Config
		if mc, err = Parse(merged); err == nil {
			mc.raw = local
			mc.remoteDevice, mc.remoteFleet = device, fleet
			return mc, nil, nil
		}
	}
	return cfg, fmt.Errorf("the stored remote configuration no longer applies over %s; running on the local file: %w", path, err), nil
}

// mergeRemote lays fleet then device over the local YAML.
func mergeRemote(local []byte, fleet, device *wire.Config) ([]byte, error) {
	var base map[string]any
	if err := yaml.Unmarshal(local, &base); err != nil {
		return nil, err
	}
	if base == nil {
		base = map[string]any{}
	}
	for _, c := range []*wire.Config{fleet, device} {
		if c == nil || len(c.Body) == 0 {
			continue
		}
		var over map[string]any
		if err := yaml.Unmarshal(c.Body, &over); err != nil {
			return nil, fmt.Errorf("remote config %s version %d: %w", c.Target, c.Version, err)
		}
		if err := refuseLocalOnly(over); err != nil {
			return nil, fmt.Errorf("remote config %s version %d: %w", c.Target, c.Version, err)
		}
		deepMerge(base, over)
	}
	return yaml.Marshal(base)
}

func refuseLocalOnly(over map[string]any) error {
	var errs []error
	for _, k := range []string{"device_id", "data_dir", "control", "remote_config", "resync"} {
		if _, ok := over[k]; ok {
			errs = append(errs, fmt.Errorf("%s: can only be set in the local file", k))
		}
	}
	if b, ok := over["broker"].(map[string]any); ok {
		for _, k := range []string{"url", "client_id", "username", "password_file", "ca_file", "cert_file", "key_file"} {
			if _, ok := b[k]; ok {
				errs = append(errs, fmt.Errorf("broker.%s: can only be set in the local file (a wrong value would cut the device off)", k))
			}
		}
	}
	return errors.Join(errs...)
}

func deepMerge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				deepMerge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// remoteKeys loads remote_config.trusted_keys.
func (c *Config) remoteKeys() ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for i, f := range c.RemoteConfig.TrustedKeys {
		k, err := resync.LoadPublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("remote_config.trusted_keys[%d]: %w", i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// subscribeConfig subscribes to the device's and the fleet's config topics.
func (a *Agent) subscribeConfig(c mqtt.Client) {
	if !a.cfg.RemoteConfig.enabled() {
		return
	}
	c.SubscribeMultiple(map[string]byte{
		wire.ConfigTopic(a.cfg.TopicPrefix, a.cfg.DeviceID): 1,
		wire.FleetConfigTopic(a.cfg.TopicPrefix):            1,
	}, func(_ mqtt.Client, m mqtt.Message) { a.handleConfigMessage(m) })
}

// handleConfigMessage hands a config message to the agent; it never blocks.
func (a *Agent) handleConfigMessage(m mqtt.Message) {
	if !a.cfg.RemoteConfig.enabled() {
		return
	}
	switch m.Topic() {
	case wire.ConfigTopic(a.cfg.TopicPrefix, a.cfg.DeviceID), wire.FleetConfigTopic(a.cfg.TopicPrefix):
	default:
		return
	}
	select {
	case a.configs <- m.Payload():
	default: // a flood: the retained message comes again on reconnect
	}
}

// handleConfig checks a configuration message; it returns true when the
// agent must restart to apply it.
func (a *Agent) handleConfig(payload []byte) bool {
	c, err := wire.DecodeConfig(payload)
	if err != nil {
		a.log.Warn("agent: ignoring an undecodable remote configuration", "err", err)
		return false
	}
	fleet := c.Target == wire.FleetID
	if !fleet && c.Target != a.cfg.DeviceID {
		return false
	}
	cur := a.cfg.remoteDevice
	if fleet {
		cur = a.cfg.remoteFleet
	}
	if cur != nil && c.Version <= cur.Version {
		return false // already in use (retained, seen again) or older
	}
	refuse := func(err error) bool {
		a.log.Warn("agent: remote configuration refused", "target", c.Target, "version", c.Version, "err", err)
		a.publishConfigStatus(c, fleet, false, err.Error())
		return false
	}
	keys, err := a.cfg.remoteKeys()
	if err != nil {
		return refuse(err)
	}
	switch {
	case len(keys) > 0:
		var verr error = wire.ErrUnsigned
		for _, k := range keys {
			if verr = c.Verify(k); verr == nil {
				break
			}
		}
		if verr != nil {
			return refuse(fmt.Errorf("signature: %w", verr))
		}
	case !a.cfg.RemoteConfig.AllowUnsigned:
		// No key to check a signature with: a signature from a key nobody
		// trusts proves nothing (anyone can make one with edgesync keygen).
		if len(c.Signature) > 0 {
			return refuse(errors.New("signed, but remote_config.trusted_keys is empty, so the signature cannot be checked; " +
				"add the signer's public key to remote_config.trusted_keys"))
		}
		return refuse(errors.New("unsigned, and neither remote_config.trusted_keys nor remote_config.allow_unsigned is set"))
	case len(c.Signature) > 0:
		a.log.Warn("agent: accepting a signed remote configuration without checking its signature: "+
			"remote_config.allow_unsigned is set and no key is trusted", "target", c.Target, "version", c.Version)
	}
	device, fleetCfg := a.cfg.remoteDevice, a.cfg.remoteFleet
	if fleet {
		fleetCfg = c
	} else {
		device = c
	}
	merged, err := mergeRemote(a.cfg.raw, fleetCfg, device)
	if err != nil {
		return refuse(err)
	}
	if _, err := Parse(merged); err != nil {
		return refuse(err)
	}
	name := "device.cbor"
	if fleet {
		name = "fleet.cbor"
	}
	if err := storeRemote(a.cfg.DataDir, name, c); err != nil {
		return refuse(fmt.Errorf("store it: %w", err))
	}
	a.log.Info("agent: remote configuration accepted; restarting to apply it", "target", c.Target, "version", c.Version)
	if fleet {
		a.cfg.remoteFleet = c
	} else {
		a.cfg.remoteDevice = c
	}
	return true
}

// publishConfigStatus publishes the retained config status on the current
// connection, when it is up.
func (a *Agent) publishConfigStatus(c *wire.Config, fleet, applied bool, errText string) {
	if a.conn != nil && a.conn.Up() {
		a.publishConfigStatusOn(a.conn.Client(), c, fleet, applied, errText)
	}
}

// publishConfigStatusOn publishes the retained config status with client
// cl: from the connect handler, before the connection counts as up.
func (a *Agent) publishConfigStatusOn(cl mqtt.Client, c *wire.Config, fleet, applied bool, errText string) {
	st := &wire.ConfigStatus{V: wire.Version, Device: a.cfg.DeviceID, Applied: applied, Error: errText, Time: time.Now().UnixNano()}
	if a.cfg.remoteDevice != nil {
		st.Version = a.cfg.remoteDevice.Version
	}
	if a.cfg.remoteFleet != nil {
		st.FleetVersion = a.cfg.remoteFleet.Version
	}
	if c != nil && !applied {
		// Report the refused version beside the ones in use.
		if fleet {
			st.FleetVersion = c.Version
		} else {
			st.Version = c.Version
		}
	}
	if len(st.Error) > 1000 {
		st.Error = st.Error[:1000]
	}
	p, err := wire.EncodeConfigStatus(nil, st)
	if err != nil {
		a.log.Error("agent: encode config status", "err", err)
		return
	}
	cl.Publish(wire.ConfigStatusTopic(a.cfg.TopicPrefix, a.cfg.DeviceID), 1, true, p)
}

// ConfigVersion is the device configuration version in use (0: none).
func (a *Agent) ConfigVersion() uint64 {
	if a.cfg.remoteDevice != nil {
		return a.cfg.remoteDevice.Version
	}
	return 0
}
