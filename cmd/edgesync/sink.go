//go:build !nosink

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/edgesync/edgesync/agent"
	"github.com/edgesync/edgesync/apply"
	"github.com/edgesync/edgesync/internal/sdnotify"
)

func init() {
	register(command{name: "sink", summary: "run the cloud-side applier: subscribe, apply idempotently, acknowledge", run: runSink})
	register(command{name: "sink replay-parked", summary: "apply parked records whose schema the sink now accepts", run: runReplayParked})
}

func runSink(args []string) int {
	fs := newFlags("sink", "run the cloud-side applier: subscribe, apply idempotently, acknowledge", "sink --config FILE")
	configPath := fs.String("config", "", "the sink's configuration file (YAML)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !requireFlag("config", *configPath) {
		return exitUsage
	}
	cfg, err := apply.LoadSinkConfig(*configPath)
	if err != nil {
		return configError(err)
	}
	log, _ := newLogger(agent.ParseLevel(cfg.Log.Level))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	store, err := cfg.Store.Open(ctx)
	if err != nil {
		return exitFor(fmt.Errorf("store: %w", err))
	}
	defer store.Close()
	s := apply.NewSink(cfg, store, log)
	if cfg.Metrics.Listen != "" {
		l, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return exitFor(fmt.Errorf("metrics.listen: %w", err))
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.MetricsHandler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("sink: metrics listener", "err", err)
			}
		}()
		defer srv.Close()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			nc, err := apply.LoadSinkConfig(*configPath)
			if err != nil {
				log.Error("sink: reload refused; running on with the previous configuration", "err", err)
				continue
			}
			_ = sdnotify.Reloading()
			s.Reload(nc.Policy)
			_ = sdnotify.Ready()
		}
	}()
	go func() {
		// READY=1 once connected to the broker with the store open.
		for ctx.Err() == nil {
			if c := s.Conn(); c != nil && c.Up() {
				_ = sdnotify.Ready()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if wd := sdnotify.WatchdogInterval(); wd > 0 {
		go func() {
			t := time.NewTicker(wd)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					_ = sdnotify.Watchdog()
				}
			}
		}()
	}
	err = s.Run(ctx)
	_ = sdnotify.Stopping()
	return exitFor(err)
}

func runReplayParked(args []string) int {
	fs := newFlags("sink replay-parked", "apply parked records whose schema the sink now accepts", "sink replay-parked --config FILE")
	configPath := fs.String("config", "", "the sink's configuration file (YAML)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !requireFlag("config", *configPath) {
		return exitUsage
	}
	ctx := context.Background()
	cfg, store, code := openSinkStore(ctx, *configPath)
	if store == nil {
		return code
	}
	defer store.Close()
	replayed, remaining, err := store.ReplayParked(ctx, &cfg.Policy)
	if err != nil {
		return exitFor(err)
	}
	fmt.Printf("replayed %d parked records; %d remain parked (their schema is still not accepted, or the store still cannot hold them: see reason in edgesync_parked)\n", replayed, remaining)
	return exitOK
}

// openSinkStore loads the sink configuration and opens its store; on failure
// it prints why and returns a nil store with the exit code.
func openSinkStore(ctx context.Context, path string) (*apply.SinkConfig, *apply.Store, int) {
	cfg, err := apply.LoadSinkConfig(path)
	if err != nil {
		return nil, nil, configError(err)
	}
	store, err := cfg.Store.Open(ctx)
	if err != nil {
		return nil, nil, exitFor(fmt.Errorf("store: %w", err))
	}
	return cfg, store, exitOK
}
