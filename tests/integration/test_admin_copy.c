/* tokend-admin copy: an SQLite store copied into PostgreSQL (moving from
 * one host to many), against a throwaway cluster the test starts itself
 * (tests/lib/pg_cluster.h), one new database per test.
 *
 * tokend runs on SQLite and makes admins, tokens (some revoked), audit rows
 * and Verify counters; it stops; tokend-admin copies the file into an empty
 * PostgreSQL database; tokend started there with the same pepper answers
 * every token as before, lists the same rows and `tokenctl audit --verify`
 * passes. A second copy into the now full database is refused and changes
 * nothing; a missing source and a wrong pepper are clear errors that touch
 * nothing; a copy taken while tokend runs on the file works. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pg_cluster.h"
#include "tokend_client.h"
/* TOKEND_PEPPER_BYTES: the daemon's limits, not the client's. */
#include "tokend_limits.h"

#define DOMAIN_A "copy-a.example"
#define DOMAIN_B "copy-b.example"
#define N_TOKENS 6

static pg_cluster_t cluster;
static int n_databases;

typedef struct {
  th_tokend_t src; /* tokend on SQLite: the store copied */
  th_tokend_t dst; /* tokend on PostgreSQL, with src's pepper */
  char db[32];     /* the test's PostgreSQL database */
  char url[512];
  char from[TH_PATH_BYTES + 8];
  const char *dst_args[3];
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  char sql[64];

  *state = f;
  if (f == NULL || th_tokend_init(&f->src) != 0 || th_tokend_init(&f->dst) != 0)
    return -1;
  snprintf(f->db, sizeof(f->db), "copy_%d", ++n_databases);
  snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
  if (pg_cluster_sql(&cluster, "postgres", sql) != 0 ||
      pg_cluster_uri(&cluster, f->db, f->url, sizeof(f->url)) != 0)
    return -1;
  snprintf(f->from, sizeof(f->from), "sqlite:%s", f->src.db_path);
  /* One pepper for both: the one the SQLite tokend creates. */
  snprintf(f->dst.pepper_path, sizeof(f->dst.pepper_path), "%s",
           f->src.pepper_path);
  f->dst_args[0] = "--store";
  f->dst_args[1] = f->url;
  f->dst_args[2] = NULL;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  int rc = 0;

  if (f == NULL)
    return 0;
  if (f->src.pid != 0 && th_tokend_stop_clean(&f->src) != 0)
    rc = -1;
  if (f->dst.pid != 0 && th_tokend_stop_clean(&f->dst) != 0)
    rc = -1;
  th_tokend_destroy(&f->dst);
  th_tokend_destroy(&f->src);
  free(f);
  return rc;
}

/* The number in the first column of sql's first row, on the test's
 * database; -1 if it cannot be read. */
static long pg_number(const fixture_t *f, const char *sql) {
  char uri[256];
  PGconn *conn;
  PGresult *r;
  long n = -1;

  if (pg_cluster_uri(&cluster, f->db, uri, sizeof(uri)) != 0)
    return -1;
  conn = PQconnectdb(uri);
  r = PQexec(conn, sql);
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
      !PQgetisnull(r, 0, 0))
    n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
  else
    fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
  PQclear(r);
  PQfinish(conn);
  return n;
}

/* Tables in the test's database (0: tokend-admin created no schema). */
static long pg_tables(const fixture_t *f) {
  return pg_number(f, "SELECT count(*) FROM pg_catalog.pg_tables"
                      " WHERE schemaname = 'public'");
}

/* Runs tokend-admin copy --from f->from --to f->url, then the extra
 * arguments up to a NULL. */
static void run_copy(const fixture_t *f, th_run_result_t *r, ...) {
  const char *argv[16] = {TOKEND_ADMIN_BIN, "copy", "--from",
                          f->from,          "--to", f->url};
  const char *arg;
  size_t n = 6;
  va_list ap;

  va_start(ap, r);
  while ((arg = va_arg(ap, const char *)) != NULL && n < 15)
    argv[n++] = arg;
  va_end(ap);
  argv[n] = NULL;
  assert_int_equal(th_run(argv, NULL, NULL, 30000 * th_timeout_scale(), r), 0);
}

static void expect_in(const char *text, const char *want, const char *what) {
  if (strstr(text, want) == NULL)
    fail_msg("%s should say \"%s\"; said:\n%s", what, want, text);
}

