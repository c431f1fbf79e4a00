# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a slim Debian with only
# the binary, the web UI and the demo data, as an unprivileged user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The workspace's crates build together; the registry and target caches
# survive between builds, so source edits do not rebuild the dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tributary --bin tributary \
    && cp target/release/tributary /tributary

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin tributary \
    && mkdir /data && chown tributary /data
WORKDIR /app
COPY --from=build /tributary /usr/local/bin/tributary
COPY static ./static
COPY datasources ./datasources
USER tributary
# Published records are kept in /data (a volume: see docker-compose.yml).
ENV TRIBUTARY_LISTEN=0.0.0.0:8080 \
    TRIBUTARY_STATIC_DIR=/app/static \
    TRIBUTARY_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tributary"]
