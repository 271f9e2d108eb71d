#!/bin/sh
# The image's build step: deploy/Dockerfile's build stage runs it, and so
# does `make test` (deploy/deploy_test.go), so what the image holds is
# built and checked on a machine without Docker too.
#
#   deploy/build.sh OUTDIR      # VERSION and COMMIT from the environment
#
# Writes OUTDIR/rafting, a static binary (no cgo, no libc: it runs in an
# image with nothing else), and OUTDIR/var/lib/rafting, the empty data dir
# the image's volume starts from (mode 0700).
set -eu
out=${1:?usage: deploy/build.sh OUTDIR}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
cd "$(dirname "$0")/.."
pkg=github.com/rafting/rafting/server
CGO_ENABLED=0 go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X $pkg.version=${VERSION:-devel} -X $pkg.commit=${COMMIT:-}" \
	-o "$out/rafting" ./cmd/rafting
mkdir -p "$out/var/lib/rafting"
chmod 0700 "$out/var/lib/rafting"
"$out/rafting" version >/dev/null
