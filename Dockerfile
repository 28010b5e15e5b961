# The `cacheon` runtime image: the binary and nothing else on a slim glibc base.
#
# It is built from a binary compiled outside Docker (scripts/build-image.sh stages
# `cacheon` and the CA bundle into a small build context), so building the image needs no
# network beyond the base image, and CI builds it offline from a base imported locally:
#   docker build --build-arg BASE=<local image> -f Dockerfile <context>
#
# One image serves both daemons:
# - the host runs as the unprivileged user 10001 and needs nothing from the machine but its
#   volume (SQLite), the read-only wallet, and the network to the node and S3;
# - the pod runs as root in the GPU compose file because it drives the Docker engine through
#   /var/run/docker.sock (which is root-equivalent on that machine: it starts the sandboxed
#   miner containers and the baseline), reads nvidia-smi for its preflight (GPU access via
#   the NVIDIA runtime), and reads the model directory it bind-mounts into every container.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ARG BINARY=cacheon
COPY ${BINARY} /usr/local/bin/cacheon
# rustls verifies S3 and subtensor endpoints against this bundle.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    CACHEON_DATABASE=/var/lib/cacheon/cacheon.db \
    CACHEON_STATUS_ADDR=0.0.0.0:8080 \
    CACHEON_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/cacheon
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cacheon"]
CMD ["--help"]
