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

#define CALL_TIMEOUT_MS 5000
#define DOMAIN "restart.example"

typedef struct {
  th_tokend_t tokend;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));

  if (f == NULL || th_tokend_init(&f->tokend) != 0) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;

  th_tokend_destroy(&f->tokend);
  free(f);
  return 0;
}

static tokend_client_t *connect_ok(const th_tokend_t *t) {
  tokend_client_t *c = NULL;

  assert_int_equal(tokend_client_connect(t->socket_path, CALL_TIMEOUT_MS, &c),
                   0);
  return c;
}

static void issue_ok(tokend_client_t *c, const char *label,
                     tokend_issued_t *out) {
  tokend_issue_params_t p = {DOMAIN, label, 0, NULL, 0};
  int rc = tokend_client_issue(c, &p, out);

  if (rc != 0)
    fail_msg("issue: %s (%s)", tokend_err_name(rc), tokend_client_errmsg(c));
}

static void expect_verify(tokend_client_t *c, const char *token, int valid,
                          tokend_verify_reason_t reason) {
  tokend_verify_result_t v;

  assert_int_equal(tokend_client_verify(c, token, &v), 0);
  if (v.valid != valid || v.reason != reason)
    fail_msg("verify: got valid=%d %s, want valid=%d %s", v.valid,
             tokend_verify_reason_name(v.reason), valid,
             tokend_verify_reason_name(reason));
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

static int path_exists(const char *path) {
  struct stat st;

  return lstat(path, &st) == 0;
}

static void stop_ok(th_tokend_t *t) {
  int status = th_tokend_stop(t);

  if (status != 0) {
    th_tokend_dump_log(t);
    fail_msg("tokend exited with status %d on SIGTERM, want 0", status);
  }
}

static void test_restart_keeps_tokens_revocations_and_last_used(void **state) {
  fixture_t *f = *state;
  tokend_issued_t used, revoked, unused;
  tokend_token_list_t *list = NULL;
  const tokend_token_info_t *t;
  tokend_client_t *c;
  int64_t revoked_at = 0, before_use;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = connect_ok(&f->tokend);
  issue_ok(c, "used", &used);
  issue_ok(c, "revoked", &revoked);
  issue_ok(c, "unused", &unused);
  assert_int_equal(
      tokend_client_revoke(c, DOMAIN, revoked.info.id, &revoked_at, NULL), 0);
  before_use = th_now_ms();
  expect_verify(c, used.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);

  /* The default flush interval (5 s) has not passed: last_used_at can only
   * survive through the write-back at shutdown. */
  stop_ok(&f->tokend);
  assert_false(path_exists(f->tokend.socket_path));

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = connect_ok(&f->tokend);
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

  expect_verify(c, used.token, 1, TOKEND_VERIFY_VALID);
  expect_verify(c, unused.token, 1, TOKEND_VERIFY_VALID);
  expect_verify(c, revoked.token, 0, TOKEND_VERIFY_REVOKED);
  tokend_client_close(c);
  stop_ok(&f->tokend);
}

static void test_acknowledged_writes_survive_sigkill(void **state) {
  fixture_t *f = *state;
  static const char *const args[] = {"--flush-interval-ms", "50", NULL};
  tokend_issued_t kept, revoked;
  tokend_token_list_t *list = NULL;
  tokend_client_t *c;

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  c = connect_ok(&f->tokend);
  issue_ok(c, "kept", &kept);
  issue_ok(c, "revoked", &revoked);
  assert_int_equal(tokend_client_revoke(c, DOMAIN, revoked.info.id, NULL, NULL),
                   0);
  expect_verify(c, kept.token, 1, TOKEND_VERIFY_VALID);
  /* Twenty flush intervals: last_used_at is on disk by now, even on a busy
   * machine. */
  th_sleep_ms(1000);
  tokend_client_close(c);
  assert_int_equal(th_tokend_kill(&f->tokend), 128 + SIGKILL);

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  c = connect_ok(&f->tokend);
  assert_int_equal(tokend_client_list(c, DOMAIN, 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 2);
  assert_true(find(list, kept.info.id)->last_used_at > 0);
  assert_int_equal(find(list, revoked.info.id)->status, TOKEND_TOKEN_REVOKED);
  tokend_token_list_free(list);
  expect_verify(c, kept.token, 1, TOKEND_VERIFY_VALID);
  expect_verify(c, revoked.token, 0, TOKEND_VERIFY_REVOKED);
  tokend_client_close(c);
  stop_ok(&f->tokend);
}

#define INFLIGHT_ISSUES 50

static void test_sigterm_answers_calls_in_flight(void **state) {
  fixture_t *f = *state;
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
  assert_false(path_exists(f->tokend.socket_path));

  /* Every token whose Issue was answered exists after the restart. */
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = connect_ok(&f->tokend);
  for (i = 0; i < answered; i++)
    expect_verify(c, tokens[i], 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  stop_ok(&f->tokend);
}

static void test_sigint_stops_like_sigterm(void **state) {
  fixture_t *f = *state;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  kill(f->tokend.pid, SIGINT);
  assert_int_equal(th_tokend_wait_exit(&f->tokend, TH_STOP_TIMEOUT_MS), 0);
  assert_false(path_exists(f->tokend.socket_path));
}

static void test_stale_socket_replaced_after_sigkill(void **state) {
  fixture_t *f = *state;
  tokend_issued_t is;
  tokend_client_t *c;
  struct stat st;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = connect_ok(&f->tokend);
  issue_ok(c, "before crash", &is);
  tokend_client_close(c);
  assert_int_equal(th_tokend_kill(&f->tokend), 128 + SIGKILL);
  /* The crash left the socket file behind, with no one listening. */
  assert_int_equal(lstat(f->tokend.socket_path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_true(th_connect(f->tokend.socket_path) < 0);

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = connect_ok(&f->tokend);
  expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  stop_ok(&f->tokend);
}

static void test_second_tokend_on_live_socket_refused(void **state) {
  fixture_t *f = *state;
  th_tokend_t second;
  tokend_issued_t is;
  tokend_client_t *c;
  char *log;
  int status;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = connect_ok(&f->tokend);
  issue_ok(c, "first", &is);

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
  assert_true(path_exists(f->tokend.socket_path));
  expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  c = connect_ok(&f->tokend);
  expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  stop_ok(&f->tokend);
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
  assert_false(path_exists(t->socket_path));
}

static void write_file(const char *path, const void *data, size_t len,
                       mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, len), (ssize_t)len);
  /* Whatever the umask, the mode is exactly `mode`. */
  assert_int_equal(fchmod(fd, mode), 0);
  close(fd);
}

static void test_refuses_db_that_is_not_sqlite(void **state) {
  fixture_t *f = *state;
  char garbage[4096];
  size_t i, len;
  char *after;

  for (i = 0; i < sizeof(garbage); i++)
    garbage[i] = (char)("not a database\n"[i % 15]);
  write_file(f->tokend.db_path, garbage, sizeof(garbage), 0600);
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
  fixture_t *f = *state;
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
  fixture_t *f = *state;
  tokend_issued_t is;
  tokend_client_t *c;
  sqlite3 *db = NULL;

  /* A real tokend database first. */
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = connect_ok(&f->tokend);
  issue_ok(c, "old", &is);
  tokend_client_close(c);
  stop_ok(&f->tokend);

  assert_int_equal(sqlite3_open(f->tokend.db_path, &db), SQLITE_OK);
  sql_ok(db, "PRAGMA user_version = 99");
  sqlite3_close(db);

  expect_refused(&f->tokend, "99");
}

static void test_refuses_pepper_readable_by_others(void **state) {
  fixture_t *f = *state;
  uint8_t pepper[TOKEND_PEPPER_BYTES];
  struct stat st;

  memset(pepper, 0x5a, sizeof(pepper));
  write_file(f->tokend.pepper_path, pepper, sizeof(pepper), 0644);
  expect_refused(&f->tokend, f->tokend.pepper_path);
  /* Not "fixed" behind the operator's back. */
  assert_int_equal(stat(f->tokend.pepper_path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0644);
}

static void test_files_created_owner_only(void **state) {
  fixture_t *f = *state;
  tokend_issued_t is;
  tokend_client_t *c;
  struct stat st;
  mode_t old_mask;

  /* Even with a permissive umask. */
  old_mask = umask(0);
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  umask(old_mask);
  c = connect_ok(&f->tokend);
  issue_ok(c, "mode", &is);
  tokend_client_close(c);

  assert_int_equal(lstat(f->tokend.socket_path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(stat(f->tokend.pepper_path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(st.st_size, TOKEND_PEPPER_BYTES);
  assert_int_equal(stat(f->tokend.db_path, &st), 0);
  assert_int_equal(st.st_mode & 077, 0);
  stop_ok(&f->tokend);
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
  fixture_t *f = *state;
  tokend_issued_t a, b;
  tokend_client_t *c;
  char mangled[TOKEND_TOKEN_BYTES];
  int i;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  c = connect_ok(&f->tokend);
  issue_ok(c, "a", &a);
  issue_ok(c, "b", &b);
  assert_int_equal(tokend_client_revoke(c, DOMAIN, b.info.id, NULL, NULL), 0);
  for (i = 0; i < 5; i++)
    expect_verify(c, a.token, 1, TOKEND_VERIFY_VALID);
  for (i = 0; i < 3; i++)
    expect_verify(c, b.token, 0, TOKEND_VERIFY_REVOKED);
  memcpy(mangled, a.token, sizeof(mangled));
  mangled[strlen(mangled) - 1] ^= 1;
  expect_verify(c, mangled, 0, TOKEND_VERIFY_MALFORMED);
  expect_verify(c, mangled, 0, TOKEND_VERIFY_MALFORMED);
  tokend_client_close(c);
  stop_ok(&f->tokend);

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
          test_restart_keeps_tokens_revocations_and_last_used, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_verify_counts_written_back_per_domain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_acknowledged_writes_survive_sigkill,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_sigterm_answers_calls_in_flight,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_sigint_stops_like_sigterm, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_stale_socket_replaced_after_sigkill,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_second_tokend_on_live_socket_refused,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_refuses_db_that_is_not_sqlite, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_refuses_other_applications_sqlite_db,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_refuses_db_from_newer_version, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_refuses_pepper_readable_by_others,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_files_created_owner_only, setup,
                                      teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
