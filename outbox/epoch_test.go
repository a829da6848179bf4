package outbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
)

func TestAckAboveHeadStartsNewEpoch(t *testing.T) {
	for _, mode := range []Durability{Fsync, Spill} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Durability: mode}
			ob := mustOpen(t, dir, opts)
			appendN(t, ob, 10, 0)
			old := ob.Epoch()
			if _, err := ob.Ack(old, 4); err != nil {
				t.Fatal(err)
			}
			// The sink says it applied through 50: it saw records this outbox
			// never wrote (a restored or cloned disk).
			_, err := ob.Ack(old, 50)
			if !errors.Is(err, ErrAckAboveHead) {
				t.Fatalf("Ack above head: err = %v, want ErrAckAboveHead", err)
			}
			st := ob.Stats()
			if st.Epoch == old || st.Epochs != 2 || !strings.Contains(st.EpochReason, "above the head") {
				t.Fatalf("after ack above head: epoch %d (old %d), epochs %d, reason %q", st.Epoch, old, st.Epochs, st.EpochReason)
			}
			// The 6 unacknowledged records moved into the new epoch as 1..6, in order.
			recs := readAll(t, ob, 1)
			if len(recs) != 6 || st.Head != 6 || st.Watermark != 0 {
				t.Fatalf("new epoch holds %d records, head %d, watermark %d; want 6, 6, 0", len(recs), st.Head, st.Watermark)
			}
			for i, r := range recs {
				if r.Seq != Seq(i+1) || r.ID != rec(i+4).ID {
					t.Fatalf("record %d = seq %d id %s, want seq %d id %s", i, r.Seq, r.ID, i+1, rec(i+4).ID)
				}
			}
			// Acks of the old epoch are now foreign.
			if _, err := ob.Ack(old, 5); !errors.Is(err, ErrStaleEpoch) {
				t.Fatalf("old-epoch ack: err = %v", err)
			}
			first, _ := appendN(t, ob, 1, 100)
			if first != 7 {
				t.Fatalf("next seq %d, want 7", first)
			}
			ob.Close()
			ob = mustOpen(t, dir, opts)
			defer ob.Close()
			if ob.Epoch() != st.Epoch {
				t.Fatalf("epoch after reopen %d, want %d", ob.Epoch(), st.Epoch)
			}
			if got := readAll(t, ob, 1); len(got) != 7 {
				t.Fatalf("after reopen %d records, want 7", len(got))
			}
		})
	}
}

func TestNewerFormatRefused(t *testing.T) {
	dir := t.TempDir()
	ob := mustOpen(t, dir, Options{})
	ob.Close()
	// Write a meta record of format 99 directly.
	db, err := pebble.Open(filepath.Join(dir, "db"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := meta{format: 99, epoch: 5}
	if err := db.Set(metaKey, m.encode(nil), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(dir, testOpts(Options{}))
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Have != 99 || fe.Max != formatVersion {
		t.Fatalf("Open of a newer format: err = %v, want FormatError{99, %d}", err, formatVersion)
	}
	if !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("error %q does not say what is wrong", err)
	}
}

func TestCorruptedStoreMovedAside(t *testing.T) {
	dir := t.TempDir()
	ob := mustOpen(t, dir, Options{})
	appendN(t, ob, 100, 0)
	old := ob.Epoch()
	ob.Close()
	// Scribble over the MANIFEST, as a failing SD card does.
	matches, _ := filepath.Glob(filepath.Join(dir, "db", "MANIFEST-*"))
	if len(matches) == 0 {
		t.Fatal("no MANIFEST")
	}
	for _, m := range matches {
		b, _ := os.ReadFile(m)
		for i := 0; i < len(b); i += 7 {
			b[i] ^= 0x5a
		}
		if err := os.WriteFile(m, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ob = mustOpen(t, dir, Options{})
	defer ob.Close()
	st := ob.Stats()
	if st.Epoch == old || st.Corruptions != 1 || !strings.Contains(st.EpochReason, "corrupt") {
		t.Fatalf("after corruption: epoch %d (old %d), corruptions %d, reason %q", st.Epoch, old, st.Corruptions, st.EpochReason)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "db.corrupt-*"))
	if len(aside) != 1 {
		t.Fatalf("corrupted store not moved aside: %v", aside)
	}
	if _, _, err := ob.Append(context.Background(), []Record{rec(1)}); err != nil {
		t.Fatalf("append after recovering from corruption: %v", err)
	}
}
