/* The audit log (issue 11): tamper-evident through its hash chain, checked
 * by `tokenctl audit --verify` (item 4), and bounded under a flood of
 * refused calls, which are aggregated into rows with a count (item 6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "harness.h"

#define DOMAIN "audit.example"

/* ---- item 4: tokenctl audit --verify ---- */

/* Makes a few audit rows (ids 1..5 in a fresh database: three Issues, a
 * Revoke, a Grant), then stops tokend so that the test can edit the file. */
static void make_rows_and_stop(th_fixture_t *f) {
  tokend_issued_t t[3];
  int64_t at;
  int already, i;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  f->client = th_client_connect_ok(&f->tokend);
  for (i = 0; i < 3; i++)
    th_client_issue_ok(f->client, DOMAIN, "audited", 0, &t[i]);
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, t[1].info.id, &at, &already), 0);
  assert_int_equal(
      tokend_client_grant_admin(f->client, DOMAIN, "bob@corp", NULL, NULL), 0);
  for (i = 0; i < 3; i++)
    tokend_client_wipe(&t[i]);
  tokend_client_close(f->client);
  f->client = NULL;
  th_tokend_stop_ok(&f->tokend);
  assert_int_equal(
      th_db_count(f->tokend.db_path, "SELECT count(*) FROM audit_events"), 5);
}

/* Runs sql on the database as someone who can write the file would. */
static void edit_db(const th_fixture_t *f, const char *sql) {
  sqlite3 *db = NULL;
  char *err = NULL;

  assert_int_equal(
      sqlite3_open_v2(f->tokend.db_path, &db, SQLITE_OPEN_READWRITE, NULL),
      SQLITE_OK);
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
    fail_msg("sqlite3: %s: %s", sql, err);
  sqlite3_close(db);
}

/* Starts tokend and runs tokenctl audit --verify (with anchor, if any). */
static void verify_log(th_fixture_t *f, const char *anchor,
                       th_run_result_t *r) {
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  if (anchor != NULL)
    th_tokenctl(&f->tokend, NULL, r, "audit", "--verify", "--anchor", anchor,
                NULL);
  else
    th_tokenctl(&f->tokend, NULL, r, "audit", "--verify", NULL);
}

/* Expects tokenctl to exit 1 naming row id as the first bad one. */
static void expect_bad_row(th_fixture_t *f, const char *anchor, int id) {
  th_run_result_t r;
  char want[64];

  verify_log(f, anchor, &r);
  th_expect_exit(&r, 1, "audit --verify of an edited log");
  snprintf(want, sizeof(want), "first bad row %d:", id);
  if (strstr(r.out, want) == NULL)
    fail_msg("tokenctl audit --verify should say \"%s\"; said:\n%s%s", want,
             r.out, r.err);
  th_run_result_free(&r);
}

static void test_audit_verify_untouched_log_ok(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;

  make_rows_and_stop(f);
  verify_log(f, NULL, &r);
  th_expect_exit(&r, 0, "audit --verify of an untouched log");
  assert_non_null(strstr(r.out, "audit log OK: 5 rows"));
  assert_non_null(strstr(r.out, "head: 5:"));
  th_run_result_free(&r);
}

static void test_audit_verify_finds_changed_row(void **state) {
  th_fixture_t *f = *state;

  make_rows_and_stop(f);
  edit_db(f, "DROP TRIGGER audit_events_no_update;"
             "UPDATE audit_events SET actor = 'someone-else' WHERE id = 2;");
  expect_bad_row(f, NULL, 2);
}

static void test_audit_verify_finds_deleted_row(void **state) {
  th_fixture_t *f = *state;

  make_rows_and_stop(f);
  edit_db(f, "DROP TRIGGER audit_events_no_delete;"
             "DELETE FROM audit_events WHERE id = 4;");
  expect_bad_row(f, NULL, 5);
}

/* INSERT OR REPLACE deletes the row it replaces without the delete
 * trigger; the schema refuses it, and once that trigger is dropped too the
 * chain shows it. */
