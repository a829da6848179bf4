package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func pgConnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestPostgres(t *testing.T) {
	pg := Postgres(t)
	ctx := context.Background()
	c := pgConnect(t, pg.DSN())
	if _, err := c.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY, data jsonb)`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO t VALUES (1, '{"a": 1}')`); err != nil {
		t.Fatal(err)
	}
	var db string
	if err := c.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if db != pg.Database() {
		t.Errorf("current_database() = %q, want %q", db, pg.Database())
	}

	// A committed row survives a crash of the server.
	pg.Kill()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("ping succeeded after Kill")
	}
	pg.Start()
	c = pgConnect(t, pg.DSN())
	var a int
	if err := c.QueryRow(ctx, `SELECT (data->>'a')::int FROM t WHERE id = 1`).Scan(&a); err != nil {
		t.Fatalf("row after Kill and Start: %v", err)
	}
	if a != 1 {
		t.Errorf("data->>'a' = %d, want 1", a)
	}

	pg.Stop()
	pg.Stop() // no-op when stopped
	pg.Start()
	c = pgConnect(t, pg.DSN())
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("count after Stop and Start = %d, %v; want 1", n, err)
	}
}

func TestSharedPostgres(t *testing.T) {
	ctx := context.Background()
	var first, second *PG
	t.Run("first", func(t *testing.T) {
		first = SharedPostgres(t)
		c := pgConnect(t, first.DSN())
		if _, err := c.Exec(ctx, `CREATE TABLE only_in_first (x int)`); err != nil {
			t.Fatal(err)
		}
		second = SharedPostgres(t)
		if second.DSN() == first.DSN() {
			t.Fatalf("two SharedPostgres calls gave the same DSN %q", first.DSN())
		}
		if second.Port() != first.Port() {
			t.Errorf("ports %d and %d, want one shared server", first.Port(), second.Port())
		}
		c2 := pgConnect(t, second.DSN())
		var n int
		err := c2.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("second database has %d tables, want a fresh empty one", n)
		}
	})
	// The databases are dropped when their test ends.
	other := SharedPostgres(t)
	c := pgConnect(t, other.DSN())
	var n int
	err := c.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname IN ($1, $2)`,
		first.Database(), second.Database()).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d of the subtest's databases still exist after it ended, want 0", n)
	}
}

func TestSharedPostgresParallel(t *testing.T) {
	for _, name := range []string{"a", "b", "c", "d"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pg := SharedPostgres(t)
			c := pgConnect(t, pg.DSN())
			var db string
			if err := c.QueryRow(context.Background(), `SELECT current_database()`).Scan(&db); err != nil {
				t.Fatal(err)
			}
			if db != pg.Database() {
				t.Errorf("current_database() = %q, want %q", db, pg.Database())
			}
		})
	}
}

func TestSweepPGDirs(t *testing.T) {
	root := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range map[string]int{
		"edgesync-pg-dead":  dead.Process.Pid,
		"edgesync-pg-alive": os.Getpid(),
	} {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sweepPGDirs(root)
	if _, err := os.Stat(filepath.Join(root, "edgesync-pg-dead")); !os.IsNotExist(err) {
		t.Errorf("directory of a dead owner: Stat err = %v, want it removed", err)
	}
	if _, err := os.Stat(filepath.Join(root, "edgesync-pg-alive")); err != nil {
		t.Errorf("directory of a live owner: %v, want it kept", err)
	}
}
