package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/edgesync/edgesync/agent"
)

func init() {
	register(command{name: "status", summary: "outbox depth, oldest unacknowledged age, link state, rates, latency per stage", run: runStatus})
}

func runStatus(args []string) int {
	fs := newFlags("status", "outbox depth (records, bytes), age of the oldest unacknowledged record, link state, rates, latency p50/p95/p99 per stage",
		"status --config FILE [--json]")
	configPath := fs.String("config", "", "the agent's configuration file (YAML)")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code := loadAgentConfig(*configPath)
	if cfg == nil {
		return code
	}
	st, err := fetchStatus(cfg)
	if err != nil {
		return exitFor(err)
	}
	if *asJSON {
		os.Stdout.Write(st.MarshalIndent())
		return exitOK
	}
	st.WriteText(os.Stdout)
	return exitOK
}

// fetchStatus asks the running agent over its control socket; when no agent
// runs, it reads the outbox itself.
func fetchStatus(cfg *agent.Config) (agent.Status, error) {
	var st agent.Status
	c := agent.ControlClient(cfg.Control.Socket, 10*time.Second)
	resp, err := c.Get("http://agent/v1/status")
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return st, fmt.Errorf("status: the agent answered %s: %s", resp.Status, b)
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return st, fmt.Errorf("status: %w", err)
		}
		return st, nil
	}
	st, oerr := agent.OfflineStatus(cfg)
	if oerr != nil {
		return st, errors.Join(fmt.Errorf("status: no agent answers on %s (%v)", cfg.Control.Socket, err), oerr)
	}
	return st, nil
}
