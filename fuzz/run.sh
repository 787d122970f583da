#!/bin/sh
# Runs every fuzz target (or those in $TARGETS) for a number of executions, one after the other
# at low priority, and prints each target's execution count, speed, corpus and outcome.
#
#   fuzz/run.sh [RUNS] [SECONDS]     defaults: 1000000 runs, no time limit
#
#   TOOLCHAIN=stable|nightly   default: stable (what the README records)
#   SANITIZER=none|address     default: none (`-s none`; address needs nightly)
#   TARGETS="rtnetlink ..."    default: every [[bin]] in fuzz/Cargo.toml
#
# Every build has debug assertions on (`-a`), so arithmetic overflow is a crash too; a panic
# anywhere is one, and so is an input that takes more than 20 s. Needs cargo-fuzz
# (`cargo install cargo-fuzz`). Corpora go to fuzz/corpus/<target>, crashes to
# fuzz/artifacts/<target>, logs to fuzz/logs/ (all ignored by git); fuzz/logs/summary.tsv gets one line per target run (time, commit, target, outcome,
# executions, executions/s, seconds, edges, corpus files, artifacts, toolchain and mode).
set -eu
cd "$(dirname "$0")"
RUNS=${1:-1000000}
SECS=${2:-0}
TOOLCHAIN=${TOOLCHAIN:-stable}
SANITIZER=${SANITIZER:-none}
ALL=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^podnet-fuzz$')
TARGETS=${TARGETS:-$ALL}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
nice -n 10 cargo "+$TOOLCHAIN" fuzz build -s "$SANITIZER" -a
# Seed the corpora with valid inputs (frames, kernel-style netlink dumps, configs, fixtures).
PODNET_FUZZ_SEEDS=$(pwd)/corpus nice -n 10 cargo "+$TOOLCHAIN" test --release --lib -q
mkdir -p logs
commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
git diff --quiet HEAD -- .. 2>/dev/null || commit="$commit+changes"
status=0
for t in $TARGETS; do
    case $t in
        ethernet | arp | ipv4 | ipv6 | udp | icmpv4 | vxlan | flannel | decap) len=2048 ;;
        *) len=8192 ;;
    esac
    mkdir -p "corpus/$t"
    start=$(date +%s)
    if nice -n 10 cargo "+$TOOLCHAIN" fuzz run -s "$SANITIZER" -a "$t" "corpus/$t" -- \
        -runs="$RUNS" -max_total_time="$SECS" -max_len="$len" -timeout=20 -print_final_stats=1 \
        >"logs/$t.log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    wall=$(($(date +%s) - start))
    stat() { grep -o "stat::$1: *[0-9]*" "logs/$t.log" | grep -o '[0-9]*$' || echo '?'; }
    execs=$(stat number_of_executed_units)
    # libFuzzer's own time (the wall time includes the build); its rate rounds to 0 under 1 s.
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "logs/$t.log")
    secs=${secs:-$wall}
    case $execs in
        '' | *[!0-9]*) rate='?' ;;
        *) rate=$((execs / (secs > 0 ? secs : 1))) ;;
    esac
    edges=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*' || echo '?')
    corpus=$(ls "corpus/$t" | wc -l)
    crashes=$(ls "artifacts/$t" 2>/dev/null | wc -l)
    echo "$t: $result, $execs executions ($rate/s, ${secs}s), $edges edges, corpus $corpus, artifacts $crashes"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$commit" "$t" \
        "$result" "$execs" "$rate" "$secs" "$edges" "$corpus" "$crashes" \
        "$TOOLCHAIN/-s $SANITIZER -a" >>logs/summary.tsv
done
exit $status
