#!/usr/bin/env bash
# Builds the `cacheon` runtime image: a release build of the binary, staged with the CA
# bundle into a minimal build context, then `docker build` with the repository's Dockerfile.
#   scripts/build-image.sh [tag]          (default tag: cacheon:local)
# BASE=<image> overrides the base image (CI uses a locally imported one, offline).
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-cacheon:local}"
base="${BASE:-debian:bookworm-slim}"
binary="${BINARY:-}"
if [ -z "$binary" ]; then
  cargo build --release --locked --bin cacheon
  binary=target/release/cacheon
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/cacheon"
cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
docker build --build-arg "BASE=$base" -f Dockerfile -t "$tag" "$context"
docker run --rm "$tag" --version
