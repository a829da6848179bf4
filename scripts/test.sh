#!/usr/bin/env bash
# scripts/test.sh: every check CI runs, from a fresh Debian machine.
#
#   scripts/test.sh           the full suite (well under 20 minutes on 2 cores)
#   scripts/test.sh --long    also the soak and stress tests
#
# Steps: install missing system packages (mosquitto, qemu-user-static,
# PostgreSQL) with apt-get; gofmt; go vet; staticcheck (pinned, installed into
# a cache dir); go test -race of every package; the release binaries for
# linux/arm (GOARM=6 and 7) and linux/arm64, full and nosink, built by
# scripts/build.sh, checked to be static and within the size limits below; the
# armv6 binary run under qemu on an emulated ARM1176 (the Pi Zero/1 CPU):
# `edgesync version` and a small `edgesync demo`; go test of the packages in
# QEMU_PACKAGES for arm (GOARM=6, ARM1176) and arm64 under qemu-user-static;
# scripts/test_package.sh (systemd units, .deb and install.sh, ACL templates,
# docs against the code). Every check runs even when an earlier one failed; a
# timing summary ends the run, and the exit status is 1 when any check failed.
#
# Long tests: soak and stress tests start with testenv.RequireLong(t), which
# skips them unless EDGESYNC_LONG=1. --long sets it (for the -race run only;
# never under qemu) and raises the test timeout.
#
# Environment:
#   EDGESYNC_LONG=1        same as --long
#   EDGESYNC_QEMU=1        set by this script for the runs under qemu, where
#                          everything is 5-20 times slower (testenv.Emulated)
#   EDGESYNC_ALLOW_SKIP=1  let tests skip when mosquitto/PostgreSQL are missing
#                          (never set in CI: this script installs them)
#   STATICCHECK_CACHE      where staticcheck is installed
#                          [${XDG_CACHE_HOME:-$HOME/.cache}/edgesync/tools]
set -euo pipefail

# Packages whose tests also run for GOARCH=arm and arm64 under qemu-user-static.
# qemu-user emulates the test binary only: the programs it starts run natively,
# so the tests with a real mosquitto or PostgreSQL (internal/testenv) run as
# well. What cannot run is an arm program started by a test: without
# binfmt_misc the kernel refuses to exec it ("exec format error"), so the tests
# of the edgesync binary (testenv.BuildBinary) are left out, with the reason,
# below. Every package with tests belongs in QEMU_PACKAGES or QEMU_EXCLUDED (the
# qemu step names any that is in neither).
QEMU_PACKAGES=(
	./agent/ ./apply/ ./capture/ ./outbox/ ./resync/ ./transport/ ./transport/wire/
	./internal/atomicfile/ ./internal/backoff/ ./internal/broker/ ./internal/bytesize/
	./internal/cbormsg/ ./internal/jsoncbor/ ./internal/latency/ ./internal/mqttx/
	./internal/pgwire/ ./internal/promtext/ ./internal/sdnotify/ ./internal/testenv/ ./internal/version/
	./internal/yamlcfg/
)
# "package: why" for each package left out.
QEMU_EXCLUDED=(
	"./cmd/edgesync/: every test runs the edgesync binary (testenv.BuildBinary); the armv6 binary itself runs under qemu in its own step"
	"./internal/scaletest/: runs agent and sink binaries (testenv.BuildBinary)"
)
# Single tests left out (a go test -skip pattern), and why.
QEMU_SKIP='^TestBuildBinary$'
QEMU_SKIP_WHY='internal/testenv TestBuildBinary runs the binary it builds'
# Size limits of the release binaries, in bytes, stripped (issue 6): the full
# binary within 20 MB and the agent without the sink (nosink) within 15 MB,
# on every target. See docs/BENCHMARKS.md for where the bytes go.
SIZE_NOSINK_MAX=15000000
SIZE_FULL_MAX=20000000
STATICCHECK_VERSION=v0.8.2 # supports Go 1.26; v0.7.0 does as well
TEST_TIMEOUT=15m
LONG_TEST_TIMEOUT=60m

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

long=${EDGESYNC_LONG:-0}
for arg in "$@"; do
	case $arg in
	--long) long=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "test.sh: unknown argument: $arg (see --help)" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
# The agent is pure Go; cgo stays on only where -race needs it.
export CGO_ENABLED=0
SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

# ---- timing --------------------------------------------------------------
step_names=()
step_times=()
step_results=()
current=
started=0
t0=$(date +%s.%N)

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

begin() {
	current=$1
	started=$(date +%s.%N)
	printf '\n==> %s\n' "$current"
}

end() {
	step_names+=("$current")
	step_times+=("$(elapsed "$started")")
	step_results+=("${1:-ok}")
	current=
}

cleanup_dirs=()

