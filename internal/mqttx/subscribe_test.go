package mqttx

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/edgesync/edgesync/internal/testenv"
)

// aclBroker runs an embedded broker whose ACL denies subscriptions to
// denied/#, answering them with SUBACK 0x80 as EMQX, HiveMQ and VerneMQ do.
func aclBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	s := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ledger := &auth.Ledger{
		Auth: auth.AuthRules{{Allow: true}},
		ACL:  auth.ACLRules{{Filters: auth.Filters{"denied/#": auth.Deny}}},
	}
	if err := s.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return "tcp://" + addr
}

// WatchSubscribe reports a granted subscription as nil and names every filter
// the broker refused, and only those.
func TestWatchSubscribe(t *testing.T) {
	url := aclBroker(t)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("watch-sub"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	watch := func(tok mqtt.Token) error {
		t.Helper()
		got := make(chan error, 1)
		WatchSubscribe(tok, func(err error) { got <- err })
		select {
		case err := <-got:
			return err
		case <-time.After(2 * SubscribeTimeout):
			t.Fatal("WatchSubscribe never called done")
			return nil
		}
	}
	if err := watch(c.Subscribe("allowed/x", 1, nil)); err != nil {
		t.Fatalf("granted subscription: %v", err)
	}
	err := watch(c.SubscribeMultiple(map[string]byte{"allowed/y": 1, "denied/a": 1, "denied/b": 0}, nil))
	if err == nil {
		t.Fatal("a refused subscription reported as granted")
	}
	msg := err.Error()
	if !strings.Contains(msg, "denied/a, denied/b") || strings.Contains(msg, "allowed/y") || !strings.Contains(msg, "0x80") {
		t.Fatalf("error %q: want it to name denied/a and denied/b, and not allowed/y", msg)
	}
	// No SUBACK at all: a subscription on a client that never connected.
	// (Not one just disconnected: Disconnect returns before the connection
	// is gone, and the broker may still grant what it sends meanwhile.)
	idle := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("never-connected"))
	if err := watch(idle.Subscribe("allowed/z", 1, nil)); err == nil {
		t.Fatal("a subscription that never reached the broker reported as granted")
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A failing connection is logged when its error changes, not once per
// attempt and not only the first time: a refused TCP connection, then a
// server that hangs up, are two lines however many attempts each takes.
func TestConnectErrorLoggedWhenItChanges(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens: connection refused
	var logs syncBuffer
	c, err := New(BrokerConfig{URL: "tcp://" + addr, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 20 * time.Millisecond,
		ConnectTimeout: time.Second}, Options{ClientID: "log-test", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("5 refused attempts", func() bool { return c.Stats().Attempts >= 5 })
	if n := strings.Count(logs.String(), "cannot connect"); n != 1 {
		t.Fatalf("%d 'cannot connect' lines after %d refused attempts, want 1:\n%s", n, c.Stats().Attempts, logs.String())
	}
	// Now something listens there and hangs up at once: a new error.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	before := c.Stats().Attempts
	waitFor("5 more attempts", func() bool { return c.Stats().Attempts >= before+5 })
	// A second line for the new error (EOF or connection reset, as the
	// hang-up lands), and still no error logged twice.
	seen := make(map[string]int)
	for _, line := range strings.Split(logs.String(), "\n") {
		if i := strings.Index(line, "err="); i >= 0 && strings.Contains(line, "cannot connect") {
			seen[errKind(errors.New(line[i:]))]++
		}
	}
	if len(seen) < 2 {
		t.Fatalf("the new error was not logged:\n%s", logs.String())
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("logged %d times: %s", n, k)
		}
	}
}

// Validate reads the TLS material as the connection will, so that a wrong
// file is a configuration error naming its key, and refuses TLS settings on
// a plain URL, which would be ignored.
func TestValidateTLSMaterial(t *testing.T) {
	certs := testenv.NewCerts(t)
	good := BrokerConfig{URL: "ssl://127.0.0.1:8883", CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}
	if err := good.Validate("broker"); err != nil {
		t.Fatalf("valid TLS settings refused: %v", err)
	}
	cases := []struct {
		name string
		cfg  BrokerConfig
		want string
	}{
		{"a key as the CA", BrokerConfig{URL: "ssl://h:8883", CAFile: certs.ClientKey}, "broker.ca_file: " + certs.ClientKey + " holds no PEM certificate"},
		{"certificate and key that do not match", BrokerConfig{URL: "mqtts://h:8883", CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ServerKey},
			"broker.cert_file: " + certs.ClientCert + " with key_file " + certs.ServerKey},
		{"ca_file on tcp://", BrokerConfig{URL: "tcp://h:1883", CAFile: certs.CA}, "broker.ca_file: set, but url tcp://h:1883 is plain tcp://"},
		{"client certificate on ws://", BrokerConfig{URL: "ws://h:9001", CertFile: certs.ClientCert, KeyFile: certs.ClientKey}, "broker.cert_file: set, but url"},
		{"insecure_skip_verify on tcp://", BrokerConfig{URL: "tcp://h:1883", InsecureSkipVerify: true}, "broker.insecure_skip_verify: set, but url"},
	}
	for _, c := range cases {
		err := c.cfg.Validate("broker")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.want)
		}
	}
}
