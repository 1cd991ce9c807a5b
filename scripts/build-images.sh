#!/usr/bin/env bash
# Builds the five images the way CI does, with no registry to pull from:
# static (musl) release binaries built on the host, each copied with the CA
# certificates into a FROM scratch image (the `prebuilt` stage of the
# Dockerfile), with podman. Prints each image's size.
# Usage: scripts/build-images.sh [tag]   (default: the commit, or "dev")
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo dev)}"
target=x86_64-unknown-linux-musl
binaries=(gateway auth orders payments notifications)

rustup target list --installed | grep -qx "$target" || rustup target add "$target"
bin_args=()
for bin in "${binaries[@]}"; do bin_args+=(--bin "$bin"); done
cargo build --release --locked --target "$target" "${bin_args[@]}"
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin" "$context/data"
cp /etc/ssl/certs/ca-certificates.crt "$context/"
for bin in "${binaries[@]}"; do
    # Without the line tables the release profile keeps for profiling.
    strip --strip-debug -o "$context/bin/$bin" "$target_dir/$target/release/$bin"
    podman build --quiet --format docker --target prebuilt --build-arg BIN="$bin" \
        -t "platform/$bin:$tag" -t "platform/$bin:latest" -f Dockerfile "$context" >/dev/null
    size="$(podman image inspect --format '{{.Size}}' "platform/$bin:$tag")"
    printf '%-14s platform/%s:%s  %s MB\n' "$bin" "$bin" "$tag" "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1000000 }')"
done
