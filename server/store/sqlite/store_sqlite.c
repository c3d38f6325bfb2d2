/* store_sqlite.c: the SQLite backend of store.h (scheme "sqlite:PATH").
 *
 * WAL mode with synchronous=FULL: a committed transaction survives a crash
 * of the process or the machine. Every statement is prepared once at open
 * and finalized at close; every SQLite result code is checked. */
#include "store/sqlite/store_sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/audit_chain.h"
#include "store/sqlite/exec.h"
#include "store/sqlite/migrate.h"

#define META_PEPPER_FINGERPRINT "pepper_fingerprint"

#define TOKEN_COLUMNS                                                          \
  "seq, id, domain, label, hint, scopes, hash, created_at, expires_at,"        \
  " last_used_at, revoked_at, created_by, revoked_by, metadata, rolled_from,"  \
  " rolled_to, pepper_gen"
#define AUDIT_COLUMNS                                                          \
  "id, at, peer_uid, peer_pid, actor, break_glass, domain, token_id, method,"  \
  " code, detail, count, hash"

#define STMT_MAP(XX)                                                           \
  XX(load, "SELECT " TOKEN_COLUMNS " FROM tokens ORDER BY seq")                \
  XX(insert,                                                                   \
     "INSERT INTO tokens (id, domain, label, hash, hint, scopes,"              \
     " created_at, expires_at, created_by, metadata, rolled_from,"             \
     " rolled_to, pepper_gen)"                                                 \
     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")       \
  XX(revoke_set, "UPDATE tokens SET revoked_at = ?3, revoked_by = ?4"          \
                 " WHERE domain = ?1 AND id = ?2 AND revoked_at = 0")          \
  XX(revoke_get, "SELECT revoked_at, hash FROM tokens"                         \
                 " WHERE domain = ?1 AND id = ?2")                             \
  XX(touch, "UPDATE tokens SET last_used_at = ?2"                              \
            " WHERE hash = ?1 AND last_used_at < ?2")                          \
  XX(list, "SELECT " TOKEN_COLUMNS " FROM tokens"                              \
           " WHERE domain = ?1 AND seq < ?2 AND (?3 OR revoked_at = 0)"        \
           " ORDER BY seq DESC LIMIT ?4")                                      \
  XX(admin_insert, "INSERT INTO domain_admins (domain, user_name, granted_at," \
                   " granted_by) VALUES (?1, ?2, ?3, ?4)"                      \
                   " ON CONFLICT (domain, user_name) DO NOTHING")              \
  XX(admin_get, "SELECT granted_at FROM domain_admins"                         \
                " WHERE domain = ?1 AND user_name = ?2")                       \
  XX(admin_delete, "DELETE FROM domain_admins"                                 \
                   " WHERE domain = ?1 AND user_name = ?2")                    \
  XX(admin_revoke_tokens, "UPDATE tokens SET revoked_at = ?3, revoked_by = ?4" \
                          " WHERE domain = ?1 AND created_by = ?2"             \
                          " AND revoked_at = 0 RETURNING hash")                \
  XX(admin_load, "SELECT domain, user_name, granted_at, granted_by"            \
                 " FROM domain_admins")                                        \
  XX(audit_insert, "INSERT INTO audit_events (at, peer_uid, peer_pid, actor,"  \
                   " break_glass, domain, token_id, method, code, detail,"     \
                   " count, id, hash)"                                         \
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"    \
                   " ?12, ?13)")                                               \
  XX(audit_head, "SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1") \
  XX(audit_walk, "SELECT " AUDIT_COLUMNS " FROM audit_events"                  \
                 " WHERE id > ?1 ORDER BY id")                                 \
  XX(audit_list, "SELECT " AUDIT_COLUMNS " FROM audit_events"                  \
                 " WHERE (?1 = '' OR domain = ?1) AND at >= ?2 AND id < ?3"    \
                 " ORDER BY id DESC LIMIT ?4")                                 \
  XX(counts_add, "INSERT INTO verify_counts (domain, valid, invalid,"          \
                 " updated_at) VALUES (?1, ?2, ?3, ?4)"                        \
                 " ON CONFLICT (domain) DO UPDATE SET"                         \
                 " valid = valid + excluded.valid,"                            \
                 " invalid = invalid + excluded.invalid,"                      \
                 " updated_at = excluded.updated_at")                          \
  XX(token_by_id, "SELECT " TOKEN_COLUMNS " FROM tokens"                       \
                  " WHERE domain = ?1 AND id = ?2")                            \
  XX(revoked_with,                                                             \
     "SELECT hash FROM tokens WHERE domain = ?1"                               \
     " AND created_by = ?2 AND revoked_at = ?3 AND revoked_by = ?4")           \
  XX(counts_load, "SELECT domain, valid, invalid, updated_at"                  \
                  " FROM verify_counts ORDER BY domain")                       \
  XX(token_import,                                                             \
     "INSERT INTO tokens (" TOKEN_COLUMNS ") VALUES (?1, ?2,"                  \
     " ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"              \
     " ?16, ?17)")                                                             \
  XX(audit_import, "INSERT INTO audit_events (" AUDIT_COLUMNS ") SELECT ?1,"   \
                   " ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13"       \
                   " WHERE NOT EXISTS (SELECT 1 FROM audit_events"             \
                   " WHERE id >= ?1)")                                         \
  XX(counts_import, "INSERT INTO verify_counts (domain, valid, invalid,"       \
                    " updated_at) VALUES (?1, ?2, ?3, ?4)")                    \
  /* issue 17: the token record */                                             \
  XX(token_update, "UPDATE tokens SET label = ?3, scopes = ?4, metadata = ?5," \
                   " expires_at = ?6, rolled_from = ?7, rolled_to = ?8"        \
                   " WHERE domain = ?1 AND id = ?2")                           \
  XX(list_expiring, "SELECT " TOKEN_COLUMNS " FROM tokens"                     \
                    " WHERE domain = ?1 AND seq < ?2 AND revoked_at = 0"       \
                    " AND expires_at > ?3 AND expires_at <= ?4"                \
                    " ORDER BY seq DESC LIMIT ?5")                             \
  /* issue 17: revocation in bulk; ?2 is the store_bulk_by_t (not IDS) */      \
  XX(bulk_revoke, "UPDATE tokens SET revoked_at = ?5, revoked_by = ?6"         \
                  " WHERE domain = ?1 AND revoked_at = 0 AND (?2 = 2"          \
                  " OR (?2 = 1 AND created_by = ?3)"                           \
                  " OR (?2 = 3 AND created_at < ?4)) RETURNING id, hash")      \
  XX(bulk_already, "SELECT count(*) FROM tokens"                               \
                   " WHERE domain = ?1 AND revoked_at <> 0 AND (?2 = 2"        \
                   " OR (?2 = 1 AND created_by = ?3)"                          \
                   " OR (?2 = 3 AND created_at < ?4))")                        \
  XX(revoked_at_by, "SELECT id, hash FROM tokens WHERE domain = ?1"            \
                    " AND revoked_at = ?2 AND revoked_by = ?3")                \
  /* issue 17: domain policies */                                              \
  XX(policy_get, "SELECT max_lifetime_ms, require_expiry, allowed_scopes,"     \
                 " max_active_tokens, updated_at, updated_by"                  \
                 " FROM domain_policies WHERE domain = ?1")                    \
  XX(policy_set,                                                               \
     "INSERT INTO domain_policies (domain, max_lifetime_ms,"                   \
     " require_expiry, allowed_scopes, max_active_tokens,"                     \
     " updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"            \
     " ON CONFLICT (domain) DO UPDATE SET"                                     \
     " max_lifetime_ms = excluded.max_lifetime_ms,"                            \
     " require_expiry = excluded.require_expiry,"                              \
     " allowed_scopes = excluded.allowed_scopes,"                              \
     " max_active_tokens = excluded.max_active_tokens,"                        \
     " updated_at = excluded.updated_at,"                                      \
     " updated_by = excluded.updated_by")                                      \
  XX(policy_load, "SELECT max_lifetime_ms, require_expiry, allowed_scopes,"    \
                  " max_active_tokens, updated_at, updated_by, domain"         \
                  " FROM domain_policies")                                     \
  /* Two ranges of tokens_domain_active (never expiring; expiring after        \
   * ?2), so revoked and expired tokens are never walked */                    \
  XX(active_count, "SELECT (SELECT count(*) FROM (SELECT 1 FROM tokens"        \
                   " WHERE domain = ?1 AND revoked_at = 0 AND expires_at = 0"  \
                   " LIMIT ?3)) + (SELECT count(*) FROM (SELECT 1 FROM tokens" \
                   " WHERE domain = ?1 AND revoked_at = 0 AND expires_at > ?2" \
                   " LIMIT ?3))")                                              \
  /* issue 17: leaked tokens */                                                \
  XX(by_hash, "SELECT id, domain, revoked_at, revoked_by FROM tokens"          \
              " WHERE hash = ?1")                                              \
  XX(revoke_hash, "UPDATE tokens SET revoked_at = ?2, revoked_by = ?3"         \
                  " WHERE hash = ?1 AND revoked_at = 0")                       \
  XX(begin, "BEGIN IMMEDIATE")                                                 \
  XX(commit, "COMMIT")                                                         \
  XX(rollback, "ROLLBACK")

typedef struct sq_store {
  store_t base; /* ops and flags; the interface sees only this */
  char *path;
  uint8_t audit_key[STORE_AUDIT_KEY_BYTES]; /* chains the audit log */
  int audit_keyed;
  sqlite3 *db;
  int immutable;  /* read-only and opened with ?immutable=1 (see connect) */
  int have_ident; /* dev and ino are those of the file first opened */
  dev_t dev;
  ino_t ino;
  int lost;    /* the file at path is no longer the one opened */
  int last_rc; /* SQLite's extended code of the last failure */
  char errmsg[256];
#define XX(name, sql) sqlite3_stmt *name;
  STMT_MAP(XX)
#undef XX
} sq_t;

static const struct store_ops sq_ops;

static sq_t *sq_of(store_t *base) {
  return store_container_of(base, sq_t, base);
}

static const sq_t *sq_cof(const store_t *base) {
  return store_container_of(base, const sq_t, base);
}

static int store_fail(sq_t *s, int err, const char *what) {
  s->last_rc = s->db != NULL ? sqlite3_extended_errcode(s->db) : SQLITE_ERROR;
  snprintf(s->errmsg, sizeof(s->errmsg), "%s: %s", what,
           s->db != NULL ? sqlite3_errmsg(s->db) : "no database");
  return err;
}

