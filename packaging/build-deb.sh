#!/usr/bin/env bash
# Builds posbridge_<version>_<arch>.deb with debhelper (debian/) from a binary
# cargo built before: stages the files the package takes into a temp source
# tree, generates the manual pages and completions there, and runs
# dpkg-buildpackage -b for the binary's architecture.
#
#   packaging/build-deb.sh BINARY OUTDIR [VERSION] [ARCH]
#
# VERSION defaults to debian/changelog's (which a test keeps equal to
# Cargo.toml's); ARCH to the build machine's. For another ARCH, GENERATOR
# names a binary this machine runs (the CLI is the same) to generate the pages.
# POSBRIDGE_DEB_OPTIONS goes to dpkg-deb (the tests pass -Znone: faster).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage="usage: build-deb.sh BINARY OUTDIR [VERSION] [ARCH]"
BIN=$(realpath "${1:?$usage}")
OUT=${2:?$usage}
VERSION=${3:-}
ARCH=${4:-$(dpkg --print-architecture)}
GENERATOR=${GENERATOR:-$BIN}

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
SRC="$STAGE/posbridge"
mkdir -p "$SRC/config" "$SRC/docs"
cp -r "$ROOT/debian" "$ROOT/systemd" "$ROOT/udev" "$SRC/"
cp "$ROOT/config/posbridge.toml" "$SRC/config/"
cp "$ROOT"/{README,ARCHITECTURE,BENCHMARKS,SECURITY}.md "$SRC/"
cp "$ROOT"/docs/{CONTRACT,DEVELOPERS}.md "$SRC/docs/"
"$GENERATOR" generate "$SRC/generated"
if [ -n "$VERSION" ]; then
  sed -i "1s/([^)]*)/($VERSION)/" "$SRC/debian/changelog"
fi

# -d: the build dependencies are the project's (rustup's cargo built BINARY).
(cd "$SRC" && POSBRIDGE_BINARY="$BIN" dpkg-buildpackage -b -us -uc -d \
  --host-arch="$ARCH" >"$STAGE/build.log" 2>&1) || {
  cat "$STAGE/build.log" >&2
  exit 1
}
mkdir -p "$OUT"
for deb in "$STAGE"/*.deb; do
  cp "$deb" "$OUT/"
  [[ "$deb" == *dbgsym* ]] || echo "$OUT/$(basename "$deb")"
done
