#!/bin/bash
# test-deb.sh: the Debian packages on a fresh Debian 12, as an operator
# would use them (docs/OPERATIONS.md).
#
#   scripts/test-deb.sh            (as root) on a brand-new Debian 12 root
#                                  made by scripts/fresh-root.sh from the
#                                  committed HEAD: runs the steps below
#                                  there, never on this machine. CI runs it
#                                  (.ci/run). Exit 77 (skipped) where this
#                                  machine cannot make such a root (not
#                                  root, no debootstrap), unless
#                                  TOKEND_FRESH_ROOT=required. Log:
#                                  /var/tmp/tokend-fresh-root/<sha>.log
#   scripts/test-deb.sh --inside   the steps themselves, in this tree, on
#                                  this machine (which it changes: it
#                                  installs the packages, starts tokend as
#                                  the tokend user, then purges): only on a
#                                  throwaway root
#
# The steps: `make deb` (dpkg-buildpackage + lintian); `apt-get install` of
# tokend, libtokend-client0 and libtokend-client-dev; the user, group,
# /var/lib/tokend (0700) and the conffile are there and nothing is enabled
# or running; the first start (docs: --create-db, as the tokend user), then
# tokend started exactly as tokend.service's ExecStart= line (as the tokend
# user with the unit's UMask, its RuntimeDirectory made as systemd would:
# there is no systemd in the root); `tokenctl issue` and `verify` as root
# with no flags (the FHS default socket); tests/install/verify_token.c
# built with `pkg-config --cflags --libs tokend-client`, and as a CMake
# project with find_package(tokend-client), verifies the token; SIGTERM
# stops tokend with exit 0; `apt-get purge tokend` keeps the database and
# pepper and says so. Exit 0 when every step passed.
# 2 to 3 minutes on 2 cores once the Debian 12 root is cached (the first
# run on a machine also runs debootstrap), most of it installing packages:
# CI can afford it (docs/OPERATIONS.md, "The packages").
set -euo pipefail

if [ "${1:-}" != "--inside" ]; then
  exec "$(dirname "$0")/fresh-root.sh" scripts/test-deb.sh --inside
fi

cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
unset TOKEND_SOCKET
step() { printf '\ntest-deb: == %s\n' "$*"; }
fail() {
  printf 'test-deb: FAILED: %s\n' "$*" >&2
  exit 1
}
PID=
W=$(mktemp -d /tmp/test-deb.XXXXXX)
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT

step "make deb"
make deb
for p in tokend libtokend-client0 libtokend-client-dev; do
  ls build-deb/${p}_*.deb >/dev/null || fail "no ${p} package"
done

step "apt-get install ./tokend_*.deb ./libtokend-client0_*.deb ./libtokend-client-dev_*.deb"
apt-get install -y -q --no-install-recommends ./build-deb/tokend_*.deb \
  ./build-deb/libtokend-client0_*.deb ./build-deb/libtokend-client-dev_*.deb \
  >"$W/install.log" 2>&1 || {
  tail -30 "$W/install.log"
  fail "installing the packages"
}

step "what the install made, and that nothing runs"
getent passwd tokend >/dev/null || fail "no tokend user"
getent group tokend >/dev/null || fail "no tokend group"
[ "$(stat -c '%a %U %G' /var/lib/tokend)" = "700 tokend tokend" ] ||
  fail "/var/lib/tokend is $(stat -c '%a %U %G' /var/lib/tokend), not 700 tokend tokend"
[ -f /etc/tokend/tokend.conf ] || fail "no /etc/tokend/tokend.conf"
dpkg-query -W -f='${Conffiles}\n' tokend | grep -q /etc/tokend/tokend.conf ||
  fail "tokend.conf is not a conffile"
for u in tokend.service tokend.socket tokend-http.socket; do
  state=$(systemctl is-enabled "$u" 2>/dev/null || true)
  [ "$state" = "disabled" ] || fail "$u is '$state' after install, not disabled"
done
# (/proc may be the host's, showing its processes too: only the installed
# binary counts)
for e in /proc/[0-9]*/exe; do
  [ "$(readlink "$e" 2>/dev/null)" != /usr/sbin/tokend ] || fail "a tokend runs after install"
done
[ -z "$(ls -A /var/lib/tokend)" ] || fail "/var/lib/tokend is not empty after install"
echo "tokend user and group, /var/lib/tokend 700, conffile, units disabled, nothing running"

# The unit's ExecStart= line, its UMask= and its RuntimeDirectory=, as
# systemd would apply them.
UNIT=/lib/systemd/system/tokend.service
EXEC=$(sed -n 's/^ExecStart=//p' "$UNIT")
UMASK=$(sed -n 's/^UMask=//p' "$UNIT")
[ -n "$EXEC" ] && [ -n "$UMASK" ] || fail "tokend.service has no ExecStart= or UMask="
install -d -o tokend -g tokend -m 0755 /run/tokend