summary() {
	local rc=$?
	if [ ${#cleanup_dirs[@]} -gt 0 ]; then rm -rf "${cleanup_dirs[@]}"; fi
	if [ -n "$current" ]; then end FAILED; fi
	printf '\n==> summary\n'
	local i
	for i in "${!step_names[@]}"; do
		printf '  %-34s %7ss  %s\n' "${step_names[$i]}" "${step_times[$i]}" "${step_results[$i]}"
	done
	printf '  %-34s %7ss  %s\n' total "$(elapsed "$t0")" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")"
}
trap summary EXIT

# ---- system packages -----------------------------------------------------
begin "system packages"
need=()
if [ ! -x /usr/sbin/mosquitto ] && ! command -v mosquitto >/dev/null; then
	need+=(mosquitto)
fi
if ! command -v qemu-arm-static >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
	need+=(qemu-user-static)
fi
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && ! command -v initdb >/dev/null; then
	need+=(postgresql)
fi
if ! command -v gcc >/dev/null; then
	need+=(gcc libc6-dev) # -race needs cgo
fi
# binfmt-support is not needed: go test -exec runs the emulator explicitly.
if [ ${#need[@]} -gt 0 ]; then
	echo "installing: ${need[*]}"
	# Waits for a concurrent apt/dpkg run instead of failing on its lock.
	apt_opts=(-o DPkg::Lock::Timeout=600 -y -q)
	$SUDO apt-get "${apt_opts[@]}" update
	$SUDO apt-get "${apt_opts[@]}" install --no-install-recommends "${need[@]}"
	end "ok (installed ${need[*]})"
else
	echo "all present"
	end "ok (present)"
fi

# Every check below runs even when an earlier one failed, so that one run
# reports all problems; the script exits 1 at the end if any failed.
failed=()

# check NAME FUNCTION [ARGS...] runs one timed step. errexit does not apply
# inside FUNCTION (it runs as an if condition): it must return non-zero itself.
check() {
	local name=$1
	shift
	begin "$name"
	if "$@"; then
		end
	else
		end FAILED
		failed+=("$name")
	fi
}

# ---- gofmt ---------------------------------------------------------------
gofmt_check() {
	local unformatted
	unformatted=$(find . -name '*.go' -not -path './.git/*' -not -path './.cache/*' \
		-not -path '*/testdata/*' -not -path './dist/*' -print0 |
		xargs -0 -r "$(go env GOROOT)/bin/gofmt" -l) || return 1
	if [ -n "$unformatted" ]; then
		echo "gofmt: these files need formatting (run gofmt -w):" >&2
		echo "$unformatted" >&2
		return 1
	fi
}
check gofmt gofmt_check

# ---- go vet --------------------------------------------------------------
check "go vet" go vet ./...

# ---- staticcheck ---------------------------------------------------------
staticcheck_check() {
	local dir=${STATICCHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgesync/tools}/staticcheck-$STATICCHECK_VERSION
	if ! "$dir/staticcheck" -version 2>/dev/null | grep -q "(v\{0,1\}${STATICCHECK_VERSION#v})"; then
		echo "installing staticcheck $STATICCHECK_VERSION into $dir"
		mkdir -p "$dir" || return 1
		GOBIN=$dir GOFLAGS='' go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" || return 1
	fi
	"$dir/staticcheck" ./...
}
check "staticcheck $STATICCHECK_VERSION" staticcheck_check

# ---- go test -race -------------------------------------------------------
race_test() {
	local timeout=$TEST_TIMEOUT
	if [ "$long" = 1 ]; then timeout=$LONG_TEST_TIMEOUT; fi
	EDGESYNC_LONG=$long CGO_ENABLED=1 go test -race -count=1 -timeout "$timeout" ./...
}
if [ "$long" = 1 ]; then
	check "go test -race (EDGESYNC_LONG=1)" race_test
else
	check "go test -race" race_test
fi

# ---- release binaries ----------------------------------------------------
# release_build NAME: scripts/build.sh for one target, full and nosink, into
# $xdir/NAME; every binary must be static.
release_build() {
	local dir=$xdir/$1 f
	DIST=$dir TARGETS=$1 scripts/build.sh >"$dir.log" 2>&1 || { cat "$dir.log" >&2; return 1; }
	for f in "$dir"/edgesync-*linux-*; do
		# A static binary has no program interpreter (dynamic loader).
		if command -v readelf >/dev/null && readelf -lW "$f" | grep -q 'Requesting program interpreter'; then
			echo "$f is dynamically linked" >&2
			return 1
		fi
	done
	ls -l "$dir"/edgesync-*linux-*
}

size_check() {
	local f size max rc=0
	for f in "$xdir"/*/edgesync-*linux-*; do
		[ -f "$f" ] || continue
		size=$(stat -c %s "$f")
		max=$SIZE_FULL_MAX
		case $f in *-nosink-*) max=$SIZE_NOSINK_MAX ;; esac
		awk -v f="${f##*/}" -v s="$size" -v m="$max" 'BEGIN { printf "  %-28s %5.2f MB (limit %5.2f MB)\n", f, s/1e6, m/1e6 }'
		if [ "$size" -gt "$max" ]; then
			echo "${f##*/}: $size bytes, over the limit of $max" >&2
			rc=1
		fi
	done
	return $rc
}

# arm_binary: the armv6 release binaries on an emulated ARM1176 (the Pi
# Zero/1 CPU, PITFALLS 22), and the arm64 one.
arm_binary() {
	local full=$xdir/armv6/edgesync-linux-armv6 out
	out=$(qemu-arm-static -cpu arm1176 "$full" version) || return 1
	echo "$out"
	case $out in *"linux/arm, GOARM=6"*) ;; *) echo "not a linux/arm GOARM=6 binary" >&2; return 1 ;; esac
	qemu-arm-static -cpu arm1176 "$xdir/armv6/edgesync-nosink-linux-armv6" version || return 1
	qemu-aarch64-static "$xdir/arm64/edgesync-linux-arm64" version || return 1
	# The one-command tour, small: embedded broker (restarted halfway), agent
	# with an fsync outbox, sink on SQLite; it fails unless every record is
	# applied exactly once.
	timeout 600 qemu-arm-static -cpu arm1176 "$full" demo --records 2000 --rate 0 --quiet
}

if compgen -G 'cmd/edgesync/*.go' >/dev/null; then
	xdir=$(mktemp -d)
	cleanup_dirs+=("$xdir")
	check "release build linux/armv6" release_build armv6
	check "release build linux/armv7" release_build armv7
	check "release build linux/arm64" release_build arm64
	check "binary size" size_check
	check "armv6 binary on ARM1176 (qemu)" arm_binary
else
	begin "release build"
	echo "NOTICE: ./cmd/edgesync has no Go files yet: skipping the release build"
	end "skipped (no ./cmd/edgesync yet)"
fi

# ---- tests under qemu ----------------------------------------------------
qpkgs=()
for p in "${QEMU_PACKAGES[@]}"; do
	if compgen -G "$p*.go" >/dev/null; then
		qpkgs+=("$p")
	else
		echo "NOTICE: $p has no Go files yet: not tested under qemu"
	fi
done
# Name what is left out, and any package with tests in neither list.
for e in "${QEMU_EXCLUDED[@]}"; do echo "NOTICE: not tested under qemu: $e"; done
if [ -n "$QEMU_SKIP" ]; then echo "NOTICE: skipped under qemu: $QEMU_SKIP_WHY"; fi
module=$(go list -m)
while read -r p; do
	[ -n "$p" ] || continue
	p=./${p#"$module"/}/
	listed=0
	for q in "${QEMU_PACKAGES[@]}" "${QEMU_EXCLUDED[@]%%:*}"; do
		if [ "$q" = "$p" ]; then listed=1; fi
	done
	if [ $listed = 0 ]; then
		echo "NOTICE: $p has tests but is in neither QEMU_PACKAGES nor QEMU_EXCLUDED (scripts/test.sh): not tested under qemu"
	fi
done < <(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...)
qemu_args=(-count=1 -timeout "$TEST_TIMEOUT")
if [ -n "$QEMU_SKIP" ]; then qemu_args+=(-skip "$QEMU_SKIP"); fi
if [ ${#qpkgs[@]} -gt 0 ]; then
	# Each test binary runs through scripts/qemu-exec.sh, which kills and
	# reruns one that qemu-user wedged and cleans up what a killed run left
	# behind. ARMv6 as on a Pi Zero/1
	# (QEMU_CPU=arm1176): catches ARMv7-only
	# instructions (PITFALLS 22), 32-bit int overflows and misaligned 64-bit
	# atomics.
	check "go test linux/arm GOARM=6 (qemu)" env EDGESYNC_LONG=0 EDGESYNC_QEMU=1 \
		QEMU_CPU=arm1176 GOOS=linux GOARCH=arm GOARM=6 \
		go test -exec "$PWD/scripts/qemu-exec.sh qemu-arm-static" "${qemu_args[@]}" "${qpkgs[@]}"
	check "go test linux/arm64 (qemu)" env EDGESYNC_LONG=0 EDGESYNC_QEMU=1 \
		GOOS=linux GOARCH=arm64 \
		go test -exec "$PWD/scripts/qemu-exec.sh qemu-aarch64-static" "${qemu_args[@]}" "${qpkgs[@]}"
fi

# ---- units and packages (scripts/test_package.sh) ------------------------
# systemd-analyze verify of both units; the shipped configuration files and
# docs checked against the code; the mosquitto ACL templates on a real broker;
# the amd64 .deb and tarball installed, upgraded, removed and purged on this
# machine. It installs systemd, dpkg and mosquitto-clients with apt-get only
# when missing; it leaves nothing behind but the edgesync system user.
check "units and packages" scripts/test_package.sh

echo
if [ ${#failed[@]} -gt 0 ]; then
	printf 'FAILED:'
	printf ' [%s]' "${failed[@]}"
	echo
	exit 1
fi
echo "all checks passed"
