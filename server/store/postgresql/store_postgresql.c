/* store_postgresql.c: the PostgreSQL backend of store.h (schemes
 * "postgresql://..." and "postgres://...", a libpq connection URI).
 *
 * One connection, used by one thread at a time (store.h). Every statement
 * is parameterised (PQexecParams: values never enter the SQL text), every
 * PGresult is checked and cleared. Transactions run with synchronous_commit
 * on: COMMIT returns once the commit record is flushed. begin takes a
 * transaction-level advisory lock, the store's write lock, so writers from
 * several tokend hosts on one database take turns (what a later change feed
 * needs to number its revisions in commit order).
 *
 * A lost connection is dropped and made again by the next call. A COMMIT
 * sent on a connection that is then lost before its answer is
 * TOKEND_EINDOUBT; a connection already known lost before COMMIT is sent is
 * a definite failure (the server rolls back the unfinished transaction of a
 * session that ends). */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store/audit_chain.h"
#include "store/backends.h"
#include "store/postgresql/pg_util.h"
#include "store/store.h"

/* The schema version this build writes (tokend_schema.version). */
#define PG_SCHEMA_VERSION 5
/* pg_advisory_xact_lock key of the write lock: "tknd". */
#define PG_WRITE_LOCK "1953066596"
#define META_PEPPER_FINGERPRINT "pepper_fingerprint"
#define PG_MAX_PARAMS 17
/* Tokens per INSERT. */
#define TOKENS_CHUNK 2048
/* Groups of up to this many rows run prepared INSERTs (commit_pipelined). */
#define PG_NAMED_ROWS 64
#define PG_NAMED_BIT(n) ((uint64_t)1 << ((n)-1))

#define AUDIT_COLUMNS                                                          \
  "id, at, peer_uid, peer_pid, actor, break_glass, domain, token_id, method,"  \
  " code, detail, count, hash"

/* Forward migrations: migrations[i] takes schema version i to i + 1.
 * Version 1: the same records as the SQLite backend's schema 4. Version 2:
 * the change feed (docs/STORE.md, "The change feed"): every write that
 * changes what Verify answers, or who administers a domain, appends a row
 * to changes through tokend_change(), in its own transaction; feed's one
 * row numbers them, and since every writer must lock that row to number a
 * change, revisions are committed in the order they are numbered (a
 * reader that has applied up to r never later finds a row below r
 * appearing: what a plain bigserial would not promise). hosts holds each
 * tokend's applied revision and heartbeat. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE tokens ("
    "  seq bigserial PRIMARY KEY,"
    "  id text NOT NULL UNIQUE,"
    "  domain text NOT NULL,"
    "  label text NOT NULL,"
    "  hash bytea NOT NULL UNIQUE CHECK (length(hash) = 32),"
    "  hint text NOT NULL,"
    "  scopes text NOT NULL DEFAULT '',"
    "  created_at bigint NOT NULL,"
    "  expires_at bigint NOT NULL DEFAULT 0,"
    "  last_used_at bigint NOT NULL DEFAULT 0,"
    "  revoked_at bigint NOT NULL DEFAULT 0,"
    "  created_by text NOT NULL DEFAULT '',"
    "  revoked_by text NOT NULL DEFAULT ''"
    ");"
    "CREATE INDEX tokens_domain_seq ON tokens (domain, seq);"
    "CREATE INDEX tokens_domain_creator ON tokens (domain, created_by);"
    "CREATE TABLE domain_admins ("
    "  domain text NOT NULL,"
    "  user_name text NOT NULL,"
    "  granted_at bigint NOT NULL,"
    "  granted_by text NOT NULL,"
    "  PRIMARY KEY (domain, user_name)"
    ");"
    "CREATE TABLE audit_events ("
    "  id bigint PRIMARY KEY,"
    "  at bigint NOT NULL,"
    "  peer_uid bigint NOT NULL,"
    "  peer_pid bigint NOT NULL,"
    "  actor text NOT NULL,"
    "  break_glass boolean NOT NULL,"
    "  domain text NOT NULL,"
    "  token_id text NOT NULL,"
    "  method text NOT NULL,"
    "  code integer NOT NULL,"
    "  detail text NOT NULL,"
    "  count bigint NOT NULL DEFAULT 1,"
    "  hash bytea"
    ");"
    "CREATE INDEX audit_domain_id ON audit_events (domain, id);"
    /* Append-only: no UPDATE, DELETE or TRUNCATE through tokend's schema;
     * an insert over an existing id is the primary key's violation (there
     * is no INSERT OR REPLACE here, and ON CONFLICT DO UPDATE would fire
     * the update trigger). */
    "CREATE FUNCTION audit_events_append_only() RETURNS trigger"
    " LANGUAGE plpgsql AS $$ BEGIN"
    " RAISE EXCEPTION 'the audit log is append-only'; END $$;"
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events"
    " FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();"
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events"
    " FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();"
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();"
    "CREATE TABLE verify_counts ("
    "  domain text PRIMARY KEY,"
    "  valid bigint NOT NULL DEFAULT 0,"
    "  invalid bigint NOT NULL DEFAULT 0,"
    "  updated_at bigint NOT NULL"
    ");"
    "CREATE TABLE meta ("
    "  key text PRIMARY KEY,"
    "  value bytea NOT NULL"
    ");",
    /* 1 -> 2 */
    "CREATE TABLE feed ("
    "  one boolean PRIMARY KEY DEFAULT true CHECK (one),"
    "  rev bigint NOT NULL"
    ");"
    "INSERT INTO feed (one, rev) VALUES (true, 0);"
    /* A change names what changed; a follower reads its current state:
     * a token's row (tokens are never deleted), or whether user still
     * administers domain. */
    "CREATE TABLE changes ("
    "  rev bigint PRIMARY KEY,"
    "  at bigint NOT NULL,"
    "  token_seq bigint,"
    "  domain text,"
    "  user_name text,"
    "  CHECK ((token_seq IS NULL) <> (domain IS NULL AND user_name IS NULL))"
    ");"
    "CREATE FUNCTION tokend_change(p_seq bigint, p_domain text,"
    " p_user text, p_at bigint) RETURNS bigint LANGUAGE plpgsql AS $$"
    " DECLARE r bigint; BEGIN"
    " UPDATE feed SET rev = rev + 1 RETURNING rev INTO r;"
    " INSERT INTO changes (rev, at, token_seq, domain, user_name)"
    " VALUES (r, p_at, p_seq, p_domain, p_user);"
    /* Delivered at commit, once per transaction (same payload). */
    " PERFORM pg_notify('tokend_changes', '');"
    " RETURN r; END $$;"
    "CREATE TABLE hosts ("
    "  host_id text PRIMARY KEY,"
    "  instance bytea NOT NULL,"
    "  applied_rev bigint NOT NULL,"
    "  heartbeat_at timestamptz NOT NULL,"
    "  lease_ms bigint NOT NULL,"
    "  started_at timestamptz NOT NULL,"
    "  pid integer NOT NULL,"
    "  version text NOT NULL"
    ");"
    /* A host's report: its applied revision and heartbeat (the database's
     * clock: hosts' clocks may disagree). It takes over its row only from
     * its own earlier run or from a host gone past its lease: false when
     * another live tokend reports under the same id. */
    "CREATE FUNCTION tokend_report(p_host text, p_instance bytea,"
    " p_rev bigint, p_lease bigint, p_pid integer, p_version text)"
    " RETURNS boolean LANGUAGE plpgsql AS $$"
    " DECLARE n integer; BEGIN"
    " INSERT INTO hosts AS h (host_id, instance, applied_rev, heartbeat_at,"
    " lease_ms, started_at, pid, version) VALUES (p_host, p_instance, p_rev,"
    " clock_timestamp(), p_lease, clock_timestamp(), p_pid, p_version)"
    " ON CONFLICT (host_id) DO UPDATE SET instance = excluded.instance,"
    " applied_rev = excluded.applied_rev,"
    " heartbeat_at = excluded.heartbeat_at, lease_ms = excluded.lease_ms,"
    " started_at = CASE WHEN h.instance = excluded.instance"
    " THEN h.started_at ELSE excluded.started_at END,"
    " pid = excluded.pid, version = excluded.version"
    " WHERE h.instance = excluded.instance OR h.heartbeat_at <"
    " clock_timestamp() - h.lease_ms * interval '1 millisecond';"
    " GET DIAGNOSTICS n = ROW_COUNT;"
    /* "<host id> <revision>": the hosts waiting for writes learn of it
     * without a query (notifications arrive in commit order). */
    " IF n > 0 THEN PERFORM pg_notify('tokend_applied',"
    " p_host || ' ' || p_rev::text); END IF;"
    " RETURN n > 0; END $$;",
    /* 2 -> 3: issue 17's token record, as the SQLite backend's schema 6:
     * metadata (a JSON object, '' for none), rolled_from/rolled_to (Roll),
     * pepper_gen (pepper rotation), and operators' domain policies. A
     * policy is read in the write transaction that enforces it, never from
     * memory, so it needs no change in the feed. */
    "ALTER TABLE tokens ADD COLUMN metadata text NOT NULL DEFAULT '',"
    " ADD COLUMN rolled_from text NOT NULL DEFAULT '',"
    " ADD COLUMN rolled_to text NOT NULL DEFAULT '',"
    " ADD COLUMN pepper_gen integer NOT NULL DEFAULT 0;"
    "CREATE TABLE domain_policies ("
    "  domain text PRIMARY KEY,"
    "  max_lifetime_ms bigint NOT NULL DEFAULT 0,"
    "  require_expiry boolean NOT NULL DEFAULT false,"
    "  allowed_scopes text NOT NULL DEFAULT '',"
    "  max_active_tokens integer NOT NULL DEFAULT 0,"
    "  updated_at bigint NOT NULL,"
    "  updated_by text NOT NULL"
    ");",
    /* 3 -> 4 (h17b), as the SQLite backend's schema 7: a domain's active
     * tokens, counted when its policy caps them, are a range of this
     * index. */
    "CREATE INDEX IF NOT EXISTS tokens_domain_active ON tokens (domain,"
    " revoked_at, expires_at);",
    /* 4 -> 5 (issue 16): --audit-retention-days, as SQLite's schema 5.
     * audit_retention holds the retention (keep_ms, which the delete
     * trigger checks: only rows older than it, by the database's clock,
     * may go; 0: none may) and the newest removed row's id and chain hash,
     * from which the chain is verified on. UPDATE and TRUNCATE stay
     * refused. */
    "CREATE TABLE audit_retention ("
    "  one integer PRIMARY KEY CHECK (one = 1),"
    "  keep_ms bigint NOT NULL DEFAULT 0,"
    "  removed_upto bigint NOT NULL DEFAULT 0,"
    "  removed_hash bytea"
    ");"
    "INSERT INTO audit_retention (one) VALUES (1);"
    "CREATE FUNCTION audit_events_retention_only() RETURNS trigger"
    " LANGUAGE plpgsql AS $$ DECLARE k bigint; BEGIN"
    " SELECT keep_ms INTO k FROM audit_retention WHERE one = 1;"
    " IF k IS NULL OR k <= 0 OR OLD.at >="
    "  (extract(epoch FROM clock_timestamp()) * 1000)::bigint - k THEN"
    " RAISE EXCEPTION 'the audit log is append-only (rows older than"
    " --audit-retention-days excepted)'; END IF;"
    " RETURN OLD; END $$;"
    "DROP TRIGGER audit_events_no_delete ON audit_events;"
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events"
    " FOR EACH ROW EXECUTE FUNCTION audit_events_retention_only();",
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

/* The tables --check-db expects. */
static const char *const pg_tables[] = {
    "tokend_schema",
    "tokens",
    "domain_admins",
    "audit_events",
    "verify_counts",
    "meta",
    "feed",
    "changes",
    "hosts",
    "domain_policies", /* schema 3 (issue 17) */
    "audit_retention", /* schema 5 (issue 16) */
};

typedef struct pg_store {
  store_t base; /* ops and flags; the interface sees only this */
  char *uri;    /* the libpq URI, password included: never logged */
  PGconn *conn; /* NULL after a loss, until the next call reconnects */
  int in_tx;    /* inside begin .. commit/rollback */
  /* The newest change revision this transaction appended or read (what a
   * follower must have applied to see everything it did); kept after
   * commit, until the next begin. */
  int64_t tx_rev;
  /* The audit log's head as this transaction left it: under the write
   * lock nobody else appends, so one read serves every append of a group
   * commit. Forgotten at begin. */
  int tx_head_known;
  int64_t tx_head_id;
  uint8_t tx_head_hash[STORE_AUDIT_HASH_BYTES];
  /* Audit rows appended in this transaction, sent as one INSERT before
   * COMMIT (or before the log is read): one round trip for a whole group
   * commit's rows. Their ids and hashes are final when queued (the write
   * lock is held); a failure to store them fails the transaction, as it
   * would have one by one. */
  store_audit_t *aq;
  uint8_t (*aq_hash)[STORE_AUDIT_HASH_BYTES];
  size_t aq_n, aq_cap;
  /* Tokens inserted in this transaction, sent as one INSERT (with their
   * changes) before the next statement of any other kind, or COMMIT: a
   * group commit of Issues costs one round trip, not one each. The rows
   * are the callers' (their seq is set then), alive until commit. */
  store_token_t **tq;
  size_t tq_n, tq_cap;
  int tq_flushing;
  uint8_t audit_key[STORE_AUDIT_KEY_BYTES]; /* chains the audit log */
  int audit_keyed;
  char errmsg[256];
  /* The copy members' statements prepared on conn (a bit each, by
   * pg_copy_stmt_t); a new connection has none. */
  unsigned copy_prepared;
  /* The group commit's INSERTs prepared on conn, a bit per row count
   * (PG_NAMED_BIT): "tokend_audit_<n>", "tokend_insert_<n>". */
  uint64_t audit_named, insert_named;
} pg_t;

