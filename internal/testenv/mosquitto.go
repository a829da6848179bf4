package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Broker is a mosquitto process on 127.0.0.1, started by Mosquitto.
type Broker struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	logFile string
	errFile string
	port    int
	tlsPort int // 0 without WithTLS

	mu   sync.Mutex
	proc *process // nil or exited when stopped
}

// MosquittoOption configures Mosquitto.
type MosquittoOption func(*mosquittoConfig)

type mosquittoConfig struct {
	persistence bool
	tls         *tlsListener
	extra       []string
}

type tlsListener struct {
	cert, key, ca string
	requireCert   bool
}

// WithPersistence turns on mosquitto's persistence, in a directory that stays
// the same across Stop and Start, so that retained messages, subscriptions and
// queued QoS 1 messages of persistent sessions survive a restart. mosquitto
// writes its database at a clean stop (and every autosave_interval, 1800 s by
// default): after Kill, what was not yet saved is lost, as in production. Add
// WithConfig("autosave_interval 1") to save more often.
func WithPersistence() MosquittoOption {
	return func(c *mosquittoConfig) { c.persistence = true }
}

// WithTLS adds a TLS listener on a second free port (see Broker.TLSURL) with
// the given PEM files; caFile verifies client certificates. With requireCert
// the broker requires a client certificate signed by that CA (mutual TLS).
// The plain listener stays available.
func WithTLS(certFile, keyFile, caFile string, requireCert bool) MosquittoOption {
	return func(c *mosquittoConfig) {
		c.tls = &tlsListener{cert: certFile, key: keyFile, ca: caFile, requireCert: requireCert}
	}
}

// WithConfig appends lines to mosquitto.conf, after the listeners: options
// that belong to a listener then apply to the last one (the TLS listener when
// there is one, otherwise the plain one).
func WithConfig(lines ...string) MosquittoOption {
	return func(c *mosquittoConfig) { c.extra = append(c.extra, lines...) }
}

// mosquittoBinary returns the path of mosquitto: $EDGESYNC_MOSQUITTO, the
// Debian package's /usr/sbin/mosquitto, or mosquitto on PATH.
func mosquittoBinary() string {
	if p := os.Getenv("EDGESYNC_MOSQUITTO"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	return ""
}

// Mosquitto starts a mosquitto broker on 127.0.0.1 on a free port and stops
// it when the test ends. The broker allows anonymous clients, keeps up to
// 100000 queued messages per client, and limits neither in-flight messages nor
// queued bytes, so tests see edgesync's own flow control rather than the
// broker's. Persistence is off unless WithPersistence.
//
// When mosquitto is not installed the test fails, or skips when
// EDGESYNC_ALLOW_SKIP=1.
func Mosquitto(t testing.TB, opts ...MosquittoOption) *Broker {
	t.Helper()
	var cfg mosquittoConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin := mosquittoBinary()
	if bin == "" {
		missing(t, "mosquitto (/usr/sbin/mosquitto)", "apt-get install mosquitto")
	}
	b := &Broker{
		t:   t,
		bin: bin,
		dir: t.TempDir(),
	}
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	b.logFile = filepath.Join(b.dir, "mosquitto.log")
	b.errFile = filepath.Join(b.dir, "mosquitto.stderr")
	b.port = FreePort(t)
	if cfg.tls != nil {
		b.tlsPort = FreePort(t)
	}
	if err := os.WriteFile(b.conf, []byte(b.config(&cfg)), 0o644); err != nil {
		t.Fatalf("testenv: write mosquitto.conf: %v", err)
	}
	t.Cleanup(b.cleanup)
	b.Start()
	return b
}

func (b *Broker) config(cfg *mosquittoConfig) string {
	var s strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	line("# written by edgesync internal/testenv")
	if os.Geteuid() == 0 {
		// As root, mosquitto drops privileges to the user "mosquitto",
		// which cannot write to the test's temporary directory.
		line("user root")
	}
	line("allow_anonymous true")
	line("log_dest file %s", b.logFile)
	line("log_type error")
	line("log_type warning")
	line("log_type notice")
	line("log_type information")
	line("connection_messages true")
	line("log_timestamp true")
	line("log_timestamp_format %%Y-%%m-%%dT%%H:%%M:%%S")
	line("max_queued_messages 100000")
	line("max_queued_bytes 0")
	line("max_inflight_messages 0")
	line("set_tcp_nodelay true")
	if cfg.persistence {
		dir := filepath.Join(b.dir, "persistence") + "/"
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.t.Fatalf("testenv: mosquitto persistence dir: %v", err)
		}
		line("persistence true")
		line("persistence_location %s", dir)
	} else {
		line("persistence false")
	}
	line("")
	line("listener %d 127.0.0.1", b.port)
	if tl := cfg.tls; tl != nil {
		line("")
		line("listener %d 127.0.0.1", b.tlsPort)
		line("certfile %s", tl.cert)
		line("keyfile %s", tl.key)
		if tl.ca != "" {
			line("cafile %s", tl.ca)
		}
		line("require_certificate %t", tl.requireCert)
	}
	if len(cfg.extra) > 0 {
		line("")
		for _, l := range cfg.extra {
			line("%s", l)
		}
	}
	return s.String()
}

