package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWholeOrNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Write(p, 0o600, func(w io.Writer) error { _, err := w.Write([]byte("one")); return err }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(p, 0o600, func(w io.Writer) error {
		_, _ = w.Write([]byte("half of tw"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "one" {
		t.Fatalf("after a failed write the file holds %q, want the old content", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if err := Write(p, 0o644, func(w io.Writer) error { _, err := w.Write([]byte("two")); return err }); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	b, _ = os.ReadFile(p)
	if string(b) != "two" || st.Mode().Perm() != 0o644 {
		t.Fatalf("file %q mode %v", b, st.Mode())
	}
}
