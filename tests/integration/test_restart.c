/* tokend's life as a process: persistence across graceful restarts and
 * crashes, the socket file, and refusing to start on a bad database, pepper
 * or socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"
#include "tokend_client.h"
/* TOKEND_PEPPER_BYTES: the daemon's limits, not the client's. */
#include "tokend_limits.h"

#define DOMAIN "restart.example"

static const tokend_token_info_t *find(const tokend_token_list_t *l,
                                       const char *id) {
  size_t i;

  for (i = 0; i < l->n_tokens; i++)
    if (strcmp(l->tokens[i].id, id) == 0)
      return &l->tokens[i];
  fail_msg("token %s is not in the list", id);
  return NULL;
}

static void test_restart_keeps_tokens_revocations_and_last_used(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t used, revoked, unused;
  tokend_token_list_t *list = NULL;
  const tokend_token_info_t *t;
  tokend_client_t *c;
  int64_t revoked_at = 0, before_use;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = th_client_connect_ok(&f->tokend);
  th_client_issue_ok(c, DOMAIN, "used", 0, &used);
  th_client_issue_ok(c, DOMAIN, "revoked", 0, &revoked);
  th_client_issue_ok(c, DOMAIN, "unused", 0, &unused);
  assert_int_equal(
      tokend_client_revoke(c, DOMAIN, revoked.info.id, &revoked_at, NULL), 0);
  before_use = th_now_ms();
  th_expect_verify(c, used.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);

  /* The default flush interval (5 s) has not passed: last_used_at can only
   * survive through the write-back at shutdown. */
  th_tokend_stop_ok(&f->tokend);
  assert_false(th_path_exists(f->tokend.socket_path));

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = th_client_connect_ok(&f->tokend);
  /* List first: a verify would set last_used_at itself. */
  assert_int_equal(tokend_client_list(c, DOMAIN, 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 3);
  t = find(list, used.info.id);
  assert_int_equal(t->status, TOKEND_TOKEN_ACTIVE);
  if (t->last_used_at < before_use - 1000 ||
      t->last_used_at > th_now_ms() + 1000)
    fail_msg("last_used_at after restart is %lld, want about %lld",
             (long long)t->last_used_at, (long long)before_use);
  assert_int_equal(t->created_at, used.info.created_at);
  t = find(list, unused.info.id);
  assert_int_equal(t->last_used_at, 0);
  assert_int_equal(t->status, TOKEND_TOKEN_ACTIVE);
  t = find(list, revoked.info.id);
  assert_int_equal(t->status, TOKEND_TOKEN_REVOKED);
  assert_int_equal(t->revoked_at, revoked_at);
  tokend_token_list_free(list);

  th_expect_verify(c, used.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, unused.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, revoked.token, 0, TOKEND_VERIFY_REVOKED);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);
}

static void test_acknowledged_writes_survive_sigkill(void **state) {
  th_fixture_t *f = *state;
  static const char *const args[] = {"--flush-interval-ms", "50", NULL};
  tokend_issued_t kept, revoked;
  tokend_token_list_t *list = NULL;
  tokend_client_t *c;

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  c = th_client_connect_ok(&f->tokend);
  th_client_issue_ok(c, DOMAIN, "kept", 0, &kept);
  th_client_issue_ok(c, DOMAIN, "revoked", 0, &revoked);
  assert_int_equal(tokend_client_revoke(c, DOMAIN, revoked.info.id, NULL, NULL),
                   0);
  th_expect_verify(c, kept.token, 1, TOKEND_VERIFY_VALID);
  /* Twenty flush intervals: last_used_at is on disk by now, even on a busy
   * machine. */
  th_sleep_ms(1000);
  tokend_client_close(c);
  assert_int_equal(th_tokend_kill(&f->tokend), 128 + SIGKILL);

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  c = th_client_connect_ok(&f->tokend);
  assert_int_equal(tokend_client_list(c, DOMAIN, 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 2);
  assert_true(find(list, kept.info.id)->last_used_at > 0);
  assert_int_equal(find(list, revoked.info.id)->status, TOKEND_TOKEN_REVOKED);
  tokend_token_list_free(list);
  th_expect_verify(c, kept.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, revoked.token, 0, TOKEND_VERIFY_REVOKED);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);
}

