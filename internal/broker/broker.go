// Package broker runs an embedded MQTT broker (mochi-mqtt) for the demo and
// for fast tests. Production deployments use a real broker (mosquitto, EMQX,
// HiveMQ, VerneMQ); this one keeps everything in memory and allows anyone.
package broker

import (
	"fmt"
	"io"
	"log/slog"
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Broker is a running embedded broker.
type Broker struct {
	server *mqtt.Server
	addr   string
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves until Close.
func Start(addr string) (*Broker, error) {
	// Reserve the port first so that Addr is known (mochi does not report it).
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("broker: listen %s: %w", addr, err)
	}
	real := ln.Addr().String()
	_ = ln.Close()

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = 16 * 1024
	s := mqtt.New(&mqtt.Options{
		InlineClient: false,
		Capabilities: caps,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: real})); err != nil {
		return nil, fmt.Errorf("broker: listen %s: %w", real, err)
	}
	if err := s.Serve(); err != nil {
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	return &Broker{server: s, addr: real}, nil
}

// Addr is the host:port the broker listens on.
func (b *Broker) Addr() string { return b.addr }

// URL is the broker's tcp:// URL.
func (b *Broker) URL() string { return "tcp://" + b.addr }

// Close stops the broker; safe to call twice.
func (b *Broker) Close() error {
	return b.server.Close()
}
