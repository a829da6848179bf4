package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// qemu-user (7.2, Debian 12) now and then wedges the child of a fork before
// it reaches exec: Go's forkExec emulated as a plain fork, the child stuck in
// the emulator's own locks, the parent blocked for good reading the pipe that
// exec would close (seen in the goroutine dump of a wedged test binary: a
// goroutine "[syscall, 4 minutes]" in syscall.forkExec under Broker.start).
// Under the emulator (EDGESYNC_QEMU=1) the helpers below start programs with
// a watchdog: a child still running the emulator's image after forkHangAfter
// has not reached exec, so it is killed, which ends the parent's wait, and
// the start is tried again with a fresh exec.Cmd. Natively they are plain
// cmd.Start and cmd.CombinedOutput.

// forkHangAfter is how long a fork may take to reach exec before its child is
// taken for wedged. A healthy one takes milliseconds, also under qemu.
const forkHangAfter = 20 * time.Second

// forkAttempts bounds the tries of one start.
const forkAttempts = 3

// errForkHang reports a start whose child was found wedged and killed.
var errForkHang = errors.New("the emulator wedged the forked child before exec; killed it")

// underQEMU reports whether the test binary runs under qemu-user.
func underQEMU() bool { return os.Getenv(EnvQEMU) == "1" }

// startCmd starts the command made by newCmd, like cmd.Start, and under
// qemu-user retries a start the emulator wedged. newCmd must return a fresh
// exec.Cmd each call.
func startCmd(newCmd func() *exec.Cmd) (*exec.Cmd, error) {
	if !underQEMU() {
		cmd := newCmd()
		return cmd, cmd.Start()
	}
	var err error
	for attempt := 1; attempt <= forkAttempts; attempt++ {
		cmd := newCmd()
		if err = startWatched(cmd); !errors.Is(err, errForkHang) {
			return cmd, err
		}
		fmt.Fprintf(os.Stderr, "testenv: starting %s (attempt %d of %d): %v\n",
			filepath.Base(cmd.Path), attempt, forkAttempts, err)
	}
	return nil, fmt.Errorf("start %v: %w", newCmd().Args, err)
}

// CombinedOutput runs the command made by newCmd and returns its combined
// output, like cmd.CombinedOutput, retrying a start that qemu-user wedged.
// Tests use it for the programs they run under the emulator.
func CombinedOutput(newCmd func() *exec.Cmd) ([]byte, error) {
	var buf strings.Builder
	cmd, err := startCmd(func() *exec.Cmd {
		buf.Reset()
		c := newCmd()
		c.Stdout, c.Stderr = &buf, &buf
		return c
	})
	if err != nil {
		return nil, err
	}
	err = cmd.Wait()
	return []byte(buf.String()), err
}

// startWatched runs cmd.Start and, when it has not returned after
// forkHangAfter, kills this process's children that still run the emulator
// (forks that never reached exec), every few seconds until it returns.
func startWatched(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Start() }()
	timer := time.NewTimer(forkHangAfter)
	defer timer.Stop()
	killed := make(map[int]bool)
	for {
		select {
		case err := <-done:
			if err == nil && killed[cmd.Process.Pid] {
				_ = cmd.Wait()
				return errForkHang
			}
			return err
		case <-timer.C:
			for _, pid := range unexecedChildren() {
				if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
					killed[pid] = true
				}
			}
			timer.Reset(5 * time.Second)
		}
	}
}

// unexecedChildren lists this process's children that still run the image of
// a qemu-user emulator, that is forks that have not reached exec. Under the
// emulator os.Getpid is the emulator process's own pid, and /proc of other
// processes is the real one.
func unexecedChildren() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if pp, ok := parentOf(pid); !ok || pp != self {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil {
			continue
		}
		if strings.HasPrefix(filepath.Base(exe), "qemu-") {
			out = append(out, pid)
		}
	}
	return out
}
