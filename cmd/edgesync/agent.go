package main

import (
	"context"
	"os"
	"os/signal"
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
	cfg, err := agent.Load(*configPath)
	if err != nil {
		return configError(err)
	}
	log, level := newLogger(agent.ParseLevel(cfg.Log.Level))
	a := agent.New(cfg, log, level)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := a.Reload(*configPath); err != nil {
				log.Error("agent: reload refused; running on with the previous configuration", "err", err)
			}
		}
	}()
	return exitFor(a.Run(ctx))
}
