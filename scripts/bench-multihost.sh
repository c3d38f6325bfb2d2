#!/bin/sh
# The multi-host measurements of issue 13 (docs/PERFORMANCE.md, "Many
# hosts"): three tokends (A, B, C) on one PostgreSQL database, and one
# SQLite-backed tokend (S) beside them for the ratios, all in one run.
#
# It makes its own throwaway PostgreSQL cluster, as tests/lib/pg_cluster.c
# does: initdb into a fresh temporary directory (as "nobody" when run as
# root: postgres refuses root), postgres listening only on a Unix socket in
# that directory, trust authentication; fsync and synchronous_commit stay
# on, so an acknowledged write is durable. It stops exactly what it started
# (by PID, and the cluster with pg_ctl) and removes the directory on exit.
#
# Measured:
#   1. revoke-to-everywhere: tokend-bench -t revoke-everywhere through B,
#      polling A, B and C after each Revoke (p50/p99 of "Revoke returned"
#      and of "last host answers REVOKED");
#   2. Verify c=16 on B (PostgreSQL) vs S (SQLite), alternating runs, then
#      the same while writes run at 500 Issue + 500 Revoke per second (on A
#      for B; on S itself for S, which has no other host);
#   3. Issue throughput at c=16 on A vs S;
#   4. catch-up: C stopped (SIGSTOP) while 100,000 Issues are made on A,
#      then tokend-bench -t catch-up sends SIGCONT and times until C's
#      Status says fresh with applied_revision at A's.
#
# Environment:
#   BUILD_DIR      where tokend and tokend-bench are built (default: build)
#   BENCH_REPS     runs per ratio scenario (default 5; the median is shown)
#   BENCH_QUICK    1: a tenth of the requests, for a quick look
#   BENCH_REVOKES  revokes for scenario 1 (default 2000)
#   BENCH_CHANGES  changes for scenario 4 (default 100000)
#   BENCH_ANALYZE  1: ANALYZE the database before each scenario and before
#                  C resumes (a new database has no statistics until
#                  autovacuum's analyze, and the change feed's read plans
#                  badly without them: see docs/PERFORMANCE.md)
set -eu

BUILD_DIR=${BUILD_DIR:-build}
REPS=${BENCH_REPS:-5}
QUICK=${BENCH_QUICK:-0}
REVOKES=${BENCH_REVOKES:-2000}
ANALYZE=${BENCH_ANALYZE:-0}
CHANGES=${BENCH_CHANGES:-100000}
TOKEND=$BUILD_DIR/tokend
BENCH=$BUILD_DIR/tokend-bench
PG_BIN=/usr/lib/postgresql/15/bin
TOKENS=10000
WRITE_RATE=500 # per second, for Issue and for Revoke
LOAD_SECS=8    # how long Verify is measured under writes

TMP=""
PG_DATA=""
PIDS=""
WRITER_PID=""

log() { printf 'bench-multihost: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# as_cluster_user CMD...: runs CMD as the cluster's owner.
as_cluster_user() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
  else
    "$@"
  fi
}

cleanup() {
  [ -z "$WRITER_PID" ] || kill "$WRITER_PID" 2>/dev/null || true
  for p in $PIDS; do
    kill -CONT "$p" 2>/dev/null || true
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ -n "$PG_DATA" ] && [ -d "$PG_DATA" ]; then
    as_cluster_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -s -m immediate stop \
      >/dev/null 2>&1 || true
  fi
  if [ -n "$TMP" ]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x "$TOKEND" ] || [ ! -x "$BENCH" ]; then
  die "$TOKEND or $BENCH missing: build first (make build)"
fi
[ -x "$PG_BIN/initdb" ] ||
  die "no PostgreSQL 15 in $PG_BIN (scripts/install-deps.sh installs it)"

n_of() { # requests for a scenario, scaled down by BENCH_QUICK
  if [ "$QUICK" = 1 ]; then echo $(($1 / 10)); else echo "$1"; fi
}