/* Parameters of one statement: text, or binary for bytea. */
typedef struct {
  const char *values[PG_MAX_PARAMS];
  int lengths[PG_MAX_PARAMS];
  int formats[PG_MAX_PARAMS];
  char num[PG_MAX_PARAMS][24];
  int n;
} pg_params_t;

static const struct store_ops pg_ops;
static int audit_flush(pg_t *s);
static int tokens_flush(pg_t *s);
static int tokens_flush_chunk(pg_t *s);
static int commit_pipelined(pg_t *s);

static pg_t *pg_of(store_t *base) {
  return store_container_of(base, pg_t, base);
}

static const pg_t *pg_cof(const store_t *base) {
  return store_container_of(base, const pg_t, base);
}

static void p_text(pg_params_t *p, const char *v) {
  p->values[p->n] = v;
  p->lengths[p->n] = 0;
  p->formats[p->n++] = 0;
}

static void p_i64(pg_params_t *p, int64_t v) {
  snprintf(p->num[p->n], sizeof(p->num[p->n]), "%lld", (long long)v);
  p_text(p, p->num[p->n]);
}

static void p_blob(pg_params_t *p, const uint8_t *v, size_t len) {
  p->values[p->n] = (const char *)v;
  p->lengths[p->n] = (int)len;
  p->formats[p->n++] = 1;
}

/* Records that the transaction appended or read change revision rev. */
static void tx_saw(pg_t *s, int64_t rev) {
  if (rev > s->tx_rev)
    s->tx_rev = rev;
}

/* Drops the connection: the next call makes a new one. */
static void pg_disconnect(pg_t *s) {
  PQfinish(s->conn);
  s->conn = NULL;
  s->in_tx = 0;
  s->aq_n = 0;
  s->tq_n = 0;
  s->copy_prepared = 0;
  s->audit_named = s->insert_named = 0;
}

/* One line from libpq's (possibly multi-line) message. */
static void pg_set_errmsg(pg_t *s, const char *what, const char *msg) {
  snprintf(s->errmsg, sizeof(s->errmsg), "%s: %s", what,
           msg != NULL && msg[0] != '\0' ? msg : "no connection");
  pg_one_line(s->errmsg);
}

/* Maps a failed result (r may be NULL) to a TOKEND_E* code, records the
 * message, and drops a connection that is gone. */
static int pg_fail(pg_t *s, const PGresult *r, const char *what) {
  const char *state =
      r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  int err = TOKEND_ESTORE;

  pg_set_errmsg(s, what,
                r != NULL && PQresultErrorMessage(r)[0] != '\0'
                    ? PQresultErrorMessage(r)
                : r != NULL && PQstatus(s->conn) == CONNECTION_OK
                    ? PQresStatus(PQresultStatus(r))
                    : PQerrorMessage(s->conn));
  if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
    pg_disconnect(s);
    return TOKEND_EUNAVAIL;
  }
  if (state == NULL)
    return TOKEND_ESTORE;
  if (strcmp(state, "23505") == 0) /* unique_violation */
    err = TOKEND_EEXIST;
  else if (strncmp(state, "08", 2) == 0 ||  /* connection exception */
           strncmp(state, "53", 2) == 0 ||  /* insufficient resources */
           strncmp(state, "57P", 3) == 0 || /* shutdown, cannot connect now */
           strcmp(state, "40001") == 0 ||   /* serialization failure */
           strcmp(state, "40P01") == 0 ||   /* deadlock */
           strcmp(state, "55P03") == 0)     /* lock not available */
    err = TOKEND_EUNAVAIL;
  else if (strcmp(state, "25006") == 0) /* read-only transaction */
    err = TOKEND_ECONFIG;
  return err;
}

/* Runs sql with p (NULL: none), binary results. Returns the result (the
 * caller clears it) if its status is want, else NULL with *err set. */
static PGresult *pg_run(pg_t *s, const char *what, const char *sql,
                        const pg_params_t *p, ExecStatusType want, int *err) {
  PGresult *r;

  /* Whatever this statement reads sees the tokens inserted before it. */
  if (s->tq_n > 0 && !s->tq_flushing && (*err = tokens_flush(s)) != 0)
    return NULL;
  r = PQexecParams(s->conn, sql, p != NULL ? p->n : 0, NULL,
                   p != NULL ? p->values : NULL, p != NULL ? p->lengths : NULL,
                   p != NULL ? p->formats : NULL, 1);

  /* A statement run for its effect may also return rows (SELECT
   * pg_advisory_xact_lock); nobody reads them. */
  if (r != NULL &&
      (PQresultStatus(r) == want ||
       (want == PGRES_COMMAND_OK && PQresultStatus(r) == PGRES_TUPLES_OK))) {
    *err = 0;
    return r;
  }
  *err = pg_fail(s, r, what);
  PQclear(r);
  return NULL;
}

/* A statement whose rows nobody reads. *changed (may be NULL) gets the
 * number of rows it changed. */
static int pg_exec(pg_t *s, const char *what, const char *sql,
                   const pg_params_t *p, int64_t *changed) {
  int err;
  PGresult *r = pg_run(s, what, sql, p, PGRES_COMMAND_OK, &err);

  if (r != NULL && changed != NULL)
    *changed = strtoll(PQcmdTuples(r), NULL, 10);
  PQclear(r);
  return err;
}

/* A query whose one row's first column is an integer. */
static int pg_query_int(pg_t *s, const char *what, const char *sql,
                        const pg_params_t *p, int64_t *out) {
  int err;
  PGresult *r = pg_run(s, what, sql, p, PGRES_TUPLES_OK, &err);

  if (r == NULL)
    return err;
  if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
    pg_set_errmsg(s, what, "unexpected result");
    err = TOKEND_ESTORE;
  } else {
    *out = pg_get_i64(r, 0, 0);
  }
  PQclear(r);
  return err;
}

/* The server's notices and asynchronous messages (a session terminated by
 * an administrator) go to tokend's log as one line, not to stderr. */
static void pg_notice(void *arg, const char *message) {
  char line[256];

  (void)arg;
  snprintf(line, sizeof(line), "%s", message);
  pg_one_line(line);
  log_warn("store: postgresql: %s", line);
}

/* Connects to s->uri: keepalives on unless the URI says otherwise (the
 * URI, expanded where it stands, overrides the keywords before it), the
 * session's commits synchronous, and --read-only sessions read-only. */
static int pg_connect(pg_t *s, char *why, size_t why_len) {
  const char *const keys[] = {"keepalives", "connect_timeout",
                              "application_name", "dbname", NULL};
  const char *vals[] = {"1", "10", "tokend", s->uri, NULL};
  const char *session = (s->base.flags & STORE_OPEN_READ_ONLY)
                            ? "SET synchronous_commit = on;"
                              " SET default_transaction_read_only = on"
                            : "SET synchronous_commit = on";
  PGresult *r;

  s->conn = PQconnectdbParams(keys, vals, 1);
  if (s->conn == NULL) {
    snprintf(why, why_len, "out of memory");
    return TOKEND_ENOMEM;
  }
  if (PQstatus(s->conn) != CONNECTION_OK) {
    pg_set_errmsg(s, "cannot connect to PostgreSQL", PQerrorMessage(s->conn));
    snprintf(why, why_len, "%s", s->errmsg);
    pg_disconnect(s);
    return TOKEND_EUNAVAIL;
  }
  PQsetNoticeProcessor(s->conn, pg_notice, NULL);
  /* Session settings; the only PQexec (no parameters, several statements). */
  r = PQexec(s->conn, session);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    pg_set_errmsg(s, "session settings", PQresultErrorMessage(r));
    snprintf(why, why_len, "%s", s->errmsg);
    PQclear(r);
    pg_disconnect(s);
    return TOKEND_EUNAVAIL;
  }
  PQclear(r);
  return 0;
}

/* Every call that reads or writes comes through here first: a connection
 * lost earlier is made again. A write's begin returns the reconnection's
 * own failure; any other call TOKEND_EUNAVAIL. */
static int pg_ready(pg_t *s, int begin) {
  char why[sizeof(s->errmsg)];
  int err;

  if (s->conn != NULL)
    return 0;
  if ((err = pg_connect(s, why, sizeof(why))) != 0) {
    snprintf(s->errmsg, sizeof(s->errmsg), "reconnect: %.200s", why);
    return err == 0 || begin ? err : TOKEND_EUNAVAIL;
  }
  return 0;
}

/* Ends the transaction in progress, storing nothing of it. A ROLLBACK
 * that fails leaves a connection nobody can trust: it is dropped. */
static void pg_abort(pg_t *s) {
  PGresult *r;

  s->aq_n = 0;
  s->tq_n = 0;
  if (s->conn != NULL && s->in_tx) {
    r = PQexec(s->conn, "ROLLBACK");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      pg_disconnect(s);
    PQclear(r);
  }
  s->in_tx = 0;
}

/* The schema version (0: no tokend schema) and whether the database holds
 * tables of its own (a database that is not tokend's). */
static int pg_schema_version(pg_t *s, int64_t *version, int64_t *n_tables) {
  int64_t has;
  int err;

  *version = 0;
  if ((err = pg_query_int(s, "schema",
                          "SELECT count(*) FROM pg_catalog.pg_tables"
                          " WHERE schemaname = current_schema()",
                          NULL, n_tables)) != 0 ||
      (err = pg_query_int(s, "schema",
                          "SELECT (to_regclass('tokend_schema') IS NOT"
                          " NULL)::int::int8",
                          NULL, &has)) != 0 ||
      !has)
    return err;
  return pg_query_int(s, "schema",
                      "SELECT coalesce(max(version), 0) FROM tokend_schema",
                      NULL, version);
}

/* Creates or migrates the schema in one transaction, under the write lock
 * (two tokend starting together on an empty database migrate once). */
static int pg_migrate(pg_t *s, int flags, char *why, size_t why_len) {
  int64_t version, n_tables;
  pg_params_t p = {.n = 0};
  size_t v;
  int err;

  if ((err = pg_schema_version(s, &version, &n_tables)) != 0)
    goto err_why;
  if (version == 0 && n_tables > 0) {
    snprintf(why, why_len,
             "not a tokend database: it has %lld table(s) but no "
             "tokend_schema; give tokend a database of its own",
             (long long)n_tables);
    return TOKEND_ECONFIG;
  }
  if (version == 0 && !(flags & STORE_OPEN_CREATE)) {
    snprintf(why, why_len,
             "no tokend schema in this database; pass --create-db to create "
             "it");
    return TOKEND_ENOTFOUND;
  }
  if (version > PG_SCHEMA_VERSION) {
    snprintf(why, why_len,
             "database schema version %lld is from a newer tokend (this build "
             "knows up to %d); refusing to touch it",
             (long long)version, PG_SCHEMA_VERSION);
    return TOKEND_ECONFIG;
  }
  if (version == PG_SCHEMA_VERSION)
    return 0;
  if (flags & STORE_OPEN_READ_ONLY) {
    snprintf(why, why_len,
             "database schema version %lld needs migrating to %d, which "
             "--read-only forbids; start tokend once without --read-only",
             (long long)version, PG_SCHEMA_VERSION);
    return TOKEND_ECONFIG;
  }
  if ((err = pg_exec(s, "migrate", "BEGIN", NULL, NULL)) != 0)
    goto err_why;
  s->in_tx = 1;
  if ((err = pg_exec(s, "migrate",
                     "SELECT pg_advisory_xact_lock(" PG_WRITE_LOCK ")", NULL,
                     NULL)) != 0)
    goto err_rollback;
  /* Another tokend may have migrated while this one waited for the lock. */
  if ((err = pg_exec(s, "migrate",
                     "CREATE TABLE IF NOT EXISTS tokend_schema ("
                     "  version integer NOT NULL)",
                     NULL, NULL)) != 0 ||
      (err = pg_query_int(s, "migrate",
                          "SELECT coalesce(max(version), 0) FROM tokend_schema",
                          NULL, &version)) != 0)
    goto err_rollback;
  for (v = (size_t)version; v < N_MIGRATIONS; v++) {
    /* PQexec: several statements, no parameters, no values. */
    PGresult *r = PQexec(s->conn, migrations[v]);

    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      err = pg_fail(s, r, "migrate");
      PQclear(r);
      goto err_rollback;
    }
    PQclear(r);
  }
  p_i64(&p, PG_SCHEMA_VERSION);
  if ((err = pg_exec(s, "migrate", "DELETE FROM tokend_schema", NULL, NULL)) !=
          0 ||
      (err = pg_exec(s, "migrate",
                     "INSERT INTO tokend_schema (version) VALUES ($1)", &p,
                     NULL)) != 0 ||
      (err = pg_exec(s, "migrate", "COMMIT", NULL, NULL)) != 0)
    goto err_rollback;
  s->in_tx = 0;
  return 0;

err_rollback:
  pg_abort(s);
err_why:
  snprintf(why, why_len, "migration to schema version %d failed: %s",
           PG_SCHEMA_VERSION, s->errmsg);
  return err;
}

static void pg_close(store_t *base) {
  pg_t *s = pg_of(base);

  pg_disconnect(s);
  if (s->aq != NULL)
    sodium_memzero(s->aq, s->aq_cap * sizeof(*s->aq));
  free(s->aq);
  free(s->aq_hash);
  free(s->tq);
  sodium_memzero(s->audit_key, sizeof(s->audit_key));
  if (s->uri != NULL)
    sodium_memzero(s->uri, strlen(s->uri));
  free(s->uri);
  free(s);
}

/* location is the URL after "scheme:" ("//user@host/db?..."); libpq takes
 * the whole URI. */
