package capture

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"
)

// SocketMode is the permission of a unix socket made by Listen: the owner
// and its group may post records.
const SocketMode = 0o660

// Listen listens on addr: "host:port" (TCP), or "unix:/path/to.sock" for a
// unix socket, created with mode 0660. A stale socket file (left by a
// process that died) is removed first; a socket that still answers is in
// use, and Listen fails rather than steal it. A path that exists and is not
// a socket is never removed.
func Listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("ingest: listen %s: %w", addr, err)
		}
		return ln, nil
	}
	if path == "" {
		return nil, fmt.Errorf("ingest: listen %q: want unix:/path/to.sock", addr)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("ingest: listen %s: %w", addr, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("ingest: listen %s: %w", addr, err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("ingest: listen %s: %w", addr, err)
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	return os.Remove(path)
}
