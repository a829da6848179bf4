#!/usr/bin/env bash
# scripts/test_package.sh: tests of the systemd units, the shipped
# configuration files, the broker ACL templates and the .deb, on this machine.
#
#   scripts/test_package.sh [--no-deb]
#
# EDGESYNC_TEST_BINARY=PATH uses that linux/amd64 binary instead of building one.
#
# 1. units: `systemd-analyze verify` of deploy/systemd/*.service (copies whose
#    ExecStart names a real binary); any warning about them fails.
# 2. configs: every key that deploy/agent.yaml and deploy/sink.yaml show as a
#    commented default is uncommented, and the binary must load the result
#    (the documented keys and defaults exist); the shipped agent.yaml as it is
#    must be refused with exit code 2 naming device_id.
# 3. acl: a real mosquitto with deploy/mosquitto/mosquitto.conf (mutual TLS,
#    username from the certificate) and acl-username: devices reach only
#    their own topics, only the sink publishes acks, only operators publish
#    config. Skipped with a notice when mosquitto, mosquitto_pub/_sub or
#    openssl is missing.
# 4. deb (not with --no-deb; needs root or sudo): build the amd64 .deb and
#    tarball with scripts/package.sh; install the tarball with its install.sh
#    (twice: a changed config is kept), check and remove it (only where no
#    edgesync is installed); install the .deb with dpkg, check files, owners, modes, the
#    conffile, the user, the enabled unit and `edgesync version`; upgrade to a
#    second version and check that a changed conffile and a disabled unit stay
#    as they were; verify the installed units; remove, purge, and check that
#    nothing is left. A package left by an interrupted run is purged first;
#    an edgesync package installed otherwise stops the test (it is never
#    touched).
#
# It installs what it needs with apt-get when missing (systemd for
# systemd-analyze, dpkg; mosquitto-clients and openssl where mosquitto is
# installed, which scripts/test.sh does). Safe to run again; well under a
# minute once the Go build cache is warm.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

with_deb=1
for arg in "$@"; do
	case $arg in
	--no-deb) with_deb=0 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "test_package.sh: unknown argument: $arg (see --help)" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null; then SUDO=sudo; fi
fi

