#!/usr/bin/env bash
# Runs a fuzzing campaign: PROGRAM (default: the driver) many times under
# libdelayshim.so, each run with its own seed. `scripts/run-fuzz.sh --help`
# lists the options.
#
# Builds the release shim, driver and campaign runner first (cargo does
# nothing when they are up to date), then hands over to the runner.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$PWD/$target ;; esac

cargo build --release --quiet --manifest-path "$root/Cargo.toml" \
    -p delayshim -p driver -p delayshim-campaign >&2
exec "$target/release/run-fuzz" "$@"
