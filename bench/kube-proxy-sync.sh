#!/usr/bin/env bash
# Benchmark: podnet's kube-proxy sync duration, per proxy mode, at 1,000 and 10,000 Services,
# against the system's own tool loading the same rules in the same run.
#
# Each Service is a ClusterIP with one TCP port and one EndpointSlice of 5 ready endpoints
# (bench/kube-proxy-objects.awk writes them). For every mode and size, in fresh namespaces:
#   full    kube-proxy's first (full) sync, as it reports it in /metrics
#           (kubeproxy_sync_proxy_rules_duration_seconds_sum once _count is 1)
#   change  one endpoint of one EndpointSlice edited: the second sync (difference of _sum)
#   peer    `kube-proxy --dry-run`'s output loaded by the system tool into a fresh namespace:
#           iptables-legacy-restore / iptables-nft-restore (iptables mode, with kube-proxy's
#           --noflush --counters), nft -f (nftables mode); ipvs mode in a VM (see below)
#   ratio   full / peer
#   change/full  the one-endpoint change as a share of the full sync
# Medians of $REPEAT rounds, ours and the peer interleaved in each round.
#
# iptables mode runs with --iptables-backend legacy and nft. iptables-nft-restore grows faster
# than quadratically with the rule set here (1.2 s at 1,000 Services, 12 s at 3,000, about
# 8 min at 10,000, mostly in userspace), so the nft backend is skipped above KP_BENCH_NFT_MAX
# Services (default 3000) with the reason printed.
#
# ipvs mode: this kernel has no IPVS, so its rows come from a qemu VM booting Debian's kernel
# (TCG emulation: absolute times are slow, the ratio still compares like with like):
# `cargo bench -p podnet-examples --bench kube_proxy_ipvs_vm` (peer: ipset restore +
# iptables-legacy-restore + ipvsadm -R of the --dry-run sections), sizes KP_BENCH_IPVS_SIZES.
#
# Everything runs inside namespaces named ptest-<pid>-bench-* (the test sweep's convention: a
# namespace whose process still runs is not a leftover), deleted on exit; the machine's root
# namespace is not touched.
#
# Usage (root): bench/kube-proxy-sync.sh [SIZE...]        default sizes: 1000 10000
#   REPEAT=3                      rounds per mode and size
#   KP_BENCH_MODES="iptables-legacy iptables-nft nftables ipvs"
#   KP_BENCH_NFT_MAX=3000         largest size the iptables nft backend is run at
#   KP_BENCH_IPVS_SIZES="1000 10000"  (default: the sizes given)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 10000)
REPEAT=${REPEAT:-3}
MODES=${KP_BENCH_MODES:-iptables-legacy iptables-nft nftables ipvs}
NFT_MAX=${KP_BENCH_NFT_MAX:-3000}
IPVS_SIZES=${KP_BENCH_IPVS_SIZES:-${SIZES[*]}}
TIMEOUT=${KP_BENCH_TIMEOUT:-1800} # seconds one sync may take
[ "$(id -u)" = 0 ] || { echo "run as root (it makes network namespaces)" >&2; exit 1; }
TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p podnet-examples --bin kube-proxy
KP=$(realpath "$TARGET_DIR/release/kube-proxy")

