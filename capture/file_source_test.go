package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgesync/edgesync/outbox"
)

// line is record line i: key li, data {"i": i}.
func line(i int) string { return fmt.Sprintf(`{"key":"l%d","data":{"i":%d}}`+"\n", i, i) }

func lines(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		b.WriteString(line(i))
	}
	return b.String()
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func newFileSource(t *testing.T, path string, a Appender, p Positioner, mod ...func(*FileSourceConfig)) *FileSource {
	t.Helper()
	cfg := FileSourceConfig{Path: path, Stream: "lines", PollInterval: 10 * time.Millisecond}
	for _, f := range mod {
		f(&cfg)
	}
	s, err := NewFileSource(cfg, a, p, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkLines checks that the outbox holds lines 1..n, each once, in order.
func checkLines(t *testing.T, ob *outbox.Outbox, n int) {
	t.Helper()
	got := readAll(t, ob)
	var keys []string
	for _, r := range got {
		keys = append(keys, r.Key)
	}
	if len(got) != n {
		t.Fatalf("%d records, want %d: %v", len(got), n, keys)
	}
	for i, r := range got {
		if r.Key != fmt.Sprintf("l%d", i+1) || recJSON(t, r) != fmt.Sprintf(`{"i":%d}`, i+1) || r.Stream != "lines" {
			t.Fatalf("record %d: %s %s %s; all keys %v", i, r.Stream, r.Key, recJSON(t, r), keys)
		}
	}
}

func waitRecords(t *testing.T, ob *outbox.Outbox, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d records", n), 15*time.Second, func() bool { return ob.Stats().Head >= outbox.Seq(n) })
}

func TestFileSourceFollows(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "in.ndjson")
	ob := openOutbox(t, "", outbox.Options{})
	s := newFileSource(t, path, ob, ob)
	stop := runSource(t, s.Run)

	// The file does not exist yet.
	time.Sleep(30 * time.Millisecond)
	appendFile(t, path, lines(1, 3)+"\n   \n"+`{"key":"l4",`) // blank lines, then an incomplete line
	waitRecords(t, ob, 3)
	time.Sleep(50 * time.Millisecond)
	if h := ob.Stats().Head; h != 3 {
		t.Fatalf("head %d: the incomplete line was consumed", h)
	}
	appendFile(t, path, `"data":{"i":4}}`+"\n"+lines(5, 6))
	waitRecords(t, ob, 6)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkLines(t, ob, 6)
	st := s.Stats()
	if st.Records != 6 || st.Skipped != 2 || st.Rejected != 0 {
		t.Errorf("stats %+v, want 6 records, 2 blank lines", st)
	}
	raw, err := ob.SourcePosition(s.Name())
	if err != nil || raw == nil {
		t.Fatalf("no stored position: %v", err)
	}
	pos, err := decodeFilePos(raw)
	fi, _ := os.Stat(path)
	if err != nil || pos.off != fi.Size() || pos.fpLen != fingerprintSz {
		t.Errorf("stored position %+v (%v), want offset %d", pos, err, fi.Size())
	}
}

func TestFileSourceDataFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raw.ndjson")
	appendFile(t, path, "{\"t\":1}\r\n21.5\n\"text\"\n[1,2\n")
	ob := openOutbox(t, "", outbox.Options{})
	s := newFileSource(t, path, ob, ob, func(c *FileSourceConfig) {
		c.Format, c.Stream, c.Key, c.Schema = FileFormatData, "raw", "dev-1", "reading@2"
	})
	stop := runSource(t, s.Run)
	waitRecords(t, ob, 3)
	eventually(t, "the bad line", 5*time.Second, func() bool { return s.Stats().Rejected == 1 })
	stop()
	got := readAll(t, ob)
	want := []string{`{"t":1}`, `21.5`, `"text"`}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if recJSON(t, r) != want[i] || r.Stream != "raw" || r.Key != "dev-1" || r.Schema != "reading" || r.SchemaVersion != 2 {
			t.Errorf("record %d: %+v %s", i, r, recJSON(t, r))
		}
	}
}

func TestFileSourceBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in.ndjson")
	long := `{"key":"x","data":"` + strings.Repeat("x", maxLine) + `"}` + "\n"
	appendFile(t, path, line(1)+"{not json\n"+line(2)+`{"key":"l","dataa":1}`+"\n"+long+line(3)+`[{"data":1}]`+"\n"+`{"stream":"a b","data":1}`+"\n"+line(4))
	ob := openOutbox(t, "", outbox.Options{})
	m := new(Metrics)
	s, err := NewFileSource(FileSourceConfig{Path: path, Stream: "lines", PollInterval: 10 * time.Millisecond}, ob, ob, m, quiet())
	if err != nil {
		t.Fatal(err)
	}
	stop := runSource(t, s.Run)
	waitRecords(t, ob, 4)
	stop()
	checkLines(t, ob, 4)
	if st := s.Stats(); st.Rejected != 5 || m.SourceRejected.Load() != 5 {
		t.Errorf("rejected %d (metrics %d), want 5", st.Rejected, m.SourceRejected.Load())
	}
}

func TestFileSourceRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines(1, 5))
	ob := openOutbox(t, "", outbox.Options{})
	s := newFileSource(t, path, ob, ob)
	stop := runSource(t, s.Run)
	waitRecords(t, ob, 5)

	// logrotate: rename, the writer finishes a line in the old file, then a
	// new file appears.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path+".1", line(6))
	appendFile(t, path, lines(7, 9))
	waitRecords(t, ob, 9)
	appendFile(t, path, line(10))
	waitRecords(t, ob, 10)
	stop()
	checkLines(t, ob, 10)

	raw, _ := ob.SourcePosition(s.Name())
	pos, err := decodeFilePos(raw)
	fi, _ := os.Stat(path)
	dev, ino := fileID(fi)
	if err != nil || pos.dev != dev || pos.ino != ino || pos.off != fi.Size() {
		t.Errorf("stored position %+v (%v), want the new file at %d", pos, err, fi.Size())
	}
}

func TestFileSourceTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	appendFile(t, path, lines(1, 3)+strings.Repeat(" ", 500)+"\n")
	ob := openOutbox(t, "", outbox.Options{})
	s := newFileSource(t, path, ob, ob)
	stop := runSource(t, s.Run)
	waitRecords(t, ob, 3)
	time.Sleep(30 * time.Millisecond)
	// copytruncate: the file is emptied in place, and written again.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	appendFile(t, path, lines(4, 5))
	waitRecords(t, ob, 5)
	stop()
	checkLines(t, ob, 5)
}

// failingAppender passes appends to the outbox, and fails the failAt'th:
// before storing it (after=false), or after (after=true: stored, but the
// source is told it failed, as when the process dies as the append returns).
type failingAppender struct {
	ob     *outbox.Outbox
	failAt int32
	after  bool
	n      atomic.Int32
}

var errCrash = errors.New("simulated crash")

func (f *failingAppender) AppendWithSource(ctx context.Context, recs []outbox.Record, src *outbox.SourcePosition) (outbox.Seq, outbox.Seq, error) {
	if f.n.Add(1) == f.failAt {
		if !f.after {
			return 0, 0, errCrash
		}
		f.ob.AppendWithSource(ctx, recs, src)
		return 0, 0, errCrash
	}
	return f.ob.AppendWithSource(ctx, recs, src)
}

// TestFileSourceRestart: a source that dies in the middle (its append
// failing before or after storing) and restarts on the same outbox appends
// every line exactly once.
func TestFileSourceRestart(t *testing.T) {
	for _, after := range []bool{false, true} {
		t.Run(fmt.Sprintf("after=%v", after), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "in.ndjson")
			appendFile(t, path, lines(1, 25))
			obDir := t.TempDir()
			ob := openOutbox(t, obDir, outbox.Options{})
			fa := &failingAppender{ob: ob, failAt: 4, after: after}
			s := newFileSource(t, path, fa, ob, func(c *FileSourceConfig) { c.MaxBatch = 3 })
			err := s.Run(context.Background())
			if !errors.Is(err, errCrash) {
				t.Fatalf("Run: %v, want the crash", err)
			}
			wantHead := outbox.Seq(9)
			if after {
				wantHead = 12
			}
			if h := ob.Stats().Head; h != wantHead {
				t.Fatalf("head after the crash %d, want %d", h, wantHead)
			}
			if err := ob.Close(); err != nil {
				t.Fatal(err)
			}
			appendFile(t, path, lines(26, 30))

			ob2 := openOutbox(t, obDir, outbox.Options{})
			s2 := newFileSource(t, path, ob2, ob2, func(c *FileSourceConfig) { c.MaxBatch = 3 })
			stop := runSource(t, s2.Run)
			waitRecords(t, ob2, 30)
			time.Sleep(50 * time.Millisecond)
			stop()
			checkLines(t, ob2, 30)
		})
	}
}

