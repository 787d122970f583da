#!/usr/bin/env bash
# Benchmark: N sequential ADD+DEL with podnet-cni against the reference bridge + host-local
# plugins (Debian containernetworking-plugins), same config, same run, interleaved so both see
# the same machine load.
#
# Everything happens inside namespaces this script makes (one "host" namespace holding both
# plugins' bridges, one container namespace per plugin) and deletes on exit; the machine's root
# namespace is not touched.
#
# Usage: bench/cni.sh [N]   (default 100; root; MASQ=1 adds ipMasq to the config)
set -euo pipefail
N=${1:-100}
MASQ=${MASQ:-0}
cd "$(dirname "$0")/.."
REF_DIR=${PODNET_CNI_PLUGINS:-/usr/lib/cni}
[ -x "$REF_DIR/bridge" ] && [ -x "$REF_DIR/host-local" ] ||
  { echo "reference plugins not found in $REF_DIR (apt-get install containernetworking-plugins)" >&2; exit 1; }
cargo build --quiet --release -p podnet-examples --no-default-features --bin podnet-cni
TARGET=${CARGO_TARGET_DIR:-target}
PODNET=$(realpath "$TARGET/release/podnet-cni")

tag="pbench-cni-$$"
HOST="$tag-host"; REF_C="$tag-ref"; PN_C="$tag-pn"
WORK=$(mktemp -d)
cleanup() {
  for ns in "$HOST" "$REF_C" "$PN_C"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
for ns in "$HOST" "$REF_C" "$PN_C"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done

masq=false
[ "$MASQ" = 1 ] && masq=true
conf() { # $1 = plugin type, $2 = bridge, $3 = subnet, $4 = data dir
  printf '{"cniVersion":"1.0.0","name":"bench","type":"%s","bridge":"%s","isGateway":true,"isDefaultGateway":true,"ipMasq":%s,"mtu":1450,"hairpinMode":true,"ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"%s"}]],"routes":[{"dst":"10.96.0.0/12"}]},"dns":{"nameservers":["10.96.0.10"]}}' \
    "$1" "$2" "$masq" "$4" "$3"
}
conf bridge cni-ref 10.244.10.0/24 "$WORK/ref" > "$WORK/ref.json"
conf podnet-cni cni-pn 10.244.11.0/24 "$WORK/pn" > "$WORK/pn.json"

# One shell inside the host namespace runs every invocation (no `ip netns exec` per call), and
# times each with bash's $EPOCHREALTIME.
ip netns exec "$HOST" env N="$N" REF="$REF_DIR/bridge" PN="$PODNET" WORK="$WORK" \
  REF_NS="/run/netns/$REF_C" PN_NS="/run/netns/$PN_C" CNI_PATH="$REF_DIR" bash -c '
set -euo pipefail
export CNI_IFNAME=eth0 CNI_PATH
run() { # $1 = plugin, $2 = command, $3 = netns, $4 = config, $5 = container id
  CNI_COMMAND=$2 CNI_NETNS=$3 CNI_CONTAINERID=$5 "$1" < "$4" > "$WORK/out" ||
    { echo "$1 $2 failed: $(cat "$WORK/out")" >&2; exit 1; }
}
ref_us=0; pn_us=0
for ((i = 0; i < N; i++)); do
  t0=${EPOCHREALTIME/./}
  run "$REF" ADD "$REF_NS" "$WORK/ref.json" "bench-$i"
  run "$REF" DEL "$REF_NS" "$WORK/ref.json" "bench-$i"
  t1=${EPOCHREALTIME/./}
  run "$PN" ADD "$PN_NS" "$WORK/pn.json" "bench-$i"
  run "$PN" DEL "$PN_NS" "$WORK/pn.json" "bench-$i"
  t2=${EPOCHREALTIME/./}
  ref_us=$((ref_us + t1 - t0)); pn_us=$((pn_us + t2 - t1))
done
echo "$ref_us $pn_us" > "$WORK/times"
'
read -r ref_us pn_us < "$WORK/times"
# Both must have cleaned up after themselves.
[ -z "$(ls "$WORK/ref/bench" | grep '^10\.' || true)" ] || { echo "reference left leases" >&2; exit 1; }
[ -z "$(ls "$WORK/pn/bench" | grep '^10\.' || true)" ] || { echo "podnet-cni left leases" >&2; exit 1; }
[ "$(ip -n "$HOST" -o link show type veth | wc -l)" -eq 0 ] || { echo "veths left behind" >&2; exit 1; }
awk -v n="$N" -v r="$ref_us" -v p="$pn_us" -v m="$MASQ" 'BEGIN {
  printf "config: bridge, isDefaultGateway, hairpinMode, mtu 1450, host-local /24, ipMasq=%s\n", (m == 1 ? "true" : "false")
  printf "reference bridge+host-local: %d x (ADD+DEL) in %.3f s = %.2f ms per ADD+DEL\n", n, r / 1e6, r / 1e3 / n
  printf "podnet-cni:                  %d x (ADD+DEL) in %.3f s = %.2f ms per ADD+DEL\n", n, p / 1e6, p / 1e3 / n
  printf "ratio podnet-cni / reference: %.3fx (goal <= 0.5x)\n", p / r
}'
