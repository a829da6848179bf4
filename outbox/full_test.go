package outbox

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBlockWhenFull(t *testing.T) {
	ob := mustOpen(t, t.TempDir(), Options{MaxBytes: 64 << 10})
	defer ob.Close()
	n := fitting(64 << 10)
	appendN(t, ob, n, 0)
	if ob.Stats().Full {
		t.Fatal("Stats.Full before any append was refused, with room for an empty record")
	}
	// The next append does not fit: it waits, then gives up with ErrFull.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := ob.Append(ctx, []Record{rec(n)})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Append on a full outbox: err = %v, want ErrFull", err)
	}
	if !ob.Stats().Full {
		t.Fatal("Stats.Full is false after an append was refused for want of room")
	}
	// A waiting append goes through as soon as an ack frees space.
	res := make(chan error, 1)
	go func() {
		_, _, err := ob.Append(context.Background(), []Record{rec(n)})
		res <- err
	}()
	select {
	case err := <-res:
		t.Fatalf("append returned %v before space was freed", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := ob.Ack(ob.Epoch(), 10); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("append after ack: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("append still blocked after an ack freed space")
	}
	st := ob.Stats()
	if st.Dropped != 0 || st.Head != Seq(n+1) || st.Full {
		t.Fatalf("stats = %+v", st)
	}
	// A request larger than the whole outbox is refused at once.
	big := rec(0)
	big.Data = make([]byte, 70<<10)
	if _, _, err := ob.Append(context.Background(), []Record{big}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge append: err = %v, want ErrTooLarge", err)
	}
}

// An outbox with less room left than the smallest record is full before any
// append is refused (what /healthz reports); drop_oldest never is.
func TestFullWithoutRoomForAnyRecord(t *testing.T) {
	ob := mustOpen(t, t.TempDir(), Options{MaxBytes: 64 << 10})
	defer ob.Close()
	r := rec(0)
	r.Data = make([]byte, 64<<10-recordSize(&Record{Stream: r.Stream, Key: r.Key, ID: r.ID, Schema: r.Schema})-recordSize(&Record{})+1)
	if _, _, err := ob.Append(context.Background(), []Record{r}); err != nil {
		t.Fatal(err)
	}
	if st := ob.Stats(); !st.Full {
		t.Fatalf("Stats.Full = false with %d of %d bytes used", st.UsedBytes, st.MaxBytes)
	}
	dir := t.TempDir()
	dob := mustOpen(t, dir, Options{MaxBytes: 64 << 10, WhenFull: DropOldest})
	defer dob.Close()
	if _, _, err := dob.Append(context.Background(), []Record{r}); err != nil {
		t.Fatal(err)
	}
	if dob.Stats().Full {
		t.Fatal("Stats.Full in drop_oldest mode")
	}
}

func TestDropOldest(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxBytes: 64 << 10, WhenFull: DropOldest}
	ob := mustOpen(t, dir, opts)
	n := fitting(64 << 10)
	appendN(t, ob, n, 0)
	if _, err := ob.Ack(ob.Epoch(), 5); err != nil {
		t.Fatal(err)
	}
	// 20 more records: the first 5 (acknowledged) go first, then 15 unacknowledged.
	appendN(t, ob, 20, n)
	st := ob.Stats()
	if st.Dropped != 15 || len(st.Drops) != 1 || st.Drops[0] != (Range{6, 20}) {
		t.Fatalf("after overflow: dropped %d, drops %v; want 15, [6..20]", st.Dropped, st.Drops)
	}
	if st.UsedBytes > opts.MaxBytes {
		t.Fatalf("used %d > max %d", st.UsedBytes, opts.MaxBytes)
	}
	recs := readAll(t, ob, 1)
	if recs[0].Seq != 21 || recs[len(recs)-1].Seq != Seq(n+20) {
		t.Fatalf("read %d..%d, want 21..%d", recs[0].Seq, recs[len(recs)-1].Seq, n+20)
	}
	// Drops survive a restart, and go away once the sink acknowledges past them.
	ob.Close()
	ob = mustOpen(t, dir, opts)
	defer ob.Close()
	st = ob.Stats()
	if len(st.Drops) != 1 || st.Drops[0] != (Range{6, 20}) || st.Dropped != 15 {
		t.Fatalf("after reopen drops %v dropped %d", st.Drops, st.Dropped)
	}
	if _, err := ob.Ack(ob.Epoch(), 19); err != nil {
		t.Fatal(err)
	}
	if d := ob.Stats().Drops; len(d) != 1 {
		t.Fatalf("drops after ack inside the range: %v, want kept", d)
	}
	if _, err := ob.Ack(ob.Epoch(), 25); err != nil {
		t.Fatal(err)
	}
	if d := ob.Stats().Drops; len(d) != 0 {
		t.Fatalf("drops after ack past the range: %v, want none", d)
	}
}

