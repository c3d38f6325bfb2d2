#!/bin/sh
# Installs the Debian 12 packages tokend needs, if any are missing:
#   install-deps.sh        to build and test (what `make run`/`make test` need;
#                          python3 runs scripts/check-layers, a test)
#   install-deps.sh deb    what `make deb` needs: dpkg-dev, debhelper,
#                          fakeroot, lintian and debian/control's
#                          Build-Depends (apt-get build-dep)
#   install-deps.sh fuzz   also clang 14 with its runtimes (libFuzzer, ASan,
#                          UBSan: libclang-rt-14-dev) and llvm-symbolizer
#                          (llvm-14), for `make fuzz`
# Needs root (or sudo) only when something must be installed.
set -eu
PKGS="build-essential cmake pkg-config libuv1-dev libprotobuf-c-dev \
protobuf-c-compiler libsqlite3-dev libsodium-dev libcmocka-dev libjansson-dev \
sqlite3 uthash-dev valgrind libpq-dev postgresql-15 python3 \
scdoc systemd"
case "${1:-}" in
"") ;;
fuzz) PKGS="clang-14 libclang-rt-14-dev llvm-14" ;;
deb)
  # Then debian/control's Build-Depends (below, once dpkg-dev is there).
  PKGS="build-essential dpkg-dev debhelper fakeroot lintian"
  BUILD_DEPS=1
  ;;
*)
  echo "usage: install-deps.sh [fuzz|deb]" >&2
  exit 2
  ;;
esac
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing="$missing $p"
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# make deb: debian/control's Build-Depends, once dpkg-checkbuilddeps (from
# dpkg-dev) is there to say whether any is missing.
build_deps() {
  [ -n "${BUILD_DEPS:-}" ] || return 0
  cd "$(dirname "$0")/.."
  dpkg-checkbuilddeps >/dev/null 2>&1 && return 0
  echo "install-deps: installing debian/control's Build-Depends" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get build-dep -y -qq --no-install-recommends .
}
if [ -z "$missing" ]; then
  build_deps
  exit 0
fi
echo "install-deps: installing:$missing" >&2
$SUDO apt-get update -qq
# postgresql-15 is here for its server binaries only: the tests run their
# own throwaway cluster (tests/lib/pg_cluster.h). Installed as is, Debian's
# packages would create and start a system cluster ("15 main" on port 5432)
# that nobody asked for, running for good. postgresql-common's
# createcluster.conf says whether to: install postgresql-common first (it
# creates no cluster itself), set create_main_cluster = false, then the
# server. Only while postgresql-15 is not installed yet: on a machine that
# has it, its cluster setup is the admin's own.
case "$missing" in
*" postgresql-15"*)
  $SUDO apt-get install -y -qq --no-install-recommends postgresql-common
  conf=/etc/postgresql-common/createcluster.conf
  if grep -q '^[#[:space:]]*create_main_cluster' "$conf" 2>/dev/null; then
    $SUDO sed -i 's/^[#[:space:]]*create_main_cluster.*/create_main_cluster = false/' "$conf"
  else
    echo "create_main_cluster = false" | $SUDO tee -a "$conf" >/dev/null
  fi
  ;;
esac
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
build_deps
