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

run_plugin() { # $1 = plugin, $2 = config file; prints elapsed seconds
  local start end i
  start=$(date +%s%N)
  for ((i = 0; i < N; i++)); do
    CNI_COMMAND=ADD CNI_CONTAINERID="bench-$i" CNI_IFNAME=eth0 CNI_NETNS=/run/netns/unused \
      CNI_PATH=/usr/lib/cni "$1" < "$2" > /dev/null
  done
  end=$(date +%s%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", (b - a) / 1e9 }' 
}

hl=$(run_plugin "$HOST_LOCAL" "$WORK/hl.json")
pn=$(run_plugin "$PODNET" "$WORK/pn.json")
[ "$(ls "$WORK/hl/bench" | grep -c '^10\.')" -eq "$N" ] || { echo "host-local did not allocate $N addresses" >&2; exit 1; }
[ "$(ls "$WORK/pn/bench" | grep -c '^10\.')" -eq "$N" ] || { echo "podnet did not allocate $N addresses" >&2; exit 1; }
awk -v n="$N" -v hl="$hl" -v pn="$pn" 'BEGIN {
  printf "host-local (reference): %d ADDs in %.3f s = %.2f ms each\n", n, hl, hl * 1000 / n
  printf "podnet-host-local:      %d ADDs in %.3f s = %.2f ms each\n", n, pn, pn * 1000 / n
  printf "ratio (host-local time / podnet time): %.2fx\n", hl / pn
}' 
"$PODNET" bench "$WORK/lib.json" "$N"