/* PRAGMA quick_check (pragma "quick_check") or integrity_check: 0 if its
 * first row says "ok". Otherwise TOKEND_ESTORE, with its first line in why
 * and, when out is not NULL, every line written to out. */
static int store_run_check(sq_t *s, const char *pragma, FILE *out, char *why,
                           size_t why_len) {
  sqlite3_stmt *st = NULL;
  const char *line;
  char sql[64], *p;
  int rc, ok = 0, n = 0;

  snprintf(why, why_len, "PRAGMA %s found no result", pragma);
  snprintf(sql, sizeof(sql), "PRAGMA %s", pragma);
  rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    rc = SQLITE_OK;
    line = (const char *)sqlite3_column_text(st, 0);
    if (line == NULL)
      line = "";
    if (n++ == 0) {
      ok = strcmp(line, "ok") == 0;
      snprintf(why, why_len, "PRAGMA %s: %s", pragma, line);
      /* A row may hold several lines; a log line must stay one. */
      for (p = why; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r')
          *p = ';';
    }
    if (out != NULL)
      fprintf(out, "%s\n", line);
  }
  if (rc != SQLITE_DONE) {
    /* Damage can also stop the check itself (SQLITE_CORRUPT). */
    snprintf(why, why_len, "PRAGMA %s failed: %s", pragma,
             sqlite3_errmsg(s->db));
    if (out != NULL)
      fprintf(out, "%s\n", why);
    ok = 0;
  }
  sqlite3_finalize(st);
  return ok ? 0 : TOKEND_ESTORE;
}

/* Without write access to the file, its -wal and -shm, and the directory
 * (where SQLite creates them), every write would fail after a start that
 * looked fine. access(2) answers for tokend's user; it also says EROFS for
 * a read-only file system, which stops root too. */
static int store_check_writable(const char *path, char *why, size_t why_len) {
  static const char *const suffixes[] = {"", "-wal", "-shm"};
  char buf[4096], dir[4096];
  size_t i;

  snprintf(dir, sizeof(dir), "%s", path);
  snprintf(buf, sizeof(buf), "%s", dirname(dir));
  /* A directory that is missing (or not one) is left to the open, which
   * names the database in its own words. */
  if (access(buf, W_OK | X_OK) != 0 && errno != ENOENT && errno != ENOTDIR) {
    snprintf(why, why_len,
             "cannot write the directory %s of database %s (SQLite creates "
             "its -wal and -shm files there): %s; fix its permissions, or pass "
             "--read-only to serve Verify and reads only",
             buf, path, strerror(errno));
    return TOKEND_ECONFIG;
  }
  for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
    snprintf(buf, sizeof(buf), "%s%s", path, suffixes[i]);
    if (access(buf, F_OK) == 0 && access(buf, R_OK | W_OK) != 0) {
      snprintf(why, why_len,
               "database %s is not writable (%s: %s); fix its permissions, or "
               "pass --read-only to serve Verify and reads only",
               path, buf, strerror(errno));
      return TOKEND_ECONFIG;
    }
  }
  return 0;
}

/* The name to open: the path, or for an immutable open a URI (with the
 * characters a URI path cannot hold escaped). */
static int store_open_name(const sq_t *s, char *buf, size_t len) {
  size_t o = 0;
  const char *p;

  if (!s->immutable)
    return snprintf(buf, len, "%s", s->path) < (int)len ? 0 : -1;
  o = (size_t)snprintf(buf, len, "file:");
  for (p = s->path; *p != '\0' && o + 4 < len; p++) {
    if (*p == '%' || *p == '?' || *p == '#')
      o += (size_t)snprintf(buf + o, len - o, "%%%02X", (unsigned char)*p);
    else
      buf[o++] = *p;
  }
  if (*p != '\0' || o + sizeof("?immutable=1") > len)
    return -1;
  memcpy(buf + o, "?immutable=1", sizeof("?immutable=1"));
  return 0;
}

/* Opens s->path into s->db, checks and migrates it, sets WAL and FULL and
 * prepares every statement. On failure leaves s->db for store_disconnect. */
static int store_connect(sq_t *s, int first, char *why, size_t why_len) {
  sqlite3_stmt *st = NULL;
  const char *mode;
  char name[4200];
  struct stat sb;
  int rc, err, oflags;

  /* Only the first open may create the file: a reopen that created one
   * would hide that the database was deleted. */
  if (s->base.flags & STORE_OPEN_READ_ONLY)
    oflags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
  else
    oflags =
        SQLITE_OPEN_READWRITE |
        (first && (s->base.flags & STORE_OPEN_CREATE) ? SQLITE_OPEN_CREATE : 0);
  if (store_open_name(s, name, sizeof(name)) != 0) {
    snprintf(why, why_len, "database path %s is too long", s->path);
    return TOKEND_ECONFIG;
  }
  rc = sqlite3_open_v2(name, &s->db, oflags, NULL);
  if (rc != SQLITE_OK) {
    snprintf(why, why_len, "cannot open database %s: %s", s->path,
             s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    return TOKEND_ESTORE;
  }
  sqlite3_extended_result_codes(s->db, 1);
  sqlite3_busy_timeout(s->db, 5000);

  if (strcmp(s->path, ":memory:") != 0) {
    if (stat(s->path, &sb) != 0) {
      snprintf(why, why_len, "cannot stat database %s: %s", s->path,
               strerror(errno));
      return TOKEND_EUNAVAIL;
    }
    if (!s->have_ident) {
      s->dev = sb.st_dev;
      s->ino = sb.st_ino;
      s->have_ident = 1;
    } else if (sb.st_dev != s->dev || sb.st_ino != s->ino) {
      s->lost = 1;
      snprintf(why, why_len,
               "database %s was replaced by another file while tokend ran",
               s->path);
      return TOKEND_EUNAVAIL;
    }
    if (!(s->base.flags & STORE_OPEN_READ_ONLY) &&
        sqlite3_db_readonly(s->db, "main")) {
      snprintf(why, why_len,
               "database %s can only be opened read-only; fix its "
               "permissions, or pass --read-only to serve Verify and reads "
               "only",
               s->path);
      return TOKEND_ECONFIG;
    }
  }

  if ((err = store_sqlite_migrate(s->db,
                                  (s->base.flags & STORE_OPEN_READ_ONLY) != 0,
                                  why, why_len)) != 0)
    return err;
  /* A damaged page anywhere (an index, the audit log) would otherwise show
   * only later, as INTERNAL answers. */
  if (first &&
      store_run_check(s, "quick_check", NULL, name, sizeof(name)) != 0) {
    snprintf(why, why_len,
             "database %s is damaged (%.200s); run tokend --check-db for the "
             "details and restore it from a backup",
             s->path, name);
    return TOKEND_ECONFIG;
  }

  if (s->base.flags & STORE_OPEN_READ_ONLY)
    goto prepare;
  /* WAL: readers never block the writer. FULL: fsync on every commit. */
  rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
  /* An in-memory database (tests, the fuzzer) has no WAL to switch to. */
  if (mode == NULL ||
      (strcmp(mode, "wal") != 0 &&
       !(strcmp(s->path, ":memory:") == 0 && strcmp(mode, "memory") == 0))) {
    snprintf(why, why_len, "cannot switch database to WAL mode: %s",
             sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return TOKEND_ESTORE;
  }
  sqlite3_finalize(st);
  if ((err = store_sqlite_exec(s->db, "PRAGMA synchronous=FULL")) != 0) {
    snprintf(why, why_len, "cannot set synchronous=FULL: %s",
             sqlite3_errmsg(s->db));
    return err;
  }

prepare:
#define XX(name, sql)                                                          \
  rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->name, \
                          NULL);                                               \
  if (rc != SQLITE_OK) {                                                       \
    snprintf(why, why_len, "cannot prepare %s: %s", #name,                     \
             sqlite3_errmsg(s->db));                                           \
    return TOKEND_ESTORE;                                                      \
  }
  STMT_MAP(XX)
#undef XX
  return 0;
}

/* Finalizes every statement and closes the connection. */
static void store_disconnect(sq_t *s) {
#define XX(name, sql)                                                          \
  sqlite3_finalize(s->name);                                                   \
  s->name = NULL;
  STMT_MAP(XX)
#undef XX
  sqlite3_close(s->db);
  s->db = NULL;
}

static void sq_close(store_t *base);

static int sq_open(const char *path, int flags, store_t **out, char *why,
                   size_t why_len) {
  char wal[4200];
  sq_t *s;
  int err, memory = strcmp(path, ":memory:") == 0;

  *out = NULL;
  if (!memory && !(flags & STORE_OPEN_CREATE) && access(path, F_OK) != 0 &&
      errno == ENOENT) {
    snprintf(why, why_len,
             "no database at %s; pass --create-db to create a new one", path);
    return TOKEND_ENOTFOUND;
  }
  if (!memory && !(flags & STORE_OPEN_READ_ONLY) &&
      (err = store_check_writable(path, why, why_len)) != 0)
    return err;
  s = calloc(1, sizeof(*s));
  if (s == NULL || (s->path = strdup(path)) == NULL) {
    free(s);
    snprintf(why, why_len, "out of memory");
    return TOKEND_ENOMEM;
  }
  s->base.ops = &sq_ops;
  s->base.flags = flags;
  err = store_connect(s, 1, why, why_len);
  /* Read-only in a directory tokend cannot write: SQLite cannot create the
   * -shm file a WAL reader needs. With no -wal file (a clean shutdown
   * removes it) the main file holds every commit, and immutable=1 reads it
   * without one. */
  snprintf(wal, sizeof(wal), "%s-wal", path);
  if (err != 0 && !memory && (flags & STORE_OPEN_READ_ONLY) &&
      ((sqlite3_extended_errcode(s->db) & 0xff) == SQLITE_CANTOPEN ||
       (sqlite3_extended_errcode(s->db) & 0xff) == SQLITE_READONLY) &&
      access(wal, F_OK) != 0) {
    store_disconnect(s);
    s->immutable = 1;
    s->have_ident = 0;
    err = store_connect(s, 1, why, why_len);
  }
  if (err != 0) {
    sq_close(&s->base);
    return err;
  }
  *out = &s->base;
  return 0;
}

/* A file that stat cannot find is missing; ":memory:" never exists before
 * it is opened. Anything else (EACCES) exists, for the open to report. */
static int sq_exists(const char *path) {
  struct stat sb;

  return stat(path, &sb) == 0 || errno != ENOENT;
}

static int sq_check(const char *path, FILE *out) {
  char why[512];
  sq_t s;
  int err;

  memset(&s, 0, sizeof(s));
  s.path = (char *)path;
  if (sqlite3_open_v2(path, &s.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fprintf(out, "cannot open database %s: %s\n", path,
            s.db != NULL ? sqlite3_errmsg(s.db) : "out of memory");
    sqlite3_close(s.db);
    return TOKEND_ECONFIG;
  }
  err = store_run_check(&s, "integrity_check", out, why, sizeof(why));
  sqlite3_close(s.db);
  return err;
}

static int sq_file_lost(const store_t *base) { return sq_cof(base)->lost; }

static int sq_file_check(store_t *base) {
  sq_t *s = sq_of(base);
  struct stat sb;
  int gone;

  if (!s->lost && s->have_ident) {
    gone = stat(s->path, &sb) != 0;
    if (gone && errno != ENOENT)
      return 0; /* cannot tell (e.g. EACCES): the write itself will say */
    if (gone || sb.st_dev != s->dev || sb.st_ino != s->ino)
      s->lost = 1;
  }
  if (!s->lost)
    return 0;
  snprintf(s->errmsg, sizeof(s->errmsg),
           "database %s was deleted or replaced while tokend ran; writes are "
           "refused until tokend is restarted on the right file",
           s->path);
  return TOKEND_EUNAVAIL;
}

int store_sqlite_reopen(store_t *base) {
  sq_t *s = sq_of(base);
  char why[sizeof(s->errmsg) - 16];
  int err;

  store_disconnect(s);
  if ((err = store_connect(s, 0, why, sizeof(why))) != 0) {
    snprintf(s->errmsg, sizeof(s->errmsg), "reopen: %s", why);
    store_disconnect(s);
    return err;
  }
  return 0;
}

/* Every call that reads or writes comes through here first: a connection
 * dropped after a commit in doubt (or whose reconnection failed) is made
 * again, so that callers never reopen a store. A write's begin returns the
 * reconnection's own failure; any other call TOKEND_EUNAVAIL, as the store
 * is then unavailable rather than wrong. */
static int sq_ready(sq_t *s, int begin) {
  int err;

  if (s->db != NULL)
    return 0;
  err = store_sqlite_reopen(&s->base);
  return err == 0 || begin ? err : TOKEND_EUNAVAIL;
}

/* A write that failed (full, read-only, I/O error on write) never wrote a
 * valid commit frame; a failed fsync comes after the frames, the commit
 * marker among them, were written, so a restart may find the transaction. */
static int sq_failure_in_doubt(const sq_t *s) {
  return s->last_rc == SQLITE_IOERR_FSYNC ||
         s->last_rc == SQLITE_IOERR_DIR_FSYNC;
}

static void sq_close(store_t *base) {
  sq_t *s = sq_of(base);

  store_disconnect(s);
  sodium_memzero(s->audit_key, sizeof(s->audit_key));
  free(s->path);
  free(s);
}

static const char *sq_errmsg(const store_t *base) {
  return sq_cof(base)->errmsg;
}

static int sq_fingerprint_get(store_t *base,
                              uint8_t out[STORE_FINGERPRINT_BYTES],
                              int *present) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st = NULL;
  const void *v;
  int rc, err = 0;

  *present = 0;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  rc = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?1", -1,
                          &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 1, META_PEPPER_FINGERPRINT, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    v = sqlite3_column_blob(st, 0);
    if (v == NULL || sqlite3_column_bytes(st, 0) != STORE_FINGERPRINT_BYTES) {
      snprintf(s->errmsg, sizeof(s->errmsg),
               "the recorded pepper fingerprint has the wrong size");
      err = TOKEND_ESTORE;
    } else {
      memcpy(out, v, STORE_FINGERPRINT_BYTES);
      *present = 1;
    }
  } else if (rc != SQLITE_DONE) {
    err = store_fail(s, store_sqlite_map_rc(rc), "read pepper fingerprint");
  }
  sqlite3_finalize(st);
  return err;
}

