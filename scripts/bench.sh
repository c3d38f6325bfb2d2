#!/bin/sh
# Runs tokend's Verify side by side with Redis GET on Unix sockets, plus the
# other performance targets of issue 5, and prints one table. `make bench`
# runs it; docs/PERFORMANCE.md explains the numbers.
#
# It starts its own tokend (from $BUILD_DIR) and its own redis-server, each
# on a socket in a fresh temporary directory, and stops exactly those (by
# PID) on exit. Runs alternate tokend, Redis, tokend, Redis... and the table
# shows the median of BENCH_REPS runs, because this machine is shared and
# noisy. Each tokend run gets a fresh tokend, so every Verify run sees an
# index of exactly the tokens its own tokend-bench issued. Besides rps and p99 it shows each server's CPU time per request,
# which does not depend on how fast the load generator is.
#
# Environment:
#   BUILD_DIR    where tokend and tokend-bench are built (default: build)
#   BENCH_REPS   runs per scenario (default 5)
#   BENCH_QUICK  1: a tenth of the requests, for a quick look
#   BENCH_LARGE  1: also targets 4 and 5 (1,000,000 tokens: latency vs
#                10,000, RSS per token, start-up time); adds 1-2 minutes
set -eu

BUILD_DIR=${BUILD_DIR:-build}
REPS=${BENCH_REPS:-5}
QUICK=${BENCH_QUICK:-0}
LARGE=${BENCH_LARGE:-0}
TOKEND=$BUILD_DIR/tokend
BENCH=$BUILD_DIR/tokend-bench
TOKENS=10000
LARGE_TOKENS=1000000
WRITE_RATE=500 # per second, for Issue and for Revoke (target 3)
LOAD_SECS=8    # how long Verify is measured under writes
SETTLE_MS=15000 # after the warm-up of targets 4 and 5 (see there)
# tokend-bench waits for its sockets the way redis-benchmark does; each
# Verify-vs-GET scenario is also run with tokend-bench --keep-watch (one
# lasting epoll watch per socket), for the record. c=1 P=1 is also run with
# each server and its client pinned to one CPU (see below), with tokend
# --busy-poll-us (off by default), and as tokend-bench's echo, both ways (no
# server at all: the best rate a server that sleeps between requests could
# reach on this machine).
BUSY_POLL_US=100
PIN_CPU=0
HAVE_TASKSET=0
if taskset -c $PIN_CPU true >/dev/null 2>&1; then HAVE_TASKSET=1; fi

TMP=""
TOKEND_PID=""
REDIS_PID=""
WRITER_PID=""

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

