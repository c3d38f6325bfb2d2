/* tokend on PostgreSQL (--store postgresql://...): a real tokend against a
 * throwaway cluster the test starts itself (tests/lib/pg_cluster.h), one
 * new database per test. Issue, Verify, List and Revoke, a restart that
 * keeps every token, a wrong pepper refused, and PostgreSQL stopped and
 * started again under a running tokend: writes answer UNAVAILABLE while
 * Verify answers from memory, and writes work again without a restart.
 * And two hosts: a Revoke on one is seen by a caching client of the other
 * (issue 15). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pg_cluster.h"
#include "tokend_client.h"
/* TOKEND_PEPPER_BYTES: the daemon's limits, not the client's. */
#include "tokend_limits.h"

#define DOMAIN "pg.example"
/* Trust authentication ignores it: it is in the URI only to prove that it
 * never reaches tokend's log. */
#define PASSWORD "not-a-secret-3141"

static pg_cluster_t cluster;
static int n_databases;

typedef struct {
  th_fixture_t *th; /* the harness's fixture: tokend, its directory */
  char url[512];
  const char *args[3];
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  void *th = NULL;
  char db[32], sql[64];

  *state = f;
  if (f == NULL || th_fixture_setup(&th) != 0)
    return -1;
  f->th = th;
  snprintf(db, sizeof(db), "it_%d", ++n_databases);
  snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
  if (pg_cluster_sql(&cluster, "postgres", sql) != 0)
    return -1;
  snprintf(f->url, sizeof(f->url),
           "postgresql://postgres:" PASSWORD "@/%s?host=%s", db, cluster.dir);
  f->args[0] = "--store";
  f->args[1] = f->url;
  f->args[2] = NULL;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  void *th;

  if (f == NULL)
    return 0;
  /* A test that failed with the cluster stopped leaves it running for the
   * next. */
  if (!cluster.running)
    pg_cluster_restart(&cluster);
  th = f->th;
  if (th != NULL)
    th_fixture_teardown(&th);
  free(f);
  return 0;
}

static void start_ok(fixture_t *f) {
  assert_int_equal(th_tokend_start(&f->th->tokend, f->args), 0);
}

static const tokend_token_info_t *find(const tokend_token_list_t *l,
                                       const char *id) {
  size_t i;

  for (i = 0; i < l->n_tokens; i++)
    if (strcmp(l->tokens[i].id, id) == 0)
      return &l->tokens[i];
  fail_msg("token %s is not in the list", id);
  return NULL;
}

static void test_pg_issue_verify_list_revoke_then_restart(void **state) {
  fixture_t *f = *state;
  tokend_issued_t kept, revoked;
  tokend_token_list_t *list = NULL;
  tokend_client_t *c;
  int64_t revoked_at = 0;
  char *log;

  start_ok(f);
  c = th_client_connect_ok(&f->th->tokend);
  th_client_issue_ok(c, DOMAIN, "kept", 0, &kept);
  th_client_issue_ok(c, DOMAIN, "revoked", 0, &revoked);
  th_expect_verify(c, kept.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, revoked.token, 1, TOKEND_VERIFY_VALID);
  assert_int_equal(tokend_client_list(c, DOMAIN, 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 2);
  tokend_token_list_free(list);
  assert_int_equal(
      tokend_client_revoke(c, DOMAIN, revoked.info.id, &revoked_at, NULL), 0);
  th_expect_verify(c, revoked.token, 0, TOKEND_VERIFY_REVOKED);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->th->tokend);

  /* What PostgreSQL kept is what the new tokend loads. */
  start_ok(f);
  c = th_client_connect_ok(&f->th->tokend);
  th_expect_verify(c, kept.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, revoked.token, 0, TOKEND_VERIFY_REVOKED);
  assert_int_equal(tokend_client_list(c, DOMAIN, 0, NULL, 0, &list), 0);
  assert_int_equal(list->n_tokens, 1);
  assert_string_equal(list->tokens[0].id, kept.info.id);
  tokend_token_list_free(list);
  assert_int_equal(tokend_client_list(c, DOMAIN, 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 2);
  assert_int_equal(find(list, kept.info.id)->status, TOKEND_TOKEN_ACTIVE);
  assert_int_equal(find(list, revoked.info.id)->status, TOKEND_TOKEN_REVOKED);
  assert_int_equal(find(list, revoked.info.id)->revoked_at, revoked_at);
  tokend_token_list_free(list);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->th->tokend);

  /* The log names the store without the URI's password. */
  log = th_read_file(f->th->tokend.log_path, NULL);
  assert_non_null(log);
  if (strstr(log, PASSWORD) != NULL ||
      strstr(log, "postgresql://postgres@") == NULL)
    fail_msg("the log must name the store without its password:\n%s", log);
  free(log);
}

