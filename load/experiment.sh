#!/usr/bin/env bash
# The release-strategy experiment, in one command: a faulty green orders
# (FAULT_ERROR_RATE=0.2) released all at once, blue/green (with its smoke
# check, and without it), and canary, each under the same k6 load
# (load/release.js) on a freshly started platform. Writes
# load/reports/release-strategies.md, one SVG plot per strategy and the
# gateway's timeline of each run (CSV). Takes about 7 minutes.
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
