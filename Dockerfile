# syntax=docker/dockerfile:1
# The clrk image: `clrk server` and `clrk worker` for Kubernetes (docs/kubernetes.md).
#   docker build -t REGISTRY/clrk:0.1.0 .
# Servers run it as the user below; workers run it as root and privileged (gVisor, network
# namespaces, nftables), as their DaemonSet says.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p clrk \
 && install -D -m 0755 target/release/clrk /out/clrk

FROM debian:bookworm-slim
# Debian's own builds of gVisor's runsc and of runc, as on a worker machine; unpinned
# versions so that a rebuild picks up the distribution's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends runsc runc iproute2 nftables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/clrk /usr/local/bin/clrk
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/clrk"]
CMD ["--help"]
