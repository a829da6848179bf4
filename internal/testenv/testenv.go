package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Environment variables read by this package.
const (
	// EnvAllowSkip, when "1", lets a helper skip the test instead of failing
	// it when the program it needs (mosquitto, PostgreSQL) is not installed.
	EnvAllowSkip = "EDGESYNC_ALLOW_SKIP"
	// EnvLong, when "1", enables soak and stress tests (see RequireLong).
	EnvLong = "EDGESYNC_LONG"
)

// missing fails or skips t because a program it needs is not installed.
func missing(t testing.TB, what, install string) {
	t.Helper()
	if os.Getenv(EnvAllowSkip) == "1" {
		t.Skipf("testenv: %s is not installed (skipping because %s=1); install it with: %s", what, EnvAllowSkip, install)
	}
	t.Fatalf("testenv: %s is not installed; run scripts/test.sh, which installs it, or: %s "+
		"(set %s=1 to skip such tests instead)", what, install, EnvAllowSkip)
}

// Long reports whether soak and stress tests are enabled (EDGESYNC_LONG=1).
func Long() bool { return os.Getenv(EnvLong) == "1" }

// RequireLong skips t unless EDGESYNC_LONG=1 is set. Soak and stress tests
// call it first; `scripts/test.sh --long` sets the variable.
func RequireLong(t testing.TB) {
	t.Helper()
	if !Long() {
		t.Skipf("long test: set %s=1 or run scripts/test.sh --long", EnvLong)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a process the test starts. It is taken below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), at random and never twice in one test
// binary: a port from that range could be handed to some client's outgoing
// connection between now and the moment the process binds it, which under
// load made a sink fail with "address already in use".
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	return p
}

var ports struct {
	sync.Mutex
	handed map[int]bool
}

func freePort() (int, error) {
	lo := ephemeralLow()
	const base = 10000
	ports.Lock()
	defer ports.Unlock()
	if ports.handed == nil {
		ports.handed = map[int]bool{}
	}
	for range 200 {
		if lo-base < 1000 {
			break
		}
		p := base + rand.IntN(lo-base)
		if ports.handed[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		ports.handed[p] = true
		return p, nil
	}
	// No room below the ephemeral range: let the kernel choose.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow returns the first port of the kernel's ephemeral range
// (32768 when it cannot be read).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(data))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 1024 {
		return 32768
	}
	return n
}

// waitTCP dials addr until it accepts a connection, exited is closed, or the
// timeout passes.
func waitTCP(addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("process exited before accepting connections")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections within %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// process is a child process in its own process group, killed when the test
// binary dies.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's result, valid after exited
}

// startProcess starts the command made by newCmd in its own process group
// with a parent-death signal. cred, when not nil, runs it as another user.
// newCmd must return a fresh exec.Cmd each call (see startCmd).
func startProcess(newCmd func() *exec.Cmd, cred *syscall.Credential) (*process, error) {
	cmd, err := startCmd(func() *exec.Cmd {
		cmd := newCmd()
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
			Credential: cred,
		}
		return cmd
	})
	if err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop sends sig to the process and waits up to grace for it to exit; then,
