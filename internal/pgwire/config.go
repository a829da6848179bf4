package pgwire

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config says where and how to connect. ParseURL fills it from a URL, the
// PG* environment variables and ~/.pgpass.
type Config struct {
	// Hosts are tried in order until one accepts the connection; a host
	// that starts with "/" is a directory holding the server's unix socket.
	Hosts []Host
	User  string
	// Password, when empty, is not sent; a server that asks for one gets
	// an error naming where it could come from.
	Password string
	// PassFile is the password file consulted, per host, when Password is
	// empty: passfile=, PGPASSFILE, by default ~/.pgpass.
	PassFile string
	Database string
	// SSLMode is disable, allow, prefer, require, verify-ca or verify-full,
	// as in libpq. Default prefer.
	SSLMode     string
	SSLRootCert string // CA file for verify-ca and verify-full; "system": the system's roots
	SSLCert     string // client certificate (mutual TLS)
	SSLKey      string
	// ConnectTimeout bounds each connection attempt. Zero: none (the
	// caller's context still applies).
	ConnectTimeout time.Duration
	// Params are sent in the startup message: application_name, options.
	Params map[string]string
}

// Host is one server address.
type Host struct {
	Name string // name, address, or socket directory
	Port int
}

func (h Host) String() string {
	if strings.HasPrefix(h.Name, "/") {
		return filepath.Join(h.Name, ".s.PGSQL."+strconv.Itoa(h.Port))
	}
	return net.JoinHostPort(h.Name, strconv.Itoa(h.Port))
}

// The URL query parameters ParseURL knows (libpq's names).
var urlParams = []string{"host", "port", "dbname", "user", "password", "sslmode", "sslrootcert",
	"sslcert", "sslkey", "connect_timeout", "application_name", "options", "passfile"}

var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// ParseURL parses postgres://[user[:password]@][host][:port][,host2[:port2]...][/dbname][?param=value&...].
// The query parameters are libpq's: host, port, dbname, user, password,
// sslmode, sslrootcert, sslcert, sslkey, connect_timeout (seconds),
// application_name, options, passfile; any other is an error that names
// it. What the URL leaves out comes from PGHOST, PGPORT, PGDATABASE,
// PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY,
// PGCONNECT_TIMEOUT, PGAPPNAME and PGPASSFILE, and then from the defaults:
// host the local server's unix socket in /var/run/postgresql or /tmp when
// one listens on the port (as libpq and pgx), else localhost; port 5432;
// user the operating system user; database the user's name; sslmode
// prefer. Without a password, the password file (PGPASSFILE, by default
// ~/.pgpass) is consulted per host, as libpq does.
func ParseURL(s string) (*Config, error) {
	// url.Parse takes one host; libpq URLs may list several (h1:5432,h2)
	// or a percent-encoded socket directory: take the hosts out first.
	hostport, s, err := cutHosts(s)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the URL, password and all: keep only the
		// reason, and not even that when it may quote the user info.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if strings.Contains(s, "@") {
			return nil, errors.New("pgwire: URL is not valid: percent-encode special characters in the user name and password")
		}
		return nil, fmt.Errorf("pgwire: URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("pgwire: URL scheme %q: want postgres:// or postgresql://", u.Scheme)
	}
	v := map[string]string{}
	if u.User != nil {
		v["user"] = u.User.Username()
		if pw, ok := u.User.Password(); ok {
			v["password"] = pw
		}
	}
	if hostport != "" {
		v["hostport"] = hostport
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		v["dbname"] = db
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("pgwire: URL query: %w", err)
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !contains(urlParams, k) {
			return nil, fmt.Errorf("pgwire: URL parameter %q is not known; known: %s", k, strings.Join(urlParams, ", "))
		}
		v[k] = q[k][len(q[k])-1]
	}
	env := map[string]string{
		"host": "PGHOST", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
		"password": "PGPASSWORD", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
		"sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "connect_timeout": "PGCONNECT_TIMEOUT",
		"application_name": "PGAPPNAME", "passfile": "PGPASSFILE",
	}
	for k, name := range env {
		if _, ok := v[k]; !ok {
			if e, ok := os.LookupEnv(name); ok && e != "" {
				if k == "host" && v["hostport"] != "" {
					continue
				}
				v[k] = e
			}
		}
	}
	return build(v)
}

func build(v map[string]string) (*Config, error) {
	c := &Config{Params: map[string]string{}}
	defPort := 5432
	if p, ok := v["port"]; ok {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("pgwire: port %q: want a number from 1 to 65535", p)
		}
		defPort = n
	}
	var err error
	switch {
	case v["host"] != "":
		// host= (query or PGHOST) wins over the URL's authority, as in libpq.
		for _, h := range strings.Split(v["host"], ",") {
			c.Hosts = append(c.Hosts, Host{Name: h, Port: defPort})
		}
	case v["hostport"] != "":
		if c.Hosts, err = parseHostPorts(v["hostport"], defPort); err != nil {
			return nil, err
		}
	default:
		c.Hosts = []Host{defaultHost(defPort)}
	}
	c.User = v["user"]
	if c.User == "" {
		if u, err := user.Current(); err == nil {
			c.User = u.Username
		}
	}
	if c.User == "" {
		return nil, errors.New("pgwire: no user: set one in the URL (postgres://user@host/db) or PGUSER")
	}
	c.Database = v["dbname"]
	if c.Database == "" {
		c.Database = c.User
	}
	c.Password = v["password"]
	c.SSLMode = v["sslmode"]
	if c.SSLMode == "" {
		c.SSLMode = "prefer"
	}
	if !contains(sslModes, c.SSLMode) {
		return nil, fmt.Errorf("pgwire: sslmode %q: want one of %s", c.SSLMode, strings.Join(sslModes, ", "))
	}
	c.SSLRootCert, c.SSLCert, c.SSLKey = v["sslrootcert"], v["sslcert"], v["sslkey"]
	if (c.SSLCert == "") != (c.SSLKey == "") {
		return nil, errors.New("pgwire: sslcert and sslkey go together")
	}
	if t, ok := v["connect_timeout"]; ok {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("pgwire: connect_timeout %q: want whole seconds >= 0", t)
		}
		// libpq: a timeout under 2 seconds is taken as 2.
		if n > 0 {
			c.ConnectTimeout = time.Duration(max(n, 2)) * time.Second
		}
	}
	for _, k := range []string{"application_name", "options"} {
		if s := v[k]; s != "" {
			c.Params[k] = s
		}
	}
	c.PassFile = v["passfile"]
	if c.PassFile == "" {
		if home, err := os.UserHomeDir(); err == nil {
			c.PassFile = filepath.Join(home, ".pgpass")
		}
	}
	return c, nil
}