/* A domain's tokens, revoked ones included (one page holds them all). */
static tokend_token_list_t *list_all(const th_tokend_t *t, const char *domain) {
  tokend_token_list_t *list = NULL;
  tokend_client_t *c = th_client_connect_ok(t);

  assert_int_equal(tokend_client_list(c, domain, 100, NULL, 1, &list), 0);
  tokend_client_close(c);
  return list;
}

static void expect_same_lists(const tokend_token_list_t *a,
                              const tokend_token_list_t *b) {
  size_t i;

  assert_int_equal(a->n_tokens, b->n_tokens);
  for (i = 0; i < a->n_tokens; i++) {
    const tokend_token_info_t *x = &a->tokens[i], *y = &b->tokens[i];

    assert_string_equal(x->id, y->id);
    assert_string_equal(x->domain, y->domain);
    assert_string_equal(x->label, y->label);
    assert_string_equal(x->hint, y->hint);
    assert_int_equal(x->created_at, y->created_at);
    assert_int_equal(x->expires_at, y->expires_at);
    assert_int_equal(x->last_used_at, y->last_used_at);
    assert_int_equal(x->revoked_at, y->revoked_at);
    assert_int_equal(x->status, y->status);
    assert_string_equal(x->created_by, y->created_by);
    assert_string_equal(x->revoked_by, y->revoked_by);
  }
}

/* DOMAIN_B's policy (set after its tokens, which it would not allow). */
static void policy_b(tokend_domain_policy_t *p) {
  memset(p, 0, sizeof(*p));
  p->max_lifetime_ms = 3600 * 1000;
  p->require_expiry = 1;
  p->n_allowed_scopes = 1;
  snprintf(p->allowed_scopes[0], sizeof(p->allowed_scopes[0]), "read");
  p->max_active_tokens = 7;
}

static void set_policy_ok(tokend_client_t *c) {
  tokend_domain_policy_t p;

  policy_b(&p);
  assert_int_equal(tokend_client_set_domain_policy(c, DOMAIN_B, &p), 0);
}

/* t answers DOMAIN_B's policy as set_policy_ok set it, and DOMAIN_A none. */
static void expect_policy(const th_tokend_t *t) {
  tokend_domain_policy_t want, got;
  tokend_client_t *c = th_client_connect_ok(t);

  policy_b(&want);
  assert_int_equal(tokend_client_get_domain_policy(c, DOMAIN_B, &got), 0);
  assert_int_equal(got.max_lifetime_ms, want.max_lifetime_ms);
  assert_int_equal(got.require_expiry, want.require_expiry);
  assert_int_equal(got.n_allowed_scopes, 1);
  assert_string_equal(got.allowed_scopes[0], "read");
  assert_int_equal(got.max_active_tokens, want.max_active_tokens);
  assert_true(got.updated_at > 0);
  assert_true(got.updated_by[0] != '\0');
  assert_int_equal(tokend_client_get_domain_policy(c, DOMAIN_A, &got), 0);
  assert_int_equal(got.max_lifetime_ms, 0);
  assert_int_equal(got.require_expiry, 0);
  assert_int_equal(got.n_allowed_scopes, 0);
  assert_int_equal(got.max_active_tokens, 0);
  tokend_client_close(c);
}

typedef struct {
  tokend_issued_t issued[N_TOKENS];
  tokend_verify_reason_t reason[N_TOKENS];
} made_t;

/* On the SQLite tokend: two admins granted and one of them removed,
 * N_TOKENS tokens in two domains, two revoked, every token verified (and
 * an unknown one: counters of both kinds). */
