package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgUser is the superuser that initdb creates; tests connect as it, without
// a password (trust authentication on 127.0.0.1 only).
const pgUser = "edgesync"

// PG is a PostgreSQL database on a server on 127.0.0.1, from Postgres or
// SharedPostgres.
type PG struct {
	t      testing.TB
	srv    *pgServer
	db     string
	shared bool
}

// Postgres starts a PostgreSQL server of the test's own (initdb into a
// temporary directory, about a second or two) on 127.0.0.1 on a free port,
// with an empty database, and stops it when the test ends. Use it for tests
// that stop, kill or restart the server; SharedPostgres is faster otherwise.
//
// The server runs with fsync off but synchronous_commit on: a committed
// transaction has reached the operating system, so Kill (a crash of the
// process, not of the machine) loses nothing committed. When the tests
// run as root, the server runs as the user "postgres" (created when missing),
// since PostgreSQL refuses to run as root.
//
// When PostgreSQL is not installed the test fails, or skips when
// EDGESYNC_ALLOW_SKIP=1.
func Postgres(t testing.TB) *PG {
	t.Helper()
	srv, err := newPGServer(pgBin(t))
	if err != nil {
		t.Fatalf("testenv: postgres: %v", err)
	}
	t.Cleanup(func() {
		srv.halt(syscall.SIGINT)
		if t.Failed() {
			t.Logf("testenv: postgres on 127.0.0.1:%d:\n%s", srv.port, tail(srv.log(), 32<<10))
		}
		srv.remove()
	})
	if err := srv.start(); err != nil {
		t.Fatalf("testenv: start postgres: %v\n%s", err, tail(srv.log(), 32<<10))
	}
	pg := &PG{t: t, srv: srv, db: "edgesync"}
	if err := srv.exec(context.Background(), `CREATE DATABASE `+pgx.Identifier{pg.db}.Sanitize()); err != nil {
		t.Fatalf("testenv: postgres: create database: %v", err)
	}
	return pg
}

// Shared server, one per test binary.
var shared struct {
	once sync.Once
	srv  *pgServer
	err  error
	n    atomic.Int64
}

// SharedPostgres returns a fresh, empty database of its own on a PostgreSQL
// server shared by the whole test binary: the server starts at the first call
// and stops when Main returns; the database is dropped when the test ends.
// Stop, Start and Kill are refused on it: use Postgres for those.
//
// It requires the package's TestMain to call Main.
func SharedPostgres(t testing.TB) *PG {
	t.Helper()
	requireMain(t, "SharedPostgres")
	bin := pgBin(t)
	shared.once.Do(func() {
		srv, err := newPGServer(bin)
		if err != nil {
			shared.err = err
			return
		}
		onExit(func() {
			srv.halt(syscall.SIGINT)
			srv.remove()
		})
		if err := srv.start(); err != nil {
			shared.err = fmt.Errorf("%w\n%s", err, tail(srv.log(), 32<<10))
			return
		}
		shared.srv = srv
	})
	if shared.err != nil {
		t.Fatalf("testenv: shared postgres: %v", shared.err)
	}
	srv := shared.srv
	name := fmt.Sprintf("t%d_%s", shared.n.Add(1), dbNamePart(t.Name()))
	ctx := context.Background()
	if err := srv.exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: shared postgres: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// FORCE ends sessions the test left open.
		err := srv.exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
		if err != nil {
			t.Errorf("testenv: shared postgres: drop database %s: %v", name, err)
		}
	})
	return &PG{t: t, srv: srv, db: name, shared: true}
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// dbNamePart turns a test name into a short lowercase identifier part.
func dbNamePart(s string) string {
	s = nonIdent.ReplaceAllString(strings.ToLower(s), "_")
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.Trim(s, "_")
}

// DSN returns the database's connection string,
// "postgres://edgesync@127.0.0.1:PORT/DB?sslmode=disable".
func (pg *PG) DSN() string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, pg.srv.port, pg.db)
}

// Database returns the database's name.
func (pg *PG) Database() string { return pg.db }

// Addr returns the server's "127.0.0.1:PORT".
func (pg *PG) Addr() string { return "127.0.0.1:" + itoa(pg.srv.port) }

// Port returns the server's port.
func (pg *PG) Port() int { return pg.srv.port }

// SocketDir returns the directory of the server's unix socket.
func (pg *PG) SocketDir() string { return pg.srv.sock }

// Log returns what the server logged so far.
func (pg *PG) Log() string { return pg.srv.log() }

// Stop shuts the server down (fast shutdown: open sessions are ended) and
// waits for it to exit. Stop on a stopped server does nothing.
func (pg *PG) Stop() {
	pg.t.Helper()
	pg.own("Stop")
	pg.srv.halt(syscall.SIGINT)
}

