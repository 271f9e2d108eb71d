#!/usr/bin/env bash
# Runs every Fuzz target of the module for a short time each (default 3s).
# Targets are found by name; a package with several targets runs each in turn.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-3s}"
status=0
while IFS= read -r file; do
	pkg="./$(dirname "$file")"
	for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
		echo "fuzz ${pkg} ${target} (${fuzztime})"
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/fuzz.$$.log 2>&1; then
			cat /tmp/fuzz.$$.log
			status=1
		fi
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
rm -f /tmp/fuzz.$$.log
exit $status
