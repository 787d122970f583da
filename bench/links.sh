#!/usr/bin/env bash
# podnet-links vs iproute2: 10,000 routes and 1,000 veth pairs, pipelined vs `ip -batch`, in
# fresh namespaces, same run. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p podnet-links --bench vs_iproute2