static void test_pg_wrong_pepper_refuses_start(void **state) {
  fixture_t *f = *state;
  uint8_t other[TOKEND_PEPPER_BYTES];
  tokend_issued_t is;
  tokend_client_t *c;
  int status;
  char *log;

  start_ok(f);
  c = th_client_connect_ok(&f->th->tokend);
  th_client_issue_ok(c, DOMAIN, "one", 0, &is);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->th->tokend);

  memset(other, 0x77, sizeof(other));
  th_write_file_ok(f->th->tokend.pepper_path, other, sizeof(other), 0600);
  assert_int_equal(th_tokend_spawn(&f->th->tokend, f->args), 0);
  status = th_tokend_wait_exit(&f->th->tokend, TH_START_TIMEOUT_MS);
  log = th_read_file(f->th->tokend.log_path, NULL);
  assert_non_null(log);
  if (status <= 0 || status >= 128 || strstr(log, "pepper") == NULL)
    fail_msg("tokend: exit status %d, want a refusal naming the pepper; "
             "log:\n%s",
             status, log);
  free(log);
}

/* The audit log is append-only in the database itself: even its owner's
 * UPDATE, DELETE, TRUNCATE and an insert over an existing id are refused
 * (pg_cluster_sql says why on stderr). */
static void test_pg_audit_log_is_append_only(void **state) {
  fixture_t *f = *state;
  tokend_issued_t is;
  tokend_client_t *c;
  char db[32];

  start_ok(f);
  c = th_client_connect_ok(&f->th->tokend);
  th_client_issue_ok(c, DOMAIN, "audited", 0, &is);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->th->tokend);

  snprintf(db, sizeof(db), "it_%d", n_databases);
  assert_int_equal(
      pg_cluster_sql(&cluster, db, "UPDATE audit_events SET detail = 'x'"), -1);
  assert_int_equal(pg_cluster_sql(&cluster, db, "DELETE FROM audit_events"),
                   -1);
  assert_int_equal(pg_cluster_sql(&cluster, db, "TRUNCATE audit_events"), -1);
  assert_int_equal(pg_cluster_sql(&cluster, db,
                                  "INSERT INTO audit_events SELECT * FROM"
                                  " audit_events WHERE id = 1"),
                   -1);
  /* The chain still verifies: nothing was changed. */
  start_ok(f);
  c = th_client_connect_ok(&f->th->tokend);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->th->tokend);
}

/* --check-db on PostgreSQL: the schema's version and its tables (the data's
 * integrity is PostgreSQL's own); a missing table fails it. */
