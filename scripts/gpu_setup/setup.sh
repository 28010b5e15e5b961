#!/usr/bin/env bash
# Prepares a fresh Ubuntu GPU machine to run a Cacheon pod, idempotently:
#   1. Docker engine, 2. NVIDIA container toolkit, 3. disk-space checks,
#   4. Qwen2.5-72B-Instruct weights in /workspace/models/Qwen2.5-72B-Instruct,
#   5. the baseline image pulled by its pinned digest, 6. a GPU smoke check,
#   7. the sandbox network's firewall rules, saved, the pod's sandbox self-test
#      (sandboxed servers cannot reach the machine; scripts/gpu_setup/sandbox-firewall.sh)
#      and its canary (the pinned baseline started in the sandbox and asked one question).
# Every step checks first and only acts when something is missing; run it as often as you
# like. With --check it only verifies and reports, changing nothing (exit 1 if anything is
# missing).
#
#   sudo scripts/gpu_setup/setup.sh [--check]
# Environment:
#   CACHEON_BASELINE_IMAGE / CACHEON_BASELINE_DIGEST  the pinned baseline (as on the host);
#                         unset, they are read from the repository's .env, else from
#                         .env.example (the pin every validator should share)
#   CACHEON_MODELS_DIR    default /workspace/models/Qwen2.5-72B-Instruct
#   CACHEON_MODEL_REPO    default Qwen/Qwen2.5-72B-Instruct (Hugging Face)
#   HF_TOKEN              optional, for the download
#   CACHEON_SANDBOX_NETWORK  default cacheon-sandbox
#   CACHEON_SANDBOX_BRIDGE   default cacheon0 (the bridge the firewall rules name)
#   CACHEON_GPU_COUNT     default 4
set -euo pipefail

CHECK=0
if [ "${1:-}" = "--check" ]; then CHECK=1; fi

MODELS_DIR="${CACHEON_MODELS_DIR:-/workspace/models/Qwen2.5-72B-Instruct}"
MODEL_REPO="${CACHEON_MODEL_REPO:-Qwen/Qwen2.5-72B-Instruct}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# from_env_file NAME: NAME's value in .env, else in .env.example (read, never sourced).
from_env_file() {
  local file
  for file in "$REPO/.env" "$REPO/.env.example"; do
    if [ -f "$file" ] && grep -q "^$1=" "$file"; then
      grep "^$1=" "$file" | tail -n1 | cut -d= -f2-
      return
    fi
  done
}
BASELINE_IMAGE="${CACHEON_BASELINE_IMAGE:-$(from_env_file CACHEON_BASELINE_IMAGE)}"
BASELINE_IMAGE="${BASELINE_IMAGE:-vllm/vllm-openai}"
BASELINE_DIGEST="${CACHEON_BASELINE_DIGEST:-$(from_env_file CACHEON_BASELINE_DIGEST)}"
GPU_COUNT="${CACHEON_GPU_COUNT:-4}"
# The weights are about 145 GB; the baseline image about 10 GB; miner images up to 20 GB.
MODEL_SPACE_GB=160
DOCKER_SPACE_GB=60

missing=0
ok() { printf '  ok       %s\n' "$1"; }
todo() { printf '  MISSING  %s\n' "$1"; missing=1; }
step() { printf '%s\n' "$1"; }
act() {
  # Runs a fixing command unless --check.
  if [ "$CHECK" -eq 1 ]; then return 1; fi
  "$@"
}

if [ "$CHECK" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo), or with --check to only verify" >&2
  exit 2
fi

free_gb() {
  local dir="$1"
  while [ ! -d "$dir" ]; do dir="$(dirname "$dir")"; done
  df -Pk "$dir" | awk 'NR == 2 { print int($4 / 1048576) }'
}

# at_least FOUND MIN: FOUND's leading dotted numbers are >= MIN's.
at_least() {
  [ "$(printf '%s\n%s\n' "$2" "${1%%[^0-9.]*}" | sort -V | head -n1)" = "$2" ]
}

step "1. Docker engine"
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine="$(docker version --format '{{.Server.Version}}')"
  if at_least "$engine" 26.0.0; then
    ok "docker $engine"
  else
    todo "docker $engine is older than 26.0.0 (internal networks forward DNS, CVE-2024-29018): install docker-ce from Docker's repository; the pod refuses this engine"
  fi
elif act sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io && systemctl enable --now docker'; then
  ok "docker installed"
else
  todo "docker engine (apt-get install docker.io)"
fi

# The engine's own limits bound every container's: locked memory (CUDA pinned buffers,
# NCCL; systemd's default is 8 MiB) and open files (vLLM wants 65,535).
dockerd_limit() { # NAME: dockerd's hard limit
  local pid
  pid="$(pidof dockerd 2>/dev/null | cut -d' ' -f1)"
  [ -n "$pid" ] && awk -v n="$1" 'index($0, n) == 1 { print $(NF - 1) }' "/proc/$pid/limits"
}
memlock="$(dockerd_limit 'Max locked memory' || true)"
nofile="$(dockerd_limit 'Max open files' || true)"
if [ "$memlock" = unlimited ] && [ "${nofile:-0}" != unlimited ] && [ "${nofile:-0}" -ge 65536 ]; then
  ok "dockerd's limits: locked memory unlimited, $nofile open files"
elif act sh -c 'mkdir -p /etc/systemd/system/docker.service.d \
    && printf "[Service]\nLimitMEMLOCK=infinity\nLimitNOFILE=1048576\n" > /etc/systemd/system/docker.service.d/cacheon-limits.conf \
    && systemctl daemon-reload && systemctl restart docker'; then
  ok "dockerd's limits raised (LimitMEMLOCK=infinity, LimitNOFILE=1048576)"
