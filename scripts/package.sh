#!/usr/bin/env bash
# scripts/package.sh: Debian packages of edgesync, made with nfpm.
#
#   scripts/package.sh [--version V] [--arch A]... [--bin-dir DIR] [--out DIR] [--no-tarball]
#
# Builds the binaries with scripts/build.sh (into dist/, which it empties
# first), then one .deb per architecture:
#   amd64   from dist/edgesync-linux-amd64
#   arm64   from dist/edgesync-linux-arm64
#   armhf   from dist/edgesync-linux-armv6: GOARM=6, so the package runs on
#           every Raspberry Pi (Zero/1 included) and on ARMv7 Debian armhf
# named dist/edgesync_<debversion>-1_<arch>.deb. Each holds /usr/bin/edgesync,
# /lib/systemd/system/edgesync.service and edgesync-sink.service, the
# conffile /etc/edgesync/agent.yaml (deploy/agent.yaml), examples and docs
# under /usr/share/doc/edgesync, and the maintainer scripts in deploy/nfpm/.
# Beside each .deb, a tarball for machines without dpkg,
# dist/edgesync_<version>_linux_<amd64|arm64|armv6>.tar.gz: the binary,
# install.sh (scripts/install.sh), deploy/ and docs/, in one top directory.
#
# Options:
#   --version V    the version [git describe --tags --always --dirty, as
#                  build.sh]; a leading "v" is dropped for the package, and a
#                  version that does not start with MAJOR.MINOR (an untagged
#                  checkout) becomes 0.0.0~git<commits>.<describe>
#   --arch A       amd64, arm64 or armhf; repeat for several [all three]
#   --bin-dir DIR  take the binaries (edgesync-linux-amd64, -arm64, -armv6)
#                  from DIR instead of running build.sh
#   --out DIR      where the packages go [dist]
#   --no-tarball   make only the .deb packages
#
# nfpm runs as a Go tool (go run github.com/goreleaser/nfpm/v2/cmd/nfpm@...),
# downloaded through the Go module proxy into the module cache; it is not a
# dependency in go.mod.
set -euo pipefail

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi

version=
archs=()
bin_dir=
out=dist
tarball=1
while [ $# -gt 0 ]; do
	case $1 in
	--version) version=${2:?--version needs a value}; shift 2 ;;
	--arch) archs+=("${2:?--arch needs a value}"); shift 2 ;;
	--bin-dir) bin_dir=${2:?--bin-dir needs a value}; shift 2 ;;
	--out) out=${2:?--out needs a value}; shift 2 ;;
	--no-tarball) tarball=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "package.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done
if [ ${#archs[@]} -eq 0 ]; then archs=(amd64 arm64 armhf); fi
for a in "${archs[@]}"; do
	case $a in
	amd64 | arm64 | armhf) ;;
	*) echo "package.sh: --arch $a: want amd64, arm64 or armhf" >&2; exit 2 ;;
	esac
done
if [ -z "$version" ]; then
	version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi

# A Debian version starts with a digit and holds [A-Za-z0-9.+~] (no "-":
# nfpm adds the revision "-1").
deb_version=${version#v}
if ! [[ $deb_version =~ ^[0-9]+\.[0-9]+ ]]; then
	# Not a release (1.2.3, 1.2.3-4-gabcdef): an untagged commit such as
	# 84b241f-dirty, which may even start with a digit.
	commits=$(git rev-list --count HEAD 2>/dev/null || echo 0)
	deb_version="0.0.0~git${commits}.${deb_version}"
fi
deb_version=$(printf '%s' "$deb_version" | tr -c 'A-Za-z0-9.+~\n' '.')

if [ -z "$bin_dir" ]; then
	scripts/build.sh "$version"
	bin_dir=dist
fi
mkdir -p "$out"

# The docs and examples are packaged too: fail early, with their names.
missing=()
for f in deploy/agent.yaml deploy/sink.yaml deploy/systemd/edgesync.service \
	deploy/systemd/edgesync-sink.service deploy/mosquitto/acl-username \
	deploy/mosquitto/acl-clientid deploy/mosquitto/mosquitto.conf deploy/emqx/acl.conf \
	deploy/prometheus/edgesync-alerts.yml \
	docs/OPERATIONS.md docs/SECURITY.md docs/RUNBOOK.md \
	deploy/nfpm/preinst deploy/nfpm/postinst deploy/nfpm/prerm deploy/nfpm/postrm; do
	[ -f "$f" ] || missing+=("$f")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "package.sh: missing: ${missing[*]}" >&2
	exit 1
fi

# Resolve nfpm once (the first run downloads it into the module cache).
nfpm_bin=$(mktemp -d)
trap 'rm -rf "$nfpm_bin"' EXIT
GOFLAGS='' GOBIN="$nfpm_bin" go install "$NFPM"

for arch in "${archs[@]}"; do
	case $arch in
	amd64) bin=$bin_dir/edgesync-linux-amd64 ;;
	arm64) bin=$bin_dir/edgesync-linux-arm64 ;;
	armhf) bin=$bin_dir/edgesync-linux-armv6 ;;
	esac
	if [ ! -f "$bin" ]; then
		echo "package.sh: $bin not found (build it with scripts/build.sh)" >&2
		exit 1
	fi
	target=$out/edgesync_${deb_version}-1_${arch}.deb
	rm -f "$target"
	# nfpm does not expand variables everywhere (contents src): substitute here.
	sed -e "s#\${EDGESYNC_DEB_ARCH}#$arch#g" -e "s#\${EDGESYNC_DEB_VERSION}#$deb_version#g" \
		-e "s#\${EDGESYNC_BINARY}#$bin#g" deploy/nfpm/nfpm.yaml >"$nfpm_bin/nfpm.yaml"
	"$nfpm_bin/nfpm" package --config "$nfpm_bin/nfpm.yaml" --packager deb --target "$target"

	# The tarball for scripts/install.sh.
	if [ $tarball = 0 ]; then continue; fi
	tarch=$arch
	if [ "$arch" = armhf ]; then tarch=armv6; fi
	top=edgesync-${version}-linux-${tarch}
	stage=$nfpm_bin/stage/$top
	rm -rf "$nfpm_bin/stage"
	mkdir -p "$stage/deploy" "$stage/docs"
	install -m 0755 "$bin" "$stage/edgesync"
	install -m 0755 scripts/install.sh "$stage/install.sh"
	cp -R deploy/systemd deploy/mosquitto deploy/emqx deploy/prometheus deploy/agent.yaml deploy/sink.yaml "$stage/deploy/"
	cp docs/OPERATIONS.md docs/SECURITY.md docs/RUNBOOK.md "$stage/docs/"
	tar -C "$nfpm_bin/stage" --owner=0 --group=0 --numeric-owner -czf "$out/edgesync_${version}_linux_${tarch}.tar.gz" "$top"
done
ls -l "$out"/edgesync_"${deb_version}"-1_*.deb
if [ $tarball = 1 ]; then ls -l "$out"/edgesync_"${version}"_linux_*.tar.gz; fi
