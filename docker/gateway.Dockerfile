# gateway.Dockerfile - the rpc-gateway image.  Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t fibrpc/rpc-gateway .
# Stage 1 compiles on Debian 12 with the -dev packages; stage 2 is the same
# slim base with only the shared libraries the binary links, run as uid 10001.
# Configure it with the environment variables of `rpc-gateway --help`
# (AMQP_URL above all); arguments after the image name are passed as flags.

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
    && cmake --build /build --target rpc-gateway -j "$(nproc)"

FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="rpc-gateway" \
      org.opencontainers.image.description="HTTP to AMQP RPC gateway: GET /fib/<n>"
ARG DEBIAN_FRONTEND=noninteractive
# The libraries rpc-gateway links (readelf -d: NEEDED), and ca-certificates
# for the default --amqp-cacert bundle that amqps:// brokers are checked with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libmicrohttpd12 librabbitmq4 libjansson4 libuuid1 ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 fibrpc \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin fibrpc
COPY --from=build /build/bin/rpc-gateway /usr/local/bin/rpc-gateway
COPY docker/gateway-healthcheck.sh /usr/local/bin/gateway-healthcheck
USER 10001:10001
# Set here so that the gateway and its health check agree on the port; change
# the port with this variable rather than --listen.
ENV GATEWAY_LISTEN=0.0.0.0:8080
EXPOSE 8080
# GET /healthz over bash's /dev/tcp: see docker/gateway-healthcheck.sh.
# No --start-period: dockerfilelint 1.8 misreads it; 3 tries 10 s apart give
# start-up 30 s before the container counts as unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --retries=3 \
    CMD ["/usr/local/bin/gateway-healthcheck"]
ENTRYPOINT ["/usr/local/bin/rpc-gateway"]
