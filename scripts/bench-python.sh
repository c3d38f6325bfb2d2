#!/bin/sh
# The Python client's Verify throughput next to tokend-bench's, one
# connection each, against one tokend started here (docs/PERFORMANCE.md,
# "The Python client"):
#   C     tokend-bench -c 1 -P 1            one call at a time
#   py    bench_verify.py --mode blocking   Client, one call at a time
#   C     tokend-bench -c 1 -P 32 --window  32 in flight, each slot refilled
#   py    bench_verify.py --mode async -P 32  AsyncClient, 32 in flight
# ROUNDS rounds (default 3), alternating; prints every row, then the median
# rps of each. Every answer is checked by both tools.
#   BUILD_DIR  where tokend, tokend-bench and the staged Python package are
#              (default: build; `make build` first)
#   N_SYNC     Verifies per one-at-a-time run (default 20000)
#   N_PIPE     Verifies per pipelined run (default 100000)
set -eu
BUILD_DIR=${BUILD_DIR:-build}
ROUNDS=${ROUNDS:-3}
N_SYNC=${N_SYNC:-20000}
N_PIPE=${N_PIPE:-100000}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$BUILD_DIR" && pwd)
py=/usr/bin/python3
bench_py="$root/client/python/bench/bench_verify.py"

tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
"$build/tokend" --socket "$tmp/s" --db "$tmp/db" --pepper-file "$tmp/pepper" \
  --create-db 2>"$tmp/log" &
pid=$!
i=0
until [ -S "$tmp/s" ]; do
  i=$((i + 1))
  [ $i -lt 3000 ] || { cat "$tmp/log" >&2; exit 1; }
  sleep 0.01
done

echo "# $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')," \
  "load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "client,conns,pipeline,requests,rps,client_cpu_us"
r=0
while [ $r -lt "$ROUNDS" ]; do
  r=$((r + 1))
  "$build/tokend-bench" -s "$tmp/s" -c 1 -P 1 -n "$N_SYNC" -t verify \
    --tokens 1000 --invalid-pct 0 --csv | tail -n 1 |
    awk -F, '{ printf "tokend-bench,%s,%s,%s,%.0f,-\n", $2, $3, $4, $5 }'
  PYTHONPATH="$build/python" $py "$bench_py" -s "$tmp/s" -n "$N_SYNC" \
    --mode blocking
  "$build/tokend-bench" -s "$tmp/s" -c 1 -P 32 --window -n "$N_PIPE" \
    -t verify --tokens 1000 --invalid-pct 0 --csv | tail -n 1 |
    awk -F, '{ printf "tokend-bench,%s,%s,%s,%.0f,-\n", $2, $3, $4, $5 }'
  PYTHONPATH="$build/python" $py "$bench_py" -s "$tmp/s" -n "$N_PIPE" \
    --mode async -P 32
done | tee "$tmp/rows"
echo "# medians of $ROUNDS rounds: rps, client CPU us per Verify"
for k in "tokend-bench,1,1" "python-blocking,1,1" "tokend-bench,1,32" \
  "python-async,1,32"; do
  rps=$(grep "^$k," "$tmp/rows" | cut -d, -f5 | sort -n |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  cpu=$(grep "^$k," "$tmp/rows" | cut -d, -f6 | sort -n |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  printf "%-22s %9s %6s\n" "$k" "$rps" "$cpu"
done
