#!/bin/sh
# Runs every fuzz target for a bounded number of executions and time, one after the other,
# at low priority, and prints each target's execution count.
#
#   fuzz/run.sh [RUNS] [SECONDS]     defaults: 10000000 runs, at most 1800 s per target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain. Corpora go to
# fuzz/corpus/<target>, crashes to fuzz/artifacts/<target> (both ignored by git).
set -eu
cd "$(dirname "$0")"
RUNS=${1:-10000000}
SECS=${2:-1800}
TARGETS=${TARGETS:-"ethernet arp ipv4 ipv6 udp icmpv4 vxlan flannel decap"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
# Panics and arithmetic overflow are what matters in safe Rust: no sanitizer, debug assertions on.
nice -n 10 cargo +nightly fuzz build -s none -a
# Seed the corpora with valid frames built by podnet-encap.
PODNET_FUZZ_SEEDS=$(pwd)/corpus nice -n 10 cargo +nightly test --release --lib -q
status=0
for t in $TARGETS; do
    mkdir -p "corpus/$t" "logs"
    if nice -n 10 cargo +nightly fuzz run -s none -a "$t" "corpus/$t" -- \
        -runs="$RUNS" -max_total_time="$SECS" -max_len=2048 -print_final_stats=1 \
        >"logs/$t.log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    secs=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    echo "$t: $result, $execs executions ($secs/s)"
done
exit $status
