#!/usr/bin/env bash
# scripts/qemu-exec.sh EMULATOR TEST-BINARY [ARGS...]: the `go test -exec`
# wrapper of scripts/test.sh for the arm and arm64 runs under qemu-user.
#
# It runs the test binary under EMULATOR (qemu-arm-static, qemu-aarch64-static)
# with a wall-clock limit, and runs it once more when the limit was hit. The
# reason: qemu-user (7.2) now and then wedges the child of a fork before it
# reaches exec, and the test binary waits for it for good (seen with the
# capture, mqttx and testenv tests, each of which passes in seconds; the
# goroutine dump showed a start of mosquitto in syscall.forkExec for minutes).
# internal/testenv kills such a child and starts again (internal/testenv/
# fork.go); this limit is the last resort for any other wedge. A second hang
# fails the run.
#
# - At the limit the program first gets SIGQUIT: a Go runtime that is still
#   alive prints every goroutine's stack and exits, which tells where it
#   waited (a deadlock of our own, or the fork wedge above); SIGKILL follows
#   10 s later.
# - Each attempt runs in a session of its own. When it ends, whatever it left
#   behind in that session (brokers and databases the tests started, which
#   sit in process groups of their own) is killed: a leftover holding the
#   test's output pipe would otherwise keep `go test` waiting ("Test I/O
#   incomplete") and fail the run.
#
# Environment: QEMU_TEST_LIMIT (seconds, default 300) per test binary.
set -u
emulator=$1
shift
limit=${QEMU_TEST_LIMIT:-300}
rc=0
sid=
# go test stopping this wrapper (its own -timeout, ^C) stops the attempt too.
on_signal() {
	if [ -n "$sid" ]; then
		pkill -QUIT -P "$sid" 2>/dev/null
		sleep 5
		pkill -KILL -s "$sid" 2>/dev/null
	fi
	exit 2
}
trap on_signal QUIT TERM INT
for attempt in 1 2; do
	# Without job control a background job is not a group leader, so setsid
	# makes it a session leader in place: its pid is the session id.
	setsid timeout -s QUIT --kill-after=10 "$limit" "$emulator" "$@" &
	sid=$!
	wait "$sid"
	rc=$?
	pkill -KILL -s "$sid" 2>/dev/null
	if [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then
		exit "$rc"
	fi
	echo "NOTICE: ${1##*/} under $emulator did not finish in ${limit}s (attempt $attempt of 2): killed (the goroutine dump above, if any, shows where it waited)" >&2
done
exit "$rc"
