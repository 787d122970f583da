#!/bin/sh
# The guest half of kube-proxy's ipvs-mode sync benchmark (busybox sh, inside the qemu VM that
# examples/benches/kube_proxy_ipvs_vm.rs boots; this kernel has IPVS). Each round runs in fresh
# network namespaces (unshare -n):
#   ours  kube-proxy --proxy-mode ipvs on /bench/cfg: its first sync and, after one endpoint
#         of one EndpointSlice is replaced (/bench/slice-0.bump), its second, from /metrics
#   peer  the same rules (kube-proxy --dry-run's sections, split on the host) loaded by the
#         system tools: ipset restore, iptables-legacy-restore, the jumps (iptables -I),
#         ipvsadm -R (it binds no addresses to kube-ipvs0; kube-proxy's sync does)
# Prints one line per round: "ROUND <first sync s> <second sync s> <peer ns> <ours'
# ipvsadm -Sn lines> <peer's ipvsadm -Sn lines> <peer's ipset, iptables, jumps, ipvsadm ns>".
#
#   /bench/run.sh main REPEAT
set -eu

# kube-proxy's ipvs mode runs the system's iptables, iptables-restore and iptables-save: the
# VM has iptables-legacy under those names too (Vm::ipvs_mode_tools).

# Monotonic nanoseconds (busybox date has no %N).
now() { awk '/^now at/ { print $3; exit }' /proc/timer_list; }
metric() {
  wget -q -O - http://127.0.0.1:10249/metrics 2>/dev/null | awk -v m="$1" '$1 == m { print $2 }'
}
wait_count() { # $1 = count, $2 = kube-proxy's pid
  i=0
  while :; do
    c=$(metric 'kubeproxy_sync_proxy_rules_duration_seconds_count{mode="ipvs"}')
    [ "${c:-0}" -ge "$1" ] && break
    if ! kill -0 "$2" 2>/dev/null; then
      echo "kube-proxy exited:"; cat /tmp/kp.log; exit 1
    fi
    i=$((i + 1))
    [ $i -lt 36000 ] || { echo "no sync $1 within an hour"; cat /tmp/kp.log; exit 1; }
    sleep 0.1
  done
  c=$(metric 'kubeproxy_sync_proxy_rules_failures_total{mode="ipvs"}')
  [ "${c:-0}" = 0 ] || { echo "kube-proxy reported failed syncs:"; cat /tmp/kp.log; exit 1; }
}

case ${1:-} in
  ours)
    ip link set lo up
    rm -rf /tmp/cfg
    mkdir /tmp/cfg
    cp /bench/cfg/*.json /tmp/cfg/
    /bench/kube-proxy --proxy-mode ipvs --hostname-override bench-node --node-ip 198.18.0.1 \
      --config-dir /tmp/cfg --metrics-bind-address 127.0.0.1:10249 \
      --healthz-bind-address 127.0.0.1:10256 --iptables-sync-period 86400 \
      --iptables-min-sync-period 0 2>/tmp/kp.log &
    pid=$!
    wait_count 1 $pid
    s1=$(metric 'kubeproxy_sync_proxy_rules_duration_seconds_sum{mode="ipvs"}')
    rules=$(ipvsadm -S -n | wc -l)
    cp /bench/slice-0.bump /tmp/cfg/slice-0.json
    wait_count 2 $pid
    s2=$(metric 'kubeproxy_sync_proxy_rules_duration_seconds_sum{mode="ipvs"}')
    kill $pid
    wait $pid || true
    echo "OURS $s1 $s2 $rules" > /tmp/ours
    ;;
  peer)
    ip link set lo up
    t0=$(now)
    ipset -exist restore < /bench/ipsets.txt
    t1=$(now)
    iptables-legacy-restore --noflush --counters < /bench/iptables.txt
    t2=$(now)
    sh -e /bench/jumps.txt
    t3=$(now)
    ipvsadm -R < /bench/ipvs.txt
    t4=$(now)
    echo "PEER $((t4 - t0)) $(ipvsadm -S -n | wc -l) $((t1 - t0)) $((t2 - t1)) $((t3 - t2)) $((t4 - t3))" > /tmp/peer
    ;;
  main)
    r=0
    while [ $r -lt "$2" ]; do
      r=$((r + 1))
      unshare -n "$0" ours
      unshare -n "$0" peer
      read -r _ s1 s2 ours_rules < /tmp/ours
      read -r _ peer_ns peer_rules parts < /tmp/peer
      echo "ROUND $s1 $(awk -v a="$s1" -v b="$s2" 'BEGIN { printf "%.6f", b - a }') $peer_ns $ours_rules $peer_rules $parts"
    done
    ;;
  *)
    echo "usage: $0 main REPEAT" >&2
    exit 2
    ;;
esac
