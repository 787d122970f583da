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
# times each with bash's $EPOCHREALTIME. Per iteration it writes the microseconds of: reference
# ADD, reference DEL, podnet-cni ADD, podnet-cni DEL.
ip netns exec "$HOST" env N="$N" REF="$REF_DIR/bridge" PN="$PODNET" WORK="$WORK" \
  REF_NS="/run/netns/$REF_C" PN_NS="/run/netns/$PN_C" CNI_PATH="$REF_DIR" bash -c '
set -euo pipefail
export CNI_IFNAME=eth0 CNI_PATH
run() { # $1 = plugin, $2 = command, $3 = netns, $4 = config, $5 = container id
  CNI_COMMAND=$2 CNI_NETNS=$3 CNI_CONTAINERID=$5 "$1" < "$4" > "$WORK/out" ||
    { echo "$1 $2 failed: $(cat "$WORK/out")" >&2; exit 1; }
}
for ((i = 0; i < N; i++)); do
  t0=${EPOCHREALTIME/./}
  run "$REF" ADD "$REF_NS" "$WORK/ref.json" "bench-$i"
  t1=${EPOCHREALTIME/./}
  run "$REF" DEL "$REF_NS" "$WORK/ref.json" "bench-$i"
  t2=${EPOCHREALTIME/./}
  run "$PN" ADD "$PN_NS" "$WORK/pn.json" "bench-$i"
  t3=${EPOCHREALTIME/./}
  run "$PN" DEL "$PN_NS" "$WORK/pn.json" "bench-$i"
  t4=${EPOCHREALTIME/./}
  echo "$((t1 - t0)) $((t2 - t1)) $((t3 - t2)) $((t4 - t3))" >> "$WORK/times"
done
'
# Both must have cleaned up after themselves.
[ -z "$(ls "$WORK/ref/bench" | grep '^10\.' || true)" ] || { echo "reference left leases" >&2; exit 1; }
[ -z "$(ls "$WORK/pn/bench" | grep '^10\.' || true)" ] || { echo "podnet-cni left leases" >&2; exit 1; }
[ "$(ip -n "$HOST" -o link show type veth | wc -l)" -eq 0 ] || { echo "veths left behind" >&2; exit 1; }

sum() { awk -v c="$1" '{ s += $c } END { print s }' "$WORK/times"; }
median() {
  awk -v c="$1" '{ print $c }' "$WORK/times" | sort -n |
    awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
awk -v n="$N" -v m="$MASQ" \
  -v ra="$(sum 1)" -v rd="$(sum 2)" -v pa="$(sum 3)" -v pd="$(sum 4)" \
  -v mra="$(median 1)" -v mrd="$(median 2)" -v mpa="$(median 3)" -v mpd="$(median 4)" 'BEGIN {
  printf "config: bridge, isDefaultGateway, hairpinMode, mtu 1450, host-local /24, ipMasq=%s\n", (m == 1 ? "true" : "false")
  printf "%d sequential ADD+DEL each, interleaved   total s   per ADD+DEL ms   median ADD ms   median DEL ms\n", n
  printf "reference bridge + host-local            %7.3f   %14.2f   %13.2f   %13.2f\n", (ra + rd) / 1e6, (ra + rd) / 1e3 / n, mra / 1e3, mrd / 1e3
  printf "podnet-cni                               %7.3f   %14.2f   %13.2f   %13.2f\n", (pa + pd) / 1e6, (pa + pd) / 1e3 / n, mpa / 1e3, mpd / 1e3
  printf "ratio podnet-cni / reference: ADD+DEL %.3fx (goal <= 0.5x); ADD alone %.3fx; DEL alone %.3fx\n", (pa + pd) / (ra + rd), pa / ra, pd / rd
}'
