package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// A child still running an emulator's image (a fork that has not reached
// exec) is found by its exe; a child that has exec'd something else is not.
func TestUnexecedChildren(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1)")
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(t.TempDir(), "qemu-arm-static")
	if err := os.WriteFile(fake, data, 0o755); err != nil {
		t.Fatal(err)
	}
	wedged := exec.Command(fake, "60")
	healthy := exec.Command(sleep, "60")
	for _, c := range []*exec.Cmd{wedged, healthy} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	}
	got := unexecedChildren()
	if !slices.Contains(got, wedged.Process.Pid) {
		t.Errorf("unexecedChildren() = %v, want it to hold the emulator-image child %d", got, wedged.Process.Pid)
	}
	if slices.Contains(got, healthy.Process.Pid) {
		t.Errorf("unexecedChildren() = %v, holds %d, which runs sleep", got, healthy.Process.Pid)
	}
}

// Under the emulator's watchdog a healthy start is an ordinary start: output,
// exit status and a fresh command per call.
func TestCombinedOutputUnderWatchdog(t *testing.T) {
	t.Setenv(EnvQEMU, "1")
	calls := 0
	out, err := CombinedOutput(func() *exec.Cmd {
		calls++
		return exec.Command("sh", "-c", "echo out; echo err >&2; exit 3")
	})
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("err = %v, want exit status 3", err)
	}
	if string(out) != "out\nerr\n" {
		t.Errorf("output %q, want %q", out, "out\nerr\n")
	}
	if calls != 1 {
		t.Errorf("newCmd called %d times, want 1", calls)
	}
	p, err := startProcess(func() *exec.Cmd { return exec.Command("sleep", "60") }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !alive(p.cmd.Process.Pid) {
		t.Errorf("started process %d is not running", p.cmd.Process.Pid)
	}
	p.stop(syscall.SIGKILL, 0)
	if alive(p.cmd.Process.Pid) {
		t.Errorf("process %d still runs after stop", p.cmd.Process.Pid)
	}
}