static int sq_fingerprint_set(store_t *base,
                              const uint8_t fp[STORE_FINGERPRINT_BYTES]) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st = NULL;
  int rc, err = 0;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  if (s->base.flags & STORE_OPEN_READ_ONLY) {
    snprintf(s->errmsg, sizeof(s->errmsg), "tokend runs --read-only");
    return TOKEND_ECONFIG;
  }
  rc = sqlite3_prepare_v2(s->db,
                          "INSERT INTO meta (key, value) VALUES (?1, ?2)"
                          " ON CONFLICT (key) DO UPDATE SET value = ?2",
                          -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 1, META_PEPPER_FINGERPRINT, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_blob(st, 2, fp, STORE_FINGERPRINT_BYTES, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), "record pepper fingerprint");
  sqlite3_finalize(st);
  return err;
}

static int sq_count_rows(store_t *base, int64_t *n) {
  sq_t *s = sq_of(base);
  int err = store_sqlite_query_int(s->db,
                                   "SELECT (SELECT count(*) FROM tokens)"
                                   " + (SELECT count(*) FROM domain_admins)"
                                   " + (SELECT count(*) FROM audit_events)",
                                   n);

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  if (err != 0)
    store_fail(s, err, "count rows");
  return err;
}

static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col) {
  const unsigned char *t = sqlite3_column_text(st, col);
  size_t n = t != NULL ? (size_t)sqlite3_column_bytes(st, col) : 0;

  if (n >= cap)
    n = cap - 1;
  if (n > 0)
    memcpy(dst, t, n);
  dst[n] = '\0';
}

/* Fills row from a statement whose columns are those of the load query. */
static int row_read(sqlite3_stmt *st, store_token_t *row) {
  const void *hash = sqlite3_column_blob(st, 6);

  if (hash == NULL || sqlite3_column_bytes(st, 6) != TOKEND_HASH_BYTES)
    return TOKEND_ESTORE;
  row->seq = sqlite3_column_int64(st, 0);
  copy_text(row->id, sizeof(row->id), st, 1);
  copy_text(row->domain, sizeof(row->domain), st, 2);
  copy_text(row->label, sizeof(row->label), st, 3);
  copy_text(row->hint, sizeof(row->hint), st, 4);
  copy_text(row->scopes, sizeof(row->scopes), st, 5);
  memcpy(row->hash, hash, TOKEND_HASH_BYTES);
  row->created_at = sqlite3_column_int64(st, 7);
  row->expires_at = sqlite3_column_int64(st, 8);
  row->last_used_at = sqlite3_column_int64(st, 9);
  row->revoked_at = sqlite3_column_int64(st, 10);
  copy_text(row->created_by, sizeof(row->created_by), st, 11);
  copy_text(row->revoked_by, sizeof(row->revoked_by), st, 12);
  copy_text(row->metadata, sizeof(row->metadata), st, 13);
  copy_text(row->rolled_from, sizeof(row->rolled_from), st, 14);
  copy_text(row->rolled_to, sizeof(row->rolled_to), st, 15);
  row->pepper_gen = sqlite3_column_int(st, 16);
  return 0;
}

static int sq_load(store_t *base, store_load_cb cb, void *arg) {
  sq_t *s = sq_of(base);
  store_token_t *row;
  int rc, err = 0;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  row = malloc(sizeof(*row));
  if (row == NULL)
    return TOKEND_ENOMEM;
  while ((rc = sqlite3_step(s->load)) == SQLITE_ROW) {
    if ((err = row_read(s->load, row)) != 0) {
      snprintf(s->errmsg, sizeof(s->errmsg), "token row with a bad hash");
      break;
    }
    if ((err = cb(arg, row)) != 0)
      break;
  }
  if (err == 0 && rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), "load");
  sqlite3_reset(s->load);
  free(row);
  return err;
}

static int store_step_once(sq_t *s, sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);

  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return store_fail(s, store_sqlite_map_rc(rc), what);
  return 0;
}

static int sq_begin(store_t *base) {
  sq_t *s = sq_of(base);
  int err;

  if (s->base.flags & STORE_OPEN_READ_ONLY) {
    snprintf(s->errmsg, sizeof(s->errmsg), "tokend runs --read-only");
    return TOKEND_ECONFIG;
  }
  if ((err = sq_ready(s, 1)) != 0)
    return err;
  return store_step_once(s, s->begin, "begin");
}

static void sq_rollback(store_t *base) {
  sq_t *s = sq_of(base);

  if (s->db != NULL && !sqlite3_get_autocommit(s->db)) {
    sqlite3_step(s->rollback);
    sqlite3_reset(s->rollback);
  }
}

static int sq_commit(store_t *base) {
  sq_t *s = sq_of(base);
  int err = store_step_once(s, s->commit, "commit");

  if (err == 0)
    return 0;
  /* A failed COMMIT may leave the transaction open: end it, so the caller
   * sees all-or-nothing. */
  if (!sqlite3_get_autocommit(s->db))
    sq_rollback(&s->base);
  /* This connection's view may now differ from the file's (SQLite wrote
   * the transaction, then its fsync failed): drop it, so that the next
   * call reconnects and sees what a restart would. The message stays the
   * commit's. */
  if (sq_failure_in_doubt(s)) {
    store_disconnect(s);
    return TOKEND_EINDOUBT;
  }
  return err;
}

