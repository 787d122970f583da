#!/usr/bin/env bash
# The UDP tunnel's benchmark, one command (as root): iperf3 TCP, one stream, 10 s, pod to pod
# across two nodes (namespaces), in one run over (a) a plain veth path, (b) kernel VXLAN
# programmed by podnet-links, (c) podnet's UdpTunnel with every optimisation, (d) UdpTunnel one
# packet per system call without offloads (flannel's C proxy's way). Prints Gbit/s for each, the
# ratios c/b (goal >= 0.9) and c/d, the load average around each run, and each tunnel worker's
# CPU time per GB, sleeps and preemptions. Extra arguments go to the program: --seconds N, --queues N,
# --only abcd, --repeat N. Nothing touches the root network namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v iperf3 >/dev/null || { echo "iperf3 is missing (apt-get install iperf3)" >&2; exit 1; }
cargo build --release -q -p podnet-encap --example udp_tunnel_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/udp_tunnel_bench" "$@"
