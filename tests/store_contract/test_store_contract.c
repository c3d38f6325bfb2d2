/* The store contract: what every backend of server/store/store.h must do,
 * written against store.h only, and run once per backend this build has
 * (ctest store_contract_<backend>; the backend's name is argv[1]).
 *
 * A backend joins by adding a row to backends[] below: how to name a fresh,
 * empty store for one test, and how to make its storage fail on demand.
 * Faults: the SQLite backend's are made by the LD_PRELOAD shim
 * tests/integration/fault_inject.c (ctest preloads it), which fails the
 * writes or the fsyncs of the files under one directory, so the backend's
 * real error paths run, SQLite's included, rather than a hook that would
 * skip them.
 *
 * PostgreSQL runs against a throwaway cluster the suite starts itself
 * (tests/lib/pg_cluster.h: initdb in a temporary directory, a Unix socket
 * only), one new database per test. Its faults are real ones, made from a
 * second connection as the superuser:
 *   FAULT_WRITE     the store's session is ended (pg_terminate_backend,
 *                   which waits for it to exit) while its transaction is
 *                   open and before COMMIT is sent: the server rolls the
 *                   transaction back, so the commit fails definitely.
 *   FAULT_IN_DOUBT  synchronous_standby_names names a standby that never
 *                   comes, so a COMMIT is flushed locally and then waits
 *                   for it; a forked helper terminates the store's session
 *                   while it waits (wait_event SyncRep). The connection is
 *                   lost during COMMIT: the outcome is unknown to the
 *                   client (here the transaction did commit locally).
 *   lose            no case: the store is the database the URI names, not
 *                   a file that can be replaced under it (skipped, said).
 */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "pg_cluster.h"

typedef enum {
  FAULT_NONE,
  FAULT_WRITE,   /* every write fails: a commit fails definitely */
  FAULT_IN_DOUBT /* a commit's outcome cannot be known */
} fault_t;

typedef struct {
  const char *name;
  /* Prepares dir (empty, made by the test) for one store; writes its URL
   * into url. 0 or -1. */
  int (*make)(const char *dir, char *url, size_t len);
  /* Puts fault in force for the store of dir (FAULT_NONE: ends it). */
  int (*fault)(const char *dir, fault_t fault);
  /* Makes the store's storage stop being the one a restart would open;
   * NULL if the backend has no such notion. */
  int (*lose)(const char *dir);
} backend_t;

/* ---- sqlite ---- */

static int sqlite_make(const char *dir, char *url, size_t len) {
  char db[256], ctl[256];

  snprintf(db, sizeof(db), "%s/db", dir);
  snprintf(ctl, sizeof(ctl), "%s/fault", dir);
  if (mkdir(db, 0700) != 0)
    return -1;
  /* The shim reads these at every call; the control file is outside the
   * faulty directory, so that ending a fault can always be written. */
  if (setenv("TOKEND_FAULT_DIR", db, 1) != 0 ||
      setenv("TOKEND_FAULT_CTL", ctl, 1) != 0)
    return -1;
  snprintf(url, len, "sqlite:%s/tokend.db", db);
  return 0;
}

static int sqlite_fault(const char *dir, fault_t fault) {
  static const char *const words[] = {"", "EIO", "EIO-SYNC"};
  char ctl[256];
  FILE *f;

  snprintf(ctl, sizeof(ctl), "%s/fault", dir);
  if ((f = fopen(ctl, "w")) == NULL)
    return -1;
  fputs(words[fault], f);
  return fclose(f) == 0 ? 0 : -1;
}

static int sqlite_lose(const char *dir) {
  char db[256];

  snprintf(db, sizeof(db), "%s/db/tokend.db", dir);
  return unlink(db);
}

/* ---- postgresql ---- */

static pg_cluster_t cluster;
static char pg_db[32];      /* the current test's database */
static int pg_db_n;         /* databases made so far */
static pid_t pg_killer;     /* FAULT_IN_DOUBT's helper, 0 if none */
static int pg_sync_standby; /* synchronous_standby_names is set */

static int pg_make(const char *dir, char *url, size_t len) {
  char sql[64];

  (void)dir;
  snprintf(pg_db, sizeof(pg_db), "contract_%d", ++pg_db_n);
  snprintf(sql, sizeof(sql), "CREATE DATABASE %s", pg_db);
  if (pg_cluster_sql(&cluster, "postgres", sql) != 0 ||
      pg_cluster_uri(&cluster, pg_db, url + 0, len) != 0)
    return -1;
  return 0;
}

static void count_sync_warning(void *arg, const PGresult *r) {
  const char *m = PQresultErrorMessage(r);

  if (strstr(m, "synchronous replication") != NULL)
    (*(int *)arg)++;
}

/* Whether commits now wait for a synchronous standby (1), do not (0), or
 * it cannot tell yet (-1): a probe transaction's COMMIT that has not
 * answered after 100 ms is cancelled, and a cancelled wait for the standby
 * warns that it was one. A reload takes effect asynchronously (the
 * checkpointer publishes it), hence the caller's polling. */
static int pg_commits_wait(PGconn *conn) {
  struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
  char errbuf[256];
  PGcancel *cancel;
  PGresult *r;
  /* static: the receiver stays set on conn after this returns. */
  static int warned;
  int answered;

  warned = 0;
  PQsetNoticeReceiver(conn, count_sync_warning, &warned);
  PQclear(PQexec(conn, "BEGIN"));
  /* A commit waits only if its transaction wrote WAL: a catalog change. */
  PQclear(PQexec(conn, "CREATE TEMP TABLE probe (x int) ON COMMIT DROP"));
  if (!PQsendQuery(conn, "COMMIT"))
    return -1;
  answered = poll(&pfd, 1, 100) > 0;
  if (!answered && (cancel = PQgetCancel(conn)) != NULL) {
    PQcancel(cancel, errbuf, sizeof(errbuf));
    PQfreeCancel(cancel);
  }
  while ((r = PQgetResult(conn)) != NULL)
    PQclear(r);
  if (warned)
    return 1;
  return answered ? 0 : -1;
}

static int pg_sync_standby_set(int on) {
  char uri[256];
  PGconn *conn;
  int i, ok = 0;

  if (pg_cluster_sql(&cluster, "postgres",
                     on ? "ALTER SYSTEM SET synchronous_standby_names ="
                          " 'tokend_test_never'"
                        : "ALTER SYSTEM RESET synchronous_standby_names") !=
          0 ||
      pg_cluster_sql(&cluster, "postgres", "SELECT pg_reload_conf()") != 0 ||
      pg_cluster_uri(&cluster, "postgres", uri, sizeof(uri)) != 0)
    return -1;
  conn = PQconnectdb(uri);
  for (i = 0; i < 400 && PQstatus(conn) == CONNECTION_OK && !ok; i++) {
    ok = pg_commits_wait(conn) == on;
    if (!ok)
      usleep(10000);
  }
  PQfinish(conn);
  pg_sync_standby = on;
  return ok ? 0 : -1;
}

/* Ends the store's session (application_name tokend in the test's
 * database); pg_terminate_backend with a timeout waits for it to exit.
 * wait_event: only a session waiting there, or any if NULL. 1 if one was
 * ended. */
static int pg_terminate(const char *wait_event) {
  char uri[256];
  const char *vals[2] = {pg_db, wait_event};
  PGconn *conn;
  PGresult *r;
  int n = -1;

  if (pg_cluster_uri(&cluster, "postgres", uri, sizeof(uri)) != 0)
    return -1;
  conn = PQconnectdb(uri);
  r = PQexecParams(conn,
                   "SELECT pg_terminate_backend(pid, 10000)"
                   " FROM pg_stat_activity WHERE datname = $1"
                   " AND application_name = 'tokend'"
                   " AND ($2::text IS NULL OR wait_event = $2)",
                   2, NULL, vals, NULL, NULL, 0);
  if (PQresultStatus(r) == PGRES_TUPLES_OK)
    n = PQntuples(r);
  PQclear(r);
  PQfinish(conn);
  return n;
}

static int pg_fault(const char *dir, fault_t fault) {
  int status, err = 0;

  (void)dir;
  switch (fault) {
  case FAULT_NONE:
    if (pg_killer > 0) {
      kill(pg_killer, SIGKILL);
      waitpid(pg_killer, &status, 0);
      pg_killer = 0;
    }
    if (pg_sync_standby)
      err = pg_sync_standby_set(0);
    return err;
  case FAULT_WRITE:
    return pg_terminate(NULL) == 1 ? 0 : -1;
  case FAULT_IN_DOUBT:
    if (pg_sync_standby_set(1) != 0)
      return -1;
    /* The commit blocks the test's thread: a child ends the session once
     * its COMMIT waits for the standby. */
    if ((pg_killer = fork()) < 0)
      return -1;
    if (pg_killer == 0) {
      while (pg_terminate("SyncRep") == 0)
        usleep(5000);
      _exit(0);
    }
    return 0;
  }
  return -1;
}

static const backend_t backends[] = {
    {"sqlite", sqlite_make, sqlite_fault, sqlite_lose},
    {"postgresql", pg_make, pg_fault, NULL},
};

/* ---- fixture ---- */

static const backend_t *backend;

static const uint8_t audit_key[STORE_AUDIT_KEY_BYTES] = {9, 8, 7, 6};

typedef struct {
  char dir[64];
  char url[512];
  store_t *store;
  /* The rows insert_token hands the store: an insert inside a transaction
   * may be sent by the commit, so its row must live until then. */
  store_token_t rows[64];
  int n_rows;
} fixture_t;

static void remove_tree(const char *path) {
  char p[512];
  struct dirent *de;
  struct stat st;
  DIR *d;

  if (lstat(path, &st) != 0)
    return;
  if (!S_ISDIR(st.st_mode)) {
    unlink(path);
    return;
  }
  if ((d = opendir(path)) != NULL) {
    while ((de = readdir(d)) != NULL) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
        continue;
      snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
      remove_tree(p);
    }
    closedir(d);
  }
  rmdir(path);
}

/* A fixture with a fresh location and no store open. */
static int setup_empty(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));

  if (fx == NULL)
    return -1;
  *state = fx;
  snprintf(fx->dir, sizeof(fx->dir), "/tmp/tokend_contract_XXXXXX");
  if (mkdtemp(fx->dir) == NULL ||
      backend->make(fx->dir, fx->url, sizeof(fx->url)) != 0)
    return -1;
  return 0;
}

