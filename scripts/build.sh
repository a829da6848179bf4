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
# and dist/SHA256SUMS. VERSION defaults to `git describe --tags --always
# --dirty`, or "dev" outside a git checkout; `edgesync version` prints it with
# the commit.
set -euo pipefail

cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi

version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
pkg=github.com/edgesync/edgesync/internal/version
ldflags="-s -w -X $pkg.Version=$version -X $pkg.Commit=$commit"

targets=(
	"arm 6 armv6"
	"arm 7 armv7"
	"arm64 - arm64"
	"amd64 - amd64"
)

rm -rf dist
mkdir -p dist
for target in "${targets[@]}"; do
	read -r arch arm name <<<"$target"
	goarm=
	if [ "$arm" != - ]; then goarm=$arm; fi
	out=dist/edgesync-linux-$name
	echo "building $out ($version)"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=$goarm \
		go build -trimpath -ldflags "$ldflags" -o "$out" ./cmd/edgesync
done
(cd dist && sha256sum edgesync-linux-* >SHA256SUMS)
ls -l dist
cat dist/SHA256SUMS
