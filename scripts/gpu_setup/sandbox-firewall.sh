#!/usr/bin/env bash
# The sandbox network and its firewall (step 7 of setup.sh; also runs on its own).
#
# The sandbox network is internal (no route out), but a container on it can still open
# connections to this machine's own services through the bridge's gateway address. This
# drops every new connection that arrives from the bridge, over IPv4 and IPv6; replies to
# the pod's own requests to the servers (established connections) still pass. The bridge
# has a fixed name (CACHEON_SANDBOX_BRIDGE, the pod creates the network with it), so the
# rule keeps matching when the network is re-created; the rules are saved so they survive
# a reboot. Then the pod's own self-test proves it: a probe container on the network must
# reach nothing (`cacheon pod --check-only`).
#
#   sudo scripts/gpu_setup/sandbox-firewall.sh [--check]
# Environment:
#   CACHEON_SANDBOX_NETWORK   default cacheon-sandbox
#   CACHEON_SANDBOX_BRIDGE    default cacheon0
#   CACHEON_FIREWALL_PERSIST  1 (default): save the rules with netfilter-persistent
#   CACHEON_BIN               a `cacheon` binary for the self-test; default: the pod's
#                             image (CACHEON_IMAGE, cacheon:local) run with the Docker socket
#   CACHEON_PROBE_IMAGE       the probe's image (default: CACHEON_IMAGE); the self-test
#                             reads the pod's other settings (CACHEON_*) from the environment
set -euo pipefail

CHECK=0
if [ "${1:-}" = "--check" ]; then CHECK=1; fi
NETWORK="${CACHEON_SANDBOX_NETWORK:-cacheon-sandbox}"
BRIDGE="${CACHEON_SANDBOX_BRIDGE:-cacheon0}"
PERSIST="${CACHEON_FIREWALL_PERSIST:-1}"
IMAGE="${CACHEON_IMAGE:-cacheon:local}"

missing=0
ok() { printf '  ok       %s\n' "$1"; }
todo() { printf '  MISSING  %s\n' "$1"; missing=1; }
act() {
  if [ "$CHECK" -eq 1 ]; then return 1; fi
  "$@"
}

if docker network inspect "$NETWORK" >/dev/null 2>&1; then
  internal="$(docker network inspect -f '{{.Internal}}' "$NETWORK")"
  actual="$(docker network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' "$NETWORK")"
  if [ "$internal" = true ] && [ "$actual" = "$BRIDGE" ]; then
    ok "network $NETWORK is internal, on bridge $BRIDGE"
  else
    todo "network $NETWORK (internal=$internal, bridge=${actual:-auto}) must be internal on $BRIDGE: docker network rm $NETWORK, then run this again"
  fi
elif act docker network create --internal --opt "com.docker.network.bridge.name=$BRIDGE" "$NETWORK" >/dev/null; then
  ok "internal network $NETWORK created on bridge $BRIDGE"
else
  todo "internal network $NETWORK on bridge $BRIDGE"
fi

for tool in iptables ip6tables; do
  rule=(INPUT -i "$BRIDGE" -m conntrack --ctstate NEW -j DROP)
  if ! command -v "$tool" >/dev/null 2>&1; then
    todo "$tool is not installed"
  elif "$tool" -C "${rule[@]}" 2>/dev/null; then
    ok "$tool: new connections from $BRIDGE to this machine are dropped"
  elif act "$tool" -I "${rule[@]}"; then
    ok "$tool: new connections from $BRIDGE to this machine now dropped"
  else
    todo "$tool -I ${rule[*]}"
  fi
done

if [ "$PERSIST" = 1 ]; then
  if command -v netfilter-persistent >/dev/null 2>&1 \
    && grep -qs -- "-i $BRIDGE" /etc/iptables/rules.v4 \
    && grep -qs -- "-i $BRIDGE" /etc/iptables/rules.v6; then
    ok "rules saved in /etc/iptables (restored at boot)"
  elif command -v netfilter-persistent >/dev/null 2>&1 && act netfilter-persistent save >/dev/null 2>&1; then
    ok "rules saved with netfilter-persistent"
  else
    todo "saved rules (apt-get install iptables-persistent; netfilter-persistent save)"
  fi
fi

# The pod's own self-test: a probe container on the network must reach nothing.
if [ -n "${CACHEON_BIN:-}" ]; then
  probe=("$CACHEON_BIN" pod --check-only)
else
  probe=(docker run --rm --network host --user 0:0 -v /var/run/docker.sock:/var/run/docker.sock
    -v /var/lib/docker:/var/lib/docker:ro
    -v "${CACHEON_MODELS_DIR:-/workspace/models/Qwen2.5-72B-Instruct}:${CACHEON_MODELS_DIR:-/workspace/models/Qwen2.5-72B-Instruct}:ro"
    --env-file <(env | grep '^CACHEON_') "$IMAGE" pod --check-only)
fi
export CACHEON_PROBE_IMAGE="${CACHEON_PROBE_IMAGE:-$IMAGE}"
if out="$("${probe[@]}" 2>&1)"; then
  ok "self-test: a container on $NETWORK reaches nothing on this machine"
  if printf '%s' "$out" | grep -q 'baseline canary'; then
    ok "$(printf '%s' "$out" | grep 'baseline canary' | tail -n1)"
  fi
else
  todo "self-test failed: $(printf '%s' "$out" | tail -n 3)"
fi

if [ "$missing" -ne 0 ]; then
  exit 1
fi
