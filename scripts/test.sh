#!/usr/bin/env bash
# The one command that runs every check: installs what is missing, starts a
# throwaway PostgreSQL on loopback, checks the charts, the workflows and
# scripts, and the observability rules (promtool unit tests) and files; runs
# fmt, clippy and all the tests against both storage backends; builds and
# starts every image, and brings up compose.yaml with podman-compose.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-tools.sh

pg_dir="$(mktemp -d /tmp/platform-pg.XXXXXX)"
pg_port="${PG_TEST_PORT:-55432}"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
run_pg() {
    # initdb and postgres refuse to run as root.
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
stop_pg() {
    run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
trap stop_pg EXIT
[ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
run_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust --no-sync >/dev/null
run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
    -o "-k $pg_dir -h 127.0.0.1 -p $pg_port -c fsync=off -c max_connections=400" start >/dev/null
export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
echo "PostgreSQL for tests at $TEST_DATABASE_URL"

bash scripts/check-charts.sh
bash scripts/check-workflows.sh
bash scripts/check-compat.sh
# The two releases before this one, built from their recorded commits into
# target/releases: the N-1 test (platformctl/tests/compat.rs) runs the
# last, the release drill both; built once, then cached.
cargo build --quiet -p platformctl
current="$(target/debug/platformctl --version | cut -d' ' -f2)"
started=$SECONDS
for version in $(target/debug/platformctl releases list | awk -v v="$current" '$1 != v {print $1}' | tail -n 2); do
    target/debug/platformctl releases build "$version" >/dev/null
done
echo "releases: the two before $current built (or found built) in $((SECONDS - started)) s"
bash scripts/check-observability.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace "$@"
bash scripts/check-images.sh
# compose.yaml's application part, from the images just built (build-images.sh
# also tags them latest).
bash scripts/check-compose.sh latest
