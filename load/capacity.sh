#!/usr/bin/env bash
# The capacity measurement, in one command: k6's user journeys at rising
# rates against one platform, CPU per 1,000 calls/s of every process, latency
# against load, the knee, and a slow-downstream comparison. Writes
# load/reports/capacity.md with its plots. Takes about 6 minutes.
# Usage: bash load/capacity.sh [capacity options, see --help]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v k6 >/dev/null || { echo "error: k6 is missing: run scripts/install-tools.sh" >&2; exit 1; }
cargo build --release -q -p platformctl -p load-lab
exec target/release/capacity --platformctl target/release/platformctl "$@"
