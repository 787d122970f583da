#!/usr/bin/env bash
# Benchmark: ADD and DEL of each CNI plugin, podnet-cni's multi-call binary against the reference
# plugins (Debian containernetworking-plugins), same configs, same run, interleaved so both see
# the same machine load: bridge, ptp, macvlan, loopback, host-local, tuning, portmap, bandwidth,
# and the chain bridge + portmap + bandwidth.
#
# Everything happens inside namespaces this script makes (one "host" namespace holding both
# sides' bridges and devices, one container namespace per side) and deletes on exit; the
# machine's root namespace is not touched.
#
# The chained plugins (tuning, portmap, bandwidth) need an interface and a prevResult: each
# iteration makes one with the side's own bridge plugin, untimed, times the plugin's ADD and DEL
# with that prevResult, and removes the interface again, untimed.
#
# Usage: bench/cni.sh [N] [PLUGIN...]   (default 100, all; root; MASQ=1 adds ipMasq to bridge;
# PODNET_CNI_BIN=path uses that binary instead of building a release one)
set -euo pipefail
N=${1:-100}
shift || true
PLUGINS=("$@")
[ ${#PLUGINS[@]} -gt 0 ] ||
  PLUGINS=(bridge ptp macvlan loopback host-local tuning portmap bandwidth chain)
MASQ=${MASQ:-0}
cd "$(dirname "$0")/.."
REF_DIR=${PODNET_CNI_PLUGINS:-/usr/lib/cni}
for p in bridge ptp macvlan loopback host-local tuning portmap bandwidth; do
  [ -x "$REF_DIR/$p" ] ||
    { echo "reference $p not found in $REF_DIR (apt-get install containernetworking-plugins)" >&2; exit 1; }
done
command -v jq > /dev/null || { echo "jq is needed (apt-get install jq)" >&2; exit 1; }
if [ -n "${PODNET_CNI_BIN:-}" ]; then
  PODNET=$(realpath "$PODNET_CNI_BIN")   # a binary built already (a smoke test of the script)
else
  cargo build --quiet --release -p podnet-examples --no-default-features --bin podnet-cni
  TARGET=${CARGO_TARGET_DIR:-target}
  PODNET=$(realpath "$TARGET/release/podnet-cni")
fi

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
# macvlan masters, one per side (veths: this kernel may have no dummy devices).
for m in mref mpn; do
  ip -n "$HOST" link add "${m}0" type veth peer name "${m}1"
  ip -n "$HOST" link set "${m}0" up
  ip -n "$HOST" link set "${m}1" up
done
mkdir -p "$WORK/pn-bin"
"$PODNET" install-links "$WORK/pn-bin" > /dev/null

masq=false
[ "$MASQ" = 1 ] && masq=true
# Configs per side: $1 = side (ref|pn), $2 = index (distinct subnets per side).
confs() {
  local s=$1 i=$2 d="$WORK/$1"
  mkdir -p "$d"
  local ipam="{\"type\":\"host-local\",\"dataDir\":\"$d/ipam\",\"ranges\":[[{\"subnet\":\"10.$i.1.0/24\"}]],\"routes\":[{\"dst\":\"10.96.0.0/12\"}]}"
  echo "{\"cniVersion\":\"1.0.0\",\"name\":\"bench\",\"type\":\"bridge\",\"bridge\":\"cni-$s\",\"isGateway\":true,\"isDefaultGateway\":true,\"ipMasq\":$masq,\"mtu\":1450,\"hairpinMode\":true,\"ipam\":$ipam,\"dns\":{\"nameservers\":[\"10.96.0.10\"]}}" > "$d/bridge.json"
  local ipam2="{\"type\":\"host-local\",\"dataDir\":\"$d/ipam\",\"ranges\":[[{\"subnet\":\"10.$i.2.0/24\"}]]}"
  echo "{\"cniVersion\":\"1.0.0\",\"name\":\"bptp\",\"type\":\"ptp\",\"mtu\":1400,\"ipam\":$ipam2}" > "$d/ptp.json"
  local ipam3="{\"type\":\"host-local\",\"dataDir\":\"$d/ipam\",\"ranges\":[[{\"subnet\":\"10.$i.3.0/24\"}]]}"
  echo "{\"cniVersion\":\"1.0.0\",\"name\":\"bmv\",\"type\":\"macvlan\",\"master\":\"m${s}0\",\"mode\":\"bridge\",\"ipam\":$ipam3}" > "$d/macvlan.json"
  echo '{"cniVersion":"1.0.0","name":"blo","type":"loopback"}' > "$d/loopback.json"
  echo "{\"cniVersion\":\"1.0.0\",\"name\":\"bhl\",\"ipam\":{\"type\":\"host-local\",\"dataDir\":\"$d/ipam\",\"ranges\":[[{\"subnet\":\"10.$i.4.0/24\"}]]}}" > "$d/host-local.json"
  # Chained plugins: the prevResult goes between the prefix and the closing brace.
  printf '%s' "{\"cniVersion\":\"1.0.0\",\"name\":\"bench\",\"type\":\"tuning\",\"dataDir\":\"$d/tuning\",\"mtu\":1400,\"promisc\":true,\"sysctl\":{\"net.ipv4.conf.eth0.arp_ignore\":\"1\"},\"prevResult\":" > "$d/tuning.pre"
  printf '%s' '{"cniVersion":"1.0.0","name":"bench","type":"portmap","capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},{"hostPort":8443,"containerPort":443,"protocol":"tcp"},{"hostPort":5353,"containerPort":53,"protocol":"udp"}]},"prevResult":' > "$d/portmap.pre"
  printf '%s' '{"cniVersion":"1.0.0","name":"bench","type":"bandwidth","ingressRate":100000000,"ingressBurst":1000000,"egressRate":100000000,"egressBurst":1000000,"prevResult":' > "$d/bandwidth.pre"
}
confs ref 201
confs pn 202

# One shell inside the host namespace runs every invocation (no `ip netns exec` per call), and
# times each with bash's $EPOCHREALTIME. Per plugin and iteration it writes the microseconds of:
# reference ADD, reference DEL, podnet ADD, podnet DEL.
ip netns exec "$HOST" env N="$N" PLUGINS="${PLUGINS[*]}" REF_DIR="$REF_DIR" PN_DIR="$WORK/pn-bin" \
  WORK="$WORK" REF_NS="/run/netns/$REF_C" PN_NS="/run/netns/$PN_C" bash -c '
set -euo pipefail
export CNI_IFNAME=eth0
# $1 = side dir, $2 = plugin, $3 = command, $4 = netns, $5 = config file, $6 = container id
run() {
  CNI_PATH=$1 CNI_COMMAND=$3 CNI_NETNS=$4 CNI_CONTAINERID=$6 "$1/$2" < "$5" > "$WORK/out" ||
    { echo "$1/$2 $3 failed: $(cat "$WORK/out")" >&2; exit 1; }
}
# One side, one plugin, one iteration: sets ADD_US and DEL_US.
once() { # $1 = side (ref|pn), $2 = plugin, $3 = iteration
  local s=$1 p=$2 i=$3 dir ns d="$WORK/$1" id="bench-$3" t0 t1 t2
  if [ "$s" = ref ]; then dir=$REF_DIR; ns=$REF_NS; else dir=$PN_DIR; ns=$PN_NS; fi
  case $p in
    bridge|ptp|macvlan|loopback)
      t0=${EPOCHREALTIME/./}; run "$dir" "$p" ADD "$ns" "$d/$p.json" "$id"
      t1=${EPOCHREALTIME/./}; run "$dir" "$p" DEL "$ns" "$d/$p.json" "$id"; t2=${EPOCHREALTIME/./} ;;
    host-local)
      t0=${EPOCHREALTIME/./}; run "$dir" host-local ADD "$ns" "$d/host-local.json" "$id"
      t1=${EPOCHREALTIME/./}; run "$dir" host-local DEL "$ns" "$d/host-local.json" "$id"; t2=${EPOCHREALTIME/./} ;;
    tuning|portmap|bandwidth)
      run "$dir" bridge ADD "$ns" "$d/bridge.json" "$id"
      { cat "$d/$p.pre" "$WORK/out"; echo "}"; } > "$d/$p.json"
      t0=${EPOCHREALTIME/./}; run "$dir" "$p" ADD "$ns" "$d/$p.json" "$id"
      t1=${EPOCHREALTIME/./}; run "$dir" "$p" DEL "$ns" "$d/$p.json" "$id"; t2=${EPOCHREALTIME/./}
      run "$dir" bridge DEL "$ns" "$d/bridge.json" "$id" ;;
    chain)
      # As a runtime runs the conflist: ADD in order, each with the previous result; DEL in
      # reverse order, each with the final result.
      t0=${EPOCHREALTIME/./}
      run "$dir" bridge ADD "$ns" "$d/bridge.json" "$id"
      { cat "$d/portmap.pre" "$WORK/out"; echo "}"; } > "$d/c-portmap.json"
      run "$dir" portmap ADD "$ns" "$d/c-portmap.json" "$id"
      { cat "$d/bandwidth.pre" "$WORK/out"; echo "}"; } > "$d/c-bandwidth.json"
      run "$dir" bandwidth ADD "$ns" "$d/c-bandwidth.json" "$id"
      t1=${EPOCHREALTIME/./}
      run "$dir" bandwidth DEL "$ns" "$d/c-bandwidth.json" "$id"
      run "$dir" portmap DEL "$ns" "$d/c-portmap.json" "$id"
      run "$dir" bridge DEL "$ns" "$d/bridge.json" "$id"
      t2=${EPOCHREALTIME/./} ;;
  esac
  ADD_US=$((t1 - t0)); DEL_US=$((t2 - t1))
}
for p in $PLUGINS; do
  for ((i = 0; i < N; i++)); do
    once ref "$p" "$i"; line="$ADD_US $DEL_US"
    once pn "$p" "$i"; echo "$line $ADD_US $DEL_US" >> "$WORK/times-$p"
  done
