#!/bin/sh
# Installs the Debian 12 packages tokend needs, if any are missing:
#   install-deps.sh        to build and test (what `make run`/`make test` need;
#                          python3 runs scripts/check-layers, a test)
#   install-deps.sh fuzz   also clang 14 with its runtimes (libFuzzer, ASan,
#                          UBSan: libclang-rt-14-dev) and llvm-symbolizer
#                          (llvm-14), for `make fuzz`
# Needs root (or sudo) only when something must be installed.
set -eu
PKGS="build-essential cmake pkg-config libuv1-dev libprotobuf-c-dev \
protobuf-c-compiler libsqlite3-dev libsodium-dev libcmocka-dev libjansson-dev \
sqlite3 uthash-dev valgrind python3"
case "${1:-}" in
"") ;;
fuzz) PKGS="clang-14 libclang-rt-14-dev llvm-14" ;;
*)
  echo "usage: install-deps.sh [fuzz]" >&2
  exit 2
  ;;
esac
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
