# syntax=docker/dockerfile:1
# One image per binary, all from this file: FROM scratch with a static
# (musl) binary, CA certificates and a non-root user; no shell, no package
# manager, a read-only root filesystem works (data goes to /data, a volume).
#
#   docker build --build-arg BIN=orders -t platform/orders .   # from source
#   scripts/build-images.sh                                     # binaries built on the host (CI)
#
# BIN: gateway, auth, orders, payments or notifications. PLATFORM_COMMIT:
# the commit built (the release workflow passes its sha), so the binary
# reports it (`x-service-build`, `build_info`).
ARG BIN=gateway
ARG PLATFORM_COMMIT=""

FROM rust:1-bookworm AS build
ARG BIN
ARG PLATFORM_COMMIT
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin "$BIN" \
    && mkdir -p /out/data \
    && cp "target/x86_64-unknown-linux-musl/release/$BIN" /out/app

# The same image from a binary built on the host; the build context holds
# bin/<BIN>, ca-certificates.crt and an empty data/ (scripts/build-images.sh
# prepares it).
FROM scratch AS prebuilt
ARG BIN
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY bin/${BIN} /app
# Owned by the user, so a named volume mounted here starts writable.
COPY --chown=65532:65532 data /data
ENV DATA_DIR=/data
USER 65532:65532
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s CMD ["/app", "healthcheck"]
ENTRYPOINT ["/app"]

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/app /app
COPY --from=build --chown=65532:65532 /out/data /data
ENV DATA_DIR=/data
USER 65532:65532
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s CMD ["/app", "healthcheck"]
ENTRYPOINT ["/app"]
