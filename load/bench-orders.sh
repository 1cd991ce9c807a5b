#!/usr/bin/env bash
# Orders' calls for several platformctl binaries side by side: GET and POST
# of an order through the gateway (wrk, 32 connections, every POST a new
# requestId) and GetOrder/CreateOrder straight to orders (h2load), closed
# loop 10 s each, then open loops at 50% and 80% of each throughput; CPU ms
# per call of every process from /proc, resident memory idle and at load;
# on SQLite and on a throwaway PostgreSQL (fsync on). Each binary gets a
# fresh platform (rate limits off, default logging). Writes
# load/reports/orders-bench.md. About 3 minutes per binary and backend.
# Usage: bash load/bench-orders.sh [--platformctl LABEL=PATH ...] [bench-orders options, see --help]
#   e.g. bash load/bench-orders.sh --platformctl before=/tmp/perf-before-target/release/platformctl \
#            --platformctl after=target/release/platformctl
# With no --platformctl: after=target/release/platformctl alone.
# Installs wrk and h2load (Debian) when missing; PostgreSQL comes from
# scripts/install-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
command -v h2load >/dev/null || { echo "installing h2load"; apt-get install -y -qq nghttp2-client >/dev/null; }
for tool in wrk h2load; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing: apt-get install wrk nghttp2-client" >&2; exit 1; }
done
cargo build --release -q -p platformctl -p load-lab
args=("$@")
case " $* " in
    *" --platformctl "*|*" --platformctl="*) ;;
    *) args=(--platformctl after=target/release/platformctl "${args[@]}") ;;
esac
exec target/release/bench-orders "${args[@]}"
