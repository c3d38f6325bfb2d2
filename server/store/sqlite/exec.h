/* exec: one-shot SQL on an SQLite connection, and SQLite's result codes as
 * tokend errors; shared by the backend (store_sqlite.c) and its migrations
 * (migrate.c). Connection only: no store state. */
#ifndef TOKEND_STORE_SQLITE_EXEC_H
#define TOKEND_STORE_SQLITE_EXEC_H

#include <sqlite3.h>
#include <stdint.h>

/* The tokend error for an SQLite result code (primary or extended): 0 for
 * OK, DONE and ROW; TOKEND_EEXIST for a constraint; TOKEND_EUNAVAIL for
 * busy, locked, full, I/O, read-only, cannot open, protocol;
 * TOKEND_ENOMEM; TOKEND_ESTORE for anything else. */
int store_sqlite_map_rc(int rc);

/* Runs a one-row query or pragma on db; *out gets its first column (0 if
 * it has no row). 0 or a mapped error (sqlite3_errmsg(db) says why). */
int store_sqlite_query_int(sqlite3 *db, const char *sql, int64_t *out);

/* Runs sql (one or more statements, no rows wanted) on db: 0 or a mapped
 * error (sqlite3_errmsg(db) says why). */
int store_sqlite_exec(sqlite3 *db, const char *sql);

#endif