static int sq_insert(store_t *base, store_token_t *row) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->insert;
  /* SQLITE_STATIC: every buffer outlives the step below. */
  if (sqlite3_bind_text(st, 1, row->id, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 2, row->domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 3, row->label, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_blob(st, 4, row->hash, TOKEND_HASH_BYTES, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(st, 5, row->hint, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 6, row->scopes, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 7, row->created_at) != SQLITE_OK ||
      sqlite3_bind_int64(st, 8, row->expires_at) != SQLITE_OK ||
      sqlite3_bind_text(st, 9, row->created_by, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(st, 10, row->metadata, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(st, 11, row->rolled_from, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(st, 12, row->rolled_to, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_int(st, 13, row->pepper_gen) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "insert bind");
    goto out;
  }
  err = store_step_once(s, st, "insert");
  if (err == 0)
    row->seq = sqlite3_last_insert_rowid(s->db);
out:
  sqlite3_clear_bindings(st);
  return err;
}

static int sq_revoke(store_t *base, const char *domain, const char *id,
                     int64_t now, const char *by, int64_t *revoked_at,
                     int *already, uint8_t hash[TOKEND_HASH_BYTES]) {
  sq_t *s = sq_of(base);
  const void *h;
  int rc, err, changed;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  if (sqlite3_bind_text(s->revoke_set, 1, domain, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(s->revoke_set, 2, id, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(s->revoke_set, 3, now) != SQLITE_OK ||
      sqlite3_bind_text(s->revoke_set, 4, by, -1, SQLITE_STATIC) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "revoke bind");
    goto out;
  }
  if ((err = store_step_once(s, s->revoke_set, "revoke")) != 0)
    goto out;
  changed = sqlite3_changes(s->db);

  if (sqlite3_bind_text(s->revoke_get, 1, domain, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(s->revoke_get, 2, id, -1, SQLITE_STATIC) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "revoke bind");
    goto out;
  }
  rc = sqlite3_step(s->revoke_get);
  if (rc == SQLITE_DONE) {
    err = TOKEND_ENOTFOUND;
  } else if (rc != SQLITE_ROW) {
    err = store_fail(s, store_sqlite_map_rc(rc), "revoke read");
  } else {
    h = sqlite3_column_blob(s->revoke_get, 1);
    if (h == NULL ||
        sqlite3_column_bytes(s->revoke_get, 1) != TOKEND_HASH_BYTES) {
      err = store_fail(s, TOKEND_ESTORE, "revoke read");
    } else {
      *revoked_at = sqlite3_column_int64(s->revoke_get, 0);
      *already = changed == 0;
      memcpy(hash, h, TOKEND_HASH_BYTES);
    }
  }
  sqlite3_reset(s->revoke_get);
out:
  sqlite3_clear_bindings(s->revoke_set);
  sqlite3_clear_bindings(s->revoke_get);
  return err;
}

static int sq_touch(store_t *base, const store_touch_t *items, size_t n) {
  sq_t *s = sq_of(base);
  size_t i;
  int err = 0;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  for (i = 0; i < n && err == 0; i++) {
    if (sqlite3_bind_blob(s->touch, 1, items[i].hash, TOKEND_HASH_BYTES,
                          SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(s->touch, 2, items[i].last_used_at) != SQLITE_OK)
      err = store_fail(s, TOKEND_ESTORE, "touch bind");
    else
      err = store_step_once(s, s->touch, "touch");
  }
  sqlite3_clear_bindings(s->touch);
  return err;
}

/* Steps st (bound, returning TOKEN_COLUMNS) into rows, at most max_rows;
 * *n_rows gets how many were read, left as it is on a row that does not
 * read. what names the call in the message. The caller resets st. */
static int rows_step(sq_t *s, sqlite3_stmt *st, const char *what,
                     store_token_t *rows, size_t max_rows, size_t *n_rows) {
  char msg[64];
  size_t n = 0;
  int rc = SQLITE_DONE, err = 0;

  while (n < max_rows && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    if ((err = row_read(st, &rows[n])) != 0) {
      snprintf(msg, sizeof(msg), "%s read", what);
      return store_fail(s, err, msg);
    }
    n++;
  }
  if (n < max_rows && rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), what);
  *n_rows = n;
  return err;
}

static int sq_list(store_t *base, const char *domain, int include_revoked,
                   int64_t before_seq, store_token_t *rows, size_t max_rows,
                   size_t *n_rows) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err = 0;

  *n_rows = 0;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->list;
  if (sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 2, before_seq > 0 ? before_seq : INT64_MAX) !=
          SQLITE_OK ||
      sqlite3_bind_int(st, 3, include_revoked ? 1 : 0) != SQLITE_OK ||
      sqlite3_bind_int64(st, 4, (int64_t)max_rows) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "list bind");
    goto out;
  }
  err = rows_step(s, st, "list", rows, max_rows, n_rows);
  sqlite3_reset(st);
out:
  sqlite3_clear_bindings(st);
  return err;
}

/* Steps st (bound, returning one hash column) to the end and collects the
 * hashes into *hashes (malloc'd; NULL when there are none). */
static int collect_hashes(sq_t *s, sqlite3_stmt *st, const char *what,
                          uint8_t (**hashes)[TOKEND_HASH_BYTES],
                          size_t *n_hashes) {
  uint8_t(*h)[TOKEND_HASH_BYTES] = NULL, (*grown)[TOKEND_HASH_BYTES];
  size_t n = 0, cap = 0;
  const void *blob;
  int rc, err = 0;

  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    blob = sqlite3_column_blob(st, 0);
    if (blob == NULL || sqlite3_column_bytes(st, 0) != TOKEND_HASH_BYTES) {
      err = store_fail(s, TOKEND_ESTORE, what);
      break;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      grown = realloc(h, cap * sizeof(*h));
      if (grown == NULL) {
        err = TOKEND_ENOMEM;
        break;
      }
      h = grown;
    }
    memcpy(h[n++], blob, TOKEND_HASH_BYTES);
  }
  if (err == 0 && rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), what);
  sqlite3_reset(st);
  if (err != 0) {
    free(h);
    return err;
  }
  *hashes = h;
  *n_hashes = n;
  return 0;
}

static int sq_admin_grant(store_t *base, const char *domain, const char *user,
                          int64_t now, const char *by, int64_t *granted_at,
                          int *already) {
  sq_t *s = sq_of(base);
  int rc, err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  if (sqlite3_bind_text(s->admin_insert, 1, domain, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(s->admin_insert, 2, user, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_int64(s->admin_insert, 3, now) != SQLITE_OK ||
      sqlite3_bind_text(s->admin_insert, 4, by, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(s->admin_get, 1, domain, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(s->admin_get, 2, user, -1, SQLITE_STATIC) !=
          SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "grant bind");
    goto out;
  }
  if ((err = store_step_once(s, s->admin_insert, "grant")) != 0)
    goto out;
  *already = sqlite3_changes(s->db) == 0;
  rc = sqlite3_step(s->admin_get);
  if (rc == SQLITE_ROW)
    *granted_at = sqlite3_column_int64(s->admin_get, 0);
  else
    err = store_fail(s, store_sqlite_map_rc(rc), "grant read");
  sqlite3_reset(s->admin_get);
out:
  sqlite3_clear_bindings(s->admin_insert);
  sqlite3_clear_bindings(s->admin_get);
  return err;
}

static int sq_admin_remove(store_t *base, const char *domain, const char *user,
                           int revoke_tokens, int64_t now, const char *by,
                           uint8_t (**hashes)[TOKEND_HASH_BYTES],
                           size_t *n_hashes) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err;

  *hashes = NULL;
  *n_hashes = 0;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->admin_revoke_tokens;
  if (sqlite3_bind_text(s->admin_delete, 1, domain, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(s->admin_delete, 2, user, -1, SQLITE_STATIC) !=
          SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "admin remove bind");
    goto out;
  }
  if ((err = store_step_once(s, s->admin_delete, "admin remove")) != 0)
    goto out;
  if (sqlite3_changes(s->db) == 0) {
    err = TOKEND_ENOTFOUND;
    goto out;
  }
  if (!revoke_tokens)
    goto out;
  if (sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 3, now) != SQLITE_OK ||
      sqlite3_bind_text(st, 4, by, -1, SQLITE_STATIC) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "admin revoke bind");
    goto out;
  }
  err = collect_hashes(s, st, "admin revoke", hashes, n_hashes);
out:
  sqlite3_clear_bindings(s->admin_delete);
  sqlite3_clear_bindings(st);
  return err;
}

static int sq_admin_load(store_t *base, store_admin_cb cb, void *arg) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  store_admin_t a;
  int rc, err = 0;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->admin_load;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    copy_text(a.domain, sizeof(a.domain), st, 0);
    copy_text(a.user, sizeof(a.user), st, 1);
    a.granted_at = sqlite3_column_int64(st, 2);
    copy_text(a.granted_by, sizeof(a.granted_by), st, 3);
    if ((err = cb(arg, &a)) != 0)
      break;
  }
  if (err == 0 && rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), "admin load");
  sqlite3_reset(st);
  return err;
}

/* Reads the audit columns of st's current row into ev; *hash_len gets the
 * stored hash's length (0: none) and hash its bytes when it has 32. */
static void audit_read(sqlite3_stmt *st, store_audit_t *ev,
                       uint8_t hash[STORE_AUDIT_HASH_BYTES], int *hash_len) {
  const void *h;

  ev->id = sqlite3_column_int64(st, 0);
  ev->at = sqlite3_column_int64(st, 1);
  ev->peer_uid = (uint32_t)sqlite3_column_int64(st, 2);
  ev->peer_pid = (int32_t)sqlite3_column_int64(st, 3);
  copy_text(ev->actor, sizeof(ev->actor), st, 4);
  ev->break_glass = sqlite3_column_int(st, 5);
  copy_text(ev->domain, sizeof(ev->domain), st, 6);
  copy_text(ev->token_id, sizeof(ev->token_id), st, 7);
  copy_text(ev->method, sizeof(ev->method), st, 8);
  ev->code = sqlite3_column_int(st, 9);
  copy_text(ev->detail, sizeof(ev->detail), st, 10);
  ev->count = sqlite3_column_int64(st, 11);
  h = sqlite3_column_blob(st, 12);
  *hash_len = h != NULL ? sqlite3_column_bytes(st, 12) : 0;
  if (*hash_len == STORE_AUDIT_HASH_BYTES)
    memcpy(hash, h, STORE_AUDIT_HASH_BYTES);
}

/* The newest row's id and hash (0 and zeros for an empty log, or a newest
 * row without a hash: the chain then starts again, which verify reports). */
static int audit_head(sq_t *s, int64_t *id,
                      uint8_t hash[STORE_AUDIT_HASH_BYTES]) {
  const void *h;
  int rc, err = 0;

  *id = 0;
  memset(hash, 0, STORE_AUDIT_HASH_BYTES);
  rc = sqlite3_step(s->audit_head);
  if (rc == SQLITE_ROW) {
    *id = sqlite3_column_int64(s->audit_head, 0);
    h = sqlite3_column_blob(s->audit_head, 1);
    if (h != NULL &&
        sqlite3_column_bytes(s->audit_head, 1) == STORE_AUDIT_HASH_BYTES)
      memcpy(hash, h, STORE_AUDIT_HASH_BYTES);
  } else if (rc != SQLITE_DONE) {
    err = store_fail(s, store_sqlite_map_rc(rc), "audit head");
  }
  sqlite3_reset(s->audit_head);
  return err;
}

/* Chains the rows that were in the log when schema 4 came (audit_chain.
 * legacy_upto), once. Their hashes are written with UPDATE, which the log's
 * own trigger forbids: it is lifted and put back inside the transaction. */
