# The weir binary for docker-compose.yml (no test builds it: there is no Docker engine
# on the build machines; scripts/check-compose checks the features below). FEATURES
# are the ones CI tests: `query` (weir query, POST /v1/query; scripts/test's
# `--features weir/query`) and `s3` (remote object stores; scripts/test's s3 run).
FROM rust:1.95-bookworm AS build
ARG FEATURES="query,s3"
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p weir --features "$FEATURES"

FROM debian:bookworm-slim
# curl: the gateway's health check in docker-compose.yml.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/weir /usr/local/bin/weir
ENTRYPOINT []