TMP=$(mktemp -d /tmp/tokend-mh.XXXXXX)
chmod 0755 "$TMP"
mkdir "$TMP/pg" "$TMP/res"
[ "$(id -u)" -ne 0 ] || chown nobody "$TMP/pg"
PG_DATA=$TMP/pg/data
as_cluster_user "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 \
  --locale=C --no-instructions >"$TMP/initdb.log" 2>&1 ||
  { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
cat >>"$PG_DATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$TMP/pg'
max_connections = 50
EOF
as_cluster_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -s -l "$TMP/pg/postgres.log" \
  start || die "postgres did not start (see $TMP/pg/postgres.log)"
"$PG_BIN/psql" -h "$TMP/pg" -U postgres -qAt -c 'CREATE DATABASE tokend' \
  postgres >/dev/null || die "cannot create the database"
STORE="postgresql:///tokend?host=$TMP/pg&user=postgres"

analyze() { # with BENCH_ANALYZE=1: fresh planner statistics
  [ "$ANALYZE" = 1 ] || return 0
  "$PG_BIN/psql" -h "$TMP/pg" -U postgres -qAt -c ANALYZE tokend >/dev/null ||
    die "ANALYZE failed"
}

# wait_ready PID LOG SOCKET: until one Verify is answered there.
wait_ready() {
  i=0
  until "$BENCH" -s "$3" -c 1 -n 1 --tokens 0 --csv >/dev/null 2>&1; do
    kill -0 "$1" 2>/dev/null || { cat "$2" >&2; die "tokend exited"; }
    i=$((i + 1))
    [ $i -lt 6000 ] || die "tokend on $3 was not ready within 60 s"
    sleep 0.01
  done
}

# start_host NAME [FLAGS...]: a tokend on $TMP/NAME/tokend.sock; its PID in
# the variable PID_NAME. A's first start makes the pepper; B and C get a
# copy (every host of one store hashes with the same pepper).
start_host() {
  name=$1
  shift
  dir=$TMP/$name
  mkdir -p "$dir"
  if [ "$name" != A ] && [ "$name" != S ] && [ ! -f "$dir/pepper" ]; then
    cp "$TMP/A/pepper" "$dir/pepper"
    chmod 0600 "$dir/pepper"
  fi
  "$TOKEND" --socket "$dir/tokend.sock" --pepper-file "$dir/pepper" \
    --create-db --log-level warn "$@" >>"$dir/tokend.log" 2>&1 &
  pid=$!
  PIDS="$PIDS $pid"
  eval "PID_$name=$pid"
  wait_ready "$pid" "$dir/tokend.log" "$dir/tokend.sock"
}

for h in A B C; do start_host $h --store "$STORE" --host-id $h; done
start_host S --db "$TMP/S/tokend.db"
SOCK_A=$TMP/A/tokend.sock SOCK_B=$TMP/B/tokend.sock SOCK_C=$TMP/C/tokend.sock
SOCK_S=$TMP/S/tokend.sock

# run OUT ARGS...: one tokend-bench --csv run; appends "rps p50 p99" of its
# rows to OUT and logs them.
run() {
  out=$1
  shift
  "$BENCH" --csv "$@" >"$TMP/last.csv" 2>"$TMP/last.err" || {
    cat "$TMP/last.err" >&2
    die "tokend-bench $* failed"
  }
  tail -n +2 "$TMP/last.csv" | awk -F, '{ print $5, $6, $8 }' >>"$out"
  tail -n +2 "$TMP/last.csv" | awk -F, -v a="$*" '{
    printf "bench-multihost:   %-18s %9.0f rps  p50 %8.1f us  p99 %8.1f us\n",
      $1, $5, $6, $8 }' >&2
}

med() { # med FILE COLUMN
  sort -g -k "$2" "$1" | awk -v c="$2" '{ v[NR] = $c }
    END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'
}

rev=$(git -C "$(dirname "$0")/.." describe --always --dirty 2>/dev/null ||
  echo unknown)
log "tokend $rev, $(nproc) cores, load average" \
  "$(cut -d' ' -f1-3 /proc/loadavg), $REPS runs per ratio, ANALYZE $ANALYZE," \
  "$(date -u '+%Y-%m-%d %H:%M UTC')"

# ---- 1. revoke-to-everywhere ----
n=$(n_of "$REVOKES")
analyze
log "1. revoke-everywhere: $n Revokes through B, then Verify on A, B, C"
run "$TMP/res/everywhere" -s "$SOCK_B" --host "$SOCK_A" --host "$SOCK_C" \
  -t revoke-everywhere -n "$n" --tokens "$n" -c 4
