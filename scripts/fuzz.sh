#!/bin/sh
# Runs each libFuzzer target for FUZZ_SECONDS, side by side (one core each),
# each on its own copy of tests/fuzz/corpus/ in a temporary directory, and
# fails if any of them reports a crash, a leak, a timeout, running out of
# memory or a sanitizer error. `make fuzz` builds the targets and calls this.
#
# Environment: FUZZ_BUILD_DIR (build-fuzz), FUZZ_SECONDS (60), FUZZERS
# ("fuzz_server fuzz_frame fuzz_verify_wire"). A failing input is kept under
# $FUZZ_BUILD_DIR/fuzz-artifacts/ and printed in base64; reproduce it with
# $FUZZ_BUILD_DIR/tests/fuzz/<fuzzer> <file>.
set -eu
cd "$(dirname "$0")/.."
build=${FUZZ_BUILD_DIR:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
fuzzers=${FUZZERS:-"fuzz_server fuzz_frame fuzz_verify_wire"}

case $seconds in
'' | *[!0-9]*)
  echo "fuzz: FUZZ_SECONDS must be a whole number of seconds" >&2
  exit 2
  ;;
esac
for f in $fuzzers; do
  if [ ! -x "$build/tests/fuzz/$f" ]; then
    echo "fuzz: $build/tests/fuzz/$f is missing: run \`make fuzz\`" >&2
    exit 2
  fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/tokend-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# Every report is fatal; leaks are checked after each input and at exit.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] &&
  [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi

for f in $fuzzers; do
  mkdir -p "$work/$f/corpus" "$work/$f/artifacts"
  cp tests/fuzz/corpus/* "$work/$f/corpus/"
  "$build/tests/fuzz/$f" -max_total_time="$seconds" -max_len=65536 \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/$f/artifacts/" "$work/$f/corpus" \
    >"$work/$f.log" 2>&1 &
  echo $! >"$work/$f.pid"
done

failed=""
for f in $fuzzers; do
  rc=0
  wait "$(cat "$work/$f.pid")" || rc=$?
  # A report that did not end the run (it should have) still fails it.
  if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:" \
    "$work/$f.log"; then
    [ "$rc" -ne 0 ] || rc=1
  fi
  stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$f.log" | tail -n 1 || true)
  echo "fuzz: $f: ${stats:-no final stats} (exit $rc)"
  if [ "$rc" -ne 0 ]; then
    failed="$failed $f"
    echo "fuzz: $f FAILED; the end of its log:" >&2
    tail -n 80 "$work/$f.log" >&2
    mkdir -p "$build/fuzz-artifacts"
    for a in "$work/$f/artifacts/"*; do
      [ -f "$a" ] || continue
      cp "$a" "$build/fuzz-artifacts/$f-$(basename "$a")"
      echo "fuzz: reproduce with: $build/tests/fuzz/$f" \
        "$build/fuzz-artifacts/$f-$(basename "$a")" >&2
      echo "fuzz: the input, base64:" >&2
      head -c 65536 "$a" | base64 >&2
    done
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed" >&2
  exit 1
fi
echo "fuzz: all fuzzers ran ${seconds}s with no crash, leak or sanitizer report"
