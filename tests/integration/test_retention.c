/* Integration test: --audit-retention-days (issue 16). A tokend started
 * with it removes the audit rows older than the retention (keeping the
 * newest), records that in the audit log itself, and the chain still
 * verifies with tokenctl. Old rows are made through the store API, chained
 * with the key tokend derives from its pepper, before tokend starts. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "pg_cluster.h"
#include "store/store.h"

#define OLD_ROWS 3

/* Appends OLD_ROWS audit rows from 1970 to t's database, chained as
 * tokend chains them (server.c: a keyed hash of a fixed string under the
 * pepper). */
static void append_old_rows(const th_tokend_t *t, const char *store_url) {
  static const char context[] = "tokend audit-chain key v1";
  uint8_t key[STORE_AUDIT_KEY_BYTES];
  char url[TH_PATH_BYTES + 16], why[256];
  size_t len = 0;
  uint8_t *pepper = (uint8_t *)th_read_file(t->pepper_path, &len);
  store_audit_t ev;
  store_t *store;
  int i;

  assert_non_null(pepper);
  assert_int_equal(len, 32);
  crypto_generichash(key, sizeof(key), (const unsigned char *)context,
                     sizeof(context) - 1, pepper, len);
  free(pepper);
  if (store_url != NULL)
    snprintf(url, sizeof(url), "%s", store_url);
  else
    snprintf(url, sizeof(url), "sqlite:%s", t->db_path);
  assert_int_equal(store_open_url(url, 0, &store, why, sizeof(why)), 0);
  assert_int_equal(store_audit_key_set(store, key), 0);
  for (i = 1; i <= OLD_ROWS; i++) {
    memset(&ev, 0, sizeof(ev));
    ev.at = 1000 * i;
    ev.peer_uid = 1000;
    snprintf(ev.actor, sizeof(ev.actor), "uid:1000");
    snprintf(ev.domain, sizeof(ev.domain), "acme");
    snprintf(ev.method, sizeof(ev.method), "Issue");
    assert_int_equal(store_audit_append(store, &ev), 0);
  }
  store_close(store);
}

static void test_audit_retention_removes_old_rows_and_records_it(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  const char *args[] = {"--audit-retention-days", "30", NULL};
  static const char line[] = "audit retention: removed 2 audit rows";
  int64_t deadline;
  th_run_result_t r;

  /* A database and pepper, then rows only the store API can date. */
  assert_int_equal(th_tokend_start(t, NULL), 0);
  th_tokend_stop_ok(t);
  assert_int_equal(th_db_count(t->db_path, "SELECT count(*) FROM audit_events"),
                   0);
  append_old_rows(t, NULL);

  t->no_create_db = 1;
  assert_int_equal(th_tokend_start(t, args), 0);
  deadline = th_mono_ms() + TH_START_TIMEOUT_MS;
  while (!th_file_contains(t->log_path, line, sizeof(line) - 1)) {
    if (th_mono_ms() >= deadline) {
      th_tokend_dump_log(t);
      fail_msg("no \"%s\" in the log", line);
    }
    th_sleep_ms(10);
  }
  /* The newest old row stays (the chain goes on from it), and the removal
   * is the next row. */
  assert_int_equal(th_db_count(t->db_path, "SELECT min(id) FROM audit_events"),
                   OLD_ROWS);
  assert_int_equal(th_db_count(t->db_path,
                               "SELECT count(*) FROM audit_events WHERE method "
                               "= 'AuditRetention' AND detail LIKE "
                               "'removed 2 audit rows older than 30 days%'"),
                   1);
  th_tokenctl(t, NULL, &r, "audit", "--verify", NULL);
  th_expect_exit(&r, 0, "tokenctl audit --verify after retention");
  th_run_result_free(&r);
  th_tokend_stop_ok(t);
}

/* The same with PostgreSQL (schema 5), on a throwaway cluster: the pass
 * removes through the delete trigger's one allowed path, records it, and
 * the chain verifies from the newest removed row. */
static void test_audit_retention_on_postgresql(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  static const char line[] = "audit retention: removed 2 audit rows";
  char url[512];
  const char *plain[] = {"--store", url, NULL};
  const char *args[] = {"--store", url, "--audit-retention-days", "30", NULL};
  pg_cluster_t cluster;
  int64_t deadline;
  th_run_result_t r;

  if (!pg_cluster_available()) {
    printf("skipped: no PostgreSQL server binaries in %s\n", PG_CLUSTER_BINDIR);
    skip();
  }
  assert_int_equal(pg_cluster_start(&cluster), 0);
  assert_int_equal(pg_cluster_sql(&cluster, "postgres", "CREATE DATABASE ret"),
                   0);
  assert_int_equal(pg_cluster_uri(&cluster, "ret", url, sizeof(url)), 0);
  assert_int_equal(th_tokend_start(t, plain), 0);
  th_tokend_stop_ok(t);
  append_old_rows(t, url);
  t->no_create_db = 1;
  assert_int_equal(th_tokend_start(t, args), 0);
  deadline = th_mono_ms() + TH_START_TIMEOUT_MS;
  while (!th_file_contains(t->log_path, line, sizeof(line) - 1)) {
    if (th_mono_ms() >= deadline) {
      th_tokend_dump_log(t);
      pg_cluster_stop(&cluster);
      fail_msg("no \"%s\" in the log", line);
    }
    th_sleep_ms(10);
  }
  th_tokenctl(t, NULL, &r, "audit", "--verify", NULL);
  th_expect_exit(&r, 0, "tokenctl audit --verify after retention");
  th_run_result_free(&r);
  /* A young row still cannot be removed behind tokend's back. */
  assert_int_not_equal(
      pg_cluster_sql(&cluster, "ret",
                     "DELETE FROM audit_events WHERE id = (SELECT max(id)"
                     " FROM audit_events)"),
      0);
  th_tokend_stop_ok(t);
  pg_cluster_stop(&cluster);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_audit_retention_removes_old_rows_and_records_it,
          th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_audit_retention_on_postgresql,
                                      th_fixture_setup, th_fixture_teardown),
  };

  return cmocka_run_group_tests_name("retention", tests, NULL, NULL);
}
