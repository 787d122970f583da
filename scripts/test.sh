#!/usr/bin/env bash
# podnet's test command: installs what the tests need on a fresh Debian machine that has only
# Rust and apt, then runs formatting, lints, every test, the fuzz targets' type-check and the
# packaging check, and checks that the machine's root network namespace is exactly as it was.
# Run as root (kernel tests create namespaces).
#
# Skips: a test that cannot run says why (podnet_testsupport::skip); they are listed at the end.
# A skip whose cause this script could have removed (a tool it installs, root) fails the run;
# with PODNET_NO_SKIPS=1 (.ci/run) every skip fails its test.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  gcc g++ libc6-dev ca-certificates            # cargo's linker and C/C++ builds (libfuzzer-sys)
  iproute2 iputils-ping iperf3 procps ethtool  # namespaces, links, traffic
  nftables iptables conntrack ipset            # podnet-nat
  tshark                                       # podnet-encap interop with a dissector
  etcd-server etcd-client                      # podnet-ipam on etcd (etcdctl for the auth test)
  containernetworking-plugins                  # CNI reference plugins for interop
  qemu-system-x86                              # the IPVS tests boot Debian's kernel under qemu
  ipvsadm                                      # IPVS tests (natively, where the kernel has IPVS)
  chromium                                     # explain --html checked in a real browser
  python3                                      # scripts/check-sizes.py (the size limits)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v rustup >/dev/null || { echo "rustup not found: install Rust with rustup first"; exit 1; }
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

# The root namespace's state, to prove the tests left it alone.
root_state() {
  ip -br link | awk '{print $1, $3}'
  ip -o addr | awk '{print $2, $3, $4}'
  ip route; ip -6 route | grep -v '^fe80::/64' || true
  ip rule
  iptables-save 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//g' || true
  nft list ruleset 2>/dev/null || true
}
before=$(root_state)
netns_before=$(ip netns list | awk '{print $1}' | sort)

skip_log=$(mktemp /tmp/podnet-skips.XXXXXX)
test_log=$(mktemp /tmp/podnet-test-log.XXXXXX)
export PODNET_SKIP_LOG="$skip_log"
trap 'rm -f "$skip_log"' EXIT
status=0

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== sizes: no source file over 1,000 lines, no function over 150"
python3 scripts/check-sizes.py
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== fuzz targets type-check (fuzz/, not run; fuzz/run.sh builds and runs them)"
cargo check --manifest-path fuzz/Cargo.toml --bins -q
echo "== cargo package (the published crates, verified)"
# Each published crate builds from its packaged sources alone, against the packaged versions
# of the podnet crates it depends on.
pkg_log=$(mktemp /tmp/podnet-package-log.XXXXXX)
# cargo unpacks the packaged podnet crates from its local overlay registry into
# ~/.cargo/registry/src/-<hash>/ and never unpacks a name and version it finds there again, so a
# package made by an earlier run of the same checkout (same version, older sources) would be
# verified against instead of this one: remove those copies first.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/podnet-*
if cargo package --workspace --exclude podnet-examples --exclude podnet-testsupport \
  --no-metadata --allow-dirty >"$pkg_log" 2>&1; then
  grep -E '^(warning|error)' "$pkg_log" || true
  rm -f "$pkg_log"
else
  cat "$pkg_log"
  echo "FAIL: cargo package"
  status=1
fi
echo "== cargo test (build)"
set +e
cargo test --workspace --all-features --no-run 2>&1 | tee "$test_log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
# The tests run in two groups at once: most of a test's time is spent waiting (for a kernel, a
# daemon, traffic, a VM's serial console), so two groups keep both cores busy. Group A: the
# tests that boot a qemu VM (named *_vm; minutes each under emulation); group B: all the rest.
# Both select from the whole workspace, so cargo resolves the same features and builds nothing
# more; it holds no lock while tests run; test namespaces are named by process, never shared.
vm_tests=() other_tests=()
while read -r t; do
  case "$t" in *_vm) vm_tests+=(--test "$t") ;; *) other_tests+=(--test "$t") ;; esac
done < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    for t in p["targets"]:
        if "test" in t["kind"]:
            print(t["name"])' | sort -u)
group_a_log=$(mktemp /tmp/podnet-test-a.XXXXXX)
echo "== cargo test, group A (the VM tests: ${vm_tests[*]}; its output follows group B's)"
cargo test --workspace --all-features --no-fail-fast "${vm_tests[@]}" >"$group_a_log" 2>&1 &
group_a=$!
echo "== cargo test, group B (every other test, then the doc tests)"
cargo test --workspace --all-features --no-fail-fast --lib --bins "${other_tests[@]}" 2>&1 \
  | tee -a "$test_log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
cargo test --workspace --all-features --no-fail-fast --doc 2>&1 | tee -a "$test_log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
wait "$group_a" || status=1
echo "== cargo test, group A's output"
tee -a "$test_log" <"$group_a_log"
rm -f "$group_a_log"
set -e
echo "(the whole cargo test output: $test_log)"

after=$(root_state)
netns_after=$(ip netns list | awk '{print $1}' | sort)
if [ "$before" != "$after" ]; then
  echo "FAIL: the tests changed the machine's root network namespace:"
  diff <(echo "$before") <(echo "$after") || true
  status=1
fi
# A namespace counts as left behind when the process that made it is gone (test namespaces and
# clusters are named ptest-<pid>-...; one whose creator still runs belongs to someone else).
leftover=""
for n in $(comm -13 <(echo "$netns_before") <(echo "$netns_after")); do
  pid=$(echo "$n" | sed -nE 's/^ptest-([0-9]+)-.*/\1/p')
  if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then continue; fi
  leftover="$leftover $n"
done
if [ -n "$leftover" ]; then
  echo "FAIL: network namespaces left behind: $leftover"
  status=1
fi
if [ "$status" -eq 0 ]; then
  echo "== root namespace unchanged, no namespace left behind"
fi

# Every skip, with its reason; a skip this script could have avoided fails the run.
skips=$(sort -u "$skip_log")
if [ -n "$skips" ]; then
  echo "== skipped tests: $(echo "$skips" | wc -l)"
  echo "$skips" | awk -F'\t' '{printf "  %-9s %s: %s\n", $1, $2, $3}'
  if echo "$skips" | grep -q '^avoidable'; then
    echo "FAIL: a test skipped for a cause this script removes (marked avoidable above)"
    status=1
  fi
else
  echo "== skipped tests: none"
fi
exit "$status"
