#!/usr/bin/env bash
# Runs every fuzz target in drivers/fuzz for N seconds each over its corpus.
# cargo-fuzz needs nightly-only compiler flags; the machine has one stable
# toolchain, so RUSTC_BOOTSTRAP=1 unlocks them for this build only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cd drivers/fuzz
export RUSTC_BOOTSTRAP=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target" "$work/$target"
  echo "fuzz: $target for ${seconds}s"
  # New finds go to the scratch dir; the checked-in corpus of real frames only seeds.
  cargo fuzz run "$target" "$work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -print_final_stats=1
done