static int open_store(fixture_t *fx, int flags) {
  char why[512];
  int err = store_open_url(fx->url, flags, &fx->store, why, sizeof(why));

  if (err != 0)
    fprintf(stderr, "store_open_url %s: %s\n", fx->url, why);
  else if ((err = store_audit_key_set(fx->store, audit_key)) != 0)
    fprintf(stderr, "audit_key_set: %s\n", store_errmsg(fx->store));
  return err;
}

/* A fixture with a new, empty store open and its audit key set. */
static int setup_store(void **state) {
  if (setup_empty(state) != 0)
    return -1;
  return open_store(*state, STORE_OPEN_CREATE) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  fixture_t *fx = *state;

  if (fx == NULL)
    return 0;
  backend->fault(fx->dir, FAULT_NONE);
  store_close(fx->store);
  remove_tree(fx->dir);
  free(fx);
  return 0;
}

/* Closes and opens the store again: what a restart would find. */
static void reopen(fixture_t *fx) {
  store_close(fx->store);
  fx->store = NULL;
  assert_int_equal(open_store(fx, 0), 0);
}

static void make_token(store_token_t *row, const char *domain, const char *id,
                       uint8_t hash_byte) {
  memset(row, 0, sizeof(*row));
  snprintf(row->id, sizeof(row->id), "%s", id);
  snprintf(row->domain, sizeof(row->domain), "%s", domain);
  snprintf(row->label, sizeof(row->label), "label of %s", id);
  snprintf(row->hint, sizeof(row->hint), "tk_%.4s", id);
  snprintf(row->scopes, sizeof(row->scopes), "read write");
  memset(row->hash, hash_byte, sizeof(row->hash));
  row->created_at = 1000 + hash_byte;
  row->expires_at = 0;
  snprintf(row->created_by, sizeof(row->created_by), "alice");
  snprintf(row->metadata, sizeof(row->metadata), "{\"of\":\"%s\"}", id);
  snprintf(row->rolled_from, sizeof(row->rolled_from), "from_%s", id);
  snprintf(row->rolled_to, sizeof(row->rolled_to), "to_%s", id);
  row->pepper_gen = hash_byte;
}

/* The columns of schema 6 (metadata, rolled_from/to, pepper_gen) read back
 * as make_token wrote them. */
static void assert_v6_fields(const store_token_t *got, const char *id,
                             uint8_t hash_byte) {
  char want[TOKEND_METADATA_BYTES];

  snprintf(want, sizeof(want), "{\"of\":\"%s\"}", id);
  assert_string_equal(got->metadata, want);
  snprintf(want, sizeof(want), "from_%s", id);
  assert_string_equal(got->rolled_from, want);
  snprintf(want, sizeof(want), "to_%s", id);
  assert_string_equal(got->rolled_to, want);
  assert_int_equal(got->pepper_gen, hash_byte);
}

/* Inserts a token; *out (may be NULL) gets its row as the store left it,
 * which inside a transaction is complete (seq) only after commit: read
 * fx->rows then. */
static store_token_t *insert_token(fixture_t *fx, const char *domain,
                                   const char *id, uint8_t hash_byte,
                                   store_token_t *out) {
  store_token_t *row = &fx->rows[fx->n_rows++ % 64];

  make_token(row, domain, id, hash_byte);
  assert_int_equal(store_insert(fx->store, row), 0);
  if (out != NULL)
    *out = *row;
  return row;
}

static void make_event(store_audit_t *ev, const char *domain,
                       const char *method, int64_t at) {
  memset(ev, 0, sizeof(*ev));
  ev->at = at;
  ev->peer_uid = 1000;
  ev->peer_pid = 42;
  snprintf(ev->actor, sizeof(ev->actor), "alice");
  snprintf(ev->domain, sizeof(ev->domain), "%s", domain);
  snprintf(ev->method, sizeof(ev->method), "%s", method);
  snprintf(ev->detail, sizeof(ev->detail), "detail %lld", (long long)at);
}

typedef struct {
  int n;
  int v6_ok; /* rows whose schema 6 columns read back as written */
  char ids[8][TOKEND_TOKEN_ID_BYTES];
  int64_t seqs[8];
  int stop_after; /* 0: never */
} load_acc_t;

static int load_cb(void *arg, const store_token_t *row) {
  load_acc_t *acc = arg;

  if (acc->n < 8) {
    snprintf(acc->ids[acc->n], sizeof(acc->ids[0]), "%s", row->id);
    acc->seqs[acc->n] = row->seq;
  }
  if (row->pepper_gen == row->hash[0] &&
      strncmp(row->rolled_to, "to_", 3) == 0 &&
      strcmp(row->rolled_to + 3, row->id) == 0 &&
      strncmp(row->metadata, "{\"of\":", 6) == 0)
    acc->v6_ok++;
  acc->n++;
  return acc->stop_after != 0 && acc->n == acc->stop_after ? 77 : 0;
}

static int admin_cb(void *arg, const store_admin_t *a) {
  int *n = arg;

  if (strcmp(a->user, "bob") == 0 && strcmp(a->granted_by, "root") == 0)
    (*n)++;
  return 0;
}

/* ---- open and the registry ---- */

static void test_open_missing_without_create_is_not_found(void **state) {
  fixture_t *fx = *state;
  char why[512] = "";

  assert_int_equal(store_exists_url(fx->url), 0);
  assert_int_equal(store_open_url(fx->url, 0, &fx->store, why, sizeof(why)),
                   TOKEND_ENOTFOUND);
  assert_null(fx->store);
  assert_true(why[0] != '\0');
  assert_int_equal(open_store(fx, STORE_OPEN_CREATE), 0);
  assert_int_equal(store_exists_url(fx->url), 1);
  assert_int_equal(store_is_read_only(fx->store), 0);
}

static void test_unknown_scheme_names_the_schemes(void **state) {
  char why[512] = "";
  store_t *s = NULL;

  (void)state;
  assert_int_equal(
      store_open_url("foo:bar", STORE_OPEN_CREATE, &s, why, sizeof(why)),
      TOKEND_ECONFIG);
  assert_null(s);
  assert_non_null(strstr(why, "unknown store scheme 'foo'"));
  assert_non_null(strstr(why, backend->name));
  assert_null(strchr(why, '\n'));
  assert_int_equal(store_exists_url("foo:bar"), TOKEND_ECONFIG);
}

static void test_check_of_a_sound_store_passes(void **state) {
  fixture_t *fx = *state;
  char buf[4096];
  FILE *out = fmemopen(buf, sizeof(buf), "w");

  insert_token(fx, "example.com", "tok1", 1, NULL);
  assert_non_null(out);
  assert_int_equal(store_check_url(fx->url, out), 0);
  fclose(out);
}

/* store.h: every member is set; the wrappers call them unchecked. */
static void test_every_op_is_set(void **state) {
  fixture_t *fx = *state;
  const struct store_ops *ops = fx->store->ops;
  const struct store_backend *be;
  const char *location;
  char why[256];

  assert_non_null(ops);
  assert_true(ops->close && ops->errmsg && ops->file_check && ops->file_lost);
  assert_true(ops->fingerprint_get && ops->fingerprint_set && ops->count_rows &&
              ops->load);
  assert_true(ops->begin && ops->commit && ops->rollback);
  assert_true(ops->insert && ops->revoke && ops->touch && ops->list);
  assert_true(ops->token_update && ops->list_expiring && ops->policy_get);
  assert_true(ops->admin_grant && ops->admin_remove && ops->admin_load &&
              ops->token_get && ops->admin_get && ops->revoked_with);
  assert_true(ops->audit_key_set && ops->audit_append && ops->audit_list &&
              ops->audit_head && ops->audit_verify && ops->verify_counts_add);
  assert_true(ops->snapshot_begin && ops->snapshot_end && ops->audit_load &&
              ops->counts_load && ops->token_import && ops->audit_import &&
              ops->counts_import);
  assert_true(ops->bulk_revoke && ops->revoked_at_by && ops->policy_get &&
              ops->policy_set && ops->active_count && ops->revoke_by_hash);
  assert_true(ops->policy_load);
  assert_true(ops->meta_get && ops->meta_set && ops->token_rekey &&
              ops->audit_prune);
  assert_int_equal(store_url_parse(fx->url, &be, &location, why, sizeof(why)),
                   0);
  assert_string_equal(be->scheme, backend->name);
  assert_true(be->open && be->exists && be->check);
}

