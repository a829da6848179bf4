package testenv

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// client connects a paho client to url and disconnects it at the end of the
// test. cleanSession false keeps a persistent session at the broker.
func client(t *testing.T, url, id string, cleanSession bool, tlsConfig *tls.Config) mqtt.Client {
	t.Helper()
	c, err := connect(url, id, cleanSession, tlsConfig)
	if err != nil {
		t.Fatalf("connect %s as %s: %v", url, id, err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func connect(url, id string, cleanSession bool, tlsConfig *tls.Config) (mqtt.Client, error) {
	opts := mqtt.NewClientOptions().
		AddBroker(url).
		SetClientID(id).
		SetCleanSession(cleanSession).
		SetConnectTimeout(5 * time.Second).
		SetConnectRetry(false).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(100 * time.Millisecond).
		SetKeepAlive(5 * time.Second)
	if tlsConfig != nil {
		opts.SetTLSConfig(tlsConfig)
	}
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		c.Disconnect(0)
		return nil, errTimeout
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return c, nil
}

type timeoutError struct{}

func (timeoutError) Error() string { return "timed out" }

var errTimeout = timeoutError{}

// wait waits for tok, failing t after 10 s.
func wait(t *testing.T, what string, tok mqtt.Token) {
	t.Helper()
	select {
	case <-tok.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// subscribe subscribes c to topic at QoS 1 and returns the payloads it
// receives.
func subscribe(t *testing.T, c mqtt.Client, topic string) <-chan string {
	t.Helper()
	got := make(chan string, 100)
	wait(t, "subscribe", c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		got <- string(m.Payload())
	}))
	return got
}

func receive(t *testing.T, got <-chan string, want string) {
	t.Helper()
	select {
	case p := <-got:
		if p != want {
			t.Fatalf("received %q, want %q", p, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("did not receive %q within 10s", want)
	}
}

func TestMosquittoQoS1(t *testing.T) {
	b := Mosquitto(t)
	if !strings.HasPrefix(b.URL(), "tcp://127.0.0.1:") || b.URL() != "tcp://"+b.Addr() {
		t.Fatalf("URL() = %q, Addr() = %q", b.URL(), b.Addr())
	}
	sub := client(t, b.URL(), "sub", true, nil)
	got := subscribe(t, sub, "edgesync/gw-1/up")
	pub := client(t, b.URL(), "pub", true, nil)
	wait(t, "publish", pub.Publish("edgesync/gw-1/up", 1, false, "hello"))
	receive(t, got, "hello")
	if log := b.Log(); !strings.Contains(log, "mosquitto version") {
		t.Errorf("Log() = %q, want the broker's start-up line", log)
	}
}

// TestMosquittoRestartKeepsQueuedMessages stops the broker while a QoS 1
// message waits for an offline persistent session and checks that the
// message is delivered after Start.
func TestMosquittoRestartKeepsQueuedMessages(t *testing.T) {
	b := Mosquitto(t, WithPersistence())
	sub, err := connect(b.URL(), "sink", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, "subscribe", sub.Subscribe("edgesync/+/up", 1, nil))
	sub.Disconnect(100)

	pub := client(t, b.URL(), "gw-1", true, nil)
	wait(t, "publish", pub.Publish("edgesync/gw-1/up", 1, false, "queued"))

	b.Stop()
	if b.Running() {
		t.Fatal("Running() = true after Stop")
	}
	if c, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("broker accepts connections after Stop")
	}
	b.Start()
	if !b.Running() {
		t.Fatal("Running() = false after Start")
	}

	got := make(chan string, 10)
	opts := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("sink").
		SetCleanSession(false).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) })
	sub = mqtt.NewClient(opts)
	wait(t, "reconnect", sub.Connect())
	t.Cleanup(func() { sub.Disconnect(100) })
	receive(t, got, "queued")
	// The publisher reconnects by itself after the restart.
	wait(t, "publish after restart", pub.Publish("edgesync/gw-1/up", 1, false, "after"))
	receive(t, got, "after")
}

func TestMosquittoKillAndStart(t *testing.T) {
	b := Mosquitto(t)
	b.Kill()
	if b.Running() {
		t.Fatal("Running() = true after Kill")
	}
	if _, err := connect(b.URL(), "c1", true, nil); err == nil {
		t.Fatal("connect succeeded to a killed broker")
	}
	b.Kill() // no-op on a stopped broker
	b.Start()
	c := client(t, b.URL(), "c2", true, nil)
	got := subscribe(t, c, "t")
	wait(t, "publish", c.Publish("t", 1, false, "x"))
	receive(t, got, "x")
}

func TestMosquittoMutualTLS(t *testing.T) {
	certs := NewCerts(t)
	b := Mosquitto(t, WithTLS(certs.ServerCert, certs.ServerKey, certs.CA, true))
	if !strings.HasPrefix(b.TLSURL(), "ssl://127.0.0.1:") {
		t.Fatalf("TLSURL() = %q", b.TLSURL())
	}
	c := client(t, b.TLSURL(), "tls-client", true, certs.ClientTLS())
	got := subscribe(t, c, "secure")
	wait(t, "publish", c.Publish("secure", 1, false, "tls"))
	receive(t, got, "tls")

	noCert := certs.ClientTLS()
	noCert.Certificates = nil
	if c, err := connect(b.TLSURL(), "no-cert", true, noCert); err == nil {
		c.Disconnect(0)
		t.Fatal("connect without a client certificate succeeded, want it refused")
	}
	// The plain listener stays available.
	client(t, b.URL(), "plain", true, nil)
}

func TestMosquittoConfig(t *testing.T) {
	b := Mosquitto(t, WithConfig("max_keepalive 120"))
	if b.TLSURL() != "" || b.TLSAddr() != "" {
		t.Errorf("TLSURL() = %q, TLSAddr() = %q without WithTLS, want empty", b.TLSURL(), b.TLSAddr())
	}
	client(t, b.URL(), "c", true, nil)
}