static pg_t *pg_new(const char *location, int flags) {
  pg_t *s = calloc(1, sizeof(*s));
  size_t n = strlen("postgresql:") + strlen(location) + 1;

  if (s == NULL || (s->uri = malloc(n)) == NULL) {
    free(s);
    return NULL;
  }
  snprintf(s->uri, n, "postgresql:%s", location);
  s->base.ops = &pg_ops;
  s->base.flags = flags;
  return s;
}

static int pg_open(const char *location, int flags, store_t **out, char *why,
                   size_t why_len) {
  pg_t *s = pg_new(location, flags);
  int err;

  *out = NULL;
  if (s == NULL) {
    snprintf(why, why_len, "out of memory");
    return TOKEND_ENOMEM;
  }
  if ((err = pg_connect(s, why, why_len)) != 0 ||
      (err = pg_migrate(s, flags, why, why_len)) != 0) {
    pg_close(&s->base);
    return err;
  }
  s->errmsg[0] = '\0';
  *out = &s->base;
  return 0;
}

static int pg_exists(const char *location) {
  pg_t *s = pg_new(location, STORE_OPEN_READ_ONLY);
  int64_t version = 0, n_tables;
  char why[256];
  int err;

  if (s == NULL)
    return TOKEND_ENOMEM;
  if ((err = pg_connect(s, why, sizeof(why))) == 0)
    err = pg_schema_version(s, &version, &n_tables);
  pg_close(&s->base);
  return err != 0 ? err : version > 0;
}

/* --check-db: the schema's version and its tables. The integrity of the
 * pages is PostgreSQL's own (checksums, amcheck), not tokend's. */
static int pg_check(const char *location, FILE *out) {
  pg_t *s = pg_new(location, STORE_OPEN_READ_ONLY);
  int64_t version = 0, n_tables = 0, has;
  pg_params_t p;
  char why[256];
  size_t i;
  int err, bad = 0;

  if (s == NULL)
    return TOKEND_ENOMEM;
  if ((err = pg_connect(s, why, sizeof(why))) != 0) {
    fprintf(out, "%s\n", why);
    err = TOKEND_ECONFIG;
    goto out;
  }
  if ((err = pg_schema_version(s, &version, &n_tables)) != 0) {
    fprintf(out, "%s\n", s->errmsg);
    err = TOKEND_ESTORE;
    goto out;
  }
  if (version != PG_SCHEMA_VERSION) {
    fprintf(out, "schema version %lld, this build knows %d\n",
            (long long)version, PG_SCHEMA_VERSION);
    bad = 1;
  }
  for (i = 0; i < sizeof(pg_tables) / sizeof(pg_tables[0]); i++) {
    p.n = 0;
    p_text(&p, pg_tables[i]);
    if ((err = pg_query_int(s, "check",
                            "SELECT (to_regclass($1) IS NOT NULL)::int::int8",
                            &p, &has)) != 0) {
      fprintf(out, "%s\n", s->errmsg);
      err = TOKEND_ESTORE;
      goto out;
    }
    if (!has) {
      fprintf(out, "table %s is missing\n", pg_tables[i]);
      bad = 1;
    }
  }
  if (!bad)
    fprintf(out,
            "schema version %lld, every table present; the integrity of the "
            "data is PostgreSQL's own (data checksums, amcheck)\n",
            (long long)version);
  err = bad ? TOKEND_ESTORE : 0;
out:
  pg_close(&s->base);
  return err;
}

static const char *pg_errmsg(const store_t *base) {
  return pg_cof(base)->errmsg;
}

/* The store is the database the URI names; there is no file to lose. */
static int pg_file_check(store_t *base) {
  (void)base;
  return 0;
}

static int pg_file_lost(const store_t *base) {
  (void)base;
  return 0;
}

static int pg_fingerprint_get(store_t *base,
                              uint8_t out[STORE_FINGERPRINT_BYTES],
                              int *present) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  *present = 0;
  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, META_PEPPER_FINGERPRINT);
  r = pg_run(s, "read pepper fingerprint",
             "SELECT value FROM meta WHERE key = $1", &p, PGRES_TUPLES_OK,
             &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) == 1) {
    if (pg_get_blob(r, 0, 0, out, STORE_FINGERPRINT_BYTES) != 0) {
      pg_set_errmsg(s, "read pepper fingerprint", "it has the wrong size");
      err = TOKEND_ESTORE;
    } else {
      *present = 1;
    }
  }
  PQclear(r);
  return err;
}

static int pg_fingerprint_set(store_t *base,
                              const uint8_t fp[STORE_FINGERPRINT_BYTES]) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  if (s->base.flags & STORE_OPEN_READ_ONLY) {
    snprintf(s->errmsg, sizeof(s->errmsg), "tokend runs --read-only");
    return TOKEND_ECONFIG;
  }
  p_text(&p, META_PEPPER_FINGERPRINT);
  p_blob(&p, fp, STORE_FINGERPRINT_BYTES);
  return pg_exec(s, "record pepper fingerprint",
                 "INSERT INTO meta (key, value) VALUES ($1, $2)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 &p, NULL);
}

static int pg_count_rows(store_t *base, int64_t *n) {
  pg_t *s = pg_of(base);
  int err;

  if ((err = pg_ready(s, 0)) != 0 || (err = audit_flush(s)) != 0)
    return err;
  return pg_query_int(s, "count rows",
                      "SELECT (SELECT count(*) FROM tokens)"
                      " + (SELECT count(*) FROM domain_admins)"
                      " + (SELECT count(*) FROM audit_events)",
                      NULL, n);
}

/* Streams the tokens in single-row mode (libpq hands over one row at a
 * time): a million tokens never sit in one result in memory. */
static int pg_load(store_t *base, store_load_cb cb, void *arg) {
  pg_t *s = pg_of(base);
  store_token_t *row;
  PGresult *r;
  int err, cb_err = 0;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  if ((row = malloc(sizeof(*row))) == NULL)
    return TOKEND_ENOMEM;
  if (!PQsendQueryParams(s->conn,
                         "SELECT " TOKEN_COLUMNS " FROM tokens ORDER BY seq", 0,
                         NULL, NULL, NULL, NULL, 1)) {
    err = pg_fail(s, NULL, "load");
    goto out;
  }
  /* If single-row mode cannot be had, the rows come in one result. */
  (void)PQsetSingleRowMode(s->conn);
  /* Every result is read to the end, even after a failure, so that the
   * connection is ready for the next statement. */
  while ((r = PQgetResult(s->conn)) != NULL) {
    ExecStatusType st = PQresultStatus(r);
    int i;

    if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
      for (i = 0; i < PQntuples(r) && err == 0 && cb_err == 0; i++) {
        if ((err = pg_token_read(r, i, 0, row)) != 0)
          pg_set_errmsg(s, "load", "token row with a bad hash");
        else
          cb_err = cb(arg, row);
      }
    } else if (err == 0) {
      err = pg_fail(s, r, "load");
    }
    PQclear(r);
    if (s->conn == NULL)
      break;
  }
  if (err == 0)
    err = cb_err;
out:
  sodium_memzero(row, sizeof(*row));
  free(row);
  return err;
}

/* BEGIN, the write lock and the audit log's head, which the
 * transaction's audit rows chain from, in one round trip (three
 * statements, one simple query; PQexec gives the last one's result, in
 * text). */
static int pg_begin_locked(pg_t *s) {
  PGresult *r = PQexec(
      s->conn, "BEGIN; SELECT pg_advisory_xact_lock(" PG_WRITE_LOCK ");"
               " SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1");
  PGTransactionStatusType ts = PQtransactionStatus(s->conn);
  const char *hex;
  int err = 0;

  s->in_tx = ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    err = pg_fail(s, r, "begin");
    pg_abort(s);
    goto out;
  }
  s->tx_head_known = 1;
  s->tx_head_id = 0;
  memset(s->tx_head_hash, 0, sizeof(s->tx_head_hash));
  if (PQntuples(r) == 1) {
    s->tx_head_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    /* bytea as text: "\x" and the hex digits; a row without its hash (none
     * in this backend) chains from zeros, as audit_head reads it. */
    hex = PQgetvalue(r, 0, 1);
    if (PQgetisnull(r, 0, 1) || strncmp(hex, "\\x", 2) != 0 ||
        sodium_hex2bin(s->tx_head_hash, sizeof(s->tx_head_hash), hex + 2,
                       strlen(hex + 2), NULL, NULL, NULL) != 0)
      memset(s->tx_head_hash, 0, sizeof(s->tx_head_hash));
  }
out:
  PQclear(r);
  return err;
}

static int pg_begin(store_t *base) {
  pg_t *s = pg_of(base);
  int err;

  if (s->base.flags & STORE_OPEN_READ_ONLY) {
    snprintf(s->errmsg, sizeof(s->errmsg), "tokend runs --read-only");
    return TOKEND_ECONFIG;
  }
  if ((err = pg_ready(s, 1)) != 0)
    return err;
  /* A connection the server ended while idle (a restart, an idle timeout)
   * is found out here, before anything of a transaction was sent: make a
   * new one and try once more. */
  err = pg_begin_locked(s);
  if (err == TOKEND_EUNAVAIL && s->conn == NULL && (err = pg_ready(s, 1)) == 0)
    err = pg_begin_locked(s);
  if (err != 0)
    return err;
  s->tx_rev = 0;
  s->aq_n = 0;
  s->tq_n = 0;
  return 0;
}

static void pg_rollback(store_t *base) { pg_abort(pg_of(base)); }

/* Reads whatever the server sent while the session was idle (a FATAL
 * message, then the end of the stream) without waiting: 0 if the
 * connection turns out lost. */
static int pg_connection_alive(pg_t *s) {
  struct pollfd pfd = {.fd = PQsocket(s->conn), .events = POLLIN};
  int i;

  for (i = 0; i < 16 && pfd.fd >= 0 && poll(&pfd, 1, 0) > 0; i++)
    if (PQconsumeInput(s->conn) == 0)
      return 0;
  return pfd.fd >= 0 && PQstatus(s->conn) == CONNECTION_OK;
}

static int pg_commit(store_t *base) {
  pg_t *s = pg_of(base);
  PGresult *r;
  int err = 0;

  if (s->conn == NULL) {
    snprintf(s->errmsg, sizeof(s->errmsg),
             "commit: the connection was lost during the transaction");
    s->in_tx = 0;
    return TOKEND_EUNAVAIL;
  }
  /* Read what the server sent while the transaction was idle: a session
   * ended before COMMIT is sent (terminated, server shut down) is rolled
   * back by the server, a definite failure. */
  if (!pg_connection_alive(s)) {
    pg_set_errmsg(s, "commit: the connection was lost before COMMIT",
                  PQerrorMessage(s->conn));
    pg_disconnect(s);
    return TOKEND_EUNAVAIL;
  }
  /* The transaction's tokens and audit rows, then its end: every chunk of
   * tokens but the last alone (their answers are large), then the rest
   * and COMMIT in one round trip. */
  while (s->tq_n > TOKENS_CHUNK)
    if ((err = tokens_flush_chunk(s)) != 0) {
      pg_abort(s);
      return err;
    }
  if (s->tq_n > 0 || s->aq_n > 0)
    return commit_pipelined(s);
  s->in_tx = 0;
  r = PQexec(s->conn, "COMMIT");
  if (PQstatus(s->conn) != CONNECTION_OK) {
    /* COMMIT was sent, then the connection went: the server may have
     * committed before it did. The next call reconnects. */
    pg_set_errmsg(s, "commit: the connection was lost during COMMIT",
                  PQerrorMessage(s->conn));
    PQclear(r);
    pg_disconnect(s);
    return TOKEND_EINDOUBT;
  }
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    err = pg_fail(s, r, "commit");
  } else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
    /* COMMIT of a transaction that had failed answers ROLLBACK. */
    pg_set_errmsg(s, "commit",
                  "the transaction had failed and was rolled "
                  "back");
    err = TOKEND_ESTORE;
  }
  PQclear(r);
  return err;
}

/* A multi-row statement being built: its SQL, "<head>($1,...,$c), ($c+1,
 * ...)", and rows x cols parameters (text unless batch_blob says). */
typedef struct {
  size_t cols;
  const char **values;
  int *lengths, *formats;
  char *sql;
  size_t cap, off;
} pg_batch_t;

static void batch_free(pg_batch_t *b) {
  free(b->values);
  free(b->lengths);
  free(b->formats);
  free(b->sql);
}

static int batch_init(pg_batch_t *b, size_t rows, size_t cols,
                      const char *head) {
  memset(b, 0, sizeof(*b));
  b->cols = cols;
  /* The head, each row's placeholders, and room for the statement's tail. */
  b->cap = strlen(head) + 640 + rows * (cols * 7 + 4);
  b->values = calloc(rows * cols, sizeof(*b->values));
  b->lengths = calloc(rows * cols, sizeof(*b->lengths));
  b->formats = calloc(rows * cols, sizeof(*b->formats));
  b->sql = malloc(b->cap);
  if (b->values == NULL || b->lengths == NULL || b->formats == NULL ||
      b->sql == NULL) {
    batch_free(b);
    return TOKEND_ENOMEM;
  }
  b->off = (size_t)snprintf(b->sql, b->cap, "%s", head);
  return 0;
}

/* Appends row i's placeholders; returns where its values go. */
static const char **batch_row(pg_batch_t *b, size_t i) {
  size_t k;

  b->off +=
      (size_t)snprintf(b->sql + b->off, b->cap - b->off, "%s(", i ? ", " : "");
  for (k = 0; k < b->cols; k++)
    b->off += (size_t)snprintf(b->sql + b->off, b->cap - b->off, "%s$%zu",
                               k > 0 ? "," : "", i * b->cols + k + 1);
  b->off += (size_t)snprintf(b->sql + b->off, b->cap - b->off, ")");
  return b->values + i * b->cols;
}

