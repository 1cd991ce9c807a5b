#!/usr/bin/env bash
# The release-strategy experiment, in one command: a faulty green orders
# (orders:FAULT_ERROR_RATE=0.2) released all at once, blue/green (with its
# smoke check, and without it), and canary (judged by the sequential test,
# and by the gates alone), each under the same k6 load (load/release.js) on
# a freshly started platform. Writes load/reports/release-strategies.md,
# one SVG plot per strategy and the gateway's timeline of each run (CSV).
# Takes about 8 minutes.
# With --repeat N it runs the strategies N times, alternating them, and
# writes a report of every run and each strategy's spread instead; the
# live measurement of the two judges (load/reports/release-judge-live.md,
# about 50 minutes) is
#   bash load/experiment.sh --strategies canary,canary-gates --rollout-defaults \
#       --rate 40 --write-every 0 --duration-secs 60 --repeat 20 --report release-judge-live.md
# Usage: bash load/experiment.sh [release-experiment options, see --help]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v k6 >/dev/null || { echo "error: k6 is missing: run scripts/install-tools.sh" >&2; exit 1; }
cargo build --release -q -p platformctl -p load-lab
exec target/release/release-experiment \
    --platformctl target/release/platformctl \
    --script load/release.js \
    --out-dir load/reports \
    "$@"