static void test_audit_verify_finds_replaced_row(void **state) {
  static const char replace[] =
      "INSERT OR REPLACE INTO audit_events (id, at, peer_uid, peer_pid, actor,"
      " break_glass, domain, token_id, method, code, detail, count, hash)"
      " SELECT id, at, peer_uid, peer_pid, actor, break_glass, domain,"
      " token_id, 'Verify', code, detail, count, hash FROM audit_events"
      " WHERE id = 3;";
  th_fixture_t *f = *state;
  sqlite3 *db = NULL;

  make_rows_and_stop(f);
  assert_int_equal(
      sqlite3_open_v2(f->tokend.db_path, &db, SQLITE_OPEN_READWRITE, NULL),
      SQLITE_OK);
  assert_int_not_equal(sqlite3_exec(db, replace, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  edit_db(f, "DROP TRIGGER audit_events_no_replace;");
  edit_db(f, replace);
  expect_bad_row(f, NULL, 3);
}

static void
test_audit_verify_finds_row_deleted_after_trigger_dropped(void **state) {
  th_fixture_t *f = *state;

  make_rows_and_stop(f);
  edit_db(f, "DROP TRIGGER audit_events_no_delete;");
  edit_db(f, "DELETE FROM audit_events WHERE id = 1;");
  expect_bad_row(f, NULL, 2);
}

/* The newest rows cut off leave a chain that holds; the head recorded by an
 * earlier --verify, passed as the anchor, shows it. */
static void test_audit_verify_anchor_finds_truncation(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  char anchor[128];
  const char *head;

  make_rows_and_stop(f);
  verify_log(f, NULL, &r);
  th_expect_exit(&r, 0, "audit --verify");
  head = strstr(r.out, "head: ");
  assert_non_null(head);
  assert_int_equal(sscanf(head, "head: %100s", anchor), 1);
  th_run_result_free(&r);
  th_tokend_stop_ok(&f->tokend);
  edit_db(f, "DROP TRIGGER audit_events_no_delete;"
             "DELETE FROM audit_events WHERE id >= 4;");
  verify_log(f, NULL, &r);
  th_expect_exit(&r, 0, "audit --verify without the anchor");
  th_run_result_free(&r);
  th_tokend_stop_ok(&f->tokend);
  expect_bad_row(f, anchor, 5);
}

/* ---- item 6: a flood of refusals ---- */

#define FLOOD_CALLS 20000
/* Under valgrind (tokend 10-50 times slower) a smaller flood proves the
 * same: rows and lines do not grow with the calls. */
#define FLOOD_CALLS_WRAPPED 4000
#define FLOOD_BATCH 500 /* sent, then read, so neither side blocks */
/* Rows and log lines the flood may leave: the first refusal's, then one
 * per --refusal-audit-interval-ms (10 s; a slow run, under valgrind, may
 * span a few). */
#define FLOOD_MAX_ROWS 8

static size_t count_lines_with(const char *text, const char *needle) {
  size_t n = 0;

  while ((text = strstr(text, needle)) != NULL) {
    n++;
    text += strlen(needle);
  }
  return n;
}

static void test_refusal_flood_is_aggregated(void **state) {
  /* The test's uid (root) is then neither an operator nor a verifier, and
   * admin of nothing: every Issue it sends is refused. */
  static const char *const args[] = {"--operator-uid", "12345",
                                     "--verifier-uid", "12345", NULL};
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest is = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  uint8_t *buf = NULL;
  size_t len = 0, sent, i;
  size_t calls = th_wrapped() ? FLOOD_CALLS_WRAPPED : FLOOD_CALLS;
  long rows;
  char *log;
  int fd, rc;

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  is.domain = DOMAIN;
  is.label = "flood";
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &is;
  for (sent = 0; sent < calls; sent += FLOOD_BATCH) {
    th_frame_repeat(&buf, &len, &req, 1 + sent, FLOOD_BATCH);
    assert_int_equal(th_write_all(fd, buf, len), 0);
    free(buf);
    buf = NULL;
    len = 0;
    for (i = 0; i < FLOOD_BATCH; i++) {
      rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);
      if (rc != 0)
        fail_msg("no answer to refused Issue %zu: %s", sent + i + 1,
                 th_recv_name(rc));
      assert_int_equal(r->call_id, sent + i + 1);
      assert_int_equal(th_response_code(r), TOKEND_GRPC_PERMISSION_DENIED);
      tokend__v1__response__free_unpacked(r, NULL);
    }
  }
  close(fd);
  th_tokend_stop_ok(&f->tokend);

  /* A handful of rows, whose counts add up to every refusal... */
  rows = th_db_count(f->tokend.db_path,
                     "SELECT count(*) FROM audit_events WHERE method = "
                     "'Issue' AND code = 7");
  if (rows < 1 || rows > FLOOD_MAX_ROWS)
    fail_msg("%zu refused Issues left %ld audit rows (want 1 to %d)", calls,
             rows, FLOOD_MAX_ROWS);
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT sum(count) FROM audit_events WHERE "
                               "method = 'Issue' AND code = 7"),
                   calls);
  /* ...and as few log lines. */
  log = th_read_file(f->tokend.log_path, &len);
  assert_non_null(log);
  if (count_lines_with(log, "refused: Issue") > FLOOD_MAX_ROWS)
    fail_msg("%zu refused Issues left %zu log lines", calls,
             count_lines_with(log, "refused: Issue"));
  assert_non_null(strstr(log, "more like this"));
  fprintf(stderr, "%zu refused Issues: %ld audit rows, %zu log lines\n", calls,
          rows, count_lines_with(log, "refused: Issue"));
  free(log);
}

/* tokenctl audit shows a row's count. */
static void test_tokenctl_audit_shows_count(void **state) {
  static const char *const args[] = {"--operator-uid", "12345",
                                     "--verifier-uid", "12345", NULL};
  th_fixture_t *f = *state;
  th_run_result_t r;
  uint8_t *buf = NULL;
  size_t len = 0, i;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest is = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__Response *resp = NULL;
  int fd;

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  is.domain = DOMAIN;
  is.label = "refused";
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &is;
  th_frame_repeat(&buf, &len, &req, 1, 7);
  assert_int_equal(th_write_all(fd, buf, len), 0);
  free(buf);
  for (i = 0; i < 7; i++) {
    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &resp), 0);
    tokend__v1__response__free_unpacked(resp, NULL);
  }
  close(fd);
  /* The repeats are written at exit; root is an operator again after. */
  th_tokend_stop_ok(&f->tokend);
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  th_tokenctl(&f->tokend, NULL, &r, "audit", "--json", NULL);
  th_expect_exit(&r, 0, "tokenctl audit --json");
  assert_non_null(strstr(r.out, "\"count\": 6"));
  assert_non_null(strstr(r.out, "\"count\": 1"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "audit", NULL);
  th_expect_exit(&r, 0, "tokenctl audit");
  assert_non_null(strstr(r.out, "COUNT"));
  th_run_result_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_audit_verify_untouched_log_ok,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_audit_verify_finds_changed_row,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_audit_verify_finds_deleted_row,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_audit_verify_finds_replaced_row,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_audit_verify_finds_row_deleted_after_trigger_dropped,
          th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_audit_verify_anchor_finds_truncation,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_refusal_flood_is_aggregated,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_tokenctl_audit_shows_count,
                                      th_fixture_setup, th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