/* last_used_at of token id, as List shows it now. */
static int64_t last_used_of(tokend_client_t *c, const char *id) {
  tokend_token_list_t *list = NULL;
  int64_t v;

  assert_int_equal(tokend_client_list(c, DOMAIN, 0, NULL, 1, &list), 0);
  v = find(list, id)->last_used_at;
  tokend_token_list_free(list);
  return v;
}

/* --last-used-granularity-ms (default 60 s): a token's last use reaches the
 * database at most once a minute, so a crash may lose up to that much of
 * it; List shows it exactly all along, and a clean shutdown saves it. */
static void
test_last_used_granularity_held_back_saved_at_shutdown(void **state) {
  th_fixture_t *f = *state;
  static const char *const args[] = {"--flush-interval-ms", "50", NULL};
  tokend_issued_t tok;
  tokend_client_t *c;
  int64_t first, second, third;

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  c = th_client_connect_ok(&f->tokend);
  th_client_issue_ok(c, DOMAIN, "busy", 0, &tok);
  th_expect_verify(c, tok.token, 1, TOKEND_VERIFY_VALID);
  first = last_used_of(c, tok.info.id);
  assert_true(first > 0);
  th_sleep_ms(500); /* ten flush intervals: the first use is saved */
  th_expect_verify(c, tok.token, 1, TOKEND_VERIFY_VALID);
  second = last_used_of(c, tok.info.id);
  assert_true(second > first);
  th_sleep_ms(500); /* the second is held back, well within a minute */
  tokend_client_close(c);
  assert_int_equal(th_tokend_kill(&f->tokend), 128 + SIGKILL);

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  c = th_client_connect_ok(&f->tokend);
  assert_int_equal(last_used_of(c, tok.info.id), first);
  th_expect_verify(c, tok.token, 1, TOKEND_VERIFY_VALID);
  third = last_used_of(c, tok.info.id);
  assert_true(third > second);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  c = th_client_connect_ok(&f->tokend);
  assert_int_equal(last_used_of(c, tok.info.id), third);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);
}

#define INFLIGHT_ISSUES 50

static void test_sigterm_answers_calls_in_flight(void **state) {
  th_fixture_t *f = *state;
  char tokens[INFLIGHT_ISSUES][TOKEND_TOKEN_BYTES];
  Tokend__V1__Response *r = NULL;
  tokend_client_t *c;
  size_t answered = 0, i;
  int fd, rc, status;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  for (i = 0; i < INFLIGHT_ISSUES; i++)
    assert_int_equal(th_send_issue(fd, i + 1, DOMAIN, "in flight"), 0);
  /* Once the first answer is here, tokend has read requests; stop it while
   * the rest are being written to the database. */
  for (;;) {
    rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);
    if (rc != 0)
      break;
    if (r->status != NULL && r->status->code != 0)
      fail_msg("call %llu during shutdown: status %d (%s)",
               (unsigned long long)r->call_id, r->status->code,
               r->status->message);
    assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_ISSUE);
    assert_true(strlen(r->issue->token) < TOKEND_TOKEN_BYTES);
    strcpy(tokens[answered++], r->issue->token);
    tokend__v1__response__free_unpacked(r, NULL);
    if (answered == 1)
      kill(f->tokend.pid, SIGTERM);
  }
  /* Whatever was read was answered; then tokend closed the connection. */
  if (rc != TH_RECV_EOF)
    fail_msg("after %zu answers: %s instead of a clean close", answered,
             rc == TH_RECV_TIMEOUT ? "nothing (timeout)" : "a broken frame");
  close(fd);
  status = th_tokend_wait_exit(&f->tokend, TH_STOP_TIMEOUT_MS);
  assert_int_equal(status, 0);
  assert_false(th_path_exists(f->tokend.socket_path));

  /* Every token whose Issue was answered exists after the restart. */
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = th_client_connect_ok(&f->tokend);
  for (i = 0; i < answered; i++)
    th_expect_verify(c, tokens[i], 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);
}

static void test_sigint_stops_like_sigterm(void **state) {
  th_fixture_t *f = *state;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  kill(f->tokend.pid, SIGINT);
  assert_int_equal(th_tokend_wait_exit(&f->tokend, TH_STOP_TIMEOUT_MS), 0);
  assert_false(th_path_exists(f->tokend.socket_path));
}