static void make_records(fixture_t *f, made_t *m) {
  tokend_client_t *c;
  uint32_t n_revoked;
  int64_t at;
  int already, i;

  assert_int_equal(th_tokend_start(&f->src, NULL), 0);
  c = th_client_connect_ok(&f->src);
  assert_int_equal(
      tokend_client_grant_admin(c, DOMAIN_A, "bob@corp", NULL, NULL), 0);
  assert_int_equal(
      tokend_client_grant_admin(c, DOMAIN_A, "carol@corp", NULL, NULL), 0);
  assert_int_equal(
      tokend_client_revoke_admin(c, DOMAIN_A, "carol@corp", 0, &n_revoked), 0);
  for (i = 0; i < N_TOKENS; i++) {
    th_client_issue_ok(c, i % 2 ? DOMAIN_B : DOMAIN_A, i < 3 ? "old" : "new", 0,
                       &m->issued[i]);
    m->reason[i] = TOKEND_VERIFY_VALID;
  }
  for (i = 1; i <= 2; i++) {
    assert_int_equal(tokend_client_revoke(c, m->issued[i].info.domain,
                                          m->issued[i].info.id, &at, &already),
                     0);
    m->reason[i] = TOKEND_VERIFY_REVOKED;
  }
  for (i = 0; i < N_TOKENS; i++)
    th_expect_verify(c, m->issued[i].token, m->reason[i] == TOKEND_VERIFY_VALID,
                     m->reason[i]);
  set_policy_ok(c);
  th_expect_verify(c, "tk_thisisnotatokenatall0000000000000000000", 0,
                   TOKEND_VERIFY_MALFORMED);
  tokend_client_close(c);
  /* The stop writes the counters and last-use times. */
  th_tokend_stop_ok(&f->src);
  assert_true(
      th_db_count(f->src.db_path, "SELECT count(*) FROM verify_counts") >= 2);
}

static void test_copy_into_postgresql_keeps_every_token(void **state) {
  fixture_t *f = *state;
  tokend_token_list_t *src_a, *src_b, *dst_a, *dst_b;
  tokend_admin_list_t *admins = NULL;
  long tokens, audit, counts, sums;
  size_t before_len, after_len;
  char *before, *after;
  char back[TH_PATH_BYTES + 16];
  tokend_issued_t is;
  tokend_client_t *c;
  th_run_result_t r;
  made_t m;
  int i;

  make_records(f, &m);
  before = th_read_file(f->src.db_path, &before_len);
  assert_non_null(before);

  run_copy(f, &r, "--pepper-file", f->src.pepper_path, NULL);
  th_expect_exit(&r, 0, "tokend-admin copy");
  expect_in(r.out,
            "copied in one transaction: 6 tokens (2 revoked), 1 domain "
            "admins",
            "tokend-admin copy");
  expect_in(r.out, "checked: the target holds 6 tokens (2 revoked)",
            "tokend-admin copy");
  expect_in(r.out, "1 domain policies", "tokend-admin copy");
  expect_in(r.out, "checked: the audit chain verifies with the pepper",
            "tokend-admin copy");
  th_run_result_free(&r);
  assert_int_equal(pg_number(f, "SELECT count(*) FROM domain_policies"), 1);

  /* The source was read, never written. */
  after = th_read_file(f->src.db_path, &after_len);
  assert_non_null(after);
  assert_int_equal(after_len, before_len);
  assert_memory_equal(after, before, before_len);
  free(before);
  free(after);
  /* Counters as they were, before any tokend runs on the copy. */
  assert_int_equal(pg_number(f, "SELECT sum(valid + invalid) FROM"
                                " verify_counts"),
                   th_db_count(f->src.db_path, "SELECT sum(valid + invalid)"
                                               " FROM verify_counts"));
  assert_int_equal(
      pg_number(f, "SELECT count(*) FROM audit_events"),
      th_db_count(f->src.db_path, "SELECT count(*) FROM audit_events"));

  /* What a restart of the original shows... */
  assert_int_equal(th_tokend_start(&f->src, NULL), 0);
  src_a = list_all(&f->src, DOMAIN_A);
  src_b = list_all(&f->src, DOMAIN_B);
  th_tokend_stop_ok(&f->src);
  /* ...is what tokend on PostgreSQL shows, with the same pepper. */
  assert_int_equal(th_tokend_start(&f->dst, f->dst_args), 0);
  dst_a = list_all(&f->dst, DOMAIN_A);
  dst_b = list_all(&f->dst, DOMAIN_B);
  expect_same_lists(src_a, dst_a);
  expect_same_lists(src_b, dst_b);
  expect_policy(&f->dst);
  tokend_token_list_free(dst_a);
  c = th_client_connect_ok(&f->dst);
  for (i = 0; i < N_TOKENS; i++)
    th_expect_verify(c, m.issued[i].token, m.reason[i] == TOKEND_VERIFY_VALID,
                     m.reason[i]);
  assert_int_equal(tokend_client_list_admins(c, DOMAIN_A, &admins), 0);
  assert_int_equal(admins->n_admins, 1);
  assert_string_equal(admins->admins[0].user, "bob@corp");
  tokend_admin_list_free(admins);
  /* A new token there is numbered after the copied ones: it lists first. */
  th_client_issue_ok(c, DOMAIN_A, "after the copy", 0, &is);
  tokend_client_close(c);
  dst_a = list_all(&f->dst, DOMAIN_A);
  assert_int_equal(dst_a->n_tokens, src_a->n_tokens + 1);
  assert_string_equal(dst_a->tokens[0].id, is.info.id);
  assert_string_equal(dst_a->tokens[1].id, src_a->tokens[0].id);
  tokend_client_wipe(&is);
  tokend_token_list_free(src_a);
  tokend_token_list_free(src_b);
  tokend_token_list_free(dst_a);
  tokend_token_list_free(dst_b);
  th_tokenctl(&f->dst, NULL, &r, "audit", "--verify", NULL);
  th_expect_exit(&r, 0, "tokenctl audit --verify on the copy");
  expect_in(r.out, "audit log OK", "tokenctl audit --verify");
  th_run_result_free(&r);
  th_tokend_stop_ok(&f->dst);

  /* A second copy into the now full database: refused, nothing changed. */
  tokens = pg_number(f, "SELECT count(*) FROM tokens");
  audit = pg_number(f, "SELECT count(*) FROM audit_events");
  counts = pg_number(f, "SELECT count(*) FROM verify_counts");
  sums = pg_number(f, "SELECT sum(valid + invalid) FROM verify_counts");
  assert_int_equal(tokens, N_TOKENS + 1);
  run_copy(f, &r, "--pepper-file", f->src.pepper_path, NULL);
  th_expect_exit(&r, 1, "a second tokend-admin copy");
  expect_in(r.err, "is not empty", "a second tokend-admin copy");
  expect_in(r.err, "Nothing was changed", "a second tokend-admin copy");
  th_run_result_free(&r);
  assert_int_equal(pg_number(f, "SELECT count(*) FROM tokens"), tokens);
  assert_int_equal(pg_number(f, "SELECT count(*) FROM audit_events"), audit);
  assert_int_equal(pg_number(f, "SELECT count(*) FROM verify_counts"), counts);
  assert_int_equal(
      pg_number(f, "SELECT sum(valid + invalid) FROM verify_counts"), sums);

  /* And back: the tool is backend-neutral, PostgreSQL into a new SQLite
   * file takes the same path. */
  snprintf(back, sizeof(back), "sqlite:%s/back.db", f->src.dir);
  {
    const char *argv[] = {TOKEND_ADMIN_BIN,
                          "copy",
                          "--from",
                          f->url,
                          "--to",
                          back,
                          "--pepper-file",
                          f->src.pepper_path,
                          NULL};

    assert_int_equal(th_run(argv, NULL, NULL, 30000 * th_timeout_scale(), &r),
                     0);
  }
  th_expect_exit(&r, 0, "tokend-admin copy back into SQLite");
  expect_in(r.out, "copied in one transaction: 7 tokens (2 revoked)",
            "tokend-admin copy back into SQLite");
  expect_in(r.out, "checked: the audit chain verifies with the pepper",
            "tokend-admin copy back into SQLite");
  th_run_result_free(&r);
  for (i = 0; i < N_TOKENS; i++)
    tokend_client_wipe(&m.issued[i]);
}