# Until the daemon has --config and FHS defaults (the ops16 half of issue
# 16), the steps that need them run with the same paths given explicitly,
# and the run ends with exit 3 naming what was worked around, never 0.
PENDING=
if ! /usr/sbin/tokend --help | grep -q -- '--config'; then
  PENDING="$PENDING; tokend has no --config: started with the FHS paths as flags"
  EXEC="/usr/sbin/tokend --socket /run/tokend/tokend.sock --db /var/lib/tokend/tokend.db --pepper-file /var/lib/tokend/pepper"
fi
if ! tokenctl --help | grep -q /run/tokend/tokend.sock; then
  PENDING="$PENDING; tokenctl's default socket is not /run/tokend/tokend.sock: TOKEND_SOCKET set"
  export TOKEND_SOCKET=/run/tokend/tokend.sock
fi
# start_tokend EXTRA...: tokend as the unit starts it, in the background.
start_tokend() {
  # shellcheck disable=SC2086
  (umask "$UMASK" && exec setpriv --reuid=tokend --regid=tokend --init-groups \
    --inh-caps=-all $EXEC "$@") 2>>"$W/tokend.log" &
  PID=$!
  local i=0
  until tokenctl whoami >/dev/null 2>&1; do
    kill -0 "$PID" 2>/dev/null || {
      cat "$W/tokend.log"
      fail "tokend exited at start ($EXEC $*)"
    }
    i=$((i + 1))
    [ "$i" -lt 600 ] || fail "tokend did not serve on the default socket"
    sleep 0.1
  done
}
stop_tokend() {
  kill -TERM "$PID"
  wait "$PID" || fail "tokend exited $? on SIGTERM, not 0"
  PID=
}

step "first start: $EXEC --create-db (as tokend), then stop"
start_tokend --create-db
stop_tokend
[ "$(stat -c '%a %U' /var/lib/tokend/pepper)" = "600 tokend" ] ||
  fail "the pepper is $(stat -c '%a %U' /var/lib/tokend/pepper)"
[ "$(stat -c '%U' /var/lib/tokend/tokend.db)" = "tokend" ] || fail "tokend.db's owner"

step "start as tokend.service does: $EXEC"
start_tokend
[ "$(stat -c '%U' /run/tokend/tokend.sock)" = "tokend" ] ||
  fail "the socket is not /run/tokend/tokend.sock made by tokend"

step "tokenctl issue / verify as root, no flags"
TOKEN=$(tokenctl issue --domain deb.example --label fresh-install 2>"$W/issue.err") || {
  cat "$W/issue.err"
  fail "tokenctl issue"
}
echo "$TOKEN" | tokenctl verify || fail "tokenctl verify"

step "a C program built with pkg-config --cflags --libs tokend-client"
# shellcheck disable=SC2046
cc -o "$W/verify_token" tests/install/verify_token.c \
  $(pkg-config --cflags --libs tokend-client) || fail "building with pkg-config"
OUT=$(echo "$TOKEN" | "$W/verify_token") || fail "verify_token: $OUT"
[ "$OUT" = "valid deb.example" ] || fail "verify_token said '$OUT'"
echo "verify_token (pkg-config): $OUT"
cmake -S tests/install -B "$W/cm" >"$W/cm.log" 2>&1 &&
  cmake --build "$W/cm" >>"$W/cm.log" 2>&1 || {
  cat "$W/cm.log"
  fail "building with find_package(tokend-client)"
}
OUT=$(echo "$TOKEN" | "$W/cm/verify_token") || fail "verify_token (CMake): $OUT"
[ "$OUT" = "valid deb.example" ] || fail "verify_token (CMake) said '$OUT'"
echo "verify_token (find_package): $OUT"

step "SIGTERM, then apt-get purge tokend"
stop_tokend
[ ! -e /run/tokend/tokend.sock ] || fail "tokend left its socket behind"
apt-get purge -y -q tokend >"$W/purge.log" 2>&1 || {
  cat "$W/purge.log"
  fail "purge"
}
grep -q "purge keeps /var/lib/tokend" "$W/purge.log" || fail "purge did not say what it keeps"
[ ! -e /etc/tokend/tokend.conf ] || fail "purge left /etc/tokend/tokend.conf"
[ ! -e /run/tokend ] || fail "purge left /run/tokend"
[ -f /var/lib/tokend/tokend.db ] && [ -f /var/lib/tokend/pepper ] ||
  fail "purge removed the database or the pepper"
getent passwd tokend >/dev/null || fail "purge removed the tokend user (it owns the kept files)"
echo "purged: config and /run/tokend gone; tokend.db, pepper and the tokend user kept"

if [ -n "$PENDING" ]; then
  printf '\ntest-deb: every step passed, but only with these workarounds%s\n' "$PENDING"
  exit 3
fi
printf '\ntest-deb: OK: built, installed, started as the unit does, issue/verify with no flags, pkg-config and CMake clients, purge\n'
