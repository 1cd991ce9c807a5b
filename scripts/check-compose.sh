#!/usr/bin/env bash
# Brings up the application part of compose.yaml with podman-compose (the
# gateway and the four services in both colors, with the compose file's own
# settings), sends requests through the gateway, switches a service to
# green and back, then tears everything down.
#
# PostgreSQL: its image cannot be pulled here, so the `postgres` of the
# compose network is a container run from this machine's own PostgreSQL
# installation (the host's root filesystem under a throwaway overlay), with
# the user and databases compose.yaml's postgres service creates. The
# observability profile's images cannot be pulled either; it is not started.
#
# Usage: scripts/check-compose.sh [image tag]  (default: build images now)
set -euo pipefail
cd "$(dirname "$0")/.."

project="platformcheck$$"
net="${project}_default"
export IMAGE_TAG="${1:-}" ADMIN_TOKEN="check-admin-token-0123456789"
export GATEWAY_PORT=28180 GATEWAY_ADMIN_PORT=29911 BLUE_PORT_PREFIX=260 GREEN_PORT_PREFIX=261
built=""
if [ -z "$IMAGE_TAG" ]; then
    IMAGE_TAG="compose-$$"
    built=1
    bash scripts/build-images.sh "$IMAGE_TAG"
fi
app=(auth-blue auth-green orders-blue orders-green payments-blue payments-green
    notifications-blue notifications-green gateway)
# Podman's own chatter (and that of the processes it leaves behind) goes to
# a log, shown when something fails.
log="$(mktemp)"
override="$(mktemp --suffix .yaml)"
compose() { podman-compose -p "$project" -f compose.yaml -f "$override" "$@" >>"$log" 2>&1; }

