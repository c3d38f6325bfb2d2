/* The database file under tokend's feet (issue 11, items 3 and 12): deleted
 * or replaced while tokend runs, a directory or file tokend cannot write,
 * and --read-only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tokend_error.h"
#include "tokend_limits.h"

#define DOMAIN "dbfile.example"
#define FAILED_WRITES 5
/* nobody/nogroup, as in test_authz. */
#define NOBODY_UID 65534
#define NOBODY_GID 65534

/* Issues a token on fd; the answer must have status code. */
static void issue_expect(int fd, uint64_t call_id, int code,
                         const char *msg_word) {
  Tokend__V1__Response *r = NULL;

  assert_int_equal(th_send_issue(fd, call_id, DOMAIN, "dbfile"), 0);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
  assert_int_equal(r->call_id, call_id);
  if (th_response_code(r) != code)
    fail_msg("Issue answered %d (%s), want %d", th_response_code(r),
             r->status != NULL ? r->status->message : "", code);
  if (msg_word != NULL &&
      (r->status == NULL || strstr(r->status->message, msg_word) == NULL))
    fail_msg("Issue's message should mention '%s': %s", msg_word,
             r->status != NULL ? r->status->message : "(none)");
  tokend__v1__response__free_unpacked(r, NULL);
}

/* After the database file went away: every write is UNAVAILABLE, said once
 * in the log at error; Verify goes on from memory. */
static void expect_writes_refused_once(th_fixture_t *f, int fd) {
  uint64_t i;

  for (i = 0; i < FAILED_WRITES; i++)
    issue_expect(fd, 10 + i, TOKEND_GRPC_UNAVAILABLE, "deleted or replaced");
  th_expect_valid_raw(fd, 100, f->token);
  if (th_log_count_errors(&f->tokend) != 1) {
    th_tokend_dump_log(&f->tokend);
    fail_msg("want exactly one error line for %d refused writes, got %d",
             FAILED_WRITES, th_log_count_errors(&f->tokend));
  }
}

static void test_db_deleted_while_running_refuses_writes(void **state) {
  th_fixture_t *f = *state;
  char path[TH_PATH_BYTES + 8];
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  assert_int_equal(unlink(f->tokend.db_path), 0);
  snprintf(path, sizeof(path), "%s-wal", f->tokend.db_path);
  unlink(path);
  snprintf(path, sizeof(path), "%s-shm", f->tokend.db_path);
  unlink(path);
  expect_writes_refused_once(f, fd);
  close(fd);
  /* SIGTERM still ends it (teardown checks exit 0), and nothing was
   * recreated at the path by writing. */
  th_tokend_stop_ok(&f->tokend);
  assert_false(th_path_exists(f->tokend.db_path));
}

static void test_db_replaced_while_running_refuses_writes(void **state) {
  th_fixture_t *f = *state;
  char other[TH_PATH_BYTES + 8];
  char *copy;
  size_t len;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  /* A restore of an older copy, renamed into place: another inode. */
  copy = th_read_file(f->tokend.db_path, &len);
  assert_non_null(copy);
  snprintf(other, sizeof(other), "%s.new", f->tokend.db_path);
  th_write_file_ok(other, copy, len, 0600);
  free(copy);
  assert_int_equal(rename(other, f->tokend.db_path), 0);
  expect_writes_refused_once(f, fd);
  close(fd);
}

/* ---- --read-only ---- */

static void list_expect_one(const th_tokend_t *t) {
  tokend_client_t *c = th_client_connect_ok(t);
  tokend_token_list_t *l = NULL;

  assert_int_equal(tokend_client_list(c, DOMAIN, 0, NULL, 1, &l), 0);
  assert_int_equal(l->n_tokens, 1);
  tokend_token_list_free(l);
  tokend_client_close(c);
}

