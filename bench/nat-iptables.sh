#!/bin/sh
# podnet-nat iptables-mode benchmark (as root; it works inside throw-away network namespaces):
# 10,000 services x 5 endpoints: render time, iptables-restore (legacy and nft) of the same text,
# a full sync and one-endpoint-change partial syncs, same run, ratios printed.
#   PODNET_BENCH_SERVICES=1000   smaller run
#   PODNET_BENCH_SKIP_NFT=1      skip iptables-nft-restore (it takes minutes at 10,000 services)
set -eu
cd "$(dirname "$0")/.."
exec cargo bench -p podnet-nat --bench iptables_sync