/* A tokend already running on the (empty) target learns of every copied
 * token through the change feed, without a restart: the import appends
 * changes as any write does. */
static void test_copy_reaches_a_tokend_running_on_the_target(void **state) {
  fixture_t *f = *state;
  tokend_verify_result_t vr;
  tokend_client_t *c;
  th_run_result_t r;
  made_t m;
  int i, tries;

  make_records(f, &m); /* and stops the SQLite tokend */
  assert_int_equal(th_tokend_start(&f->dst, f->dst_args), 0);
  c = th_client_connect_ok(&f->dst);
  th_expect_verify(c, m.issued[0].token, 0, TOKEND_VERIFY_UNKNOWN);
  run_copy(f, &r, NULL);
  th_expect_exit(&r, 0, "tokend-admin copy");
  th_run_result_free(&r);
  /* The copy does not wait for the hosts: its notification wakes them.
   * Wait for the condition (each try a round trip), at most 10 s. */
  for (i = 0; i < N_TOKENS; i++) {
    for (tries = 0; tries < 1000; tries++) {
      assert_int_equal(tokend_client_verify(c, m.issued[i].token, &vr), 0);
      if (vr.reason == m.reason[i])
        break;
      usleep(10 * 1000);
    }
    assert_int_equal(vr.reason, m.reason[i]);
  }
  tokend_client_close(c);
}