static int audit_chain_legacy(sq_t *s) {
  static const char *const trigger =
      "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events"
      " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;";
  sqlite3_stmt *set = NULL;
  uint8_t prev[STORE_AUDIT_HASH_BYTES] = {0}, h[STORE_AUDIT_HASH_BYTES];
  store_audit_t ev;
  int64_t chained = 1, upto = 0;
  int rc = SQLITE_DONE, hash_len, err;

  if ((err = store_sqlite_query_int(s->db, "SELECT chained FROM audit_chain",
                                    &chained)) != 0 ||
      chained)
    return err != 0 ? store_fail(s, err, "audit chain") : 0;
  if ((err = store_sqlite_query_int(
           s->db, "SELECT legacy_upto FROM audit_chain", &upto)) != 0)
    return store_fail(s, err, "audit chain");
  if ((err = sq_begin(&s->base)) != 0)
    return err;
  if ((err = store_sqlite_exec(s->db, "DROP TRIGGER audit_events_no_update")) !=
          0 ||
      sqlite3_prepare_v2(s->db,
                         "UPDATE audit_events SET hash = ?2 WHERE id = ?1", -1,
                         &set, NULL) != SQLITE_OK) {
    err = store_fail(s, err != 0 ? err : TOKEND_ESTORE, "audit chain");
    goto err_rollback;
  }
  if (sqlite3_bind_int64(s->audit_walk, 1, 0) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "audit chain bind");
    goto err_rollback;
  }
  while ((rc = sqlite3_step(s->audit_walk)) == SQLITE_ROW) {
    audit_read(s->audit_walk, &ev, h, &hash_len);
    if (ev.id > upto)
      break;
    store_audit_hash(s->audit_key, prev, &ev, h);
    if (sqlite3_bind_int64(set, 1, ev.id) != SQLITE_OK ||
        sqlite3_bind_blob(set, 2, h, sizeof(h), SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(set) != SQLITE_DONE) {
      err = store_fail(s, TOKEND_ESTORE, "audit chain");
      break;
    }
    sqlite3_reset(set);
    memcpy(prev, h, sizeof(prev));
  }
  sqlite3_reset(s->audit_walk);
  sqlite3_clear_bindings(s->audit_walk);
  if (err == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), "audit chain");
  if (err != 0)
    goto err_rollback;
  sqlite3_finalize(set);
  set = NULL;
  if ((err = store_sqlite_exec(s->db, trigger)) != 0 ||
      (err = store_sqlite_exec(s->db, "UPDATE audit_chain SET chained = 1")) !=
          0) {
    err = store_fail(s, err, "audit chain");
    goto err_rollback;
  }
  return sq_commit(&s->base);

err_rollback:
  sqlite3_finalize(set);
  sq_rollback(&s->base);
  return err;
}

static int sq_audit_head(store_t *base, int64_t *id,
                         uint8_t hash[STORE_AUDIT_HASH_BYTES]) {
  sq_t *s = sq_of(base);
  int err = sq_ready(s, 0);

  return err != 0 ? err : audit_head(s, id, hash);
}

static int sq_audit_key_set(store_t *base,
                            const uint8_t key[STORE_AUDIT_KEY_BYTES]) {
  sq_t *s = sq_of(base);
  int err;

  memcpy(s->audit_key, key, STORE_AUDIT_KEY_BYTES);
  s->audit_keyed = 1;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  return audit_chain_legacy(s);
}

static int sq_audit_append(store_t *base, store_audit_t *ev) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  uint8_t prev[STORE_AUDIT_HASH_BYTES], h[STORE_AUDIT_HASH_BYTES];
  int64_t head_id;
  int err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->audit_insert;
  /* An unchained row would read as tampering: refuse rather than write. */
  if (!s->audit_keyed) {
    snprintf(s->errmsg, sizeof(s->errmsg), "audit: no chain key set");
    return TOKEND_EINTERNAL;
  }
  if ((err = audit_head(s, &head_id, prev)) != 0)
    return err;
  ev->id = head_id + 1;
  if (ev->count < 1)
    ev->count = 1;
  store_audit_hash(s->audit_key, prev, ev, h);
  if (sqlite3_bind_int64(st, 1, ev->at) != SQLITE_OK ||
      sqlite3_bind_int64(st, 2, ev->peer_uid) != SQLITE_OK ||
      sqlite3_bind_int64(st, 3, ev->peer_pid) != SQLITE_OK ||
      sqlite3_bind_text(st, 4, ev->actor, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int(st, 5, ev->break_glass ? 1 : 0) != SQLITE_OK ||
      sqlite3_bind_text(st, 6, ev->domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 7, ev->token_id, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 8, ev->method, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int(st, 9, ev->code) != SQLITE_OK ||
      sqlite3_bind_text(st, 10, ev->detail, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 11, ev->count) != SQLITE_OK ||
      sqlite3_bind_int64(st, 12, ev->id) != SQLITE_OK ||
      sqlite3_bind_blob(st, 13, h, sizeof(h), SQLITE_TRANSIENT) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "audit bind");
    goto out;
  }
  err = store_step_once(s, st, "audit");
out:
  sqlite3_clear_bindings(st);
  return err;
}

/* Where the chain starts when retention removed its oldest rows: from the
 * newest removed row's hash (audit_retention). */
static int sq_audit_walk_base(sq_t *s, store_audit_walk_t *walk) {
  sqlite3_stmt *st = NULL;
  uint8_t h[STORE_AUDIT_HASH_BYTES] = {0};
  int64_t upto = 0;
  int rc;

  rc = sqlite3_prepare_v2(s->db,
                          "SELECT removed_upto, removed_hash FROM "
                          "audit_retention WHERE one = 1",
                          -1, &st, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    upto = sqlite3_column_int64(st, 0);
    /* A missing or short hash leaves zeros: the chain then breaks at the
     * first row, which is what such an edit deserves. */
    if (sqlite3_column_bytes(st, 1) == STORE_AUDIT_HASH_BYTES)
      memcpy(h, sqlite3_column_blob(st, 1), sizeof(h));
    rc = SQLITE_DONE;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE)
    return store_fail(s, store_sqlite_map_rc(rc), "audit retention read");
  if (upto > 0)
    store_audit_walk_from(walk, upto, h);
  return 0;
}

/* One statement of sq_audit_prune: prepared, bound to up to two int64s
 * (n of them), stepped to its end; *row_id and *hash (may be NULL) get
 * the first row's columns. */
static int sq_prune_step(sq_t *s, const char *sql, int n, int64_t a, int64_t b,
                         int64_t *row_id, uint8_t *hash, const char *what) {
  sqlite3_stmt *st = NULL;
  int rc;

  rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK && n >= 1)
    rc = sqlite3_bind_int64(st, 1, a);
  if (rc == SQLITE_OK && n >= 2)
    rc = sqlite3_bind_int64(st, 2, b);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && row_id != NULL) {
    *row_id = sqlite3_column_int64(st, 0);
    if (hash != NULL && sqlite3_column_bytes(st, 1) == STORE_AUDIT_HASH_BYTES)
      memcpy(hash, sqlite3_column_blob(st, 1), STORE_AUDIT_HASH_BYTES);
    rc = SQLITE_DONE;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE)
    return store_fail(s, store_sqlite_map_rc(rc), what);
  return 0;
}

static int sq_audit_prune(store_t *base, int64_t keep_ms, int64_t now_ms,
                          int64_t *removed, int64_t *upto) {
  sq_t *s = sq_of(base);
  uint8_t h[STORE_AUDIT_HASH_BYTES] = {0};
  int64_t last = 0;
  int err;

  *removed = 0;
  *upto = 0;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  /* The bound the delete trigger holds deletes to. */
  if ((err = sq_prune_step(s, "UPDATE audit_retention SET keep_ms = ?1", 1,
                           keep_ms, 0, NULL, NULL, "audit retention")) != 0)
    return err;
  /* The newest row before the first one young enough to keep, and never
   * the newest row (the next append chains from it). */
  err = sq_prune_step(
      s,
      "SELECT id, hash FROM audit_events WHERE id = (SELECT max(id) FROM "
      "audit_events WHERE id < coalesce((SELECT min(id) FROM audit_events "
      "WHERE at >= ?1), (SELECT max(id) FROM audit_events)))",
      1, now_ms - keep_ms, 0, &last, h, "audit retention: oldest rows");
  if (err != 0 || last == 0)
    return err;
  if ((err = sq_prune_step(s, "DELETE FROM audit_events WHERE id <= ?1", 1,
                           last, 0, NULL, NULL, "audit retention: delete")) !=
      0)
    return err;
  *removed = (int64_t)sqlite3_changes(s->db);
  err = sq_prune_step(s, "UPDATE audit_retention SET removed_upto = ?1", 1,
                      last, 0, NULL, NULL, "audit retention: base");
  if (err == 0) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        s->db, "UPDATE audit_retention SET removed_hash = ?1", -1, &st, NULL);

    if (rc == SQLITE_OK)
      rc = sqlite3_bind_blob(st, 1, h, sizeof(h), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
      rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
      err = store_fail(s, store_sqlite_map_rc(rc), "audit retention: hash");
  }
  if (err == 0)
    *upto = last;
  return err;
}

static int sq_audit_verify(store_t *base, int64_t anchor_id,
                           const uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES],
                           store_audit_check_t *out) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  uint8_t h[STORE_AUDIT_HASH_BYTES];
  store_audit_walk_t walk;
  store_audit_t *ev;
  int rc = SQLITE_DONE, hash_len, err = 0;

  memset(out, 0, sizeof(*out));
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->audit_walk;
  if (!s->audit_keyed) {
    snprintf(s->errmsg, sizeof(s->errmsg), "audit: no chain key set");
    return TOKEND_EINTERNAL;
  }
  if ((ev = malloc(sizeof(*ev))) == NULL)
    return TOKEND_ENOMEM;
  if (sqlite3_bind_int64(st, 1, 0) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "audit verify bind");
    goto out;
  }
  store_audit_walk_begin(&walk, s->audit_key, anchor_id, anchor_hash, out);
  if ((err = sq_audit_walk_base(s, &walk)) != 0)
    goto out;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    audit_read(st, ev, h, &hash_len);
    if (store_audit_walk_row(&walk, ev,
                             hash_len == STORE_AUDIT_HASH_BYTES ? h : NULL))
      break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    err = store_fail(s, store_sqlite_map_rc(rc), "audit verify");
    goto out;
  }
  store_audit_walk_end(&walk);
