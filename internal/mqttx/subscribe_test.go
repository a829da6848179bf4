package mqttx

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
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
	// No SUBACK at all: a subscription on a client that is not connected.
	c.Disconnect(0)
	if err := watch(c.Subscribe("allowed/z", 1, nil)); err == nil {
		t.Fatal("a subscription that never reached the broker reported as granted")
	}
}