TAG="ptest-$$-bench"
WORK=$(mktemp -d)
NAMESPACES=()
KP_PID=
cleanup() {
  if [ -n "$KP_PID" ]; then
    # kube-proxy stops between syncs; one may take a minute, so it gets 2 s, then SIGKILL.
    kill "$KP_PID" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$KP_PID" 2>/dev/null && sleep 0.2; done
    kill -KILL "$KP_PID" 2>/dev/null || true
    wait "$KP_PID" 2>/dev/null || true
  fi
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

new_ns() { # $1 = name
  NAMESPACES+=("$1")
  ip netns add "$1"
  ip -n "$1" link set lo up
}
del_ns() { ip netns del "$1"; }

KP_ARGS=(--hostname-override bench-node --node-ip 198.18.0.1)
metric() { # $1 = namespace, $2 = metric name (with labels); prints its value or nothing
  ip netns exec "$1" curl -s --max-time 5 http://127.0.0.1:10249/metrics 2>/dev/null |
    awk -v m="$2" '$1 == m { print $2 }'
}
wait_count() { # $1 = namespace, $2 = mode label, $3 = count
  local deadline=$((SECONDS + TIMEOUT)) c
  while :; do
    c=$(metric "$1" "kubeproxy_sync_proxy_rules_duration_seconds_count{mode=\"$2\"}")
    [ "${c:-0}" -ge "$3" ] && break
    kill -0 "$KP_PID" 2>/dev/null || { echo "kube-proxy exited; its log:" >&2; cat "$WORK/kp.log" >&2; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "no sync $3 within ${TIMEOUT}s" >&2; exit 1; }
    sleep 0.2
  done
  c=$(metric "$1" "kubeproxy_sync_proxy_rules_failures_total{mode=\"$2\"}")
  [ "${c:-0}" = 0 ] || { echo "kube-proxy reported failed syncs:" >&2; cat "$WORK/kp.log" >&2; exit 1; }
}
timed() { # $1 = namespace, $2 = input file, rest = command; prints milliseconds
  local ns=$1 input=$2
  shift 2
  ip netns exec "$ns" bash -c 't0=${EPOCHREALTIME/./}; "$@" < "$0" > /dev/null || exit 1; t1=${EPOCHREALTIME/./}; echo $(( (t1 - t0) / 1000 )).$(( (t1 - t0) % 1000 / 100 ))' \
    "$input" "$@"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# What the kernel holds of kube-proxy's rules, to check that ours and the peer loaded the same.
rule_count() { # $1 = namespace, $2 = mode
  case $2 in
    iptables-legacy) ip netns exec "$1" iptables-legacy-save | grep -c '^-A KUBE-' ;;
    iptables-nft) ip netns exec "$1" iptables-nft-save | grep -c '^-A KUBE-' ;;
    nftables) ip netns exec "$1" nft list table ip kube-proxy | grep -vc '^\s*$' ;;
  esac
}

