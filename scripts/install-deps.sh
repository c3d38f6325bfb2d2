#!/bin/sh
# Installs the Debian 12 packages tokend needs, if any are missing:
#   install-deps.sh        to build and test (what `make run`/`make test` need;
#                          python3 runs scripts/check-layers, a test;
#                          protobuf-compiler and python3-protobuf, -pytest,
#                          -setuptools, -venv, -pip build, install and test
#                          the Python client; nodejs runs the Node client
#                          written from docs/PROTOCOL.md;
#                          libmicrohttpd-dev serves the HTTP face; nginx and
#                          python3-prometheus-client are what
#                          tests/integration/test_http.c checks it with)
#   install-deps.sh deb    what `make deb` needs: dpkg-dev, debhelper,
#                          fakeroot, lintian and debian/control's
#                          Build-Depends (apt-get build-dep)
#   install-deps.sh root   debootstrap, with which scripts/fresh-root.sh
#                          makes the throwaway Debian 12 root that
#                          scripts/test-deb.sh (run by CI) installs the
#                          packages in
#   install-deps.sh fuzz   also clang 14 with its runtimes (libFuzzer, ASan,
#                          UBSan: libclang-rt-14-dev) and llvm-symbolizer
#                          (llvm-14), for `make fuzz`
# Needs root (or sudo) only when something must be installed.
set -eu
PKGS="build-essential cmake pkg-config libuv1-dev libprotobuf-c-dev \
protobuf-c-compiler libsqlite3-dev libsodium-dev libcmocka-dev libjansson-dev \
sqlite3 uthash-dev valgrind libpq-dev postgresql-15 python3 \
protobuf-compiler python3-protobuf python3-pytest python3-setuptools python3-venv \
python3-pip nodejs libmicrohttpd-dev nginx python3-prometheus-client \
libinih-dev libsystemd-dev scdoc systemd"
case "${1:-}" in
"") ;;
fuzz) PKGS="clang-14 libclang-rt-14-dev llvm-14" ;;
root) PKGS="debootstrap" ;;
deb)
  # Then debian/control's Build-Depends (below, once dpkg-dev is there).
  PKGS="build-essential dpkg-dev debhelper fakeroot lintian"
  BUILD_DEPS=1
  ;;
*)
  echo "usage: install-deps.sh [fuzz|deb|root]" >&2
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
# nginx is here for its binary only: tests/integration/test_http.c runs its
# own nginx (its config, pid and logs in a temporary directory). Debian's
# postinst would start the system nginx on port 80 (invoke-rc.d nginx
# start) and enable it at boot; a policy-rc.d that answers 101 ("action
# forbidden") stops invoke-rc.d from starting any service during this
# install, as Debian's own chroot builders do. One is put in place only if
# the machine has none, and removed after; the boot-time unit is disabled
# (on a machine with systemd) only when this script installed nginx.
policy=/usr/sbin/policy-rc.d
made_policy=""
case "$missing" in
*" nginx"*)
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    made_policy=1
    # Removed however the install ends.
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  ;;
esac
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
if [ -n "$made_policy" ]; then
  $SUDO rm -f "$policy"
  trap - EXIT
fi
case "$missing" in
*" nginx"*)
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
  ;;
esac
build_deps
