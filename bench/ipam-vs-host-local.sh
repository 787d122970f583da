#!/usr/bin/env bash
# Benchmark: podnet-ipam's pod address allocator against the reference CNI host-local plugin,
# same config, same run.
#   1. N invocations of /usr/lib/cni/host-local (CNI ADD, one process each)
#   2. N invocations of podnet-host-local (podnet-ipam behind the same CNI interface)
#   3. N allocations in one process (podnet-ipam as a library)
# Usage: bench/ipam-vs-host-local.sh [N]   (default 1000; needs Debian containernetworking-plugins)
set -euo pipefail
N=${1:-1000}
cd "$(dirname "$0")/.."
HOST_LOCAL=${PODNET_HOST_LOCAL:-/usr/lib/cni/host-local}
[ -x "$HOST_LOCAL" ] || { echo "host-local not found at $HOST_LOCAL (apt-get install containernetworking-plugins)" >&2; exit 1; }
cargo build --quiet --release -p podnet-ipam --bin podnet-host-local
TARGET=${CARGO_TARGET_DIR:-target}
PODNET="$TARGET/release/podnet-host-local"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
conf() { # $1 = data dir
  printf '{"cniVersion":"1.0.0","name":"bench","ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.60.0.0/21"}]]}}' "$1"
}
conf "$WORK/hl" > "$WORK/hl.json"
conf "$WORK/pn" > "$WORK/pn.json"
conf "$WORK/lib" > "$WORK/lib.json"

add() { # $1 = plugin, $2 = config file, $3 = container number
  CNI_COMMAND=ADD CNI_CONTAINERID="bench-$3" CNI_IFNAME=eth0 CNI_NETNS=/run/netns/unused \
    CNI_PATH=/usr/lib/cni "$1" < "$2" > /dev/null
}

# Interleave the two plugins so that both see the same machine load; time each invocation
# with bash's $EPOCHREALTIME (no extra process).
hl_us=0
pn_us=0
for ((i = 0; i < N; i++)); do
  t0=${EPOCHREALTIME/./}
  add "$HOST_LOCAL" "$WORK/hl.json" "$i"
  t1=${EPOCHREALTIME/./}
  add "$PODNET" "$WORK/pn.json" "$i"
  t2=${EPOCHREALTIME/./}
  hl_us=$((hl_us + t1 - t0))
  pn_us=$((pn_us + t2 - t1))
done
hl=$(awk -v u="$hl_us" 'BEGIN { printf "%.3f", u / 1e6 }')
pn=$(awk -v u="$pn_us" 'BEGIN { printf "%.3f", u / 1e6 }')
[ "$(ls "$WORK/hl/bench" | grep -c '^10\.')" -eq "$N" ] || { echo "host-local did not allocate $N addresses" >&2; exit 1; }
[ "$(ls "$WORK/pn/bench" | grep -c '^10\.')" -eq "$N" ] || { echo "podnet did not allocate $N addresses" >&2; exit 1; }
awk -v n="$N" -v hl="$hl" -v pn="$pn" 'BEGIN {
  printf "host-local (reference): %d ADDs in %.3f s = %.2f ms each\n", n, hl, hl * 1000 / n
  printf "podnet-host-local:      %d ADDs in %.3f s = %.2f ms each\n", n, pn, pn * 1000 / n
  printf "ratio (host-local time / podnet time): %.2fx\n", hl / pn
}' 
"$PODNET" bench "$WORK/lib.json" "$N"
