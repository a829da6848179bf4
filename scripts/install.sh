#!/usr/bin/env bash
# install.sh: install edgesync from a release tarball (or from a checkout
# after scripts/build.sh), without the .deb. Run as root. Idempotent: run it
# again to upgrade.
#
#   ./install.sh [--binary PATH] [--no-enable]
#
# What it does, like the .deb:
#   /usr/bin/edgesync                      the binary (replaced atomically)
#   /etc/systemd/system/edgesync.service   the units (local units, so they
#   /etc/systemd/system/edgesync-sink.service    take precedence over /lib)
#   /etc/edgesync/agent.yaml               only when absent: yours is never
#                                          overwritten (the new default goes
#                                          to agent.yaml.dist beside it)
#   /usr/share/doc/edgesync/               docs and examples (sink.yaml,
#                                          mosquitto and EMQX ACL templates,
#                                          Prometheus alert rules)
#   user and group edgesync (system, no login), /etc/edgesync root:edgesync
#   0750, /var/lib/edgesync edgesync:edgesync 0750
# then enables edgesync.service (unless --no-enable) without starting it;
# a running agent or sink is restarted so that the new binary runs.
#
# Options:
#   --binary PATH   the binary to install [./edgesync in a tarball;
#                   dist/edgesync-linux-<arch> in a checkout, for this
#                   machine's architecture]
#   --no-enable     do not enable edgesync.service
#
# It refuses to run where the edgesync .deb is installed: upgrade that with
# apt or dpkg instead.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

binary=
enable=1
while [ $# -gt 0 ]; do
	case $1 in
	--binary) binary=${2:?--binary needs a path}; shift 2 ;;
	--no-enable) enable=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done

# The tree holding deploy/ and docs/: the tarball's top directory, or the
# checkout (this script is then scripts/install.sh).
here=$(cd "$(dirname "$0")" && pwd)
if [ -d "$here/deploy" ]; then root=$here; else root=$(dirname "$here"); fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install.sh: run as root (sudo $0 $*)" >&2
	exit 1
fi
if command -v dpkg-query >/dev/null &&
	dpkg-query -W -f '${Status}' edgesync 2>/dev/null | grep -q 'install ok installed'; then
	echo "install.sh: the edgesync package is installed; upgrade it with apt or dpkg instead" >&2
	exit 1
fi

if [ -z "$binary" ]; then
	case $(uname -m) in
	x86_64 | amd64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	armv7l) arch=armv7 ;;
	armv6l | arm*) arch=armv6 ;;
	*) echo "install.sh: unknown machine $(uname -m); name the binary with --binary" >&2; exit 2 ;;
	esac
	for b in "$root/edgesync" "$root/dist/edgesync-linux-$arch"; do
		if [ -f "$b" ]; then binary=$b; break; fi
	done
	if [ -z "$binary" ]; then
		echo "install.sh: no binary ($root/edgesync or $root/dist/edgesync-linux-$arch); build it with scripts/build.sh or pass --binary" >&2
		exit 1
	fi
fi
for f in deploy/systemd/edgesync.service deploy/systemd/edgesync-sink.service deploy/agent.yaml; do
	if [ ! -f "$root/$f" ]; then
		echo "install.sh: $root/$f is missing" >&2
		exit 1
	fi
done
if ! "$binary" version >/dev/null 2>&1; then
	echo "install.sh: $binary does not run on this machine ($(uname -m))" >&2
	exit 1
fi

# ---- user and directories ------------------------------------------------
if ! getent group edgesync >/dev/null; then
	groupadd --system edgesync
fi
if ! getent passwd edgesync >/dev/null; then
	useradd --system --gid edgesync --home-dir /var/lib/edgesync --no-create-home \
		--shell /usr/sbin/nologin --comment "edgesync agent" edgesync
fi
install -d -m 0750 -o root -g edgesync /etc/edgesync
if [ ! -d /var/lib/edgesync ]; then
	install -d -m 0750 -o edgesync -g edgesync /var/lib/edgesync
fi

# ---- binary (atomic: a running agent keeps its old inode) -----------------
install -m 0755 -o root -g root "$binary" /usr/bin/.edgesync.new
mv -f /usr/bin/.edgesync.new /usr/bin/edgesync
echo "installed /usr/bin/edgesync: $(/usr/bin/edgesync version)"

# ---- configuration: never overwritten ------------------------------------
if [ ! -e /etc/edgesync/agent.yaml ]; then
	install -m 0640 -o root -g edgesync "$root/deploy/agent.yaml" /etc/edgesync/agent.yaml
	echo "installed /etc/edgesync/agent.yaml: set device_id and broker.url in it"
elif ! cmp -s "$root/deploy/agent.yaml" /etc/edgesync/agent.yaml; then
	install -m 0640 -o root -g edgesync "$root/deploy/agent.yaml" /etc/edgesync/agent.yaml.dist
	echo "kept /etc/edgesync/agent.yaml; this version's commented default is /etc/edgesync/agent.yaml.dist"
fi

# ---- docs and examples ---------------------------------------------------
doc=/usr/share/doc/edgesync
install -d -m 0755 "$doc/examples/mosquitto" "$doc/examples/emqx" "$doc/examples/prometheus"
for f in docs/OPERATIONS.md docs/SECURITY.md docs/RUNBOOK.md; do
	if [ -f "$root/$f" ]; then install -m 0644 "$root/$f" "$doc/"; fi
done
if [ -f "$root/deploy/sink.yaml" ]; then install -m 0644 "$root/deploy/sink.yaml" "$doc/examples/"; fi
for f in "$root"/deploy/mosquitto/*; do
	if [ -f "$f" ]; then install -m 0644 "$f" "$doc/examples/mosquitto/"; fi
done
for f in "$root"/deploy/emqx/*; do
	if [ -f "$f" ]; then install -m 0644 "$f" "$doc/examples/emqx/"; fi
done
for f in "$root"/deploy/prometheus/*; do
	if [ -f "$f" ]; then install -m 0644 "$f" "$doc/examples/prometheus/"; fi
done

# ---- systemd units -------------------------------------------------------
changed=0
for u in edgesync.service edgesync-sink.service; do
	if ! cmp -s "$root/deploy/systemd/$u" "/etc/systemd/system/$u"; then
		install -m 0644 -o root -g root "$root/deploy/systemd/$u" "/etc/systemd/system/$u"
		changed=1
	fi
done
running=0
if [ -d /run/systemd/system ]; then running=1; fi
if [ $running = 1 ] && [ $changed = 1 ]; then
	systemctl daemon-reload
fi
if [ $enable = 1 ] && command -v systemctl >/dev/null; then
	# Works without a running systemd too (it only creates the symlink).
	systemctl enable edgesync.service >/dev/null 2>&1 || echo "install.sh: could not enable edgesync.service" >&2
fi
if [ $running = 1 ]; then
	# Restart what runs, so that the new binary runs; leave stopped units stopped.
	systemctl try-restart edgesync.service edgesync-sink.service
fi

echo "done. Next: edit /etc/edgesync/agent.yaml, then: systemctl start edgesync"