/* Row i's value k is len binary bytes at v. */
static void batch_blob(pg_batch_t *b, size_t i, size_t k, const void *v,
                       size_t len) {
  b->values[i * b->cols + k] = v;
  b->lengths[i * b->cols + k] = (int)len;
  b->formats[i * b->cols + k] = 1;
}

static PGresult *batch_exec(pg_t *s, const pg_batch_t *b, size_t rows) {
  return PQexecParams(s->conn, b->sql, (int)(rows * b->cols), NULL, b->values,
                      b->lengths, b->formats, 1);
}

/* Builds the INSERT of the first n queued tokens, each row with its
 * change (the caller frees b and *num). */
static int tokens_build(pg_t *s, size_t n, pg_batch_t *b, char (**num)[3][24]) {
  enum { COLS = 13 };
  size_t i;
  int err, tail;

  *num = NULL;
  if ((err = batch_init(b, n, COLS,
                        "WITH t AS (INSERT INTO tokens (id, domain, label,"
                        " hash, hint, scopes, created_at, expires_at,"
                        " created_by, metadata, rolled_from, rolled_to,"
                        " pepper_gen) VALUES ")) != 0 ||
      (*num = calloc(n, sizeof(**num))) == NULL) {
    snprintf(s->errmsg, sizeof(s->errmsg), "insert: out of memory");
    if (err == 0)
      batch_free(b);
    return TOKEND_ENOMEM;
  }
  for (i = 0; i < n; i++) {
    const store_token_t *row = s->tq[i];
    const char **v = batch_row(b, i);
    char(*nm)[24] = (*num)[i];

    snprintf(nm[0], sizeof(nm[0]), "%lld", (long long)row->created_at);
    snprintf(nm[1], sizeof(nm[1]), "%lld", (long long)row->expires_at);
    snprintf(nm[2], sizeof(nm[2]), "%ld", (long)row->pepper_gen);
    v[0] = row->id;
    v[1] = row->domain;
    v[2] = row->label;
    batch_blob(b, i, 3, row->hash, TOKEND_HASH_BYTES);
    v[4] = row->hint;
    v[5] = row->scopes;
    v[6] = nm[0];
    v[7] = nm[1];
    v[8] = row->created_by;
    v[9] = row->metadata;
    v[10] = row->rolled_from;
    v[11] = row->rolled_to;
    v[12] = nm[2];
  }
  /* The rows' changes numbered as one: a single UPDATE of feed (the same
   * row lock as tokend_change's, held to commit) moves the head by n and
   * the rows take the n revisions below it, in seq order; tokend_change
   * per row ran three statements each, the most of a group commit's time
   * in the server. */
  tail = snprintf(
      b->sql + b->off, b->cap - b->off,
      " RETURNING id, seq, created_at),"
      " f AS (UPDATE feed SET rev = rev + (SELECT count(*) FROM t)"
      " RETURNING rev),"
      " n AS (SELECT t.id, t.seq, t.created_at, f.rev - count(*) OVER ()"
      " + row_number() OVER (ORDER BY t.seq) AS rev FROM t, f),"
      " c AS (INSERT INTO changes (rev, at, token_seq)"
      " SELECT rev, created_at, seq FROM n)"
      " SELECT n.id, n.seq, n.rev FROM n,"
      " (SELECT pg_notify('tokend_changes', '')) w");
  /* Sized by batch_init: a tail cut short would be a broken statement. */
  if (tail < 0 || (size_t)tail >= b->cap - b->off) {
    batch_free(b);
    free(*num);
    *num = NULL;
    snprintf(s->errmsg, sizeof(s->errmsg), "insert: statement too long");
    return TOKEND_EINTERNAL;
  }
  return 0;
}

/* Takes the answer r (any status) to the INSERT of the first n queued
 * tokens: sets each row's seq and takes them off the queue. */
static int tokens_take(pg_t *s, const PGresult *r, size_t n) {
  size_t i;

  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    return pg_fail(s, r, "insert");
  if ((size_t)PQntuples(r) != n) {
    pg_set_errmsg(s, "insert", "unexpected result");
    return TOKEND_ESTORE;
  }
  /* Each answer row to its token, by id (the order is PostgreSQL's). */
  for (i = 0; i < n; i++) {
    char id[TOKEND_TOKEN_ID_BYTES];
    size_t j = i;

    pg_get_text(r, (int)i, 0, id, sizeof(id));
    if (strcmp(s->tq[j]->id, id) != 0)
      for (j = 0; j < n && strcmp(s->tq[j]->id, id) != 0; j++)
        ;
    if (j == n) {
      pg_set_errmsg(s, "insert", "unexpected result");
      return TOKEND_ESTORE;
    }
    s->tq[j]->seq = pg_get_i64(r, (int)i, 1);
    tx_saw(s, pg_get_i64(r, (int)i, 2));
  }
  memmove(s->tq, s->tq + n, (s->tq_n - n) * sizeof(*s->tq));
  s->tq_n -= n;
  return 0;
}

/* Sends the first chunk of the queued tokens as one INSERT. */
static int tokens_flush_chunk(pg_t *s) {
  size_t n = s->tq_n < TOKENS_CHUNK ? s->tq_n : TOKENS_CHUNK;
  char(*num)[3][24];
  pg_batch_t b;
  PGresult *r;
  int err;

  if ((err = tokens_build(s, n, &b, &num)) != 0)
    return err;
  s->tq_flushing = 1;
  r = batch_exec(s, &b, n);
  s->tq_flushing = 0;
  err = tokens_take(s, r, n);
  PQclear(r);
  batch_free(&b);
  free(num);
  return err;
}

/* Sends the queued tokens as one INSERT per chunk. */
static int tokens_flush(pg_t *s) {
  int err = 0;

  while (err == 0 && s->tq_n > 0)
    err = tokens_flush_chunk(s);
  return err;
}

static int audit_build(pg_t *s, pg_batch_t *b, char (**num)[24]);

/* The queued audit rows, the queued tokens (one chunk at most) and COMMIT
 * in one round trip (libpq's pipeline mode): the audit INSERT first, whose
 * answer is small, so the server never waits to send an answer while the
 * rest is still being sent. The transaction is under way (in_tx). Returns
 * as pg_commit. */
static int commit_pipelined(pg_t *s) {
  enum { PREP_AUDIT, AUDIT, PREP_TOKENS, TOKENS, END, N_STEPS };
  static const char *const what[N_STEPS] = {"audit", "audit", "insert",
                                            "insert", "commit"};
  size_t nt = s->tq_n, na = s->aq_n;
  char(*tnum)[3][24] = NULL, (*anum)[24] = NULL, aname[32], tname[32];
  pg_batch_t tb, ab;
  PGresult *res[N_STEPS] = {NULL}, *x;
  int sent[N_STEPS] = {0}, err, i, commit_sent = 0, fail = -1, ok;
  /* A group of up to PG_NAMED_ROWS rows runs a statement prepared once
   * per size and connection: its parse and plan, done for every group
   * otherwise (the text changes with the size), were a third of the
   * server's time for a group of Issues. */
  int named_a = na > 0 && na <= PG_NAMED_ROWS;
  int named_t = nt > 0 && nt <= PG_NAMED_ROWS;

  if (s->aq_n > 0 && (err = audit_build(s, &ab, &anum)) != 0)
    goto err_abort;
  if (nt > 0 && (err = tokens_build(s, nt, &tb, &tnum)) != 0)
    goto err_free_audit;
  if (!PQenterPipelineMode(s->conn)) {
    pg_set_errmsg(s, "commit", PQerrorMessage(s->conn));
    err = TOKEND_ESTORE;
    goto err_free_tokens;
  }
  snprintf(aname, sizeof(aname), "tokend_audit_%zu", na);
  snprintf(tname, sizeof(tname), "tokend_insert_%zu", nt);
  sent[PREP_AUDIT] = named_a && !(s->audit_named & PG_NAMED_BIT(na));
  sent[AUDIT] = anum != NULL;
  sent[PREP_TOKENS] = named_t && !(s->insert_named & PG_NAMED_BIT(nt));
  sent[TOKENS] = tnum != NULL;
  sent[END] = 1;
  ok = (!sent[PREP_AUDIT] ||
        PQsendPrepare(s->conn, aname, ab.sql, (int)(na * ab.cols), NULL)) &&
       (!sent[AUDIT] ||
        (named_a ? PQsendQueryPrepared(s->conn, aname, (int)(na * ab.cols),
                                       ab.values, ab.lengths, ab.formats, 1)
                 : PQsendQueryParams(s->conn, ab.sql, (int)(na * ab.cols), NULL,
                                     ab.values, ab.lengths, ab.formats, 1))) &&
       (!sent[PREP_TOKENS] ||
        PQsendPrepare(s->conn, tname, tb.sql, (int)(nt * tb.cols), NULL)) &&
       (!sent[TOKENS] ||
        (named_t ? PQsendQueryPrepared(s->conn, tname, (int)(nt * tb.cols),
                                       tb.values, tb.lengths, tb.formats, 1)
                 : PQsendQueryParams(s->conn, tb.sql, (int)(nt * tb.cols), NULL,
                                     tb.values, tb.lengths, tb.formats, 1)));
  if (ok)
    commit_sent =
        PQsendQueryParams(s->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 1);
  if (!commit_sent || !PQpipelineSync(s->conn))
    goto lost;
  /* Each query's results end with NULL; the sync point's is its own. */
  for (i = 0; i < N_STEPS; i++) {
    if (!sent[i])
      continue;
    if ((res[i] = PQgetResult(s->conn)) == NULL)
      goto lost;
    while ((x = PQgetResult(s->conn)) != NULL) {
      PQclear(res[i]);
      res[i] = x;
    }
  }
  x = PQgetResult(s->conn);
  if (x == NULL || PQresultStatus(x) != PGRES_PIPELINE_SYNC ||
      PQstatus(s->conn) != CONNECTION_OK) {
    PQclear(x);
    goto lost;
  }
  PQclear(x);
  if (!PQexitPipelineMode(s->conn))
    goto lost;
  /* A statement prepared stays, whatever became of the transaction. */
  if (sent[PREP_AUDIT] && PQresultStatus(res[PREP_AUDIT]) == PGRES_COMMAND_OK)
    s->audit_named |= PG_NAMED_BIT(na);
  if (sent[PREP_TOKENS] && PQresultStatus(res[PREP_TOKENS]) == PGRES_COMMAND_OK)
    s->insert_named |= PG_NAMED_BIT(nt);
  for (i = 0; i < N_STEPS && fail < 0; i++)
    if (sent[i] && PQresultStatus(res[i]) !=
                       (i == TOKENS ? PGRES_TUPLES_OK : PGRES_COMMAND_OK))
      fail = i;
  if (fail >= 0) {
    /* A statement failed: the ones after it, COMMIT included, were not
     * run, and the transaction is left failed: roll it back. */
    err = pg_fail(s, res[fail], what[fail]);
    if (fail != END)
      pg_abort(s);
    s->in_tx = 0;
    goto out;
  }
  s->in_tx = 0;
  if (strcmp(PQcmdStatus(res[END]), "COMMIT") != 0) {
    /* COMMIT of a transaction that had failed answers ROLLBACK. */
    pg_set_errmsg(s, "commit",
                  "the transaction had failed and was rolled back");
    err = TOKEND_ESTORE;
    goto out;
  }
  s->aq_n = 0;
  /* Committed: an answer that does not match the rows sent leaves memory
   * unsure of them, which the writer's reconcile settles. */
  err = 0;
  if (sent[TOKENS] && tokens_take(s, res[TOKENS], nt) != 0)
    err = TOKEND_EINDOUBT;
  goto out;

lost:
  /* The connection went once COMMIT may have been sent: the server may
   * have committed. Before that, it rolls the transaction back. */
  pg_set_errmsg(s,
                commit_sent ? "commit: the connection was lost during COMMIT"
                            : "commit: the connection was lost before COMMIT",
                PQerrorMessage(s->conn));
  err = commit_sent ? TOKEND_EINDOUBT : TOKEND_EUNAVAIL;
  pg_disconnect(s);
out:
  for (i = 0; i < N_STEPS; i++)
    PQclear(res[i]);
err_free_tokens:
  if (tnum != NULL) {
    batch_free(&tb);
    free(tnum);
  }
err_free_audit:
  if (anum != NULL) {
    batch_free(&ab);
    free(anum);
  }
err_abort:
  if (err != 0 && s->in_tx)
    pg_abort(s);
  return err;
}

static int pg_insert(store_t *base, store_token_t *row) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  /* In a transaction: with the group's others, before what follows. */
  if (s->in_tx) {
    if (s->tq_n == s->tq_cap) {
      size_t cap = s->tq_cap == 0 ? 64 : 2 * s->tq_cap;
      store_token_t **q = realloc(s->tq, cap * sizeof(*q));

      if (q == NULL) {
        snprintf(s->errmsg, sizeof(s->errmsg), "insert: out of memory");
        return TOKEND_ENOMEM;
      }
      s->tq = q;
      s->tq_cap = cap;
    }
    row->seq = 0;
    s->tq[s->tq_n++] = row;
    return 0;
  }
  p_text(&p, row->id);
  p_text(&p, row->domain);
  p_text(&p, row->label);
  p_blob(&p, row->hash, TOKEND_HASH_BYTES);
  p_text(&p, row->hint);
  p_text(&p, row->scopes);
  p_i64(&p, row->created_at);
  p_i64(&p, row->expires_at);
  p_text(&p, row->created_by);
  p_text(&p, row->metadata);
  p_text(&p, row->rolled_from);
  p_text(&p, row->rolled_to);
  p_i64(&p, row->pepper_gen);
  /* The row and its change, in one statement. */
  r = pg_run(s, "insert",
             "WITH t AS (INSERT INTO tokens (id, domain, label, hash, hint,"
             " scopes, created_at, expires_at, created_by, metadata,"
             " rolled_from, rolled_to, pepper_gen)"
             " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
             " $13)"
             " RETURNING seq, created_at)"
             " SELECT seq, tokend_change(seq, NULL, NULL, created_at) FROM t",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) != 1) {
    pg_set_errmsg(s, "insert", "unexpected result");
    err = TOKEND_ESTORE;
  } else {
    row->seq = pg_get_i64(r, 0, 0);
    tx_saw(s, pg_get_i64(r, 0, 1));
  }
  PQclear(r);
  return err;
}