// or at once for SIGKILL, it kills the process and all its descendants
// together, as a crash would, and waits until they are gone.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	if sig != syscall.SIGKILL {
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.exited:
		case <-time.After(grace):
		}
	}
	select {
	case <-p.exited:
		// Anything left in its process group.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		return
	default:
	}
	pid := p.cmd.Process.Pid
	// Freeze the leader so it forks nothing new, then kill the whole tree.
	// PostgreSQL backends call setsid, so the process group alone would
	// miss them, and they would serve their connections for a moment longer.
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	tree := descendants(pid)
	for _, q := range tree {
		_ = syscall.Kill(q, syscall.SIGKILL)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-p.exited
	deadline := time.Now().Add(10 * time.Second)
	for _, q := range tree {
		for alive(q) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// descendants returns the processes below pid, from /proc.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := make(map[int][]int)
	for _, e := range entries {
		q, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := parentOf(q); ok {
			children[pp] = append(children[pp], q)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// procStat returns the state and parent of pid from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	pp, err := strconv.Atoi(f[1])
	if err != nil || len(f[0]) == 0 {
		return 0, 0, false
	}
	return f[0][0], pp, true
}

func parentOf(pid int) (int, bool) {
	_, pp, ok := procStat(pid)
	return pp, ok
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z'
}

// Process-wide state, released by Main.
var (
	mainMu      sync.Mutex
	underMain   bool
	atExit      []func()
	buildOnce   sync.Once
	buildPath   string
	buildErr    error
	buildOutput []byte
)

// onExit registers f to run when Main returns. It reports false when the test
// binary does not use Main, so nothing would run f.
func onExit(f func()) bool {
	mainMu.Lock()
	defer mainMu.Unlock()
	if !underMain {
		return false
	}
	atExit = append(atExit, f)
	return true
}

// MainOption configures Main.
type MainOption func(*mainConfig)

type mainConfig struct {
	leaks    bool
	leakOpts []goleak.Option
}

// VerifyNoLeaks makes Main fail the test binary when goroutines are still
// running after all tests and the shared servers have finished, like
// goleak.VerifyTestMain.
func VerifyNoLeaks(opts ...goleak.Option) MainOption {
	return func(c *mainConfig) {
		c.leaks = true
		c.leakOpts = opts
	}
}

// Main runs the tests, then stops what SharedPostgres and BuildBinary left for
// the whole test binary, and exits. Use it as TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// SharedPostgres and BuildBinary require it.
func Main(m *testing.M, opts ...MainOption) {
	var cfg mainConfig
	for _, o := range opts {
		o(&cfg)
	}
	mainMu.Lock()
	underMain = true
	mainMu.Unlock()

	code := m.Run()

	mainMu.Lock()
	fs := atExit
	atExit = nil
	mainMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	if code == 0 && cfg.leaks {
		if err := goleak.Find(cfg.leakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// requireMain fails t when the test binary does not use Main.
func requireMain(t testing.TB, what string) {
	t.Helper()
	mainMu.Lock()
	ok := underMain
	mainMu.Unlock()
	if !ok {
		t.Fatalf("testenv: %s needs the package's TestMain to call testenv.Main(m), "+
			"which stops what it starts for the whole test binary: "+
			"func TestMain(m *testing.M) { testenv.Main(m) }", what)
	}
}

// ModuleRoot returns the directory of the go.mod that contains the current
// directory (a test runs in its package's directory).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return root
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the current directory")
		}
		dir = parent
	}
}

// goTool returns the go command. `go test` puts its own GOROOT/bin first on
// the PATH of test binaries, so this is the toolchain running the tests.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// BuildBinary builds ./cmd/edgesync (CGO_ENABLED=0, as released) once per test
// binary and returns the path of the executable. It fails t, with the
// compiler's output, when the build fails. It requires Main.
func BuildBinary(t testing.TB) string {
	t.Helper()
	requireMain(t, "BuildBinary")
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "edgesync-bin-")
		if err != nil {
			buildErr = err
			return
		}
		onExit(func() { os.RemoveAll(dir) })
		out := filepath.Join(dir, "edgesync")
		cmd := exec.Command(goTool(), "build", "-o", out, "./cmd/edgesync")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		start := time.Now()
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/edgesync (in %s): %w", root, err)
			buildOutput = buf.Bytes()
			return
		}
		buildPath = out
		if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "testenv: built %s in %v\n", out, time.Since(start).Round(time.Millisecond))
		}
	})
	if buildErr != nil {
		t.Fatalf("testenv: build edgesync: %v\n%s", buildErr, buildOutput)
	}
	return buildPath
}

// itoa is strconv.Itoa, kept short for config templates.
func itoa(i int) string { return strconv.Itoa(i) }

// tail returns the last n bytes of s, starting at a line.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[...]\n" + s
}

// EnvQEMU is set to "1" by scripts/test.sh for test runs under
// qemu-user-static.
const EnvQEMU = "EDGESYNC_QEMU"

// Emulated reports whether the tests run under qemu-user-static
// (EDGESYNC_QEMU=1), where everything is 5 to 20 times slower: tests may
// scale down iteration counts and scale up timeouts.
func Emulated() bool { return os.Getenv(EnvQEMU) == "1" }