static void test_fresh_store_is_empty(void **state) {
  fixture_t *fx = *state;
  load_acc_t acc = {0};
  uint8_t fp[STORE_FINGERPRINT_BYTES], hash[STORE_AUDIT_HASH_BYTES];
  int64_t n = -1, id = -1;
  int present = -1, admins = 0;

  assert_int_equal(store_count_rows(fx->store, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(store_load(fx->store, load_cb, &acc), 0);
  assert_int_equal(acc.n, 0);
  assert_int_equal(store_admin_load(fx->store, admin_cb, &admins), 0);
  assert_int_equal(admins, 0);
  assert_int_equal(store_fingerprint_get(fx->store, fp, &present), 0);
  assert_int_equal(present, 0);
  assert_int_equal(store_audit_head(fx->store, &id, hash), 0);
  assert_int_equal(id, 0);
  assert_int_equal(store_file_check(fx->store), 0);
  assert_int_equal(store_file_lost(fx->store), 0);
  assert_string_equal(store_errmsg(fx->store), "");
}

/* ---- tokens ---- */

static void test_insert_sets_growing_seq_and_reads_back(void **state) {
  fixture_t *fx = *state;
  store_token_t a, b, got;

  insert_token(fx, "example.com", "tok1", 1, &a);
  insert_token(fx, "example.com", "tok2", 2, &b);
  assert_true(a.seq > 0);
  assert_true(b.seq > a.seq);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok2", &got), 0);
  assert_int_equal(got.seq, b.seq);
  assert_string_equal(got.label, "label of tok2");
  assert_string_equal(got.hint, "tk_tok2");
  assert_string_equal(got.scopes, "read write");
  assert_string_equal(got.created_by, "alice");
  assert_memory_equal(got.hash, b.hash, TOKEND_HASH_BYTES);
  assert_int_equal(got.created_at, b.created_at);
  assert_int_equal(got.revoked_at, 0);
  assert_int_equal(got.last_used_at, 0);
  assert_v6_fields(&got, "tok2", 2);
}

/* The batched insert of a transaction (PostgreSQL queues a group's rows
 * into one statement) writes the schema 6 columns too, and a list reads
 * them. */
static void test_insert_in_transaction_keeps_v6_fields(void **state) {
  fixture_t *fx = *state;
  store_token_t rows[4];
  size_t n = 0;

  assert_int_equal(store_begin(fx->store), 0);
  insert_token(fx, "example.com", "tok1", 1, NULL);
  insert_token(fx, "example.com", "tok2", 2, NULL);
  assert_int_equal(store_commit(fx->store), 0);
  assert_int_equal(store_list(fx->store, "example.com", 0, 0, rows, 4, &n), 0);
  assert_int_equal(n, 2);
  assert_v6_fields(&rows[0], "tok2", 2);
  assert_v6_fields(&rows[1], "tok1", 1);
}

static void test_insert_duplicate_id_or_hash_is_eexist(void **state) {
  fixture_t *fx = *state;
  store_token_t row;
  int64_t n;

  insert_token(fx, "example.com", "tok1", 1, NULL);
  make_token(&row, "example.com", "tok1", 2);
  assert_int_equal(store_insert(fx->store, &row), TOKEND_EEXIST);
  assert_true(store_errmsg(fx->store)[0] != '\0');
  make_token(&row, "example.com", "tok9", 1);
  assert_int_equal(store_insert(fx->store, &row), TOKEND_EEXIST);
  assert_int_equal(store_count_rows(fx->store, &n), 0);
  assert_int_equal(n, 1);
}

static void test_token_get_other_domain_is_not_found(void **state) {
  fixture_t *fx = *state;
  store_token_t got;

  insert_token(fx, "example.com", "tok1", 1, NULL);
  assert_int_equal(store_token_get(fx->store, "other.org", "tok1", &got),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_token_get(fx->store, "example.com", "nope", &got),
                   TOKEND_ENOTFOUND);
}

static void test_load_walks_oldest_first_and_stops_on_request(void **state) {
  fixture_t *fx = *state;
  load_acc_t acc = {0};

  insert_token(fx, "a.com", "tok1", 1, NULL);
  insert_token(fx, "b.com", "tok2", 2, NULL);
  insert_token(fx, "a.com", "tok3", 3, NULL);
  assert_int_equal(store_load(fx->store, load_cb, &acc), 0);
  assert_int_equal(acc.n, 3);
  assert_int_equal(acc.v6_ok, 3);
  assert_string_equal(acc.ids[0], "tok1");
  assert_string_equal(acc.ids[2], "tok3");
  assert_true(acc.seqs[0] < acc.seqs[1] && acc.seqs[1] < acc.seqs[2]);
  memset(&acc, 0, sizeof(acc));
  acc.stop_after = 2;
  assert_int_equal(store_load(fx->store, load_cb, &acc), 77);
  assert_int_equal(acc.n, 2);
}

static void test_revoke_once_then_already(void **state) {
  fixture_t *fx = *state;
  uint8_t hash[TOKEND_HASH_BYTES];
  store_token_t row, got;
  int64_t at = 0;
  int already = -1;

  insert_token(fx, "example.com", "tok1", 5, &row);
  assert_int_equal(store_revoke(fx->store, "example.com", "tok1", 2000, "bob",
                                &at, &already, hash),
                   0);
  assert_int_equal(at, 2000);
  assert_int_equal(already, 0);
  assert_memory_equal(hash, row.hash, TOKEND_HASH_BYTES);
  assert_int_equal(store_revoke(fx->store, "example.com", "tok1", 3000, "carol",
                                &at, &already, hash),
                   0);
  assert_int_equal(at, 2000);
  assert_int_equal(already, 1);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
  assert_int_equal(got.revoked_at, 2000);
  assert_string_equal(got.revoked_by, "bob");
}

static void test_revoke_unknown_or_other_domain_is_not_found(void **state) {
  fixture_t *fx = *state;
  uint8_t hash[TOKEND_HASH_BYTES];
  store_token_t got;
  int64_t at;
  int already;

  insert_token(fx, "example.com", "tok1", 5, NULL);
  assert_int_equal(store_revoke(fx->store, "other.org", "tok1", 2000, "bob",
                                &at, &already, hash),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_revoke(fx->store, "example.com", "nope", 2000, "bob",
                                &at, &already, hash),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
  assert_int_equal(got.revoked_at, 0);
}

static void test_touch_only_raises_last_used(void **state) {
  fixture_t *fx = *state;
  store_touch_t items[2];
  store_token_t got;

  insert_token(fx, "example.com", "tok1", 1, NULL);
  memset(items, 0, sizeof(items));
  memset(items[0].hash, 1, TOKEND_HASH_BYTES);
  items[0].last_used_at = 5000;
  memset(items[1].hash, 0xEE, TOKEND_HASH_BYTES); /* no such token */
  items[1].last_used_at = 5000;
  assert_int_equal(store_touch(fx->store, items, 2), 0);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
  assert_int_equal(got.last_used_at, 5000);
  items[0].last_used_at = 4000;
  assert_int_equal(store_touch(fx->store, items, 1), 0);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
  assert_int_equal(got.last_used_at, 5000);
}

static void test_list_pages_newest_first(void **state) {
  fixture_t *fx = *state;
  store_token_t rows[4];
  uint8_t hash[TOKEND_HASH_BYTES];
  int64_t at;
  size_t n = 99;
  int already;

  insert_token(fx, "example.com", "tok1", 1, NULL);
  insert_token(fx, "other.org", "tokx", 9, NULL);
  insert_token(fx, "example.com", "tok2", 2, NULL);
  insert_token(fx, "example.com", "tok3", 3, NULL);
  assert_int_equal(store_revoke(fx->store, "example.com", "tok2", 2000, "bob",
                                &at, &already, hash),
                   0);
  assert_int_equal(store_list(fx->store, "example.com", 0, 0, rows, 4, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(rows[0].id, "tok3");
  assert_string_equal(rows[1].id, "tok1");
  assert_int_equal(store_list(fx->store, "example.com", 1, 0, rows, 2, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(rows[0].id, "tok3");
  assert_string_equal(rows[1].id, "tok2");
  assert_int_equal(
      store_list(fx->store, "example.com", 1, rows[1].seq, rows, 4, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].id, "tok1");
  assert_int_equal(store_list(fx->store, "none.net", 1, 0, rows, 4, &n), 0);
  assert_int_equal(n, 0);
}

/* issue 17: token_update writes the fields an Edit or a Roll changes and
 * nothing else; a token of another domain is not found. */
static void test_token_update_writes_the_mutable_fields(void **state) {
  fixture_t *fx = *state;
  store_token_t a, got;

  insert_token(fx, "example.com", "tok1", 1, &a);
  snprintf(a.label, sizeof(a.label), "edited");
  snprintf(a.scopes, sizeof(a.scopes), "read");
  snprintf(a.metadata, sizeof(a.metadata), "{\"x\":1}");
  snprintf(a.rolled_to, sizeof(a.rolled_to), "tok2");
  a.expires_at = 7777;
  a.created_at = 1; /* not written */
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_token_update(fx->store, &a), 0);
  assert_int_equal(store_commit(fx->store), 0);
  reopen(fx);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
  assert_string_equal(got.label, "edited");
  assert_string_equal(got.scopes, "read");
  assert_string_equal(got.metadata, "{\"x\":1}");
  assert_string_equal(got.rolled_to, "tok2");
  assert_int_equal(got.expires_at, 7777);
  assert_int_equal(got.created_at, 1000 + 1);
  snprintf(a.domain, sizeof(a.domain), "other.org");
  assert_int_equal(store_token_update(fx->store, &a), TOKEND_ENOTFOUND);
}

/* issue 17: only the domain's active tokens expiring in (now, until]. */
static void test_list_expiring_selects_the_window(void **state) {
  fixture_t *fx = *state;
  store_token_t *r, rows[8];
  uint8_t hash[TOKEND_HASH_BYTES];
  int64_t at;
  size_t n = 99;
  int already;

  r = insert_token(fx, "example.com", "soon", 1, NULL);
  r->expires_at = 1500;
  assert_int_equal(store_token_update(fx->store, r), 0);
  r = insert_token(fx, "example.com", "late", 2, NULL);
  r->expires_at = 9000;
  assert_int_equal(store_token_update(fx->store, r), 0);
  r = insert_token(fx, "example.com", "past", 3, NULL);
  r->expires_at = 500;
  assert_int_equal(store_token_update(fx->store, r), 0);
  r = insert_token(fx, "example.com", "gone", 4, NULL);
  r->expires_at = 1200;
  assert_int_equal(store_token_update(fx->store, r), 0);
  assert_int_equal(store_revoke(fx->store, "example.com", "gone", 2000, "bob",
                                &at, &already, hash),
                   0);
  insert_token(fx, "example.com", "never", 5, NULL);
  r = insert_token(fx, "other.org", "theirs", 6, NULL);
  r->expires_at = 1500;
  assert_int_equal(store_token_update(fx->store, r), 0);
  assert_int_equal(
      store_list_expiring(fx->store, "example.com", 1000, 2000, 0, rows, 8, &n),
      0);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].id, "soon");
  assert_int_equal(
      store_list_expiring(fx->store, "example.com", 1000, 9000, 0, rows, 8, &n),
      0);
  assert_int_equal(n, 2);
  assert_string_equal(rows[0].id, "late");
  assert_int_equal(store_list_expiring(fx->store, "example.com", 1000, 9000,
                                       rows[0].seq, rows, 8, &n),
                   0);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].id, "soon");
}

/* issue 17: no policy is TOKEND_ENOTFOUND (h17b's SetDomainPolicy writes
 * them; the policy hook reads them). */
static void test_policy_get_without_a_policy_is_not_found(void **state) {
  fixture_t *fx = *state;
  store_policy_t pol;

  assert_int_equal(store_policy_get(fx->store, "example.com", &pol),
                   TOKEND_ENOTFOUND);
}

/* store.c keeps a policy read inside a write transaction until it ends
 * (store_s.policy_memo): within it, a policy_set is seen at once; after
 * it, another connection's change is (nothing read in an earlier
 * transaction is answered again). */
static void test_policy_read_in_a_transaction_is_never_stale(void **state) {
  fixture_t *fx = *state;
  store_policy_t p, got;
  store_t *other = NULL;
  char why[256];

  memset(&p, 0, sizeof(p));
  snprintf(p.domain, sizeof(p.domain), "example.com");
  snprintf(p.updated_by, sizeof(p.updated_by), "root");
  p.updated_at = 1;
  p.max_lifetime_ms = 1000;
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_policy_get(fx->store, "example.com", &got),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_policy_set(fx->store, &p), 0);
  assert_int_equal(store_policy_get(fx->store, "example.com", &got), 0);
  assert_int_equal(got.max_lifetime_ms, 1000);
  assert_int_equal(store_commit(fx->store), 0);

  assert_int_equal(store_open_url(fx->url, 0, &other, why, sizeof(why)), 0);
  p.max_lifetime_ms = 2000;
  assert_int_equal(store_begin(other), 0);
  assert_int_equal(store_policy_set(other, &p), 0);
  assert_int_equal(store_commit(other), 0);
  store_close(other);

  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_policy_get(fx->store, "example.com", &got), 0);
  assert_int_equal(got.max_lifetime_ms, 2000);
  store_rollback(fx->store);
}