func TestRetainAcked(t *testing.T) {
	ob := mustOpen(t, t.TempDir(), Options{RetainAcked: 300 * time.Millisecond})
	defer ob.Close()
	appendN(t, ob, 10, 0)
	if _, err := ob.Ack(ob.Epoch(), 10); err != nil {
		t.Fatal(err)
	}
	// Still readable (for resend-from and export --from) right after the ack.
	if got := readAll(t, ob, 1); len(got) != 10 {
		t.Fatalf("read %d retained records, want 10", len(got))
	}
	if st := ob.Stats(); st.Depth != 0 || st.UsedBytes == 0 {
		t.Fatalf("stats with retained records: %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ob.Stats().UsedBytes != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("retained records not deleted after retain_acked: %+v", ob.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := readAll(t, ob, 1); len(got) != 0 {
		t.Fatalf("read %d records after retention, want 0", len(got))
	}
}

func TestRetainedDeletedEarlyWhenFull(t *testing.T) {
	ob := mustOpen(t, t.TempDir(), Options{MaxBytes: 64 << 10, RetainAcked: time.Hour})
	defer ob.Close()
	n := fitting(64 << 10)
	appendN(t, ob, n, 0)
	if _, err := ob.Ack(ob.Epoch(), Seq(n)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := ob.Append(ctx, []Record{rec(n)}); err != nil {
		t.Fatalf("append with only retained records in the way: %v", err)
	}
}

func TestSourcePosition(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []Durability{Fsync, Spill} {
		t.Run(string(mode), func(t *testing.T) {
			dir := dir + "/" + string(mode)
			ob := mustOpen(t, dir, Options{Durability: mode})
			if p, err := ob.SourcePosition("tail:/var/log/x"); err != nil || p != nil {
				t.Fatalf("position of an unknown source = %q, %v", p, err)
			}
			_, _, err := ob.AppendWithSource(context.Background(), []Record{rec(1)}, &SourcePosition{Name: "tail:/var/log/x", Value: []byte("offset=42")})
			if err != nil {
				t.Fatal(err)
			}
			ob.Close()
			ob = mustOpen(t, dir, Options{Durability: mode})
			defer ob.Close()
			p, err := ob.SourcePosition("tail:/var/log/x")
			if err != nil || string(p) != "offset=42" {
				t.Fatalf("position = %q, %v; want offset=42", p, err)
			}
		})
	}
}

// fitting returns how many records rec(0), rec(1), ... fit in max bytes.
func fitting(max int64) int {
	var used int64
	n := 0
	for {
		r := rec(n)
		if used+recordSize(&r) > max {
			return n
		}
		used += recordSize(&r)
		n++
	}
}

func TestRecordTooLarge(t *testing.T) {
	ob := mustOpen(t, t.TempDir(), Options{MaxRecordBytes: 1000})
	defer ob.Close()
	big := rec(1)
	big.Data = make([]byte, 1001)
	_, _, err := ob.Append(context.Background(), []Record{rec(0), big})
	if !errors.Is(err, ErrRecordTooLarge) || !strings.Contains(err.Error(), "record 1") {
		t.Fatalf("err = %v, want ErrRecordTooLarge naming record 1", err)
	}
	if st := ob.Stats(); st.Head != 0 {
		t.Fatalf("head %d after a refused request, want 0 (all or nothing)", st.Head)
	}
}
