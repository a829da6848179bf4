#!/usr/bin/env bash
# scripts/qemu-exec.sh EMULATOR TEST-BINARY [ARGS...]: the `go test -exec`
# wrapper of scripts/test.sh for the arm and arm64 runs under qemu-user.
#
# It runs the test binary under EMULATOR (qemu-arm-static, qemu-aarch64-static)
# with a wall-clock limit, and runs it once more when the limit was hit. The
# reason: qemu-user now and then wedges a Go program for good, every thread
# parked in a futex wait and the runtime's own timers dead, so that even
# `go test -timeout` never fires (seen once on this machine with the capture
# tests under qemu-aarch64, which pass in 6 s). A second hang fails the run.
#
# Environment: QEMU_TEST_LIMIT (seconds, default 300) per test binary.
set -u
emulator=$1
shift
limit=${QEMU_TEST_LIMIT:-300}
rc=0
for attempt in 1 2; do
	timeout --kill-after=10 "$limit" "$emulator" "$@"
	rc=$?
	if [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then
		exit "$rc"
	fi
	echo "NOTICE: ${1##*/} under $emulator did not finish in ${limit}s (attempt $attempt of 2): an emulator hang; killed" >&2
done
exit "$rc"