/* ---- admins ---- */

static void test_admin_grant_get_load_and_already(void **state) {
  fixture_t *fx = *state;
  int64_t at = 0;
  int already = -1, n = 0;

  assert_int_equal(store_admin_get(fx->store, "example.com", "bob", &at),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_admin_grant(fx->store, "example.com", "bob", 100,
                                     "root", &at, &already),
                   0);
  assert_int_equal(at, 100);
  assert_int_equal(already, 0);
  assert_int_equal(store_admin_grant(fx->store, "example.com", "bob", 200,
                                     "root", &at, &already),
                   0);
  assert_int_equal(at, 100);
  assert_int_equal(already, 1);
  at = 0;
  assert_int_equal(store_admin_get(fx->store, "example.com", "bob", &at), 0);
  assert_int_equal(at, 100);
  assert_int_equal(store_admin_get(fx->store, "other.org", "bob", &at),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_admin_load(fx->store, admin_cb, &n), 0);
  assert_int_equal(n, 1);
}

static void test_admin_remove_revokes_their_tokens(void **state) {
  fixture_t *fx = *state;
  uint8_t(*hashes)[TOKEND_HASH_BYTES] = NULL;
  store_token_t row, got;
  size_t n = 99;
  int64_t at;
  int already;

  assert_int_equal(store_admin_grant(fx->store, "example.com", "bob", 100,
                                     "root", &at, &already),
                   0);
  make_token(&row, "example.com", "tok1", 1);
  snprintf(row.created_by, sizeof(row.created_by), "bob");
  assert_int_equal(store_insert(fx->store, &row), 0);
  make_token(&row, "example.com", "tok2", 2); /* alice's: stays */
  assert_int_equal(store_insert(fx->store, &row), 0);
  assert_int_equal(store_admin_remove(fx->store, "example.com", "bob", 1, 300,
                                      "root", &hashes, &n),
                   0);
  assert_int_equal(n, 1);
  assert_non_null(hashes);
  assert_int_equal(hashes[0][0], 1);
  free(hashes);
  assert_int_equal(store_admin_get(fx->store, "example.com", "bob", &at),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
  assert_int_equal(got.revoked_at, 300);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok2", &got), 0);
  assert_int_equal(got.revoked_at, 0);
  /* What that removal revoked, found again (a commit in doubt's look). */
  hashes = NULL;
  assert_int_equal(store_revoked_with(fx->store, "example.com", "bob", 300,
                                      "root", &hashes, &n),
                   0);
  assert_int_equal(n, 1);
  assert_int_equal(hashes[0][0], 1);
  free(hashes);
  hashes = NULL;
  assert_int_equal(store_revoked_with(fx->store, "example.com", "bob", 301,
                                      "root", &hashes, &n),
                   0);
  assert_int_equal(n, 0);
  free(hashes);
}

/* issue 17: bulk_revoke by ids (all or nothing), by creator, of all, of
 * those created before; revoked_at_by finds what one took. */
static void
test_bulk_revoke_selects_and_unknown_id_changes_nothing(void **state) {
  fixture_t *fx = *state;
  int feed = strcmp(backend->name, "postgresql") == 0;
  const char ids[2][TOKEND_TOKEN_ID_BYTES] = {"tok1", "tok9"};
  store_bulk_select_t sel = {.by = STORE_BULK_IDS, .ids = ids, .n_ids = 2};
  store_revoked_t *v = NULL;
  char missing[TOKEND_TOKEN_ID_BYTES] = "";
  size_t n = 99, already = 99;
  store_token_t got, *row;
  int64_t r0, r1;

  insert_token(fx, "example.com", "tok1", 1, NULL); /* created_at 1001 */
  row = insert_token(fx, "example.com", "tok2", 2, NULL);
  insert_token(fx, "example.com", "tok3", 3, NULL);
  insert_token(fx, "other.org", "tok9", 9, NULL);
  (void)row;
  /* tok9 is another domain's: nothing happens, and it is named. */
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_bulk_revoke(fx->store, "example.com", &sel, 50, "root",
                                     &v, &n, &already, missing),
                   TOKEND_ENOTFOUND);
  assert_string_equal(missing, "tok9");
  assert_null(v);
  assert_int_equal(n, 0);
  assert_int_equal(store_commit(fx->store), 0);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
  assert_int_equal(got.revoked_at, 0);

  /* By id: one revoked, in a transaction numbered as one change each. */
  sel.n_ids = 1;
  assert_int_equal(store_begin(fx->store), 0);
  r0 = store_change_rev(fx->store);
  assert_int_equal(store_bulk_revoke(fx->store, "example.com", &sel, 50, "root",
                                     &v, &n, &already, missing),
                   0);
  assert_int_equal(n, 1);
  assert_int_equal(already, 0);
  assert_string_equal(v[0].id, "tok1");
  assert_int_equal(v[0].hash[0], 1);
  free(v);
  r1 = store_change_rev(fx->store);
  assert_int_equal(store_commit(fx->store), 0);
  assert_true(feed ? r1 > r0 : r1 == 0);

  /* Created before 1003: tok1 (already) and tok2. */
  sel.by = STORE_BULK_BEFORE;
  sel.created_before = 1003;
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_bulk_revoke(fx->store, "example.com", &sel, 60, "root",
                                     &v, &n, &already, missing),
                   0);
  assert_int_equal(store_commit(fx->store), 0);
  assert_int_equal(n, 1);
  assert_int_equal(already, 1);
  assert_string_equal(v[0].id, "tok2");
  free(v);
  /* By a creator nobody is: nothing. */
  sel.by = STORE_BULK_CREATOR;
  sel.created_by = "mallory";
  assert_int_equal(store_bulk_revoke(fx->store, "example.com", &sel, 70, "root",
                                     &v, &n, &already, missing),
                   0);
  assert_int_equal(n, 0);
  assert_null(v);
  /* All: tok3 is left; other.org's tok9 stays. */
  sel.by = STORE_BULK_ALL;
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_bulk_revoke(fx->store, "example.com", &sel, 80, "bob",
                                     &v, &n, &already, missing),
                   0);
  assert_int_equal(store_commit(fx->store), 0);
  assert_int_equal(n, 1);
  assert_int_equal(already, 2);
  assert_string_equal(v[0].id, "tok3");
  free(v);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok3", &got), 0);
  assert_int_equal(got.revoked_at, 80);
  assert_string_equal(got.revoked_by, "bob");
  assert_int_equal(store_token_get(fx->store, "other.org", "tok9", &got), 0);
  assert_int_equal(got.revoked_at, 0);
  /* What that call took, found again (a commit in doubt's look). */
  assert_int_equal(
      store_revoked_at_by(fx->store, "example.com", 80, "bob", &v, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(v[0].id, "tok3");
  free(v);
  assert_int_equal(
      store_revoked_at_by(fx->store, "example.com", 81, "bob", &v, &n), 0);
  assert_int_equal(n, 0);
  free(v);
}

/* issue 17: a domain's policy set, replaced and read back; the active
 * count skips revoked and expired tokens and stops at its limit. */
static void test_policy_set_get_and_active_count(void **state) {
  fixture_t *fx = *state;
  store_policy_t p, got;
  store_token_t *row;
  int64_t n = -1, at;
  uint8_t hash[TOKEND_HASH_BYTES];
  int already;

  assert_int_equal(store_policy_get(fx->store, "example.com", &got),
                   TOKEND_ENOTFOUND);
  memset(&p, 0, sizeof(p));
  snprintf(p.domain, sizeof(p.domain), "example.com");
  p.max_lifetime_ms = 7776000000LL;
  p.require_expiry = 1;
  snprintf(p.allowed_scopes, sizeof(p.allowed_scopes), "read write");
  p.max_active_tokens = 3;
  p.updated_at = 42;
  snprintf(p.updated_by, sizeof(p.updated_by), "root");
  assert_int_equal(store_policy_set(fx->store, &p), 0);
  assert_int_equal(store_policy_get(fx->store, "example.com", &got), 0);
  assert_int_equal(got.max_lifetime_ms, 7776000000LL);
  assert_int_equal(got.require_expiry, 1);
  assert_string_equal(got.allowed_scopes, "read write");
  assert_int_equal(got.max_active_tokens, 3);
  assert_int_equal(got.updated_at, 42);
  assert_string_equal(got.updated_by, "root");
  p.require_expiry = 0;
  p.updated_at = 43;
  assert_int_equal(store_policy_set(fx->store, &p), 0);
  assert_int_equal(store_policy_get(fx->store, "example.com", &got), 0);
  assert_int_equal(got.require_expiry, 0);
  assert_int_equal(got.updated_at, 43);
  assert_int_equal(store_policy_get(fx->store, "other.org", &got),
                   TOKEND_ENOTFOUND);

  insert_token(fx, "example.com", "tok1", 1, NULL);
  insert_token(fx, "example.com", "tok2", 2, NULL);
  row = &fx->rows[fx->n_rows++ % 64];
  make_token(row, "example.com", "tok3", 3);
  row->expires_at = 50; /* expired at 100 */
  assert_int_equal(store_insert(fx->store, row), 0);
  insert_token(fx, "other.org", "tok9", 9, NULL);
  assert_int_equal(store_revoke(fx->store, "example.com", "tok1", 5, "bob", &at,
                                &already, hash),
                   0);
  assert_int_equal(store_active_count(fx->store, "example.com", 100, 10, &n),
                   0);
  assert_int_equal(n, 1);
  assert_int_equal(store_active_count(fx->store, "example.com", 40, 10, &n), 0);
  assert_int_equal(n, 2);
  /* Counting stops at the limit in each of its two ranges. */
  assert_int_equal(store_active_count(fx->store, "example.com", 40, 1, &n), 0);
  assert_true(n >= 1 && n <= 2);
  assert_int_equal(store_active_count(fx->store, "nobody.org", 100, 10, &n), 0);
  assert_int_equal(n, 0);
}

/* Records every policy policy_load calls back with (up to 4). */
typedef struct {
  store_policy_t seen[4];
  int n;
} policy_walk_t;

static int policy_walk(void *arg, const store_policy_t *p) {
  policy_walk_t *w = arg;

  if (w->n >= 4)
    return TOKEND_EINTERNAL;
  w->seen[w->n++] = *p;
  return 0;
}

static int policy_walk_stop(void *arg, const store_policy_t *p) {
  (void)arg;
  (void)p;
  return TOKEND_EEXIST;
}

/* issue 17: policy_load walks every domain's policy as policy_set wrote it
 * (what `tokend-admin copy` copies), and a callback's error stops it. */
static void test_policy_load_walks_every_policy(void **state) {
  fixture_t *fx = *state;
  store_policy_t p;
  policy_walk_t w;
  int i, a = -1, b = -1;

  memset(&w, 0, sizeof(w));
  assert_int_equal(store_policy_load(fx->store, policy_walk, &w), 0);
  assert_int_equal(w.n, 0);
  memset(&p, 0, sizeof(p));
  snprintf(p.domain, sizeof(p.domain), "a.example");
  p.max_lifetime_ms = 3600000;
  p.require_expiry = 1;
  snprintf(p.allowed_scopes, sizeof(p.allowed_scopes), "read write");
  p.max_active_tokens = 5;
  p.updated_at = 77;
  snprintf(p.updated_by, sizeof(p.updated_by), "root");
  assert_int_equal(store_policy_set(fx->store, &p), 0);
  memset(&p, 0, sizeof(p));
  snprintf(p.domain, sizeof(p.domain), "b.example");
  p.max_active_tokens = 9;
  p.updated_at = 78;
  snprintf(p.updated_by, sizeof(p.updated_by), "ops");
  assert_int_equal(store_policy_set(fx->store, &p), 0);
  assert_int_equal(store_policy_load(fx->store, policy_walk, &w), 0);
  assert_int_equal(w.n, 2);
  for (i = 0; i < w.n; i++) {
    if (strcmp(w.seen[i].domain, "a.example") == 0)
      a = i;
    else if (strcmp(w.seen[i].domain, "b.example") == 0)
      b = i;
  }
  assert_true(a >= 0 && b >= 0);
  assert_int_equal(w.seen[a].max_lifetime_ms, 3600000);
  assert_int_equal(w.seen[a].require_expiry, 1);
  assert_string_equal(w.seen[a].allowed_scopes, "read write");
  assert_int_equal(w.seen[a].max_active_tokens, 5);
  assert_int_equal(w.seen[a].updated_at, 77);
  assert_string_equal(w.seen[a].updated_by, "root");
  assert_int_equal(w.seen[b].max_lifetime_ms, 0);
  assert_int_equal(w.seen[b].require_expiry, 0);
  assert_string_equal(w.seen[b].allowed_scopes, "");
  assert_int_equal(w.seen[b].max_active_tokens, 9);
  assert_int_equal(w.seen[b].updated_at, 78);
  assert_string_equal(w.seen[b].updated_by, "ops");
  assert_int_equal(store_policy_load(fx->store, policy_walk_stop, NULL),
                   TOKEND_EEXIST);
}

/* issue 17: revoke_by_hash finds tokens by hash in any domain, revokes the
 * active ones, and without revoke only reads. */
static void test_revoke_by_hash_finds_and_revokes(void **state) {
  fixture_t *fx = *state;
  store_hash_token_t it[3];
  int64_t at, r0, r1;
  uint8_t hash[TOKEND_HASH_BYTES];
  int feed = strcmp(backend->name, "postgresql") == 0, already;

  insert_token(fx, "example.com", "tok1", 1, NULL);
  insert_token(fx, "other.org", "tok2", 2, NULL);
  assert_int_equal(store_revoke(fx->store, "other.org", "tok2", 5, "bob", &at,
                                &already, hash),
                   0);
  memset(it, 0, sizeof(it));
  memset(it[0].hash, 1, TOKEND_HASH_BYTES);
  memset(it[1].hash, 2, TOKEND_HASH_BYTES);
  memset(it[2].hash, 7, TOKEND_HASH_BYTES); /* nobody's */
  assert_int_equal(store_revoke_by_hash(fx->store, it, 3, 9, "leaked:x", 0), 0);
  assert_int_equal(it[0].found, 1);
  assert_int_equal(it[0].revoked_at, 0);
  assert_int_equal(it[0].revoked_now, 0);
  assert_int_equal(store_begin(fx->store), 0);
  r0 = store_change_rev(fx->store);
  assert_int_equal(store_revoke_by_hash(fx->store, it, 3, 9, "leaked:x", 1), 0);
  r1 = store_change_rev(fx->store);
  assert_int_equal(store_commit(fx->store), 0);
  assert_true(feed ? r1 > r0 : r1 == 0);
  assert_int_equal(it[0].found, 1);
  assert_int_equal(it[0].revoked_now, 1);
  assert_int_equal(it[0].revoked_at, 9);
  assert_string_equal(it[0].id, "tok1");
  assert_string_equal(it[0].domain, "example.com");
  assert_string_equal(it[0].revoked_by, "leaked:x");
  assert_int_equal(it[1].found, 1);
  assert_int_equal(it[1].revoked_now, 0);
  assert_int_equal(it[1].revoked_at, 5);
  assert_string_equal(it[1].domain, "other.org");
  assert_int_equal(it[2].found, 0);
  assert_int_equal(it[2].revoked_now, 0);
}

static void test_admin_remove_not_an_admin_is_not_found(void **state) {
  fixture_t *fx = *state;
  uint8_t(*hashes)[TOKEND_HASH_BYTES] = (void *)&hashes;
  size_t n = 99;

  assert_int_equal(store_admin_remove(fx->store, "example.com", "bob", 1, 300,
                                      "root", &hashes, &n),
                   TOKEND_ENOTFOUND);
  assert_null(hashes);
  assert_int_equal(n, 0);
}

/* ---- fingerprint, counts ---- */

static void test_fingerprint_set_replace_and_survive_reopen(void **state) {
  fixture_t *fx = *state;
  uint8_t fp[STORE_FINGERPRINT_BYTES], got[STORE_FINGERPRINT_BYTES];
  int present = 0;

  memset(fp, 0xA5, sizeof(fp));
  assert_int_equal(store_fingerprint_set(fx->store, fp), 0);
  memset(fp, 0x5A, sizeof(fp));
  assert_int_equal(store_fingerprint_set(fx->store, fp), 0);
  reopen(fx);
  assert_int_equal(store_fingerprint_get(fx->store, got, &present), 0);
  assert_int_equal(present, 1);
  assert_memory_equal(got, fp, sizeof(fp));
}

static void test_count_rows_counts_tokens_admins_and_audit(void **state) {
  fixture_t *fx = *state;
  store_audit_t ev;
  int64_t n = -1, at;
  int already;

  insert_token(fx, "example.com", "tok1", 1, NULL);
  assert_int_equal(store_admin_grant(fx->store, "example.com", "bob", 100,
                                     "root", &at, &already),
                   0);
  make_event(&ev, "example.com", "Issue", 10);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  /* Verify counts are statistics, not rows anyone owns. */
  assert_int_equal(store_verify_counts_add(fx->store, "example.com", 3, 1, 50),
                   0);
  assert_int_equal(store_verify_counts_add(fx->store, "", 0, 2, 60), 0);
  assert_int_equal(store_count_rows(fx->store, &n), 0);
  assert_int_equal(n, 3);
}

/* ---- transactions ---- */

static void test_commit_is_durable_rollback_is_not(void **state) {
  fixture_t *fx = *state;
  store_token_t got;

  assert_int_equal(store_begin(fx->store), 0);
  insert_token(fx, "example.com", "tok1", 1, NULL);
  store_rollback(fx->store);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_begin(fx->store), 0);
  insert_token(fx, "example.com", "tok2", 2, NULL);
  assert_int_equal(store_commit(fx->store), 0);
  /* Rollback outside a transaction is a no-op. */
  store_rollback(fx->store);
  reopen(fx);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok2", &got), 0);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got),
                   TOKEND_ENOTFOUND);
}

