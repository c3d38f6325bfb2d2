/* migrate.c: the SQLite backend's schema, as forward migrations from an
 * empty file to STORE_SCHEMA_VERSION (store/sqlite/migrate.h). */
#include "store/sqlite/migrate.h"

#include <stdio.h>
#include <string.h>

#include "store/sqlite/exec.h"
#include "tokend_error.h"

/* PRAGMA application_id: "tknd". Marks a database file as tokend's. */
#define STORE_APPLICATION_ID 0x746b6e64

/* Forward migrations: migrations[i] takes schema version i to i + 1. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE tokens ("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  domain TEXT NOT NULL,"
    "  label TEXT NOT NULL,"
    "  hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),"
    "  hint TEXT NOT NULL,"
    "  scopes TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL DEFAULT 0,"
    "  last_used_at INTEGER NOT NULL DEFAULT 0,"
    "  revoked_at INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX tokens_domain_seq ON tokens (domain, seq);",
    /* 1 -> 2: who did what (domain admins, audit log, Verify counters). */
    "ALTER TABLE tokens ADD COLUMN created_by TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tokens ADD COLUMN revoked_by TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX tokens_domain_creator ON tokens (domain, created_by);"
    "CREATE TABLE domain_admins ("
    "  domain TEXT NOT NULL,"
    "  user_name TEXT NOT NULL,"
    "  granted_at INTEGER NOT NULL,"
    "  granted_by TEXT NOT NULL,"
    "  PRIMARY KEY (domain, user_name)"
    ") WITHOUT ROWID;"
    "CREATE TABLE audit_events ("
    "  id INTEGER PRIMARY KEY,"
    "  at INTEGER NOT NULL,"
    "  peer_uid INTEGER NOT NULL,"
    "  peer_pid INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  break_glass INTEGER NOT NULL,"
    "  domain TEXT NOT NULL,"
    "  token_id TEXT NOT NULL,"
    "  method TEXT NOT NULL,"
    "  code INTEGER NOT NULL,"
    "  detail TEXT NOT NULL"
    ");"
    "CREATE INDEX audit_domain_id ON audit_events (domain, id);"
    /* Append-only: history cannot be rewritten through tokend's schema. */
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    "CREATE TABLE verify_counts ("
    "  domain TEXT PRIMARY KEY,"
    "  valid INTEGER NOT NULL DEFAULT 0,"
    "  invalid INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL"
    ") WITHOUT ROWID;",
    /* 2 -> 3: migration_v3 (below), after migrate_v3_collisions(). */
    NULL,
    /* 3 -> 4: the audit log becomes tamper-evident and aggregates refusals.
     * count: how many calls a row stands for (refusals of one kind within
     * --refusal-audit-interval-ms share a row). hash: a keyed BLAKE2b over
     * the row and the previous row's hash (store_audit_key_set), so that a
     * row changed, removed, inserted or reordered by whoever can write the
     * file breaks the chain. The rows already there are chained in order on
     * the first start with the key: legacy_upto names the last of them, and
     * no row after it is ever chained but by an append. INSERT OR REPLACE
     * deletes a row without firing the delete trigger: a row may never be
     * inserted over an existing id. Uses nothing step 3 adds. */
    "ALTER TABLE audit_events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE audit_events ADD COLUMN hash BLOB;"
    "CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events"
    " WHEN EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id)"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    "CREATE TABLE audit_chain ("
    "  one INTEGER PRIMARY KEY CHECK (one = 1),"
    "  legacy_upto INTEGER NOT NULL,"
    "  chained INTEGER NOT NULL"
    ");"
    "INSERT INTO audit_chain (one, legacy_upto, chained)"
    " SELECT 1, coalesce(max(id), 0), 0 FROM audit_events;",
    /* 4 -> 5: audit retention (--audit-retention-days). keep_ms: rows
     * older than this may be deleted, and only those (0: none, the
     * default); removed_upto and removed_hash: the newest row removed and
     * its chain hash, which the chain goes on from. Written to run again
     * over a database a downgrade left with it. */
    "CREATE TABLE IF NOT EXISTS audit_retention ("
    "  one INTEGER PRIMARY KEY CHECK (one = 1),"
    "  keep_ms INTEGER NOT NULL,"
    "  removed_upto INTEGER NOT NULL,"
    "  removed_hash BLOB"
    ");"
    "INSERT OR IGNORE INTO audit_retention (one, keep_ms, removed_upto)"
    " VALUES (1, 0, 0);"
    "DROP TRIGGER IF EXISTS audit_events_no_delete;"
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events"
    " WHEN (SELECT keep_ms FROM audit_retention) = 0"
    "  OR OLD.at >= CAST(strftime('%s', 'now') AS INTEGER) * 1000"
    "   - (SELECT keep_ms FROM audit_retention)"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only (rows older "
    "than --audit-retention-days excepted)'); END;",
    /* 5 -> 6: issue 17's token record. metadata: the token's JSON object
     * ('' for none), returned by Verify; rolled_from/rolled_to: the ids of
     * the token a Roll replaced and of the one that replaced it;
     * pepper_gen: which pepper generation keyed the hash (pepper
     * rotation). domain_policies: an operator's limits on a domain's
     * tokens (allowed_scopes space-separated like tokens.scopes, '' for
     * any; 0 for no limit). */
    "ALTER TABLE tokens ADD COLUMN metadata TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tokens ADD COLUMN rolled_from TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tokens ADD COLUMN rolled_to TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tokens ADD COLUMN pepper_gen INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE domain_policies ("
    "  domain TEXT PRIMARY KEY,"
    "  max_lifetime_ms INTEGER NOT NULL DEFAULT 0,"
    "  require_expiry INTEGER NOT NULL DEFAULT 0,"
    "  allowed_scopes TEXT NOT NULL DEFAULT '',"
    "  max_active_tokens INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL,"
    "  updated_by TEXT NOT NULL"
    ") WITHOUT ROWID;",
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

/* A domain as schema 3 keeps it: lower case, and without the one trailing
 * dot that schema 2 accepted ("example.com." is the fully qualified
 * spelling of "example.com"), for validate_domain now refuses it, so a domain
 * left with it could be verified but never listed, revoked or granted again).
 */
#define DOMAIN_V3                                                              \
  "(CASE WHEN length(domain) > 1 AND substr(domain, -1) = '.'"                 \
  " THEN substr(lower(domain), 1, length(domain) - 1)"                         \
  " ELSE lower(domain) END)"
#define UPDATE_DOMAIN_V3(table)                                                \
  "UPDATE " table " SET domain = " DOMAIN_V3 " WHERE domain <> " DOMAIN_V3 ";"

/* 2 -> 3: a key/value table for facts about the database itself (the
 * fingerprint of its pepper), and domains as DOMAIN_V3 spells them: DNS
 * names are case-insensitive, so "Example.com", "example.com." and
 * "example.com" are one tenant. Only the live tables are rewritten; the
 * audit log is append-only and keeps each row as it was written.
 * migrate_v3_collisions() first refuses to merge domains that differ only
 * by case or that trailing dot. */
static const char migration_v3[] =
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value BLOB NOT NULL"
    ") WITHOUT ROWID;" UPDATE_DOMAIN_V3("tokens")
        UPDATE_DOMAIN_V3("domain_admins") UPDATE_DOMAIN_V3("verify_counts");

/* Each row: the spellings of one domain that differ only by case or a
 * trailing dot. */
#define DOMAIN_COLLISIONS_SQL                                                  \
  "SELECT group_concat(domain, ' and ') FROM"                                  \
  " (SELECT domain FROM tokens UNION SELECT domain FROM domain_admins"         \
  "  UNION SELECT domain FROM verify_counts)"                                  \
  " GROUP BY " DOMAIN_V3 " HAVING count(*) > 1"                                \
  " ORDER BY " DOMAIN_V3

/* Refuses a migration that would merge tenants: says what to do, then
 * lists the domains that differ only by case or a trailing dot (as many as
 * fit in why). */
static int migrate_v3_collisions(sqlite3 *db, char *why, size_t why_len) {
  sqlite3_stmt *st = NULL;
  char list[768];
  size_t off = 0;
  int rc, n = 0;

  list[0] = '\0';
  rc = sqlite3_prepare_v2(db, DOMAIN_COLLISIONS_SQL, -1, &st, NULL);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    rc = SQLITE_OK;
    if (off < sizeof(list))
      off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
                              n > 0 ? "; " : "", sqlite3_column_text(st, 0));
    n++;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    snprintf(why, why_len,
             "cannot look for domains that differ by case or a trailing "
             "dot: %s",
             sqlite3_errmsg(db));
    return store_sqlite_map_rc(rc);
  }
  if (n == 0)
    return 0;
  snprintf(why, why_len,
           "domains are now case-insensitive and without a trailing dot, "
           "and %d group(s) of domains differ only by case or a trailing "
           "dot; tokend will not merge tenants silently: "
           "rename or revoke all but one of each (e.g. with sqlite3, after a "
           "backup) and start again: %s",
           n, list);
  return TOKEND_ECONFIG;
}

