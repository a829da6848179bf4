package testenv

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// echoServer accepts connections and echoes what they send until the test
// ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads it back within timeout.
func roundTrip(c net.Conn, msg string, timeout time.Duration) (string, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func mustEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	got, err := roundTrip(c, msg, 5*time.Second)
	if err != nil {
		t.Fatalf("round trip %q: %v", msg, err)
	}
	if got != msg {
		t.Fatalf("round trip: got %q, want %q", got, msg)
	}
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProxyForwards(t *testing.T) {
	p := NewProxy(t, "tcp://"+echoServer(t))
	if p.URL() != "tcp://"+p.Addr() {
		t.Errorf("URL() = %q, want tcp://%s", p.URL(), p.Addr())
	}
	c := dial(t, p.Addr())
	mustEcho(t, c, "ping")
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	go func() { _, _ = c.Write(big) }()
	buf := make([]byte, len(big))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read 1 MiB back: %v", err)
	}
	if !bytes.Equal(buf, big) {
		t.Fatal("1 MiB came back altered")
	}
	// The proxy counts a chunk once its write returns, which can be a moment
	// after the reader has it.
	want := int64(len("ping") + len(big))
	eventually(t, func() bool { return p.BytesUp() == want && p.BytesDown() == want })
	if got := p.BytesUp(); got != want {
		t.Errorf("BytesUp() = %d, want %d", got, want)
	}
	if got := p.BytesDown(); got != want {
		t.Errorf("BytesDown() = %d, want %d", got, want)
	}
	if got := p.Accepted(); got != 1 {
		t.Errorf("Accepted() = %d, want 1", got)
	}
	if got := p.Active(); got != 1 {
		t.Errorf("Active() = %d, want 1", got)
	}
}

func TestProxyPartition(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	mustEcho(t, c, "before")

	p.Partition()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a partitioned connection: err = %v, want the connection closed", err)
	}
	if c2, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c2.Close()
		t.Fatal("dial during Partition succeeded, want refused")
	}
	if got := p.Active(); got != 0 {
		t.Errorf("Active() = %d during Partition, want 0", got)
	}

	p.Heal()
	mustEcho(t, dial(t, p.Addr()), "after")
	if got := p.Accepted(); got != 2 {
		t.Errorf("Accepted() = %d, want 2", got)
	}
}

func TestProxyBlackhole(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	mustEcho(t, c, "before")
	eventually(t, func() bool { return p.BytesUp() == int64(len("before")) })
	up := p.BytesUp()

	p.Blackhole()
	if _, err := roundTrip(c, "held", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("round trip during Blackhole: err = %v, want a timeout", err)
	}
	// A new connection is accepted but goes nowhere.
	c2 := dial(t, p.Addr())
	if _, err := roundTrip(c2, "new", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("round trip on a new connection during Blackhole: err = %v, want a timeout", err)
	}
	if got := p.BytesUp(); got != up {
		t.Errorf("BytesUp() = %d during Blackhole, want %d (unchanged)", got, up)
	}

	p.Heal()
	// What was sent during the blackhole arrives now, as TCP would resend it.
	for _, tc := range []struct {
		c    net.Conn
		want string
	}{{c, "held"}, {c2, "new"}} {
		buf := make([]byte, len(tc.want))
		tc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(tc.c, buf); err != nil || string(buf) != tc.want {
			t.Fatalf("after Heal: read %q, %v; want %q", buf, err, tc.want)
		}
	}
	mustEcho(t, c, "after")
}

func TestProxyDropConnections(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	mustEcho(t, c, "x")
	p.DropConnections()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after DropConnections: err = %v, want the connection closed", err)
	}
	mustEcho(t, dial(t, p.Addr()), "y")
}

func TestProxyCloseTwice(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	mustEcho(t, c, "x")
	p.Blackhole()
	p.Close()
	p.Close()
	p.Heal() // after Close: does nothing
	if c2, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c2.Close()
		t.Fatal("dial after Close succeeded")
	}
}

// TestProxyMQTT runs an MQTT client through the proxy: it reconnects after
// the link is cut and refused for a while.
func TestProxyMQTT(t *testing.T) {
	b := Mosquitto(t)
	p := NewProxy(t, b.URL())
	sub := client(t, b.URL(), "sub", true, nil)
	got := subscribe(t, sub, "edgesync/gw-1/up")
	pub := client(t, p.URL(), "gw-1", true, nil)
	wait(t, "publish", pub.Publish("edgesync/gw-1/up", 1, false, "one"))
	receive(t, got, "one")

	p.Partition()
	eventually(t, func() bool { return !pub.IsConnectionOpen() })
	if pub.IsConnectionOpen() {
		t.Error("client still connected during Partition")
	}
	p.Heal()
	wait(t, "publish after heal", pub.Publish("edgesync/gw-1/up", 1, false, "two"))
	receive(t, got, "two")
	if p.Accepted() < 2 {
		t.Errorf("Accepted() = %d, want >= 2 (a reconnect)", p.Accepted())
	}
	if p.BytesUp() == 0 || p.BytesDown() == 0 {
		t.Errorf("BytesUp() = %d, BytesDown() = %d, want both > 0", p.BytesUp(), p.BytesDown())
	}
}