// Kill kills the server and all its backends with SIGKILL, as a crash would,
// and waits for them to exit. The next Start runs crash recovery.
func (pg *PG) Kill() {
	pg.t.Helper()
	pg.own("Kill")
	pg.srv.halt(syscall.SIGKILL)
}

// Start starts the server again on the same port and data directory and
// waits until it accepts queries.
func (pg *PG) Start() {
	pg.t.Helper()
	pg.own("Start")
	if err := pg.srv.start(); err != nil {
		pg.t.Fatalf("testenv: start postgres: %v\n%s", err, tail(pg.srv.log(), 32<<10))
	}
}

// WriteFile writes a file into the server's data directory, owned by the
// user the server runs as, with the given mode: certificates and keys for
// Configure's settings (ssl_cert_file = 'server.crt' is relative to it).
func (pg *PG) WriteFile(name string, data []byte, mode os.FileMode) {
	pg.t.Helper()
	pg.own("WriteFile")
	p := filepath.Join(pg.srv.data, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		pg.t.Fatalf("testenv: postgres: %v", err)
	}
	if c := pg.srv.cred; c != nil {
		if err := os.Chown(p, int(c.Uid), int(c.Gid)); err != nil {
			pg.t.Fatalf("testenv: postgres: %v", err)
		}
	}
}

// Configure puts hba lines in front of pg_hba.conf (the first matching line
// wins; the trust lines initdb wrote stay behind them, so keep the test
// helpers' own user, edgesync, out of yours), adds settings
// ("ssl = on") to postgresql.conf, and restarts the server.
func (pg *PG) Configure(hba []string, settings ...string) {
	pg.t.Helper()
	pg.own("Configure")
	edit := func(name string, f func(old string) string) {
		p := filepath.Join(pg.srv.data, name)
		old, err := os.ReadFile(p)
		if err != nil {
			pg.t.Fatalf("testenv: postgres: %v", err)
		}
		if err := os.WriteFile(p, []byte(f(string(old))), 0o600); err != nil {
			pg.t.Fatalf("testenv: postgres: %v", err)
		}
	}
	edit("pg_hba.conf", func(old string) string { return strings.Join(hba, "\n") + "\n" + old })
	edit("postgresql.conf", func(old string) string { return old + "\n" + strings.Join(settings, "\n") + "\n" })
	pg.Stop()
	pg.Start()
}

func (pg *PG) own(what string) {
	pg.t.Helper()
	if pg.shared {
		pg.t.Fatalf("testenv: %s on a SharedPostgres server would disturb other tests; use testenv.Postgres(t)", what)
	}
}

// pgServer is one postgres process and its data directory. Its methods return
// errors so that it can outlive the test that started it (the shared server).
type pgServer struct {
	bin     string // directory of initdb and postgres
	base    string // removed at the end
	data    string
	sock    string
	logFile string
	port    int
	cred    *syscall.Credential // nil: run as ourselves

	mu   sync.Mutex
	proc *process
}

// pgBinDir returns the directory of the newest PostgreSQL server binaries:
// $EDGESYNC_PG_BIN, /usr/lib/postgresql/<highest>/bin (Debian), or the one
// holding initdb on PATH.
func pgBinDir() string {
	if d := os.Getenv("EDGESYNC_PG_BIN"); d != "" {
		return d
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestV := "", -1
	for _, m := range matches {
		dir := filepath.Dir(m)
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
			continue
		}
		if v > bestV {
			best, bestV = dir, v
		}
	}
	if best != "" {
		return best
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

// pgBin returns pgBinDir, or fails or skips t when PostgreSQL is missing.
func pgBin(t testing.TB) string {
	t.Helper()
	bin := pgBinDir()
	if bin == "" {
		missing(t, "PostgreSQL (initdb under /usr/lib/postgresql/*/bin)", "apt-get install postgresql")
	}
	return bin
}

// newPGServer creates a data directory with initdb, using the binaries in
// bin, and picks a port.
func newPGServer(bin string) (*pgServer, error) {
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	root := pgTempRoot(cred != nil)
	sweepPGDirs(root)
	base, err := os.MkdirTemp(root, "edgesync-pg-")
	if err != nil {
		return nil, err
	}
	// The owner's pid lets a later run remove this directory should this
	// test binary be killed before its cleanup (a test timeout).
	if err := os.WriteFile(filepath.Join(base, "owner.pid"), []byte(itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	s := &pgServer{
		bin:     bin,
		base:    base,
		data:    filepath.Join(base, "data"),
		sock:    filepath.Join(base, "sock"),
		logFile: filepath.Join(base, "postgres.log"),
		cred:    cred,
	}
	if err := s.initdb(); err != nil {
		s.remove()
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		s.remove()
		return nil, err
	}
	s.port = port
	return s, nil
}

func (s *pgServer) initdb() error {
	if err := os.Mkdir(s.sock, 0o700); err != nil {
		return err
	}
	if s.cred != nil {
		for _, p := range []string{s.base, s.sock} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return err
			}
		}
	}
	out, err := CombinedOutput(func() *exec.Cmd {
		cmd := exec.Command(filepath.Join(s.bin, "initdb"),
			"-D", s.data, "-U", pgUser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
		cmd.Dir = s.base
		cmd.Env = pgEnv()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: s.cred}
		return cmd
	})
	if err != nil {
		return fmt.Errorf("initdb (%s): %w\n%s", s.bin, err, out)
	}
	return nil
}

func pgEnv() []string {
	return []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC"}
}

// sweepPGDirs removes data directories under root left by test binaries that
// died before their cleanup: those whose owner.pid names no live process.
func sweepPGDirs(root string) {
	dirs, _ := filepath.Glob(filepath.Join(root, "edgesync-pg-*"))
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue // being created, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM) {
			continue
		}
		os.RemoveAll(d)
	}
}