static int pg_revoke(store_t *base, const char *domain, const char *id,
                     int64_t now, const char *by, int64_t *revoked_at,
                     int *already, uint8_t hash[TOKEND_HASH_BYTES]) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0}, q = {.n = 0};
  PGresult *r;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_text(&p, id);
  p_i64(&p, now);
  p_text(&p, by);
  /* The revocation and its change, in one statement. */
  r = pg_run(s, "revoke",
             "WITH u AS (UPDATE tokens SET revoked_at = $3, revoked_by = $4"
             " WHERE domain = $1 AND id = $2 AND revoked_at = 0"
             " RETURNING seq, revoked_at, hash)"
             " SELECT revoked_at, hash,"
             " tokend_change(seq, NULL, NULL, revoked_at) FROM u",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  *already = PQntuples(r) == 0;
  if (*already) {
    /* Revoked before, or not there: read what is, and the feed's head,
     * which holds the earlier revocation (another call's, maybe still
     * spreading: this one is answered once it has spread too). */
    PQclear(r);
    p_text(&q, domain);
    p_text(&q, id);
    r = pg_run(s, "revoke read",
               "SELECT revoked_at, hash, (SELECT rev FROM feed) FROM tokens"
               " WHERE domain = $1 AND id = $2",
               &q, PGRES_TUPLES_OK, &err);
    if (r == NULL)
      return err;
  }
  if (PQntuples(r) == 0) {
    err = TOKEND_ENOTFOUND;
  } else if (pg_get_blob(r, 0, 1, hash, TOKEND_HASH_BYTES) != 0) {
    pg_set_errmsg(s, "revoke read", "token row with a bad hash");
    err = TOKEND_ESTORE;
  } else {
    *revoked_at = pg_get_i64(r, 0, 0);
    tx_saw(s, pg_get_i64(r, 0, 2));
  }
  PQclear(r);
  return err;
}

static int pg_touch(store_t *base, const store_touch_t *items, size_t n) {
  pg_t *s = pg_of(base);
  pg_params_t p;
  size_t i;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  for (i = 0; i < n && err == 0; i++) {
    p.n = 0;
    p_blob(&p, items[i].hash, TOKEND_HASH_BYTES);
    p_i64(&p, items[i].last_used_at);
    err = pg_exec(s, "touch",
                  "UPDATE tokens SET last_used_at = $2"
                  " WHERE hash = $1 AND last_used_at < $2",
                  &p, NULL);
  }
  return err;
}

/* Reads up to max_rows token rows of r (TOKEN_COLUMNS) into rows; *n_rows
 * gets how many, 0 on failure (a row with a bad hash; what names the
 * call in the message). */
static int pg_token_rows(pg_t *s, const PGresult *r, const char *what,
                         store_token_t *rows, size_t max_rows, size_t *n_rows) {
  size_t n;
  int err = 0;

  for (n = 0; n < (size_t)PQntuples(r) && n < max_rows; n++) {
    if ((err = pg_token_read(r, (int)n, 0, &rows[n])) != 0) {
      pg_set_errmsg(s, what, "token row with a bad hash");
      break;
    }
  }
  *n_rows = err == 0 ? n : 0;
  return err;
}

static int pg_list(store_t *base, const char *domain, int include_revoked,
                   int64_t before_seq, store_token_t *rows, size_t max_rows,
                   size_t *n_rows) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  *n_rows = 0;
  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_i64(&p, before_seq > 0 ? before_seq : INT64_MAX);
  p_text(&p, include_revoked ? "true" : "false");
  p_i64(&p, (int64_t)max_rows);
  r = pg_run(s, "list",
             "SELECT " TOKEN_COLUMNS " FROM tokens"
             " WHERE domain = $1 AND seq < $2 AND ($3::boolean OR"
             " revoked_at = 0) ORDER BY seq DESC LIMIT $4",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  err = pg_token_rows(s, r, "list", rows, max_rows, n_rows);
  PQclear(r);
  return err;
}

static int pg_admin_grant(store_t *base, const char *domain, const char *user,
                          int64_t now, const char *by, int64_t *granted_at,
                          int *already) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0}, q = {.n = 0};
  int64_t changed = 0;
  PGresult *r;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_text(&p, user);
  p_i64(&p, now);
  p_text(&p, by);
  if ((err = pg_query_int(s, "admin grant",
                          "WITH i AS (INSERT INTO domain_admins (domain,"
                          " user_name, granted_at, granted_by)"
                          " VALUES ($1, $2, $3, $4)"
                          " ON CONFLICT (domain, user_name) DO NOTHING"
                          " RETURNING domain, user_name, granted_at)"
                          " SELECT count(tokend_change(NULL, domain,"
                          " user_name, granted_at)) FROM i",
                          &p, &changed)) != 0)
    return err;
  *already = changed == 0;
  p_text(&q, domain);
  p_text(&q, user);
  if ((r = pg_run(s, "admin grant",
                  "SELECT granted_at, (SELECT rev FROM feed) FROM"
                  " domain_admins WHERE domain = $1 AND user_name = $2",
                  &q, PGRES_TUPLES_OK, &err)) == NULL)
    return err;
  if (PQntuples(r) != 1) {
    pg_set_errmsg(s, "admin grant", "unexpected result");
    err = TOKEND_ESTORE;
  } else {
    *granted_at = pg_get_i64(r, 0, 0);
    tx_saw(s, pg_get_i64(r, 0, 1));
  }
  PQclear(r);
  return err;
}

/* The hashes in column 0 of r, malloc'd (NULL when none). */
static int collect_hashes(pg_t *s, const PGresult *r, const char *what,
                          uint8_t (**hashes)[TOKEND_HASH_BYTES],
                          size_t *n_hashes) {
  size_t i, n = (size_t)PQntuples(r);
  uint8_t(*h)[TOKEND_HASH_BYTES];

  *hashes = NULL;
  *n_hashes = 0;
  if (n == 0)
    return 0;
  if ((h = calloc(n, sizeof(*h))) == NULL)
    return TOKEND_ENOMEM;
  for (i = 0; i < n; i++) {
    if (pg_get_blob(r, (int)i, 0, h[i], TOKEND_HASH_BYTES) != 0) {
      free(h);
      pg_set_errmsg(s, what, "token row with a bad hash");
      return TOKEND_ESTORE;
    }
  }
  *hashes = h;
  *n_hashes = n;
  return 0;
}

static int pg_admin_remove(store_t *base, const char *domain, const char *user,
                           int revoke_tokens, int64_t now, const char *by,
                           uint8_t (**hashes)[TOKEND_HASH_BYTES],
                           size_t *n_hashes) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0}, q = {.n = 0};
  int64_t changed = 0;
  PGresult *r;
  int i, err;

  *hashes = NULL;
  *n_hashes = 0;
  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_text(&p, user);
  p_i64(&p, now);
  if ((err = pg_query_int(s, "admin remove",
                          "WITH d AS (DELETE FROM domain_admins"
                          " WHERE domain = $1 AND user_name = $2"
                          " RETURNING domain, user_name)"
                          " SELECT coalesce(max(tokend_change(NULL, domain,"
                          " user_name, $3)), 0) FROM d",
                          &p, &changed)) != 0)
    return err;
  tx_saw(s, changed);
  if (changed == 0)
    return TOKEND_ENOTFOUND;
  if (!revoke_tokens)
    return 0;
  p_text(&q, domain);
  p_text(&q, user);
  p_i64(&q, now);
  p_text(&q, by);
  r = pg_run(s, "admin remove",
             "WITH u AS (UPDATE tokens SET revoked_at = $3, revoked_by = $4"
             " WHERE domain = $1 AND created_by = $2 AND revoked_at = 0"
             " RETURNING seq, hash, revoked_at)"
             " SELECT hash, tokend_change(seq, NULL, NULL, revoked_at)"
             " FROM u",
             &q, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  err = collect_hashes(s, r, "admin remove", hashes, n_hashes);
  for (i = 0; err == 0 && i < PQntuples(r); i++)
    tx_saw(s, pg_get_i64(r, i, 1));
  PQclear(r);
  return err;
}

static int pg_admin_load(store_t *base, store_admin_cb cb, void *arg) {
  pg_t *s = pg_of(base);
  store_admin_t a;
  PGresult *r;
  int i, err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  r = pg_run(s, "admin load",
             "SELECT domain, user_name, granted_at, granted_by"
             " FROM domain_admins",
             NULL, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  for (i = 0; i < PQntuples(r) && err == 0; i++) {
    pg_get_text(r, i, 0, a.domain, sizeof(a.domain));
    pg_get_text(r, i, 1, a.user, sizeof(a.user));
    a.granted_at = pg_get_i64(r, i, 2);
    pg_get_text(r, i, 3, a.granted_by, sizeof(a.granted_by));
    err = cb(arg, &a);
  }
  PQclear(r);
  return err;
}

static int pg_token_get(store_t *base, const char *domain, const char *id,
                        store_token_t *row) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_text(&p, id);
  r = pg_run(s, "token get",
             "SELECT " TOKEN_COLUMNS " FROM tokens"
             " WHERE domain = $1 AND id = $2",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) == 0)
    err = TOKEND_ENOTFOUND;
  else if ((err = pg_token_read(r, 0, 0, row)) != 0)
    pg_set_errmsg(s, "token get", "token row with a bad hash");
  PQclear(r);
  return err;
}

static int pg_admin_get(store_t *base, const char *domain, const char *user,
                        int64_t *granted_at) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_text(&p, user);
  r = pg_run(s, "admin get",
             "SELECT granted_at FROM domain_admins"
             " WHERE domain = $1 AND user_name = $2",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) == 0)
    err = TOKEND_ENOTFOUND;
  else
    *granted_at = pg_get_i64(r, 0, 0);
  PQclear(r);
  return err;
}

static int pg_revoked_with(store_t *base, const char *domain,
                           const char *created_by, int64_t revoked_at,
                           const char *revoked_by,
                           uint8_t (**hashes)[TOKEND_HASH_BYTES],
                           size_t *n_hashes) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  *hashes = NULL;
  *n_hashes = 0;
  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_text(&p, created_by);
  p_i64(&p, revoked_at);
  p_text(&p, revoked_by);
  r = pg_run(s, "revoked-with",
             "SELECT hash FROM tokens WHERE domain = $1 AND created_by = $2"
             " AND revoked_at = $3 AND revoked_by = $4",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  err = collect_hashes(s, r, "revoked-with", hashes, n_hashes);
  PQclear(r);
  return err;
}

/* ---- revocation in bulk (issue 17) ---- */

/* The rows of r (id in column 0, hash in column 1) as store_revoked_t,
 * malloc'd (NULL when none). */
static int collect_revoked(pg_t *s, const PGresult *r, const char *what,
                           store_revoked_t **out, size_t *n_out) {
  size_t i, n = (size_t)PQntuples(r);
  store_revoked_t *v;

  *out = NULL;
  *n_out = 0;
  if (n == 0)
    return 0;
  if ((v = calloc(n, sizeof(*v))) == NULL)
    return TOKEND_ENOMEM;
  for (i = 0; i < n; i++) {
    pg_get_text(r, (int)i, 0, v[i].id, sizeof(v[i].id));
    if (pg_get_blob(r, (int)i, 1, v[i].hash, TOKEND_HASH_BYTES) != 0) {
      free(v);
      pg_set_errmsg(s, what, "token row with a bad hash");
      return TOKEND_ESTORE;
    }
  }
  *out = v;
  *n_out = n;
  return 0;
}

/* The WHERE condition of sel on parameter $k, and its parameter appended
 * to p (none for STORE_BULK_ALL). ids_buf holds the ids as a text array
 * literal: ids are "tok_" and letters and digits (the caller checked), so
 * they need no quoting. */
static const char *bulk_cond(const store_bulk_select_t *sel, int k,
                             pg_params_t *p, char *ids_buf, char *cond,
                             size_t cond_len) {
  switch (sel->by) {
  case STORE_BULK_IDS:
    p_text(p, ids_buf);
    snprintf(cond, cond_len, "id = ANY($%d::text[])", k);
    break;
  case STORE_BULK_CREATOR:
    p_text(p, sel->created_by);
    snprintf(cond, cond_len, "created_by = $%d", k);
    break;
  case STORE_BULK_BEFORE:
    p_i64(p, sel->created_before);
    snprintf(cond, cond_len, "created_at < $%d::bigint", k);
    break;
  case STORE_BULK_ALL:
  default:
    snprintf(cond, cond_len, "true");
    break;
  }
  return cond;
}

/* "{id,id,...}", malloc'd. */
static char *ids_literal(const store_bulk_select_t *sel) {
  size_t i, off = 0, cap = 3 + sel->n_ids * TOKEND_TOKEN_ID_BYTES;
  char *buf = malloc(cap);

  if (buf == NULL)
    return NULL;
  buf[off++] = '{';
  for (i = 0; i < sel->n_ids; i++)
    off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? "," : "",
                            sel->ids[i]);
  buf[off++] = '}';
  buf[off] = '\0';
  return buf;
}

