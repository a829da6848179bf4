package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/edgesync/edgesync/agent"
)

func init() {
	register(command{name: "agent", summary: "run the edge agent in the foreground (systemd runs exactly this)", run: runAgent})
}

func runAgent(args []string) int {
	fs := newFlags("agent", "run the edge agent in the foreground", "agent --config FILE")
	configPath := fs.String("config", "", "the agent's configuration file (YAML)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !requireFlag("config", *configPath) {
		return exitUsage
	}
	cfg, warning, err := agent.LoadWithRemote(*configPath)
	if err != nil {
		return configError(err)
	}
	log, level := newLogger(agent.ParseLevel(cfg.Log.Level))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var current atomic.Pointer[agent.Agent]
	go func() {
		for range hup {
			if a := current.Load(); a != nil {
				if err := a.Reload(*configPath); err != nil {
					log.Error("agent: reload refused; running on with the previous configuration", "err", err)
				}
			}
		}
	}()
	for {
		if warning != nil {
			log.Warn("agent: " + warning.Error())
		}
		a := agent.New(cfg, log, level)
		current.Store(a)
		err := a.Run(ctx)
		if !errors.Is(err, agent.ErrRestart) {
			return exitFor(err)
		}
		// A remote configuration was accepted: load the file and the stored
		// overlays again and run again, in this process.
		if cfg, warning, err = agent.LoadWithRemote(*configPath); err != nil {
			return configError(err)
		}
		level.Set(agent.ParseLevel(cfg.Log.Level))
	}
}