// pgCredential returns nil when not root, and otherwise the credentials of
// the user "postgres", which it creates when missing.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return nil, fmt.Errorf("look up user postgres: %w", err)
		}
		out, err := CombinedOutput(func() *exec.Cmd {
			return exec.Command("useradd", "--system", "--user-group",
				"--no-create-home", "--home-dir", "/var/lib/postgresql",
				"--shell", "/usr/sbin/nologin", "postgres")
		})
		// Exit status 9: created meanwhile by another test binary.
		var exit *exec.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 9) {
			return nil, fmt.Errorf("PostgreSQL refuses to run as root and the user postgres "+
				"is missing; useradd postgres: %w: %s", err, out)
		}
		if u, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("look up user postgres after useradd: %w", err)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// pgTempRoot returns where to create the data directory. Running as another
// user, every directory above it must be searchable by others, which
// t.TempDir's parents are not; os.TempDir usually is, /tmp is the fallback.
func pgTempRoot(otherUser bool) string {
	dir := os.TempDir()
	if !otherUser || searchable(dir) {
		return dir
	}
	return "/tmp"
}

// searchable reports whether others may traverse dir and all its parents.
func searchable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

func (s *pgServer) running() bool {
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.exited:
		return false
	default:
		return true
	}
}

// start starts postgres and waits until it answers a query.
func (s *pgServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running() {
		return fmt.Errorf("already running on 127.0.0.1:%d", s.port)
	}
	logOut, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logOut.Close()
	p, err := startProcess(func() *exec.Cmd {
		cmd := exec.Command(filepath.Join(s.bin, "postgres"),
			"-D", s.data,
			"-h", "127.0.0.1",
			"-p", itoa(s.port),
			"-k", s.sock,
			"-c", "fsync=off",
			"-c", "full_page_writes=off",
			"-c", "shared_buffers=32MB",
			"-c", "max_connections=200",
			"-c", "logging_collector=off",
			"-c", "log_min_messages=warning",
			"-c", "log_line_prefix=%m [%p] ",
		)
		cmd.Dir = s.base
		cmd.Env = pgEnv()
		cmd.Stdout, cmd.Stderr = logOut, logOut
		return cmd
	}, s.cred)
	if err != nil {
		return err
	}
	s.proc = p
	if err := s.waitReady(60*time.Second, p.exited); err != nil {
		p.stop(syscall.SIGKILL, 0)
		return err
	}
	return nil
}

// waitReady connects until a query succeeds.
func (s *pgServer) waitReady(timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := s.execDB(ctx, "postgres", "SELECT 1")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("postgres exited before accepting queries")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres on 127.0.0.1:%d not ready within %v: %w", s.port, timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// exec runs one statement in the maintenance database "postgres".
func (s *pgServer) exec(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return s.execDB(ctx, "postgres", sql)
}

func (s *pgServer) execDB(ctx context.Context, db, sql string) error {
	dsn := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, s.port, db)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// halt stops the server: SIGINT is PostgreSQL's fast shutdown, SIGKILL a
// crash. Either way the whole process group is gone when it returns.
func (s *pgServer) halt(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.stop(sig, 15*time.Second)
	}
}

func (s *pgServer) remove() { os.RemoveAll(s.base) }

func (s *pgServer) log() string {
	data, err := os.ReadFile(s.logFile)
	if err != nil {
		if os.IsNotExist(err) {
			return ""
		}
		return fmt.Sprintf("(postgres log: %v)", err)
	}
	return string(data)
}