static void test_copy_from_a_missing_source_is_a_clear_error(void **state) {
  fixture_t *f = *state;
  th_run_result_t r;

  /* No tokend ever ran: there is no database file. */
  run_copy(f, &r, NULL);
  th_expect_exit(&r, 1, "tokend-admin copy from a missing source");
  expect_in(r.err, "does not exist", "tokend-admin copy from a missing source");
  expect_in(r.err, f->src.db_path, "tokend-admin copy from a missing source");
  th_run_result_free(&r);
  assert_int_equal(th_path_exists(f->src.db_path), 0);
  assert_int_equal(pg_tables(f), 0);
}

/* A target whose only record is a domain policy is not empty: the copy
 * would replace the policy found there. (SetDomainPolicy is audited, so
 * the policy is put there by hand: an audit row alone refuses the copy.) */
static void test_copy_into_a_target_with_a_policy_is_refused(void **state) {
  fixture_t *f = *state;
  th_run_result_t r;
  made_t m;
  int i;

  make_records(f, &m); /* and stops the SQLite tokend */
  /* tokend makes the target's schema. */
  assert_int_equal(th_tokend_start(&f->dst, f->dst_args), 0);
  th_tokend_stop_ok(&f->dst);
  assert_int_equal(
      pg_cluster_sql(&cluster, f->db,
                     "INSERT INTO domain_policies (domain, max_lifetime_ms,"
                     " require_expiry, allowed_scopes, max_active_tokens,"
                     " updated_at, updated_by) VALUES ('" DOMAIN_B "', 0,"
                     " false, '', 3, 1, 'root')"),
      0);
  assert_int_equal(pg_number(f, "SELECT count(*) FROM audit_events"), 0);
  assert_int_equal(pg_number(f, "SELECT count(*) FROM tokens"), 0);
  run_copy(f, &r, NULL);
  th_expect_exit(&r, 1, "tokend-admin copy into a target with a policy");
  expect_in(r.err, "1 domain policies", "tokend-admin copy");
  expect_in(r.err, "Nothing was changed", "tokend-admin copy");
  th_run_result_free(&r);
  assert_int_equal(pg_number(f, "SELECT count(*) FROM tokens"), 0);
  assert_int_equal(pg_number(f, "SELECT max_active_tokens::int8 FROM"
                                " domain_policies"),
                   3);
  for (i = 0; i < N_TOKENS; i++)
    tokend_client_wipe(&m.issued[i]);
}

static void test_copy_with_another_pepper_is_refused(void **state) {
  fixture_t *f = *state;
  uint8_t other[TOKEND_PEPPER_BYTES];
  char other_path[TH_PATH_BYTES + 8];
  tokend_issued_t is;
  tokend_client_t *c;
  th_run_result_t r;

  assert_int_equal(th_tokend_start(&f->src, NULL), 0);
  c = th_client_connect_ok(&f->src);
  th_client_issue_ok(c, DOMAIN_A, "one", 0, &is);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->src);
  memset(other, 0x77, sizeof(other));
  snprintf(other_path, sizeof(other_path), "%s/other-pepper", f->src.dir);
  th_write_file_ok(other_path, other, sizeof(other), 0600);
  run_copy(f, &r, "--pepper-file", other_path, NULL);
  th_expect_exit(&r, 1, "tokend-admin copy with another pepper");
  expect_in(r.err, "is not the pepper of the source",
            "tokend-admin copy with another pepper");
  th_run_result_free(&r);
  assert_int_equal(pg_tables(f), 0);
  tokend_client_wipe(&is);
}

/* A log from before the chain (schema 3 made its rows; tokend chains them
 * at its first start with schema 4) is refused, saying what to do; once
 * tokend has run on the file, the copy goes through. */