work=$(mktemp -d)
broker_pid=
cleanup() {
	if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; fi
	if [ -n "${KEEP_WORK:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "  ok: $*"; }

# ---- tools ---------------------------------------------------------------
need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ "$with_deb" = 1 ]; then
	command -v dpkg-deb >/dev/null || need+=(dpkg)
fi
# The broker ACL test needs mosquitto (scripts/test.sh installs it) and, with
# it, its command-line clients and openssl.
if [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null; then
	command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
	command -v openssl >/dev/null || need+=(openssl)
fi
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
		fail "missing ${need[*]} and no root or sudo to install them"
	fi
	echo "installing: ${need[*]}"
	$SUDO apt-get -o DPkg::Lock::Timeout=600 -y -q update
	$SUDO apt-get -o DPkg::Lock::Timeout=600 -y -q install --no-install-recommends "${need[@]}"
fi

# The binary: amd64 (this machine) with a recognisable version, or the one
# named by EDGESYNC_TEST_BINARY (then its own version).
version=0.0.0~pkgtest1
bindir=$work/bin
bin=$bindir/edgesync-linux-amd64
mkdir -p "$bindir"
if [ -n "${EDGESYNC_TEST_BINARY:-}" ]; then
	cp "$EDGESYNC_TEST_BINARY" "$bin"
else
	echo "==> building edgesync (linux/amd64)"
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath \
		-ldflags "-s -w -X github.com/edgesync/edgesync/internal/version.Version=$version" \
		-o "$bin" ./cmd/edgesync
fi
bin_version=$("$bin" version | awk '{print $2}')

# ---- 1. units --------------------------------------------------------------
echo "==> systemd-analyze verify"
# verify_units FILE...: fail on an error or on any line about these units.
verify_units() {
	local out rc=0 names
	out=$(systemd-analyze verify "$@" 2>&1) || rc=$?
	names=$(for f in "$@"; do basename "$f"; done | paste -sd'|')
	if [ $rc -ne 0 ] || printf '%s\n' "$out" | grep -Eq "$names"; then
		printf '%s\n' "$out" >&2
		fail "systemd-analyze verify $* (exit $rc)"
	fi
}
mkdir -p "$work/units"
for u in deploy/systemd/edgesync.service deploy/systemd/edgesync-sink.service; do
	sed "s#/usr/bin/edgesync #$bin #" "$u" >"$work/units/$(basename "$u")"
done
verify_units "$work/units/edgesync.service" "$work/units/edgesync-sink.service"
pass "both units verify"
# What the issue asks of the agent's unit, checked so that an edit cannot
# quietly drop it.
for want in Type=notify Restart=on-failure RestartPreventExitStatus=2 StateDirectory=edgesync \
	User=edgesync NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
	MemoryMax= TimeoutStopSec= Environment=GOMEMLIMIT= Environment=GOTRACEBACK=crash WatchdogSec= \
	"ExecReload=/bin/kill -HUP \$MAINPID" \
	'ExecStart=/usr/bin/edgesync agent --config /etc/edgesync/agent.yaml'; do
	grep -qxF -- "$want" deploy/systemd/edgesync.service || grep -q "^$want" deploy/systemd/edgesync.service ||
		fail "edgesync.service lacks $want"
done
pass "edgesync.service has every setting issue 6 asks for"

# ---- 2. configs ------------------------------------------------------------
echo "==> shipped configuration files"
# Uncomment "#key: value" lines (commented defaults), never "# prose".
uncomment() { sed -E 's/^([[:space:]]*)#([a-z_]+:)/\1\2/' "$1"; }
rc=0
out=$("$bin" status --config deploy/agent.yaml 2>&1) || rc=$?
[ $rc -eq 2 ] || fail "shipped agent.yaml: want exit 2 (device_id required), got $rc: $out"
grep -q 'device_id: required' <<<"$out" || fail "shipped agent.yaml: want an error naming device_id, got: $out"
pass "shipped agent.yaml is refused until device_id is set (exit 2)"
uncomment deploy/agent.yaml |
	sed -E "s#^device_id: \"\"#device_id: gw-pkgtest#; s#^data_dir: .*#data_dir: $work/agent-data#" >"$work/agent-all.yaml"
rc=0
out=$("$bin" status --config "$work/agent-all.yaml" 2>&1) || rc=$?
# Exit 1 (no agent, no outbox yet) means the configuration loaded.
[ $rc -eq 1 ] || fail "agent.yaml with every default uncommented: want exit 1 (config loads), got $rc: $out"
pass "every key and default in agent.yaml is known to the agent"
uncomment deploy/sink.yaml | sed -E "s#sqlite:///var/lib/edgesync/sink.db#sqlite://$work/sink.db#" >"$work/sink-all.yaml"
out=$("$bin" sink replay-parked --config "$work/sink-all.yaml" 2>&1) ||
	fail "sink.yaml with every default uncommented does not load: $out"
pass "every key and default in sink.yaml is known to the sink"

# ---- docs -------------------------------------------------------------------
echo "==> docs match the code"
# Every metric the code defines is in OPERATIONS.md, and every metric name the
# docs and the alert rules use is defined by the code.
code_metrics=$(grep -ohE '"edgesync_[a-z_]+"' agent/metrics.go apply/sink_metrics.go | tr -d '"' | sort -u)
[ -n "$code_metrics" ] || fail "no metrics found in agent/metrics.go and apply/sink_metrics.go"
for m in $code_metrics; do
	grep -q "\`${m}[\`{]" docs/OPERATIONS.md || fail "docs/OPERATIONS.md does not describe $m"
done
tables='edgesync_log edgesync_state edgesync_devices edgesync_parked edgesync_state_ids edgesync_schema_version'
grep -ohE 'edgesync_[a-z][a-z_]*[a-z]' docs/OPERATIONS.md docs/RUNBOOK.md docs/SECURITY.md \
	deploy/prometheus/edgesync-alerts.yml | sort -u >"$work/doc-names"
while read -r m; do
	case " $tables " in *" $m "*) continue ;; esac
	base=$(sed -E 's/_(bucket|count|sum)$//' <<<"$m")
	grep -qx "$m" <<<"$code_metrics" || grep -qx "$base" <<<"$code_metrics" ||
		fail "the docs name $m, which the code does not define"
done <"$work/doc-names"
# Every key of the shipped configuration files is in OPERATIONS.md.
for k in $(cat "$work/agent-all.yaml" "$work/sink-all.yaml" | grep -oE '^[[:space:]]*[a-z_]+:' | tr -d ' :' | sort -u); do
	grep -q "\`$k\`\|\`[a-z_]*\.$k\`\|\`$k\.\|$k\`" docs/OPERATIONS.md || fail "docs/OPERATIONS.md does not describe the key $k"
done
# The alert rules in OPERATIONS.md are the file deploy/prometheus/edgesync-alerts.yml.
awk '/^## Prometheus alert rules/{f=1} f && /^```yaml$/{c=1; next} c && /^```$/{exit} c' docs/OPERATIONS.md >"$work/alerts.yml"
grep -v '^#' deploy/prometheus/edgesync-alerts.yml | cmp -s - "$work/alerts.yml" ||
	fail "the alert rules in docs/OPERATIONS.md and deploy/prometheus/edgesync-alerts.yml differ"
if command -v promtool >/dev/null; then
	promtool check rules deploy/prometheus/edgesync-alerts.yml >/dev/null || fail "promtool check rules"
	pass "promtool check rules"
fi
pass "metric names, configuration keys and alert rules in the docs match the code"

# ---- 3. broker ACL ---------------------------------------------------------
acl_test() {
	local d=$work/acl
	mkdir -p "$d"
	chmod 0755 "$work" "$d"
	# A CA, the broker's certificate, and one client certificate per account
	# (CN = username, as use_identity_as_username takes it).
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=edgesync-test-ca -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
	local name
	for name in server gw-0001 gw-0002 _sink-1 _ops; do
		local cn=$name
		[ "$name" = server ] && cn=localhost
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$cn" \
			-keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
		printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/ext"
		openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
			-days 2 -extfile "$d/ext" -out "$d/$name.crt" 2>/dev/null
	done
	chmod 0644 "$d"/*
	cp deploy/mosquitto/acl-username "$d/acl"

	# The example broker configuration, with this test's paths and port.
	local port tries=0
	while :; do
		port=$((20000 + RANDOM % 30000))
		sed -e "s#/etc/mosquitto/certs/ca.crt#$d/ca.crt#; s#/etc/mosquitto/certs/server.crt#$d/server.crt#" \
			-e "s#/etc/mosquitto/certs/server.key#$d/server.key#; s#/etc/mosquitto/edgesync.acl#$d/acl#" \
			-e "s#^listener 8883#listener $port 127.0.0.1#; s#^persistence true#persistence false#" \
			deploy/mosquitto/mosquitto.conf >"$d/mosquitto.conf"
		# As root, mosquitto would drop to the user "mosquitto".
		if [ "$(id -u)" -eq 0 ]; then echo "user root" >>"$d/mosquitto.conf"; fi
		printf 'log_dest file %s\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_type subscribe\n' \
			"$d/mosquitto.log" >>"$d/mosquitto.conf"
		mosquitto -c "$d/mosquitto.conf" 2>>"$d/mosquitto.stderr" &
		broker_pid=$!
		local _
		for _ in $(seq 50); do
			if grep -q "Opening ipv4 listen socket on port $port" "$d/mosquitto.log" 2>/dev/null; then break; fi
			if ! kill -0 "$broker_pid" 2>/dev/null; then break; fi
			sleep 0.1
		done
		if kill -0 "$broker_pid" 2>/dev/null && grep -q "port $port" "$d/mosquitto.log"; then break; fi
		wait "$broker_pid" 2>/dev/null || true
		broker_pid=
		tries=$((tries + 1))
		[ $tries -lt 5 ] || { cat "$d/mosquitto.log" >&2; fail "mosquitto did not start with deploy/mosquitto/mosquitto.conf"; }
	done

	as() { # as ACCOUNT: TLS options of that account
		echo "-h localhost -p $port --cafile $d/ca.crt --cert $d/$1.crt --key $d/$1.key -q 1"
	}
	# Subscribers, each printing "topic payload" lines.
	local subs=()
	sub() { # sub ACCOUNT OUTFILE FILTER...
		local acct=$1 outf=$2
		shift 2
		local args=() t
		for t in "$@"; do args+=(-t "$t"); done
		# shellcheck disable=SC2046 # word splitting of as() is intended
		mosquitto_sub $(as "$acct") -i "sub-$acct-$RANDOM" -v "${args[@]}" >"$outf" 2>&1 &
		subs+=($!)
	}
	sub _sink-1 "$d/sink.out" 'edgesync/+/up'
	sub _sink-1 "$d/sink-shared.out" "\$share/sinks/edgesync/+/up"
	sub gw-0001 "$d/gw1.out" edgesync/gw-0001/ack edgesync/gw-0001/cmd edgesync/gw-0001/config edgesync/_fleet/config
	sub gw-0002 "$d/gw2.out" edgesync/gw-0002/ack edgesync/gw-0002/config edgesync/_fleet/config
	sub gw-0001 "$d/spy.out" edgesync/gw-0002/ack 'edgesync/+/up' 'edgesync/#'
	sub _ops "$d/ops.out" 'edgesync/+/state' 'edgesync/+/config/status' 'edgesync/+/config'
	# Wait until the broker logged all 15 subscriptions.
	local _
	for _ in $(seq 100); do
		[ "$(grep -cE '^[0-9]+: sub-[^ ]+ [0-2] ' "$d/mosquitto.log" || true)" -ge 15 ] && break
		sleep 0.1
	done

	pub() { # pub ACCOUNT TOPIC PAYLOAD
		# shellcheck disable=SC2046
		mosquitto_pub $(as "$1") -i "pub-$1-$RANDOM" -t "$2" -m "$3" >/dev/null 2>&1 || true
	}
	pub gw-0001 edgesync/gw-0001/up allowed-up
	pub gw-0001 edgesync/gw-0001/state allowed-state
	pub gw-0001 edgesync/gw-0001/config/status allowed-status
	pub gw-0001 edgesync/gw-0002/up forged-up
	pub gw-0001 edgesync/gw-0002/ack forged-ack
	pub gw-0001 edgesync/gw-0001/ack self-ack
	pub gw-0001 edgesync/gw-0001/config self-config
	pub gw-0001 edgesync/_fleet/config device-fleet-config
	pub gw-0001 edgesync/gw-0002/state forged-state
	pub _sink-1 edgesync/gw-0002/ack sink-ack
	pub _sink-1 edgesync/gw-0001/config sink-config
	pub _ops edgesync/gw-0001/config ops-config
	pub _ops edgesync/_fleet/config ops-fleet-config
	pub _ops edgesync/gw-0001/cmd ops-cmd
	pub _ops edgesync/gw-0002/ack ops-ack
	# Sentinels, one readable by each subscriber: mosquitto delivers in the
	# order it received, so once a subscriber has its "end", it has all.
	pub gw-0002 edgesync/gw-0002/up end
	pub gw-0002 edgesync/gw-0002/state end
	pub _ops edgesync/gw-0001/cmd end
	pub _sink-1 edgesync/gw-0002/ack end
	local f
	for f in sink sink-shared gw1 gw2 spy ops; do
		for _ in $(seq 100); do
			grep -q ' end$' "$d/$f.out" && break
			sleep 0.1
		done
	done
	kill "${subs[@]}" 2>/dev/null || true
	wait "${subs[@]}" 2>/dev/null || true

	# expect FILE LINE...: exactly these "topic payload" lines, in any order.
	expect() {
		local f=$1
		shift
		local want got
		want=$(printf '%s\n' "$@" | sed '/^$/d' | sort)
		got=$(grep -v -e ' end$' "$f" | sort || true)
		if [ "$want" != "$got" ]; then
			echo "--- want in $(basename "$f")" >&2
			printf '%s\n' "$want" >&2
			echo "--- got" >&2
			cat "$f" >&2
			fail "broker ACL: $(basename "$f")"
		fi
	}
	expect "$d/sink.out" "edgesync/gw-0001/up allowed-up"
	expect "$d/sink-shared.out" "edgesync/gw-0001/up allowed-up"
	expect "$d/gw1.out" "edgesync/gw-0001/config ops-config" "edgesync/_fleet/config ops-fleet-config" \
		"edgesync/gw-0001/cmd ops-cmd"
	expect "$d/gw2.out" "edgesync/gw-0002/ack sink-ack" "edgesync/_fleet/config ops-fleet-config"
	# A device may subscribe to wide filters, but receives only what it may
	# read: its own config and commands, the fleet's config; never another
	# device's acks or any batch.
	expect "$d/spy.out" "edgesync/gw-0001/config ops-config" "edgesync/_fleet/config ops-fleet-config" \
		"edgesync/gw-0001/cmd ops-cmd"
	expect "$d/ops.out" "edgesync/gw-0001/state allowed-state" "edgesync/gw-0001/config/status allowed-status" \
		"edgesync/gw-0001/config ops-config" "edgesync/_fleet/config ops-fleet-config"
	kill "$broker_pid" 2>/dev/null || true
	wait "$broker_pid" 2>/dev/null || true
	broker_pid=
	pass "mosquitto ACL: own topics only; acks only from the sink; config and cmd only from operators; \$share works"
}
echo "==> broker ACL (deploy/mosquitto)"
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if [ -x "$mosq" ] && command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null &&
	command -v openssl >/dev/null; then
	PATH=$(dirname "$mosq"):$PATH acl_test
else
	echo "NOTICE: mosquitto, mosquitto-clients or openssl missing: broker ACL test skipped"
fi

# ---- 4. the .deb -------------------------------------------------------------
if [ "$with_deb" = 0 ]; then
	echo "==> .deb: skipped (--no-deb)"
	echo "package tests passed"
	exit 0
fi
if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
	echo "NOTICE: not root and no sudo: .deb install test skipped"
	echo "package tests passed (without the .deb install)"
	exit 0
fi
echo "==> .deb (amd64)"
installed=$(dpkg-query -W -f '${Status} ${Version}' edgesync 2>/dev/null || true)
case $installed in
"") ;;
*pkgtest*) echo "purging edgesync left by an earlier run"; $SUDO dpkg --purge edgesync >/dev/null ;;
*"not-installed"*) ;;
*config-files*) fail "edgesync is removed but not purged here ($installed): purge it first (dpkg --purge edgesync)" ;;
*) fail "an edgesync package is installed on this machine ($installed): not touching it" ;;
esac

debs=$work/debs
scripts/package.sh --version "$version" --arch amd64 --bin-dir "$bindir" --out "$debs" >"$work/package.log" 2>&1 ||
	{ cat "$work/package.log" >&2; fail "scripts/package.sh"; }
deb1=$(ls "$debs"/edgesync_*_amd64.deb)
tarball=$(ls "$debs"/edgesync_*_linux_amd64.tar.gz)

# ---- 4a. the tarball and install.sh ----------------------------------------
# Only where no edgesync is installed (what an earlier interrupted run left,
# marked by /etc/edgesync/.pkgtest, is removed first).
tar_files=(/usr/bin/edgesync /etc/systemd/system/edgesync.service /etc/systemd/system/edgesync-sink.service
	/etc/systemd/system/multi-user.target.wants/edgesync.service /etc/edgesync /usr/share/doc/edgesync)
remove_tarball_install() {
	$SUDO rm -rf "${tar_files[@]}"
	$SUDO rmdir /var/lib/edgesync 2>/dev/null || true
}
if [ -e /etc/edgesync/.pkgtest ]; then remove_tarball_install; fi
present=()
for f in "${tar_files[@]}"; do
	if [ -e "$f" ] || [ -L "$f" ]; then present+=("$f"); fi
done
if [ ${#present[@]} -gt 0 ]; then
	echo "NOTICE: ${present[*]} exist on this machine: install.sh test skipped"
else
	mkdir -p "$work/tar"
	tar -C "$work/tar" -xzf "$tarball"
	top=$(ls "$work/tar")
	$SUDO "$work/tar/$top/install.sh" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "install.sh"; }
	$SUDO touch /etc/edgesync/.pkgtest
	/usr/bin/edgesync version | grep -qF "$bin_version" || fail "install.sh: edgesync version: $(/usr/bin/edgesync version)"
	[ "$(stat -c '%U:%G %a' /etc/edgesync/agent.yaml)" = "root:edgesync 640" ] || fail "install.sh: agent.yaml owner/mode"
	[ "$(stat -c '%U:%G %a' /var/lib/edgesync)" = "edgesync:edgesync 750" ] || fail "install.sh: /var/lib/edgesync owner/mode"
	[ -L /etc/systemd/system/multi-user.target.wants/edgesync.service ] || fail "install.sh: edgesync.service not enabled"
	verify_units /etc/systemd/system/edgesync.service /etc/systemd/system/edgesync-sink.service
	# Again, with a changed configuration: kept, the new default beside it.
	echo "# changed by test_package.sh" | $SUDO tee -a /etc/edgesync/agent.yaml >/dev/null
	$SUDO "$work/tar/$top/install.sh" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "install.sh (again)"; }
	tail -n 1 /etc/edgesync/agent.yaml | grep -q 'changed by test_package.sh' || fail "install.sh overwrote agent.yaml"
	cmp -s /etc/edgesync/agent.yaml.dist deploy/agent.yaml || fail "install.sh: no agent.yaml.dist"
	# It refuses where the .deb is installed; checked below.
	remove_tarball_install
	pass "tarball: install.sh installs binary, units, config, user; run again it keeps a changed config"
fi
# A second version for the upgrade.
version2=0.0.0~pkgtest2
scripts/package.sh --version "$version2" --arch amd64 --bin-dir "$bindir" --out "$debs" --no-tarball >>"$work/package.log" 2>&1 ||
	{ cat "$work/package.log" >&2; fail "scripts/package.sh (second version)"; }
deb2=$(ls "$debs"/edgesync_*pkgtest2*_amd64.deb)
pass "built $(basename "$deb1") and $(basename "$deb2")"

# Contents, as dpkg-deb sees them.
listing=$(dpkg-deb -c "$deb1")
for want in "-rwxr-xr-x root/root .* ./usr/bin/edgesync" \
	"-rw-r--r-- root/root .* ./lib/systemd/system/edgesync.service" \
	"-rw-r--r-- root/root .* ./lib/systemd/system/edgesync-sink.service" \
	"drwxr-x--- root/edgesync .* ./etc/edgesync/" \
	"-rw-r----- root/edgesync .* ./etc/edgesync/agent.yaml" \
	"./usr/share/doc/edgesync/examples/sink.yaml" \
	"./usr/share/doc/edgesync/examples/mosquitto/acl-username" \
	"./usr/share/doc/edgesync/examples/emqx/acl.conf" \
	"./usr/share/doc/edgesync/examples/prometheus/edgesync-alerts.yml" \
	"./usr/share/doc/edgesync/OPERATIONS.md"; do
	grep -Eq -- "$want" <<<"$listing" || { echo "$listing" >&2; fail "package lacks: $want"; }
done
dpkg-deb -f "$deb1" Architecture | grep -qx amd64 || fail "Architecture is not amd64"
dpkg-deb --ctrl-tarfile "$deb1" | tar -xO ./conffiles | grep -qx /etc/edgesync/agent.yaml ||
	fail "/etc/edgesync/agent.yaml is not a conffile"
pass "contents, modes, owners and conffiles"

$SUDO dpkg -i "$deb1" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i $deb1"; }
getent passwd edgesync >/dev/null || fail "no user edgesync"
getent group edgesync >/dev/null || fail "no group edgesync"
[ "$(getent passwd edgesync | cut -d: -f7)" = /usr/sbin/nologin ] || fail "edgesync has a login shell"
[ "$(stat -c '%U:%G %a' /etc/edgesync)" = "root:edgesync 750" ] || fail "/etc/edgesync: $(stat -c '%U:%G %a' /etc/edgesync)"
[ "$(stat -c '%U:%G %a' /etc/edgesync/agent.yaml)" = "root:edgesync 640" ] ||
	fail "/etc/edgesync/agent.yaml: $(stat -c '%U:%G %a' /etc/edgesync/agent.yaml)"
[ "$(stat -c '%U:%G %a' /var/lib/edgesync)" = "edgesync:edgesync 750" ] ||
	fail "/var/lib/edgesync: $(stat -c '%U:%G %a' /var/lib/edgesync)"
cmp -s /etc/edgesync/agent.yaml deploy/agent.yaml || fail "installed agent.yaml differs from deploy/agent.yaml"
/usr/bin/edgesync version | grep -qF "$bin_version" || fail "edgesync version: $(/usr/bin/edgesync version)"
[ -L /etc/systemd/system/multi-user.target.wants/edgesync.service ] || fail "edgesync.service is not enabled"
[ ! -e /etc/systemd/system/multi-user.target.wants/edgesync-sink.service ] || fail "edgesync-sink.service is enabled"
# The agent as packaged, run as its user, refuses to start until device_id is set.
rc=0
out=$(setpriv --reuid=edgesync --regid=edgesync --init-groups /usr/bin/edgesync agent --config /etc/edgesync/agent.yaml 2>&1) || rc=$?
if [ $rc -ne 2 ] || ! grep -q device_id <<<"$out"; then
	fail "packaged agent: want exit 2 naming device_id, got $rc: $out"
fi
verify_units /lib/systemd/system/edgesync.service /lib/systemd/system/edgesync-sink.service
pass "installed: user, owners, modes, conffile, edgesync version, enabled agent unit, installed units verify"

if [ -n "${top:-}" ]; then
	rc=0
	$SUDO "$work/tar/$top/install.sh" >"$work/install.log" 2>&1 || rc=$?
	if [ $rc -eq 0 ] || ! grep -q 'package is installed' "$work/install.log"; then
		cat "$work/install.log" >&2
		fail "install.sh ran over the installed .deb"
	fi
	pass "install.sh refuses to run over the .deb"
fi

# Reinstalling the same version changes nothing.
$SUDO dpkg -i "$deb1" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i $deb1 (again)"; }
pass "reinstall is idempotent"

# Upgrade: a changed conffile is kept, a disabled unit stays disabled.
echo "# changed by test_package.sh" | $SUDO tee -a /etc/edgesync/agent.yaml >/dev/null
$SUDO systemctl disable edgesync.service >/dev/null 2>&1
[ ! -e /etc/systemd/system/multi-user.target.wants/edgesync.service ] || fail "systemctl disable did not disable"
$SUDO dpkg -i --force-confold "$deb2" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i $deb2"; }
tail -n 1 /etc/edgesync/agent.yaml | grep -q 'changed by test_package.sh' || fail "the upgrade overwrote the changed conffile"
[ ! -e /etc/systemd/system/multi-user.target.wants/edgesync.service ] || fail "the upgrade enabled a disabled unit"
dpkg-query -W -f '${Version}' edgesync | grep -q pkgtest2 || fail "after the upgrade: $(dpkg-query -W -f '${Version}' edgesync)"
pass "upgrade keeps a changed conffile and a disabled unit"

# Remove, then purge.
$SUDO dpkg --remove edgesync >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg --remove"; }
for f in /usr/bin/edgesync /lib/systemd/system/edgesync.service /lib/systemd/system/edgesync-sink.service; do
	[ ! -e "$f" ] || fail "$f is left after remove"
done
[ -f /etc/edgesync/agent.yaml ] || fail "remove deleted the conffile (only purge may)"
$SUDO dpkg --purge edgesync >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg --purge"; }
for f in /etc/edgesync /var/lib/edgesync /etc/systemd/system/edgesync.service \
	/etc/systemd/system/multi-user.target.wants/edgesync.service; do
	if [ -e "$f" ] || [ -L "$f" ]; then fail "$f is left after purge"; fi
done
st=$(dpkg-query -W -f '${Status}' edgesync 2>/dev/null || true)
case $st in
"" | *not-installed*) ;;
*) fail "dpkg still lists edgesync: $st" ;;
esac
getent passwd edgesync >/dev/null || fail "purge removed the user (it is kept on purpose)"
pass "remove keeps the conffile; purge leaves nothing but the edgesync user (kept on purpose)"

echo "package tests passed"
