#!/usr/bin/env bash
# CPU profiles of the gateway and orders (blue) under wrk's closed loop, one
# platform (`platformctl up` on SQLite, rate limits off, default logging):
# POST /v1/orders (each a new order, charged and notified), then
# GET /v1/orders/{id}, 32 connections; `perf record -F 999` on both processes
# for SECONDS_PROFILED (8) in the middle of each. Writes, for each process and
# call, a flame graph load/reports/flame-<gateway|orders>-<post|get>-<label>.svg
# and load/reports/perf-<process>-<call>-<label>.txt: the functions with the
# most samples, self and inclusive (load/folded-summary.py), then perf's own
# flat report. Call graphs are unwound with DWARF (release builds have no
# frame pointers) and the binary's frames named by llvm-symbolizer, inlined
# functions included (load/perf-symbolize.py: this perf cannot read the
# binary's symbols). About 2 minutes. Installs perf (linux-perf), wrk,
# llvm-symbolizer (llvm) and inferno (cargo install) when missing.
# Usage: bash load/profile.sh [--platformctl PATH] [--label NAME] [--postgres URL]
#   e.g. bash load/profile.sh --platformctl /tmp/perf-before-target/release/platformctl --label before
set -euo pipefail
cd "$(dirname "$0")/.."

platformctl=target/release/platformctl
label=after
postgres=""
while [ $# -gt 0 ]; do
    case "$1" in
        --platformctl) platformctl="$2"; shift 2 ;;
        --label) label="$2"; shift 2 ;;
        --postgres) postgres="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
SECONDS_PROFILED="${SECONDS_PROFILED:-8}"
CONNECTIONS="${CONNECTIONS:-32}"
OUT="${OUT:-load/reports}"
OFFSET=13500 # every port outside the kernel's ephemeral range
GATEWAY=$((8080 + OFFSET))

export PATH="$HOME/.cargo/bin:$PATH"
command -v perf >/dev/null || { echo "installing perf"; apt-get install -y -qq linux-perf >/dev/null; }
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
command -v llvm-symbolizer >/dev/null || { echo "installing llvm-symbolizer"; apt-get install -y -qq llvm >/dev/null; }
command -v inferno-flamegraph >/dev/null || { echo "installing inferno"; cargo install -q inferno; }
for tool in perf wrk llvm-symbolizer inferno-collapse-perf inferno-flamegraph curl python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done
if [ "$platformctl" = target/release/platformctl ]; then
    cargo build --release -q -p platformctl
fi
[ -x "$platformctl" ] || { echo "error: $platformctl is not an executable" >&2; exit 1; }
binary="$(realpath "$platformctl")"

work="$(mktemp -d /tmp/profile.XXXXXX)"
cleanup() {
    [ -n "${up_pid:-}" ] && kill -INT "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

database=()
[ -n "$postgres" ] && database=(--postgres "$postgres")
"$platformctl" up --data-dir "$work/data" --port-offset "$OFFSET" "${database[@]}" \
    --gateway-env RATE_LIMIT_PER_SECOND=0 --gateway-env MAX_CONCURRENT_REQUESTS_PER_CLIENT=100000 \
    --gateway-env MAX_CONNECTIONS_PER_CLIENT=100000 > "$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 600); do grep -q "platform is up" "$work/up.log" 2>/dev/null && break; sleep 0.1; done
grep -q "platform is up" "$work/up.log" || { cat "$work/up.log"; echo "error: the platform did not come up" >&2; exit 1; }

gw="http://127.0.0.1:$GATEWAY"
credentials='{"email":"profile@example.com","password":"correct horse battery"}'
curl -sf -X POST "$gw/v1/auth/register" -d "$credentials" >/dev/null
token="$(curl -sf -X POST "$gw/v1/auth/login" -d "$credentials" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')"
order="$(curl -sf -X POST "$gw/v1/orders" -H "authorization: Bearer $token" \
    -d '{"items":[{"sku":"sticker-1","quantity":1,"unitPriceMinor":100}],"currency":"EUR","paymentMethod":"pm_card_visa"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"

declare -A pids=( # perf follows both in one recording
    [gateway]="$(cat "$work/data/run/gateway.pid")"
    [orders]="$(cat "$work/data/run/orders-blue.pid")"
)

# profile CALL WRK_ARGS...: wrk for the profile and 2 s either side, one perf on both processes meanwhile.
profile() {
    local call="$1"; shift
    wrk -t2 -c"$CONNECTIONS" -d$((SECONDS_PROFILED + 4))s --latency -H "authorization: Bearer $token" "$@" \
        > "$work/wrk-$call" &
    local load=$!
    sleep 2
    perf record -q -F 999 --call-graph dwarf -p "${pids[gateway]},${pids[orders]}" -o "$work/$call.data" \
        -- sleep "$SECONDS_PROFILED" 2>>"$work/perf.log"
    wait "$load"
    echo "$call: $(awk '/Requests\/sec/ {print $2}' "$work/wrk-$call") req/s under perf," \
        "p99 $(awk '$1 == "99%" {print $2}' "$work/wrk-$call"), non-2xx: $(awk '/Non-2xx/ {print $NF}' "$work/wrk-$call")"
    for process in gateway orders; do
        local name="$process-$call-$label"
        perf script -i "$work/$call.data" --pid "${pids[$process]}" --no-inline 2>/dev/null \
            | python3 load/perf-symbolize.py "$binary" | inferno-collapse-perf > "$work/$name.folded"
        inferno-flamegraph --title "$process, $call ($label): $CONNECTIONS connections, $SECONDS_PROFILED s at 999 Hz" \
            < "$work/$name.folded" > "$OUT/flame-$name.svg"
        {
            python3 load/folded-summary.py "$work/$name.folded" 30
            perf report -i "$work/$call.data" --pid "${pids[$process]}" --no-children --no-inline \
                --percent-limit 1 --stdio -g none 2>/dev/null | grep -v '^$'
        } > "$OUT/perf-$name.txt"
        [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$work/$name.folded" "$KEEP/"
        echo "  $OUT/flame-$name.svg, $OUT/perf-$name.txt"
    done
}

profile post -s load/wrk/create-order.lua "$gw/v1/orders" -- "profile-$label-$$"
profile get "$gw/v1/orders/$order"
