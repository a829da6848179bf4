package yamlcfg

import (
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/bytesize"
)

type cfg struct {
	Name   string `yaml:"name"`
	Outbox struct {
		MaxBytes bytesize.Size `yaml:"max_bytes"`
		Linger   time.Duration `yaml:"linger"`
	} `yaml:"outbox"`
	Items []struct {
		N int `yaml:"n"`
	} `yaml:"items"`
}

func TestEveryProblemNamed(t *testing.T) {
	src := "name: x\noutbox:\n  max_bytes: lots\n  linger: soon\nitems:\n  - n: one\nbogus: 1\n"
	var c cfg
	err := Decode([]byte(src), &c)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"config: outbox.max_bytes (line 3):",
		"config: outbox.linger (line 4):",
		"config: items[0].n (line 6):",
		"config: bogus (line 7): unknown key",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != 4 {
		t.Errorf("%d lines, want 4:\n%s", n, msg)
	}
}

func TestGoodAndEmpty(t *testing.T) {
	var c cfg
	if err := Decode([]byte("name: a\noutbox:\n  max_bytes: 1MiB\n  linger: 20ms\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Outbox.MaxBytes != bytesize.MiB || c.Outbox.Linger != 20*time.Millisecond {
		t.Fatalf("decoded %+v", c)
	}
	if err := Decode(nil, &c); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
	if err := Decode([]byte("name: [\n"), &c); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
		t.Fatalf("syntax error: %v", err)
	}
}