/* The first of sel's ids that r (one id a row, column 0) lacks. */
static const char *first_missing(const store_bulk_select_t *sel,
                                 const PGresult *r) {
  char id[TOKEND_TOKEN_ID_BYTES];
  size_t i;
  int j, n = PQntuples(r);

  for (i = 0; i < sel->n_ids; i++) {
    for (j = 0; j < n; j++) {
      pg_get_text(r, j, 0, id, sizeof(id));
      if (strcmp(id, sel->ids[i]) == 0)
        break;
    }
    if (j == n)
      return sel->ids[i];
  }
  return NULL;
}

/* One statement revokes and numbers a change for each token: the feed's
 * row is moved once by the count (under the write lock, as tokend_change
 * does it one at a time) and the changes are inserted together, so a
 * revocation of 100,000 tokens is neither 100,000 round trips nor 100,000
 * updates of the feed row; followers read each token's row, as for any
 * token change. */
static int pg_bulk_revoke(store_t *base, const char *domain,
                          const store_bulk_select_t *sel, int64_t now,
                          const char *by, store_revoked_t **revoked,
                          size_t *n_revoked, size_t *n_already, char *missing) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0}, q = {.n = 0};
  char cond[64], sql[1024], *ids = NULL;
  const char *gone;
  int64_t already = 0, head = 0;
  PGresult *r = NULL;
  int err;

  *revoked = NULL;
  *n_revoked = 0;
  *n_already = 0;
  if ((err = pg_ready(s, 0)) != 0)
    return err;
  if (sel->by == STORE_BULK_IDS && (ids = ids_literal(sel)) == NULL)
    return TOKEND_ENOMEM;
  p_text(&p, domain);
  bulk_cond(sel, 2, &p, ids, cond, sizeof(cond));
  if (sel->by == STORE_BULK_IDS) {
    r = pg_run(s, "bulk revoke",
               "SELECT id FROM tokens WHERE domain = $1"
               " AND id = ANY($2::text[])",
               &p, PGRES_TUPLES_OK, &err);
    if (r == NULL)
      goto out;
    if ((gone = first_missing(sel, r)) != NULL) {
      snprintf(missing, TOKEND_TOKEN_ID_BYTES, "%s", gone);
      err = TOKEND_ENOTFOUND;
      goto out;
    }
    PQclear(r);
    r = NULL;
  }
  snprintf(sql, sizeof(sql),
           "SELECT count(*) FROM tokens WHERE domain = $1"
           " AND revoked_at <> 0 AND %s",
           cond);
  if ((err = pg_query_int(s, "bulk revoke", sql, &p, &already)) != 0)
    goto out;
  p_text(&q, domain);
  p_i64(&q, now);
  p_text(&q, by);
  bulk_cond(sel, 4, &q, ids, cond, sizeof(cond));
  snprintf(sql, sizeof(sql),
           "WITH u AS (UPDATE tokens SET revoked_at = $2, revoked_by = $3"
           " WHERE domain = $1 AND revoked_at = 0 AND %s"
           " RETURNING seq, id, hash),"
           " n AS (SELECT count(*) AS c FROM u),"
           " f AS (UPDATE feed SET rev = rev + n.c FROM n WHERE n.c > 0"
           " RETURNING rev, n.c),"
           " c AS (INSERT INTO changes (rev, at, token_seq)"
           " SELECT f.rev - f.c + row_number() OVER (ORDER BY u.seq), $2,"
           " u.seq FROM u, f)"
           " SELECT u.id, u.hash, f.rev FROM u, f",
           cond);
  r = pg_run(s, "bulk revoke", sql, &q, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    goto out;
  if ((err = collect_revoked(s, r, "bulk revoke", revoked, n_revoked)) != 0)
    goto out;
  if (*n_revoked > 0) {
    tx_saw(s, pg_get_i64(r, 0, 2));
    /* What tokend_change does for each change: followers wake at commit. */
    err = pg_exec(s, "bulk revoke", "SELECT pg_notify('tokend_changes', '')",
                  NULL, NULL);
  } else {
    /* Nothing changed: the feed's head holds any earlier revocation. */
    err = pg_query_int(s, "bulk revoke", "SELECT rev FROM feed", NULL, &head);
    if (err == 0)
      tx_saw(s, head);
  }
  if (err == 0)
    *n_already = (size_t)already;
out:
  if (err != 0) {
    free(*revoked);
    *revoked = NULL;
    *n_revoked = 0;
  }
  PQclear(r);
  free(ids);
  return err;
}

static int pg_revoked_at_by(store_t *base, const char *domain,
                            int64_t revoked_at, const char *revoked_by,
                            store_revoked_t **revoked, size_t *n_revoked) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  *revoked = NULL;
  *n_revoked = 0;
  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_i64(&p, revoked_at);
  p_text(&p, revoked_by);
  r = pg_run(s, "revoked-at-by",
             "SELECT id, hash, (SELECT rev FROM feed) FROM tokens"
             " WHERE domain = $1 AND revoked_at = $2 AND revoked_by = $3",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  err = collect_revoked(s, r, "revoked-at-by", revoked, n_revoked);
  if (err == 0 && *n_revoked > 0)
    tx_saw(s, pg_get_i64(r, 0, 2));
  PQclear(r);
  return err;
}

/* ---- domain policies (issue 17) ---- */

/* The columns of a domain_policies row that pg_policy_row reads. */
#define POLICY_COLUMNS                                                         \
  "max_lifetime_ms, require_expiry::int4, allowed_scopes,"                     \
  " max_active_tokens::int8, updated_at, updated_by"

/* Reads POLICY_COLUMNS of row i of r into out (zeroed first), whose domain
 * the caller sets. */
static void pg_policy_row(const PGresult *r, int i, store_policy_t *out) {
  memset(out, 0, sizeof(*out));
  out->max_lifetime_ms = pg_get_i64(r, i, 0);
  out->require_expiry = pg_get_i64(r, i, 1) != 0;
  pg_get_text(r, i, 2, out->allowed_scopes, sizeof(out->allowed_scopes));
  out->max_active_tokens = (int32_t)pg_get_i64(r, i, 3);
  out->updated_at = pg_get_i64(r, i, 4);
  pg_get_text(r, i, 5, out->updated_by, sizeof(out->updated_by));
}

static int pg_policy_get(store_t *base, const char *domain,
                         store_policy_t *out) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  r = pg_run(s, "policy get",
             "SELECT " POLICY_COLUMNS " FROM domain_policies WHERE domain = $1",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) == 0) {
    err = TOKEND_ENOTFOUND;
  } else {
    pg_policy_row(r, 0, out);
    snprintf(out->domain, sizeof(out->domain), "%s", domain);
  }
  PQclear(r);
  return err;
}

static int pg_policy_load(store_t *base, store_policy_cb cb, void *arg) {
  pg_t *s = pg_of(base);
  store_policy_t pol;
  PGresult *r;
  int i, err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  r = pg_run(s, "policy load",
             "SELECT " POLICY_COLUMNS ", domain FROM domain_policies", NULL,
             PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  for (i = 0; i < PQntuples(r) && err == 0; i++) {
    pg_policy_row(r, i, &pol);
    pg_get_text(r, i, 6, pol.domain, sizeof(pol.domain));
    err = cb(arg, &pol);
  }
  PQclear(r);
  return err;
}

static int pg_policy_set(store_t *base, const store_policy_t *pol) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, pol->domain);
  p_i64(&p, pol->max_lifetime_ms);
  p_text(&p, pol->require_expiry ? "true" : "false");
  p_text(&p, pol->allowed_scopes);
  p_i64(&p, pol->max_active_tokens);
  p_i64(&p, pol->updated_at);
  p_text(&p, pol->updated_by);
  return pg_exec(s, "policy set",
                 "INSERT INTO domain_policies (domain, max_lifetime_ms,"
                 " require_expiry, allowed_scopes, max_active_tokens,"
                 " updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                 " ON CONFLICT (domain) DO UPDATE SET"
                 " max_lifetime_ms = excluded.max_lifetime_ms,"
                 " require_expiry = excluded.require_expiry,"
                 " allowed_scopes = excluded.allowed_scopes,"
                 " max_active_tokens = excluded.max_active_tokens,"
                 " updated_at = excluded.updated_at,"
                 " updated_by = excluded.updated_by",
                 &p, NULL);
}

static int pg_active_count(store_t *base, const char *domain, int64_t now,
                           int64_t limit, int64_t *n) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_i64(&p, now);
  p_i64(&p, limit);
  return pg_query_int(s, "active count",
                      /* As SQLite's: two ranges of tokens_domain_active. */
                      "SELECT (SELECT count(*) FROM (SELECT 1 FROM tokens"
                      " WHERE domain = $1 AND revoked_at = 0"
                      " AND expires_at = 0 LIMIT $3) a)"
                      " + (SELECT count(*) FROM (SELECT 1 FROM tokens"
                      " WHERE domain = $1 AND revoked_at = 0"
                      " AND expires_at > $2 LIMIT $3) b)",
                      &p, n);
}

/* ---- leaked tokens (issue 17) ---- */

/* At most TOKEND_LEAKED_MAX items: a statement or two each. */
static int pg_revoke_by_hash(store_t *base, store_hash_token_t *items, size_t n,
                             int64_t now, const char *by, int revoke) {
  pg_t *s = pg_of(base);
  store_hash_token_t *it;
  PGresult *r;
  size_t i;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  for (i = 0; i < n; i++) {
    pg_params_t p = {.n = 0}, q = {.n = 0};

    it = &items[i];
    it->found = it->revoked_now = 0;
    if (revoke) {
      p_blob(&p, it->hash, TOKEND_HASH_BYTES);
      p_i64(&p, now);
      p_text(&p, by);
      /* The revocation and its change, in one statement. */
      r = pg_run(s, "leaked revoke",
                 "WITH u AS (UPDATE tokens SET revoked_at = $2,"
                 " revoked_by = $3 WHERE hash = $1 AND revoked_at = 0"
                 " RETURNING seq, revoked_at)"
                 " SELECT tokend_change(seq, NULL, NULL, revoked_at) FROM u",
                 &p, PGRES_TUPLES_OK, &err);
      if (r == NULL)
        return err;
      if (PQntuples(r) == 1) {
        it->revoked_now = 1;
        tx_saw(s, pg_get_i64(r, 0, 0));
      }
      PQclear(r);
    }
    p_blob(&q, it->hash, TOKEND_HASH_BYTES);
    r = pg_run(s, "leaked read",
               "SELECT id, domain, revoked_at, revoked_by,"
               " (SELECT rev FROM feed) FROM tokens WHERE hash = $1",
               &q, PGRES_TUPLES_OK, &err);
    if (r == NULL)
      return err;
    if (PQntuples(r) == 1) {
      it->found = 1;
      pg_get_text(r, 0, 0, it->id, sizeof(it->id));
      pg_get_text(r, 0, 1, it->domain, sizeof(it->domain));
      it->revoked_at = pg_get_i64(r, 0, 2);
      pg_get_text(r, 0, 3, it->revoked_by, sizeof(it->revoked_by));
      /* Revoked before: the head holds that change (as Revoke does). */
      tx_saw(s, pg_get_i64(r, 0, 4));
    }
    PQclear(r);
  }
  return 0;
}

/* Reads the audit columns of row i into ev; *has_hash 1 if the row has a
 * 32-byte hash, copied to hash. */
static void audit_read(const PGresult *r, int i, store_audit_t *ev,
                       uint8_t hash[STORE_AUDIT_HASH_BYTES], int *has_hash) {
  ev->id = pg_get_i64(r, i, 0);
  ev->at = pg_get_i64(r, i, 1);
  ev->peer_uid = (uint32_t)pg_get_i64(r, i, 2);
  ev->peer_pid = (int32_t)pg_get_i64(r, i, 3);
  pg_get_text(r, i, 4, ev->actor, sizeof(ev->actor));
  ev->break_glass = pg_get_i64(r, i, 5) != 0;
  pg_get_text(r, i, 6, ev->domain, sizeof(ev->domain));
  pg_get_text(r, i, 7, ev->token_id, sizeof(ev->token_id));
  pg_get_text(r, i, 8, ev->method, sizeof(ev->method));
  ev->code = (int)pg_get_i64(r, i, 9);
  pg_get_text(r, i, 10, ev->detail, sizeof(ev->detail));
  ev->count = pg_get_i64(r, i, 11);
  *has_hash = pg_get_blob(r, i, 12, hash, STORE_AUDIT_HASH_BYTES) == 0;
}

static int audit_head(pg_t *s, int64_t *id,
                      uint8_t hash[STORE_AUDIT_HASH_BYTES]) {
  PGresult *r;
  int err;

  *id = 0;
  memset(hash, 0, STORE_AUDIT_HASH_BYTES);
  r = pg_run(s, "audit head",
             "SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1", NULL,
             PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) == 1) {
    *id = pg_get_i64(r, 0, 0);
    if (pg_get_blob(r, 0, 1, hash, STORE_AUDIT_HASH_BYTES) != 0)
      memset(hash, 0, STORE_AUDIT_HASH_BYTES);
  }
  PQclear(r);
  return 0;
}

static int pg_audit_head(store_t *base, int64_t *id,
                         uint8_t hash[STORE_AUDIT_HASH_BYTES]) {
  pg_t *s = pg_of(base);
  int err = pg_ready(s, 0);

  if (err == 0)
    err = audit_flush(s);
  return err != 0 ? err : audit_head(s, id, hash);
}

/* No audit row predates the chain in this backend: nothing to chain. */
static int pg_audit_key_set(store_t *base,
                            const uint8_t key[STORE_AUDIT_KEY_BYTES]) {
  pg_t *s = pg_of(base);

  memcpy(s->audit_key, key, STORE_AUDIT_KEY_BYTES);
  s->audit_keyed = 1;
  return pg_ready(s, 0);
}

/* At most AUDIT_CHUNK audit rows are queued (pg_audit_append flushes at
 * that many): 13 parameters a row stay under the protocol's 65,535 a
 * statement. */
