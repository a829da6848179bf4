package apply

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSQLiteCheckpointer: the writer does not checkpoint inside commits; the
// background checkpointer copies the WAL into the database file.
func TestSQLiteCheckpointer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sink.db")
	s := openT(t, StoreConfig{URL: "sqlite://" + path})
	var pragma string
	query(t, s, "PRAGMA journal_mode", nil, func(scan func(...any) error) error { return scan(&pragma) })
	if pragma != "wal" {
		t.Errorf("journal_mode %q, want wal", pragma)
	}
	var sync int
	be := s.be.(*sqliteBackend)
	if err := be.conn.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Errorf("writer synchronous = %d (%v), want 2 (FULL)", sync, err)
	}
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var auto int
	if err := be.conn.QueryRowContext(context.Background(), "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil || auto != 0 {
		t.Errorf("writer wal_autocheckpoint = %d (%v), want 0", auto, err)
	}
	time.Sleep(checkpointEvery + 200*time.Millisecond) // the migration's pages
	before := size()
	mustApply(t, s, batch(7, recs(t, 1, 2000, "temps")...), nil)
	deadline := time.Now().Add(5 * checkpointEvery)
	for size() == before {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes after %v: no checkpoint", before, 5*checkpointEvery)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
