package pgwire

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// clearPGEnv unsets every PG* variable ParseURL reads, for the test.
func clearPGEnv(t *testing.T) {
	for _, k := range []string{"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE",
		"PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGCONNECT_TIMEOUT", "PGAPPNAME", "PGPASSFILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("HOME", t.TempDir()) // no ~/.pgpass
}

// noLocalSocket points the default socket lookup at an empty directory.
func noLocalSocket(t *testing.T) {
	old := socketDirs
	socketDirs = []string{t.TempDir()}
	t.Cleanup(func() { socketDirs = old })
}

func TestParseURL(t *testing.T) {
	clearPGEnv(t)
	noLocalSocket(t)
	tests := []struct {
		name, url string
		want      Config
		wantErr   string
	}{
		{name: "full", url: "postgres://u:p%40ss@db.example:6432/sinkdb?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=5&application_name=sink",
			want: Config{Hosts: []Host{{"db.example", 6432}}, User: "u", Password: "p@ss", Database: "sinkdb", SSLMode: "verify-full",
				SSLRootCert: "/ca.pem", ConnectTimeout: 5 * time.Second, Params: map[string]string{"application_name": "sink"}}},
		{name: "defaults", url: "postgresql://u@/",
			want: Config{Hosts: []Host{{"localhost", 5432}}, User: "u", Database: "u", SSLMode: "prefer", Params: map[string]string{}}},
		{name: "ipv6 and several hosts", url: "postgres://u@[::1]:5433,h2,h3:7/d",
			want: Config{Hosts: []Host{{"::1", 5433}, {"h2", 5432}, {"h3", 7}}, User: "u", Database: "d", SSLMode: "prefer", Params: map[string]string{}}},
		{name: "unix socket by query", url: "postgres://u@/d?host=/var/run/postgresql&port=5433",
			want: Config{Hosts: []Host{{"/var/run/postgresql", 5433}}, User: "u", Database: "d", SSLMode: "prefer", Params: map[string]string{}}},
		{name: "short timeout is 2s", url: "postgres://u@h/d?connect_timeout=1&options=-c%20search_path%3Dx",
			want: Config{Hosts: []Host{{"h", 5432}}, User: "u", Database: "d", SSLMode: "prefer", ConnectTimeout: 2 * time.Second,
				Params: map[string]string{"options": "-c search_path=x"}}},
		{name: "client certificate", url: "postgres://u@h/d?sslmode=require&sslcert=/c.pem&sslkey=/k.pem",
			want: Config{Hosts: []Host{{"h", 5432}}, User: "u", Database: "d", SSLMode: "require", SSLCert: "/c.pem", SSLKey: "/k.pem", Params: map[string]string{}}},
		{name: "unknown parameter", url: "postgres://u@h/d?pool_max_conns=4", wantErr: `URL parameter "pool_max_conns" is not known`},
		{name: "bad sslmode", url: "postgres://u@h/d?sslmode=on", wantErr: `sslmode "on"`},
		{name: "bad port", url: "postgres://u@h:99999/d", wantErr: `port "99999"`},
		{name: "bad query port", url: "postgres://u@h/d?port=x", wantErr: `port "x"`},
		{name: "bad timeout", url: "postgres://u@h/d?connect_timeout=-1", wantErr: "connect_timeout"},
		{name: "cert without key", url: "postgres://u@h/d?sslcert=/c.pem", wantErr: "sslcert and sslkey"},
		{name: "other scheme", url: "mysql://u@h/d", wantErr: `scheme "mysql"`},
		{name: "unclosed bracket", url: "postgres://u@[::1/d", wantErr: "missing ]"},
		{name: "encoded socket directory", url: "postgres://u@%2Fvar%2Frun%2Fpostgresql/d",
			want: Config{Hosts: []Host{{"/var/run/postgresql", 5432}}, User: "u", Database: "d", SSLMode: "prefer", Params: map[string]string{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseURL(tc.url)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(os.Getenv("HOME"), ".pgpass"); got.PassFile != want {
				t.Errorf("PassFile %q, want %q", got.PassFile, want)
			}
			got.PassFile = ""
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestParseURLHidesPassword(t *testing.T) {
	_, err := ParseURL("postgres://u:s3cret@h:x/d")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v: want an error without the password", err)
	}
}

func TestParseURLEnvironment(t *testing.T) {
	clearPGEnv(t)
	noLocalSocket(t)
	t.Setenv("PGHOST", "envhost")
	t.Setenv("PGPORT", "6000")
	t.Setenv("PGUSER", "envuser")
	t.Setenv("PGPASSWORD", "envpw")
	t.Setenv("PGSSLMODE", "require")
	t.Setenv("PGAPPNAME", "app")
	got, err := ParseURL("postgres:///d")
	if err != nil {
		t.Fatal(err)
	}
	got.PassFile = ""
	want := Config{Hosts: []Host{{"envhost", 6000}}, User: "envuser", Password: "envpw", Database: "d", SSLMode: "require",
		Params: map[string]string{"application_name": "app"}}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("got  %+v\nwant %+v", *got, want)
	}
	// The URL wins over the environment.
	got, err = ParseURL("postgres://u:p@h:1/d?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if got.Hosts[0] != (Host{"h", 1}) || got.User != "u" || got.Password != "p" || got.SSLMode != "disable" {
		t.Errorf("URL did not win over the environment: %+v", *got)
	}
}

func TestPassFile(t *testing.T) {
	clearPGEnv(t)
	dir := t.TempDir()
	pass := filepath.Join(dir, "pgpass")
	if err := os.WriteFile(pass, []byte("# host:port:db:user:password\n"+
		"other:5432:*:u:no\n"+
		"h:5432:d:u:colon\\:and\\\\backslash\n"+
		"*:*:*:*:fallback\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSFILE", pass)
	for url, want := range map[string]string{
		"postgres://u@h/d":                     `colon:and\backslash`,
		"postgres://u@h/other":                 "fallback",
		"postgres://u:given@h/d":               "given",
		"postgres://u@/d?host=/run/postgresql": "fallback", // a socket is "localhost"
	} {
		cfg, err := ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.passwordFor(cfg.Hosts[0]); got != want {
			t.Errorf("%s: password %q, want %q", url, got, want)
		}
	}
	// Each host its own line.
	cfg, err := ParseURL("postgres://u@other,h/d")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := cfg.passwordFor(cfg.Hosts[0]), cfg.passwordFor(cfg.Hosts[1]); a != "no" || b != `colon:and\backslash` {
		t.Errorf("several hosts: passwords %q and %q, want each host's", a, b)
	}
}

func TestCommandTag(t *testing.T) {
	for tag, want := range map[CommandTag]int64{"INSERT 0 5": 5, "UPDATE 12": 12, "BEGIN": 0, "": 0, "SELECT 1": 1} {
		if got := tag.RowsAffected(); got != want {
			t.Errorf("%q: %d, want %d", tag, got, want)
		}
	}
}

// TestParseURLPasswordNotEncoded: a password with / ? # or @ left as is
// makes an error that quotes none of it.
func TestParseURLPasswordNotEncoded(t *testing.T) {
	clearPGEnv(t)
	for _, url := range []string{
		"postgres://u:Qx1/Zk9@host/db",
		"postgres://u:Qx1#Zk9@host/db",
		"postgres://u:Qx1?Zk9@host/db",
		"postgres://u:Qx1 Zk9@host:x/db",
	} {
		_, err := ParseURL(url)
		if err == nil {
			t.Errorf("%s: accepted", url)
			continue
		}
		if strings.Contains(err.Error(), "Qx1") || strings.Contains(err.Error(), "Zk9") {
			t.Errorf("%s: error quotes the password: %v", url, err)
		}
	}
}