/* A commit the storage refuses stores nothing, says so definitely, and the
 * store works again once the storage does. */
static void test_commit_failure_is_definite_and_recovers(void **state) {
  fixture_t *fx = *state;
  store_token_t got;
  int err;

  assert_int_equal(store_begin(fx->store), 0);
  insert_token(fx, "example.com", "tok1", 1, NULL);
  assert_int_equal(backend->fault(fx->dir, FAULT_WRITE), 0);
  err = store_commit(fx->store);
  assert_true(err < 0);
  assert_int_not_equal(err, TOKEND_EINDOUBT);
  assert_true(store_errmsg(fx->store)[0] != '\0');
  assert_int_equal(backend->fault(fx->dir, FAULT_NONE), 0);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_begin(fx->store), 0);
  insert_token(fx, "example.com", "tok2", 2, NULL);
  assert_int_equal(store_commit(fx->store), 0);
  reopen(fx);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok2", &got), 0);
}

/* A commit whose outcome the backend cannot know says TOKEND_EINDOUBT; the
 * store then reconnects by itself, and what it answers is what a restart
 * finds. */
static void test_commit_in_doubt_then_store_agrees_with_restart(void **state) {
  fixture_t *fx = *state;
  store_token_t got;
  int found, found_after_restart;

  assert_int_equal(store_begin(fx->store), 0);
  insert_token(fx, "example.com", "tok1", 1, NULL);
  assert_int_equal(backend->fault(fx->dir, FAULT_IN_DOUBT), 0);
  assert_int_equal(store_commit(fx->store), TOKEND_EINDOUBT);
  assert_true(store_errmsg(fx->store)[0] != '\0');
  assert_int_equal(backend->fault(fx->dir, FAULT_NONE), 0);
  found = store_token_get(fx->store, "example.com", "tok1", &got);
  assert_true(found == 0 || found == TOKEND_ENOTFOUND);
  /* The store writes again, without anyone reopening it. */
  assert_int_equal(store_begin(fx->store), 0);
  insert_token(fx, "example.com", "tok2", 2, NULL);
  assert_int_equal(store_commit(fx->store), 0);
  reopen(fx);
  found_after_restart = store_token_get(fx->store, "example.com", "tok1", &got);
  assert_int_equal(found_after_restart, found);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok2", &got), 0);
}

/* ---- read-only, lost storage ---- */

