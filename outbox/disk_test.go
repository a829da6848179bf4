package outbox

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

func TestDiskBelowFloor(t *testing.T) {
	for _, when := range []WhenFull{Block, DropOldest} {
		t.Run(string(when), func(t *testing.T) {
			dir := t.TempDir()
			var free atomic.Uint64
			free.Store(1 << 30)
			opts := Options{
				WhenFull:    when,
				MinFreeDisk: 1 << 20,
				Ballast:     256 << 10,
				DiskFree:    func() (uint64, error) { return free.Load(), nil },
			}
			ob := mustOpen(t, dir, opts)
			defer ob.Close()
			ballast := filepath.Join(dir, "ballast")
			waitFor(t, "ballast created", func() bool { return fileExists(ballast) })
			appendN(t, ob, 100, 0)

			free.Store(100 << 10) // another process filled the disk
			waitFor(t, "low disk noticed", func() bool { return ob.Stats().DiskLow })
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, _, err := ob.Append(ctx, []Record{rec(100)})
			var fe *FullError
			if !errors.Is(err, ErrFull) || !errors.As(err, &fe) || fe.Reason != "disk" {
				t.Fatalf("append with the disk below the floor: err = %v, want a disk FullError", err)
			}
			if fileExists(ballast) {
				t.Fatal("ballast kept although the disk is low")
			}
			// Acknowledgements and deletes still work.
			if _, err := ob.Ack(ob.Epoch(), 50); err != nil {
				t.Fatalf("ack with a low disk: %v", err)
			}
			free.Store(1 << 30) // space returns
			waitFor(t, "disk recovered", func() bool { return !ob.Stats().DiskLow })
			if _, _, err := ob.Append(context.Background(), []Record{rec(100)}); err != nil {
				t.Fatalf("append after space returned: %v", err)
			}
			waitFor(t, "ballast recreated", func() bool { return fileExists(ballast) })
			if got := readAll(t, ob, 1); len(got) != 51 {
				t.Fatalf("read %d records, want 51", len(got))
			}
		})
	}
}

// TestENOSPC: Pebble itself meets ENOSPC (the floor was not enough). The
// append fails with a clear error, nothing acknowledged is lost, and after a
// restart with space back everything works.
func TestENOSPC(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
		if full.Load() && (op == errorfs.OpFileWrite || op == errorfs.OpFileSync || op == errorfs.OpCreate) {
			return syscall.ENOSPC
		}
		return nil
	}))
	opts := Options{FS: fs, MinFreeDisk: -1, Ballast: -1}
	ob := mustOpen(t, dir, opts)
	appendN(t, ob, 100, 0)
	full.Store(true)
	_, _, err := ob.Append(context.Background(), []Record{rec(100)})
	if err == nil {
		t.Fatal("append on a full disk succeeded")
	}
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("append on a full disk: err = %v, want ErrFailed", err)
	}
	t.Logf("append on a full disk: %v", err)
	if _, _, err := ob.Append(context.Background(), []Record{rec(101)}); !errors.Is(err, ErrFailed) {
		t.Fatalf("second append: err = %v, want ErrFailed", err)
	}
	_ = ob.Close()
	full.Store(false)
	ob = mustOpen(t, dir, opts)
	defer ob.Close()
	recs := readAll(t, ob, 1)
	if len(recs) < 100 {
		t.Fatalf("after restart %d records, want at least the 100 acknowledged", len(recs))
	}
	for i := 0; i < 100; i++ {
		if recs[i].ID != rec(i).ID {
			t.Fatalf("record %d is %s, want %s", i, recs[i].ID, rec(i).ID)
		}
	}
	if _, _, err := ob.Append(context.Background(), []Record{rec(102)}); err != nil {
		t.Fatalf("append after restart: %v", err)
	}
}

func fileExists(p string) bool {
	_, err := vfs.Default.Stat(p)
	return err == nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
