# worker.Dockerfile - the fib-worker image.  Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t fibrpc/fib-worker .
# Stage 1 compiles on Debian 12 with the -dev packages; stage 2 is the same
# slim base with only the shared libraries the binary links, run as uid 10001.
# Configure it with the environment variables of `fib-worker --help`
# (AMQP_URL, RPC_QUEUE, WORKER_PREFETCH, FIB_MAX_N); arguments after the
# image name are passed as flags.  Scale by running more containers.

# The same build stage as gateway.Dockerfile, so the two share its layers.
FROM debian:bookworm-slim AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libmicrohttpd-dev librabbitmq-dev libjansson-dev uuid-dev libgmp-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Everything .dockerignore lets through (no tests, no build trees).
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    && cmake --build /build --target fib-worker -j "$(nproc)"

FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="fib-worker" \
      org.opencontainers.image.description="Fibonacci RPC worker for rpc-gateway, over AMQP"
ARG DEBIAN_FRONTEND=noninteractive
# The libraries fib-worker links (readelf -d: NEEDED; libmicrohttpd12 serves
# the optional metrics port), and ca-certificates for the default
# --amqp-cacert bundle that amqps:// brokers are checked with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libgmp10 librabbitmq4 libjansson4 libmicrohttpd12 ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 fibrpc \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin fibrpc
COPY --from=build /build/bin/fib-worker /usr/local/bin/fib-worker
COPY docker/worker-healthcheck.sh /usr/local/bin/worker-healthcheck
USER 10001:10001
# No HTTP port to ask: healthy while connected to the broker, see
# docker/worker-healthcheck.sh for why and how.
# No --start-period: dockerfilelint 1.8 misreads it; 3 tries 10 s apart give
# start-up 30 s before the container counts as unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --retries=3 \
    CMD ["/usr/local/bin/worker-healthcheck"]
ENTRYPOINT ["/usr/local/bin/fib-worker"]