out:
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  free(ev);
  return err;
}

static int sq_audit_list(store_t *base, const char *domain, int64_t since,
                         int64_t before_id, store_audit_t *rows,
                         size_t max_rows, size_t *n_rows) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  uint8_t h[STORE_AUDIT_HASH_BYTES];
  size_t n = 0;
  int rc = SQLITE_DONE, err = 0, hash_len;

  *n_rows = 0;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->audit_list;
  if (sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 2, since) != SQLITE_OK ||
      sqlite3_bind_int64(st, 3, before_id > 0 ? before_id : INT64_MAX) !=
          SQLITE_OK ||
      sqlite3_bind_int64(st, 4, (int64_t)max_rows) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "audit list bind");
    goto out;
  }
  while (n < max_rows && (rc = sqlite3_step(st)) == SQLITE_ROW)
    audit_read(st, &rows[n++], h, &hash_len);
  if (n < max_rows && rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), "audit list");
  *n_rows = n;
  sqlite3_reset(st);
out:
  sqlite3_clear_bindings(st);
  return err;
}

static int sq_verify_counts_add(store_t *base, const char *domain,
                                uint64_t valid, uint64_t invalid, int64_t now) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->counts_add;
  if (sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 2, (int64_t)valid) != SQLITE_OK ||
      sqlite3_bind_int64(st, 3, (int64_t)invalid) != SQLITE_OK ||
      sqlite3_bind_int64(st, 4, now) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "counts bind");
    goto out;
  }
  err = store_step_once(s, st, "counts");
out:
  sqlite3_clear_bindings(st);
  return err;
}

static int sq_token_get(store_t *base, const char *domain, const char *id,
                        store_token_t *row) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int rc, err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->token_by_id;
  if (sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "token get bind");
    goto out;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    err = row_read(st, row);
  else if (rc == SQLITE_DONE)
    err = TOKEND_ENOTFOUND;
  else
    err = store_fail(s, store_sqlite_map_rc(rc), "token get");
  sqlite3_reset(st);
out:
  sqlite3_clear_bindings(st);
  return err;
}

static int sq_admin_get(store_t *base, const char *domain, const char *user,
                        int64_t *granted_at) {
  sq_t *s = sq_of(base);
  int rc, err = 0;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  if (sqlite3_bind_text(s->admin_get, 1, domain, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(s->admin_get, 2, user, -1, SQLITE_STATIC) !=
          SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "admin get bind");
    goto out;
  }
  rc = sqlite3_step(s->admin_get);
  if (rc == SQLITE_ROW)
    *granted_at = sqlite3_column_int64(s->admin_get, 0);
  else if (rc == SQLITE_DONE)
    err = TOKEND_ENOTFOUND;
  else
    err = store_fail(s, store_sqlite_map_rc(rc), "admin get");
  sqlite3_reset(s->admin_get);
out:
  sqlite3_clear_bindings(s->admin_get);
  return err;
}

static int sq_revoked_with(store_t *base, const char *domain,
                           const char *created_by, int64_t revoked_at,
                           const char *revoked_by,
                           uint8_t (**hashes)[TOKEND_HASH_BYTES],
                           size_t *n_hashes) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err;

  *hashes = NULL;
  *n_hashes = 0;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->revoked_with;
  if (sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 2, created_by, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 3, revoked_at) != SQLITE_OK ||
      sqlite3_bind_text(st, 4, revoked_by, -1, SQLITE_STATIC) != SQLITE_OK)
    err = store_fail(s, TOKEND_ESTORE, "revoked-with bind");
  else
    err = collect_hashes(s, st, "revoked-with", hashes, n_hashes);
  sqlite3_clear_bindings(st);
  return err;
}

/* ---- revocation in bulk (issue 17) ---- */

/* Steps st (bound, returning id and hash columns) to the end and appends
 * each row to *out (malloc'd, grown as needed; *cap its room). */
static int collect_revoked(sq_t *s, sqlite3_stmt *st, const char *what,
                           store_revoked_t **out, size_t *n, size_t *cap) {
  store_revoked_t *grown;
  const unsigned char *id;
  const void *blob;
  int rc, err = 0;

  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    id = sqlite3_column_text(st, 0);
    blob = sqlite3_column_blob(st, 1);
    if (id == NULL || blob == NULL ||
        sqlite3_column_bytes(st, 0) >= TOKEND_TOKEN_ID_BYTES ||
        sqlite3_column_bytes(st, 1) != TOKEND_HASH_BYTES) {
      err = store_fail(s, TOKEND_ESTORE, what);
      break;
    }
    if (*n == *cap) {
      size_t c = *cap ? *cap * 2 : 64;

      if ((grown = realloc(*out, c * sizeof(**out))) == NULL) {
        err = TOKEND_ENOMEM;
        break;
      }
      *out = grown;
      *cap = c;
    }
    snprintf((*out)[*n].id, sizeof((*out)[*n].id), "%s", (const char *)id);
    memcpy((*out)[*n].hash, blob, TOKEND_HASH_BYTES);
    (*n)++;
  }
  if (err == 0 && rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), what);
  sqlite3_reset(st);
  return err;
}

/* STORE_BULK_IDS: every id is looked up first, so that an unknown one
 * changes nothing; then the unrevoked ones are revoked one by one (at most
 * TOKEND_BULK_IDS_MAX statements, prepared once). */
static int sq_bulk_ids(sq_t *s, const char *domain,
                       const store_bulk_select_t *sel, int64_t now,
                       const char *by, store_revoked_t *out, size_t *n_revoked,
                       size_t *n_already, char *missing) {
  sqlite3_stmt *get = s->revoke_get, *set = s->revoke_set;
  const void *h;
  size_t i;
  int rc, err = 0;

  for (i = 0; i < sel->n_ids; i++) {
    if (sqlite3_bind_text(get, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(get, 2, sel->ids[i], -1, SQLITE_STATIC) !=
            SQLITE_OK) {
      err = store_fail(s, TOKEND_ESTORE, "bulk revoke bind");
      break;
    }
    rc = sqlite3_step(get);
    if (rc == SQLITE_DONE) {
      snprintf(missing, TOKEND_TOKEN_ID_BYTES, "%s", sel->ids[i]);
      err = TOKEND_ENOTFOUND;
    } else if (rc != SQLITE_ROW) {
      err = store_fail(s, store_sqlite_map_rc(rc), "bulk revoke read");
    } else if ((h = sqlite3_column_blob(get, 1)) == NULL ||
               sqlite3_column_bytes(get, 1) != TOKEND_HASH_BYTES) {
      err = store_fail(s, TOKEND_ESTORE, "bulk revoke read");
    } else if (sqlite3_column_int64(get, 0) != 0) {
      (*n_already)++;
    } else {
      snprintf(out[*n_revoked].id, sizeof(out[*n_revoked].id), "%s",
               sel->ids[i]);
      memcpy(out[*n_revoked].hash, h, TOKEND_HASH_BYTES);
      (*n_revoked)++;
    }
    sqlite3_reset(get);
    if (err != 0)
      break;
  }
  sqlite3_clear_bindings(get);
  for (i = 0; err == 0 && i < *n_revoked; i++) {
    if (sqlite3_bind_text(set, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(set, 2, out[i].id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(set, 3, now) != SQLITE_OK ||
        sqlite3_bind_text(set, 4, by, -1, SQLITE_STATIC) != SQLITE_OK)
      err = store_fail(s, TOKEND_ESTORE, "bulk revoke bind");
    else
      err = store_step_once(s, set, "bulk revoke");
  }
  sqlite3_clear_bindings(set);
  return err;
}

static int sq_bulk_revoke(store_t *base, const char *domain,
                          const store_bulk_select_t *sel, int64_t now,
                          const char *by, store_revoked_t **revoked,
                          size_t *n_revoked, size_t *n_already, char *missing) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *up = s->bulk_revoke, *cnt = s->bulk_already;
  store_revoked_t *out = NULL;
  size_t n = 0, cap = 0, already = 0;
  int rc, err;

  *revoked = NULL;
  *n_revoked = 0;
  *n_already = 0;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  if (sel->by == STORE_BULK_IDS) {
    if (sel->n_ids > 0 && (out = calloc(sel->n_ids, sizeof(*out))) == NULL)
      return TOKEND_ENOMEM;
    err = sq_bulk_ids(s, domain, sel, now, by, out, &n, &already, missing);
    goto out;
  }
  if (sqlite3_bind_text(cnt, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int(cnt, 2, (int)sel->by) != SQLITE_OK ||
      sqlite3_bind_text(cnt, 3, sel->created_by ? sel->created_by : "", -1,
                        SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(cnt, 4, sel->created_before) != SQLITE_OK ||
      sqlite3_bind_text(up, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int(up, 2, (int)sel->by) != SQLITE_OK ||
      sqlite3_bind_text(up, 3, sel->created_by ? sel->created_by : "", -1,
                        SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(up, 4, sel->created_before) != SQLITE_OK ||
      sqlite3_bind_int64(up, 5, now) != SQLITE_OK ||
      sqlite3_bind_text(up, 6, by, -1, SQLITE_STATIC) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "bulk revoke bind");
    goto out_clear;
  }
  /* Counted before the update, which would add its own rows. */
  rc = sqlite3_step(cnt);
  if (rc == SQLITE_ROW)
    already = (size_t)sqlite3_column_int64(cnt, 0);
  else
    err = store_fail(s, store_sqlite_map_rc(rc), "bulk revoke count");
  sqlite3_reset(cnt);
  if (err == 0)
    err = collect_revoked(s, up, "bulk revoke", &out, &n, &cap);
out_clear:
  sqlite3_clear_bindings(cnt);
  sqlite3_clear_bindings(up);
out:
  if (err != 0) {
    free(out);
    return err;
  }
  if (n == 0) {
    free(out);
    out = NULL;
  }
  *revoked = out;
  *n_revoked = n;
  *n_already = already;
  return 0;
}

static int sq_revoked_at_by(store_t *base, const char *domain,
                            int64_t revoked_at, const char *revoked_by,
                            store_revoked_t **revoked, size_t *n_revoked) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  store_revoked_t *out = NULL;
  size_t n = 0, cap = 0;
  int err;

  *revoked = NULL;
  *n_revoked = 0;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->revoked_at_by;
  if (sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 2, revoked_at) != SQLITE_OK ||
      sqlite3_bind_text(st, 3, revoked_by, -1, SQLITE_STATIC) != SQLITE_OK)
    err = store_fail(s, TOKEND_ESTORE, "revoked-at-by bind");
  else
    err = collect_revoked(s, st, "revoked-at-by", &out, &n, &cap);
  sqlite3_clear_bindings(st);
  if (err != 0) {
    free(out);
    return err;
  }
  *revoked = out;
  *n_revoked = n;
  return 0;
}

/* ---- domain policies (issue 17) ---- */

/* Reads the policy columns of st's current row (policy_get's, which
 * policy_load's begin with) into out, whose domain the caller sets. */
static void policy_read(sqlite3_stmt *st, store_policy_t *out) {
  const unsigned char *t;

  out->max_lifetime_ms = sqlite3_column_int64(st, 0);
  out->require_expiry = sqlite3_column_int(st, 1) != 0;
  t = sqlite3_column_text(st, 2);
  snprintf(out->allowed_scopes, sizeof(out->allowed_scopes), "%s",
           t != NULL ? (const char *)t : "");
  out->max_active_tokens = (int32_t)sqlite3_column_int64(st, 3);
  out->updated_at = sqlite3_column_int64(st, 4);
  t = sqlite3_column_text(st, 5);
  snprintf(out->updated_by, sizeof(out->updated_by), "%s",
           t != NULL ? (const char *)t : "");
}

static int sq_policy_get(store_t *base, const char *domain,
                         store_policy_t *out) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int rc, err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->policy_get;
  if (sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "policy get bind");
    goto out;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    memset(out, 0, sizeof(*out));
    snprintf(out->domain, sizeof(out->domain), "%s", domain);
    policy_read(st, out);
  } else if (rc == SQLITE_DONE) {
    err = TOKEND_ENOTFOUND;
  } else {
    err = store_fail(s, store_sqlite_map_rc(rc), "policy get");
  }
  sqlite3_reset(st);
out:
  sqlite3_clear_bindings(st);
  return err;
}

static int sq_policy_set(store_t *base, const store_policy_t *p) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->policy_set;
  if (sqlite3_bind_text(st, 1, p->domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 2, p->max_lifetime_ms) != SQLITE_OK ||
      sqlite3_bind_int(st, 3, p->require_expiry ? 1 : 0) != SQLITE_OK ||
      sqlite3_bind_text(st, 4, p->allowed_scopes, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_int64(st, 5, p->max_active_tokens) != SQLITE_OK ||
      sqlite3_bind_int64(st, 6, p->updated_at) != SQLITE_OK ||
      sqlite3_bind_text(st, 7, p->updated_by, -1, SQLITE_STATIC) != SQLITE_OK)
    err = store_fail(s, TOKEND_ESTORE, "policy set bind");
  else
    err = store_step_once(s, st, "policy set");
  sqlite3_clear_bindings(st);
  return err;
}

static int sq_policy_load(store_t *base, store_policy_cb cb, void *arg) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  store_policy_t p;
  int rc, err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->policy_load;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    memset(&p, 0, sizeof(p));
    copy_text(p.domain, sizeof(p.domain), st, 6);
    policy_read(st, &p);
    if ((err = cb(arg, &p)) != 0)
      break;
  }
  if (err == 0 && rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), "policy load");
  sqlite3_reset(st);
  return err;
}