static void test_stale_socket_replaced_after_sigkill(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  tokend_client_t *c;
  struct stat st;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = th_client_connect_ok(&f->tokend);
  th_client_issue_ok(c, DOMAIN, "before crash", 0, &is);
  tokend_client_close(c);
  assert_int_equal(th_tokend_kill(&f->tokend), 128 + SIGKILL);
  /* The crash left the socket file behind, with no one listening. */
  assert_int_equal(lstat(f->tokend.socket_path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_true(th_connect(f->tokend.socket_path) < 0);

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = th_client_connect_ok(&f->tokend);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);
}

static void test_second_tokend_on_live_socket_refused(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t second;
  tokend_issued_t is;
  tokend_client_t *c;
  char *log;
  int status;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = th_client_connect_ok(&f->tokend);
  th_client_issue_ok(c, DOMAIN, "first", 0, &is);

  /* Its own database and pepper, the first one's socket. */
  assert_int_equal(th_tokend_init(&second), 0);
  snprintf(second.socket_path, sizeof(second.socket_path), "%s",
           f->tokend.socket_path);
  assert_int_equal(th_tokend_spawn(&second, NULL), 0);
  status = th_tokend_wait_exit(&second, TH_START_TIMEOUT_MS);
  log = th_read_file(second.log_path, NULL);
  assert_non_null(log);
  if (status <= 0 || status >= 128)
    fail_msg("second tokend: exit status %d, want a non-zero exit; log:\n%s",
             status, log);
  if (th_log_count_errors(&second) != 1 ||
      strstr(log, f->tokend.socket_path) == NULL)
    fail_msg("second tokend should say, in one error line naming the "
             "socket, why it did not start; log:\n%s",
             log);
  free(log);
  th_tokend_destroy(&second);

  /* The first keeps serving, on the same connection and on new ones. */
  assert_true(th_path_exists(f->tokend.socket_path));
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  c = th_client_connect_ok(&f->tokend);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);
}

/* Starts tokend, which must refuse: a non-zero exit, one error line in the
 * log that contains `word`, and no socket left behind. */
static void expect_refused(th_tokend_t *t, const char *word) {
  int status;
  char *log;

  assert_int_equal(th_tokend_spawn(t, NULL), 0);
  status = th_tokend_wait_exit(t, TH_START_TIMEOUT_MS);
  log = th_read_file(t->log_path, NULL);
  assert_non_null(log);
  if (status <= 0 || status >= 128)
    fail_msg("tokend: exit status %d, want a non-zero exit; log:\n%s", status,
             log);
  if (th_log_count_errors(t) != 1 || strstr(log, word) == NULL)
    fail_msg("tokend should give one error line mentioning '%s'; log:\n%s",
             word, log);
  free(log);
  assert_false(th_path_exists(t->socket_path));
}

static void test_refuses_db_that_is_not_sqlite(void **state) {
  th_fixture_t *f = *state;
  char garbage[4096];
  size_t i, len;
  char *after;

  for (i = 0; i < sizeof(garbage); i++)
    garbage[i] = (char)("not a database\n"[i % 15]);
  th_write_file_ok(f->tokend.db_path, garbage, sizeof(garbage), 0600);
  expect_refused(&f->tokend, f->tokend.db_path);
  /* The file is left as it was. */
  after = th_read_file(f->tokend.db_path, &len);
  assert_non_null(after);
  assert_int_equal(len, sizeof(garbage));
  assert_memory_equal(after, garbage, sizeof(garbage));
  free(after);
}

static void sql_ok(sqlite3 *db, const char *sql) {
  char *err = NULL;

  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
    fail_msg("%s: %s", sql, err);
}