stop_pid() { # stop_pid PID: SIGTERM one process we started, and reap it
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

cleanup() {
  stop_pid "$WRITER_PID"
  stop_pid "$REDIS_PID"
  stop_pid "$TOKEND_PID"
  if [ -n "$TMP" ]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x "$TOKEND" ] || [ ! -x "$BENCH" ]; then
  die "$TOKEND or $BENCH missing: build first (make build)"
fi

# redis-server is not a build dependency: install it here if we can.
if ! command -v redis-server >/dev/null 2>&1 ||
  ! command -v redis-benchmark >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing redis-server (for the side-by-side comparison)"
  if ! (DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
      --no-install-recommends redis-server redis-tools) >/dev/null 2>&1; then
    log "could not install redis-server: tokend numbers only"
  fi
fi
HAVE_REDIS=0
if command -v redis-server >/dev/null 2>&1 &&
  command -v redis-benchmark >/dev/null 2>&1; then
  HAVE_REDIS=1
fi

TMP=$(mktemp -d /tmp/tokend-bench.XXXXXX)
RES=$TMP/results
mkdir "$RES"
CLK_TCK=$(getconf CLK_TCK)

n_of() { # requests for a scenario, scaled down by BENCH_QUICK
  if [ "$QUICK" = 1 ]; then echo $(($1 / 10)); else echo "$1"; fi
}

cpu_ticks() { # user + system CPU ticks of process $1, all threads
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# wait_ready PID LOG NAME SECONDS CMD...: runs CMD every 10 ms until it
# succeeds. Dies, showing LOG (if not empty), if PID exits first, or after
# SECONDS.
wait_ready() {
  w_pid=$1 w_log=$2 w_name=$3 w_secs=$4
  shift 4
  i=0
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$w_pid" 2>/dev/null; then
      [ -z "$w_log" ] || cat "$w_log" >&2
      die "$w_name exited"
    fi
    i=$((i + 1))
    [ $i -lt $((w_secs * 100)) ] ||
      die "$w_name was not ready within $w_secs s"
    sleep 0.01
  done
}

# start_tokend DIR [FLAGS...]: a tokend on DIR/tokend.sock; waits until it
# answers.
start_tokend() {
  dir=$1
  shift
  mkdir -p "$dir"
  "$TOKEND" --socket "$dir/tokend.sock" --db "$dir/tokend.db" --create-db \
    --pepper-file "$dir/pepper" --log-level warn "$@" >>"$dir/tokend.log" 2>&1 &
  TOKEND_PID=$!
  # Until one Verify is answered (tokend may listen before its index is
  # loaded).
  wait_ready "$TOKEND_PID" "$dir/tokend.log" tokend 60 \
    "$BENCH" -s "$dir/tokend.sock" -c 1 -n 1 --tokens 0 --csv
}

stop_tokend() {
  stop_pid "$TOKEND_PID"
  TOKEND_PID=""
}

fresh_tokend() { # [FLAGS...]: a new tokend on an empty database in $TMP/tokend
  stop_tokend
  rm -rf "$TMP/tokend"
  start_tokend "$TMP/tokend" "$@"
}

start_redis() {
  mkdir -p "$TMP/redis"
  redis-server --port 0 --unixsocket "$TMP/redis/redis.sock" \
    --unixsocketperm 700 --save '' --appendonly no --dir "$TMP/redis" \
    --logfile "$TMP/redis/redis.log" --daemonize no &
  REDIS_PID=$!
  wait_ready "$REDIS_PID" "" redis-server 10 test -S "$TMP/redis/redis.sock"
  # redis-benchmark -t get (no -r) reads the key "key:__rand_int__": let
  # its own SET write it, with the same 3-byte value.
  redis-benchmark -s "$TMP/redis/redis.sock" -c 1 -n 1 -t set -q \
    >/dev/null 2>&1 || die "cannot SET the key in redis"
}

# run_on CMD...: runs CMD on CPU $PIN if PIN is set, else anywhere.
run_on() {
  if [ -n "${PIN:-}" ]; then taskset -c "$PIN" "$@"; else "$@"; fi
}

# pin PID CPUS: moves every thread of PID onto CPUS.
pin() { taskset -a -p -c "$2" "$1" >/dev/null || die "taskset $1 failed"; }

# cpus_of PID: the CPUs PID may run on, as taskset -c takes them.
cpus_of() { taskset -p -c "$1" | sed 's/.*: //'; }

# tokend_run OUT ARGS...: one tokend-bench run against our tokend; appends
# "rps p50_us p99_us server_cpu_us_per_request" of each test to OUT.
# NAME (default "tokend") labels its log lines; SERVER_PID (default
# $TOKEND_PID; empty: none) is the server whose CPU time is measured.
tokend_run() {
  out=$1
  shift
  pid=${SERVER_PID-$TOKEND_PID}
  run_on "$BENCH" -s "$TMP/tokend/tokend.sock" ${pid:+--server-pid "$pid"} --csv \
    "$@" >"$TMP/last.csv" 2>"$TMP/last.err" || {
    cat "$TMP/last.err" >&2
    die "tokend-bench $* failed"
  }
  sed -n 's/.*server CPU \([0-9.]*\) us per request.*/\1/p' "$TMP/last.err" \
    >"$TMP/last.cpu"
  tail -n +2 "$TMP/last.csv" | paste -d, - "$TMP/last.cpu" |
    awk -F, '{ print $5, $6, $8, ($11 == "" ? "-" : $11) }' >>"$out"
  tail -n +2 "$TMP/last.csv" | paste -d, - "$TMP/last.cpu" |
    awk -F, -v a="$*" -v who="${NAME:-tokend}" '{ printf "bench:   %-7s %-49s %9.0f rps  p99 %7.1f us  cpu %s us/req\n", who, a, $5, $8, ($11 == "" ? "-" : $11) }' >&2
}

# redis_run OUT C P N: one redis-benchmark GET run; appends the same fields.
redis_run() {
  c0=$(cpu_ticks "$REDIS_PID")
  run_on redis-benchmark -s "$TMP/redis/redis.sock" -c "$2" -P "$3" -n "$4" \
    -t get --csv >"$TMP/last.csv" 2>"$TMP/last.err" || {
    cat "$TMP/last.err" >&2
    die "redis-benchmark failed"
  }
  c1=$(cpu_ticks "$REDIS_PID")
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
  # "p95_latency_ms","p99_latency_ms","max_latency_ms"
  tail -n 1 "$TMP/last.csv" | tr -d '"' |
    awk -F, -v n="$4" -v c="$((c1 - c0))" -v tck="$CLK_TCK" -v out="$1" \
      -v a="-c $2 -P $3 -n $4" '{
      cpu = c / tck * 1e6 / n
      print $2, $5 * 1000, $7 * 1000, cpu >> out
      printf "bench:   redis  %-50s %9.0f rps  p99 %7.1f us  cpu %.3f us/req\n", a, $2, $7 * 1000, cpu > "/dev/stderr"
    }'
}

# med FILE COLUMN: the median of a column ("-" if the file is empty)
med() {
  sort -g -k "$2" "$1" | awk -v c="$2" '{ v[NR] = $c }
    END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'
}

# summarize FILE: "rps p50 p99 cpu", each the median over the runs
summarize() {
  echo "$(med "$1" 1) $(med "$1" 2) $(med "$1" 3) $(med "$1" 4)"
}

TABLE=$TMP/table
: >"$TABLE"
# row SCENARIO TOKEND_SUMMARY REDIS_SUMMARY (summaries as from summarize,
# or "-")
row() {
  echo "$2" "$3" | awk -v s="$1" '
    function f(v, d) {
      if (v == "-" || v == "") return "-"
      return sprintf("%." d "f", v)
    }
    { tr = $1; tp = $3; tc = $4; rr = $5; rp = $7; rc = $8
      if (tr == "-" || rr == "-" || rr == "" || rr + 0 == 0) ratio = "-"
      else ratio = sprintf("%.2f", tr / rr)
      printf "%-42s %10s %10s %6s %9s %9s %8s %8s\n", s, f(tr, 0), f(rr, 0),
             ratio, f(tp, 1), f(rp, 1), f(tc, 2), f(rc, 2) }' >>"$TABLE"
}

rev=$(git -C "$(dirname "$0")/.." describe --always --dirty 2>/dev/null ||
  echo unknown)
log "tokend $rev, $(nproc) cores, load average" \
  "$(cut -d' ' -f1-3 /proc/loadavg), $REPS runs per scenario," \
  "$(date -u '+%Y-%m-%d %H:%M UTC')"
if [ "$HAVE_REDIS" = 1 ]; then start_redis; fi

# ---- targets 1 and 2: Verify vs GET at the same -c/-P ----
for sc in "1 1 50000" "16 1 200000" "16 32 2000000"; do
  # shellcheck disable=SC2086 # split "c p n" on purpose
  set -- $sc
  c=$1 p=$2 n=$(n_of "$3")
  : >"$RES/c$c-P$p.tokend"
  : >"$RES/c$c-P$p.redis"
  : >"$RES/c$c-P$p.busy"
  : >"$RES/c$c-P$p.echo"
  : >"$RES/c$c-P$p.keep"
  : >"$RES/c$c-P$p.echo.keep"
  : >"$RES/c$c-P$p.pin.tokend"
  : >"$RES/c$c-P$p.pin.redis"
  log "verify vs GET, c=$c P=$p n=$n"
  rep=0
  while [ $rep -lt "$REPS" ]; do
    fresh_tokend
    tokend_run "$RES/c$c-P$p.tokend" -c "$c" -P "$p" -n "$n" -t verify \
      --tokens $TOKENS
    if [ "$HAVE_REDIS" = 1 ]; then
      redis_run "$RES/c$c-P$p.redis" "$c" "$p" "$n"
    fi
    # tokend-bench waits as redis-benchmark does unless --keep-watch; the
    # other way, for the record (docs/PERFORMANCE.md, "How the load
    # generators wait").
    fresh_tokend
    (NAME=tokend/k tokend_run "$RES/c$c-P$p.keep" -c "$c" -P "$p" -n "$n" \
      -t verify --tokens $TOKENS --keep-watch)
    if [ "$c" = 1 ] && [ "$p" = 1 ] && [ "$HAVE_TASKSET" = 1 ]; then
      # At c=1 P=1 the host decides whether client and server share a vCPU
      # (each round trip then costs two context switches) or sit on two (it
      # costs two cross-CPU wake-ups, several times more): the unpinned
      # rows are a lottery between the two. Pinned, both servers are
      # compared in the first case, where their own work shows.
      fresh_tokend
      pin "$TOKEND_PID" $PIN_CPU
      (PIN=$PIN_CPU tokend_run "$RES/c$c-P$p.pin.tokend" -c 1 -P 1 -n "$n" \
        -t verify --tokens $TOKENS)
      if [ "$HAVE_REDIS" = 1 ]; then
        redis_cpus=$(cpus_of "$REDIS_PID")
        pin "$REDIS_PID" $PIN_CPU
        (PIN=$PIN_CPU redis_run "$RES/c$c-P$p.pin.redis" 1 1 "$n")
        pin "$REDIS_PID" "$redis_cpus"
      fi
    fi
    if [ "$c" = 1 ] && [ "$p" = 1 ]; then
      fresh_tokend --busy-poll-us $BUSY_POLL_US
      # Subshells: assignments before a function call may outlive it in
      # some shells.
      (NAME=tokend+ tokend_run "$RES/c$c-P$p.busy" -c 1 -P 1 -n "$n" \
        -t verify --tokens $TOKENS)
      (NAME=echo SERVER_PID="" tokend_run "$RES/c$c-P$p.echo" -c 1 -P 1 \
        -n "$n" -t echo)
      (NAME=echo/k SERVER_PID="" tokend_run "$RES/c$c-P$p.echo.keep" -c 1 \
        -P 1 -n "$n" -t echo --keep-watch)
    fi
    rep=$((rep + 1))
  done
  for f in tokend redis keep busy echo echo.keep pin.tokend pin.redis; do
    summarize "$RES/c$c-P$p.$f" >"$RES/c$c-P$p.$f.sum"
  done
  row "verify vs GET c=$c P=$p" "$(cat "$RES/c$c-P$p.tokend.sum")" \
    "$(cat "$RES/c$c-P$p.redis.sum")"
  row "  same, tokend-bench --keep-watch" "$(cat "$RES/c$c-P$p.keep.sum")" \
    "$(cat "$RES/c$c-P$p.redis.sum")"
  if [ "$c" = 1 ] && [ "$p" = 1 ]; then
    row "  same, each pinned with its client" \
      "$(cat "$RES/c$c-P$p.pin.tokend.sum")" \
      "$(cat "$RES/c$c-P$p.pin.redis.sum")"
    row "  same, tokend --busy-poll-us $BUSY_POLL_US" \
      "$(cat "$RES/c$c-P$p.busy.sum")" "$(cat "$RES/c$c-P$p.redis.sum")"
    row "  echo: no server, sleeps between calls" \
      "$(cat "$RES/c$c-P$p.echo.sum")" "$(cat "$RES/c$c-P$p.redis.sum")"
    row "  echo --keep-watch" \
      "$(cat "$RES/c$c-P$p.echo.keep.sum")" "$(cat "$RES/c$c-P$p.redis.sum")"
  fi
done

# ---- target 3: Verify p99 while another client issues and revokes ----
log "verify c=16 P=1 for ${LOAD_SECS}s while a writer issues and revokes" \
  "$WRITE_RATE/s each"
: >"$RES/writes.tokend"
rep=0
while [ $rep -lt "$REPS" ]; do
  fresh_tokend
  # The writer paces Issue and Revoke 50:50 at twice WRITE_RATE. Its clock
  # starts after its own setup, so wait for that before measuring.
  "$BENCH" -s "$TMP/tokend/tokend.sock" -c 4 -P 8 -t mixed --mix 0:50:50 \
    --rate $((2 * WRITE_RATE)) --tokens 2000 --duration $((LOAD_SECS + 3)) \
    >"$TMP/writer.out" 2>"$TMP/writer.err" &
  WRITER_PID=$!
  wait_ready "$WRITER_PID" "$TMP/writer.err" "the writer" 30 \
    grep -q 'setup done' "$TMP/writer.err"
  tokend_run "$RES/writes.tokend" -c 16 -P 1 -t verify --tokens $TOKENS \
    --duration $LOAD_SECS
  if ! wait "$WRITER_PID"; then
    WRITER_PID=""
    cat "$TMP/writer.err" >&2
    die "the writer failed"
  fi
  WRITER_PID=""
  grep -E 'requests:|per second|latency' "$TMP/writer.out" |
    sed 's/^ */bench:   writer /' >&2
  rep=$((rep + 1))
done
summarize "$RES/writes.tokend" >"$RES/writes.tokend.sum"
row "verify c=16 P=1, $WRITE_RATE issue+$WRITE_RATE revoke/s" \
  "$(cat "$RES/writes.tokend.sum")" "- - - -"

# ---- target 6: Issue throughput (synchronous=FULL, group commit) ----
log "issue c=16 P=1"
: >"$RES/issue.tokend"
rep=0
while [ $rep -lt "$REPS" ]; do
  fresh_tokend
  tokend_run "$RES/issue.tokend" -c 16 -P 1 -n "$(n_of 30000)" -t issue \
    --tokens 0
  rep=$((rep + 1))
done
summarize "$RES/issue.tokend" >"$RES/issue.tokend.sum"
row "issue c=16 P=1 (synchronous=FULL)" "$(cat "$RES/issue.tokend.sum")" \
  "- - - -"

# ---- targets 4 and 5: 1,000,000 tokens (BENCH_LARGE=1) ----
if [ "$LARGE" = 1 ]; then
  if [ "$HAVE_REDIS" = 1 ]; then
    stop_pid "$REDIS_PID"
    REDIS_PID=""
  fi
  # warm-up first verifies each token once (the first Verify of a token
  # also computes its keyed BLAKE2b, enters it in the verify cache and
  # queues its first last_used_at write); --settle-ms lets tokend write
  # those back; the REPS verify runs then measure tokend with its tokens in
  # use (each token's next last_used_at write is due a minute later).
  tests=warm-up
  rep=0
  while [ $rep -lt "$REPS" ]; do
    tests=$tests,verify
    rep=$((rep + 1))
  done
  for size in $TOKENS $LARGE_TOKENS; do
    fresh_tokend
    rss0=$(awk '/^VmRSS/ { print $2 }' "/proc/$TOKEND_PID/status")
    log "verify c=16 P=1 drawing on $size tokens (issuing them first)"
    : >"$RES/size-$size.all"
    # One process, so that the verifies draw on every token it issued.
    tokend_run "$RES/size-$size.all" -c 16 -P 1 -n "$(n_of 200000)" \
      -t "$tests" --tokens "$size" --settle-ms "$SETTLE_MS"
    rss1=$(awk '/^VmRSS/ { print $2 }' "/proc/$TOKEND_PID/status")
    head -n 1 "$RES/size-$size.all" >"$RES/size-$size.cold"
    tail -n +2 "$RES/size-$size.all" >"$RES/size-$size.tokend"
    summarize "$RES/size-$size.tokend" >"$RES/size-$size.tokend.sum"
    row "verify c=16 P=1, $size tokens, 1st verify" \
      "$(cat "$RES/size-$size.cold")" "- - - -"
    row "verify c=16 P=1, $size tokens, in use" \
      "$(cat "$RES/size-$size.tokend.sum")" "- - - -"
  done
  # Target 5, on the tokend that now holds LARGE_TOKENS tokens, every one
  # of them verified (so the verify cache is full too).
  echo $(((rss1 - rss0) * 1024 / LARGE_TOKENS)) >"$RES/rss-per-token"
  stop_tokend
  t0=$(date +%s%N)
  start_tokend "$TMP/tokend"
  t1=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", (b - a) / 1e9 }' \
    >"$RES/startup-s"
fi

log "done; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the table and the verdicts ----
echo
printf '%-42s %10s %10s %6s %9s %9s %8s %8s\n' scenario "tokend rps" \
  "redis rps" ratio "tokend" "redis" "tokend" "redis"
printf '%-42s %10s %10s %6s %9s %9s %8s %8s\n' "" "" "" "" "p99 us" \
  "p99 us" "cpu us" "cpu us"
cat "$TABLE"
echo
# check LABEL AWK_CONDITION DETAIL
check() {
  awk -v l="$1" -v d="$3" "BEGIN { printf \"%s: %s %s\\n\", l, d, ($2) ? \"PASS\" : \"FAIL\" }"
}
if [ "$HAVE_REDIS" = 1 ]; then
  for cp in c1-P1 c1-P1.pin c1-P1.busy c16-P1 c16-P32; do
    what=$cp r_sum=$RES/$cp.redis.sum
    case $cp in
    *.busy)
      what="c1-P1 with --busy-poll-us $BUSY_POLL_US"
      read -r t_rps _ _ _ <"$RES/$cp.sum"
      r_sum=$RES/c1-P1.redis.sum
      ;;
    *.pin)
      [ "$HAVE_TASKSET" = 1 ] || continue
      what="c1-P1, each pinned to one CPU with its client"
      read -r t_rps _ _ _ <"$RES/$cp.tokend.sum"
      ;;
    *) read -r t_rps _ _ _ <"$RES/$cp.tokend.sum" ;;
    esac
    read -r r_rps _ _ _ <"$r_sum"
    check "target 1, verify rps >= GET rps, $what" "$t_rps >= $r_rps" \
      "$(awk -v a="$t_rps" -v b="$r_rps" 'BEGIN { printf "%.2fx", a / b }')"
  done
  read -r _ _ t_p99 _ <"$RES/c16-P1.tokend.sum"
  read -r _ _ r_p99 _ <"$RES/c16-P1.redis.sum"
  check "target 2, verify p99 <= 1.5x GET p99, c16-P1" \
    "$t_p99 <= 1.5 * $r_p99" \
    "$(awk -v a="$t_p99" -v b="$r_p99" 'BEGIN { printf "%.2fx", a / b }')"
