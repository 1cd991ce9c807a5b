#!/usr/bin/env bash
# The gateway's cost per request and its throughput, side by side in one run
# on this machine, with the same load tool (h2load) and the same backends:
#   - GetOrder as gRPC straight to orders, as gRPC through the gateway, as
#     gRPC through nginx grpc_pass (same two weighted upstreams, 90/10), and
#     as REST through the gateway;
#   - at a fixed rate (p50, p99 from every request's time) and at saturation;
#   - the gateway's resident memory during the fixed-rate runs, at saturation,
#     and at twice the saturating concurrency (128 streams), where its
#     concurrency limit (192, above saturation, so the saturation runs are
#     never shed) answers the excess with fast 503s.
# Usage: load/bench-gateway.sh   (RATE=2000 SECONDS_PER_RUN=10 by default;
# installs h2load and nginx when missing)
set -euo pipefail
cd "$(dirname "$0")/.."

RATE="${RATE:-2000}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
OFFSET=14000 # every port outside the kernel's ephemeral range
ORDERS_BLUE=$((50052 + OFFSET)); ORDERS_GREEN=$((50152 + OFFSET))
GATEWAY=$((8080 + OFFSET)); ADMIN=$((9901 + OFFSET)); NGINX=$((8090 + OFFSET))

bash scripts/install-tools.sh bench >/dev/null
for tool in h2load nginx curl python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing: apt-get install nghttp2-client nginx curl" >&2; exit 1; }
done
cargo build --release -q -p platformctl

