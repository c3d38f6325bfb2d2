/* Integration tests: `tokenctl backup --to FILE` (issue 16): a consistent
 * online copy of the store that, with the pepper, restores into a new
 * directory where every token verifies as it did at the copy. */
/* cmocka.h needs these first. */
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

#define N_TOKENS 5

/* Copies from to a new file to, mode 0600. Fails the test if it cannot. */
static void copy_file(const char *from, const char *to) {
  size_t len = 0;
  char *data = th_read_file(from, &len);

  assert_non_null(data);
  th_write_file_ok(to, data, len, 0600);
  free(data);
}

static void test_backup_restores_every_token(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend, restored;
  char tokens[N_TOKENS + 1][TOKEND_TOKEN_BYTES], path[TH_PATH_BYTES];
  char want[TH_PATH_BYTES + 32];
  th_run_result_t r;
  int fd, i;

  assert_int_equal(th_tokend_start(t, NULL), 0);
  fd = th_connect(t->socket_path);
  assert_true(fd >= 0);
  for (i = 0; i < N_TOKENS; i++)
    assert_int_equal(
        th_raw_issue(fd, (uint64_t)i + 1, "acme", "backed-up", tokens[i]), 0);
  snprintf(path, sizeof(path), "%s/backup.db", t->dir);
  th_tokenctl(t, NULL, &r, "backup", "--to", path, NULL);
  th_expect_exit(&r, 0, "tokenctl backup");
  snprintf(want, sizeof(want), "keep the pepper file %s", t->pepper_path);
  assert_non_null(strstr(r.out, want));
  th_run_result_free(&r);
  /* Issued after the copy: not in it. */
  assert_int_equal(th_raw_issue(fd, 100, "acme", "later", tokens[N_TOKENS]), 0);
  close(fd);
  th_tokend_stop_ok(t);
  assert_int_equal(th_db_integrity(path), 0);

  /* Restore: the copy and the pepper in a new directory, no --create-db. */
  memset(&restored, 0, sizeof(restored));
  assert_int_equal(th_tokend_init(&restored), 0);
  copy_file(path, restored.db_path);
  copy_file(t->pepper_path, restored.pepper_path);
  restored.no_create_db = 1;
  assert_int_equal(th_tokend_start(&restored, NULL), 0);
  fd = th_connect(restored.socket_path);
  assert_true(fd >= 0);
  for (i = 0; i < N_TOKENS; i++)
    th_expect_valid_raw(fd, (uint64_t)i + 200, tokens[i]);
  assert_int_not_equal(th_raw_verify(fd, 300, tokens[N_TOKENS]), 0);
  close(fd);
  assert_int_equal(th_tokend_stop_clean(&restored), 0);
  th_tokend_destroy(&restored);
}

/* An existing file is never replaced; a relative path is the caller's. */
static void test_backup_never_replaces_a_file(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char path[TH_PATH_BYTES];
  th_run_result_t r;
  size_t len = 0;
  char *data;

  assert_int_equal(th_tokend_start(t, NULL), 0);
  snprintf(path, sizeof(path), "%s/precious", t->dir);
  th_write_file_ok(path, "keep me", 7, 0600);
  th_tokenctl(t, NULL, &r, "backup", "--to", path, NULL);
  th_expect_exit(&r, 2, "tokenctl backup onto a file");
  assert_non_null(strstr(r.err, "never replaces"));
  th_run_result_free(&r);
  data = th_read_file(path, &len);
  assert_non_null(data);
  assert_int_equal(len, 7);
  assert_memory_equal(data, "keep me", 7);
  free(data);

  th_tokenctl(t, NULL, &r, "backup", NULL);
  th_expect_exit(&r, 2, "tokenctl backup without --to");
  th_run_result_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_backup_restores_every_token,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_backup_never_replaces_a_file,
                                      th_fixture_setup, th_fixture_teardown),
  };

  return cmocka_run_group_tests_name("backup", tests, NULL, NULL);
}
