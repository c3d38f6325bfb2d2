#!/bin/bash
# fresh-root.sh: run a command in a clone of this repository's committed
# HEAD, as root, on a brand-new minimal Debian 12 root (a chroot), so that
# what it installs and starts never touches this machine's own system.
#
#   scripts/fresh-root.sh CMD...     e.g. scripts/fresh-root.sh scripts/test-deb.sh --inside
#
# The root is made once with debootstrap (--variant=minbase, plus git, make
# and ca-certificates) from this machine's apt mirror and cached as a tar
# under /var/tmp/tokend-fresh-root/ (about 100 MB; delete it to rebuild).
# Each run unpacks a new copy into a temporary directory, mounts /proc and
# /dev there, clones HEAD into /root/tokend and runs CMD in it; then ends the
# processes whose root is that copy, unmounts and removes it, whatever CMD
# did. The log is /var/tmp/tokend-fresh-root/<sha>.log; its last lines are
# printed.
#
# Exit: CMD's status; 2 if the root could not be made or entered; 77
# ("skipped", what ctest also calls it) when this machine cannot do it (not
# root, no debootstrap, or no Debian mirror in its apt sources), unless
# TOKEND_FRESH_ROOT=required (what .ci/run sets), when that is 2 instead.
# Where debootstrap is missing, `scripts/install-deps.sh root` installs it.
set -u
CACHE=${TOKEND_FRESH_ROOT_CACHE:-/var/tmp/tokend-fresh-root}
TAR=$CACHE/bookworm-minbase.tar
say() { printf 'fresh-root: %s\n' "$*" >&2; }
cannot() {
  if [ "${TOKEND_FRESH_ROOT:-}" = required ]; then
    say "FAILED: $* (TOKEND_FRESH_ROOT=required)"
    exit 2
  fi
  say "skipped: $*"
  exit 77
}

[ $# -gt 0 ] || {
  echo "usage: fresh-root.sh CMD..." >&2
  exit 2
}
SRC=$(git -C "$(dirname "$0")" rev-parse --show-toplevel) || exit 2
SHA=$(git -C "$SRC" rev-parse --short HEAD) || exit 2
[ "$(id -u)" = 0 ] || cannot "needs root (debootstrap, chroot, mount)"
command -v debootstrap >/dev/null ||
  cannot "no debootstrap (scripts/install-deps.sh root installs it)"
[ -z "$(git -C "$SRC" status --porcelain --untracked-files=no)" ] ||
  say "note: uncommitted changes are not part of the run (it clones HEAD $SHA)"
mkdir -p "$CACHE" || exit 2

if [ ! -f "$TAR" ]; then
  # The first URI of this machine's apt sources (deb822 or one-line).
  mirror=$(awk '/^URIs:/{print $2; exit} /^deb /{print $2; exit}' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null)
  [ -n "$mirror" ] || cannot "no Debian mirror in /etc/apt/sources*"
  say "building a minimal Debian 12 root from $mirror (once; cached in $TAR)"
  B=$(mktemp -d "$CACHE/build.XXXXXX") || exit 2
  # mktemp's 0700 would become the root's /: no other user could use it.
  chmod 0755 "$B"
  if ! debootstrap --variant=minbase --include=git,make,ca-certificates \
    bookworm "$B" "$mirror" >"$CACHE/debootstrap.log" 2>&1; then
    rm -rf --one-file-system "$B"
    say "debootstrap failed: see $CACHE/debootstrap.log"
    exit 2
  fi
  cp /etc/resolv.conf "$B/etc/resolv.conf" 2>/dev/null
  # The same sources as this machine (a snapshot, security updates).
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$B/etc/apt/sources.list.d/" &&
      rm -f "$B/etc/apt/sources.list"
  fi
  chroot "$B" apt-get clean
  # Written beside, then renamed: a run cut short leaves no half tar.
  tar -C "$B" -cf "$TAR.part" . && mv "$TAR.part" "$TAR"
  rm -rf --one-file-system "$B"
  [ -f "$TAR" ] || exit 2
fi

ROOT=$(mktemp -d /var/tmp/tokend-fresh-root.XXXXXX) || exit 2
cleanup() {
  local p
  # Only the processes whose root directory is this copy (a daemon CMD
  # started and left behind), never others.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local left=
    for p in /proc/[0-9]*; do
      if [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ]; then
        kill -KILL "${p#/proc/}" 2>/dev/null
        left=1
      fi
    done
    [ -n "$left" ] || break
    sleep 0.2
  done
  umount -R "$ROOT/dev" 2>/dev/null
  umount "$ROOT/proc" 2>/dev/null
  if grep -q " $ROOT/" /proc/mounts; then
    say "left $ROOT in place: something is still mounted below it"
  else
    rm -rf --one-file-system "$ROOT"
  fi
}
trap cleanup EXIT

tar -C "$ROOT" -xf "$TAR" || exit 2
# The root's /, as any Debian's: users other than root (tokend's) use it.
chmod 0755 "$ROOT"
mount -t proc proc "$ROOT/proc" && mount --rbind /dev "$ROOT/dev" &&
  mount --make-rslave "$ROOT/dev" || exit 2
git clone -q "$SRC" "$ROOT/root/tokend" || exit 2
LOG=$CACHE/$SHA.log
say "running '$*' in a fresh Debian 12 root, clone of $SHA at /root/tokend (log: $LOG)"
# CMD's words are passed as they are (no shell re-parsing of them).
chroot "$ROOT" /usr/bin/env -C /root/tokend "$@" >"$LOG" 2>&1
rc=$?
# All of a failure's end, for a CI log; the verdict only otherwise.
if [ $rc -eq 0 ]; then tail -3 "$LOG"; else tail -40 "$LOG"; fi
say "exit $rc (log: $LOG)"
exit $rc