static void test_pg_check_db_finds_a_missing_table(void **state) {
  fixture_t *f = *state;
  const char *argv[] = {TOKEND_BIN, "--check-db", "--store", f->url, NULL};
  th_run_result_t r;
  char db[32];

  start_ok(f);
  th_tokend_stop_ok(&f->th->tokend);
  assert_int_equal(th_run(argv, NULL, NULL, TH_START_TIMEOUT_MS, &r), 0);
  th_expect_exit(&r, 0, "tokend --check-db");
  assert_non_null(strstr(r.out, "schema version 5"));
  assert_null(strstr(r.out, PASSWORD));
  th_run_result_free(&r);

  snprintf(db, sizeof(db), "it_%d", n_databases);
  assert_int_equal(pg_cluster_sql(&cluster, db, "DROP TABLE verify_counts"), 0);
  assert_int_equal(th_run(argv, NULL, NULL, TH_START_TIMEOUT_MS, &r), 0);
  th_expect_exit(&r, 1, "tokend --check-db without verify_counts");
  assert_non_null(strstr(r.out, "table verify_counts is missing"));
  th_run_result_free(&r);
}

/* The issue's "PostgreSQL stopped" case: writes UNAVAILABLE, Verify from
 * memory; PostgreSQL back: writes work, with the same tokend. */
static void test_pg_stopped_then_started_under_a_running_tokend(void **state) {
  fixture_t *f = *state;
  tokend_issue_params_t p = {DOMAIN, "while down", 0, NULL, 0, NULL};
  tokend_issued_t before, during, after;
  tokend_client_t *c;
  int rc;

  start_ok(f);
  c = th_client_connect_ok(&f->th->tokend);
  th_client_issue_ok(c, DOMAIN, "before", 0, &before);

  assert_int_equal(pg_cluster_pause(&cluster), 0);
  rc = tokend_client_issue(c, &p, &during);
  if (rc == 0 || tokend_client_grpc_status(c) != TOKEND_GRPC_UNAVAILABLE)
    fail_msg("Issue with PostgreSQL stopped: %d, gRPC status %d (%s); want "
             "UNAVAILABLE",
             rc, tokend_client_grpc_status(c), tokend_client_errmsg(c));
  rc = tokend_client_revoke(c, DOMAIN, before.info.id, NULL, NULL);
  if (rc == 0 || tokend_client_grpc_status(c) != TOKEND_GRPC_UNAVAILABLE)
    fail_msg("Revoke with PostgreSQL stopped: %d, gRPC status %d (%s); want "
             "UNAVAILABLE",
             rc, tokend_client_grpc_status(c), tokend_client_errmsg(c));
  th_expect_verify(c, before.token, 1, TOKEND_VERIFY_VALID);

  assert_int_equal(pg_cluster_restart(&cluster), 0);
  th_client_issue_ok(c, DOMAIN, "after", 0, &after);
  th_expect_verify(c, after.token, 1, TOKEND_VERIFY_VALID);
  assert_int_equal(tokend_client_revoke(c, DOMAIN, before.info.id, NULL, NULL),
                   0);
  th_expect_verify(c, before.token, 0, TOKEND_VERIFY_REVOKED);

  /* Stopped and started again with no write in between: the first write
   * finds its idle connection ended, and makes a new one. */
  assert_int_equal(pg_cluster_pause(&cluster), 0);
  th_expect_verify(c, after.token, 1, TOKEND_VERIFY_VALID);
  assert_int_equal(pg_cluster_restart(&cluster), 0);
  assert_int_equal(tokend_client_revoke(c, DOMAIN, after.info.id, NULL, NULL),
                   0);
  th_expect_verify(c, after.token, 0, TOKEND_VERIFY_REVOKED);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->th->tokend);
}

/* Lines of s holding needle. */
static int count_lines(const char *s, const char *needle) {
  int n = 0;

  while ((s = strstr(s, needle)) != NULL) {
    n++;
    s += strlen(needle);
  }
  return n;
}

/* An idle host on a shared store reports (its heartbeat) about once per
 * quarter lease, no more: with a 400 ms lease, about 15 times in 1.5 s.
 * (A follower whose report and read of the feed called each other
 * reported thousands of times and kept PostgreSQL busy.) The bound is on
 * work done, ten times what an idle host needs, not on time. */