else
  todo "dockerd's limits (locked memory ${memlock:-?}, open files ${nofile:-?}): a drop-in with LimitMEMLOCK=infinity and LimitNOFILE=1048576"
fi

step "2. NVIDIA container toolkit"
toolkit="$(nvidia-ctk --version 2>/dev/null | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -n1 || true)"
if [ -n "$toolkit" ] && ! at_least "$toolkit" 1.17.8; then
  todo "nvidia container toolkit $toolkit is older than 1.17.8 (container escapes, CVE-2025-23266): apt-get install --only-upgrade nvidia-container-toolkit"
elif command -v nvidia-ctk >/dev/null 2>&1 && docker info 2>/dev/null | grep -qi 'runtimes:.*nvidia'; then
  ok "nvidia runtime registered with docker (toolkit $toolkit)"
elif act sh -c '
    set -e
    curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey |
      gpg --dearmor --yes -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
    curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list |
      sed "s#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g" \
      > /etc/apt/sources.list.d/nvidia-container-toolkit.list
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nvidia-container-toolkit
    nvidia-ctk runtime configure --runtime=docker
    systemctl restart docker'; then
  ok "nvidia container toolkit installed"
else
  todo "nvidia container toolkit"
fi

step "3. Disk space"
if [ -f "$MODELS_DIR/config.json" ]; then
  ok "weights already present; model space not needed"
elif [ "$(free_gb "$MODELS_DIR")" -ge "$MODEL_SPACE_GB" ]; then
  ok "$(free_gb "$MODELS_DIR") GB free for the weights (need $MODEL_SPACE_GB)"
else
  todo "$(free_gb "$MODELS_DIR") GB free under $MODELS_DIR; the weights need $MODEL_SPACE_GB GB"
fi
if [ "$(free_gb /var/lib/docker)" -ge "$DOCKER_SPACE_GB" ]; then
  ok "$(free_gb /var/lib/docker) GB free for images (need $DOCKER_SPACE_GB)"
else
  todo "$(free_gb /var/lib/docker) GB free for Docker images; need $DOCKER_SPACE_GB GB"
fi

step "4. Model weights ($MODEL_REPO)"
if [ -f "$MODELS_DIR/config.json" ] && ls "$MODELS_DIR"/*.safetensors >/dev/null 2>&1; then
  ok "$MODELS_DIR has config.json and $(find "$MODELS_DIR" -maxdepth 1 -name '*.safetensors' | wc -l) safetensors files"
elif act sh -c "
    set -e
    mkdir -p '$MODELS_DIR'
    command -v huggingface-cli >/dev/null 2>&1 || pip install -q 'huggingface_hub[cli]'
    huggingface-cli download '$MODEL_REPO' --local-dir '$MODELS_DIR'"; then
  ok "weights downloaded to $MODELS_DIR"
else
  todo "weights in $MODELS_DIR (huggingface-cli download $MODEL_REPO --local-dir $MODELS_DIR)"
fi

step "5. Baseline image"
if [ -z "$BASELINE_DIGEST" ]; then
  todo "CACHEON_BASELINE_DIGEST is not set (the host's pinned baseline digest)"
elif docker image inspect "$BASELINE_IMAGE@$BASELINE_DIGEST" >/dev/null 2>&1; then
  ok "$BASELINE_IMAGE@$BASELINE_DIGEST present"
elif act docker pull -q "$BASELINE_IMAGE@$BASELINE_DIGEST"; then
  ok "$BASELINE_IMAGE@$BASELINE_DIGEST pulled"
else
  todo "$BASELINE_IMAGE@$BASELINE_DIGEST not pulled"
fi

step "6. GPU smoke check"
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus="$(nvidia-smi --query-gpu=name --format=csv,noheader | grep -c . || true)"
  if [ "$gpus" -ge "$GPU_COUNT" ]; then
    ok "$gpus GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | xargs)"
  else
    todo "found $gpus GPU(s), need $GPU_COUNT"
  fi
  if docker run --rm --gpus all --entrypoint nvidia-smi "$BASELINE_IMAGE@${BASELINE_DIGEST:-none}" -L >/dev/null 2>&1; then
    ok "containers see the GPUs"
  else
    todo "a container could not see the GPUs (docker run --gpus all ... nvidia-smi -L)"
  fi
else
  todo "nvidia-smi not found (install the NVIDIA driver)"
fi

step "7. Sandbox network firewall, self-test and the baseline canary"
# The canary (in `cacheon pod --check-only`): the pinned baseline started in the sandbox
# on these weights, asked one greedy question.
export CACHEON_BASELINE_IMAGE="$BASELINE_IMAGE" CACHEON_BASELINE_DIGEST="$BASELINE_DIGEST"
if [ -z "${CACHEON_BASELINE_ARGS:-}" ] && [ -n "$(from_env_file CACHEON_BASELINE_ARGS)" ]; then
  CACHEON_BASELINE_ARGS="$(from_env_file CACHEON_BASELINE_ARGS)"
  export CACHEON_BASELINE_ARGS
fi
# sandbox-firewall.sh: the internal network on its fixed bridge, the rules (IPv4 and IPv6)
# that drop new connections from it to this machine, saved for reboots, and the pod's own
# self-test proving a container on it reaches nothing.
firewall=("$REPO/scripts/gpu_setup/sandbox-firewall.sh")
if [ "$CHECK" -eq 1 ]; then firewall+=(--check); fi
if ! "${firewall[@]}"; then
  missing=1
fi

if [ "$missing" -eq 0 ]; then
  echo "ready: docker compose -f docker-compose.gpu.yml up"
else
  echo "not ready: see MISSING above"
  exit 1
fi