#define AUDIT_CHUNK 4096

/* Builds the INSERT of the queued audit rows (the caller frees b and
 * *num). */
static int audit_build(pg_t *s, pg_batch_t *b, char (**num)[24]) {
  enum { COLS = 13 };
  size_t n = s->aq_n, i;
  int err;

  *num = NULL;
  if ((err = batch_init(b, n, COLS,
                        "INSERT INTO audit_events (at, peer_uid, peer_pid,"
                        " actor, break_glass, domain, token_id, method, code,"
                        " detail, count, id, hash) VALUES ")) != 0 ||
      (*num = calloc(n * 6, sizeof(**num))) == NULL) {
    snprintf(s->errmsg, sizeof(s->errmsg), "audit: out of memory");
    if (err == 0)
      batch_free(b);
    return TOKEND_ENOMEM;
  }
  for (i = 0; i < n; i++) {
    const store_audit_t *ev = &s->aq[i];
    const char **v = batch_row(b, i);
    char(*nm)[24] = *num + i * 6;

    snprintf(nm[0], sizeof(nm[0]), "%lld", (long long)ev->at);
    snprintf(nm[1], sizeof(nm[1]), "%lld", (long long)ev->peer_uid);
    snprintf(nm[2], sizeof(nm[2]), "%lld", (long long)ev->peer_pid);
    snprintf(nm[3], sizeof(nm[3]), "%lld", (long long)ev->code);
    snprintf(nm[4], sizeof(nm[4]), "%lld", (long long)ev->count);
    snprintf(nm[5], sizeof(nm[5]), "%lld", (long long)ev->id);
    v[0] = nm[0];
    v[1] = nm[1];
    v[2] = nm[2];
    v[3] = ev->actor;
    v[4] = ev->break_glass ? "true" : "false";
    v[5] = ev->domain;
    v[6] = ev->token_id;
    v[7] = ev->method;
    v[8] = nm[3];
    v[9] = ev->detail;
    v[10] = nm[4];
    v[11] = nm[5];
    batch_blob(b, i, 12, s->aq_hash[i], STORE_AUDIT_HASH_BYTES);
  }
  return 0;
}

/* Sends the queued audit rows as one INSERT. */
static int audit_flush(pg_t *s) {
  size_t n = s->aq_n;
  char(*num)[24];
  int err;
  pg_batch_t b;
  PGresult *r;

  if (n == 0)
    return 0;
  if ((err = audit_build(s, &b, &num)) != 0)
    return err;
  r = batch_exec(s, &b, n);
  if (PQresultStatus(r) == PGRES_COMMAND_OK) {
    err = 0;
    s->aq_n = 0;
  } else {
    err = pg_fail(s, r, "audit");
  }
  PQclear(r);
  batch_free(&b);
  free(num);
  return err;
}

/* Queues ev (with its hash) for audit_flush. */
static int audit_queue(pg_t *s, const store_audit_t *ev,
                       const uint8_t h[STORE_AUDIT_HASH_BYTES]) {
  if (s->aq_n == s->aq_cap) {
    size_t cap = s->aq_cap == 0 ? 16 : 2 * s->aq_cap;
    store_audit_t *aq = realloc(s->aq, cap * sizeof(*aq));
    uint8_t(*hq)[STORE_AUDIT_HASH_BYTES];

    if (aq == NULL)
      return TOKEND_ENOMEM;
    s->aq = aq;
    if ((hq = realloc(s->aq_hash, cap * sizeof(*hq))) == NULL)
      return TOKEND_ENOMEM;
    s->aq_hash = hq;
    s->aq_cap = cap;
  }
  s->aq[s->aq_n] = *ev;
  memcpy(s->aq_hash[s->aq_n], h, STORE_AUDIT_HASH_BYTES);
  s->aq_n++;
  return 0;
}

static int pg_audit_append(store_t *base, store_audit_t *ev) {
  pg_t *s = pg_of(base);
  uint8_t prev[STORE_AUDIT_HASH_BYTES], h[STORE_AUDIT_HASH_BYTES];
  pg_params_t p = {.n = 0};
  int64_t head_id;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  /* An unchained row would read as tampering: refuse rather than write. */
  if (!s->audit_keyed) {
    snprintf(s->errmsg, sizeof(s->errmsg), "audit: no chain key set");
    return TOKEND_EINTERNAL;
  }
  if (s->in_tx && s->tx_head_known) {
    head_id = s->tx_head_id;
    memcpy(prev, s->tx_head_hash, sizeof(prev));
  } else if ((err = audit_head(s, &head_id, prev)) != 0) {
    return err;
  }
  ev->id = head_id + 1;
  if (ev->count < 1)
    ev->count = 1;
  store_audit_hash(s->audit_key, prev, ev, h);
  if (s->in_tx) {
    if ((err = audit_queue(s, ev, h)) != 0) {
      snprintf(s->errmsg, sizeof(s->errmsg), "audit: out of memory");
      return err;
    }
    s->tx_head_known = 1;
    s->tx_head_id = ev->id;
    memcpy(s->tx_head_hash, h, sizeof(h));
    /* A bulk revocation audits each token: bounded memory, and a statement
     * within the protocol's parameter limit. */
    return s->aq_n >= AUDIT_CHUNK ? audit_flush(s) : 0;
  }
  p_i64(&p, ev->at);
  p_i64(&p, ev->peer_uid);
  p_i64(&p, ev->peer_pid);
  p_text(&p, ev->actor);
  p_text(&p, ev->break_glass ? "true" : "false");
  p_text(&p, ev->domain);
  p_text(&p, ev->token_id);
  p_text(&p, ev->method);
  p_i64(&p, ev->code);
  p_text(&p, ev->detail);
  p_i64(&p, ev->count);
  p_i64(&p, ev->id);
  p_blob(&p, h, sizeof(h));
  return pg_exec(s, "audit",
                 "INSERT INTO audit_events (at, peer_uid, peer_pid, actor,"
                 " break_glass, domain, token_id, method, code, detail,"
                 " count, id, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
                 " $9, $10, $11, $12, $13)",
                 &p, NULL);
}

/* issue 16: after --audit-retention-days removed the oldest rows, the
 * chain is verified from the newest removed row's id and hash. */
static int pg_audit_walk_base(pg_t *s, store_audit_walk_t *walk) {
  uint8_t h[STORE_AUDIT_HASH_BYTES] = {0};
  PGresult *r;
  int64_t upto = 0;
  int err;

  r = pg_run(s, "audit retention read",
             "SELECT removed_upto, removed_hash FROM audit_retention"
             " WHERE one = 1",
             NULL, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) == 1) {
    upto = pg_get_i64(r, 0, 0);
    /* A missing or short hash leaves zeros: the chain then breaks at the
     * first row kept, which is what such an edit deserves. */
    (void)pg_get_blob(r, 0, 1, h, sizeof(h));
  }
  PQclear(r);
  if (upto > 0)
    store_audit_walk_from(walk, upto, h);
  return 0;
}

/* --audit-retention-days: as SQLite's (store_sqlite.c), in the write
 * transaction: the bound the delete trigger holds deletes to, then the
 * rows before the first one young enough to keep (never the newest: the
 * next append chains from it), then the newest removed row's id and hash.
 * Queued audit rows are sent first, so the newest is known. */
static int pg_audit_prune(store_t *base, int64_t keep_ms, int64_t now_ms,
                          int64_t *removed, int64_t *upto) {
  pg_t *s = pg_of(base);
  uint8_t h[STORE_AUDIT_HASH_BYTES] = {0};
  pg_params_t p = {.n = 0};
  PGresult *r;
  int64_t last = 0, n = 0;
  int err;

  *removed = 0;
  *upto = 0;
  if ((err = pg_ready(s, 0)) != 0 || (err = audit_flush(s)) != 0)
    return err;
  p_i64(&p, keep_ms);
  if ((err = pg_exec(s, "audit retention",
                     "UPDATE audit_retention SET keep_ms = $1 WHERE one = 1",
                     &p, NULL)) != 0)
    return err;
  p.n = 0;
  p_i64(&p, now_ms - keep_ms);
  r = pg_run(s, "audit retention: oldest rows",
             "SELECT id, hash FROM audit_events WHERE id = (SELECT max(id)"
             " FROM audit_events WHERE id < coalesce((SELECT min(id) FROM"
             " audit_events WHERE at >= $1), (SELECT max(id) FROM"
             " audit_events)))",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) == 1) {
    last = pg_get_i64(r, 0, 0);
    (void)pg_get_blob(r, 0, 1, h, sizeof(h));
  }
  PQclear(r);
  if (last == 0)
    return 0;
  p.n = 0;
  p_i64(&p, last);
  if ((err = pg_exec(s, "audit retention: delete",
                     "DELETE FROM audit_events WHERE id <= $1", &p, &n)) != 0)
    return err;
  p.n = 0;
  p_i64(&p, last);
  p_blob(&p, h, sizeof(h));
  if ((err = pg_exec(s, "audit retention: base",
                     "UPDATE audit_retention SET removed_upto = $1,"
                     " removed_hash = $2 WHERE one = 1",
                     &p, NULL)) != 0)
    return err;
  *removed = n;
  *upto = last;
  return 0;
}

