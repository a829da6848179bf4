package apply

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// StreamMode says how the sink stores a stream's records.
type StreamMode string

// The stream modes.
const (
	// ModeLog inserts every record as a row of edgesync_log.
	ModeLog StreamMode = "log"
	// ModeState keeps one row per (device_id, stream, key) in edgesync_state:
	// the record with the highest (epoch_gen, seq) wins, a delete leaves a
	// tombstone.
	ModeState StreamMode = "state"
)

// What the sink does with a record whose schema its policy does not accept.
const (
	// OnUnknownPark stores the record in edgesync_parked and acknowledges it,
	// so the device moves on. This is the default.
	OnUnknownPark = "park"
	// OnUnknownPause stops applying the device's epoch before the record and
	// answers with status paused until the policy accepts the schema.
	OnUnknownPause = "pause"
)

// StreamPolicy is the sink's policy for one stream (a value of the sink
// configuration's streams map).
type StreamPolicy struct {
	// Mode is how the stream is stored: log or state. Zero ("") means log.
	Mode StreamMode `yaml:"mode"`
	// Schemas lists the accepted schemas as NAME@VERSION ("reading@2").
	// Empty (the default) accepts any schema, and records without a schema.
	// When it is not empty, a record without a schema is not accepted either.
	Schemas []string `yaml:"schemas"`
}

// Policy is the part of the sink configuration that decides how records are
// applied. The sink configuration embeds it inline (the keys streams and
// on_unknown_schema sit at the top level of the sink's YAML).
//
// A Policy is read-only once in use: the runner swaps the whole value (on
// SIGHUP) and passes the current one to every Store.Apply call, so Apply never
// sees a half-updated policy. The zero Policy is valid: every stream in log
// mode, any schema accepted.
type Policy struct {
	// Streams maps a stream name to its policy. A stream not listed is
	// accepted in log mode with any schema. Default: empty.
	Streams map[string]StreamPolicy `yaml:"streams"`
	// OnUnknownSchema is park or pause. Zero ("") means park.
	OnUnknownSchema string `yaml:"on_unknown_schema"`
}

// DefaultPolicy returns the policy used when the configuration says nothing:
// every stream in log mode with any schema, unknown schemas parked.
func DefaultPolicy() Policy {
	return Policy{OnUnknownSchema: OnUnknownPark}
}

// Validate reports every problem of p at once, each naming its key the way it
// is written in the sink configuration (for example
// `streams.temps.schemas[1]: "reading@0": version must be a positive integer`).
func (p *Policy) Validate() error {
	var errs []error
	switch p.OnUnknownSchema {
	case "", OnUnknownPark, OnUnknownPause:
	default:
		errs = append(errs, fmt.Errorf("on_unknown_schema: %q: must be park or pause", p.OnUnknownSchema))
	}
	for _, name := range slices.Sorted(maps.Keys(p.Streams)) {
		sp := p.Streams[name]
		key := "streams." + name
		if err := checkName(name, 64); err != nil {
			errs = append(errs, fmt.Errorf("streams: %q: stream name %w", name, err))
		}
		switch sp.Mode {
		case "", ModeLog, ModeState:
		default:
			errs = append(errs, fmt.Errorf("%s.mode: %q: must be log or state", key, sp.Mode))
		}
		seen := make(map[string]int, len(sp.Schemas))
		for i, s := range sp.Schemas {
			if err := checkSchema(s); err != nil {
				errs = append(errs, fmt.Errorf("%s.schemas[%d]: %q: %w", key, i, s, err))
				continue
			}
			if j, dup := seen[s]; dup {
				errs = append(errs, fmt.Errorf("%s.schemas[%d]: %q: listed twice (also at [%d])", key, i, s, j))
				continue
			}
			seen[s] = i
		}
	}
	return errors.Join(errs...)
}

// checkSchema checks the NAME@VERSION form: NAME [A-Za-z0-9._-]+, VERSION a
// positive integer that fits 32 bits.
func checkSchema(s string) error {
	name, ver, ok := strings.Cut(s, "@")
	if !ok {
		return errors.New("must be NAME@VERSION")
	}
	if err := checkName(name, 64); err != nil {
		return fmt.Errorf("schema name %w", err)
	}
	v, err := strconv.ParseUint(ver, 10, 32)
	if err != nil || v == 0 || ver[0] == '0' {
		return errors.New("version must be a positive integer without leading zeros")
	}
	return nil
}

// checkName checks [A-Za-z0-9._-]+, at most max bytes.
func checkName(s string, max int) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if len(s) > max {
		return fmt.Errorf("must be at most %d characters", max)
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return fmt.Errorf("has %q at %d: only A-Z a-z 0-9 . _ - are allowed", s[i], i)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// mode returns the mode of stream under p (log when p is nil or the stream is
// not listed).
func (p *Policy) mode(stream string) StreamMode {
	if p == nil {
		return ModeLog
	}
	if sp, ok := p.Streams[stream]; ok && sp.Mode == ModeState {
		return ModeState
	}
	return ModeLog
}

// pause reports whether unknown schemas pause the device rather than park.
func (p *Policy) pause() bool {
	return p != nil && p.OnUnknownSchema == OnUnknownPause
}

// accepts reports whether p accepts a record of stream with schema
// name@version (name "" for a record without a schema); when it does not, why
// says why in words fit for edgesync_parked.reason.
func (p *Policy) accepts(stream, name string, version uint32) (ok bool, why string) {
	if p == nil {
		return true, ""
	}
	sp, listed := p.Streams[stream]
	if !listed || len(sp.Schemas) == 0 {
		return true, ""
	}
	if name != "" {
		var buf [10]byte
		ver := strconv.AppendUint(buf[:0], uint64(version), 10)
		for _, s := range sp.Schemas {
			// s is NAME@VERSION (Validate); compare without allocating.
			if len(s) == len(name)+1+len(ver) && s[:len(name)] == name && s[len(name)] == '@' && s[len(name)+1:] == string(ver) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("unknown schema %s@%d for stream %s (accepted: %s)",
			name, version, stream, strings.Join(sp.Schemas, ", "))
	}
	return false, fmt.Sprintf("record without schema for stream %s (accepted: %s)",
		stream, strings.Join(sp.Schemas, ", "))
}
