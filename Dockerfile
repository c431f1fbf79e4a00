# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a slim Debian with only
# the binary, the web UI and the demo data, as an unprivileged user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin benches \
    && for f in src/main.rs src/bin/datagen.rs src/bin/loadgen.rs benches/hot_path.rs; do echo 'fn main() {}' > "$f"; done \
    && touch src/lib.rs \
    && cargo build --release --locked --bin tributary 2>/dev/null || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin tributary

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin tributary
WORKDIR /app
COPY --from=build /src/target/release/tributary /usr/local/bin/tributary
COPY static ./static
COPY datasources ./datasources
USER tributary
ENV TRIBUTARY_LISTEN=0.0.0.0:8080 \
    TRIBUTARY_STATIC_DIR=/app/static
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tributary"]