static void test_pg_idle_host_stays_idle(void **state) {
  fixture_t *f = *state;
  const char *args[] = {"--store",     f->url,  "--lease-ms", "400",
                        "--log-level", "debug", NULL};
  const char *needle = "store: change feed: reported revision";
  int before, after;
  char *log;

  assert_int_equal(th_tokend_start(&f->th->tokend, args), 0);
  log = th_read_file(f->th->tokend.log_path, NULL);
  assert_non_null(log);
  before = count_lines(log, needle);
  free(log);
  usleep(1500 * 1000);
  log = th_read_file(f->th->tokend.log_path, NULL);
  assert_non_null(log);
  after = count_lines(log, needle);
  free(log);
  if (after - before > 150)
    fail_msg("an idle tokend reported %d times in 1.5 s", after - before);
  /* And it does report: the heartbeat keeps it live. */
  assert_true(after - before >= 1);
  th_tokend_stop_ok(&f->th->tokend);
}

/* issue 15: a Revoke on one host is seen by a cached Verify on another
 * the moment it returns. tokend answers Revoke once every live host has
 * applied it from the change feed, and applying a revocation bumps that
 * host's revocation epoch, which the other host's caching client reads. */
static void test_pg_revoke_on_one_host_seen_by_cache_on_another(void **state) {
  fixture_t *f = *state;
  static const char *const ids[2] = {"host-a", "host-b"};
  const char *args[2][5];
  th_tokend_t other;
  tokend_client_t *a, *b;
  tokend_issued_t is;
  tokend_propagation_t prop;
  int i;

  for (i = 0; i < 2; i++) {
    args[i][0] = "--store";
    args[i][1] = f->url;
    args[i][2] = "--host-id";
    args[i][3] = ids[i];
    args[i][4] = NULL;
  }
  assert_int_equal(th_tokend_start(&f->th->tokend, args[0]), 0);
  assert_int_equal(th_tokend_init(&other), 0);
  /* The same tokens need the same pepper. */
  memcpy(other.pepper_path, f->th->tokend.pepper_path,
         sizeof(other.pepper_path));
  other.no_create_db = 1;
  assert_int_equal(th_tokend_start(&other, args[1]), 0);
  a = th_client_connect_ok(&f->th->tokend);
  b = th_client_connect_ok(&other);
  assert_int_equal(tokend_client_cache_enable(b, 64), 0);
  th_client_issue_ok(a, DOMAIN, "two-hosts", 0, &is);
  /* Wait for host b to know the token: each try is a round trip (invalid
   * answers are not cached), at most about 10 s. */
  for (i = 0; i < 100000; i++) {
    tokend_verify_result_t r;

    assert_int_equal(tokend_client_verify(b, is.token, &r), 0);
    if (r.valid)
      break;
  }
  th_expect_verify(b, is.token, 1, TOKEND_VERIFY_VALID);
  {
    tokend_cache_stats_t s;

    tokend_client_cache_stats(b, &s);
    assert_true(s.hits >= 1);
  }
  assert_int_equal(tokend_client_revoke(a, DOMAIN, is.info.id, NULL, NULL), 0);
  /* Answered once b applied it (nothing pending): b's epoch moved. */
  assert_int_equal(tokend_client_last_propagation(a, &prop), 1);
  assert_int_equal(prop.hosts_pending, 0);
  th_expect_verify(b, is.token, 0, TOKEND_VERIFY_REVOKED);
  tokend_client_close(b);
  tokend_client_close(a);
  th_tokend_stop_ok(&other);
  th_tokend_destroy(&other);
  th_tokend_stop_ok(&f->th->tokend);
  tokend_client_wipe(&is);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_pg_issue_verify_list_revoke_then_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pg_wrong_pepper_refuses_start, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_pg_audit_log_is_append_only, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_pg_check_db_finds_a_missing_table,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_pg_stopped_then_started_under_a_running_tokend, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pg_idle_host_stays_idle, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_pg_revoke_on_one_host_seen_by_cache_on_another, setup, teardown),
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
