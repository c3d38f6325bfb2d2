#!/bin/sh
# HTTP forward-auth throughput: wrk at c=16 with keep-alive against
# tokend's GET /verify (a valid token, --http-listen 127.0.0.1 with
# --http-tcp-verify) and against nginx answering a static 204 on the same
# machine (one worker, as tokend has one loop thread), alternating for
# ROUNDS rounds. Prints every run, the median of each and their ratio
# (tokend / nginx).
#
# usage: scripts/bench-http.sh [BUILD_DIR]     (default: build)
# Environment: ROUNDS (default 5), SECONDS_PER_RUN (default 5), THREADS
# (wrk threads, default 1), CONNS (default 16).
# Needs wrk and nginx (Debian packages: apt-get install wrk nginx).
# Stops only the processes it started (by PID).
set -eu

BUILD=${1:-build}
ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_PER_RUN:-5}
THREADS=${THREADS:-1}
CONNS=${CONNS:-16}
NGINX=/usr/sbin/nginx
for bin in wrk "$NGINX"; do
  command -v "$bin" >/dev/null 2>&1 ||
    { echo "bench-http: $bin is missing (apt-get install wrk nginx)" >&2; exit 1; }
done
TMP=$(mktemp -d /tmp/tokend-bench-http.XXXXXX)
TPID=""
NPID=""

cleanup() {
  for p in $TPID $NPID; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# A free loopback port: bind to 0 and read it back.
free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

TPORT=$(free_port)
"$BUILD/tokend" --socket "$TMP/s" --db "$TMP/db" --create-db \
  --pepper-file "$TMP/p" --log-level warn \
  --http-listen "127.0.0.1:$TPORT" --http-tcp-verify >"$TMP/tokend.log" 2>&1 &
TPID=$!
i=0
until [ -S "$TMP/s" ] && TOKEN=$("$BUILD/tokenctl" --socket "$TMP/s" issue \
  --domain bench.example --label bench 2>/dev/null |
  grep -o '[a-z0-9]*_[A-Za-z0-9]\{30,\}' | head -n 1) && [ -n "$TOKEN" ]; do
  i=$((i + 1))
  [ $i -lt 1000 ] || { echo "bench-http: tokend did not start" >&2; exit 1; }
  sleep 0.01
done

NPORT=$(free_port)
mkdir -p "$TMP/nginx"
USER_LINE=""
[ "$(id -u)" -ne 0 ] || USER_LINE="user root;"
cat >"$TMP/nginx/nginx.conf" <<CONF
$USER_LINE
daemon off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NPORT;
    location / { return 204; }
  }
}
CONF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" &
NPID=$!
i=0
until wrk -t 1 -c 1 -d 1 "http://127.0.0.1:$NPORT/" >/dev/null 2>&1; do
  i=$((i + 1))
  [ $i -lt 100 ] || { echo "bench-http: nginx did not start" >&2; exit 1; }
  sleep 0.1
done

# run NAME URL [HEADER]: one wrk run; appends "NAME rps" to $TMP/runs.
run() {
  if [ $# -eq 3 ]; then
    out=$(wrk -t "$THREADS" -c "$CONNS" -d "${SECS}s" -H "$3" "$2")
  else
    out=$(wrk -t "$THREADS" -c "$CONNS" -d "${SECS}s" "$2")
  fi
  # Any non-2xx answer makes the run meaningless.
  if echo "$out" | grep -q 'Non-2xx'; then
    echo "bench-http: $1 answered non-2xx:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "$out" | awk -v n="$1" '/^Requests\/sec/ { printf "%s %.0f\n", n, $2 }' |
    tee -a "$TMP/runs"
}

echo "bench-http: $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg), $ROUNDS rounds of ${SECS}s, wrk -t $THREADS -c $CONNS"
r=1
while [ $r -le "$ROUNDS" ]; do
  if [ $((r % 2)) -eq 1 ]; then
    run nginx "http://127.0.0.1:$NPORT/"
    run tokend "http://127.0.0.1:$TPORT/verify" "Authorization: Bearer $TOKEN"
  else
    run tokend "http://127.0.0.1:$TPORT/verify" "Authorization: Bearer $TOKEN"
    run nginx "http://127.0.0.1:$NPORT/"
  fi
  r=$((r + 1))
done
med() {
  awk -v w="$1" '$1 == w { print $2 }' "$TMP/runs" | sort -n |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
t=$(med tokend)
n=$(med nginx)
echo "median rps: tokend /verify $t, nginx static 204 $n, ratio tokend/nginx $(awk -v t="$t" -v n="$n" 'BEGIN { printf "%.3f", t / n }')"