static int sq_active_count(store_t *base, const char *domain, int64_t now,
                           int64_t limit, int64_t *n) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int rc, err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->active_count;
  if (sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 2, now) != SQLITE_OK ||
      sqlite3_bind_int64(st, 3, limit) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "active count bind");
    goto out;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    *n = sqlite3_column_int64(st, 0);
  else
    err = store_fail(s, store_sqlite_map_rc(rc), "active count");
  sqlite3_reset(st);
out:
  sqlite3_clear_bindings(st);
  return err;
}

/* ---- leaked tokens (issue 17) ---- */

static int sq_revoke_by_hash(store_t *base, store_hash_token_t *items, size_t n,
                             int64_t now, const char *by, int revoke) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *get, *set;
  const unsigned char *t;
  store_hash_token_t *it;
  size_t i;
  int rc, err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  get = s->by_hash;
  set = s->revoke_hash;
  for (i = 0; err == 0 && i < n; i++) {
    it = &items[i];
    it->found = it->revoked_now = 0;
    if (revoke) {
      if (sqlite3_bind_blob(set, 1, it->hash, TOKEND_HASH_BYTES,
                            SQLITE_STATIC) != SQLITE_OK ||
          sqlite3_bind_int64(set, 2, now) != SQLITE_OK ||
          sqlite3_bind_text(set, 3, by, -1, SQLITE_STATIC) != SQLITE_OK) {
        err = store_fail(s, TOKEND_ESTORE, "leaked bind");
        break;
      }
      if ((err = store_step_once(s, set, "leaked revoke")) != 0)
        break;
      it->revoked_now = sqlite3_changes(s->db) > 0;
    }
    if (sqlite3_bind_blob(get, 1, it->hash, TOKEND_HASH_BYTES, SQLITE_STATIC) !=
        SQLITE_OK) {
      err = store_fail(s, TOKEND_ESTORE, "leaked bind");
      break;
    }
    rc = sqlite3_step(get);
    if (rc == SQLITE_ROW) {
      it->found = 1;
      t = sqlite3_column_text(get, 0);
      snprintf(it->id, sizeof(it->id), "%s", t ? (const char *)t : "");
      t = sqlite3_column_text(get, 1);
      snprintf(it->domain, sizeof(it->domain), "%s", t ? (const char *)t : "");
      it->revoked_at = sqlite3_column_int64(get, 2);
      t = sqlite3_column_text(get, 3);
      snprintf(it->revoked_by, sizeof(it->revoked_by), "%s",
               t ? (const char *)t : "");
    } else if (rc != SQLITE_DONE) {
      err = store_fail(s, store_sqlite_map_rc(rc), "leaked read");
    }
    sqlite3_reset(get);
  }
  sqlite3_clear_bindings(get);
  sqlite3_clear_bindings(set);
  return err;
}

/* One host, one writer: SQLite has no change feed. */
static int64_t sq_change_rev(const store_t *base) {
  (void)base;
  return 0;
}

/* ---- copying a store (store.h: the copy members) ---- */

/* A deferred BEGIN takes no lock; the read that follows starts the read
 * transaction, so the snapshot is the database as of this call (WAL: the
 * writer goes on appending to the log, unseen here). */
static int sq_snapshot_begin(store_t *base, int64_t *rev) {
  sq_t *s = sq_of(base);
  int64_t n;
  int err;

  /* One host, one writer: no change feed. */
  *rev = 0;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  if ((err = store_sqlite_exec(s->db, "BEGIN")) != 0)
    return store_fail(s, err, "snapshot");
  if ((err = store_sqlite_query_int(s->db, "SELECT count(*) FROM sqlite_master",
                                    &n)) != 0) {
    store_fail(s, err, "snapshot");
    sq_rollback(base);
  }
  return err;
}

static void sq_snapshot_end(store_t *base) { sq_rollback(base); }

static int sq_audit_load(store_t *base, store_audit_cb cb, void *arg) {
  sq_t *s = sq_of(base);
  uint8_t h[STORE_AUDIT_HASH_BYTES];
  store_audit_t *ev;
  sqlite3_stmt *st;
  int rc = SQLITE_DONE, hash_len, err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->audit_walk;
  if ((ev = malloc(sizeof(*ev))) == NULL)
    return TOKEND_ENOMEM;
  if (sqlite3_bind_int64(st, 1, 0) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "audit load bind");
    goto out;
  }
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    audit_read(st, ev, h, &hash_len);
    /* A hash of the wrong size is damage, not "no hash": refuse it rather
     * than copy a row that would then read as never chained. */
    if (hash_len != 0 && hash_len != STORE_AUDIT_HASH_BYTES) {
      snprintf(s->errmsg, sizeof(s->errmsg),
               "audit row %lld has a hash of %d bytes", (long long)ev->id,
               hash_len);
      err = TOKEND_ESTORE;
      break;
    }
    if ((err = cb(arg, ev, hash_len != 0 ? h : NULL)) != 0)
      break;
  }
  if (err == 0 && rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), "audit load");
out:
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  free(ev);
  return err;
}

static int sq_counts_load(store_t *base, store_counts_cb cb, void *arg) {
  sq_t *s = sq_of(base);
  store_counts_t c;
  sqlite3_stmt *st;
  int rc, err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->counts_load;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    copy_text(c.domain, sizeof(c.domain), st, 0);
    c.valid = (uint64_t)sqlite3_column_int64(st, 1);
    c.invalid = (uint64_t)sqlite3_column_int64(st, 2);
    c.updated_at = sqlite3_column_int64(st, 3);
    if ((err = cb(arg, &c)) != 0)
      break;
  }
  if (err == 0 && rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), "counts load");
  sqlite3_reset(st);
  return err;
}