int store_sqlite_migrate(sqlite3 *db, int read_only, char *why,
                         size_t why_len) {
  int64_t app_id, version, n_tables;
  char sql[64];
  size_t v;
  int err;

  /* The first read of a file that is not SQLite fails here (SQLITE_NOTADB). */
  if (store_sqlite_query_int(db, "SELECT count(*) FROM sqlite_master",
                             &n_tables) != 0) {
    snprintf(why, why_len, "not a tokend database: %s", sqlite3_errmsg(db));
    return TOKEND_ECONFIG;
  }
  if (store_sqlite_query_int(db, "PRAGMA application_id", &app_id) != 0 ||
      store_sqlite_query_int(db, "PRAGMA user_version", &version) != 0) {
    snprintf(why, why_len, "cannot read schema version: %s",
             sqlite3_errmsg(db));
    return TOKEND_ESTORE;
  }
  if (app_id != STORE_APPLICATION_ID && !(app_id == 0 && n_tables == 0)) {
    snprintf(why, why_len, "not a tokend database (application_id %lld)",
             (long long)app_id);
    return TOKEND_ECONFIG;
  }
  if (version > STORE_SCHEMA_VERSION) {
    snprintf(why, why_len,
             "database schema version %lld is from a newer tokend (this build "
             "knows up to %d); refusing to touch it",
             (long long)version, STORE_SCHEMA_VERSION);
    return TOKEND_ECONFIG;
  }
  if (version == STORE_SCHEMA_VERSION)
    return 0;
  if (read_only) {
    snprintf(why, why_len,
             "database schema version %lld needs migrating to %d, which "
             "--read-only forbids; start tokend once without --read-only",
             (long long)version, STORE_SCHEMA_VERSION);
    return TOKEND_ECONFIG;
  }

  if ((err = store_sqlite_exec(db, "BEGIN IMMEDIATE")) != 0)
    goto err_why;
  for (v = (size_t)version; v < N_MIGRATIONS; v++) {
    /* 2 -> 3 lower-cases domains: first refuse to merge case variants. */
    if (v == 2 && (err = migrate_v3_collisions(db, why, why_len)) != 0) {
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
      return err;
    }
    if ((err = store_sqlite_exec(db, v == 2 ? migration_v3 : migrations[v])) !=
        0)
      goto err_rollback;
  }
  snprintf(sql, sizeof(sql),
           "PRAGMA application_id = %d; PRAGMA user_version = %d",
           STORE_APPLICATION_ID, STORE_SCHEMA_VERSION);
  if ((err = store_sqlite_exec(db, sql)) != 0)
    goto err_rollback;
  if ((err = store_sqlite_exec(db, "COMMIT")) != 0)
    goto err_rollback;
  return 0;

err_rollback:
  snprintf(why, why_len, "migration to schema version %zu failed: %s", v + 1,
           sqlite3_errmsg(db));
  sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return err;
err_why:
  snprintf(why, why_len, "cannot start migration: %s", sqlite3_errmsg(db));
  return err;
}
