#!/bin/sh
# test_install.sh BUILD_DIR SOURCE_DIR CC: `cmake --install` into a temporary
# prefix gives working programs and a usable client library.
#   - the layout: tokend in sbin, tokenctl in bin, tokend-bench out of PATH
#     in libexec/tokend, units, tokend.conf, completion, man pages (when
#     built), the pkg-config file and the CMake package;
#   - the installed tokend serves, and the installed tokenctl (no
#     LD_LIBRARY_PATH: its RPATH) issues a token through it;
#   - tests/install/verify_token.c built against the prefix with
#     `pkg-config --cflags --libs tokend-client`, and again as a CMake
#     project with find_package(tokend-client), verifies that token (and
#     calls a malformed one invalid).
# TOKEND_CONSUMER_CFLAGS: extra flags for the two consumer builds (the
# sanitizer build passes its -fsanitize flags, as the library needs them).
set -eu
BUILD=$1 SRC=$2 CC=$3
CFLAGS_EXTRA=${TOKEND_CONSUMER_CFLAGS:-}
unset LD_LIBRARY_PATH TOKEND_SOCKET
P=$(mktemp -d "${TMPDIR:-/tmp}/tokend-install.XXXXXX")
PID=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; fi
  rm -rf "$P"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

cmake --install "$BUILD" --prefix "$P/usr" >"$P/install.log" 2>&1 ||
  { cat "$P/install.log" >&2; fail "cmake --install"; }
U=$P/usr

# --- layout ---
for f in sbin/tokend bin/tokenctl libexec/tokend/tokend-bench; do
  [ -x "$U/$f" ] || fail "$f is not installed"
done
[ ! -e "$U/bin/tokend" ] || fail "tokend is in bin/ (a daemon goes to sbin/)"
[ ! -e "$U/bin/tokend-bench" ] || fail "tokend-bench is on PATH"
for f in lib/systemd/system/tokend.service lib/systemd/system/tokend.socket \
  etc/tokend/tokend.conf share/bash-completion/completions/tokenctl \
  include/tokend/client.h; do
  [ -f "$U/$f" ] || fail "$f is not installed"
done
# The units name the configured prefix's paths (cmake --install --prefix
# moves files, not what they say).
grep -q "^ExecStart=/.*/sbin/tokend --config /.*/tokend/tokend.conf\$" \
  "$U/lib/systemd/system/tokend.service" ||
  fail "tokend.service does not start the installed tokend with its config"
if [ -d "$BUILD/man" ]; then
  for f in man8/tokend.8 man1/tokenctl.1 man5/tokend.conf.5; do
    [ -s "$U/share/man/$f" ] || fail "man page $f is not installed"
  done
fi
PC=$(find "$U" -name tokend-client.pc)
[ -n "$PC" ] || fail "tokend-client.pc is not installed"
CMAKECFG=$(find "$U" -name tokend-client-config.cmake)
[ -n "$CMAKECFG" ] || fail "the CMake package is not installed"
LIB=$(find "$U" -name 'libtokend-client.so.0')
[ -n "$LIB" ] || fail "libtokend-client.so.0 is not installed"
[ -L "$(dirname "$LIB")/libtokend-client.so" ] || fail "no .so symlink"

# --- the installed tokend and tokenctl ---
# tokenctl needs libtokend-client.so.0 from the prefix, with no
# LD_LIBRARY_PATH: its RPATH.
"$U/bin/tokenctl" --help >/dev/null 2>&1 ||
  fail "the installed tokenctl does not run (libtokend-client not found?)"
S=$P/run/tokend.sock
mkdir -p "$P/run" "$P/state"
chmod 0700 "$P/state"
"$U/sbin/tokend" --socket "$S" --db "$P/state/tokend.db" \
  --pepper-file "$P/state/pepper" --create-db --log-level warn \
  2>"$P/tokend.log" &
PID=$!
# Wait until it serves (or exits): a condition, polled.
i=0
until "$U/bin/tokenctl" --socket "$S" whoami >/dev/null 2>&1; do
  kill -0 "$PID" 2>/dev/null || { cat "$P/tokend.log" >&2; fail "tokend exited"; }
  i=$((i + 1))
  [ "$i" -lt 600 ] || fail "tokend did not serve"
  sleep 0.1
done
TOKEN=$("$U/bin/tokenctl" --socket "$S" issue --domain install.example \
  --label install-test) || fail "the installed tokenctl could not issue"

# --- a program built with pkg-config ---
export PKG_CONFIG_PATH="$(dirname "$PC")"
LIBDIR=$(pkg-config --variable=libdir tokend-client)
[ "$(cd "$LIBDIR" && pwd -P)" = "$(cd "$(dirname "$LIB")" && pwd -P)" ] ||
  fail "tokend-client.pc's libdir ($LIBDIR) is not where the library is"
# shellcheck disable=SC2046,SC2086
"$CC" $CFLAGS_EXTRA -o "$P/verify_token_pc" "$SRC/tests/install/verify_token.c" \
  $(pkg-config --cflags --libs tokend-client) -Wl,-rpath,"$LIBDIR" ||
  fail "verify_token does not build with pkg-config"
OUT=$(echo "$TOKEN" | "$P/verify_token_pc" "$S") ||
  fail "pkg-config build: the token did not verify ($OUT)"
[ "$OUT" = "valid install.example" ] || fail "pkg-config build said '$OUT'"
rc=0
OUT=$(echo "tkd_notatoken" | "$P/verify_token_pc" "$S") || rc=$?
[ "$rc" = 1 ] && [ "$OUT" = "invalid MALFORMED" ] ||
  fail "pkg-config build: a malformed token gave exit $rc, '$OUT'"

# --- a CMake project with find_package(tokend-client) ---
cmake -S "$SRC/tests/install" -B "$P/cm" -DCMAKE_PREFIX_PATH="$U" \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="$CFLAGS_EXTRA" >"$P/cm.log" 2>&1 &&
  cmake --build "$P/cm" >>"$P/cm.log" 2>&1 ||
  { cat "$P/cm.log" >&2; fail "verify_token does not build with find_package"; }
OUT=$(echo "$TOKEN" | "$P/cm/verify_token" "$S") ||
  fail "CMake build: the token did not verify ($OUT)"
[ "$OUT" = "valid install.example" ] || fail "CMake build said '$OUT'"

kill "$PID"
wait "$PID" || fail "tokend did not exit 0 on SIGTERM"
PID=
echo "install: layout, RPATH, pkg-config and find_package(tokend-client) ok"
