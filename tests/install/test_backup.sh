#!/bin/sh
# test_backup.sh BUILD_DIR: docs/OPERATIONS.md's SQLite backup and restore,
# as written there, on a tokend that is writing meanwhile:
#   - `sqlite3 tokend.db ".backup FILE"` while tokenctl issues tokens one
#     after another gives a copy that passes PRAGMA integrity_check;
#   - that copy, restored into a new directory with the pepper, starts, and
#     every token it holds verifies, in issue order: the copy is exactly the
#     tokens committed before it (the first N issued), so the token issued
#     next, when there is one, is UNKNOWN to it.
set -eu
BUILD=$1
B=$(cd "$BUILD" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/tokend-backup.XXXXXX")
PID= LOOP=
cleanup() {
  [ -z "$LOOP" ] || kill "$LOOP" 2>/dev/null || true
  [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
# serve DIR SOCKET [--create-db]: a tokend on DIR's database and pepper.
serve() {
  "$B/tokend" --socket "$2" --db "$1/tokend.db" --pepper-file "$1/pepper" \
    --log-level warn ${3:-} 2>>"$T/tokend.log" &
  PID=$!
  until "$B/tokenctl" --socket "$2" whoami >/dev/null 2>&1; do
    kill -0 "$PID" 2>/dev/null || { cat "$T/tokend.log" >&2; fail "tokend exited"; }
    sleep 0.05
  done
}
stop() {
  kill "$PID"
  wait "$PID" || fail "tokend exited $? on SIGTERM"
  PID=
}

mkdir -m 0700 "$T/live" "$T/restored"
serve "$T/live" "$T/live.sock" --create-db
# Issue until told to stop; each token is on its line once issued.
(
  i=0
  while [ ! -e "$T/stop" ] && [ "$i" -lt 2000 ]; do
    i=$((i + 1))
    "$B/tokenctl" --socket "$T/live.sock" issue --domain backup.example \
      --label "t$i" >>"$T/tokens" 2>/dev/null || exit 1
  done
) &
LOOP=$!
# Back up once some tokens are in (a condition), while the loop goes on.
until [ "$(wc -l <"$T/tokens" 2>/dev/null || echo 0)" -ge 50 ]; do
  kill -0 "$LOOP" 2>/dev/null || fail "the issue loop ended early"
  sleep 0.05
done
sqlite3 "$T/live/tokend.db" ".backup $T/backup.db" || fail "sqlite3 .backup"
ISSUED_AT_BACKUP_END=$(wc -l <"$T/tokens")
touch "$T/stop"
wait "$LOOP" || fail "issuing failed"
LOOP=
stop

[ "$(sqlite3 "$T/backup.db" 'PRAGMA integrity_check')" = ok ] ||
  fail "the backup fails PRAGMA integrity_check"
N=$(sqlite3 "$T/backup.db" 'SELECT count(*) FROM tokens')
# (one more than the lines counted: an Issue may have committed before the
# copy's snapshot and not yet printed its token)
[ "$N" -ge 50 ] && [ "$N" -le $((ISSUED_AT_BACKUP_END + 1)) ] ||
  fail "the backup holds $N tokens; 50 to $((ISSUED_AT_BACKUP_END + 1)) were committed"

# Restore as OPERATIONS.md says: the copy and the pepper in a new directory.
cp "$T/backup.db" "$T/restored/tokend.db"
cp "$T/live/pepper" "$T/restored/pepper"
chmod 0600 "$T/restored/tokend.db" "$T/restored/pepper"
serve "$T/restored" "$T/restored.sock"
i=0
while read -r tok; do
  i=$((i + 1))
  if [ "$i" -le "$N" ]; then
    echo "$tok" | "$B/tokenctl" --socket "$T/restored.sock" verify >/dev/null ||
      fail "token $i of the $N in the backup does not verify after restore"
  else
    rc=0
    out=$(echo "$tok" | "$B/tokenctl" --socket "$T/restored.sock" verify 2>&1) || rc=$?
    [ "$rc" = 1 ] && case $out in *UNKNOWN*) true ;; *) false ;; esac ||
      fail "token $i, issued after the backup, gave exit $rc: $out"
    break
  fi
done <"$T/tokens"
stop
echo "backup: $N tokens in a copy taken while issuing; all verify after restore"
