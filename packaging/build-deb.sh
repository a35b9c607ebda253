#!/usr/bin/env bash
# Builds posbridge_<version>_<arch>.deb from a built binary, without a Debian
# source tree: the package is small and its layout is this script.
#
#   packaging/build-deb.sh BINARY OUTDIR [VERSION]
#
# VERSION defaults to the workspace version in Cargo.toml.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN=${1:?usage: build-deb.sh BINARY OUTDIR [VERSION]}
OUT=${2:?usage: build-deb.sh BINARY OUTDIR [VERSION]}
VERSION=${3:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)}
ARCH=$(dpkg --print-architecture)

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
P="$STAGE/pkg"
install -d "$P/DEBIAN" "$P/usr/bin" "$P/lib/systemd/system" "$P/usr/lib/sysusers.d" \
  "$P/usr/lib/tmpfiles.d" "$P/etc/posbridge" "$P/usr/share/doc/posbridge"
install -m 0755 "$BIN" "$P/usr/bin/posbridge"
install -m 0644 "$ROOT/systemd/posbridge.service" "$P/lib/systemd/system/posbridge.service"
install -m 0644 "$ROOT/systemd/posbridge.sysusers" "$P/usr/lib/sysusers.d/posbridge.conf"
install -m 0644 "$ROOT/systemd/posbridge.tmpfiles" "$P/usr/lib/tmpfiles.d/posbridge.conf"
if [ -f "$ROOT/udev/70-posbridge.rules" ]; then
  install -d "$P/lib/udev/rules.d"
  install -m 0644 "$ROOT/udev/70-posbridge.rules" "$P/lib/udev/rules.d/70-posbridge.rules"
fi
# The config holds tokens and the broker password: readable by the service's group only.
install -m 0640 "$ROOT/config/posbridge.toml" "$P/etc/posbridge/posbridge.toml"
for doc in README.md ARCHITECTURE.md BENCHMARKS.md SECURITY.md docs/CONTRACT.md; do
  if [ -f "$ROOT/$doc" ]; then
    install -m 0644 "$ROOT/$doc" "$P/usr/share/doc/posbridge/$(basename "$doc")"
  fi
done
install -m 0644 "$ROOT/packaging/debian/copyright" "$P/usr/share/doc/posbridge/copyright"

sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" \
  -e "s/@SIZE@/$(du -sk "$P" | cut -f1)/" "$ROOT/packaging/debian/control" >"$P/DEBIAN/control"
install -m 0644 "$ROOT/packaging/debian/conffiles" "$P/DEBIAN/conffiles"
for s in postinst prerm postrm; do
  install -m 0755 "$ROOT/packaging/debian/$s" "$P/DEBIAN/$s"
done

mkdir -p "$OUT"
DEB="$OUT/posbridge_${VERSION}_${ARCH}.deb"
# COMPRESSION=none keeps the tests fast (they package a debug binary).
dpkg-deb --root-owner-group "-Z${COMPRESSION:-xz}" --build "$P" "$DEB" >/dev/null
echo "$DEB"
