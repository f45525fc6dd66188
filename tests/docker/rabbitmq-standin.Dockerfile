# rabbitmq-standin.Dockerfile - for tests/docker/test_compose.sh only: where
# the official rabbitmq:4-management image cannot be pulled, the test builds
# this from Debian's rabbitmq-server package and tags it with that name, so
# docker/compose.yaml runs unchanged.  Like the official image: listens on
# 5672 (and 15672, management) on all interfaces, lets guest in from other
# containers, logs to stdout, has rabbitmq-diagnostics for the healthcheck.
FROM debian:bookworm-slim
LABEL fibrpc.test.stand-in="rabbitmq"
ARG DEBIAN_FRONTEND=noninteractive
# policy-rc.d: the package's scripts must not try to start a service here.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
    && chmod 755 /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
    && rabbitmq-plugins enable --offline rabbitmq_management \
    && printf '%s\n' 'loopback_users = none' 'listeners.tcp.default = 5672' \
        'management.tcp.port = 15672' >/etc/rabbitmq/rabbitmq.conf
ENV RABBITMQ_LOGS=-
USER rabbitmq
WORKDIR /var/lib/rabbitmq
EXPOSE 5672 15672
# The server itself, not Debian's /usr/sbin wrapper, which logs to files.
CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
