#!/bin/sh
# Verify throughput of two tokend binaries side by side: runs alternate
# (old and new at c=16 P=32, then at c=1 P=1) for ROUNDS rounds, each
# against a fresh tokend on an empty database in a temporary directory,
# driven by the same tokend-bench. Prints every run, then per shape the
# median and the best rps of each and their ratio (new / old), and the
# median server CPU time per request.
#
# usage: scripts/bench-ab.sh OLD_TOKEND NEW_TOKEND [TOKEND_BENCH]
#   e.g. git worktree add /tmp/arch-base arch && make -C /tmp/arch-base build
#        scripts/bench-ab.sh /tmp/arch-base/build/tokend build/tokend
# Environment: ROUNDS (default 10), N16 (requests at c=16 P=32, default
# 400000), N1 (requests at c=1 P=1, default 40000).
# Stops only the tokend processes it started (by PID).
set -eu

OLD=${1:?usage: bench-ab.sh OLD_TOKEND NEW_TOKEND [TOKEND_BENCH]}
NEW=${2:?usage: bench-ab.sh OLD_TOKEND NEW_TOKEND [TOKEND_BENCH]}
BENCH=${3:-build/tokend-bench}
ROUNDS=${ROUNDS:-10}
N16=${N16:-400000}
N1=${N1:-40000}
TMP=$(mktemp -d /tmp/tokend-bench-ab.XXXXXX)
PID=""

cleanup() {
  if [ -n "$PID" ]; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# run NAME BINARY C P N: one tokend-bench run against a fresh tokend;
# appends "NAME C P rps cpu_us_per_request" to $TMP/runs.
run() {
  d=$TMP/$1
  rm -rf "$d"
  mkdir -p "$d"
  "$2" --socket "$d/s" --db "$d/db" --create-db --pepper-file "$d/p" \
    --log-level warn >"$d/log" 2>&1 &
  PID=$!
  i=0
  until "$BENCH" -s "$d/s" -c 1 -n 1 --tokens 0 --csv >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 1000 ] || { echo "bench-ab: $2 did not start" >&2; exit 1; }
    sleep 0.01
  done
  "$BENCH" -s "$d/s" -c "$3" -P "$4" -n "$5" --tokens 10000 \
    --server-pid "$PID" --csv >"$d/csv" 2>"$d/err"
  cpu=$(sed -n 's/.*server CPU \([0-9.]*\) us per request.*/\1/p' "$d/err")
  tail -n 1 "$d/csv" | awk -F, -v n="$1" -v c="$3" -v p="$4" -v cpu="$cpu" \
    '{ printf "%s %s %s %.0f %s\n", n, c, p, $5, (cpu == "" ? "-" : cpu) }' |
    tee -a "$TMP/runs"
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}

echo "bench-ab: $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg), $ROUNDS rounds"
# Which binary goes first alternates every round (and between the shapes):
# a run right after another tokend's shutdown and cleanup is slower, and
# that must not favour either binary.
r=1
while [ $r -le "$ROUNDS" ]; do
  if [ $((r % 2)) -eq 1 ]; then
    run old "$OLD" 16 32 "$N16"
    run new "$NEW" 16 32 "$N16"
    run new "$NEW" 1 1 "$N1"
    run old "$OLD" 1 1 "$N1"
  else
    run new "$NEW" 16 32 "$N16"
    run old "$OLD" 16 32 "$N16"
    run old "$OLD" 1 1 "$N1"
    run new "$NEW" 1 1 "$N1"
  fi
  r=$((r + 1))
done
echo "bench-ab: done, load $(cut -d' ' -f1-3 /proc/loadavg)"

# median and best rps, median CPU per request, per binary and shape
for shape in "16 32" "1 1"; do
  for who in old new; do
    set -- $shape
    rps=$(awk -v w=$who -v c=$1 -v p=$2 '$1 == w && $2 == c && $3 == p { print $4 }' \
      "$TMP/runs" | sort -n)
    cpu=$(awk -v w=$who -v c=$1 -v p=$2 '$1 == w && $2 == c && $3 == p { print $5 }' \
      "$TMP/runs" | sort -n)
    n=$(echo "$rps" | wc -l)
    med=$(echo "$rps" | sed -n "$(((n + 1) / 2))p")
    best=$(echo "$rps" | tail -n 1)
    cmed=$(echo "$cpu" | sed -n "$(((n + 1) / 2))p")
    echo "$who $1 $2 $med $best $cmed" >>"$TMP/summary"
  done
done
awk '{ k = $2 " " $3; m[$1 " " k] = $4; b[$1 " " k] = $5; c[$1 " " k] = $6; ks[k] = 1 }
  END { for (k in ks) {
    split(k, cp, " ")
    printf "c=%s P=%s  median rps old %d new %d (new/old %.3f)  best old %d new %d (%.3f)  median cpu us/req old %s new %s\n",
      cp[1], cp[2], m["old " k], m["new " k], m["new " k] / m["old " k],
      b["old " k], b["new " k], b["new " k] / b["old " k], c["old " k], c["new " k] } }' \
  "$TMP/summary"
