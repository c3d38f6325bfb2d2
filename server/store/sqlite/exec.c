/* exec.c: one-shot SQL on a connection, and SQLite's result codes as
 * tokend errors (store/sqlite/exec.h). */
#include "store/sqlite/exec.h"

#include <stddef.h>

#include "tokend_error.h"

int store_sqlite_map_rc(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_DONE:
  case SQLITE_ROW:
    return 0;
  case SQLITE_CONSTRAINT:
    return TOKEND_EEXIST;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
  case SQLITE_FULL:
  case SQLITE_IOERR:
  case SQLITE_READONLY:
  case SQLITE_CANTOPEN:
  case SQLITE_PROTOCOL:
    return TOKEND_EUNAVAIL;
  case SQLITE_NOMEM:
    return TOKEND_ENOMEM;
  default:
    return TOKEND_ESTORE;
  }
}

int store_sqlite_query_int(sqlite3 *db, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;
  int rc;

  rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return store_sqlite_map_rc(rc);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    *out = sqlite3_column_int64(st, 0);
  else if (rc == SQLITE_DONE)
    *out = 0;
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_sqlite_map_rc(rc);
}

int store_sqlite_exec(sqlite3 *db, const char *sql) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : store_sqlite_map_rc(rc);
}
