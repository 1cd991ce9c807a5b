#!/usr/bin/env bash
# The failure drills, in one command: replica kills, a rolling restart, a
# database restart, a release and a restore from backups, each under load
# with an integrity check and a PASS/FAIL verdict (the `drill` binary of
# load/lab); with --report load/reports/drills.md it writes the report, and
# --restore-report load/reports/restore.md the restore drill's (RPO and RTO
# by database size). The restore drill alone takes about 10 minutes with
# its default sizes (up to 1M orders); --short runs it at --sizes 2000.
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
