#!/usr/bin/env bash
# Builds the five images (scripts/build-images.sh) and starts each one with
# podman, read-only root filesystem, on a network this script creates: every
# service must report SERVING over gRPC health, the gateway must be ready and
# answer a request through to auth, and each must exit 0 on SIGTERM (podman
# stop), which proves the signal reaches the process and the drain ends.
# Everything it starts is removed at the end (KEEP=1 leaves it running, to
# look at).
set -euo pipefail
cd "$(dirname "$0")/.."

tag="check-$$"
bash scripts/build-images.sh "$tag"

net="platform-check-$$"
config="$(mktemp -d)"
started=()
cleanup() {
    for name in "${started[@]}"; do podman rm -f -t 0 "$name" >/dev/null 2>&1 || true; done
    podman network rm -f "$net" >/dev/null 2>&1 || true
    for bin in gateway auth orders payments notifications; do
        podman rmi -f "platform/$bin:$tag" >/dev/null 2>&1 || true
    done
    rm -rf "$config"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
podman network create "$net" >/dev/null

# Containers find each other by name (netavark's DNS on the network).
run() { # NAME IMAGE HOST_PORT:PORT [podman args...]
    local name="$1" image="$2" ports="$3"
    shift 3
    podman run -d --name "$name" --network "$net" --read-only \
        --tmpfs /data:rw,size=64m,mode=0700,U -p "127.0.0.1:$ports" \
        -e DRAIN_DELAY_MS=300 -e LOG_FORMAT=json "$@" "platform/$image:$tag" >/dev/null 2>>"$config/podman.log"
    started+=("$name")
}

wait_for() { # WHAT COMMAND...
    local what="$1"
    shift
    for _ in $(seq 1 100); do
        if "$@" >/dev/null 2>&1; then echo "ok: $what"; return 0; fi
        sleep 0.2
    done
    echo "error: $what" >&2
    return 1
}

secret="check-orders-secret-0123456789"
run check-auth auth 25051:50051 -e AUTH_SERVICE_CLIENTS="orders=$secret"
auth_addr="http://check-auth:50051"
run check-orders orders 25052:50052 -e AUTH_ADDR="$auth_addr" -e SERVICE_CLIENT_SECRET="$secret" \
    -e PAYMENTS_ADDR=http://check-gateway:8081 -e NOTIFICATIONS_ADDR=http://check-gateway:8081
run check-payments payments 25053:50053 -e AUTH_ADDR="$auth_addr"
run check-notifications notifications 25054:50054 -e AUTH_ADDR="$auth_addr"

cat > "$config/routes.json" <<'JSON'
{"services": {
  "auth": {"endpoints": {"blue": ["check-auth:50051"], "green": []}, "weights": {"blue": 100, "green": 0}},
  "orders": {"endpoints": {"blue": ["check-orders:50052"], "green": []}, "weights": {"blue": 100, "green": 0}},
  "payments": {"endpoints": {"blue": ["check-payments:50053"], "green": []}, "weights": {"blue": 100, "green": 0}},
  "notifications": {"endpoints": {"blue": ["check-notifications:50054"], "green": []}, "weights": {"blue": 100, "green": 0}}
}}
JSON
chmod -R a+rwX "$config"
run check-gateway gateway 28080:8080 -p 127.0.0.1:29901:9901 -v "$config:/config" \
    -e ROUTES_FILE=/config/routes.json -e ADMIN_TOKEN=check-admin-token-0123456789 -e AUTH_ADDR="$auth_addr"

for port in 25051 25052 25053 25054; do
    wait_for "127.0.0.1:$port SERVING" sh -c \
        "grpcurl -plaintext -max-time 2 127.0.0.1:$port grpc.health.v1.Health/Check | grep -q SERVING"
done
wait_for "gateway ready" curl -fsS http://127.0.0.1:29901/ready
wait_for "a request through the gateway to auth" curl -fsS http://127.0.0.1:28080/v1/auth/jwks

status=0
for name in check-gateway check-orders check-payments check-notifications check-auth; do
    podman stop -t 30 "$name" >/dev/null
    code="$(podman inspect --format '{{.State.ExitCode}}' "$name")"
    if [ "$code" = 0 ]; then
        echo "ok: $name stopped cleanly on SIGTERM"
    else
        echo "error: $name exited $code on SIGTERM; its log:" >&2
        podman logs --tail 20 "$name" >&2 || true
        status=1
    fi
done
exit "$status"