else
  echo "targets 1, 2: redis-server is not installed: no comparison"
fi
read -r _ _ u_p99 _ <"$RES/writes.tokend.sum"
check "target 3, verify p99 < 1000 us under writes" "$u_p99 < 1000" \
  "$u_p99 us"
if [ "$LARGE" = 1 ]; then
  read -r _ s_p50 s_p99 _ <"$RES/size-$TOKENS.tokend.sum"
  read -r _ l_p50 l_p99 _ <"$RES/size-$LARGE_TOKENS.tokend.sum"
  read -r _ c_p50 _ _ <"$RES/size-$LARGE_TOKENS.cold"
  check "target 4, verify p50 at 1M tokens within 10% of 10k (in use)" \
    "$l_p50 <= 1.1 * $s_p50" \
    "p50 $l_p50 vs $s_p50 us, p99 $l_p99 vs $s_p99 us; 1st verify at 1M: p50 $c_p50 us"
  rss=$(cat "$RES/rss-per-token")
  up=$(cat "$RES/startup-s")
  check "target 5, <= 256 B RSS per token and start-up <= 3 s at 1M" \
    "$rss <= 256 && $up <= 3" "$rss B/token, start-up $up s"
else
  echo "targets 4, 5: skipped (BENCH_LARGE=1 runs them)"
fi
read -r i_rps _ _ _ <"$RES/issue.tokend.sum"
check "target 6, issue >= 10000/s at c=16" "$i_rps >= 10000" "$i_rps/s"
