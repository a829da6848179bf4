package wire

import (
	"cmp"
	"crypto/ed25519"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/edgesync/edgesync/internal/cbormsg"
)

// State is what the agent publishes, retained, on {p}/{d}/state: when it
// connects, every few seconds while it runs, and as its MQTT last will
// (Online false, the counters as of the connect).
type State struct {
	V               uint8  `cbor:"1,keyasint" json:"v"`
	Device          string `cbor:"2,keyasint" json:"device"`
	Online          bool   `cbor:"3,keyasint" json:"online"`
	BootID          string `cbor:"4,keyasint" json:"boot_id"`        // random per agent process start; 1..64 of [A-Za-z0-9._-]
	Epoch           uint64 `cbor:"5,keyasint" json:"epoch"`          // the outbox's epoch; 0 when not known yet
	Head            uint64 `cbor:"6,keyasint" json:"head"`           // seq of the last record appended; 0 when none
	Watermark       uint64 `cbor:"7,keyasint" json:"watermark"`      // acknowledged by the sink through this seq
	Depth           uint64 `cbor:"8,keyasint" json:"depth"`          // records in the outbox not yet acknowledged
	DepthBytes      uint64 `cbor:"9,keyasint" json:"depth_bytes"`    // their size on disk
	OldestAgeMillis uint64 `cbor:"10,keyasint" json:"oldest_age_ms"` // age of the oldest unacknowledged record; 0 when none
	Time            int64  `cbor:"11,keyasint" json:"time"`          // unix nanoseconds, the agent's wall clock
}

// EncodeState validates s and appends its payload (plain CBOR) to dst.
func EncodeState(dst []byte, s *State) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return dst, err
	}
	n0 := len(dst)
	dst = cbormsg.AppendHead(dst, cbormsg.MajorMap, 11)
	dst = cbormsg.AppendUint(key(dst, 1), uint64(s.V))
	dst = cbormsg.AppendText(key(dst, 2), s.Device)
	dst = cbormsg.AppendBool(key(dst, 3), s.Online)
	dst = cbormsg.AppendText(key(dst, 4), s.BootID)
	dst = cbormsg.AppendUint(key(dst, 5), s.Epoch)
	dst = cbormsg.AppendUint(key(dst, 6), s.Head)
	dst = cbormsg.AppendUint(key(dst, 7), s.Watermark)
	dst = cbormsg.AppendUint(key(dst, 8), s.Depth)
	dst = cbormsg.AppendUint(key(dst, 9), s.DepthBytes)
	dst = cbormsg.AppendUint(key(dst, 10), s.OldestAgeMillis)
	dst = cbormsg.AppendInt(key(dst, 11), s.Time)
	return checkSize("state", dst, n0, MaxControlBytes)
}

