package apply

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestPolicyYAML(t *testing.T) {
	const doc = `
on_unknown_schema: pause
streams:
  temps: {mode: log, schemas: ["reading@1", "reading@2"]}
  inventory: {mode: state}
`
	var p Policy
	if err := yaml.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if p.OnUnknownSchema != OnUnknownPause || !p.pause() {
		t.Errorf("on_unknown_schema %q", p.OnUnknownSchema)
	}
	if got := p.mode("inventory"); got != ModeState {
		t.Errorf("inventory mode %q, want state", got)
	}
	if got := p.mode("temps"); got != ModeLog {
		t.Errorf("temps mode %q, want log", got)
	}
	if got := p.mode("unlisted"); got != ModeLog {
		t.Errorf("unlisted mode %q, want log", got)
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		errs []string // substrings, one per expected problem; none: valid
	}{
		{"zero", Policy{}, nil},
		{"default", DefaultPolicy(), nil},
		{"good", Policy{OnUnknownSchema: "park", Streams: map[string]StreamPolicy{
			"a.b-c_d": {Mode: ModeState, Schemas: []string{"x@1", "x@4294967295"}},
			"e":       {},
		}}, nil},
		{"bad on_unknown", Policy{OnUnknownSchema: "drop"}, []string{`on_unknown_schema: "drop": must be park or pause`}},
		{"bad mode", Policy{Streams: map[string]StreamPolicy{"temps": {Mode: "table"}}},
			[]string{`streams.temps.mode: "table"`}},
		{"bad schemas", Policy{Streams: map[string]StreamPolicy{"temps": {Schemas: []string{
			"reading@1", "reading@0", "reading", "@2", "re ading@1", "reading@01", "reading@4294967296", "reading@1",
		}}}}, []string{
			`streams.temps.schemas[1]: "reading@0"`,
			`streams.temps.schemas[2]: "reading": must be NAME@VERSION`,
			`streams.temps.schemas[3]: "@2": schema name must not be empty`,
			`streams.temps.schemas[4]: "re ading@1"`,
			`streams.temps.schemas[5]: "reading@01"`,
			`streams.temps.schemas[6]: "reading@4294967296"`,
			`streams.temps.schemas[7]: "reading@1": listed twice`,
		}},
		{"bad stream name", Policy{Streams: map[string]StreamPolicy{"te/mps": {}, strings.Repeat("s", 65): {}}},
			[]string{`streams: "te/mps"`, `must be at most 64 characters`}},
		{"every problem", Policy{OnUnknownSchema: "x", Streams: map[string]StreamPolicy{"a": {Mode: "y", Schemas: []string{"z"}}}},
			[]string{"on_unknown_schema", "streams.a.mode", "streams.a.schemas[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got valid, want %d problems", len(tt.errs))
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.errs) {
				t.Errorf("got %d problems, want %d:\n%v", len(lines), len(tt.errs), err)
			}
			for _, w := range tt.errs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPolicyAccepts(t *testing.T) {
	p := &Policy{Streams: map[string]StreamPolicy{
		"temps": {Schemas: []string{"reading@1", "reading@12"}},
		"any":   {Mode: ModeState},
	}}
	tests := []struct {
		stream, name string
		version      uint32
		ok           bool
	}{
		{"temps", "reading", 1, true},
		{"temps", "reading", 12, true},
		{"temps", "reading", 2, false},
		{"temps", "readin", 1, false},
		{"temps", "reading1", 2, false},
		{"temps", "", 0, false},
		{"any", "whatever", 9, true},
		{"any", "", 0, true},
		{"unlisted", "x", 3, true},
	}
	for _, tt := range tests {
		ok, why := p.accepts(tt.stream, tt.name, tt.version)
		if ok != tt.ok {
			t.Errorf("accepts(%s, %s@%d) = %v, want %v", tt.stream, tt.name, tt.version, ok, tt.ok)
		}
		if !ok && !strings.Contains(why, tt.stream) {
			t.Errorf("reason %q does not name the stream", why)
		}
	}
	var nilPolicy *Policy
	if ok, _ := nilPolicy.accepts("temps", "reading", 7); !ok || nilPolicy.mode("x") != ModeLog || nilPolicy.pause() {
		t.Error("a nil policy must accept everything in log mode and park")
	}
}
