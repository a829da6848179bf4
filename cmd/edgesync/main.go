// Command edgesync is the edge sync agent, the cloud-side sink and their tools
// in one static binary. See the README and ../../docs.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/edgesync/edgesync/agent"
	"github.com/edgesync/edgesync/outbox"
)

// Exit codes of the contract.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitBusy    = 75 // EX_TEMPFAIL: the outbox is locked by another process
)

// command is one subcommand: it parses its own flags.
type command struct {
	name    string
	summary string
	run     func(args []string) int
}

var commands []command

func register(c command) { commands = append(commands, c) }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	name := args[0]
	// Two-word commands: "sink replay-parked", "config push".
	if len(args) > 1 {
		if c, ok := find(name + " " + args[1]); ok {
			return c.run(args[2:])
		}
	}
	c, ok := find(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "edgesync: unknown command %q\n\n", name)
		usage(os.Stderr)
		return exitUsage
	}
	return c.run(args[1:])
}

func find(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "edgesync: a sync agent for edge gateways: nothing lost, nothing applied twice.")
	fmt.Fprintln(w, "\nUsage: edgesync <command> [flags]   (edgesync <command> --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	cs := append([]command(nil), commands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-22s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nExit codes: 0 success, 1 runtime failure, 2 usage or configuration error, 75 outbox locked (retry).")
}

// newFlags returns a FlagSet whose --help prints the summary and flags.
func newFlags(name, summary, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "edgesync %s: %s\n\nUsage: edgesync %s\n", name, summary, usageLine)
		var has bool
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintln(out, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses flags; ok is false with the exit code when the command must stop.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	fs.SetOutput(os.Stderr)
	// The flag package prints the usage itself on -help and on an error;
	// print it once, here: to stdout when asked for, to stderr after an error.
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.Usage()
			return exitOK, false
		}
		fs.Usage()
		return exitUsage, false
	}
	return 0, true
}

// requireFlag reports a missing required flag.
func requireFlag(name, value string) bool {
	if value == "" {
		fmt.Fprintf(os.Stderr, "edgesync: --%s is required\n", name)
		return false
	}
	return true
}

// configError prints a configuration error (every problem on its own line).
func configError(err error) int {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(os.Stderr, line)
	}
	return exitUsage
}

// exitFor maps a runtime error to an exit code.
func exitFor(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, outbox.ErrLocked) {
		fmt.Fprintln(os.Stderr, "edgesync:", err, "(is the agent running? retry later)")
		return exitBusy
	}
	fmt.Fprintln(os.Stderr, "edgesync:", err)
	return exitFailure
}

// newLogger logs with slog to stderr (journald adds the time when under systemd).
func newLogger(level slog.Level) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(level)
	opts := &slog.HandlerOptions{Level: lv}
	if os.Getenv("JOURNAL_STREAM") != "" || os.Getenv("INVOCATION_ID") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), lv
}

// quietLogger discards logs (for commands that open the outbox themselves).
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// loadAgentConfig loads the agent configuration named by --config; on failure
// it prints why and returns a nil config with the exit code.
func loadAgentConfig(path string) (*agent.Config, int) {
	if !requireFlag("config", path) {
		return nil, exitUsage
	}
	cfg, err := agent.Load(path)
	if err != nil {
		return nil, configError(err)
	}
	return cfg, exitOK
}
