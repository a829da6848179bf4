package mqttx

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgesync/edgesync/internal/testenv"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// run starts a Conn and reports whether it came up within d.
func run(t *testing.T, cfg BrokerConfig, id string, d time.Duration) (*Conn, bool) {
	t.Helper()
	c, err := New(cfg, Options{ClientID: id, Logger: quiet()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c.Up() {
			return c, true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c, false
}

func TestTLSAndMutualTLS(t *testing.T) {
	certs := testenv.NewCerts(t)
	tlsBroker := testenv.Mosquitto(t, testenv.WithTLS(certs.ServerCert, certs.ServerKey, certs.CA, false))
	mtls := testenv.Mosquitto(t, testenv.WithTLS(certs.ServerCert, certs.ServerKey, certs.CA, true))
	fast := func(url string) BrokerConfig {
		return BrokerConfig{URL: url, ConnectTimeout: 2 * time.Second, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}
	}

	// TLS with the broker's CA: up.
	cfg := fast(tlsBroker.TLSURL())
	cfg.CAFile = certs.CA
	if _, ok := run(t, cfg, "tls-ok", 10*time.Second); !ok {
		t.Fatalf("TLS with the right CA did not connect; broker log:\n%s", tlsBroker.Log())
	}
	// TLS without the CA (system roots): refused, and the error says why.
	c, ok := run(t, fast(tlsBroker.TLSURL()), "tls-noca", 2*time.Second)
	if ok {
		t.Fatal("TLS connected without trusting the broker's CA")
	}
	if e := c.Stats().LastError; !strings.Contains(e, "certificate") {
		t.Fatalf("last error %q does not mention the certificate", e)
	}
	// Mutual TLS: a client certificate is required.
	cfg = fast(mtls.TLSURL())
	cfg.CAFile = certs.CA
	if _, ok := run(t, cfg, "mtls-nocert", 2*time.Second); ok {
		t.Fatal("mutual TLS connected without a client certificate")
	}
	cfg.CertFile, cfg.KeyFile = certs.ClientCert, certs.ClientKey
	if _, ok := run(t, cfg, "mtls-ok", 10*time.Second); !ok {
		t.Fatalf("mutual TLS with a client certificate did not connect; broker log:\n%s", mtls.Log())
	}
}

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pwfile := filepath.Join(dir, "mosquitto.passwd")
	out, err := testenv.CombinedOutput(func() *exec.Cmd {
		return exec.Command("mosquitto_passwd", "-b", "-c", pwfile, "gw-1", "s3cret")
	})
	if err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	b := testenv.Mosquitto(t, testenv.WithConfig("allow_anonymous false", "password_file "+pwfile))
	secret := filepath.Join(dir, "pw")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil { // trailing newline ignored
		t.Fatal(err)
	}
	cfg := BrokerConfig{URL: b.URL(), Username: "gw-1", PasswordFile: secret, ConnectTimeout: 2 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}
	if _, ok := run(t, cfg, "gw-1", 10*time.Second); !ok {
		t.Fatalf("password login failed; broker log:\n%s", b.Log())
	}
	if err := os.WriteFile(secret, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, ok := run(t, cfg, "gw-1b", 2*time.Second)
	if ok {
		t.Fatal("a wrong password connected")
	}
	if e := c.Stats().LastError; !strings.Contains(strings.ToLower(e), "not authorized") && !strings.Contains(strings.ToLower(e), "bad user") {
		t.Fatalf("last error %q does not say the broker refused the credentials", e)
	}
}

func TestValidate(t *testing.T) {
	c := BrokerConfig{URL: "ftp://x", CertFile: "/nonexistent.pem", KeepAlive: -time.Second}
	err := c.Validate("broker")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"broker.url", "broker.cert_file", "broker.keepalive"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	if err := (&BrokerConfig{}).Validate("broker"); err == nil || !strings.Contains(err.Error(), "broker.url: required") {
		t.Errorf("empty url: %v", err)
	}
	ok := BrokerConfig{URL: "ssl://broker.example:8883"}
	if err := ok.Validate("broker"); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
	if tc, err := ok.TLSConfig(); err != nil || tc == nil || tc.ServerName != "broker.example" {
		t.Errorf("ssl:// TLS config %+v, %v", tc, err)
	}
	if tc, err := (&BrokerConfig{URL: "tcp://x:1883"}).TLSConfig(); err != nil || tc != nil {
		t.Errorf("tcp:// gave a TLS config %+v, %v", tc, err)
	}
}

func TestReconnectsWithBackoff(t *testing.T) {
	b := testenv.Mosquitto(t)
	cfg := BrokerConfig{URL: b.URL(), ConnectTimeout: time.Second, KeepAlive: time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 300 * time.Millisecond}
	c, ok := run(t, cfg, "re", 10*time.Second)
	if !ok {
		t.Fatal("not connected")
	}
	b.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for c.Up() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if c.Up() {
		t.Fatal("still up with the broker stopped")
	}
	time.Sleep(time.Second) // several failed attempts
	b.Start()
	deadline = time.Now().Add(10 * time.Second)
	for !c.Up() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := c.Stats()
	if !st.Up || st.Reconnects != 1 || st.Attempts < 3 {
		t.Fatalf("after the broker came back: %+v", st)
	}
}

// slowLink accepts connections for target and holds the first slow ones
// for delay before relaying, as a loaded broker or an emulated CPU answers
// a CONNECT after the client's connect timeout.
func slowLink(t *testing.T, target string, slow int, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	n := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n++
			wait := time.Duration(0)
			if n <= slow {
				wait = delay
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				time.Sleep(wait)
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { io.Copy(s, c); s.Close() }()
				io.Copy(c, s)
			}()
		}
	}()
	return "tcp://" + ln.Addr().String()
}

// TestConnectAfterTimeout: connection attempts that the broker answers only
// after the connect timeout are given up for good. The connection that
// stays up is the current one: what it publishes arrives, and it stays up.
func TestConnectAfterTimeout(t *testing.T) {
	b := testenv.Mosquitto(t)
	url := slowLink(t, b.Addr(), 2, 2500*time.Millisecond)
	cfg := BrokerConfig{URL: url, ConnectTimeout: time.Second, KeepAlive: 2 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 100 * time.Millisecond}
	c, ok := run(t, cfg, "late", 15*time.Second)
	if !ok {
		t.Fatalf("not connected; broker log:\n%s", b.Log())
	}
	// Let the late attempts reach the broker and be given up.
	time.Sleep(4 * time.Second)
	if !c.Up() {
		t.Fatal("down after the late attempts arrived")
	}
	got := make(chan string, 1)
	sub, ok := run(t, BrokerConfig{URL: b.URL(), ConnectTimeout: 2 * time.Second}, "watcher", 10*time.Second)
	if !ok {
		t.Fatal("watcher not connected")
	}
	tok := sub.Client().Subscribe("late/t", 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- string(m.Payload()):
		default:
		}
	})
	if err := WaitToken(context.Background(), tok, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := WaitToken(context.Background(), c.Client().Publish("late/t", 1, false, "hello"), 5*time.Second); err != nil {
		t.Fatalf("publish on the current connection: %v", err)
	}
	select {
	case s := <-got:
		if s != "hello" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("published on the current connection, never delivered; broker log:\n%s", b.Log())
	}
	// Settled: no more reconnects. (A late CONNECT that reached the broker
	// takes the client id over, as MQTT says; the client then reconnects
	// once, and must not be left believing a dead session is up.)
	before := c.Stats()
	time.Sleep(2 * time.Second)
	if after := c.Stats(); !after.Up || after.Reconnects != before.Reconnects {
		t.Fatalf("not settled: before %+v, after %+v; broker log:\n%s", before, after, b.Log())
	}
}
