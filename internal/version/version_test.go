package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })

	Version, Commit = "v1.2.3", "abc1234"
	got := String()
	for _, want := range []string{
		"edgesync v1.2.3",
		"commit abc1234",
		runtime.Version(),
		runtime.GOOS + "/" + runtime.GOARCH,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("String() = %q, want it to contain %q", got, want)
		}
	}
}

func TestStringDefaults(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })

	Version, Commit = "dev", ""
	got := String()
	if !strings.HasPrefix(got, "edgesync dev (commit ") {
		t.Errorf("String() = %q, want prefix %q", got, "edgesync dev (commit ")
	}
	if strings.Contains(got, "commit )") {
		t.Errorf("String() = %q, has an empty commit", got)
	}
}