// URL returns the broker's plain MQTT URL, "tcp://127.0.0.1:PORT".
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Addr returns the plain listener's "127.0.0.1:PORT".
func (b *Broker) Addr() string { return "127.0.0.1:" + itoa(b.port) }

// Port returns the plain listener's port.
func (b *Broker) Port() int { return b.port }

// TLSURL returns the TLS listener's URL, "ssl://127.0.0.1:PORT", or "" when
// the broker was started without WithTLS.
func (b *Broker) TLSURL() string {
	if b.tlsPort == 0 {
		return ""
	}
	return "ssl://" + b.TLSAddr()
}

// TLSAddr returns the TLS listener's "127.0.0.1:PORT", or "" without WithTLS.
func (b *Broker) TLSAddr() string {
	if b.tlsPort == 0 {
		return ""
	}
	return "127.0.0.1:" + itoa(b.tlsPort)
}

// ConfigFile returns the path of the generated mosquitto.conf.
func (b *Broker) ConfigFile() string { return b.conf }

// Running reports whether the broker process is alive.
func (b *Broker) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running()
}

func (b *Broker) running() bool {
	if b.proc == nil {
		return false
	}
	select {
	case <-b.proc.exited:
		return false
	default:
		return true
	}
}

// Start starts the broker again, on the same port and with the same
// configuration and persistence directory, and waits until it accepts
// connections. It fails the test when the broker is already running or does
// not come up.
func (b *Broker) Start() {
	b.t.Helper()
	if err := b.start(); err != nil {
		b.t.Fatalf("testenv: start mosquitto: %v\n%s", err, b.Log())
	}
}

func (b *Broker) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running() {
		return fmt.Errorf("already running on %s", b.Addr())
	}
	errOut, err := os.OpenFile(b.errFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer errOut.Close()
	p, err := startProcess(func() *exec.Cmd {
		cmd := exec.Command(b.bin, "-c", b.conf)
		cmd.Dir = b.dir
		cmd.Stdout, cmd.Stderr = errOut, errOut
		return cmd
	}, nil)
	if err != nil {
		return err
	}
	b.proc = p
	// mosquitto binds every listener before it serves any, so the plain
	// listener accepting means the TLS one is bound too. The port may still
	// be held briefly by a previous instance's socket: retry for a while.
	if err := waitTCP(b.Addr(), 15*time.Second, p.exited); err != nil {
		p.stop(syscall.SIGKILL, 0)
		return fmt.Errorf("%w (%v)", err, p.err)
	}
	return nil
}

// Stop stops the broker cleanly (SIGTERM; SIGKILL after 10 s) and waits for
// it to exit. Clients see their connections close. Stop on a stopped broker
// does nothing.
func (b *Broker) Stop() { b.halt(syscall.SIGTERM) }

// Kill kills the broker with SIGKILL, as a crash or power cut would, and
// waits for it to exit. Kill on a stopped broker does nothing.
func (b *Broker) Kill() { b.halt(syscall.SIGKILL) }

func (b *Broker) halt(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc != nil {
		b.proc.stop(sig, 10*time.Second)
	}
}

func (b *Broker) cleanup() {
	b.halt(syscall.SIGTERM)
	if b.t.Failed() {
		b.t.Logf("testenv: mosquitto on %s:\n%s", b.Addr(), tail(b.Log(), 32<<10))
	}
}

// Log returns what the broker logged so far, across restarts, with anything
// it wrote to stderr (configuration errors), for failure messages.
func (b *Broker) Log() string {
	var s strings.Builder
	if data, err := os.ReadFile(b.errFile); err == nil && len(data) > 0 {
		s.WriteString("--- mosquitto stderr ---\n")
		s.Write(data)
	}
	data, err := os.ReadFile(b.logFile)
	switch {
	case err != nil && !os.IsNotExist(err):
		fmt.Fprintf(&s, "(mosquitto log: %v)\n", err)
	case len(data) > 0:
		s.WriteString("--- mosquitto log ---\n")
		s.Write(data)
	}
	return s.String()
}
