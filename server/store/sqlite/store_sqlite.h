/* store_sqlite: the SQLite backend of store.h, for one host: one database
 * file (WAL mode, synchronous=FULL), URL "sqlite:PATH" (":memory:" for a
 * database that lives only as long as the store; tests and the fuzzer).
 * Everything the rest of the server needs goes through store_ops; this
 * header adds only what the registry and SQLite-specific tests name. */
#ifndef TOKEND_STORE_SQLITE_H
#define TOKEND_STORE_SQLITE_H

#include "store/backends.h"
#include "store/sqlite/migrate.h" /* STORE_SCHEMA_VERSION */
#include "store/store.h"

/* store_sqlite_backend, for the registry, is declared in backends.h. */

/* Closes and opens store's connection again, as the backend does by itself
 * on the next call after a commit in doubt (tests use it to make that
 * happen on demand). Only the first open may create the file, so a reopen
 * never makes a new, empty file where the database was. On failure the
 * store has no connection (every call then tries again) and store_errmsg()
 * says "reopen: <why>". store must be a store of this backend. */
int store_sqlite_reopen(store_t *store) TOKEND_MUST_CHECK;

#endif
