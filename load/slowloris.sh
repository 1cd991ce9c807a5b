#!/usr/bin/env bash
# Slow clients against the gateway: slowhttptest opens connections that send
# their headers a few bytes at a time (slowloris) while h2load keeps normal
# traffic at a fixed rate. Reports normal traffic's p99 before and during the
# attack, and how many slow connections the gateway closed.
# Usage: load/slowloris.sh   (installs slowhttptest and h2load when missing)
set -euo pipefail
cd "$(dirname "$0")/.."

OFFSET=14000
GATEWAY=$((8080 + OFFSET))
SLOW_CONNECTIONS="${SLOW_CONNECTIONS:-1000}"
bash scripts/install-tools.sh bench >/dev/null
for tool in slowhttptest h2load python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing: apt-get install slowhttptest nghttp2-client" >&2; exit 1; }
done
cargo build --release -q -p platformctl
work="$(mktemp -d /tmp/slowloris.XXXXXX)"
cleanup() {
    [ -n "${up_pid:-}" ] && kill -INT "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
target/release/platformctl up --data-dir "$work/data" --port-offset "$OFFSET" \
    --gateway-env RATE_LIMIT_PER_SECOND=0 --gateway-env HEADER_READ_TIMEOUT_MS=5000 \
    --gateway-env RUST_LOG=warn > "$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 300); do grep -q "platform is up" "$work/up.log" 2>/dev/null && break; sleep 0.1; done
grep -q "platform is up" "$work/up.log" || { cat "$work/up.log"; exit 1; }
url="http://127.0.0.1:$GATEWAY/v1/auth/jwks"

normal() { # 200 req/s for 10 s over 2 kept-alive HTTP/1.1 connections
    h2load --h1 -n 2000 -c 2 --rps 100 --log-file "$work/log-$1" "$url" > "$work/out-$1"
    grep -q "2000 succeeded" "$work/out-$1" || { cat "$work/out-$1"; echo "error: normal traffic failed ($1)" >&2; exit 1; }
}
normal before
slowhttptest -H -c "$SLOW_CONNECTIONS" -r 500 -i 2 -x 10 -l 25 -p 3 -g -o "$work/slow" -u "$url" > "$work/slow.out" 2>&1 &
slow_pid=$!
sleep 8 # let the slow connections pile up
normal during
wait "$slow_pid" || true

python3 - "$work" "$SLOW_CONNECTIONS" <<'PY'
import csv, sys
work, slow = sys.argv[1], sys.argv[2]
def p99(name):
    times = sorted(int(l.split()[2]) for l in open(f"{work}/log-{name}") if l.strip())
    return times[int(round((len(times) - 1) * 0.99))] / 1000.0
before, during = p99("before"), p99("during")
rows = list(csv.DictReader(open(f"{work}/slow.csv")))
closed = max(int(r["Closed"]) for r in rows)
peak_connected = max(int(r["Connected"]) for r in rows)
print(f"slowloris: {slow} slow connections requested, at most {peak_connected} open at once, {closed} closed by the gateway")
print(f"normal traffic p99: {before:.3f} ms before, {during:.3f} ms during ({during / before:.2f}x)")
PY