done
'
# Both sides must have cleaned up after themselves.
for s in ref pn; do
  left=$(find "$WORK/$s/ipam" -name "10.*" 2>/dev/null || true)
  [ -z "$left" ] || { echo "$s left leases: $left" >&2; exit 1; }
done
[ "$(ip -n "$HOST" -o link show type veth | grep -cv ' m\(ref\|pn\)[01]@')" -eq 0 ] || { echo "veths left behind" >&2; exit 1; }
[ "$(ip -n "$HOST" -o link show type ifb | wc -l)" -eq 0 ] || { echo "ifb devices left behind" >&2; exit 1; }
! ip netns exec "$HOST" iptables-save -t nat | grep -q CNI-DN- || { echo "portmap chains left behind" >&2; exit 1; }

median() { # $1 = file, $2 = column
  awk -v c="$2" '{ print $c }' "$1" | sort -n |
    awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
echo "$N iterations per plugin, interleaved (reference, podnet); medians in ms; bridge ipMasq=$masq"
printf '%-34s %9s %9s %9s %9s %9s %9s\n' plugin "ref ADD" "pn ADD" "ADD x" "ref DEL" "pn DEL" "DEL x"
for p in "${PLUGINS[@]}"; do
  f="$WORK/times-$p"
  ra=$(median "$f" 1); rd=$(median "$f" 2); pa=$(median "$f" 3); pd=$(median "$f" 4)
  name=$p
  [ "$p" = chain ] && name="bridge+portmap+bandwidth"
  awk -v n="$name" -v ra="$ra" -v rd="$rd" -v pa="$pa" -v pd="$pd" 'BEGIN {
    printf "%-34s %9.2f %9.2f %8.3fx %9.2f %9.2f %8.3fx%s\n", n, ra / 1e3, pa / 1e3, pa / ra,
      rd / 1e3, pd / 1e3, pd / rd,
      ((pa / ra <= 0.5) ? "" : "  ADD goal 0.5x not met") ((pd <= rd) ? "" : "  DEL slower")
  }'
done
