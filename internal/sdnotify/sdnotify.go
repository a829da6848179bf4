// Package sdnotify speaks systemd's notify protocol: a datagram to the unix
// socket named by $NOTIFY_SOCKET. Without that variable (not under systemd,
// or Type= is not notify) every call is a no-op.
package sdnotify

import (
	"net"
	"os"
	"strconv"
	"time"
)

// Send sends state (for example "READY=1") to systemd. It returns false when
// there is no notify socket.
func Send(state string) (bool, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}

// Ready tells systemd the service is up.
func Ready() error { _, err := Send("READY=1"); return err }

// Stopping tells systemd the service is shutting down.
func Stopping() error { _, err := Send("STOPPING=1"); return err }

// Reloading tells systemd the service reloads its configuration.
func Reloading() error { _, err := Send("RELOADING=1"); return err }

// Status sets the one-line status shown by systemctl status.
func Status(s string) error { _, err := Send("STATUS=" + s); return err }

// Watchdog pets the watchdog.
func Watchdog() error { _, err := Send("WATCHDOG=1"); return err }

// WatchdogInterval returns how often to pet the watchdog (half of
// WatchdogSec), or 0 when the watchdog is off for this process.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}