// DecodeState decodes and validates a payload published on {p}/{d}/state.
func DecodeState(payload []byte) (*State, error) {
	s := new(State)
	fields := []cbormsg.Field{
		{Key: 1, Dest: &s.V},
		{Key: 2, Dest: &s.Device},
		{Key: 3, Dest: &s.Online},
		{Key: 4, Dest: &s.BootID},
		{Key: 5, Dest: &s.Epoch},
		{Key: 6, Dest: &s.Head},
		{Key: 7, Dest: &s.Watermark},
		{Key: 8, Dest: &s.Depth},
		{Key: 9, Dest: &s.DepthBytes},
		{Key: 10, Dest: &s.OldestAgeMillis},
		{Key: 11, Dest: &s.Time},
	}
	if err := decodeCBOR("state", controlLimits, payload, MaxControlBytes, "wire.State", fields); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate reports the first rule s breaks: V is Version; Device is a valid
// device id; BootID is 1..64 characters of [A-Za-z0-9._-]; Epoch is 0 or in
// 1..2^63-1; Watermark <= Head.
func (s *State) Validate() error {
	const m = "state"
	if s.V != Version {
		return versionError(m, uint64(s.V))
	}
	if !ValidDeviceID(s.Device) {
		return invalidValue(m, "device", s.Device)
	}
	if !validName(s.BootID) {
		return invalidValue(m, "boot_id", s.BootID)
	}
	if s.Epoch != 0 && !ValidEpoch(s.Epoch) {
		return invalid(m, "epoch", "must be 0 or in 1..2^63-1, got "+utoa(s.Epoch))
	}
	if s.Watermark > s.Head {
		return invalid(m, "watermark", utoa(s.Watermark)+" past head "+utoa(s.Head))
	}
	return nil
}

// Command names.
const (
	// CmdResend asks the agent to send again every record it still holds
	// from seq From on (records kept by outbox.retain_acked included), as
	// if the sink had answered with a gap at From-1.
	CmdResend = "resend"
)

// MaxArgs is the largest number of arguments of a command.
const MaxArgs = 16

// Cmd is a command to one device, published on {p}/{d}/cmd (not retained).
// An agent ignores a command whose name it does not know.
type Cmd struct {
	V        uint8             `cbor:"1,keyasint" json:"v"`
	ID       string            `cbor:"2,keyasint" json:"id"`                            // chosen by the sender, for logs and deduplication; 1..64 of [A-Za-z0-9._-]
	Name     string            `cbor:"3,keyasint" json:"name"`                          // CmdResend, ...; 1..64 of [A-Za-z0-9._-]
	From     uint64            `cbor:"4,keyasint" json:"from"`                          // CmdResend: the first seq to send again (>= 1)
	Epoch    uint64            `cbor:"5,keyasint,omitempty" json:"epoch,omitempty"`     // when set, the agent ignores the command unless this is its epoch
	Args     map[string]string `cbor:"6,keyasint,omitempty" json:"args,omitempty"`      // further arguments; at most MaxArgs
	IssuedAt int64             `cbor:"7,keyasint,omitempty" json:"issued_at,omitempty"` // unix nanoseconds, the sender's wall clock
}

// EncodeCmd validates c and appends its payload (plain CBOR) to dst.
func EncodeCmd(dst []byte, c *Cmd) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return dst, err
	}
	n0 := len(dst)
	pairs := uint64(4)
	if c.Epoch != 0 {
		pairs++
	}
	if len(c.Args) > 0 {
		pairs++
	}
	if c.IssuedAt != 0 {
		pairs++
	}
	dst = cbormsg.AppendHead(dst, cbormsg.MajorMap, pairs)
	dst = cbormsg.AppendUint(key(dst, 1), uint64(c.V))
	dst = cbormsg.AppendText(key(dst, 2), c.ID)
	dst = cbormsg.AppendText(key(dst, 3), c.Name)
	dst = cbormsg.AppendUint(key(dst, 4), c.From)
	if c.Epoch != 0 {
		dst = cbormsg.AppendUint(key(dst, 5), c.Epoch)
	}
	if len(c.Args) > 0 {
		dst = cbormsg.AppendHead(key(dst, 6), cbormsg.MajorMap, uint64(len(c.Args)))
		// Core deterministic order: by encoded key, which for text is
		// shorter first, then bytewise.
		names := slices.SortedFunc(maps.Keys(c.Args), func(a, b string) int {
			return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
		})
		for _, k := range names {
			dst = cbormsg.AppendText(cbormsg.AppendText(dst, k), c.Args[k])
		}
	}
	if c.IssuedAt != 0 {
		dst = cbormsg.AppendInt(key(dst, 7), c.IssuedAt)
	}
	return checkSize("cmd", dst, n0, MaxControlBytes)
}

// DecodeCmd decodes and validates a payload published on {p}/{d}/cmd.
func DecodeCmd(payload []byte) (*Cmd, error) {
	c := new(Cmd)
	fields := []cbormsg.Field{
		{Key: 1, Dest: &c.V},
		{Key: 2, Dest: &c.ID},
		{Key: 3, Dest: &c.Name},
		{Key: 4, Dest: &c.From},
		{Key: 5, Dest: &c.Epoch},
		{Key: 6, Dest: &c.Args},
		{Key: 7, Dest: &c.IssuedAt},
	}
	if err := decodeCBOR("cmd", controlLimits, payload, MaxControlBytes, "wire.Cmd", fields); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate reports the first rule c breaks: V is Version; ID and Name are
// 1..64 characters of [A-Za-z0-9._-]; From >= 1 for CmdResend; Epoch is 0 or
// in 1..2^63-1; at most MaxArgs arguments, each named with 1..64 characters
// of [A-Za-z0-9._-] and a value of valid UTF-8 of at most MaxReasonBytes.
func (c *Cmd) Validate() error {
	const m = "cmd"
	if c.V != Version {
		return versionError(m, uint64(c.V))
	}
	if !validName(c.ID) {
		return invalidValue(m, "id", c.ID)
	}
	if !validName(c.Name) {
		return invalidValue(m, "name", c.Name)
	}
	if c.Name == CmdResend && c.From == 0 {
		return invalid(m, "from", "must be >= 1 for "+CmdResend)
	}
	if c.Epoch != 0 && !ValidEpoch(c.Epoch) {
		return invalid(m, "epoch", "must be 0 or in 1..2^63-1, got "+utoa(c.Epoch))
	}
	if len(c.Args) > MaxArgs {
		return tooLarge(m, "args", itoa(len(c.Args))+" arguments, more than "+itoa(MaxArgs))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Args)) {
		v := c.Args[k]
		if !validName(k) {
			return invalid(m, "args", "invalid name "+quote(k))
		}
		if !validText(v, MaxReasonBytes) {
			return invalid(m, "args["+k+"]", "must be valid UTF-8 of at most "+itoa(MaxReasonBytes)+" bytes")
		}
	}
	return nil
}

