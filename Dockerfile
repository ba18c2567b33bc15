# Build: docker build -t slowburn .
# Run:   docker run -p 9464:9464 -v "$PWD/probes:/etc/slowburn:ro" -v slowburn-data:/var/lib/slowburn slowburn
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Dependencies first, against stub sources: this layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every edit of slowburn's own code. The bench targets are named in
# Cargo.toml, so they need stub files for the manifest to load.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/micro.rs \
 && echo 'fn main() {}' > benches/load.rs \
 && cargo build --release --locked --bin slowburn \
 && rm -rf src benches

COPY src src
COPY probes probes
COPY benches benches
# COPY keeps the files' own mtimes, which may be older than the stub build: touch them so
# cargo rebuilds slowburn itself instead of keeping the stub binary.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin slowburn

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/slowburn --create-home slowburn
COPY --from=build /src/target/release/slowburn /usr/local/bin/slowburn
COPY probes /etc/slowburn
USER slowburn
WORKDIR /var/lib/slowburn
# The store (alert state, signal history, notification records) lives here, not beside the
# probe files, so /etc/slowburn can be mounted read-only and the data outlives the container.
VOLUME /var/lib/slowburn
EXPOSE 9464
# In a container the server must listen beyond loopback; the probe files say where it runs.
# --store wins over any storage.path in the probe files, which a read-only mount could not hold.
ENTRYPOINT ["slowburn", "run", "-c", "/etc/slowburn", "--listen", "0.0.0.0:9464", "--store", "/var/lib/slowburn/slowburn.db"]