static int pg_audit_verify(store_t *base, int64_t anchor_id,
                           const uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES],
                           store_audit_check_t *out) {
  pg_t *s = pg_of(base);
  uint8_t h[STORE_AUDIT_HASH_BYTES];
  store_audit_walk_t walk;
  store_audit_t *ev;
  PGresult *r;
  int i, has_hash, err;

  memset(out, 0, sizeof(*out));
  if ((err = pg_ready(s, 0)) != 0 || (err = audit_flush(s)) != 0)
    return err;
  if (!s->audit_keyed) {
    snprintf(s->errmsg, sizeof(s->errmsg), "audit: no chain key set");
    return TOKEND_EINTERNAL;
  }
  r = pg_run(s, "audit verify",
             "SELECT " AUDIT_COLUMNS " FROM audit_events ORDER BY id", NULL,
             PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if ((ev = malloc(sizeof(*ev))) == NULL) {
    PQclear(r);
    return TOKEND_ENOMEM;
  }
  store_audit_walk_begin(&walk, s->audit_key, anchor_id, anchor_hash, out);
  if ((err = pg_audit_walk_base(s, &walk)) != 0) {
    free(ev);
    PQclear(r);
    return err;
  }
  for (i = 0; i < PQntuples(r); i++) {
    audit_read(r, i, ev, h, &has_hash);
    if (store_audit_walk_row(&walk, ev, has_hash ? h : NULL))
      break;
  }
  store_audit_walk_end(&walk);
  free(ev);
  PQclear(r);
  return 0;
}

static int pg_audit_list(store_t *base, const char *domain, int64_t since,
                         int64_t before_id, store_audit_t *rows,
                         size_t max_rows, size_t *n_rows) {
  pg_t *s = pg_of(base);
  uint8_t h[STORE_AUDIT_HASH_BYTES];
  pg_params_t p = {.n = 0};
  PGresult *r;
  size_t n;
  int err, has_hash;

  *n_rows = 0;
  if ((err = pg_ready(s, 0)) != 0 || (err = audit_flush(s)) != 0)
    return err;
  p_text(&p, domain);
  p_i64(&p, since);
  p_i64(&p, before_id > 0 ? before_id : INT64_MAX);
  p_i64(&p, (int64_t)max_rows);
  r = pg_run(s, "audit list",
             "SELECT " AUDIT_COLUMNS " FROM audit_events"
             " WHERE ($1 = '' OR domain = $1) AND at >= $2 AND id < $3"
             " ORDER BY id DESC LIMIT $4",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  for (n = 0; n < (size_t)PQntuples(r) && n < max_rows; n++)
    audit_read(r, (int)n, &rows[n], h, &has_hash);
  *n_rows = n;
  PQclear(r);
  return 0;
}

static int pg_verify_counts_add(store_t *base, const char *domain,
                                uint64_t valid, uint64_t invalid, int64_t now) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_i64(&p, (int64_t)valid);
  p_i64(&p, (int64_t)invalid);
  p_i64(&p, now);
  return pg_exec(s, "counts",
                 "INSERT INTO verify_counts (domain, valid, invalid,"
                 " updated_at) VALUES ($1, $2, $3, $4)"
                 " ON CONFLICT (domain) DO UPDATE SET"
                 " valid = verify_counts.valid + excluded.valid,"
                 " invalid = verify_counts.invalid + excluded.invalid,"
                 " updated_at = excluded.updated_at",
                 &p, NULL);
}

static int64_t pg_change_rev(const store_t *base) {
  return pg_cof(base)->tx_rev;
}

/* REPEATABLE READ: every statement until snapshot_end sees the database as
 * of the first, and the feed's revision read here is that snapshot's. */
static int pg_snapshot_begin(store_t *base, int64_t *rev) {
  pg_t *s = pg_of(base);
  int err;

  *rev = 0;
  if ((err = pg_ready(s, 0)) != 0)
    return err;
  if ((err = pg_exec(s, "snapshot",
                     "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL,
                     NULL)) != 0)
    return err;
  s->in_tx = 1;
  /* The head a write transaction read is not this one's. */
  s->tx_head_known = 0;
  if ((err = pg_query_int(s, "snapshot", "SELECT rev FROM feed", NULL, rev)) !=
      0)
    pg_abort(s);
  return err;
}

static void pg_snapshot_end(store_t *base) { pg_abort(pg_of(base)); }

static int pg_audit_load(store_t *base, store_audit_cb cb, void *arg) {
  pg_t *s = pg_of(base);
  uint8_t h[STORE_AUDIT_HASH_BYTES];
  store_audit_t *ev;
  PGresult *r;
  int i, has_hash, err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  r = pg_run(s, "audit load",
             "SELECT " AUDIT_COLUMNS " FROM audit_events ORDER BY id", NULL,
             PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if ((ev = malloc(sizeof(*ev))) == NULL) {
    PQclear(r);
    return TOKEND_ENOMEM;
  }
  for (i = 0; i < PQntuples(r) && err == 0; i++) {
    audit_read(r, i, ev, h, &has_hash);
    /* A hash of the wrong size is damage, not "no hash". */
    if (!has_hash && !PQgetisnull(r, i, 12)) {
      pg_set_errmsg(s, "audit load", "audit row with a hash of a wrong size");
      err = TOKEND_ESTORE;
    } else {
      err = cb(arg, ev, has_hash ? h : NULL);
    }
  }
  free(ev);
  PQclear(r);
  return err;
}

static int pg_counts_load(store_t *base, store_counts_cb cb, void *arg) {
  pg_t *s = pg_of(base);
  store_counts_t c;
  PGresult *r;
  int i, err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  r = pg_run(s, "counts load",
             "SELECT domain, valid, invalid, updated_at FROM verify_counts"
             " ORDER BY domain",
             NULL, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  for (i = 0; i < PQntuples(r) && err == 0; i++) {
    pg_get_text(r, i, 0, c.domain, sizeof(c.domain));
    c.valid = (uint64_t)pg_get_i64(r, i, 1);
    c.invalid = (uint64_t)pg_get_i64(r, i, 2);
    c.updated_at = pg_get_i64(r, i, 3);
    err = cb(arg, &c);
  }
  PQclear(r);
  return err;
}

/* The import statements run once per row of a whole store: prepared once
 * per connection, so that PostgreSQL parses and plans each once rather
 * than per row (which took most of a copy's time). */
typedef enum {
  PG_COPY_TOKEN,
  PG_COPY_AUDIT,
  PG_COPY_COUNTS,
} pg_copy_stmt_t;

static const char *const pg_copy_names[] = {
    "tokend_token_import", "tokend_audit_import", "tokend_counts_import"};

/* Runs the copy statement which (sql, prepared first if this connection
 * has not yet) with p; *changed (may be NULL) gets the rows it changed. */
static int pg_exec_copy(pg_t *s, pg_copy_stmt_t which, const char *what,
                        const char *sql, const pg_params_t *p,
                        int64_t *changed) {
  PGresult *r;
  int err;

  if (!(s->copy_prepared & (1u << which))) {
    r = PQprepare(s->conn, pg_copy_names[which], sql, p->n, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      err = pg_fail(s, r, what);
      PQclear(r);
      return err;
    }
    PQclear(r);
    s->copy_prepared |= 1u << which;
  }
  r = PQexecPrepared(s->conn, pg_copy_names[which], p->n, p->values, p->lengths,
                     p->formats, 1);
  if (r != NULL && (PQresultStatus(r) == PGRES_COMMAND_OK ||
                    PQresultStatus(r) == PGRES_TUPLES_OK)) {
    if (changed != NULL)
      *changed = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
  }
  err = pg_fail(s, r, what);
  PQclear(r);
  return err;
}

/* The row keeps its seq; the sequence behind tokens.seq is moved past it
 * in the same statement, so that the next insert's seq is greater (setval
 * is not undone by a rollback: a rolled-back copy leaves a gap in seq,
 * nothing worse). */
static int pg_token_import(store_t *base, const store_token_t *row) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_i64(&p, row->seq);
  p_text(&p, row->id);
  p_text(&p, row->domain);
  p_text(&p, row->label);
  p_text(&p, row->hint);
  p_text(&p, row->scopes);
  p_blob(&p, row->hash, TOKEND_HASH_BYTES);
  p_i64(&p, row->created_at);
  p_i64(&p, row->expires_at);
  p_i64(&p, row->last_used_at);
  p_i64(&p, row->revoked_at);
  p_text(&p, row->created_by);
  p_text(&p, row->revoked_by);
  p_text(&p, row->metadata);
  p_text(&p, row->rolled_from);
  p_text(&p, row->rolled_to);
  p_i64(&p, row->pepper_gen);
  return pg_exec_copy(
      s, PG_COPY_TOKEN, "token import",
      "WITH ins AS (INSERT INTO tokens (" TOKEN_COLUMNS ") VALUES ($1, $2, $3,"
      " $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
      " RETURNING seq)"
      " SELECT setval(pg_get_serial_sequence('tokens', 'seq'),"
      " greatest(ins.seq, coalesce(pg_sequence_last_value("
      "pg_get_serial_sequence('tokens', 'seq')::regclass), 0))),"
      /* A change like any write's: a tokend already following this store
       * learns of the token without a restart. */
      " tokend_change(ins.seq, NULL, NULL, $8) FROM ins",
      &p, NULL);
}

static int pg_audit_import(store_t *base, const store_audit_t *ev,
                           const uint8_t *hash) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  int64_t changed = 0;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_i64(&p, ev->id);
  p_i64(&p, ev->at);
  p_i64(&p, ev->peer_uid);
  p_i64(&p, ev->peer_pid);
  p_text(&p, ev->actor);
  p_text(&p, ev->break_glass ? "true" : "false");
  p_text(&p, ev->domain);
  p_text(&p, ev->token_id);
  p_text(&p, ev->method);
  p_i64(&p, ev->code);
  p_text(&p, ev->detail);
  p_i64(&p, ev->count);
  if (hash != NULL)
    p_blob(&p, hash, STORE_AUDIT_HASH_BYTES);
  else
    p_text(&p, NULL);
  /* "After the newest" as max(id), which the planner answers from the end
   * of the primary key's index: "NOT EXISTS (... id >= $1)" was planned
   * as a scan of the whole table inside a copy's long transaction (no
   * statistics yet), one scan per row. */
  if ((err = pg_exec_copy(
           s, PG_COPY_AUDIT, "audit import",
           "INSERT INTO audit_events (" AUDIT_COLUMNS ")"
           " SELECT $1::bigint, $2::bigint, $3::bigint,"
           " $4::bigint, $5::text, $6::boolean, $7::text, $8::text,"
           " $9::text, $10::integer, $11::text, $12::bigint,"
           " $13::bytea WHERE $1::bigint > coalesce((SELECT"
           " max(id) FROM audit_events), 0)",
           &p, &changed)) != 0)
    return err;
  if (changed != 1) {
    snprintf(s->errmsg, sizeof(s->errmsg),
             "audit import: row %lld is not after the newest row; the log is "
             "append-only",
             (long long)ev->id);
    return TOKEND_EEXIST;
  }
  return 0;
}

static int pg_counts_import(store_t *base, const store_counts_t *c) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, c->domain);
  p_i64(&p, (int64_t)c->valid);
  p_i64(&p, (int64_t)c->invalid);
  p_i64(&p, c->updated_at);
  return pg_exec_copy(s, PG_COPY_COUNTS, "counts import",
                      "INSERT INTO verify_counts (domain, valid, invalid,"
                      " updated_at) VALUES ($1, $2, $3, $4)",
                      &p, NULL);
}

/* ---- the token record (issue 17) ---- */

/* The row's new state and its change, in one statement. */
static int pg_token_update(store_t *base, const store_token_t *row) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, row->domain);
  p_text(&p, row->id);
  p_text(&p, row->label);
  p_text(&p, row->scopes);
  p_text(&p, row->metadata);
  p_i64(&p, row->expires_at);
  p_text(&p, row->rolled_from);
  p_text(&p, row->rolled_to);
  r = pg_run(s, "token update",
             "WITH u AS (UPDATE tokens SET label = $3, scopes = $4,"
             " metadata = $5, expires_at = $6, rolled_from = $7,"
             " rolled_to = $8 WHERE domain = $1 AND id = $2 RETURNING seq)"
             " SELECT tokend_change(seq, NULL, NULL,"
             " (extract(epoch FROM clock_timestamp()) * 1000)::bigint)"
             " FROM u",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) == 0)
    err = TOKEND_ENOTFOUND;
  else
    tx_saw(s, pg_get_i64(r, 0, 0));
  PQclear(r);
  return err;
}

static int pg_list_expiring(store_t *base, const char *domain, int64_t now,
                            int64_t until, int64_t before_seq,
                            store_token_t *rows, size_t max_rows,
                            size_t *n_rows) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  *n_rows = 0;
  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, domain);
  p_i64(&p, before_seq > 0 ? before_seq : INT64_MAX);
  p_i64(&p, now);
  p_i64(&p, until);
  p_i64(&p, (int64_t)max_rows);
  r = pg_run(s, "list expiring",
             "SELECT " TOKEN_COLUMNS " FROM tokens"
             " WHERE domain = $1 AND seq < $2 AND revoked_at = 0"
             " AND expires_at > $3 AND expires_at <= $4"
             " ORDER BY seq DESC LIMIT $5",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  err = pg_token_rows(s, r, "list expiring", rows, max_rows, n_rows);
  PQclear(r);
  return err;
}

/* ---- a pepper rotation (issue 16) ---- */

static int pg_meta_get(store_t *base, const char *key, uint8_t *buf, size_t cap,
                       size_t *len) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_text(&p, key);
  r = pg_run(s, "read meta", "SELECT value FROM meta WHERE key = $1", &p,
             PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) != 1) {
    err = TOKEND_ENOTFOUND;
  } else if ((size_t)PQgetlength(r, 0, 0) > cap) {
    pg_set_errmsg(s, "read meta", "value too long");
    err = TOKEND_ESTORE;
  } else {
    *len = (size_t)PQgetlength(r, 0, 0);
    if (*len > 0)
      memcpy(buf, PQgetvalue(r, 0, 0), *len);
  }
  PQclear(r);
  return err;
}

static int pg_meta_set(store_t *base, const char *key, const uint8_t *val,
                       size_t len) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  if (s->base.flags & STORE_OPEN_READ_ONLY) {
    snprintf(s->errmsg, sizeof(s->errmsg), "tokend runs --read-only");
    return TOKEND_ECONFIG;
  }
  p_text(&p, key);
  p_blob(&p, len > 0 ? val : (const uint8_t *)"", len);
  return pg_exec(s, "record meta",
                 "INSERT INTO meta (key, value) VALUES ($1, $2)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 &p, NULL);
}

/* The new hash and its change in one statement: every host's follower
 * reads the row as it is now and re-keys its entry (found by id). */
static int pg_token_rekey(store_t *base,
                          const uint8_t old_hash[TOKEND_HASH_BYTES],
                          const uint8_t new_hash[TOKEND_HASH_BYTES],
                          int32_t gen, int64_t now) {
  pg_t *s = pg_of(base);
  pg_params_t p = {.n = 0};
  PGresult *r;
  int err;

  if ((err = pg_ready(s, 0)) != 0)
    return err;
  p_blob(&p, old_hash, TOKEND_HASH_BYTES);
  p_blob(&p, new_hash, TOKEND_HASH_BYTES);
  p_i64(&p, gen);
  p_i64(&p, now);
  r = pg_run(s, "re-key token",
             "WITH u AS (UPDATE tokens SET hash = $2, pepper_gen = $3"
             " WHERE hash = $1 AND pepper_gen < $3 RETURNING seq)"
             " SELECT tokend_change(seq, NULL, NULL, $4) FROM u",
             &p, PGRES_TUPLES_OK, &err);
  if (r == NULL)
    return err;
  if (PQntuples(r) == 0)
    err = TOKEND_ENOTFOUND;
  else
    tx_saw(s, pg_get_i64(r, 0, 0));
  PQclear(r);
  return err;
}

static const struct store_ops pg_ops = {
    .close = pg_close,
    .errmsg = pg_errmsg,
    .file_check = pg_file_check,
    .file_lost = pg_file_lost,
    .fingerprint_get = pg_fingerprint_get,
    .fingerprint_set = pg_fingerprint_set,
    .count_rows = pg_count_rows,
    .load = pg_load,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .insert = pg_insert,
    .revoke = pg_revoke,
    .touch = pg_touch,
    .list = pg_list,
    .admin_grant = pg_admin_grant,
    .admin_remove = pg_admin_remove,
    .admin_load = pg_admin_load,
    .token_get = pg_token_get,
    .admin_get = pg_admin_get,
    .revoked_with = pg_revoked_with,
    .audit_key_set = pg_audit_key_set,
    .audit_append = pg_audit_append,
    .audit_list = pg_audit_list,
    .audit_head = pg_audit_head,
    .audit_verify = pg_audit_verify,
    .verify_counts_add = pg_verify_counts_add,
    .change_rev = pg_change_rev,
    .snapshot_begin = pg_snapshot_begin,
    .snapshot_end = pg_snapshot_end,
    .audit_load = pg_audit_load,
    .counts_load = pg_counts_load,
    .token_import = pg_token_import,
    .audit_import = pg_audit_import,
    .counts_import = pg_counts_import,
    .token_update = pg_token_update,
    .list_expiring = pg_list_expiring,
    .bulk_revoke = pg_bulk_revoke,
    .revoked_at_by = pg_revoked_at_by,
    .policy_get = pg_policy_get,
    .policy_set = pg_policy_set,
    .policy_load = pg_policy_load,
    .active_count = pg_active_count,
    .revoke_by_hash = pg_revoke_by_hash,
    .audit_prune = pg_audit_prune,
    .meta_get = pg_meta_get,
    .meta_set = pg_meta_set,
    .token_rekey = pg_token_rekey,
};

/* libpq accepts both spellings of the scheme; so does tokend. */
const struct store_backend store_postgresql_backend = {
    .scheme = "postgresql",
    .open = pg_open,
    .exists = pg_exists,
    .check = pg_check,
    .feed_open = store_pg_feed_open,
};

const struct store_backend store_postgres_backend = {
    .scheme = "postgres",
    .open = pg_open,
    .exists = pg_exists,
    .check = pg_check,
    .feed_open = store_pg_feed_open,
};
