package wire

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on the strings inside messages.
const (
	// MaxNameLen is the longest device id, stream, schema name, key id, boot
	// id and command id, in bytes.
	MaxNameLen = 64
	// MaxIDRunes is the longest producer idempotency key (Record.ID), in
	// characters (runes); it must be valid UTF-8.
	MaxIDRunes = 128
	// MaxKeyBytes is the longest record key, in bytes; it must be valid UTF-8.
	MaxKeyBytes = 1024
	// MaxReasonBytes is the longest free text (a parked range's reason, a
	// config status error, a command argument value), in bytes.
	MaxReasonBytes = 1024
	// MaxSinkIDBytes is the longest sink id in an ack, in bytes.
	MaxSinkIDBytes = 128
)

// FleetID is the reserved name that stands for all devices in topics and in
// Config.Target.
const FleetID = "_fleet"

// validName reports whether s is 1..MaxNameLen characters of [A-Za-z0-9._-].
func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ValidDeviceID reports whether s is a valid device id: 1..64 characters of
// [A-Za-z0-9._-], not starting with "_" (reserved for the fleet).
func ValidDeviceID(s string) bool {
	return validName(s) && s[0] != '_'
}

// ValidStream reports whether s is a valid stream name: 1..64 characters of
// [A-Za-z0-9._-].
func ValidStream(s string) bool { return validName(s) }

// ValidSchemaName reports whether s is a valid schema name: 1..64 characters
// of [A-Za-z0-9._-].
func ValidSchemaName(s string) bool { return validName(s) }

// ValidKeyID reports whether s is a valid signing key id: 1..64 characters
// of [A-Za-z0-9._-].
func ValidKeyID(s string) bool { return validName(s) }

// ParseSchema splits "NAME@VERSION" (for example "reading@2") into its name
// and version. NAME is 1..64 characters of [A-Za-z0-9._-]; VERSION is a
// positive decimal integer that fits in 32 bits, without sign or leading
// zeros, so that FormatSchema(ParseSchema(s)) == s. The empty string means
// "no schema" and yields ("", 0, nil). An error is a *FieldError matching
// ErrInvalid, such as `wire: schema: "reading": want NAME@VERSION`.
func ParseSchema(s string) (name string, version uint32, err error) {
	if s == "" {
		return "", 0, nil
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", 0, invalid("schema", "", quote(s)+": want NAME@VERSION")
	}
	name, v := s[:at], s[at+1:]
	if !ValidSchemaName(name) {
		return "", 0, invalid("schema", "", quote(s)+": name must be 1..64 characters of [A-Za-z0-9._-]")
	}
	if v == "" || v[0] < '1' || v[0] > '9' {
		return "", 0, invalid("schema", "", quote(s)+": version must be a positive integer without leading zeros")
	}
	n, perr := strconv.ParseUint(v, 10, 32)
	if perr != nil {
		return "", 0, invalid("schema", "", quote(s)+": version must be a positive integer below 2^32")
	}
	return name, uint32(n), nil
}

// FormatSchema is the inverse of ParseSchema: "reading@2", or "" when name is
// empty.
func FormatSchema(name string, version uint32) string {
	if name == "" {
		return ""
	}
	return name + "@" + strconv.FormatUint(uint64(version), 10)
}

// ValidEpoch reports whether e is a valid epoch: 1..2^63-1, so that it fits a
// signed 64-bit column.
func ValidEpoch(e uint64) bool { return e >= 1 && e <= math.MaxInt64 }

// validText reports whether s is valid UTF-8 of at most max bytes.
func validText(s string, max int) bool {
	return len(s) <= max && utf8.ValidString(s)
}