static void test_copy_of_an_unchained_log_is_refused(void **state) {
  fixture_t *f = *state;
  tokend_issued_t is;
  tokend_client_t *c;
  th_run_result_t r;
  sqlite3 *db = NULL;
  char *msg = NULL;

  assert_int_equal(th_tokend_start(&f->src, NULL), 0);
  c = th_client_connect_ok(&f->src);
  th_client_issue_ok(c, DOMAIN_A, "one", 0, &is);
  tokend_client_wipe(&is);
  th_client_issue_ok(c, DOMAIN_A, "two", 0, &is);
  tokend_client_wipe(&is);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->src);
  /* Row 1 as schema 3 left it: no hash, not yet chained. */
  assert_int_equal(
      sqlite3_open_v2(f->src.db_path, &db, SQLITE_OPEN_READWRITE, NULL),
      SQLITE_OK);
  if (sqlite3_exec(db,
                   "DROP TRIGGER audit_events_no_update;"
                   "UPDATE audit_events SET hash = NULL WHERE id = 1;"
                   "UPDATE audit_chain SET legacy_upto = 1, chained = 0;"
                   "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON"
                   " audit_events BEGIN SELECT RAISE(ABORT, 'the audit log"
                   " is append-only'); END;",
                   NULL, NULL, &msg) != SQLITE_OK)
    fail_msg("sqlite3: %s", msg);
  sqlite3_close(db);

  run_copy(f, &r, "--pepper-file", f->src.pepper_path, NULL);
  th_expect_exit(&r, 1, "tokend-admin copy of an unchained log");
  expect_in(r.err, "audit row 1 of the source has no chain hash",
            "tokend-admin copy of an unchained log");
  expect_in(r.err, "start tokend once on the source",
            "tokend-admin copy of an unchained log");
  th_run_result_free(&r);
  assert_int_equal(pg_number(f, "SELECT count(*) FROM tokens"), 0);
  assert_int_equal(pg_number(f, "SELECT count(*) FROM audit_events"), 0);

  /* tokend chains it at its start. */
  assert_int_equal(th_tokend_start(&f->src, NULL), 0);
  th_tokend_stop_ok(&f->src);
  run_copy(f, &r, "--pepper-file", f->src.pepper_path, NULL);
  th_expect_exit(&r, 0, "tokend-admin copy once tokend chained the log");
  expect_in(r.out, "copied in one transaction: 2 tokens",
            "tokend-admin copy once tokend chained the log");
  expect_in(r.out, "checked: the audit chain verifies with the pepper",
            "tokend-admin copy once tokend chained the log");
  th_run_result_free(&r);
}

/* The source is read in one snapshot while tokend goes on writing to it;
 * --check-only first writes nothing. */
static void test_copy_while_tokend_runs_on_the_source(void **state) {
  fixture_t *f = *state;
  tokend_issued_t is[3];
  tokend_client_t *c;
  th_run_result_t r;
  int i;

  assert_int_equal(th_tokend_start(&f->src, NULL), 0);
  c = th_client_connect_ok(&f->src);
  th_client_issue_ok(c, DOMAIN_A, "one", 0, &is[0]);
  th_client_issue_ok(c, DOMAIN_A, "two", 0, &is[1]);
  run_copy(f, &r, "--check-only", NULL);
  th_expect_exit(&r, 0, "tokend-admin copy --check-only");
  expect_in(r.out, "would copy 2 tokens", "tokend-admin copy --check-only");
  th_run_result_free(&r);
  assert_int_equal(pg_tables(f), 0);
  run_copy(f, &r, "--pepper-file", f->src.pepper_path, NULL);
  th_expect_exit(&r, 0, "tokend-admin copy under a running tokend");
  expect_in(r.out, "copied in one transaction: 2 tokens",
            "tokend-admin copy under a running tokend");
  th_run_result_free(&r);
  /* The original goes on. */
  th_client_issue_ok(c, DOMAIN_A, "three", 0, &is[2]);
  th_expect_verify(c, is[2].token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->src);
  assert_int_equal(pg_number(f, "SELECT count(*) FROM tokens"), 2);
  for (i = 0; i < 3; i++)
    tokend_client_wipe(&is[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_copy_into_postgresql_keeps_every_token, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_copy_from_a_missing_source_is_a_clear_error, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_copy_reaches_a_tokend_running_on_the_target, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_copy_into_a_target_with_a_policy_is_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_copy_with_another_pepper_is_refused,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_copy_while_tokend_runs_on_the_source,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_copy_of_an_unchained_log_is_refused,
                                      setup, teardown),
  };
  int rc;

  if (!pg_cluster_available()) {
    printf("skipped: no PostgreSQL server binaries in %s "
           "(scripts/install-deps.sh installs postgresql-15)\n",
           PG_CLUSTER_BINDIR);
    return 77;
  }
  if (pg_cluster_start(&cluster) != 0)
    return 1;
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  pg_cluster_stop(&cluster);
  return rc;
}