// TestFileSourceRotatedWhileStopped: lines written to the old file before it
// was rotated away while the agent was stopped are still read, before the
// new file.
func TestFileSourceRotatedWhileStopped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines(1, 3))
	obDir := t.TempDir()
	ob := openOutbox(t, obDir, outbox.Options{})
	s := newFileSource(t, path, ob, ob)
	stop := runSource(t, s.Run)
	waitRecords(t, ob, 3)
	stop()
	ob.Close()

	appendFile(t, path, lines(4, 5))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines(6, 7))

	ob2 := openOutbox(t, obDir, outbox.Options{})
	s2 := newFileSource(t, path, ob2, ob2)
	stop2 := runSource(t, s2.Run)
	waitRecords(t, ob2, 7)
	time.Sleep(50 * time.Millisecond)
	stop2()
	checkLines(t, ob2, 7)
}

// TestFileSourceReplacedWhileStopped: a file rewritten in place (same
// inode, other content) is read from its start.
func TestFileSourceReplacedWhileStopped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	appendFile(t, path, `{"key":"old","data":0}`+"\n"+`{"key":"old","data":0}`+"\n")
	obDir := t.TempDir()
	ob := openOutbox(t, obDir, outbox.Options{})
	stop := runSource(t, newFileSource(t, path, ob, ob).Run)
	waitRecords(t, ob, 2)
	stop()
	ob.Close()

	// Same inode, longer, other first bytes.
	if err := os.WriteFile(path, []byte(lines(1, 4)), 0o644); err != nil {
		t.Fatal(err)
	}
	ob2 := openOutbox(t, obDir, outbox.Options{})
	stop2 := runSource(t, newFileSource(t, path, ob2, ob2).Run)
	waitRecords(t, ob2, 6)
	time.Sleep(50 * time.Millisecond)
	stop2()
	got := readAll(t, ob2)
	if len(got) != 6 || got[2].Key != "l1" || got[5].Key != "l4" {
		t.Errorf("records %v, want the 2 old ones then l1..l4", got)
	}
}

func TestFileSourceConfig(t *testing.T) {
	c := FileSourceConfig{Path: "/var/log/x.ndjson"}
	if err := c.Validate("sources.files[0]"); err != nil {
		t.Errorf("minimal: %v", err)
	}
	c.EnsureDefaults()
	if c.Format != FileFormatRecord || c.PollInterval != 250*time.Millisecond || c.MaxBatch != 1000 {
		t.Errorf("defaults: %+v", c)
	}
	bad := FileSourceConfig{Path: "rel/x", Format: "csv", Key: strings.Repeat("k", 1025), Schema: "x", PollInterval: -1, MaxBatch: -1}
	err := bad.Validate("sources.files[2]")
	for _, key := range []string{"path", "format", "key", "schema", "poll_interval", "max_batch"} {
		if err == nil || !strings.Contains(err.Error(), "sources.files[2]."+key+":") {
			t.Errorf("Validate: %v\nwant it to name %s", err, key)
		}
	}
	for _, c := range []FileSourceConfig{{}, {Path: "/x", Format: FileFormatData}, {Path: "/x", Stream: "a b"}} {
		if err := c.Validate("f"); err == nil {
			t.Errorf("Validate(%+v) accepted it", c)
		}
	}
	if _, err := NewFileSource(bad, nil, nil, nil, nil); err == nil {
		t.Errorf("NewFileSource accepted a bad config")
	}
}

func TestFilePos(t *testing.T) {
	p := filePos{dev: 1<<40 + 3, ino: 99, off: 12345, fpLen: 64, fp: 0xdeadbeef}
	got, err := decodeFilePos(p.encode())
	if err != nil || got != p {
		t.Errorf("round trip: %+v %v", got, err)
	}
	for _, b := range [][]byte{nil, {}, {2}, append([]byte{2}, make([]byte, filePosLen-1)...), make([]byte, filePosLen+1)} {
		if _, err := decodeFilePos(b); err == nil {
			t.Errorf("decodeFilePos(%x) accepted it", b)
		}
	}
	neg := filePos{off: -1}
	if _, err := decodeFilePos(neg.encode()); err == nil {
		t.Errorf("a negative offset was accepted")
	}
}

// TestFileSourceBadPosition: a stored position of an unknown format stops
// Run with an error instead of guessing.
func TestFileSourceBadPosition(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.ndjson")
	ob := openOutbox(t, "", outbox.Options{})
	if _, _, err := ob.AppendWithSource(context.Background(), nil, &outbox.SourcePosition{Name: "file:" + path, Value: []byte("junk")}); err != nil {
		t.Fatal(err)
	}
	s := newFileSource(t, path, ob, ob)
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "stored position") {
		t.Errorf("Run: %v", err)
	}
}
