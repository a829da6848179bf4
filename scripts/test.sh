#!/usr/bin/env bash
# scripts/test.sh: every check CI runs, from a fresh Debian machine.
#
#   scripts/test.sh           the full suite (well under 20 minutes on 2 cores)
#   scripts/test.sh --long    also the soak and stress tests
#
# Steps: install missing system packages (mosquitto, qemu-user-static,
# PostgreSQL) with apt-get; gofmt; go vet; staticcheck (pinned, installed into
# a cache dir); go test -race of every package; a static cross-build of
# ./cmd/edgesync for linux/arm (GOARM=6 and 7) and linux/arm64; and go test of
# the packages in QEMU_PACKAGES for arm (GOARM=6, on an emulated ARM1176, the
# Pi Zero/1 CPU) and arm64 under qemu-user-static; scripts/test_package.sh
# (systemd units, .deb and install.sh, ACL templates, docs against the code).
# Every check runs even when
# an earlier one failed; a timing summary ends the run, and the exit status is
# 1 when any check failed.
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
# Add a package here once its tests need neither a network service nor much
# time; QEMU_SKIP (a go test -skip pattern) leaves out single tests.
QEMU_PACKAGES=(./outbox/ ./transport/wire/ ./internal/bytesize/ ./internal/jsoncbor/)
QEMU_SKIP=''
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
		GOBIN=$dir GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" || return 1
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

# ---- cross-build ---------------------------------------------------------
# cross_build GOARCH GOARM NAME
cross_build() {
	local out=$xdir/edgesync-$3
	GOOS=linux GOARCH=$1 GOARM=$2 go build -trimpath -o "$out" ./cmd/edgesync || return 1
	# A static binary has no program interpreter (dynamic loader).
	if command -v readelf >/dev/null && readelf -lW "$out" | grep -q 'Requesting program interpreter'; then
		echo "$out is dynamically linked" >&2
		return 1
	fi
	ls -l "$out"
}
if compgen -G 'cmd/edgesync/*.go' >/dev/null; then
	xdir=$(mktemp -d)
	cleanup_dirs+=("$xdir")
	check "cross-build linux/armv6" cross_build arm 6 armv6
	check "cross-build linux/armv7" cross_build arm 7 armv7
	check "cross-build linux/arm64" cross_build arm64 "" arm64
else
	begin "cross-build"
	echo "NOTICE: ./cmd/edgesync has no Go files yet: skipping the cross-build"
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
qemu_args=(-count=1 -timeout "$TEST_TIMEOUT")
if [ -n "$QEMU_SKIP" ]; then qemu_args+=(-skip "$QEMU_SKIP"); fi
if [ ${#qpkgs[@]} -gt 0 ]; then
	# ARMv6 as on a Pi Zero/1 (QEMU_CPU=arm1176): catches ARMv7-only
	# instructions (PITFALLS 22), 32-bit int overflows and misaligned 64-bit
	# atomics.
	check "go test linux/arm GOARM=6 (qemu)" env EDGESYNC_LONG=0 EDGESYNC_QEMU=1 \
		QEMU_CPU=arm1176 GOOS=linux GOARCH=arm GOARM=6 \
		go test -exec qemu-arm-static "${qemu_args[@]}" "${qpkgs[@]}"
	check "go test linux/arm64 (qemu)" env EDGESYNC_LONG=0 EDGESYNC_QEMU=1 \
		GOOS=linux GOARCH=arm64 \
		go test -exec qemu-aarch64-static "${qemu_args[@]}" "${qpkgs[@]}"
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
