package agent

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/edgesync/edgesync/capture"
	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/internal/sdnotify"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport"
	"github.com/edgesync/edgesync/transport/wire"
)

// Agent is the edge agent: capture → outbox → uplink, with the HTTP ingest
// API, the control socket, metrics and status.
type Agent struct {
	cfg     *Config
	log     *slog.Logger
	level   *slog.LevelVar
	bootID  string
	started time.Time

	ob      *outbox.Outbox
	conn    *mqttx.Conn
	up      *transport.Uplink
	capture *capture.Metrics
	rates   *rates

	ingestAddr string

	ready     chan struct{}
	accepting atomic.Bool
	configs   chan []byte
	restart   chan struct{}
	restarted atomic.Bool
}

// New returns an agent for cfg. level, when not nil, is changed by SIGHUP reloads.
func New(cfg *Config, log *slog.Logger, level *slog.LevelVar) *Agent {
	if log == nil {
		log = slog.Default()
	}
	if level == nil {
		level = new(slog.LevelVar)
	}
	var b [8]byte
	_, _ = crand.Read(b[:])
	return &Agent{
		cfg:     cfg,
		log:     log,
		level:   level,
		bootID:  hex.EncodeToString(b[:]),
		started: time.Now(),
		capture: &capture.Metrics{},
		ready:   make(chan struct{}),
		configs: make(chan []byte, 8),
		restart: make(chan struct{}),
	}
}

// Ready is closed once the outbox is open and the listeners are up.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Outbox is the agent's outbox (nil before Run opened it).
func (a *Agent) Outbox() *outbox.Outbox { return a.ob }

// Uplink is the agent's uplink (nil before Run).
func (a *Agent) Uplink() *transport.Uplink { return a.up }

// IngestAddr is the address the ingest API listens on ("" when disabled);
// valid once Ready is closed.
func (a *Agent) IngestAddr() string { return a.ingestAddr }

// LinkUp reports whether the MQTT link is up.
func (a *Agent) LinkUp() bool { return a.conn != nil && a.conn.Up() }

// CaptureMetrics are the ingest metrics.
func (a *Agent) CaptureMetrics() *capture.Metrics { return a.capture }

// Run runs the agent until ctx ends, then shuts down in order: stop
// accepting, give the uplink up to drain_timeout to get what is in flight
// acknowledged, publish "offline", close the outbox. It returns
// outbox.ErrLocked when another process has the outbox open.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	oo := cfg.OutboxOptions()
	oo.Logger = a.log
	ob, err := outbox.Open(cfg.OutboxDir(), oo)
	if err != nil {
		return err
	}
	a.ob = ob
	defer func() {
		if err := ob.Close(); err != nil {
			a.log.Error("agent: close outbox", "err", err)
		}
	}()
	a.rates = newRates(a)

	var up *transport.Uplink
	conn, err := mqttx.New(cfg.Broker, mqttx.Options{
		ClientID:             cfg.Broker.ClientID,
		Logger:               a.log,
		MaxResumePubInFlight: cfg.Uplink.MaxInflight,
		Will: &mqttx.Will{
			Topic:    wire.StateTopic(cfg.TopicPrefix, cfg.DeviceID),
			Payload:  transport.OfflineState(cfg.DeviceID, a.bootID),
			Retained: true,
		},
		OnConnect: func(c mqtt.Client) {
			up.Subscribe(c)
			a.subscribeConfig(c)
			// On c itself: Up turns true only after this handler, so
			// a.conn would not publish yet.
			go a.publishConfigStatusOn(c, nil, false, true, "")
		},
		Default: func(_ mqtt.Client, m mqtt.Message) {
			if !up.Handle(m) {
				a.handleConfigMessage(m)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	a.conn = conn
	up = transport.New(transport.Config{
		TopicPrefix: cfg.TopicPrefix,
		DeviceID:    cfg.DeviceID,
		BootID:      a.bootID,
		Batch:       cfg.Batch,
		Uplink:      cfg.Uplink,
		Logger:      a.log,
	}, ob, conn, nil)
	a.up = up

	// Listeners first, so that a port in use fails fast.
	var servers []*http.Server
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}
	ingest := a.ingestHandler()
	if cfg.Ingest.Listen != "" {
		l, err := capture.Listen(cfg.Ingest.Listen)
		if err != nil {
			closeAll()
			return fmt.Errorf("ingest.listen: %w", err)
		}
		listeners = append(listeners, l)
		a.ingestAddr = l.Addr().String()
		servers = append(servers, &http.Server{Handler: a.mainMux(ingest, cfg.Metrics.Listen == ""), ReadHeaderTimeout: 10 * time.Second})
	}
	if cfg.Metrics.Listen != "" {
		l, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			closeAll()
			return fmt.Errorf("metrics.listen: %w", err)
		}
		listeners = append(listeners, l)
		servers = append(servers, &http.Server{Handler: a.metricsMux(), ReadHeaderTimeout: 10 * time.Second})
	}
	cl, err := listenControl(cfg.Control.Socket)
	if err != nil {
		closeAll()
		return fmt.Errorf("control.socket: %w", err)
	}
	listeners = append(listeners, cl)
	servers = append(servers, &http.Server{Handler: a.controlMux(ingest), ReadHeaderTimeout: 10 * time.Second})

	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)
	for i, s := range servers {
		s, l := s, listeners[i]
		g.Go(func() error {
			if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		return conn.Run(gctx, func(c mqtt.Client) {
			// A clean shutdown says offline itself (the will is for crashes).
			if p := transport.OfflineState(cfg.DeviceID, a.bootID); p != nil {
				_ = mqttx.WaitToken(context.Background(), c.Publish(wire.StateTopic(cfg.TopicPrefix, cfg.DeviceID), 1, true, p), time.Second)
			}
		})
	})
	g.Go(func() error { return up.Run(gctx) })
	g.Go(func() error { a.rates.run(gctx); return nil })
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case p := <-a.configs:
				if a.handleConfig(p) {
					a.restarted.Store(true)
					close(a.restart)
					return nil
				}
			}
		}
	})
	srcCtx, stopSources := context.WithCancel(gctx)
	defer stopSources()
	if err := a.startSources(srcCtx, g); err != nil {
		stopRun()
		_ = g.Wait()
		return err
	}
	a.accepting.Store(true)
	close(a.ready)
	_ = sdnotify.Ready()
	a.log.Info("agent: running", "device_id", cfg.DeviceID, "epoch", ob.Epoch(), "ingest", cfg.Ingest.Listen,
		"control", cfg.Control.Socket, "broker", cfg.Broker.URL, "durability", cfg.Outbox.Durability)
	if wd := sdnotify.WatchdogInterval(); wd > 0 {
		g.Go(func() error { a.watchdog(gctx, wd); return nil })
	}
	// A failed outbox (Pebble met an I/O error) cannot recover in this
	// process: stop, so that the supervisor restarts the agent and the
	// reopened outbox recovers everything acknowledged.
	g.Go(func() error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				if err := ob.Failed(); err != nil {
					return fmt.Errorf("the outbox failed; exiting so that a restart recovers it: %w", err)
				}
			}
		}
	})

	select {
	case <-ctx.Done():
	case <-gctx.Done():
	case <-a.restart:
	}
	// Shutdown, in order. A restart for a new remote configuration is a
	// reload to systemd, not a stop (a stop would end in SIGKILL).
	select {
	case <-a.restart:
		_ = sdnotify.Reloading()
	default:
		_ = sdnotify.Stopping()
	}
	a.accepting.Store(false)
	a.log.Info("agent: shutting down", "drain_timeout", cfg.DrainTimeout)
	deadline := time.Now().Add(cfg.DrainTimeout)
	shutCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	stopSources()
	for _, s := range servers {
		_ = s.Shutdown(shutCtx)
	}
	a.drain(deadline)
	stopRun()
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if a.restarted.Load() && ctx.Err() == nil {
		return ErrRestart
	}
	return nil
}