static void test_read_only_serves_reads_refuses_writes(void **state) {
  static const char *const ro[] = {"--read-only", NULL};
  th_fixture_t *f = *state;
  tokend_client_t *c;
  char *before, *after;
  size_t before_len, after_len;
  int fd;

  assert_int_equal(th_tokend_stop(&f->tokend), 0);
  before = th_read_file(f->tokend.db_path, &before_len);
  assert_non_null(before);
  f->tokend.no_create_db = 1;
  assert_int_equal(th_tokend_start(&f->tokend, ro), 0);

  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  issue_expect(fd, 1, TOKEND_GRPC_FAILED_PRECONDITION,
               "tokend runs --read-only");
  th_expect_valid_raw(fd, 2, f->token);
  close(fd);
  list_expect_one(&f->tokend);
  c = th_client_connect_ok(&f->tokend);
  assert_int_not_equal(
      tokend_client_grant_admin(c, DOMAIN, "someone", NULL, NULL), 0);
  assert_int_equal(tokend_client_grpc_status(c),
                   TOKEND_GRPC_FAILED_PRECONDITION);
  assert_non_null(strstr(tokend_client_errmsg(c), "--read-only"));
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);
  assert_int_equal(th_log_count_errors(&f->tokend), 0);

  /* Not a byte of the database changed (last_used_at was not written). */
  after = th_read_file(f->tokend.db_path, &after_len);
  assert_non_null(after);
  assert_int_equal(after_len, before_len);
  assert_memory_equal(after, before, before_len);
  free(before);
  free(after);
}

/* ---- a database tokend cannot write ---- */

/* Moves f's database and pepper into data/ and its socket into sock/ under
 * its directory, all reachable by the uid tokend will run as. As root (to
 * whom modes do not stop writes) every later tokend of f runs as uid
 * nobody, from the harness's copy of tokend that nobody can reach (the
 * build tree may be in a clone under /root); the test is skipped, saying
 * why, only if no such copy can be made. */
static void move_for_other_uid(th_fixture_t *f) {
  static const char *const suffix[] = {"-wal", "-shm"};
  char data[TH_DIR_BYTES + 8], sock[TH_DIR_BYTES + 8], path[TH_DIR_BYTES + 32];
  char old_db[TH_PATH_BYTES], from[TH_PATH_BYTES + 8], moved[TH_PATH_BYTES + 8];
  size_t i;
  const char *bin;

  snprintf(data, sizeof(data), "%s/data", f->tokend.dir);
  snprintf(sock, sizeof(sock), "%s/sock", f->tokend.dir);
  assert_int_equal(mkdir(data, 0755), 0);
  assert_int_equal(mkdir(sock, 0700), 0);
  snprintf(old_db, sizeof(old_db), "%s", f->tokend.db_path);
  snprintf(path, sizeof(path), "%s/tokend.db", data);
  assert_int_equal(rename(f->tokend.db_path, path), 0);
  snprintf(f->tokend.db_path, sizeof(f->tokend.db_path), "%s", path);
  for (i = 0; i < 2; i++) {
    snprintf(from, sizeof(from), "%s%s", old_db, suffix[i]);
    snprintf(moved, sizeof(moved), "%s%s", f->tokend.db_path, suffix[i]);
    if (rename(from, moved) == 0 && geteuid() == 0)
      assert_int_equal(chown(moved, NOBODY_UID, NOBODY_GID), 0);
  }
  snprintf(path, sizeof(path), "%s/pepper", data);
  assert_int_equal(rename(f->tokend.pepper_path, path), 0);
  snprintf(f->tokend.pepper_path, sizeof(f->tokend.pepper_path), "%s", path);
  snprintf(f->tokend.socket_path, sizeof(f->tokend.socket_path), "%s/s", sock);
  if (geteuid() != 0)
    return;
  assert_int_equal(chmod(f->tokend.dir, 0711), 0);
  assert_int_equal(chown(f->tokend.db_path, NOBODY_UID, NOBODY_GID), 0);
  assert_int_equal(chown(f->tokend.pepper_path, NOBODY_UID, NOBODY_GID), 0);
  assert_int_equal(chown(sock, NOBODY_UID, NOBODY_GID), 0);
  if (th_tokend_for_other_uids(&bin) != 0) {
    fprintf(stderr, "skipped: no copy of tokend that uid %d can run\n",
            NOBODY_UID);
    skip();
  }
  f->tokend.uid = NOBODY_UID;
}