static void test_refuses_other_applications_sqlite_db(void **state) {
  th_fixture_t *f = *state;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;

  assert_int_equal(sqlite3_open(f->tokend.db_path, &db), SQLITE_OK);
  sql_ok(db, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
             "INSERT INTO users (name) VALUES ('alice');");
  sqlite3_close(db);
  chmod(f->tokend.db_path, 0600);

  expect_refused(&f->tokend, f->tokend.db_path);

  /* Untouched: still that application's one table, version 0. */
  assert_int_equal(sqlite3_open(f->tokend.db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT group_concat(name) FROM "
                                      "sqlite_master WHERE type = 'table'",
                                      -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "users");
  sqlite3_finalize(st);
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

static void test_refuses_db_from_newer_version(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  tokend_client_t *c;
  sqlite3 *db = NULL;

  /* A real tokend database first. */
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = th_client_connect_ok(&f->tokend);
  th_client_issue_ok(c, DOMAIN, "old", 0, &is);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);

  assert_int_equal(sqlite3_open(f->tokend.db_path, &db), SQLITE_OK);
  sql_ok(db, "PRAGMA user_version = 99");
  sqlite3_close(db);

  expect_refused(&f->tokend, "99");
}

static void test_refuses_pepper_readable_by_others(void **state) {
  th_fixture_t *f = *state;
  uint8_t pepper[TOKEND_PEPPER_BYTES];
  struct stat st;

  memset(pepper, 0x5a, sizeof(pepper));
  th_write_file_ok(f->tokend.pepper_path, pepper, sizeof(pepper), 0644);
  expect_refused(&f->tokend, f->tokend.pepper_path);
  /* Not "fixed" behind the operator's back. */
  assert_int_equal(stat(f->tokend.pepper_path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0644);
}

static void test_files_created_owner_only(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  tokend_client_t *c;
  struct stat st;
  mode_t old_mask;

  /* Even with a permissive umask. */
  old_mask = umask(0);
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  umask(old_mask);
  c = th_client_connect_ok(&f->tokend);
  th_client_issue_ok(c, DOMAIN, "mode", 0, &is);
  tokend_client_close(c);

  assert_int_equal(lstat(f->tokend.socket_path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(stat(f->tokend.pepper_path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(st.st_size, TOKEND_PEPPER_BYTES);
  assert_int_equal(stat(f->tokend.db_path, &st), 0);
  assert_int_equal(st.st_mode & 077, 0);
  th_tokend_stop_ok(&f->tokend);
}

static int64_t db_count(const char *db_path, const char *sql) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t v = -1;

  assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* Verify writes no audit row, but per-domain counts of valid and invalid
 * verifies reach the database with the last_used write-back (here: the one
 * at shutdown). */
static void test_verify_counts_written_back_per_domain(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t a, b;
  tokend_client_t *c;
  char mangled[TOKEND_TOKEN_BYTES];
  int i;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = th_client_connect_ok(&f->tokend);
  th_client_issue_ok(c, DOMAIN, "a", 0, &a);
  th_client_issue_ok(c, DOMAIN, "b", 0, &b);
  assert_int_equal(tokend_client_revoke(c, DOMAIN, b.info.id, NULL, NULL), 0);
  for (i = 0; i < 5; i++)
    th_expect_verify(c, a.token, 1, TOKEND_VERIFY_VALID);
  for (i = 0; i < 3; i++)
    th_expect_verify(c, b.token, 0, TOKEND_VERIFY_REVOKED);
  memcpy(mangled, a.token, sizeof(mangled));
  mangled[strlen(mangled) - 1] ^= 1;
  th_expect_verify(c, mangled, 0, TOKEND_VERIFY_MALFORMED);
  th_expect_verify(c, mangled, 0, TOKEND_VERIFY_MALFORMED);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);

  assert_int_equal(db_count(f->tokend.db_path, "SELECT valid FROM "
                                               "verify_counts WHERE domain = "
                                               "'" DOMAIN "'"),
                   5);
  assert_int_equal(db_count(f->tokend.db_path, "SELECT invalid FROM "
                                               "verify_counts WHERE domain = "
                                               "'" DOMAIN "'"),
                   3);
  assert_int_equal(db_count(f->tokend.db_path, "SELECT invalid FROM "
                                               "verify_counts WHERE domain = "
                                               "''"),
                   2);
  /* Verifies are not audit events; the Issue and Revoke are. */
  assert_int_equal(db_count(f->tokend.db_path,
                            "SELECT count(*) FROM audit_events WHERE method = "
                            "'Verify'"),
                   0);
  assert_int_equal(
      db_count(f->tokend.db_path, "SELECT count(*) FROM audit_events"), 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_restart_keeps_tokens_revocations_and_last_used, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_verify_counts_written_back_per_domain, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_acknowledged_writes_survive_sigkill,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_last_used_granularity_held_back_saved_at_shutdown,
          th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_sigterm_answers_calls_in_flight,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_sigint_stops_like_sigterm,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_stale_socket_replaced_after_sigkill,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_second_tokend_on_live_socket_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_refuses_db_that_is_not_sqlite,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_refuses_other_applications_sqlite_db,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_refuses_db_from_newer_version,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_refuses_pepper_readable_by_others,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_files_created_owner_only,
                                      th_fixture_setup, th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