// Config is a versioned remote configuration, published retained on
// {p}/{d}/config (Target the device) or {p}/_fleet/config (Target FleetID).
// Body is YAML text in the agent configuration's format, holding only the
// keys it overrides; the device's config overlays the fleet's, which
// overlays the local file. Signature, when present, is ed25519 over
// SigningMessage() with the key named KeyID.
type Config struct {
	V         uint8  `cbor:"1,keyasint" json:"v"`
	Target    string `cbor:"2,keyasint" json:"target"`                        // the device id, or FleetID
	Version   uint64 `cbor:"3,keyasint" json:"version"`                       // >= 1; an agent applies only a version above the one it has
	Body      []byte `cbor:"4,keyasint" json:"body"`                          // YAML text, valid UTF-8; may be empty
	IssuedAt  int64  `cbor:"5,keyasint" json:"issued_at"`                     // unix nanoseconds, the publisher's wall clock
	KeyID     string `cbor:"6,keyasint,omitempty" json:"key_id,omitempty"`    // 1..64 of [A-Za-z0-9._-]; "" when unsigned
	Signature []byte `cbor:"7,keyasint,omitempty" json:"signature,omitempty"` // 64 bytes; empty when unsigned
}

// EncodeConfig validates c and appends its payload (plain CBOR) to dst.
func EncodeConfig(dst []byte, c *Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return dst, err
	}
	n0 := len(dst)
	pairs := uint64(5)
	if c.KeyID != "" {
		pairs++
	}
	if len(c.Signature) > 0 {
		pairs++
	}
	dst = cbormsg.AppendHead(dst, cbormsg.MajorMap, pairs)
	dst = cbormsg.AppendUint(key(dst, 1), uint64(c.V))
	dst = cbormsg.AppendText(key(dst, 2), c.Target)
	dst = cbormsg.AppendUint(key(dst, 3), c.Version)
	dst = cbormsg.AppendBytes(key(dst, 4), c.Body) // null when nil
	dst = cbormsg.AppendInt(key(dst, 5), c.IssuedAt)
	if c.KeyID != "" {
		dst = cbormsg.AppendText(key(dst, 6), c.KeyID)
	}
	if len(c.Signature) > 0 {
		dst = cbormsg.AppendBytes(key(dst, 7), c.Signature)
	}
	return checkSize("config", dst, n0, MaxControlBytes)
}