grep -h 'revoke-everywhere:' "$TMP/last.err" >&2 || true
EVERY=$(awk 'NR == 1 { r50 = $2; r99 = $3 } NR == 2 { e50 = $2; e99 = $3 }
  END { printf "%s %s %s %s", r50, r99, e50, e99 }' "$TMP/res/everywhere")

# ---- 2. Verify: PostgreSQL-backed vs SQLite-backed ----
nv=$(n_of 200000)
analyze
: >"$TMP/res/verify.pg"
: >"$TMP/res/verify.sqlite"
log "2. verify c=16: B (PostgreSQL) vs S (SQLite), $REPS runs each"
for i in $(seq "$REPS"); do
  run "$TMP/res/verify.pg" -s "$SOCK_B" -c 16 -n "$nv" --tokens "$TOKENS"
  run "$TMP/res/verify.sqlite" -s "$SOCK_S" -c 16 -n "$nv" --tokens "$TOKENS"
done
# Under writes: 500 Issue + 500 Revoke per second on another host (A) for
# B; on S itself for S.
: >"$TMP/res/load.pg"
: >"$TMP/res/load.sqlite"
log "2b. the same with $WRITE_RATE Issue + $WRITE_RATE Revoke per second"
for i in $(seq "$REPS"); do
  for target in pg sqlite; do
    if [ $target = pg ]; then w=$SOCK_A v=$SOCK_B; else w=$SOCK_S v=$SOCK_S; fi
    "$BENCH" -s "$w" -c 4 -t mixed --mix 0:50:50 --rate $((WRITE_RATE * 2)) \
      --duration $((LOAD_SECS + 4)) --tokens $((WRITE_RATE * (LOAD_SECS + 4))) \
      --csv >"$TMP/writer.csv" 2>"$TMP/writer.err" &
    WRITER_PID=$!
    # Until the writer's setup is done and its writes run.
    until grep -q 'setup done' "$TMP/writer.err" 2>/dev/null; do
      kill -0 "$WRITER_PID" 2>/dev/null || {
        cat "$TMP/writer.err" >&2
        die "the writer exited"
      }
      sleep 0.05
    done
    run "$TMP/res/load.$target" -s "$v" -c 16 --duration "$LOAD_SECS" \
      --tokens "$TOKENS"
    wait "$WRITER_PID" || { cat "$TMP/writer.err" >&2; die "the writer failed"; }
    WRITER_PID=""
  done
done

# ---- 3. Issue throughput at c=16 ----
ni=$(n_of 10000)
analyze
: >"$TMP/res/issue.pg"
: >"$TMP/res/issue.sqlite"
log "3. issue c=16: A (PostgreSQL, 3 hosts) vs S (SQLite), $REPS runs each"
for i in $(seq "$REPS"); do
  run "$TMP/res/issue.pg" -s "$SOCK_A" -c 16 -t issue -n "$ni" --tokens 0
  run "$TMP/res/issue.sqlite" -s "$SOCK_S" -c 16 -t issue -n "$ni" --tokens 0
done

# ---- 4. catch-up ----
nc=$(n_of "$CHANGES")
log "4. catch-up: C stopped while $nc Issues are made on A"
kill -STOP "$PID_C"
run "$TMP/res/changes" -s "$SOCK_A" -c 16 -t issue -n "$nc" --tokens 0
analyze
"$BENCH" -s "$SOCK_C" --host "$SOCK_A" -t catch-up --resume-pid "$PID_C" \
  -c 1 --timeout-ms 300000 --csv >"$TMP/catchup.csv" 2>"$TMP/catchup.err" || {
  kill -CONT "$PID_C" 2>/dev/null || true
  cat "$TMP/catchup.err" >&2
  die "tokend-bench -t catch-up failed"
}
cat "$TMP/catchup.err" >&2
CATCHUP_MS=$(tail -n 1 "$TMP/catchup.csv" | awk -F, '{ printf "%.0f", $10 / 1000 }')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.3f", a / b }'; }

VP=$(med "$TMP/res/verify.pg" 1) VS=$(med "$TMP/res/verify.sqlite" 1)
LP=$(med "$TMP/res/load.pg" 1) LS=$(med "$TMP/res/load.sqlite" 1)
LP99=$(med "$TMP/res/load.pg" 3) LS99=$(med "$TMP/res/load.sqlite" 3)
IP=$(med "$TMP/res/issue.pg" 1) IS=$(med "$TMP/res/issue.sqlite" 1)
# shellcheck disable=SC2086 # split on purpose
set -- $EVERY

printf '\n%-52s %12s %12s %8s\n' scenario PostgreSQL SQLite ratio
printf '%-52s %12s %12s %8s\n' "revoke returned p50 / p99 us (3 hosts)" "$1 / $2" - -
printf '%-52s %12s %12s %8s\n' "last host answers REVOKED p50 / p99 us" "$3 / $4" - -
printf '%-52s %12.0f %12.0f %8s\n' "verify c=16 rps" "$VP" "$VS" "$(ratio "$VP" "$VS")"
printf '%-52s %12.0f %12.0f %8s\n' "verify c=16 rps, $WRITE_RATE issue+$WRITE_RATE revoke/s" \
  "$LP" "$LS" "$(ratio "$LP" "$LS")"
printf '%-52s %12s %12s %8s\n' "  its p99 us" "$LP99" "$LS99" "$(ratio "$LP99" "$LS99")"
printf '%-52s %12.0f %12.0f %8s\n' "issue c=16 per second" "$IP" "$IS" "$(ratio "$IP" "$IS")"
printf '%-52s %12s %12s %8s\n' "catch-up after $nc changes, ms" "$CATCHUP_MS" - -
echo
awk -v v="$4" 'BEGIN { printf "goal: revoke-to-everywhere p99 < 50 ms: %.1f ms %s\n", v / 1000, (v < 50000 ? "PASS" : "FAIL") }'
awk -v r="$(ratio "$VP" "$VS")" -v l="$(ratio "$LP" "$LS")" 'BEGIN {
  printf "goal: verify within 5%% of SQLite: %s, under writes %s %s\n", r, l,
    (r >= 0.95 && l >= 0.95 ? "PASS" : "FAIL") }'
awk -v v="$IP" 'BEGIN { printf "goal: issue >= 5000/s durable at c=16: %.0f/s %s\n", v, (v >= 5000 ? "PASS" : "FAIL") }'
awk -v v="$CATCHUP_MS" -v n="$nc" 'BEGIN { printf "goal: current again within 2 s after %d changes: %s ms %s\n", n, v, (v < 2000 ? "PASS" : "FAIL") }'