static void test_read_only_refuses_writes_and_reads(void **state) {
  fixture_t *fx = *state;
  uint8_t fp[STORE_FINGERPRINT_BYTES] = {1};
  store_token_t got;

  insert_token(fx, "example.com", "tok1", 1, NULL);
  store_close(fx->store);
  fx->store = NULL;
  assert_int_equal(open_store(fx, STORE_OPEN_READ_ONLY), 0);
  assert_int_equal(store_is_read_only(fx->store), 1);
  assert_int_equal(store_begin(fx->store), TOKEND_ECONFIG);
  assert_non_null(strstr(store_errmsg(fx->store), "read-only"));
  assert_int_equal(store_fingerprint_set(fx->store, fp), TOKEND_ECONFIG);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
}

static void test_lost_storage_is_reported_for_good(void **state) {
  fixture_t *fx = *state;

  if (backend->lose == NULL) {
    printf("skipped for %s: its storage is a server, not a file that can "
           "be deleted or replaced under the store\n",
           backend->name);
    skip();
  }
  assert_int_equal(store_file_check(fx->store), 0);
  assert_int_equal(backend->lose(fx->dir), 0);
  assert_int_equal(store_file_check(fx->store), TOKEND_EUNAVAIL);
  assert_int_equal(store_file_lost(fx->store), 1);
  assert_true(store_errmsg(fx->store)[0] != '\0');
  assert_int_equal(store_file_check(fx->store), TOKEND_EUNAVAIL);
}

/* ---- the audit log ---- */