// DecodeConfig decodes and validates a payload published on {p}/{d}/config
// or {p}/_fleet/config. It does not verify the signature (see Verify), and
// the caller still has to check that Target is the topic's.
func DecodeConfig(payload []byte) (*Config, error) {
	c := new(Config)
	fields := []cbormsg.Field{
		{Key: 1, Dest: &c.V},
		{Key: 2, Dest: &c.Target},
		{Key: 3, Dest: &c.Version},
		{Key: 4, Dest: &c.Body},
		{Key: 5, Dest: &c.IssuedAt},
		{Key: 6, Dest: &c.KeyID},
		{Key: 7, Dest: &c.Signature},
	}
	if err := decodeCBOR("config", controlLimits, payload, MaxControlBytes, "wire.Config", fields); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate reports the first rule c breaks: V is Version; Target is a valid
// device id or FleetID; Version >= 1; Body is valid UTF-8; either KeyID and
// Signature are both empty, or KeyID is 1..64 characters of [A-Za-z0-9._-]
// and Signature is ed25519.SignatureSize bytes. It does not verify the
// signature.
func (c *Config) Validate() error {
	const m = "config"
	if c.V != Version {
		return versionError(m, uint64(c.V))
	}
	if c.Target != FleetID && !ValidDeviceID(c.Target) {
		return invalidValue(m, "target", c.Target)
	}
	if c.Version == 0 {
		return invalid(m, "version", "must be >= 1")
	}
	if !utf8.Valid(c.Body) {
		return invalid(m, "body", "not valid UTF-8")
	}
	if c.KeyID == "" && len(c.Signature) == 0 {
		return nil
	}
	if !ValidKeyID(c.KeyID) {
		return invalidValue(m, "key_id", c.KeyID)
	}
	if len(c.Signature) != ed25519.SignatureSize {
		return invalid(m, "signature", itoa(len(c.Signature))+" bytes, want "+itoa(ed25519.SignatureSize))
	}
	return nil
}

// ConfigStatus is what the agent publishes, retained, on
// {p}/{d}/config/status after each config it receives: the versions it
// looked at and whether it runs with them.
type ConfigStatus struct {
	V            uint8  `cbor:"1,keyasint" json:"v"`
	Device       string `cbor:"2,keyasint" json:"device"`
	Version      uint64 `cbor:"3,keyasint" json:"version"`                   // the device config's version; 0 when there is none
	FleetVersion uint64 `cbor:"4,keyasint" json:"fleet_version"`             // the fleet config's version; 0 when there is none
	Applied      bool   `cbor:"5,keyasint" json:"applied"`                   // the agent runs with exactly these versions
	Error        string `cbor:"6,keyasint,omitempty" json:"error,omitempty"` // why not, naming the key when it can; "" when applied
	Time         int64  `cbor:"7,keyasint" json:"time"`                      // unix nanoseconds, the agent's wall clock
}

// EncodeConfigStatus validates s and appends its payload (plain CBOR) to dst.
func EncodeConfigStatus(dst []byte, s *ConfigStatus) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return dst, err
	}
	n0 := len(dst)
	pairs := uint64(6)
	if s.Error != "" {
		pairs++
	}
	dst = cbormsg.AppendHead(dst, cbormsg.MajorMap, pairs)
	dst = cbormsg.AppendUint(key(dst, 1), uint64(s.V))
	dst = cbormsg.AppendText(key(dst, 2), s.Device)
	dst = cbormsg.AppendUint(key(dst, 3), s.Version)
	dst = cbormsg.AppendUint(key(dst, 4), s.FleetVersion)
	dst = cbormsg.AppendBool(key(dst, 5), s.Applied)
	if s.Error != "" {
		dst = cbormsg.AppendText(key(dst, 6), s.Error)
	}
	dst = cbormsg.AppendInt(key(dst, 7), s.Time)
	return checkSize("config status", dst, n0, MaxControlBytes)
}

// DecodeConfigStatus decodes and validates a payload published on
// {p}/{d}/config/status.
func DecodeConfigStatus(payload []byte) (*ConfigStatus, error) {
	s := new(ConfigStatus)
	fields := []cbormsg.Field{
		{Key: 1, Dest: &s.V},
		{Key: 2, Dest: &s.Device},
		{Key: 3, Dest: &s.Version},
		{Key: 4, Dest: &s.FleetVersion},
		{Key: 5, Dest: &s.Applied},
		{Key: 6, Dest: &s.Error},
		{Key: 7, Dest: &s.Time},
	}
	if err := decodeCBOR("config status", controlLimits, payload, MaxControlBytes, "wire.ConfigStatus", fields); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate reports the first rule s breaks: V is Version; Device is a valid
// device id; Error is empty when Applied and not empty otherwise, valid
// UTF-8 of at most MaxReasonBytes.
func (s *ConfigStatus) Validate() error {
	const m = "config status"
	if s.V != Version {
		return versionError(m, uint64(s.V))
	}
	if !ValidDeviceID(s.Device) {
		return invalidValue(m, "device", s.Device)
	}
	if s.Applied && s.Error != "" {
		return invalid(m, "error", "must be empty when applied")
	}
	if !s.Applied && s.Error == "" {
		return invalid(m, "error", "must say why when not applied")
	}
	if !validText(s.Error, MaxReasonBytes) {
		return invalid(m, "error", "must be valid UTF-8 of at most "+itoa(MaxReasonBytes)+" bytes")
	}
	return nil
}
