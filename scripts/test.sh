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
# Pi Zero/1 CPU) and arm64 under qemu-user-static. A timing summary ends the run.
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

# ---- gofmt ---------------------------------------------------------------
begin gofmt
unformatted=$(find . -name '*.go' -not -path './.git/*' -not -path './.cache/*' \
	-not -path '*/testdata/*' -not -path './dist/*' -print0 | xargs -0 -r "$(go env GOROOT)/bin/gofmt" -l)
if [ -n "$unformatted" ]; then
	echo "gofmt: these files need formatting (run gofmt -w):" >&2
	echo "$unformatted" >&2
	exit 1
fi
end

# ---- go vet --------------------------------------------------------------
begin "go vet"
go vet ./...
end

# ---- staticcheck ---------------------------------------------------------
begin "staticcheck $STATICCHECK_VERSION"
sc_dir=${STATICCHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgesync/tools}/staticcheck-$STATICCHECK_VERSION
staticcheck=$sc_dir/staticcheck
if ! "$staticcheck" -version 2>/dev/null | grep -q "(v\{0,1\}${STATICCHECK_VERSION#v})"; then
	echo "installing staticcheck $STATICCHECK_VERSION into $sc_dir"
	mkdir -p "$sc_dir"
	GOBIN=$sc_dir GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
"$staticcheck" ./...
end

# ---- go test -race -------------------------------------------------------
timeout=$TEST_TIMEOUT
race_name="go test -race"
if [ "$long" = 1 ]; then
	timeout=$LONG_TEST_TIMEOUT
	race_name="go test -race (EDGESYNC_LONG=1)"
fi
begin "$race_name"
EDGESYNC_LONG=$long CGO_ENABLED=1 go test -race -count=1 -timeout "$timeout" ./...
end

# ---- cross-build ---------------------------------------------------------
cross=("arm 6 armv6" "arm 7 armv7" "arm64 - arm64")
if compgen -G 'cmd/edgesync/*.go' >/dev/null; then
	xdir=$(mktemp -d)
	cleanup_dirs+=("$xdir")
	for target in "${cross[@]}"; do
		read -r arch arm name <<<"$target"
		begin "cross-build linux/$name"
		goarm=
		if [ "$arm" != - ]; then goarm=$arm; fi
		GOOS=linux GOARCH=$arch GOARM=$goarm go build -trimpath -o "$xdir/edgesync-$name" ./cmd/edgesync
		# A static binary has no program interpreter (dynamic loader).
		if command -v readelf >/dev/null && readelf -lW "$xdir/edgesync-$name" | grep -q 'Requesting program interpreter'; then
			echo "edgesync-$name is dynamically linked" >&2
			exit 1
		fi
		ls -l "$xdir/edgesync-$name"
		end
	done
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
	# ARMv6 as on a Pi Zero/1: catches ARMv7-only instructions (PITFALLS 22)
	# and misaligned 64-bit atomics.
	begin "go test linux/arm GOARM=6 (qemu)"
	EDGESYNC_LONG=0 EDGESYNC_QEMU=1 QEMU_CPU=arm1176 GOOS=linux GOARCH=arm GOARM=6 \
		go test -exec qemu-arm-static "${qemu_args[@]}" "${qpkgs[@]}"
	end
	begin "go test linux/arm64 (qemu)"
	EDGESYNC_LONG=0 EDGESYNC_QEMU=1 GOOS=linux GOARCH=arm64 \
		go test -exec qemu-aarch64-static "${qemu_args[@]}" "${qpkgs[@]}"
	end
fi

echo
echo "all checks passed"
