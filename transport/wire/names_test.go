package wire

import (
	"errors"
	"strings"
	"testing"
)

func TestValidDeviceID(t *testing.T) {
	cases := []struct {
		id   string
		want bool
	}{
		{"gw-0001", true},
		{"a", true},
		{"A.b_c-9", true},
		{"-leading-dash", true},
		{".", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"_fleet", false},
		{"_x", false},
		{"gw 1", false},
		{"gw/1", false},
		{"gw+1", false},
		{"gw#1", false},
		{"gé", false},
		{"gw\x00", false},
	}
	for _, c := range cases {
		if got := ValidDeviceID(c.id); got != c.want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", c.id, got, c.want)
		}
		// A stream follows the same rule, except that "_" may start it.
		want := c.want || (strings.HasPrefix(c.id, "_") && len(c.id) > 1)
		if got := ValidStream(c.id); got != want {
			t.Errorf("ValidStream(%q) = %v, want %v", c.id, got, want)
		}
	}
}

func TestParseSchema(t *testing.T) {
	cases := []struct {
		in      string
		name    string
		version uint32
		err     string
	}{
		{"reading@2", "reading", 2, ""},
		{"reading@1", "reading", 1, ""},
		{"a.b-c_d@4294967295", "a.b-c_d", 4294967295, ""},
		{"", "", 0, ""},
		{"reading", "", 0, `wire: schema: "reading": want NAME@VERSION`},
		{"reading@", "", 0, `wire: schema: "reading@": version must be a positive integer without leading zeros`},
		{"reading@0", "", 0, `wire: schema: "reading@0": version must be a positive integer without leading zeros`},
		{"reading@01", "", 0, `wire: schema: "reading@01": version must be a positive integer without leading zeros`},
		{"reading@+1", "", 0, `wire: schema: "reading@+1": version must be a positive integer without leading zeros`},
		{"reading@1x", "", 0, `wire: schema: "reading@1x": version must be a positive integer below 2^32`},
		{"reading@4294967296", "", 0, `wire: schema: "reading@4294967296": version must be a positive integer below 2^32`},
		{"@1", "", 0, `wire: schema: "@1": name must be 1..64 characters of [A-Za-z0-9._-]`},
		{"a@b@1", "", 0, `wire: schema: "a@b@1": name must be 1..64 characters of [A-Za-z0-9._-]`},
		{"read ing@1", "", 0, `wire: schema: "read ing@1": name must be 1..64 characters of [A-Za-z0-9._-]`},
		{strings.Repeat("n", 65) + "@1", "", 0, `wire: schema: "` + strings.Repeat("n", 65) + `@1": name must be 1..64 characters of [A-Za-z0-9._-]`},
	}
	for _, c := range cases {
		name, version, err := ParseSchema(c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err || !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseSchema(%q): got %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || name != c.name || version != c.version {
			t.Errorf("ParseSchema(%q) = %q, %d, %v; want %q, %d", c.in, name, version, err, c.name, c.version)
		}
		if got := FormatSchema(name, version); got != c.in {
			t.Errorf("FormatSchema(%q, %d) = %q, want %q", name, version, got, c.in)
		}
	}
}

func TestTopics(t *testing.T) {
	const p, d = "acme/edgesync", "gw-0001"
	cases := []struct{ got, want string }{
		{UpTopic(p, d), "acme/edgesync/gw-0001/up"},
		{AckTopic(p, d), "acme/edgesync/gw-0001/ack"},
		{StateTopic(p, d), "acme/edgesync/gw-0001/state"},
		{ConfigTopic(p, d), "acme/edgesync/gw-0001/config"},
		{FleetConfigTopic(p), "acme/edgesync/_fleet/config"},
		{ConfigStatusTopic(p, d), "acme/edgesync/gw-0001/config/status"},
		{CmdTopic(p, d), "acme/edgesync/gw-0001/cmd"},
		{TopicFilter(p, SuffixUp), "acme/edgesync/+/up"},
		{SharedFilter("sinks", TopicFilter(p, SuffixUp)), "$share/sinks/acme/edgesync/+/up"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestDeviceFromTopic(t *testing.T) {
	cases := []struct {
		prefix, topic, suffix string
		want                  string // "" for an error
	}{
		{"edgesync", "edgesync/gw-0001/up", SuffixUp, "gw-0001"},
		{"acme/edgesync", "acme/edgesync/gw-0001/config/status", SuffixConfigStatus, "gw-0001"},
		{"edgesync", "edgesync/gw-0001/config/status", SuffixConfig, ""},
		{"edgesync", "edgesync/_fleet/config", SuffixConfig, ""},
		{"edgesync", "edgesync/gw-0001/ack", SuffixUp, ""},
		{"edgesync", "other/gw-0001/up", SuffixUp, ""},
		{"edgesync", "edgesync/a/b/up", SuffixUp, ""},
		{"edgesync", "edgesync//up", SuffixUp, ""},
		{"edgesync", "edgesync/up", SuffixUp, ""},
		{"edgesync", "edgesyncx/gw/up", SuffixUp, ""},
	}
	for _, c := range cases {
		got, err := DeviceFromTopic(c.prefix, c.topic, c.suffix)
		if c.want == "" {
			if err == nil || !errors.Is(err, ErrTopic) {
				t.Errorf("DeviceFromTopic(%q, %q, %q) = %q, %v; want ErrTopic", c.prefix, c.topic, c.suffix, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("DeviceFromTopic(%q, %q, %q) = %q, %v; want %q", c.prefix, c.topic, c.suffix, got, err, c.want)
		}
	}
	_, err := DeviceFromTopic("edgesync", "edgesync/a b/up", SuffixUp)
	if want := `wire: topic: "edgesync/a b/up" is not "edgesync/{device}/up"`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestValidTopicPrefix(t *testing.T) {
	for p, want := range map[string]bool{
		"edgesync": true, "acme/edgesync": true, "a b": true,
		"": false, "/edgesync": false, "edgesync/": false, "a//b": false, "a/+": false,
		"#": false, "$SYS": false, "a\x00": false, strings.Repeat("p", 129): false,
	} {
		if got := ValidTopicPrefix(p); got != want {
			t.Errorf("ValidTopicPrefix(%q) = %v, want %v", p, got, want)
		}
	}
}
