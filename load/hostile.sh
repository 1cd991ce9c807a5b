#!/usr/bin/env bash
# Hostile clients against the gateway's ordinary ones, side by side: an
# ordinary client's steady requests alone, then during slow HTTP/2 bodies,
# R.U.D.Y., idle connections and slowloris (slowhttptest -H when installed).
# Writes load/reports/hostile-edge.md and exits 1 when an attack phase serves
# less than --threshold percent (99) of the ordinary requests. About 1.5 minutes.
# Usage: bash load/hostile.sh [edge-attack options, see --help]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v slowhttptest >/dev/null ||
    echo "note: slowhttptest is missing (bash scripts/install-tools.sh bench); slowloris uses the lab's own" >&2
cargo build --release -q -p platformctl
cargo build --release -q -p load-lab --bin edge-attack
exec target/release/edge-attack --platformctl target/release/platformctl "$@"