static int sq_token_import(store_t *base, const store_token_t *row) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->token_import;
  /* seq is the rowid: later inserts get max(seq) + 1. */
  if (sqlite3_bind_int64(st, 1, row->seq) != SQLITE_OK ||
      sqlite3_bind_text(st, 2, row->id, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 3, row->domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 4, row->label, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 5, row->hint, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 6, row->scopes, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_blob(st, 7, row->hash, TOKEND_HASH_BYTES, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_int64(st, 8, row->created_at) != SQLITE_OK ||
      sqlite3_bind_int64(st, 9, row->expires_at) != SQLITE_OK ||
      sqlite3_bind_int64(st, 10, row->last_used_at) != SQLITE_OK ||
      sqlite3_bind_int64(st, 11, row->revoked_at) != SQLITE_OK ||
      sqlite3_bind_text(st, 12, row->created_by, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(st, 13, row->revoked_by, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(st, 14, row->metadata, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(st, 15, row->rolled_from, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(st, 16, row->rolled_to, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_int(st, 17, row->pepper_gen) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "token import bind");
    goto out;
  }
  err = store_step_once(s, st, "token import");
out:
  sqlite3_clear_bindings(st);
  return err;
}

static int sq_audit_import(store_t *base, const store_audit_t *ev,
                           const uint8_t *hash) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->audit_import;
  if (sqlite3_bind_int64(st, 1, ev->id) != SQLITE_OK ||
      sqlite3_bind_int64(st, 2, ev->at) != SQLITE_OK ||
      sqlite3_bind_int64(st, 3, ev->peer_uid) != SQLITE_OK ||
      sqlite3_bind_int64(st, 4, ev->peer_pid) != SQLITE_OK ||
      sqlite3_bind_text(st, 5, ev->actor, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int(st, 6, ev->break_glass ? 1 : 0) != SQLITE_OK ||
      sqlite3_bind_text(st, 7, ev->domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 8, ev->token_id, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 9, ev->method, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int(st, 10, ev->code) != SQLITE_OK ||
      sqlite3_bind_text(st, 11, ev->detail, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 12, ev->count) != SQLITE_OK ||
      (hash != NULL ? sqlite3_bind_blob(st, 13, hash, STORE_AUDIT_HASH_BYTES,
                                        SQLITE_STATIC)
                    : sqlite3_bind_null(st, 13)) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "audit import bind");
    goto out;
  }
  if ((err = store_step_once(s, st, "audit import")) != 0)
    goto out;
  /* The insert's WHERE kept it out: an id at or below the newest. */
  if (sqlite3_changes(s->db) != 1) {
    snprintf(s->errmsg, sizeof(s->errmsg),
             "audit import: row %lld is not after the newest row; the log is "
             "append-only",
             (long long)ev->id);
    err = TOKEND_EEXIST;
  }
out:
  sqlite3_clear_bindings(st);
  return err;
}

static int sq_counts_import(store_t *base, const store_counts_t *c) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->counts_import;
  if (sqlite3_bind_text(st, 1, c->domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 2, (int64_t)c->valid) != SQLITE_OK ||
      sqlite3_bind_int64(st, 3, (int64_t)c->invalid) != SQLITE_OK ||
      sqlite3_bind_int64(st, 4, c->updated_at) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "counts import bind");
    goto out;
  }
  err = store_step_once(s, st, "counts import");
out:
  sqlite3_clear_bindings(st);
  return err;
}

/* Removes a backup file that failed (it was created here, O_EXCL: ours). */
static int sq_backup_fail(sq_t *s, sqlite3 *dst, const char *path, int err,
                          const char *what) {
  snprintf(s->errmsg, sizeof(s->errmsg), "%s %s: %s", what, path,
           dst != NULL ? sqlite3_errmsg(dst) : strerror(errno));
  sqlite3_close(dst);
  unlink(path);
  return err;
}

/* SQLite's online backup API: the copy is one consistent snapshot of the
 * database (a WAL reader's), made in one step while this thread (the
 * writer) writes nothing. The file is created first, O_EXCL and 0600, so
 * that no existing file is replaced and no one else may read the copy. */
static int sq_backup(store_t *base, const char *path, int64_t *bytes) {
  sq_t *s = sq_of(base);
  sqlite3 *dst = NULL;
  sqlite3_backup *b;
  struct stat st;
  int fd, rc;

  fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(s->errmsg, sizeof(s->errmsg), "%s: %s%s", path, strerror(errno),
             errno == EEXIST ? " (a backup never replaces a file)" : "");
    return errno == EEXIST ? TOKEND_EEXIST : TOKEND_EIO;
  }
  close(fd);
  if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
    return sq_backup_fail(s, dst, path, TOKEND_EIO, "cannot open");
  if ((b = sqlite3_backup_init(dst, "main", s->db, "main")) == NULL)
    return sq_backup_fail(s, dst, path, TOKEND_ESTORE, "cannot back up to");
  rc = sqlite3_backup_step(b, -1);
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE)
    return sq_backup_fail(s, dst, path, TOKEND_ESTORE, "backup to");
  if (sqlite3_close(dst) != SQLITE_OK) {
    dst = NULL;
    return sq_backup_fail(s, NULL, path, TOKEND_EIO, "cannot close");
  }
  /* Durable before it is reported done. */
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0 || fstat(fd, &st) != 0) {
    if (fd >= 0)
      close(fd);
    return sq_backup_fail(s, NULL, path, TOKEND_EIO, "cannot sync");
  }
  close(fd);
  *bytes = (int64_t)st.st_size;
  return 0;
}

/* ---- the token record (issue 17) ---- */

static int sq_token_update(store_t *base, const store_token_t *row) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->token_update;
  if (sqlite3_bind_text(st, 1, row->domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 2, row->id, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 3, row->label, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 4, row->scopes, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text(st, 5, row->metadata, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 6, row->expires_at) != SQLITE_OK ||
      sqlite3_bind_text(st, 7, row->rolled_from, -1, SQLITE_STATIC) !=
          SQLITE_OK ||
      sqlite3_bind_text(st, 8, row->rolled_to, -1, SQLITE_STATIC) !=
          SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "token update bind");
    goto out;
  }
  err = store_step_once(s, st, "token update");
  if (err == 0 && sqlite3_changes(s->db) == 0)
    err = TOKEND_ENOTFOUND;
out:
  sqlite3_clear_bindings(st);
  return err;
}

static int sq_list_expiring(store_t *base, const char *domain, int64_t now,
                            int64_t until, int64_t before_seq,
                            store_token_t *rows, size_t max_rows,
                            size_t *n_rows) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st;
  int err = 0;

  *n_rows = 0;
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  st = s->list_expiring;
  if (sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64(st, 2, before_seq > 0 ? before_seq : INT64_MAX) !=
          SQLITE_OK ||
      sqlite3_bind_int64(st, 3, now) != SQLITE_OK ||
      sqlite3_bind_int64(st, 4, until) != SQLITE_OK ||
      sqlite3_bind_int64(st, 5, (int64_t)max_rows) != SQLITE_OK) {
    err = store_fail(s, TOKEND_ESTORE, "list expiring bind");
    goto out;
  }
  err = rows_step(s, st, "list expiring", rows, max_rows, n_rows);
  sqlite3_reset(st);
out:
  sqlite3_clear_bindings(st);
  return err;
}

/* ---- a pepper rotation (issue 16) ---- */

static int sq_meta_get(store_t *base, const char *key, uint8_t *buf, size_t cap,
                       size_t *len) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st = NULL;
  const void *v;
  int rc, err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  rc = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?1", -1,
                          &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    err = TOKEND_ENOTFOUND;
  } else if (rc != SQLITE_ROW) {
    err = store_fail(s, store_sqlite_map_rc(rc), "read meta");
  } else if ((size_t)sqlite3_column_bytes(st, 0) > cap) {
    snprintf(s->errmsg, sizeof(s->errmsg), "meta %s: value too long", key);
    err = TOKEND_ESTORE;
  } else {
    v = sqlite3_column_blob(st, 0);
    *len = (size_t)sqlite3_column_bytes(st, 0);
    if (*len > 0)
      memcpy(buf, v, *len);
  }
  sqlite3_finalize(st);
  return err;
}

static int sq_meta_set(store_t *base, const char *key, const uint8_t *val,
                       size_t len) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st = NULL;
  int rc, err;

  if ((err = sq_ready(s, 0)) != 0)
    return err;
  if (s->base.flags & STORE_OPEN_READ_ONLY) {
    snprintf(s->errmsg, sizeof(s->errmsg), "tokend runs --read-only");
    return TOKEND_ECONFIG;
  }
  rc = sqlite3_prepare_v2(s->db,
                          "INSERT INTO meta (key, value) VALUES (?1, ?2)"
                          " ON CONFLICT (key) DO UPDATE SET value = ?2",
                          -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  /* A zero-length blob, not NULL: the column is NOT NULL. */
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_blob(st, 2, len > 0 ? (const void *)val : "", (int)len,
                           SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), "record meta");
  sqlite3_finalize(st);
  return err;
}

/* Prepared per call: a token is re-keyed once in its life. */
static int sq_token_rekey(store_t *base,
                          const uint8_t old_hash[TOKEND_HASH_BYTES],
                          const uint8_t new_hash[TOKEND_HASH_BYTES],
                          int32_t gen, int64_t now) {
  sq_t *s = sq_of(base);
  sqlite3_stmt *st = NULL;
  int rc, err;

  (void)now; /* no change feed */
  if ((err = sq_ready(s, 0)) != 0)
    return err;
  rc = sqlite3_prepare_v2(s->db,
                          "UPDATE tokens SET hash = ?2, pepper_gen = ?3"
                          " WHERE hash = ?1 AND pepper_gen < ?3",
                          -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_blob(st, 1, old_hash, TOKEND_HASH_BYTES, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_blob(st, 2, new_hash, TOKEND_HASH_BYTES, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int(st, 3, gen);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc != SQLITE_DONE)
    err = store_fail(s, store_sqlite_map_rc(rc), "re-key token");
  else if (sqlite3_changes(s->db) == 0)
    err = TOKEND_ENOTFOUND;
  sqlite3_finalize(st);
  return err;
}

static const struct store_ops sq_ops = {
    .close = sq_close,
    .errmsg = sq_errmsg,
    .file_check = sq_file_check,
    .file_lost = sq_file_lost,
    .fingerprint_get = sq_fingerprint_get,
    .fingerprint_set = sq_fingerprint_set,
    .count_rows = sq_count_rows,
    .load = sq_load,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .insert = sq_insert,
    .revoke = sq_revoke,
    .touch = sq_touch,
    .list = sq_list,
    .admin_grant = sq_admin_grant,
    .admin_remove = sq_admin_remove,
    .admin_load = sq_admin_load,
    .token_get = sq_token_get,
    .admin_get = sq_admin_get,
    .revoked_with = sq_revoked_with,
    .audit_key_set = sq_audit_key_set,
    .audit_append = sq_audit_append,
    .audit_list = sq_audit_list,
    .audit_head = sq_audit_head,
    .audit_verify = sq_audit_verify,
    .verify_counts_add = sq_verify_counts_add,
    .change_rev = sq_change_rev,
    .snapshot_begin = sq_snapshot_begin,
    .snapshot_end = sq_snapshot_end,
    .audit_load = sq_audit_load,
    .counts_load = sq_counts_load,
    .token_import = sq_token_import,
    .audit_import = sq_audit_import,
    .counts_import = sq_counts_import,
    .backup = sq_backup,
    .audit_prune = sq_audit_prune,
    .token_update = sq_token_update,
    .list_expiring = sq_list_expiring,
    .bulk_revoke = sq_bulk_revoke,
    .revoked_at_by = sq_revoked_at_by,
    .policy_get = sq_policy_get,
    .policy_set = sq_policy_set,
    .policy_load = sq_policy_load,
    .active_count = sq_active_count,
    .revoke_by_hash = sq_revoke_by_hash,
    .meta_get = sq_meta_get,
    .meta_set = sq_meta_set,
    .token_rekey = sq_token_rekey,
};

const struct store_backend store_sqlite_backend = {
    .scheme = "sqlite",
    .open = sq_open,
    .exists = sq_exists,
    .check = sq_check,
};
