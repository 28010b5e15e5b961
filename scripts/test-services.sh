#!/usr/bin/env bash
# Installs and starts everything the test suite needs, on a developer's machine and in CI
# alike (.ci/run calls this), so the two cannot drift apart. Idempotent: run it as often
# as you like.
#
# Today the suite needs only the Rust toolchain with rustfmt and clippy; the Docker engine,
# local registry and S3 server join this script with the features that test against them.
set -euo pipefail

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "test-services: '$1' is missing: $2" >&2
    exit 1
  fi
}

need cargo "install Rust with rustup (https://rustup.rs)"
need rustfmt "rustup component add rustfmt"
need cargo-clippy "rustup component add clippy"

echo "test-services: $(cargo --version), $(rustfmt --version), $(cargo clippy --version)"
