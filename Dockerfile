# The weir binary for docker-compose.yml (not built by the tests: no Docker engine on
# the build machines). `query` (weir query, POST /v1/query) is always on; FEATURES=s3
# adds remote object stores.
FROM rust:1.95-bookworm AS build
ARG FEATURES=""
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p weir --features query ${FEATURES:+--features weir-services/$FEATURES}

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/weir /usr/local/bin/weir
ENTRYPOINT []
