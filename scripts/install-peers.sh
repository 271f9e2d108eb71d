#!/usr/bin/env bash
# Installs the peers the side-by-side benchmark (benchmarks/peers) compares
# Rafting with, from Debian's packages, when they are missing:
#
#   etcd-server, etcd-client   /usr/bin/etcd, /usr/bin/etcdctl
#   zookeeper                  the jars under /usr/share/java (run with java)
#
# Idempotent: when everything is installed it only checks and exits. The
# Debian system services are never left running: a policy-rc.d that denies
# every start is in place during the install, and any unit the packages
# enabled is stopped and disabled afterwards, so nothing holds 2379/2380 or
# 2181/2888/3888 — the benchmark starts its own clusters on free ports and
# stops them by PID.
set -euo pipefail

need=()
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

command -v etcd >/dev/null 2>&1 && installed etcd-server || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 && installed etcd-client || need+=(etcd-client)
installed zookeeper || need+=(zookeeper)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)

if [ "${#need[@]}" -eq 0 ]; then
	echo "peers installed: $(etcd --version 2>/dev/null | head -1), zookeeper $(dpkg-query -W -f='${Version}' zookeeper)"
	exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "install-peers: need root (or sudo) to install ${need[*]}" >&2; exit 1; }
	sudo="sudo"
fi

echo "install-peers: installing ${need[*]}"
# Keep the packages' postinst scripts from starting their services.
policy=/usr/sbin/policy-rc.d
had_policy=""
if [ -e "$policy" ]; then
	had_policy="$(mktemp)"
	$sudo cp -p "$policy" "$had_policy"
fi
restore_policy() {
	if [ -n "$had_policy" ]; then
		$sudo cp -p "$had_policy" "$policy"
		rm -f "$had_policy"
	else
		$sudo rm -f "$policy"
	fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
$sudo chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

# Whatever a postinst enabled anyway: stop and disable it (no-ops without systemd).
for svc in etcd zookeeper; do
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif [ -x "/etc/init.d/$svc" ]; then
		$sudo "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
		command -v update-rc.d >/dev/null 2>&1 && $sudo update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
done

echo "peers installed: $(etcd --version 2>/dev/null | head -1), zookeeper $(dpkg-query -W -f='${Version}' zookeeper)"
