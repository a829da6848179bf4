// Package version holds the build's version and commit, set at link time by
// scripts/build.sh:
//
//	-ldflags "-X github.com/edgesync/edgesync/internal/version.Version=v1.2.3
//	          -X github.com/edgesync/edgesync/internal/version.Commit=abc1234"
//
// A plain `go build` or `go run` leaves Version "dev" and Commit empty; the
// commit is then taken from the Go toolchain's build information when it has
// one (a build inside a git checkout without -buildvcs=false).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release version, from `git describe --tags --always --dirty`
// at build time. "dev" when not set by the linker.
var Version = "dev"

// Commit is the full or abbreviated git commit the binary was built from.
// Empty when unknown.
var Commit = ""

// commit returns the commit, falling back to the VCS revision recorded by the
// Go toolchain (with "-dirty" when the tree had local changes) when Commit was
// not set by the linker.
func commit() string {
	if Commit != "" {
		return Commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}

// String returns one line naming the version, the commit, the Go version and
// the platform, for example
// "edgesync v0.1.0 (commit 3f2c1ab, go1.26.8, linux/arm, GOARM=6)".
func String() string {
	c := commit()
	if c == "" {
		c = "unknown"
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	if arm := goarm(); arm != "" {
		platform += ", GOARM=" + arm
	}
	return fmt.Sprintf("edgesync %s (commit %s, %s, %s)", Version, c, runtime.Version(), platform)
}

// goarm returns the GOARM setting the binary was built with, or "" when the
// build information does not record one (every GOARCH but arm).
func goarm() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "GOARM" {
			return s.Value
		}
	}
	return ""
}
