#!/usr/bin/env bash
# Runs every Fuzz target of the module briefly: 5000 inputs each by default
# (a count, not a time: a time limit makes the fuzzer flake with "context
# deadline exceeded" when a worker is slow to stop on a loaded machine).
# Targets are found by name; a package with several targets runs each in turn.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-5000x}"
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
