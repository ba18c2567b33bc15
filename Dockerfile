# Build: docker build -t slowburn .
# Run:   docker run -p 9464:9464 -v $PWD/probes:/etc/slowburn:ro slowburn
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY probes probes
COPY benches benches
RUN cargo build --release --locked --bin slowburn

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/slowburn --create-home slowburn
COPY --from=build /src/target/release/slowburn /usr/local/bin/slowburn
COPY probes /etc/slowburn
USER slowburn
WORKDIR /var/lib/slowburn
EXPOSE 9464
# In a container the server must listen beyond loopback; the probe files say where it runs.
ENTRYPOINT ["slowburn", "run", "-c", "/etc/slowburn", "--listen", "0.0.0.0:9464"]
