#!/usr/bin/env bash
# Runs every fuzz target for N seconds each over its corpus: the sans-IO
# decoders and the HQ downlink parser (drivers/fuzz) and the daemon's config
# parser (fuzz/). Prints how many executions each target ran without a crash.
# cargo-fuzz needs nightly-only compiler flags; the machine has one stable
# toolchain, so RUSTC_BOOTSTRAP=1 unlocks them for this build only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-20}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary="$work/summary"
for dir in drivers/fuzz fuzz; do
  cd "$root/$dir"
  for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target" "$work/$target"
    echo "fuzz: $dir $target for ${seconds}s"
    # New finds go to the scratch dir; the checked-in corpus of real inputs only seeds.
    cargo fuzz run "$target" "$work/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=1024 -print_final_stats=1 \
      2>&1 | tee "$work/$target.log"
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$target.log" | grep -o '[0-9]*$' || echo "?")
    echo "$dir/$target ${runs} executions in ${seconds}s, no crash" >> "$summary"
  done
  # CI: drop this sanitizer build before the next one starts (disk, not
  # time); cargo fuzz builds under CARGO_TARGET_DIR when that is set.
  if [ -n "${FUZZ_PRUNE:-}" ]; then
    rm -rf "${CARGO_TARGET_DIR:-$root/$dir/target}/x86_64-unknown-linux-gnu" "$root/$dir/target"
  fi
done
echo "fuzz summary:"
cat "$summary"