// drain waits (until deadline), while the link is up, for what is in the
// outbox to be sent and acknowledged, so that a record stored just before the
// stop is delivered now rather than at the next start, and a restart does
// not resend what was in flight. It gives up early when nothing goes out for
// longer than a lingering batch takes (the sink paused the device, or the
// rate limit holds it back): the records wait safely on disk.
func (a *Agent) drain(deadline time.Time) {
	a.up.Kick()
	quiet := max(a.cfg.Batch.Linger, 0) + 500*time.Millisecond
	lastBusy := time.Now()
	for time.Now().Before(deadline) {
		pos := a.ob.Position()
		if !a.conn.Up() || pos.Watermark >= pos.Head {
			return
		}
		if a.up.Metrics().Inflight.Load() > 0 {
			lastBusy = time.Now()
		} else if time.Since(lastBusy) > quiet {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a *Agent) watchdog(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Only pet the watchdog while the outbox works.
			if a.ob.Failed() == nil {
				_ = sdnotify.Watchdog()
			}
		}
	}
}

// Reload re-reads the configuration file and applies what can change live:
// log.level and the batch and uplink blocks (batch size and linger, window,
// ack timeout, rate limit). Everything else is reported as needing a restart.
func (a *Agent) Reload(path string) error {
	_ = sdnotify.Reloading()
	defer func() { _ = sdnotify.Ready() }()
	nc, err := Load(path)
	if err != nil {
		return err
	}
	a.level.Set(parseLevel(nc.Log.Level))
	if a.up != nil && (nc.Batch != a.cfg.Batch || nc.Uplink != a.cfg.Uplink) {
		a.up.Reconfigure(nc.Batch, nc.Uplink)
		a.cfg.Batch, a.cfg.Uplink = nc.Batch, nc.Uplink
	}
	a.log.Info("agent: configuration reloaded", "log_level", nc.Log.Level)
	if nc.DeviceID != a.cfg.DeviceID || nc.DataDir != a.cfg.DataDir || nc.Broker != a.cfg.Broker ||
		nc.Outbox != a.cfg.Outbox || nc.Ingest != a.cfg.Ingest {
		a.log.Warn("agent: some changed settings take effect at the next restart (device_id, data_dir, broker, outbox, ingest)")
	}
	return nil
}

// ParseLevel maps a log.level value to a slog level.
func parseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// ParseLevel is exported for the CLI.
func ParseLevel(s string) slog.Level { return parseLevel(s) }
