#!/usr/bin/env bash
# scripts/build.sh: release binaries of edgesync into dist/.
#
#   scripts/build.sh [VERSION]
#
# Builds static (CGO_ENABLED=0, -trimpath, stripped) binaries of ./cmd/edgesync:
#   dist/edgesync-linux-armv6   linux/arm GOARM=6  (Raspberry Pi Zero/1)
#   dist/edgesync-linux-armv7   linux/arm GOARM=7
#   dist/edgesync-linux-arm64   linux/arm64
#   dist/edgesync-linux-amd64   linux/amd64
# each also as dist/edgesync-nosink-linux-<arch>, built with the nosink tag:
# the agent without the sink's stores (SQLite, PostgreSQL), the demo and
# bench, for gateways short of flash; and dist/SHA256SUMS. VERSION defaults
# to `git describe --tags --always --dirty`, or "dev" outside a git checkout;
# `edgesync version` prints it with the commit.
#
# Every binary is built with the nethttpomithttp2 tag, which leaves the
# HTTP/2 implementation out of net/http (about 0.5 MB): edgesync serves and
# dials HTTP only in cleartext (ingest, metrics, the control socket), where
# net/http speaks HTTP/1.1 anyway; HTTP/2 would only be negotiated over TLS.
#
# Dependencies that only run at start-up or on error paths are compiled
# without inlining (-gcflags=PKG=-l), which makes their code smaller and
# changes nothing else: the Protocol Buffers runtimes that Pebble's error
# and metrics libraries register at init, the Prometheus client Pebble
# links, golang.org/x/text, gopkg.in/yaml.v3 (configuration files only),
# and cockroachdb's error-formatting helpers. Together about 0.3 MB; hot
# paths (Pebble, paho, CBOR, zstd, SQLite, mochi) keep their inlining.
#
# Environment (for scripts/test.sh):
#   DIST=DIR                 write into DIR instead of dist/ (emptied first)
#   TARGETS="armv6 arm64"    build only these of armv6 armv7 arm64 amd64
set -euo pipefail

cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi

version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
pkg=github.com/edgesync/edgesync/internal/version
ldflags="-s -w -X $pkg.Version=$version -X $pkg.Commit=$commit"
tags=nethttpomithttp2
cold=(google.golang.org/protobuf/... github.com/gogo/protobuf/... github.com/prometheus/...
	golang.org/x/text/... gopkg.in/yaml.v3 github.com/getsentry/... github.com/kr/...
	github.com/cockroachdb/redact/... github.com/cockroachdb/logtags)
gcflags=()
for p in "${cold[@]}"; do gcflags+=(-gcflags="$p=-l"); done
dist=${DIST:-dist}
want=${TARGETS:-armv6 armv7 arm64 amd64}

targets=(
	"arm 6 armv6"
	"arm 7 armv7"
	"arm64 - arm64"
	"amd64 - amd64"
)

for name in $want; do
	case $name in
	armv6 | armv7 | arm64 | amd64) ;;
	*) echo "build.sh: unknown target $name in TARGETS (armv6 armv7 arm64 amd64)" >&2; exit 2 ;;
	esac
done

rm -rf "$dist"
mkdir -p "$dist"
for target in "${targets[@]}"; do
	read -r arch arm name <<<"$target"
	case " $want " in *" $name "*) ;; *) continue ;; esac
	goarm=
	if [ "$arm" != - ]; then goarm=$arm; fi
	for variant in "" nosink; do
		out=$dist/edgesync-linux-$name
		vtags=$tags
		if [ -n "$variant" ]; then
			out=$dist/edgesync-$variant-linux-$name
			vtags=$tags,$variant
		fi
		echo "building $out ($version)"
		CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=$goarm \
			go build -trimpath -tags "$vtags" "${gcflags[@]}" -ldflags "$ldflags" -o "$out" ./cmd/edgesync
	done
done
(cd "$dist" && sha256sum edgesync-* >SHA256SUMS)
ls -l "$dist"
cat "$dist/SHA256SUMS"
