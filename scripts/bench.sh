#!/usr/bin/env bash
# Benchmarks: what the shim adds to a call, the driver's run time, increment latency,
# and time to detection of each race target against plain reruns and
# strace's delay injection. Writes BENCHMARKS.md, benchmarks/results.json
# benchmarks/detection-vs-mean.svg and benchmarks/detection-by-strategy.svg.
#
#   scripts/bench.sh [--quick] [overhead|driver|incr|detection|chart|diskcache|minimize|campaign|conflicts|memory]...
#   scripts/bench.sh detection [--runs N] [--plain-runs N] [--config-seconds S] [--target NAME]...
#   scripts/bench.sh suite [--runs N] [--target HARNESS]...
#   scripts/bench.sh auto [--runs N] [--target HARNESS]...
#
# The suite part: time to detection in native runs on the real-program
# harnesses of benchmarks/harness/ (third-party libraries and tools) and two
# targets, for auto against a grid of single settings, plain reruns and
# strace; 30 runs per configuration. Long: about 5 to 15 minutes a harness
# on a quiet 2-core machine. Needs python3 with venv and pip, git, sqlite3.
#
# The auto part: auto as a user meets it (a campaign that stops at its
# first failure), against plain reruns, the better strace setting and the
# best single shim setting the suite part found, in interleaved rounds.
#
# The detection part measures every strategy the shim takes, and
# --strategy auto through `delayshim fuzz` (the campaign's portfolio).
#
# Needs python3 and strace; creates target/bench-venv with
# python-diskcache 5.6.3 for the comparisons.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml" \
    -p delayshim -p driver -p delayshim-targets -p delayshim-cli -p delayshim-suite --bins >&2
command -v git >/dev/null && command -v sqlite3 >/dev/null ||
    echo "bench: the suite part needs git and sqlite3 (apt-get install git sqlite3)" >&2
exec python3 "$root/scripts/bench.py" "$@"
