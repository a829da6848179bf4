package main

import (
	"fmt"

	"github.com/edgesync/edgesync/internal/version"
)

func init() {
	register(command{name: "version", summary: "print the version, commit and GOOS/GOARCH", run: runVersion})
}

func runVersion(args []string) int {
	fs := newFlags("version", "print the version, commit and GOOS/GOARCH", "version")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fmt.Println(version.String())
	return exitOK
}
