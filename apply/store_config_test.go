package apply

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestStoreKind(t *testing.T) {
	tests := []struct {
		url  string
		kind Kind
		err  string
	}{
		{"sqlite:///var/lib/edgesync/sink.db", KindSQLite, ""},
		{"postgres://sink@db:5432/edgesync", KindPostgres, ""},
		{"postgresql://sink:pw@db/edgesync?sslmode=require", KindPostgres, ""},
		{"postgres://sink@db1:5432,db2:5432/edgesync", KindPostgres, ""},
		{"sqlite://relative.db", "", "want sqlite:///absolute/path.db"},
		{"sqlite:relative.db", "", "want sqlite:///absolute/path.db"},
		{"sqlite:///dir/", "", "want sqlite:///absolute/path.db"},
		{"sqlite:///a.db?mode=ro", "", "no parameters"},
		{"mysql://x/y", "", `unknown scheme "mysql"`},
		{"", "", "must not be empty"},
	}
	for _, tt := range tests {
		kind, err := StoreKind(tt.url)
		if kind != tt.kind || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("StoreKind(%q) = %q, %v; want %q, %q", tt.url, kind, err, tt.kind, tt.err)
		}
	}
	// A password in a refused URL is not repeated.
	if _, err := StoreKind("mysql://u:topsecret@h/db"); err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestStoreConfig(t *testing.T) {
	c := DefaultStoreConfig()
	if err := yaml.Unmarshal([]byte("url: postgres://sink@db/x\ngap_wait: 50ms\nmax_conns: 16\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.GapWait != 50*time.Millisecond || c.MaxConns != 16 {
		t.Errorf("config %+v: %v", c, err)
	}
	c = DefaultStoreConfig()
	if c.GapWait != 2*time.Second {
		t.Errorf("default gap_wait %v", c.GapWait)
	}
	bad := StoreConfig{URL: "sqlite:///x.db", PasswordFile: "/pw", GapWait: -1, MaxConns: -1}
	err := bad.Validate()
	for _, key := range []string{"store.password_file", "store.gap_wait", "store.max_conns"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
	if err := (&StoreConfig{}).Validate(); err == nil || !strings.Contains(err.Error(), "store.url") {
		t.Errorf("empty url: %v", err)
	}
	// PostgreSQL URL parameters are checked at validation, before any
	// connection, and named.
	for url, want := range map[string]string{
		"postgres://u@h/db?sslmode=on":          `store.url: sslmode "on"`,
		"postgres://u@h/db?pool_max_conns=4":    `store.url: URL parameter "pool_max_conns" is not known`,
		"postgres://u:topsecret@h:99999/db":     `store.url: port "99999"`,
		"postgres://u@h1:5432,h2:5433/db":       "",
		"postgres://u@h/db?sslmode=verify-full": "",
	} {
		err := (&StoreConfig{URL: url}).Validate()
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", url, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%s: %v, want an error with %q and no password", url, err, want)
		}
	}
	if got := redactURL("postgres://u:topsecret@h1:5432,h2/db?sslmode=require"); got != "postgres://u:xxxxx@h1:5432,h2/db?sslmode=require" {
		t.Errorf("redactURL of a several-host URL: %s", got)
	}
	if _, err := OpenStore(context.Background(), "mysql://x/y", ""); err == nil {
		t.Error("OpenStore accepted a mysql URL")
	}
	// An unreachable server fails at open, naming no password.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = OpenStore(ctx, "postgres://u:topsecret@127.0.0.1:1/db?connect_timeout=2", "")
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("unreachable server: %v", err)
	}
	if errors.Is(err, ErrInvalidBatch) {
		t.Errorf("unreachable server reported as a batch error: %v", err)
	}
}

// Sink keys whose zero stands for the default are refused when written as
// zero; store.gap_wait: 0 keeps its meaning (do not wait).
func TestSinkConfigExplicitZero(t *testing.T) {
	_, err := ParseSinkConfig([]byte("sink_id: s1\nbroker:\n  url: tcp://127.0.0.1:1883\n  reconnect_max: 0s\nworkers: 0\n"))
	if err == nil {
		t.Fatal("explicit zeros accepted")
	}
	for _, key := range []string{"broker.reconnect_max", "workers"} {
		if !strings.Contains(err.Error(), "config: "+key+": must be > 0") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	c, err := ParseSinkConfig([]byte("sink_id: s1\nbroker:\n  url: tcp://127.0.0.1:1883\nstore:\n  url: sqlite:///tmp/x.db\n  gap_wait: 0s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.GapWait != 0 || c.Workers != 4 {
		t.Fatalf("gap_wait %v, workers %d", c.Store.GapWait, c.Workers)
	}
}