static void test_audit_append_chains_and_lists(void **state) {
  fixture_t *fx = *state;
  uint8_t head_hash[STORE_AUDIT_HASH_BYTES], zero[STORE_AUDIT_HASH_BYTES] = {0};
  store_audit_check_t check;
  store_audit_t ev, rows[4];
  int64_t head_id = 0;
  size_t n = 0;
  int i;

  for (i = 1; i <= 3; i++) {
    make_event(&ev, i == 2 ? "other.org" : "example.com", "Issue", 10 * i);
    assert_int_equal(store_audit_append(fx->store, &ev), 0);
    assert_int_equal(ev.id, i);
    assert_int_equal(ev.count, 1);
  }
  assert_int_equal(store_audit_head(fx->store, &head_id, head_hash), 0);
  assert_int_equal(head_id, 3);
  assert_memory_not_equal(head_hash, zero, sizeof(zero));
  assert_int_equal(store_audit_list(fx->store, "", 0, 0, rows, 4, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(rows[0].id, 3);
  assert_int_equal(rows[2].id, 1);
  assert_string_equal(rows[2].detail, "detail 10");
  assert_int_equal(rows[2].peer_uid, 1000);
  assert_int_equal(
      store_audit_list(fx->store, "example.com", 0, 0, rows, 4, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(
      store_audit_list(fx->store, "example.com", 0, 3, rows, 4, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(rows[0].id, 1);
  assert_int_equal(store_audit_list(fx->store, "", 25, 0, rows, 4, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(store_audit_verify(fx->store, head_id, head_hash, &check),
                   0);
  assert_int_equal(check.rows_checked, 3);
  assert_int_equal(check.first_bad_id, 0);
  assert_int_equal(check.head_id, 3);
  assert_memory_equal(check.head_hash, head_hash, sizeof(head_hash));
  /* The chain carries on across a restart. */
  reopen(fx);
  make_event(&ev, "example.com", "Revoke", 40);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  assert_int_equal(ev.id, 4);
  assert_int_equal(store_audit_verify(fx->store, 0, zero, &check), 0);
  assert_int_equal(check.first_bad_id, 0);
  assert_int_equal(check.rows_checked, 4);
}

static void test_audit_verify_wrong_anchor_is_reported(void **state) {
  fixture_t *fx = *state;
  uint8_t wrong[STORE_AUDIT_HASH_BYTES];
  store_audit_check_t check;
  store_audit_t ev;

  make_event(&ev, "example.com", "Issue", 10);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  memset(wrong, 0x33, sizeof(wrong));
  assert_int_equal(store_audit_verify(fx->store, 1, wrong, &check), 0);
  assert_int_equal(check.first_bad_id, 1);
  assert_int_equal(check.anchor_mismatch, 1);
  assert_true(check.why[0] != '\0');
  /* An anchor past the end: the newest rows were cut off. */
  assert_int_equal(store_audit_verify(fx->store, 7, wrong, &check), 0);
  assert_int_equal(check.first_bad_id, 7);
  assert_int_equal(check.anchor_mismatch, 1);
}

static void test_audit_without_key_is_refused(void **state) {
  fixture_t *fx = *state;
  char why[512];
  store_audit_check_t check;
  uint8_t zero[STORE_AUDIT_HASH_BYTES] = {0};
  store_audit_t ev;

  insert_token(fx, "example.com", "tok1", 1, NULL);
  store_close(fx->store);
  assert_int_equal(store_open_url(fx->url, 0, &fx->store, why, sizeof(why)), 0);
  make_event(&ev, "example.com", "Issue", 10);
  assert_int_equal(store_audit_append(fx->store, &ev), TOKEND_EINTERNAL);
  assert_int_equal(store_audit_verify(fx->store, 0, zero, &check),
                   TOKEND_EINTERNAL);
  assert_int_equal(store_audit_key_set(fx->store, audit_key), 0);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
}

/* ---- the change feed ---- */

/* A backend whose store several hosts share numbers every change; one
 * without a feed (SQLite) says 0 throughout. */
static void test_change_rev_numbers_every_change(void **state) {
  fixture_t *fx = *state;
  int feed = strcmp(backend->name, "postgresql") == 0;
  uint8_t(*hashes)[TOKEND_HASH_BYTES] = NULL;
  int64_t r1, r2, r3, r4, at, granted_at;
  uint8_t hash[TOKEND_HASH_BYTES];
  store_token_t *row;
  size_t n_hashes = 0;
  int already;

  assert_int_equal(store_begin(fx->store), 0);
  row = insert_token(fx, "example.com", "tok1", 1, NULL);
  /* A backend may number an insert only when it sends it: by the next
   * statement (this revoke reads the row) or the commit. */
  assert_int_equal(store_revoke(fx->store, "example.com", "tok1", 5, "bob", &at,
                                &already, hash),
                   0);
  r2 = store_change_rev(fx->store);
  r1 = feed ? r2 - 1 : 0; /* the insert's, numbered before the revoke's */
  assert_int_equal(store_admin_grant(fx->store, "example.com", "carol", 6,
                                     "root", &granted_at, &already),
                   0);
  r3 = store_change_rev(fx->store);
  assert_int_equal(store_commit(fx->store), 0);
  /* Kept after commit: what the writer hands to the wait. */
  assert_int_equal(store_change_rev(fx->store), r3);
  if (!feed) {
    assert_int_equal(r1 + r2 + r3, 0);
    return;
  }
  assert_true(r1 > 0 && r2 > r1 && r3 > r2);
  /* The insert's row got its seq by the commit at the latest. */
  assert_true(row->seq > 0);
  /* A write that changes nothing waits for the head it read, which holds
   * the earlier change; begin starts counting afresh. */
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_change_rev(fx->store), 0);
  assert_int_equal(store_revoke(fx->store, "example.com", "tok1", 7, "bob", &at,
                                &already, hash),
                   0);
  assert_int_equal(already, 1);
  assert_int_equal(store_change_rev(fx->store), r3);
  /* An admin's removal, and each token it revokes, is a change. */
  insert_token(fx, "example.com", "tok2", 2, NULL);
  r4 = store_change_rev(fx->store);
  assert_int_equal(store_admin_remove(fx->store, "example.com", "carol", 1, 8,
                                      "root", &hashes, &n_hashes),
                   0);
  assert_true(store_change_rev(fx->store) > r4);
  assert_int_equal(store_commit(fx->store), 0);
  free(hashes);
}

/* Everything read between snapshot_begin and snapshot_end is one moment:
 * a write committed meanwhile by another connection is not seen, and the
 * revision the snapshot gives is the one before it. */
static void test_snapshot_is_one_moment(void **state) {
  fixture_t *fx = *state;
  store_t *other = NULL;
  load_acc_t acc = {0};
  char why[512];
  int64_t rev = -1, after;

  insert_token(fx, "example.com", "tok1", 1, NULL);
  assert_int_equal(store_open_url(fx->url, 0, &other, why, sizeof(why)), 0);
  assert_int_equal(store_snapshot_begin(fx->store, &rev), 0);
  insert_token(&(fixture_t){.store = other}, "example.com", "tok2", 2, NULL);
  after = store_change_rev(other);
  assert_int_equal(store_load(fx->store, load_cb, &acc), 0);
  assert_int_equal(acc.n, 1);
  store_snapshot_end(fx->store);
  if (strcmp(backend->name, "postgresql") == 0)
    assert_true(rev > 0 && after > rev);
  else
    assert_int_equal(rev, 0);
  memset(&acc, 0, sizeof(acc));
  assert_int_equal(store_load(fx->store, load_cb, &acc), 0);
  assert_int_equal(acc.n, 2);
  store_close(other);
}

/* ---- copying a store: snapshot, load and import ---- */

typedef struct {
  int n;
  store_audit_t rows[8];
  uint8_t hashes[8][STORE_AUDIT_HASH_BYTES];
  int has_hash[8];
} audit_acc_t;

static int audit_acc_cb(void *arg, const store_audit_t *ev,
                        const uint8_t *hash) {
  audit_acc_t *acc = arg;

  if (acc->n < 8) {
    acc->rows[acc->n] = *ev;
    acc->has_hash[acc->n] = hash != NULL;
    if (hash != NULL)
      memcpy(acc->hashes[acc->n], hash, STORE_AUDIT_HASH_BYTES);
  }
  acc->n++;
  return 0;
}

typedef struct {
  int n;
  store_counts_t rows[4];
} counts_acc_t;

static int counts_acc_cb(void *arg, const store_counts_t *c) {
  counts_acc_t *acc = arg;

  if (acc->n < 4)
    acc->rows[acc->n] = *c;
  acc->n++;
  return 0;
}

/* A second store of the same backend in dir2 (made by the caller), its
 * audit key set. For PostgreSQL another database of the cluster. */
static store_t *open_second_store(const char *dir2) {
  char url[512], why[512];
  store_t *s = NULL;

  assert_int_equal(backend->make(dir2, url, sizeof(url)), 0);
  if (store_open_url(url, STORE_OPEN_CREATE, &s, why, sizeof(why)) != 0)
    fail_msg("store_open_url %s: %s", url, why);
  assert_int_equal(store_audit_key_set(s, audit_key), 0);
  return s;
}

/* What a snapshot reads is the store as it was when it began, whatever the
 * writer commits meanwhile; and a read-only store may take one. */
static void test_snapshot_reads_one_state_while_writes_go_on(void **state) {
  fixture_t *fx = *state;
  char why[512];
  store_t *reader = NULL;
  load_acc_t acc = {0};
  audit_acc_t audit = {0};
  uint8_t hash[TOKEND_HASH_BYTES];
  store_audit_t ev;
  int64_t at;
  int already;
  int64_t rev;

  insert_token(fx, "example.com", "tok1", 1, NULL);
  make_event(&ev, "example.com", "Issue", 10);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  if (store_open_url(fx->url, STORE_OPEN_READ_ONLY, &reader, why,
                     sizeof(why)) != 0)
    fail_msg("read-only open: %s", why);
  assert_int_equal(store_snapshot_begin(reader, &rev), 0);
  insert_token(fx, "example.com", "tok2", 2, NULL);
  make_event(&ev, "example.com", "Issue", 20);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  assert_int_equal(store_revoke(fx->store, "example.com", "tok1", 30, "bob",
                                &at, &already, hash),
                   0);
  assert_int_equal(store_load(reader, load_cb, &acc), 0);
  assert_int_equal(acc.n, 1);
  assert_int_equal(store_audit_load(reader, audit_acc_cb, &audit), 0);
  assert_int_equal(audit.n, 1);
  store_snapshot_end(reader);
  /* Ended: reads see the newest state again. */
  memset(&acc, 0, sizeof(acc));
  assert_int_equal(store_load(reader, load_cb, &acc), 0);
  assert_int_equal(acc.n, 2);
  store_snapshot_end(reader); /* a no-op outside one */
  store_close(reader);
}

static void test_token_import_keeps_every_field(void **state) {
  fixture_t *fx = *state;
  store_token_t row, got, next;

  make_token(&row, "example.com", "tok1", 7);
  row.seq = 41;
  row.expires_at = 9000;
  row.last_used_at = 5000;
  row.revoked_at = 6000;
  snprintf(row.revoked_by, sizeof(row.revoked_by), "carol");
  snprintf(row.created_by, sizeof(row.created_by), "dave");
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_token_import(fx->store, &row), 0);
  assert_int_equal(store_commit(fx->store), 0);
  reopen(fx);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
  assert_int_equal(got.seq, 41);
  assert_string_equal(got.label, row.label);
  assert_string_equal(got.hint, row.hint);
  assert_string_equal(got.scopes, row.scopes);
  assert_memory_equal(got.hash, row.hash, TOKEND_HASH_BYTES);
  assert_int_equal(got.created_at, row.created_at);
  assert_int_equal(got.expires_at, 9000);
  assert_int_equal(got.last_used_at, 5000);
  assert_int_equal(got.revoked_at, 6000);
  assert_string_equal(got.created_by, "dave");
  assert_string_equal(got.revoked_by, "carol");
  assert_v6_fields(&got, "tok1", 7);
  /* A later insert is numbered after it. */
  insert_token(fx, "example.com", "tok2", 8, &next);
  assert_true(next.seq > 41);
  /* Its seq, id or hash again is refused. */
  make_token(&row, "example.com", "tok3", 9);
  row.seq = 41;
  assert_int_equal(store_token_import(fx->store, &row), TOKEND_EEXIST);
  make_token(&row, "example.com", "tok1", 10);
  row.seq = 100;
  assert_int_equal(store_token_import(fx->store, &row), TOKEND_EEXIST);
  make_token(&row, "example.com", "tok4", 7);
  row.seq = 101;
  assert_int_equal(store_token_import(fx->store, &row), TOKEND_EEXIST);
}

/* Rows imported with their ids and stored hashes verify in the copy with
 * the same key, and the chain carries on there. */
static void test_audit_import_keeps_ids_and_hashes(void **state) {
  fixture_t *fx = *state;
  char dir2[96];
  uint8_t head[STORE_AUDIT_HASH_BYTES], head2[STORE_AUDIT_HASH_BYTES];
  store_audit_check_t check;
  audit_acc_t src = {0}, dst = {0};
  store_audit_t ev;
  store_t *copy;
  int64_t head_id, head2_id;
  int i;

  for (i = 1; i <= 3; i++) {
    make_event(&ev, "example.com", "Issue", 10 * i);
    ev.count = i;
    assert_int_equal(store_audit_append(fx->store, &ev), 0);
  }
  assert_int_equal(store_audit_head(fx->store, &head_id, head), 0);
  assert_int_equal(store_audit_load(fx->store, audit_acc_cb, &src), 0);
  assert_int_equal(src.n, 3);
  assert_int_equal(src.rows[0].id, 1);
  assert_int_equal(src.rows[2].id, 3);
  assert_int_equal(src.rows[2].count, 3);
  assert_true(src.has_hash[0] && src.has_hash[2]);
  assert_memory_equal(src.hashes[2], head, sizeof(head));

  snprintf(dir2, sizeof(dir2), "%s/copy", fx->dir);
  assert_int_equal(mkdir(dir2, 0700), 0);
  copy = open_second_store(dir2);
  assert_int_equal(store_begin(copy), 0);
  for (i = 0; i < 3; i++)
    assert_int_equal(store_audit_import(copy, &src.rows[i], src.hashes[i]), 0);
  assert_int_equal(store_commit(copy), 0);
  assert_int_equal(store_audit_head(copy, &head2_id, head2), 0);
  assert_int_equal(head2_id, head_id);
  assert_memory_equal(head2, head, sizeof(head));
  assert_int_equal(store_audit_verify(copy, head_id, head, &check), 0);
  assert_int_equal(check.first_bad_id, 0);
  assert_int_equal(check.rows_checked, 3);
  assert_int_equal(store_audit_load(copy, audit_acc_cb, &dst), 0);
  assert_int_equal(dst.n, 3);
  assert_int_equal(dst.rows[1].count, 2);
  assert_string_equal(dst.rows[1].detail, "detail 20");
  assert_int_equal(dst.rows[1].peer_uid, 1000);
  /* Append-only: an id at or below the newest is refused. */
  assert_int_equal(store_audit_import(copy, &src.rows[2], src.hashes[2]),
                   TOKEND_EEXIST);
  assert_int_equal(store_audit_import(copy, &src.rows[0], src.hashes[0]),
                   TOKEND_EEXIST);
  /* The chain goes on from the copied head. */
  make_event(&ev, "example.com", "Revoke", 40);
  assert_int_equal(store_audit_append(copy, &ev), 0);
  assert_int_equal(ev.id, 4);
  assert_int_equal(store_audit_verify(copy, 0, head, &check), 0);
  assert_int_equal(check.first_bad_id, 0);
  assert_int_equal(check.rows_checked, 4);
  /* A row without a hash is copied without one (and then breaks the
   * chain, as it did in the original). */
  ev.id = 9;
  assert_int_equal(store_audit_import(copy, &ev, NULL), 0);
  memset(&dst, 0, sizeof(dst));
  assert_int_equal(store_audit_load(copy, audit_acc_cb, &dst), 0);
  assert_int_equal(dst.n, 5);
  assert_int_equal(dst.rows[4].id, 9);
  assert_false(dst.has_hash[4]);
  assert_int_equal(store_audit_verify(copy, 0, head, &check), 0);
  assert_int_equal(check.first_bad_id, 9);
  /* Nor can a row go into a gap before the newest. */
  ev.id = 7;
  assert_int_equal(store_audit_import(copy, &ev, NULL), TOKEND_EEXIST);
  store_close(copy);
}

static void test_counts_load_and_import(void **state) {
  fixture_t *fx = *state;
  store_counts_t c;
  counts_acc_t acc = {0};

  assert_int_equal(store_verify_counts_add(fx->store, "example.com", 3, 1, 50),
                   0);
  assert_int_equal(store_verify_counts_add(fx->store, "example.com", 2, 0, 70),
                   0);
  assert_int_equal(store_verify_counts_add(fx->store, "", 0, 2, 60), 0);
  memset(&c, 0, sizeof(c));
  snprintf(c.domain, sizeof(c.domain), "other.org");
  c.valid = 1ULL << 40;
  c.invalid = 9;
  c.updated_at = 80;
  assert_int_equal(store_counts_import(fx->store, &c), 0);
  assert_int_equal(store_counts_load(fx->store, counts_acc_cb, &acc), 0);
  assert_int_equal(acc.n, 3);
  assert_string_equal(acc.rows[0].domain, "");
  assert_int_equal(acc.rows[0].invalid, 2);
  assert_string_equal(acc.rows[1].domain, "example.com");
  assert_int_equal(acc.rows[1].valid, 5);
  assert_int_equal(acc.rows[1].invalid, 1);
  assert_int_equal(acc.rows[1].updated_at, 70);
  assert_string_equal(acc.rows[2].domain, "other.org");
  assert_true(acc.rows[2].valid == 1ULL << 40);
  assert_int_equal(acc.rows[2].updated_at, 80);
  /* Set, not added: a domain with counters already is refused. */
  snprintf(c.domain, sizeof(c.domain), "example.com");
  assert_int_equal(store_counts_import(fx->store, &c), TOKEND_EEXIST);
}

/* After a commit the storage refused (for PostgreSQL: the session ended,
 * so a new connection, without the statements the first one had
 * prepared), imports work again. */
static void test_import_works_again_after_a_failed_commit(void **state) {
  fixture_t *fx = *state;
  store_token_t row, got;
  store_audit_t ev;

  make_token(&row, "example.com", "tok1", 1);
  row.seq = 10;
  make_event(&ev, "example.com", "Issue", 10);
  ev.id = 1;
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_token_import(fx->store, &row), 0);
  assert_int_equal(store_audit_import(fx->store, &ev, row.hash), 0);
  assert_int_equal(backend->fault(fx->dir, FAULT_WRITE), 0);
  assert_true(store_commit(fx->store) < 0);
  assert_int_equal(backend->fault(fx->dir, FAULT_NONE), 0);
  make_token(&row, "example.com", "tok2", 2);
  row.seq = 20;
  ev.id = 2;
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_token_import(fx->store, &row), 0);
  assert_int_equal(store_audit_import(fx->store, &ev, row.hash), 0);
  assert_int_equal(store_commit(fx->store), 0);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok2", &got), 0);
  assert_int_equal(got.seq, 20);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got),
                   TOKEND_ENOTFOUND);
}

/* A copy is one transaction: the fingerprint and every imported record
 * are undone together. */
static void test_imports_and_fingerprint_roll_back_together(void **state) {
  fixture_t *fx = *state;
  uint8_t fp[STORE_FINGERPRINT_BYTES], got[STORE_FINGERPRINT_BYTES];
  counts_acc_t acc = {0};
  store_counts_t c;
  store_token_t row;
  store_audit_t ev;
  int64_t n = -1, at;
  int present = -1, already;

  memset(fp, 0x42, sizeof(fp));
  memset(&c, 0, sizeof(c));
  make_token(&row, "example.com", "tok1", 1);
  row.seq = 5;
  make_event(&ev, "example.com", "Issue", 10);
  ev.id = 3;
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_fingerprint_set(fx->store, fp), 0);
  assert_int_equal(store_token_import(fx->store, &row), 0);
  assert_int_equal(store_admin_grant(fx->store, "example.com", "bob", 100,
                                     "root", &at, &already),
                   0);
  assert_int_equal(store_audit_import(fx->store, &ev, fp), 0);
  assert_int_equal(store_counts_import(fx->store, &c), 0);
  store_rollback(fx->store);
  reopen(fx);
  assert_int_equal(store_count_rows(fx->store, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(store_counts_load(fx->store, counts_acc_cb, &acc), 0);
  assert_int_equal(acc.n, 0);
  assert_int_equal(store_fingerprint_get(fx->store, got, &present), 0);
  assert_int_equal(present, 0);
}

/* ---- audit retention (issue 16: --audit-retention-days) ---- */

/* The rows older than the retention go (never the newest), the chain
 * verifies from the newest removed row on and goes on with new appends;
 * a second pass removes nothing. With PostgreSQL, a young row still
 * cannot be deleted behind tokend's back (the trigger holds). */
static void test_audit_prune_removes_old_rows_and_chain_holds(void **state) {
  fixture_t *fx = *state;
  const int64_t day = 86400000;
  store_audit_check_t check;
  int64_t removed = -1, upto = -1, now;
  struct timespec ts;
  store_audit_t ev;
  int i;

  clock_gettime(CLOCK_REALTIME, &ts);
  now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  for (i = 1; i <= 4; i++) {
    make_event(&ev, "example.com", "Issue", 1000 * i); /* 1970: old */
    assert_int_equal(store_audit_append(fx->store, &ev), 0);
  }
  make_event(&ev, "example.com", "Revoke", now);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_audit_prune(fx->store, 30 * day, now, &removed, &upto),
                   0);
  assert_int_equal(store_commit(fx->store), 0);
  assert_int_equal(removed, 4);
  assert_int_equal(upto, 4);
  assert_int_equal(store_audit_verify(fx->store, 0, NULL, &check), 0);
  assert_int_equal(check.first_bad_id, 0);
  assert_int_equal(check.rows_checked, 1);
  assert_int_equal(check.head_id, 5);
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_audit_prune(fx->store, 30 * day, now, &removed, &upto),
                   0);
  assert_int_equal(store_commit(fx->store), 0);
  assert_int_equal(removed, 0);
  reopen(fx);
  make_event(&ev, "example.com", "Issue", now);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  assert_int_equal(store_audit_verify(fx->store, 0, NULL, &check), 0);
  assert_int_equal(check.first_bad_id, 0);
  assert_int_equal(check.rows_checked, 2);
  if (strcmp(backend->name, "postgresql") == 0)
    assert_int_not_equal(
        pg_cluster_sql(&cluster, pg_db,
                       "DELETE FROM audit_events WHERE id = 5"),
        0);
}

/* ---- a pepper rotation (issue 16): meta and re-keys ---- */

static void test_meta_set_get_replace_and_survive_reopen(void **state) {
  fixture_t *fx = *state;
  uint8_t buf[16];
  size_t len = 0;

  assert_int_equal(
      store_meta_get(fx->store, "test_key", buf, sizeof(buf), &len),
      TOKEND_ENOTFOUND);
  assert_int_equal(
      store_meta_set(fx->store, "test_key", (const uint8_t *)"abc", 3), 0);
  assert_int_equal(store_meta_set(fx->store, "test_key",
                                  (const uint8_t *)"\x00\x01\x02\x03\x04", 5),
                   0);
  reopen(fx);
  assert_int_equal(
      store_meta_get(fx->store, "test_key", buf, sizeof(buf), &len), 0);
  assert_int_equal(len, 5);
  assert_memory_equal(buf, "\x00\x01\x02\x03\x04", 5);
  /* Too long for the caller's buffer: said, not cut. */
  assert_int_equal(store_meta_get(fx->store, "test_key", buf, 4, &len),
                   TOKEND_ESTORE);
  /* Inside a transaction, rolled back with it. */
  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(
      store_meta_set(fx->store, "test_other", (const uint8_t *)"x", 1), 0);
  store_rollback(fx->store);
  assert_int_equal(
      store_meta_get(fx->store, "test_other", buf, sizeof(buf), &len),
      TOKEND_ENOTFOUND);
}

/* A re-key gives the row the new hash and generation (and, with a change
 * feed, a change); a second one of the same hash, or one to a generation
 * the row already has, finds nothing. */
static void test_token_rekey_moves_hash_and_generation(void **state) {
  fixture_t *fx = *state;
  int feed = strcmp(backend->name, "postgresql") == 0;
  uint8_t fresh[TOKEND_HASH_BYTES], other[TOKEND_HASH_BYTES];
  store_token_t row, got;
  load_acc_t acc = {0};
  int64_t before;

  insert_token(fx, "example.com", "tok1", 1, &row); /* pepper_gen 1 */
  memset(fresh, 0x77, sizeof(fresh));
  memset(other, 0x78, sizeof(other));
  assert_int_equal(store_begin(fx->store), 0);
  before = store_change_rev(fx->store);
  assert_int_equal(store_token_rekey(fx->store, row.hash, fresh, 2, 5000), 0);
  if (feed)
    assert_true(store_change_rev(fx->store) > before);
  assert_int_equal(store_commit(fx->store), 0);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
  assert_memory_equal(got.hash, fresh, TOKEND_HASH_BYTES);
  assert_int_equal(got.pepper_gen, 2);
  assert_string_equal(got.id, "tok1");
  assert_int_equal(got.created_at, row.created_at);
  assert_int_equal(store_load(fx->store, load_cb, &acc), 0);
  assert_int_equal(acc.n, 1);

  assert_int_equal(store_begin(fx->store), 0);
  assert_int_equal(store_token_rekey(fx->store, row.hash, other, 2, 5001),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_token_rekey(fx->store, fresh, other, 2, 5001),
                   TOKEND_ENOTFOUND);
  store_rollback(fx->store);
  assert_int_equal(store_token_get(fx->store, "example.com", "tok1", &got), 0);
  assert_memory_equal(got.hash, fresh, TOKEND_HASH_BYTES);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_store, teardown)
#define T_EMPTY(f) cmocka_unit_test_setup_teardown(f, setup_empty, teardown)

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      T_EMPTY(test_open_missing_without_create_is_not_found),
      T_EMPTY(test_unknown_scheme_names_the_schemes),
      T(test_check_of_a_sound_store_passes),
      T(test_every_op_is_set),
      T(test_fresh_store_is_empty),
      T(test_insert_sets_growing_seq_and_reads_back),
      T(test_insert_duplicate_id_or_hash_is_eexist),
      T(test_insert_in_transaction_keeps_v6_fields),
      T(test_token_update_writes_the_mutable_fields),
      T(test_list_expiring_selects_the_window),
      T(test_policy_get_without_a_policy_is_not_found),
      T(test_policy_read_in_a_transaction_is_never_stale),
      T(test_token_get_other_domain_is_not_found),
      T(test_load_walks_oldest_first_and_stops_on_request),
      T(test_revoke_once_then_already),
      T(test_revoke_unknown_or_other_domain_is_not_found),
      T(test_touch_only_raises_last_used),
      T(test_list_pages_newest_first),
      T(test_admin_grant_get_load_and_already),
      T(test_admin_remove_revokes_their_tokens),
      T(test_admin_remove_not_an_admin_is_not_found),
      T(test_bulk_revoke_selects_and_unknown_id_changes_nothing),
      T(test_policy_set_get_and_active_count),
      T(test_policy_load_walks_every_policy),
      T(test_revoke_by_hash_finds_and_revokes),
      T(test_fingerprint_set_replace_and_survive_reopen),
      T(test_count_rows_counts_tokens_admins_and_audit),
      T(test_commit_is_durable_rollback_is_not),
      T(test_commit_failure_is_definite_and_recovers),
      T(test_commit_in_doubt_then_store_agrees_with_restart),
      T(test_read_only_refuses_writes_and_reads),
      T(test_lost_storage_is_reported_for_good),
      T(test_audit_append_chains_and_lists),
      T(test_audit_verify_wrong_anchor_is_reported),
      T(test_audit_without_key_is_refused),
      T(test_change_rev_numbers_every_change),
      T(test_snapshot_is_one_moment),
      T(test_snapshot_reads_one_state_while_writes_go_on),
      T(test_token_import_keeps_every_field),
      T(test_audit_import_keeps_ids_and_hashes),
      T(test_counts_load_and_import),
      T(test_imports_and_fingerprint_roll_back_together),
      T(test_import_works_again_after_a_failed_commit),
      T(test_audit_prune_removes_old_rows_and_chain_holds),
      T(test_meta_set_get_replace_and_survive_reopen),
      T(test_token_rekey_moves_hash_and_generation),
  };
  size_t i;
  int rc;
  const char *preload = getenv("LD_PRELOAD");

  for (i = 0; argc == 2 && i < sizeof(backends) / sizeof(backends[0]); i++)
    if (strcmp(argv[1], backends[i].name) == 0)
      backend = &backends[i];
  if (backend == NULL) {
    fprintf(stderr, "usage: %s BACKEND (this build has: %s)\n", argv[0],
            store_schemes());
    return 2;
  }
  /* Without the shim the fault tests would pass or fail for the wrong
   * reason: refuse to run rather than test nothing. */
  if (strcmp(backend->name, "sqlite") == 0 &&
      (preload == NULL || strstr(preload, "fault_inject") == NULL)) {
    fprintf(stderr,
            "%s: run through ctest, which preloads the fault "
            "injection shim (LD_PRELOAD=.../libit_fault_inject.so)\n",
            argv[0]);
    return 2;
  }
  cmocka_set_message_output(CM_OUTPUT_STDOUT);
  if (strcmp(backend->name, "postgresql") == 0) {
    if (!pg_cluster_available()) {
      printf("skipped: no PostgreSQL server binaries in %s "
             "(scripts/install-deps.sh installs postgresql-15)\n",
             PG_CLUSTER_BINDIR);
      return 77;
    }
    if (pg_cluster_start(&cluster) != 0)
      return 1;
  }
  rc = cmocka_run_group_tests_name(backend->name, tests, NULL, NULL);
  pg_cluster_stop(&cluster);
  return rc;
}
