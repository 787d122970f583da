#!/usr/bin/env bash
# Proves the README's two commands on a genuinely fresh system: a minimal Debian 12 root made
# with debootstrap (nothing in it but Debian's minimal base), this machine's Rust toolchain
# bind-mounted into it read-only (the one CI uses), a fresh clone of this checkout's HEAD, and
# then `bash scripts/demo.sh` and `bash scripts/test.sh` run inside it, each timed. Whatever a
# command needs beyond Rust and apt, its own script must install: that is what this checks.
#
#   bash scripts/fresh-machine.sh [--only demo|test] [--keep] [--dir DIR] [--path-in-root P]
#
#   --only demo|test   run one of the two commands (default: both, demo first)
#   --keep             keep the root afterwards (default: deleted, also when a command fails)
#   --reuse            with --dir: use the root already there (no debootstrap; for iterating
#                      on a failure only: a used root is no longer fresh)
#   --dir DIR          where to make the root (default: a new folder under /var/tmp)
#   --path-in-root P   where the clone goes inside the root (default "/src/podnet checkout":
#                      a path with a space, as users have)
#
# Run as root. The root shares this machine's network namespace (as a second machine on the
# same host would not); the commands inside only make namespaces of their own, and test.sh
# checks that the root namespace is unchanged. Everything is mounted in a private mount
# namespace, so nothing stays mounted when the script ends, however it ends.
#
# The Debian mirror is the one this machine's apt uses (its sources), so the script works
# wherever apt does. It prints `fresh-machine: demo ... s` and `fresh-machine: test ... s`
# lines and exits non-zero when a command failed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

# The inner part: runs inside `unshare --mount` (see the end of this file).
if [ "${PODNET_FRESH_INNER:-}" = 1 ]; then
  root="$PODNET_FRESH_ROOT"
  mount --make-rprivate /
  # The root is a mount point of its own, as / is on a real machine (`ip netns exec` makes /
  # a slave mount, which fails on a directory that is not one).
  mount --bind "$root" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs run "$root/run"
  mkdir -p "$root/opt/rust/rustup" "$root/opt/rust/cargo-bin"
  mount --bind "$RUSTUP_HOME_HOST" "$root/opt/rust/rustup"
  mount -o remount,bind,ro "$root/opt/rust/rustup"
  mount --bind "$CARGO_BIN_HOST" "$root/opt/rust/cargo-bin"
  mount -o remount,bind,ro "$root/opt/rust/cargo-bin"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  status=0
  for cmd in $PODNET_FRESH_CMDS; do
    start=$(date +%s)
    # A clean environment: what a fresh login on that machine would have, plus Rust.
    set +e
    chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
      PATH=/opt/rust/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      RUSTUP_HOME=/opt/rust/rustup CARGO_HOME=/root/.cargo RUSTUP_TOOLCHAIN="$TOOLCHAIN" \
      bash -c 'cd "$1" && bash "scripts/$2.sh"' fresh "$PODNET_FRESH_PATH" "$cmd"
    rc=$?
    set -e
    secs=$(( $(date +%s) - start ))
    echo "fresh-machine: $cmd exited $rc after $secs s"
    echo "$cmd $rc $secs" >>"$PODNET_FRESH_RESULTS"
    [ "$rc" -eq 0 ] || status=1
  done
  exit "$status"
fi


only="" keep=0 reuse=0 dir="" in_root="/src/podnet checkout"
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --reuse) reuse=1; shift ;;
    --dir) dir="$2"; shift 2 ;;
    --path-in-root) in_root="$2"; shift 2 ;;
    *) echo "usage: $0 [--only demo|test] [--keep] [--dir DIR] [--path-in-root P]" >&2; exit 2 ;;
  esac
done
case "$only" in ""|demo|test) ;; *) echo "--only takes demo or test" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap, chroot, mounts)" >&2; exit 2; }

command -v debootstrap >/dev/null || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

# The mirror this machine's apt uses for Debian's main archive.
mirror=$(
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ { print $2 }'
  } | grep -v -- '-security' | grep -E '/debian/?$' | head -n 1
)
[ -n "$mirror" ] || { echo "no Debian mirror found in this machine's apt sources" >&2; exit 1; }

# The toolchain CI uses: the one rustup gives cargo in this checkout.
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=$(dirname "$(command -v cargo)")
toolchain=$(cd "$top" && rustup show active-toolchain | awk '{print $1}')
[ -d "$rustup_home/toolchains/$toolchain" ] || {
  echo "toolchain $toolchain not found under $rustup_home" >&2; exit 1; }

if [ -z "$dir" ]; then
  dir=$(mktemp -d /var/tmp/podnet-fresh.XXXXXX)
else
  mkdir -p "$dir"
fi
results=$(mktemp /tmp/podnet-fresh-results.XXXXXX)
cleanup() {
  # Anything the commands left running in the root (a daemon of a failed demo) goes first.
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$dir" ] && kill -9 "${p#/proc/}" 2>/dev/null
  done
  if [ "$keep" -eq 0 ]; then rm -rf --one-file-system "$dir"; else echo "kept: $dir"; fi
  rm -f "$results"
}
trap cleanup EXIT

t0=$(date +%s)
if [ "$reuse" -eq 1 ] && [ -f "$dir/etc/debian_version" ]; then
  echo "== reusing the root in $dir (not fresh)"
  rm -rf --one-file-system "$dir/src"
else
echo "== debootstrap Debian 12 (bookworm, minbase) into $dir from $mirror"
debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 || {
  tail -n 30 "$dir.debootstrap.log"; rm -f "$dir.debootstrap.log"; exit 1; }
rm -f "$dir.debootstrap.log"
echo "   $(( $(date +%s) - t0 )) s"
fi
# What every machine of this workplace has of its network, and a new one would too: the same
# apt settings (e.g. no Valid-Until check on a snapshot mirror) and the certificate
# authorities added locally (Debian's ca-certificates package, once a script installs it,
# puts them into the bundle that cargo trusts). resolv.conf is copied at each run.
cp /etc/apt/apt.conf.d/99* "$dir/etc/apt/apt.conf.d/" 2>/dev/null || true
mkdir -p "$dir/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/" 2>/dev/null || true

echo "== fresh clone of $(git -C "$top" rev-parse --short HEAD) into '$in_root'"
mkdir -p "$dir$(dirname "$in_root")"
git clone -q --no-local --no-hardlinks "$top" "$dir$in_root"

cmds="demo test"
[ -n "$only" ] && cmds="$only"
export PODNET_FRESH_INNER=1 PODNET_FRESH_ROOT="$dir" PODNET_FRESH_PATH="$in_root"
export PODNET_FRESH_CMDS="$cmds" PODNET_FRESH_RESULTS="$results"
export RUSTUP_HOME_HOST="$rustup_home" CARGO_BIN_HOST="$cargo_bin" TOOLCHAIN="$toolchain"
set +e
unshare --mount --propagation private bash "$0"
status=$?
set -e
echo "== fresh-machine summary (Debian 12 minbase, $(date -u +%Y-%m-%d), $toolchain)"
while read -r cmd rc secs; do
  printf '   bash scripts/%s.sh: %s in %d min %02d s\n' "$cmd" \
    "$([ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)")" $((secs / 60)) $((secs % 60))
done <"$results"
exit "$status"