/* tokend must refuse to start with one line mentioning word (and
 * --read-only, the way out). */
static void expect_refused_as_nobody(th_fixture_t *f, const char *word) {
  char *log;
  int status;

  assert_int_equal(truncate(f->tokend.log_path, 0), 0);
  assert_int_equal(th_tokend_spawn(&f->tokend, NULL), 0);
  status = th_tokend_wait_exit(&f->tokend, TH_START_TIMEOUT_MS);
  if (status < 0) {
    th_tokend_kill(&f->tokend);
    th_tokend_dump_log(&f->tokend);
    fail_msg("tokend started on a database it cannot write");
  }
  log = th_read_file(f->tokend.log_path, NULL);
  assert_non_null(log);
  if (status != 1 || strstr(log, word) == NULL ||
      strstr(log, "--read-only") == NULL || strchr(log, '\n')[1] != '\0')
    fail_msg("want exit 1 and one line mentioning '%s' and --read-only; "
             "got %d:\n%s",
             word, status, log);
  free(log);
  assert_false(th_path_exists(f->tokend.socket_path));
}

/* The database in a directory its uid cannot write; crashed: tokend was
 * killed, so the -wal and -shm files are still there (and writable), which
 * is what let a tokend start and then fail every write. */
static void unwritable_dir(th_fixture_t *f, int crashed) {
  static const char *const ro[] = {"--read-only", NULL};
  char data[TH_DIR_BYTES + 8];
  int fd;

  if (crashed)
    assert_int_equal(th_tokend_kill(&f->tokend), 128 + SIGKILL);
  else
    assert_int_equal(th_tokend_stop(&f->tokend), 0);
  move_for_other_uid(f);
  f->tokend.no_create_db = 1;
  snprintf(data, sizeof(data), "%s/data", f->tokend.dir);
  /* nobody owns the files but cannot create or remove any beside them. */
  if (geteuid() != 0)
    assert_int_equal(chmod(data, 0555), 0);
  expect_refused_as_nobody(f, "directory");

  /* With --read-only it serves Verify and List from that directory. */
  assert_int_equal(th_tokend_start(&f->tokend, ro), 0);
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  th_expect_valid_raw(fd, 1, f->token);
  issue_expect(fd, 2, TOKEND_GRPC_FAILED_PRECONDITION, "--read-only");
  close(fd);
  list_expect_one(&f->tokend);
  th_tokend_stop_ok(&f->tokend);
  chmod(data, 0755);
}

static void test_unwritable_dir_after_crash_refused(void **state) {
  unwritable_dir(*state, 1);
}

static void test_unwritable_dir_refused_unless_read_only(void **state) {
  unwritable_dir(*state, 0);
}

static void test_unwritable_file_refused(void **state) {
  th_fixture_t *f = *state;
  char data[TH_DIR_BYTES + 8];

  assert_int_equal(th_tokend_stop(&f->tokend), 0);
  move_for_other_uid(f);
  f->tokend.no_create_db = 1;
  snprintf(data, sizeof(data), "%s/data", f->tokend.dir);
  if (geteuid() == 0)
    assert_int_equal(chown(data, NOBODY_UID, NOBODY_GID), 0);
  assert_int_equal(chmod(f->tokend.db_path, 0400), 0);
  expect_refused_as_nobody(f, "not writable");
}

#define WITH_TOKEN(fn)                                                         \
  cmocka_unit_test_setup_teardown(fn, setup_token, th_fixture_teardown)

static int setup_token(void **state) {
  return th_fixture_setup_token(state, NULL, DOMAIN, "dbfile");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      WITH_TOKEN(test_db_deleted_while_running_refuses_writes),
      WITH_TOKEN(test_db_replaced_while_running_refuses_writes),
      WITH_TOKEN(test_read_only_serves_reads_refuses_writes),
      WITH_TOKEN(test_unwritable_dir_after_crash_refused),
      WITH_TOKEN(test_unwritable_dir_refused_unless_read_only),
      WITH_TOKEN(test_unwritable_file_refused),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
