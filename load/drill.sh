#!/usr/bin/env bash
# The failure drills, in one command: replica kills, a rolling restart, a
# database restart and a release, each under load with an integrity check
# and a PASS/FAIL verdict (the `drill` binary of load/lab); with
# --report load/reports/drills.md it writes the report. Takes about 6
# minutes; --short takes about 3.
# Usage: bash load/drill.sh [drill names] [--short] [see --help]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v k6 >/dev/null || { echo "error: k6 is missing: run scripts/install-tools.sh" >&2; exit 1; }
cargo build --release -q -p platformctl -p load-lab
# The release drill runs the two releases of releases.toml before this one,
# each built from its commit (once; cached under target/releases).
previous=()
for version in $(target/release/platformctl releases list | awk -v v="$(target/release/platformctl --version | cut -d' ' -f2)" '$1 != v {print $1}' | tail -n 2); do
    previous+=(--previous "$(target/release/platformctl releases build "$version" --release)")
done
exec target/release/drill --platformctl target/release/platformctl "${previous[@]}" "$@"
