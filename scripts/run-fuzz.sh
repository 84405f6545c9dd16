#!/usr/bin/env bash
# Runs a fuzzing campaign: `delayshim fuzz "$@"`, built from this checkout
# first. `scripts/run-fuzz.sh --help` lists the options.
#
# Builds the release delayshim command (with the shim inside it) and the
# driver, the default program, showing cargo's progress (it does nothing
# when they are up to date), then hands over to `delayshim fuzz`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$PWD/$target ;; esac

cargo build --release --manifest-path "$root/Cargo.toml" -p delayshim-cli -p driver >&2
exec "$target/release/delayshim" fuzz "$@"
