#!/usr/bin/env bash
# Installs what the test suites need beyond the Rust toolchain. Idempotent and
# fast when everything is already there; works as root or through sudo.
#
# Add Debian packages to PACKAGES (one list for every suite), not new apt calls.
set -euo pipefail

# Needed to build posbridge at all (make run too): the pcsc crate links libpcsclite.
BUILD_PACKAGES=(
  libpcsclite-dev   # pcsc crate: PC/SC client library and headers
  pkg-config        # pcsc-sys finds libpcsclite through it
)

# Needed to build the Debian package (make deb; tests/deb.rs).
PACKAGE_PACKAGES=(
  debhelper         # debian/rules: dh and its helpers
  lintian           # make deb and tests/deb.rs check the package with it
)

# Needed for arm64 (make deb ARCH=arm64, make test-arm64): Debian's cross
# toolchain, the arm64 PC/SC library to link against (multiarch), and
# qemu-user to run the result. The Rust target comes from rustup.
ARM64_PACKAGES=(
  gcc-aarch64-linux-gnu   # the linker and C compiler for ring and SQLite
  libc6-dev-arm64-cross   # arm64 libc headers for them
  libpcsclite-dev:arm64   # pcsc-sys links libpcsclite (pulls libc6:arm64 for qemu)
  qemu-user               # qemu-aarch64 runs the arm64 binary in the test
)

PACKAGES=(
  "${BUILD_PACKAGES[@]}"
  "${PACKAGE_PACKAGES[@]}"
  "${ARM64_PACKAGES[@]}"
  pcscd             # tests/pcsc.rs: the real PC/SC daemon
  vsmartcard-vpcd   # tests/pcsc.rs: virtual reader; the test's cards connect to it
  chromium          # tests/browser: headless browser driven by playwright-core
  fonts-noto-cjk    # tests/browser: so Chinese text renders in screenshots
  nodejs            # tests/browser: runs tests/browser/run.mjs
  npm               # tests/browser: installs playwright-core
  systemd           # tests/systemd.rs: systemd-analyze verify and security, systemd-tmpfiles
  mosquitto         # tests/uplink.rs: a real MQTT broker per test, killed and restarted
  mosquitto-clients # mosquitto_sub/pub, for poking a broker by hand
  rabbitmq-server   # tests/fleet_sim.rs: a two-node cluster with its MQTT plugin (started by the test, not the service)
  ca-certificates   # mqtts:// without uplink.ca trusts the system's CAs
  libnss3-tools     # tests/wss.rs: certutil, for posbridge trust-cert into a temp NSS db
  groff-base        # tests/cli.rs: renders the generated manual pages
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  SUDO=()
fi

# Packages with no "install ok installed" status, plus tools already on PATH
# from elsewhere (a node from nodesource or nvm satisfies nodejs/npm).
# --build: only what building needs (make run); --package: that and what
# make deb needs; neither installs test tools or npm.
BUILD_ONLY=0
if [ "${1:-}" = "--build" ]; then
  BUILD_ONLY=1
  PACKAGES=("${BUILD_PACKAGES[@]}")
elif [ "${1:-}" = "--package" ]; then
  BUILD_ONLY=1
  PACKAGES=("${BUILD_PACKAGES[@]}" "${PACKAGE_PACKAGES[@]}")
elif [ "${1:-}" = "--arm64" ]; then
  BUILD_ONLY=1
  PACKAGES=("${BUILD_PACKAGES[@]}" "${PACKAGE_PACKAGES[@]}" "${ARM64_PACKAGES[@]}")
fi

# arm64 packages come through multiarch; the Rust target through rustup.
for p in "${PACKAGES[@]}"; do
  if [[ "$p" == *:arm64 ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
      echo "install-test-deps: need root or sudo to add the arm64 architecture (dpkg --add-architecture arm64)" >&2
      exit 1
    fi
    "${SUDO[@]}" dpkg --add-architecture arm64
  fi
done
if [[ " ${PACKAGES[*]} " == *" qemu-user "* ]] \
  && ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi

missing=()
for p in "${PACKAGES[@]}"; do
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  if [ "$status" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
    echo "install-test-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-test-deps: installing ${missing[*]}" >&2
  # env, because sudo drops the caller's environment.
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The downloaded .debs (Chromium's alone is over 100 MB) are not needed again.
  "${SUDO[@]}" apt-get clean
fi

# Node packages for the browser tests: playwright-core (it never downloads a
# browser of its own: the tests drive /usr/bin/chromium) and qz-tray, the real
# qz-tray.js QZ Tray pages load (2.3.0, and 2.2.6 as qz-tray-2.2).
BROWSER_DIR="$ROOT/tests/browser"
if [ "$BUILD_ONLY" -eq 0 ] && [ -f "$BROWSER_DIR/package.json" ]; then
  node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$node_major" -lt 20 ]; then
    echo "install-test-deps: warning: node $(node --version 2>/dev/null || echo missing) is older than 20, which playwright-core needs" >&2
  fi
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  stamp="$BROWSER_DIR/node_modules/.install-test-deps.stamp"
  sums() {
    (cd "$BROWSER_DIR" && for f in package.json package-lock.json; do
      if [ -f "$f" ]; then sha256sum "$f"; fi
    done)
  }
  if [ ! -f "$stamp" ] || [ ! -d "$BROWSER_DIR/node_modules/playwright-core" ] ||
     [ "$(cat "$stamp")" != "$(sums)" ]; then
    if [ -f "$BROWSER_DIR/package-lock.json" ]; then
      (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    else
      (cd "$BROWSER_DIR" && npm install --no-audit --no-fund --loglevel=error)
    fi
    sums >"$stamp"
  fi
fi
