package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("listen on FreePort() = %d: %v", port, err)
	}
	ln.Close()
}

func TestLong(t *testing.T) {
	t.Setenv(EnvLong, "1")
	if !Long() {
		t.Errorf("Long() = false with %s=1", EnvLong)
	}
	t.Setenv(EnvLong, "")
	if Long() {
		t.Errorf("Long() = true with %s unset", EnvLong)
	}
}

func TestModuleRoot(t *testing.T) {
	root := ModuleRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "module github.com/edgesync/edgesync") {
		t.Errorf("%s/go.mod is not edgesync's", root)
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"short", "a\nb\n", 10, "a\nb\n"},
		{"cut at a line", "first line\nsecond\n", 9, "[...]\nsecond\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tail(tc.in, tc.n); got != tc.want {
				t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}

func TestDBNamePart(t *testing.T) {
	got := dbNamePart("TestSink/Apply-Duplicates#01")
	if want := "testsink_apply_duplicates_01"; got != want {
		t.Errorf("dbNamePart() = %q, want %q", got, want)
	}
}

func TestBuildBinary(t *testing.T) {
	if files, _ := filepath.Glob(filepath.Join(ModuleRoot(t), "cmd", "edgesync", "*.go")); len(files) == 0 {
		t.Skip("cmd/edgesync has no Go files yet")
	}
	bin := BuildBinary(t)
	if again := BuildBinary(t); again != bin {
		t.Errorf("second BuildBinary() = %q, want the same %q", again, bin)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("edgesync version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "edgesync") {
		t.Errorf("edgesync version printed %q, want it to name edgesync", out)
	}
}
