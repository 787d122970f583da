#!/usr/bin/env bash
# podnet's demo: builds a simulated cluster (3 nodes x 2 pods, flannel vxlan by default) in
# network namespaces, runs real traffic through it, prints what it did and tears it down.
# Installs what it needs on a fresh Debian machine first. Run as root. Arguments go to
# `podnet-cluster demo`, e.g. `bash scripts/demo.sh --backend host-gw --etcd`.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
# gcc and libc6-dev: cargo's linker; ca-certificates: cargo reaches crates.io over HTTPS.
for p in gcc libc6-dev ca-certificates iproute2 iputils-ping iptables procps iperf3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
# What the options add: etcd for --etcd; nft for kube-proxy's nftables mode (its --cleanup).
prev=""
for a in "$@"; do
  extra=""
  case "$prev $a" in
    *" --etcd") extra=etcd-server ;;
    "--proxy-mode nftables"|*" --proxy-mode=nftables") extra=nftables ;;
  esac
  if [ -n "$extra" ]; then
    dpkg-query -W -f='${Status}' "$extra" 2>/dev/null | grep -q "install ok installed" || need+=("$extra")
  fi
  prev="$a"
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -q -p podnet-examples --bin flanneld --bin podnet-cluster --bin podnet-cni --bin kube-proxy
exec "${CARGO_TARGET_DIR:-target}/release/podnet-cluster" demo "$@"
