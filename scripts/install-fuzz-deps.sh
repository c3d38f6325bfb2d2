#!/bin/sh
# Installs what `make fuzz` needs on top of install-deps.sh, if missing:
# clang 14, its runtime libraries (libFuzzer, ASan, UBSan: libclang-rt-14-dev)
# and llvm-symbolizer (llvm-14) for readable stack traces. Needs root (or
# sudo) only when something must be installed.
set -eu
PKGS="clang-14 libclang-rt-14-dev llvm-14"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-fuzz-deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