work="$(mktemp -d /tmp/bench-gateway.XXXXXX)"
cleanup() {
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    [ -n "${up_pid:-}" ] && kill -INT "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

target/release/platformctl up --data-dir "$work/data" --port-offset "$OFFSET" \
    --gateway-env RATE_LIMIT_PER_SECOND=0 --gateway-env MAX_CONCURRENT_REQUESTS=192 \
    --gateway-env MAX_CONCURRENT_REQUESTS_PER_CLIENT=100000 --gateway-env MAX_CONNECTIONS_PER_CLIENT=100000 \
    --blue-env LOG_FORMAT=json --blue-env RUST_LOG=warn --green-env RUST_LOG=warn \
    --gateway-env RUST_LOG=warn > "$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 300); do grep -q "platform is up" "$work/up.log" 2>/dev/null && break; sleep 0.1; done
grep -q "platform is up" "$work/up.log" || { cat "$work/up.log"; echo "error: the platform did not come up" >&2; exit 1; }

gw="http://127.0.0.1:$GATEWAY"
credentials='{"email":"bench@example.com","password":"correct horse battery"}'
curl -sf -X POST "$gw/v1/auth/register" -d "$credentials" >/dev/null
token="$(curl -sf -X POST "$gw/v1/auth/login" -d "$credentials" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')"
order="$(curl -sf -X POST "$gw/v1/orders" -H "authorization: Bearer $token" \
    -d '{"items":[{"sku":"sticker-1","quantity":1,"unitPriceMinor":100}],"currency":"EUR","paymentMethod":"pm_card_visa"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
curl -sf -X PUT "http://127.0.0.1:$ADMIN/admin/routes/orders/weights" \
    -H "authorization: Bearer $(cat "$work/data/admin-token")" -d '{"blue":90,"green":10}' >/dev/null

# The GetOrder request as a gRPC frame: field 1 (order_id), length-prefixed.
python3 - "$order" "$work/get-order.bin" <<'PY'
import struct, sys
order_id = sys.argv[1].encode()
message = b"\x0a" + bytes([len(order_id)]) + order_id
open(sys.argv[2], "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
PY

cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $work/nginx-body;
    upstream orders {
        server 127.0.0.1:$ORDERS_BLUE weight=9;
        server 127.0.0.1:$ORDERS_GREEN weight=1;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX http2;
        keepalive_requests 10000000;
        location / { grpc_pass grpc://orders; }
    }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work"

gateway_pid="$(cat "$work/data/run/gateway.pid")"
grpc_args=(-d "$work/get-order.bin" -H "content-type: application/grpc" -H "te: trailers" -H "authorization: Bearer $token")
total=$((RATE * SECONDS_PER_RUN))

# fixed NAME URL [h2load args...]: RATE requests/s over 4 connections, every request's time logged.
fixed() {
    local name="$1" url="$2"; shift 2
    local sampler=""
    if [[ "$name" == *gateway* ]]; then
        ( while sleep 0.2; do awk '/VmRSS/ {print $2}' "/proc/$gateway_pid/status"; done ) > "$work/rss-$name" &
        sampler=$!
    fi
    h2load -n "$total" -c 4 -m 1 --rps $((RATE / 4)) --log-file "$work/log-$name" "$@" "$url" > "$work/out-$name"
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
    grep -q "$total succeeded" "$work/out-$name" || { cat "$work/out-$name"; echo "error: $name had failures" >&2; exit 1; }
}
sample_rss() { # NAME: the gateway's RSS every 200 ms into rss-NAME, until killed
    ( while sleep 0.2; do awk '/VmRSS/ {print $2}' "/proc/$gateway_pid/status"; done ) > "$work/rss-$1" &
    sampler=$!
}
saturate() {
    local name="$1" url="$2"; shift 2
    sample_rss "sat-$name"
    h2load -n 60000 -c 16 -m 8 "$@" "$url" > "$work/sat-$name"
    kill "$sampler" 2>/dev/null || true
    grep -q "60000 succeeded" "$work/sat-$name" || { cat "$work/sat-$name"; echo "error: $name had failures" >&2; exit 1; }
}

path="/platform.orders.v1.OrderService/GetOrder"
for _ in 1 2; do # warm up, then measure
    fixed "grpc-direct" "http://127.0.0.1:$ORDERS_BLUE$path" "${grpc_args[@]}"
    fixed "rest-gateway" "$gw/v1/orders/$order" --h1 -H "authorization: Bearer $token"
    fixed "grpc-gateway" "$gw$path" "${grpc_args[@]}"
    fixed "grpc-nginx" "http://127.0.0.1:$NGINX$path" "${grpc_args[@]}"
done
saturate "grpc-direct" "http://127.0.0.1:$ORDERS_BLUE$path" "${grpc_args[@]}"
saturate "grpc-gateway" "$gw$path" "${grpc_args[@]}"
saturate "grpc-nginx" "http://127.0.0.1:$NGINX$path" "${grpc_args[@]}"
saturate "rest-gateway" "$gw/v1/orders/$order" --h1 -H "authorization: Bearer $token"
# Twice the saturating concurrency (256 connections, one request each at a time).
sample_rss "overload"
h2load -n 60000 -c 256 -m 1 --h1 -H "authorization: Bearer $token" "$gw/v1/orders/$order" > "$work/overload"
kill "$sampler" 2>/dev/null || true

python3 - "$work" "$RATE" "$SECONDS_PER_RUN" <<'PY'
import re, sys
work, rate, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def quantiles(name):
    times = sorted(int(line.split()[2]) for line in open(f"{work}/log-{name}") if line.strip())
    q = lambda p: times[min(len(times) - 1, int(round((len(times) - 1) * p)))] / 1000.0
    return q(0.5), q(0.99)
def throughput(name):
    text = open(f"{work}/sat-{name}").read()
    return float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text).group(1))
def peak(name):
    values = [int(v) for v in open(f"{work}/rss-{name}").read().split() if v.strip()]
    return max(values) / 1024.0 if values else float("nan")
rows = [("gRPC direct to orders", "grpc-direct"), ("REST through the gateway", "rest-gateway"),
        ("gRPC through the gateway", "grpc-gateway"), ("gRPC through nginx grpc_pass", "grpc-nginx")]
base50, base99 = quantiles("grpc-direct")
print(f"GetOrder, h2load, {rate} req/s for {seconds} s over 4 connections; saturation: 60,000 requests over 16 connections x 8 streams\n")
print("| path | p50 ms | p99 ms | p50 over direct | p99 over direct | saturation req/s |")
print("|---|---|---|---|---|---|")
for label, name in rows:
    p50, p99 = quantiles(name)
    print(f"| {label} | {p50:.3f} | {p99:.3f} | {p50 - base50:+.3f} ms | {p99 - base99:+.3f} ms | {throughput(name):,.0f} |")
print()
print(f"gateway gRPC throughput / nginx: {throughput('grpc-gateway') / throughput('grpc-nginx'):.2f}")
print(f"gateway peak RSS at {rate} req/s: REST {peak('rest-gateway'):.1f} MiB, gRPC {peak('grpc-gateway'):.1f} MiB")
print(f"gateway peak RSS at saturation: REST {peak('sat-rest-gateway'):.1f} MiB, gRPC {peak('sat-grpc-gateway'):.1f} MiB")
text = open(f"{work}/overload").read()
codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
done = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text).group(1)
shed, served = int(codes.group(4)), int(codes.group(1))
print(f"at twice the saturating concurrency: {served:,} served, {shed:,} shed with 503 ({100 * shed / (served + shed):.0f}%), {float(done):,.0f} req/s answered, peak RSS {peak('overload'):.1f} MiB")
PY
