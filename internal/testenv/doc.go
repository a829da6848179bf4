// Package testenv starts the real dependencies that edgesync's tests run
// against: a mosquitto broker ([Mosquitto]), a PostgreSQL server ([Postgres],
// [SharedPostgres]), a TCP proxy that can cut or stall a link ([NewProxy]),
// and the edgesync binary itself ([BuildBinary]).
//
// Every helper binds to 127.0.0.1 on a free port, keeps its files under a
// temporary directory, and is stopped by t.Cleanup (or, for the per-process
// shared instances, by [Main] when the test binary ends). Child processes are
// started with a parent-death signal, so a test binary that is killed does not
// leave brokers or databases running.
//
// # Missing tools
//
// A helper whose program is not installed fails the test with a message that
// says how to install it (scripts/test.sh installs everything). It skips
// instead only when EDGESYNC_ALLOW_SKIP=1 is set: CI must never pass by
// silently skipping.
//
// # Long tests
//
// Soak and stress tests call [RequireLong] first; they run only when
// EDGESYNC_LONG=1 is set, which `scripts/test.sh --long` does.
//
// # Goroutines
//
// The methods of [Broker], [PG] and [Proxy] are safe to call from any
// goroutine. When they fail they call t.Fatal, which ends only the calling
// goroutine: call them from the test's goroutine when the test must stop at a
// failure.
package testenv