// socketDirs are where a local server's unix socket is looked for when the
// URL names no host: Debian's directory, then PostgreSQL's own default.
var socketDirs = []string{"/var/run/postgresql", "/tmp"}

// defaultHost is the local server's unix socket when one listens on port
// (as libpq and pgx connect by default), otherwise localhost over TCP.
func defaultHost(port int) Host {
	for _, d := range socketDirs {
		if fi, err := os.Stat(filepath.Join(d, ".s.PGSQL."+strconv.Itoa(port))); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return Host{Name: d, Port: port}
		}
	}
	return Host{Name: "localhost", Port: port}
}

// cutHosts returns the host list of a URL and the URL with it left out.
func cutHosts(s string) (hosts, rest string, err error) {
	scheme, after, ok := strings.Cut(s, "://")
	if !ok {
		return "", s, nil
	}
	// A password with / ? # or @ not percent-encoded would be cut in the
	// wrong place, and pieces of it would end up in error messages.
	const encode = "percent-encode / ? # @ and : in the user name and password (%2F %3F %23 %40 %3A)"
	if strings.Contains(after, "#") {
		return "", "", errors.New("pgwire: URL: a # in it: " + encode)
	}
	end := strings.IndexAny(after, "/?")
	if end < 0 {
		end = len(after)
	}
	path, query, _ := strings.Cut(after[end:], "?")
	if strings.Contains(path, "@") || (end < len(after) && after[end] == '?' && strings.Contains(query, "@") && strings.Contains(query, "/")) {
		return "", "", errors.New("pgwire: URL: an @ past the host: " + encode)
	}
	auth := after[:end]
	at := strings.LastIndexByte(auth, '@')
	hosts = auth[at+1:]
	if hosts, err = url.PathUnescape(hosts); err != nil {
		return "", "", fmt.Errorf("pgwire: URL host: %w", err)
	}
	return hosts, scheme + "://" + auth[:at+1] + after[end:], nil
}

// parseHostPorts parses "h1:5432,[::1]:5433,h3".
func parseHostPorts(s string, defPort int) ([]Host, error) {
	var out []Host
	for _, hp := range strings.Split(s, ",") {
		h := Host{Port: defPort}
		switch {
		case strings.HasPrefix(hp, "["):
			end := strings.IndexByte(hp, ']')
			if end < 0 {
				return nil, fmt.Errorf("pgwire: host %q: missing ]", hp)
			}
			h.Name, hp = hp[1:end], hp[end+1:]
			if hp != "" && !strings.HasPrefix(hp, ":") {
				return nil, fmt.Errorf("pgwire: host %q: want [address]:port", hp)
			}
			hp = strings.TrimPrefix(hp, ":")
		default:
			if i := strings.LastIndexByte(hp, ':'); i >= 0 {
				h.Name, hp = hp[:i], hp[i+1:]
			} else {
				h.Name, hp = hp, ""
			}
		}
		if hp != "" {
			n, err := strconv.Atoi(hp)
			if err != nil || n <= 0 || n > 65535 {
				return nil, fmt.Errorf("pgwire: port %q: want a number from 1 to 65535", hp)
			}
			h.Port = n
		}
		if h.Name == "" {
			h.Name = "localhost"
		}
		out = append(out, h)
	}
	return out, nil
}

// passwordFor returns the password for host h: Password, or the password
// file's entry for h. Lines are host:port:database:user:password, * matches
// anything, \ escapes : and \. As in libpq, the file is ignored when
// others can read it, and a socket directory matches "localhost".
func (c *Config) passwordFor(h Host) string {
	if c.Password != "" || c.PassFile == "" {
		return c.Password
	}
	fi, err := os.Stat(c.PassFile)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return ""
	}
	f, err := os.Open(c.PassFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	host := h.Name
	if strings.HasPrefix(host, "/") {
		host = "localhost"
	}
	want := []string{host, strconv.Itoa(h.Port), c.Database, c.User}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		fields := splitPgpass(line)
		if len(fields) != 5 {
			continue
		}
		ok := true
		for i, w := range want {
			if fields[i] != "*" && fields[i] != w {
				ok = false
				break
			}
		}
		if ok {
			return fields[4]
		}
	}
	return ""
}

func splitPgpass(line string) []string {
	var (
		out []string
		cur strings.Builder
	)
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == ':' && len(out) < 4:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, cur.String())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
