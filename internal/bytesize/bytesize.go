// Package bytesize parses and prints byte sizes as written in edgesync's
// configuration files: "512MiB", "1GiB" (powers of two), "500MB", "2GB"
// (powers of ten) or a plain number of bytes.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Size is a number of bytes. In YAML it is written as a plain integer or as a
// string with a unit.
type Size int64

// Units, both decimal and binary.
const (
	B   Size = 1
	KB  Size = 1000
	MB  Size = 1000 * KB
	GB  Size = 1000 * MB
	TB  Size = 1000 * GB
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var units = map[string]Size{
	"": B, "b": B,
	"k": KB, "kb": KB, "m": MB, "mb": MB, "g": GB, "gb": GB, "t": TB, "tb": TB,
	"ki": KiB, "kib": KiB, "mi": MiB, "mib": MiB, "gi": GiB, "gib": GiB, "ti": TiB, "tib": TiB,
}

// Parse reads a size such as "256KiB", "1.5GB" or "4096". A leading "-" makes
// it negative (some settings take -1 for "off").
func Parse(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	neg := false
	if strings.HasPrefix(t, "-") {
		neg, t = true, t[1:]
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("size %q: no number", s)
	}
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (use B, KB, MB, GB, KiB, MiB, GiB)", s, t[i:])
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("size %q: %v", s, err)
		}
		if n != 0 && int64(mult) > (1<<63-1)/n {
			return 0, fmt.Errorf("size %q: too large", s)
		}
		if neg {
			return -Size(n) * mult, nil
		}
		return Size(n) * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %v", s, err)
	}
	v := f * float64(mult)
	if v >= 1<<63 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	if neg {
		v = -v
	}
	return Size(v), nil
}

// String prints the size with the largest binary unit that divides it.
func (s Size) String() string {
	switch {
	case s != 0 && s%TiB == 0:
		return fmt.Sprintf("%dTiB", s/TiB)
	case s != 0 && s%GiB == 0:
		return fmt.Sprintf("%dGiB", s/GiB)
	case s != 0 && s%MiB == 0:
		return fmt.Sprintf("%dMiB", s/MiB)
	case s != 0 && s%KiB == 0:
		return fmt.Sprintf("%dKiB", s/KiB)
	}
	return strconv.FormatInt(int64(s), 10)
}

// UnmarshalYAML accepts an integer or a string with a unit.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	// A *yaml.TypeError lets the decoder go on and report every problem.
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a size must be a number or a string like 256KiB", n.Line)}}
	}
	v, err := Parse(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*s = v
	return nil
}

// MarshalYAML writes the size in its String form.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }
