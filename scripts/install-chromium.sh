#!/usr/bin/env bash
# Installs Debian's chromium, the headless browser server/ui's tests drive
# (chromedp), when it is missing. Idempotent: when chromium is installed it
# only says which one and exits. Needs root (or sudo): CI runs as root.
#
# Prints nothing on stdout but the browser's path, so a caller may use
# `bin=$(scripts/install-chromium.sh)`; progress goes to stderr.
set -euo pipefail

find_browser() {
	for b in chromium chromium-browser; do
		if command -v "$b" >/dev/null 2>&1; then
			command -v "$b"
			return 0
		fi
	done
	return 1
}

if bin=$(find_browser); then
	echo "$bin"
	exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "install-chromium: need root (or sudo) to install chromium" >&2; exit 1; }
	sudo="sudo"
fi

echo "install-chromium: installing chromium from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2

bin=$(find_browser) || { echo "install-chromium: chromium installed but not on PATH" >&2; exit 1; }
echo "install-chromium: $("$bin" --version 2>/dev/null | head -1)" >&2
echo "$bin"