cleanup() {
    compose down -v -t 10 || true
    podman rm -f -t 0 "$project-postgres" >/dev/null 2>&1 || true
    podman network rm -f "$net" >/dev/null 2>&1 || true
    rm -f "$log" "$override"
    if [ -n "$built" ]; then
        for bin in gateway auth orders payments notifications; do
            podman rmi -f "platform/$bin:$IMAGE_TAG" >/dev/null 2>&1 || true
        done
    fi
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

fail() {
    echo "error: $*" >&2
    tail -n 20 "$log" >&2
    for name in "${app[@]}"; do
        echo "--- $name" >&2
        podman logs --tail 5 "${project}_${name}_1" >&2 2>/dev/null || true
    done
    exit 1
}

wait_for() { # WHAT COMMAND...
    local what="$1"
    shift
    for _ in $(seq 1 150); do
        if "$@" >/dev/null 2>&1; then echo "ok: $what"; return 0; fi
        sleep 0.2
    done
    fail "$what"
}

podman network create "$net" >/dev/null
# Podman 4.3 lists the host's name servers after the network's own in each
# container's resolv.conf, and musl (the static binaries) asks them all at
# once and takes the first answer, so a container name sometimes "does not
# resolve". The network's DNS alone, for the platform's containers (Docker's
# resolv.conf names only its own DNS: nothing to do there).
dns="$(podman network inspect "$net" --format '{{range .Subnets}}{{.Gateway}}{{end}}')"
{
    echo "services:"
    for name in "${app[@]}"; do printf '  %s:\n    dns: ["%s"]\n' "$name" "$dns"; done
} > "$override"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
podman run -d --name "$project-postgres" --network "$net" --network-alias postgres \
    --user postgres --tmpfs /pgdata:rw,mode=1777,notmpcopyup --tmpfs /tmp:rw,mode=1777,notmpcopyup \
    --rootfs /:O /bin/sh -c "
        set -e
        echo platform > /tmp/password
        $pg_bin/initdb -D /pgdata/db -U platform --pwfile=/tmp/password \
            --auth-local=trust --auth-host=scram-sha-256 --no-sync >/dev/null
        echo 'host all all samenet scram-sha-256' >> /pgdata/db/pg_hba.conf
        printf 'CREATE DATABASE %s;\n' auth orders payments notifications |
            $pg_bin/postgres --single -D /pgdata/db postgres >/dev/null
        exec $pg_bin/postgres -D /pgdata/db -h 0.0.0.0 -k /tmp -c fsync=off" >>"$log" 2>&1
wait_for "PostgreSQL at postgres:5432" podman exec "$project-postgres" "$pg_bin/pg_isready" -h 127.0.0.1 -d notifications

compose up -d --no-deps "${app[@]}" || fail "podman-compose up"

# Podman runs health checks from systemd timers, absent here: run each
# container's own check (`/app healthcheck`) until it passes.
for name in "${app[@]}"; do
    wait_for "$name healthy" podman healthcheck run "${project}_${name}_1"
done

gw="http://127.0.0.1:$GATEWAY_PORT"
admin="http://127.0.0.1:$GATEWAY_ADMIN_PORT"
json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
curl -fsS -X POST "$gw/v1/auth/register" -d '{"email":"compose@example.com","password":"correct horse battery"}' >/dev/null ||
    fail "register through the gateway"
token="$(curl -fsS -X POST "$gw/v1/auth/login" -d '{"email":"compose@example.com","password":"correct horse battery"}' | json '["accessToken"]')"
order='{"items":[{"sku":"book-1","quantity":2,"unitPriceMinor":1250}],"currency":"EUR","paymentMethod":"pm_card_visa"}'

create_order() { # EXPECTED_COLOR
    local reply status color
    reply="$(curl -sS -D - -X POST "$gw/v1/orders" -H "authorization: Bearer $token" -d "$order")"
    status="$(printf '%s' "$reply" | head -n 1 | cut -d ' ' -f 2)"
    color="$(printf '%s' "$reply" | tr -d '\r' | sed -n 's/^x-served-by: //Ip')"
    [ "$status" = 200 ] || fail "create an order: HTTP $status: $(printf '%s' "$reply" | tail -n 1)"
    [ "$color" = "$1" ] || fail "the order was served by ${color:-no color}, expected $1"
    printf '%s' "$reply" | tail -n 1 | grep -q ORDER_STATUS_PAID ||
        fail "the order was not paid: $(printf '%s' "$reply" | tail -n 1)"
    echo "ok: an order created and paid through the gateway, served by $color"
}
create_order blue

curl -fsS -X PUT "$admin/admin/routes/orders/weights" -H "authorization: Bearer $ADMIN_TOKEN" \
    -d '{"blue":0,"green":100}' >/dev/null || fail "switch orders to green"
create_order green
curl -fsS -X POST "$admin/admin/routes/orders/rollback" -H "authorization: Bearer $ADMIN_TOKEN" >/dev/null ||
    fail "roll orders back"
create_order blue

orders="$(curl -fsS "$gw/v1/orders" -H "authorization: Bearer $token" | json '["orders"].__len__()')"
[ "$orders" = 3 ] || fail "expected the 3 orders in the shared database, listed $orders"
echo "ok: both colors of orders wrote to the one database (3 orders listed)"
grpcurl -plaintext -max-time 2 "127.0.0.1:${GREEN_PORT_PREFIX}53" grpc.health.v1.Health/Check | grep -q SERVING ||
    fail "payments-green on its published port"
echo "ok: grpcurl reaches payments-green on its published port"

# The gateway restarts with the routing state it had (the gateway-data volume).
curl -fsS -X PUT "$admin/admin/routes/payments/weights" -H "authorization: Bearer $ADMIN_TOKEN" \
    -d '{"blue":30,"green":70}' >/dev/null || fail "change payments' weights"
podman restart -t 10 "${project}_gateway_1" >>"$log" 2>&1
wait_for "gateway healthy after a restart" podman healthcheck run "${project}_gateway_1"
weights="$(curl -fsS "$admin/admin/routes" -H "authorization: Bearer $ADMIN_TOKEN" | json '["services"]["payments"]["weights"]["green"]')"
[ "$weights" = 70 ] || fail "after a restart payments' green weight is $weights, expected 70"
echo "ok: the routing state survived a gateway restart"

compose down -t 10 || fail "podman-compose down"
left="$(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}')"
[ -z "$left" ] || fail "containers left after down: $left"
echo "ok: compose down removed every container"
