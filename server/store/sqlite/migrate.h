/* migrate: the SQLite backend's schema. A tokend database carries PRAGMA
 * application_id "tknd" and its schema version in PRAGMA user_version;
 * migrations take it forward one version at a time, all in one
 * transaction, so a failed migration leaves the file as it was. */
#ifndef TOKEND_STORE_SQLITE_MIGRATE_H
#define TOKEND_STORE_SQLITE_MIGRATE_H

#include <sqlite3.h>
#include <stddef.h>

/* Schema version this build writes (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 6

/* Checks that db (just opened) is empty or a tokend database of a version
 * this build knows, and migrates it to STORE_SCHEMA_VERSION. read_only:
 * a database that needs migrating is refused instead. 0, or
 * TOKEND_ECONFIG (not a tokend database, from a newer tokend, needs a
 * migration read_only forbids, or domains that differ only by case, which
 * schema 3 would merge), TOKEND_ESTORE or a mapped SQLite error; why gets
 * a one-line reason. */
int store_sqlite_migrate(sqlite3 *db, int read_only, char *why, size_t why_len);

#endif