# One round of one mode at one size (in this shell, so that the exit trap sees what it made):
# sets R="full change peer" (ms).
round() { # $1 = mode, $2 = size, $3 = round
  local mode=$1 n=$2 r=$3 label args=() peer=() ns sum1 sum2 full change peerms
  case $mode in
    iptables-legacy) label=iptables; args=(--proxy-mode iptables --iptables-backend legacy)
      peer=(iptables-legacy-restore -w 5 --noflush --counters) ;;
    iptables-nft) label=iptables; args=(--proxy-mode iptables --iptables-backend nft)
      peer=(iptables-nft-restore -w 5 --noflush --counters) ;;
    nftables) label=nftables; args=(--proxy-mode nftables)
      peer=(nft -f /dev/stdin) ;;
  esac
  local cfg="$WORK/cfg-$n" dry="$WORK/dry-$label-$n"
  rm -rf "$cfg" && mkdir -p "$cfg"
  awk -v dir="$cfg" -v n="$n" -f bench/kube-proxy-objects.awk
  [ -s "$dry" ] || "$KP" "${args[@]}" "${KP_ARGS[@]}" --dry-run --config-dir "$cfg" > "$dry" 2>"$WORK/dry.log"

  ns="$TAG-$mode-$n-$r-kp"
  new_ns "$ns"
  ip netns exec "$ns" "$KP" "${args[@]}" "${KP_ARGS[@]}" --config-dir "$cfg" \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 \
    --iptables-sync-period 86400 --iptables-min-sync-period 0 2>"$WORK/kp.log" &
  KP_PID=$!
  wait_count "$ns" "$label" 1
  sum1=$(metric "$ns" "kubeproxy_sync_proxy_rules_duration_seconds_sum{mode=\"$label\"}")
  local ours_rules
  ours_rules=$(rule_count "$ns" "$mode")
  awk -v dir="$cfg" -v n="$n" -v bump=1 -f bench/kube-proxy-objects.awk
  wait_count "$ns" "$label" 2
  sum2=$(metric "$ns" "kubeproxy_sync_proxy_rules_duration_seconds_sum{mode=\"$label\"}")
  [ "$(metric "$ns" "kubeproxy_sync_full_proxy_rules_total{mode=\"$label\"}")" = 1 ] ||
    echo "note: $mode at $n: the one-endpoint change was applied by a full sync" >&2
  kill "$KP_PID"; wait "$KP_PID" 2>/dev/null || true; KP_PID=
  del_ns "$ns"

  ns="$TAG-$mode-$n-$r-peer"
  new_ns "$ns"
  peerms=$(timed "$ns" "$dry" "${peer[@]}")
  local peer_rules
  peer_rules=$(rule_count "$ns" "$mode")
  del_ns "$ns"
  [ "$ours_rules" = "$peer_rules" ] || {
    echo "$mode at $n: kube-proxy loaded $ours_rules rules, the peer $peer_rules: not the same rule set" >&2
    exit 1
  }
  full=$(awk -v s="$sum1" 'BEGIN { printf "%.1f", s * 1000 }')
  change=$(awk -v a="$sum1" -v b="$sum2" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
  R="$full $change $peerms"
}

echo "kube-proxy sync benchmark: ClusterIP Services, 1 TCP port each, 1 EndpointSlice of 5 ready"
echo "endpoints each; one-endpoint change = one endpoint of one slice replaced; median of $REPEAT"
echo "rounds; times in ms. $(uname -r), $(nproc) CPUs; load:$(uptime | sed 's/.*load average: / /')"
echo "peer: iptables-legacy-restore / iptables-nft-restore -w 5 --noflush --counters, nft -f,"
echo "of kube-proxy --dry-run's output, in a fresh namespace"
printf '\n%-16s %8s %12s %12s %12s %8s %14s\n' mode services "full sync" "one change" peer ratio "change/full"
printf '%-16s %8s %12s %12s %12s %8s %14s\n' ---- -------- --------- ---------- ---- ----- -----------
for n in "${SIZES[@]}"; do
  for mode in $MODES; do
    [ "$mode" = ipvs ] && continue
    if [ "$mode" = iptables-nft ] && [ "$n" -gt "$NFT_MAX" ]; then
      printf '%-16s %8s   skipped: iptables-nft-restore grows faster than quadratically here (1.2 s at\n' "$mode" "$n"
      printf '%-16s %8s   1,000, 12 s at 3,000, about 8 min at 10,000); KP_BENCH_NFT_MAX=%s runs it\n' "" "" "$n"
      continue
    fi
    F=() C=() P=()
    for ((r = 1; r <= REPEAT; r++)); do
      round "$mode" "$n" "$r"
      read -r f c p <<< "$R"
      F+=("$f"); C+=("$c"); P+=("$p")
    done
    f=$(median "${F[@]}"); c=$(median "${C[@]}"); p=$(median "${P[@]}")
    printf '%-16s %8s %12s %12s %12s %7.2fx %13.1f%%\n' "$mode" "$n" "$f" "$c" "$p" \
      "$(awk -v a="$f" -v b="$p" 'BEGIN { print a / b }')" \
      "$(awk -v a="$c" -v b="$f" 'BEGIN { print 100 * a / b }')"
  done
done
if [[ " $MODES " == *" ipvs "* ]]; then
  # ipvs rows: qemu VM, Debian's kernel under TCG emulation (slow in absolute terms).
  KP_BENCH_SIZES="$IPVS_SIZES" KP_BENCH_REPEAT="$REPEAT" \
    cargo bench --quiet -p podnet-examples --bench kube_proxy_ipvs_vm
fi
echo "load after:$(uptime | sed 's/.*load average: / /')"
