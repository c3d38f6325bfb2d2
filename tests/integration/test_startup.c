/* tokend refusing to start: a database it cannot reach or read, a pepper it
 * must not trust, a socket path that cannot work, bad flags. Each refusal
 * is one clear line on stderr, a non-zero exit, and no socket left behind.
 * (test_restart covers a non-SQLite file, another application's database, a
 * newer schema, a world-readable pepper and a live socket.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"
#include "tokend_error.h"
#include "tokend_limits.h"

#define DOMAIN "startup.example"
/* Enough tokens that the database spans dozens of pages. */
#define CORRUPT_DB_TOKENS 400

/* tokend's exit codes (server/main.c): 2 for bad flags, 1 for a start-up
 * that failed. */
#define EXIT_BAD_FLAGS 2
#define EXIT_START_FAILED 1

/* Runs tokend with args, which must refuse to start: exit status `status`,
 * and its whole output exactly one line that contains `word`; no socket
 * file afterwards. */
static void expect_refused(th_tokend_t *t, const char *const *args, int status,
                           const char *word) {
  char *log, *nl;
  size_t len;
  int got;

  /* Only this start's output counts. */
  if (truncate(t->log_path, 0) != 0 && errno != ENOENT)
    fail_msg("truncate %s: %s", t->log_path, strerror(errno));
  assert_int_equal(th_tokend_spawn(t, args), 0);
  got = th_tokend_wait_exit(t, TH_START_TIMEOUT_MS);
  if (got < 0) {
    th_tokend_dump_log(t);
    th_tokend_kill(t);
    fail_msg("tokend did not exit: it should have refused to start (%s)", word);
  }
  log = th_read_file(t->log_path, &len);
  assert_non_null(log);
  if (got != status)
    fail_msg("tokend exited with status %d, want %d; output:\n%s", got, status,
             log);
  nl = strchr(log, '\n');
  if (len == 0 || nl == NULL || nl[1] != '\0')
    fail_msg("tokend should explain in exactly one line, got %zu bytes:\n%s",
             len, log);
  if (strstr(log, word) == NULL)
    fail_msg("tokend's line should mention '%s':\n%s", word, log);
  free(log);
  if (th_path_exists(t->socket_path))
    fail_msg("tokend left a socket file at %s", t->socket_path);
}

static void test_db_in_missing_directory_refused(void **state) {
  th_fixture_t *f = *state;
  char missing[TH_DIR_BYTES + 16];

  snprintf(missing, sizeof(missing), "%s/missing", f->tokend.dir);
  snprintf(f->tokend.db_path, sizeof(f->tokend.db_path), "%s/tokend.db",
           missing);
  expect_refused(&f->tokend, NULL, EXIT_START_FAILED, f->tokend.db_path);
  /* An explicit path's directory is the operator's to create. */
  assert_false(th_path_exists(missing));
}

static void test_db_under_regular_file_refused(void **state) {
  th_fixture_t *f = *state;
  char file[TH_DIR_BYTES + 16];

  /* As root, permissions do not stop tokend; a parent that is a regular
   * file stops anyone. */
  snprintf(file, sizeof(file), "%s/plainfile", f->tokend.dir);
  th_write_file_ok(file, "x", 1, 0600);
  snprintf(f->tokend.db_path, sizeof(f->tokend.db_path), "%s/tokend.db", file);
  expect_refused(&f->tokend, NULL, EXIT_START_FAILED, f->tokend.db_path);
}

static void test_pepper_in_missing_directory_refused(void **state) {
  th_fixture_t *f = *state;

  snprintf(f->tokend.pepper_path, sizeof(f->tokend.pepper_path),
           "%s/missing/pepper", f->tokend.dir);
  expect_refused(&f->tokend, NULL, EXIT_START_FAILED, f->tokend.pepper_path);
  assert_false(th_path_exists(f->tokend.db_path));
}

static void test_pepper_wrong_size_refused(void **state) {
  th_fixture_t *f = *state;
  static const size_t sizes[] = {0, TOKEND_PEPPER_BYTES - 1,
                                 TOKEND_PEPPER_BYTES + 1, 4096};
  uint8_t pepper[4096];
  size_t i, len;
  char *after;

  memset(pepper, 0x5a, sizeof(pepper));
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    th_write_file_ok(f->tokend.pepper_path, pepper, sizes[i], 0600);
    expect_refused(&f->tokend, NULL, EXIT_START_FAILED, f->tokend.pepper_path);
    /* Neither truncated nor replaced. */
    after = th_read_file(f->tokend.pepper_path, &len);
    assert_non_null(after);
    assert_int_equal(len, sizes[i]);
    free(after);
  }
}

static void test_pepper_group_readable_refused(void **state) {
  th_fixture_t *f = *state;
  uint8_t pepper[TOKEND_PEPPER_BYTES];
  struct stat st;

  memset(pepper, 0x5a, sizeof(pepper));
  th_write_file_ok(f->tokend.pepper_path, pepper, sizeof(pepper), 0640);
  expect_refused(&f->tokend, NULL, EXIT_START_FAILED, f->tokend.pepper_path);
  assert_int_equal(stat(f->tokend.pepper_path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0640);
}

static void test_socket_path_longer_than_sun_path_refused(void **state) {
  th_fixture_t *f = *state;
  char name[121];

  /* sun_path holds 108 bytes with its NUL: this is well over. */
  memset(name, 'S', sizeof(name) - 1);
  name[sizeof(name) - 1] = '\0';
  snprintf(f->tokend.socket_path, sizeof(f->tokend.socket_path), "%s/%s",
           f->tokend.dir, name);
  assert_true(strlen(f->tokend.socket_path) >= 108);
  /* Refused as a bad flag, before any file is created. */
  expect_refused(&f->tokend, NULL, EXIT_BAD_FLAGS, "socket");
  /* Not cut short into some other path either: nothing was bound. */
  {
    char cut[TH_PATH_BYTES];

    snprintf(cut, sizeof(cut), "%.*s", 107, f->tokend.socket_path);
    assert_false(th_path_exists(cut));
  }
}

static void sql_int(sqlite3 *db, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;

  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  *out = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
}

/* Issues n tokens, pipelined on one connection. */
static void issue_many(const th_tokend_t *t, size_t n) {
  Tokend__V1__Response *r = NULL;
  int fd = th_connect(t->socket_path);
  size_t i;

  assert_true(fd >= 0);
  for (i = 0; i < n; i++)
    assert_int_equal(th_send_issue(fd, i + 1, DOMAIN, "to be corrupted"), 0);
  for (i = 0; i < n; i++) {
    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
    assert_true(r->status == NULL || r->status->code == 0);
    tokend__v1__response__free_unpacked(r, NULL);
  }
  close(fd);
}

static void test_corrupt_db_refused(void **state) {
  th_fixture_t *f = *state;
  int64_t page_size, pages, p;
  uint64_t x = 0x9e3779b97f4a7c15ull; /* fixed: the same garbage each run */
  uint8_t *page;
  char *before, *after;
  size_t before_len, after_len, i;
  sqlite3 *db = NULL;
  int fd, status;

  /* A real tokend database with some hundreds of tokens. */
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  issue_many(&f->tokend, CORRUPT_DB_TOKENS);
  status = th_tokend_stop(&f->tokend);
  assert_int_equal(status, 0);

  assert_int_equal(
      sqlite3_open_v2(f->tokend.db_path, &db, SQLITE_OPEN_READONLY, NULL),
      SQLITE_OK);
  sql_int(db, "PRAGMA page_size", &page_size);
  sql_int(db, "PRAGMA page_count", &pages);
  sqlite3_close(db);
  if (pages < 8)
    fail_msg("the database has only %lld pages", (long long)pages);

  /* Garbage over the middle half of the pages; page 1 (the header and the
   * schema) stays intact, so SQLite opens the file and the damage shows
   * only when tokend reads its tokens. */
  page = malloc((size_t)page_size);
  assert_non_null(page);
  fd = open(f->tokend.db_path, O_WRONLY);
  assert_true(fd >= 0);
  for (p = pages / 4; p < pages * 3 / 4; p++) {
    for (i = 0; i < (size_t)page_size; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      page[i] = (uint8_t)x;
    }
    assert_int_equal(pwrite(fd, page, (size_t)page_size, p * page_size),
                     page_size);
  }
  close(fd);
  free(page);
  before = th_read_file(f->tokend.db_path, &before_len);
  assert_non_null(before);

  expect_refused(&f->tokend, NULL, EXIT_START_FAILED, f->tokend.db_path);

  /* tokend did not try to "repair" the file: it is as it was. */
  after = th_read_file(f->tokend.db_path, &after_len);
  assert_non_null(after);
  assert_int_equal(after_len, before_len);
  assert_memory_equal(after, before, before_len);
  free(before);
  free(after);
}

/* ---- damage outside the tokens table, --check-db (issue 11, item 12) ---- */

/* Writes a page of fixed garbage over the root page of the index or table
 * named name. */
static void corrupt_root_page(const char *db_path, const char *name) {
  int64_t page_size, root;
  uint64_t x = 0x2545f4914f6cdd1dull;
  uint8_t *page;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  size_t i;
  int fd;

  assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  sql_int(db, "PRAGMA page_size", &page_size);
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT rootpage FROM sqlite_master "
                                      "WHERE name = ?1",
                                      -1, &st, NULL),
                   SQLITE_OK);
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  root = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  /* Page 1 holds the header and the schema: never it. */
  assert_true(root > 1);

  page = malloc((size_t)page_size);
  assert_non_null(page);
  for (i = 0; i < (size_t)page_size; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    page[i] = (uint8_t)x;
  }
  fd = open(db_path, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, page, (size_t)page_size, (root - 1) * page_size),
                   page_size);
  close(fd);
  free(page);
}

/* tokend --check-db on f's database: its exit status; *out its stdout. */
static int check_db(const th_tokend_t *t, char **out) {
  const char *argv[] = {TOKEND_BIN, "--db", t->db_path, "--check-db", NULL};
  th_run_result_t r;
  int status;

  assert_int_equal(th_run(argv, NULL, NULL, TH_START_TIMEOUT_MS, &r), 0);
  status = r.status;
  *out = r.out;
  r.out = NULL;
  th_run_result_free(&r);
  return status;
}

static void corrupt_outside_tokens_refused(th_fixture_t *f, const char *name) {
  char *out;

  /* Every Issue also writes an audit row: both the audit table and its
   * index span several pages. */
  char *healthy;
  size_t len;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  issue_many(&f->tokend, CORRUPT_DB_TOKENS);
  assert_int_equal(th_tokend_stop(&f->tokend), 0);
  healthy = th_read_file(f->tokend.db_path, &len);
  assert_non_null(healthy);

  corrupt_root_page(f->tokend.db_path, name);
  /* Loading tokens and admins never reads this page: only a check finds
   * it before List or ListAuditEvents would fail with INTERNAL. */
  expect_refused(&f->tokend, NULL, EXIT_START_FAILED, "--check-db");
  assert_int_equal(check_db(&f->tokend, &out), 1);
  assert_null(strstr(out, "\nok\n"));
  assert_non_null(strstr(out, "FAILED"));
  free(out);
  /* --check-db never serves. */
  assert_false(th_path_exists(f->tokend.socket_path));

  /* The same file before the damage passes. */
  th_write_file_ok(f->tokend.db_path, healthy, len, 0600);
  free(healthy);
  assert_int_equal(check_db(&f->tokend, &out), 0);
  assert_non_null(strstr(out, ": ok\n"));
  free(out);
}

static void test_corrupt_audit_index_refused(void **state) {
  corrupt_outside_tokens_refused(*state, "audit_domain_id");
}

static void test_corrupt_audit_table_refused(void **state) {
  corrupt_outside_tokens_refused(*state, "audit_events");
}

/* ---- the database and its pepper (issue 11, item 3) ---- */

/* Starts tokend, issues one token (so the database is not empty), stops. */
static void make_db_with_token(th_tokend_t *t) {
  assert_int_equal(th_tokend_start(t, NULL), 0);
  issue_many(t, 1);
  assert_int_equal(th_tokend_stop(t), 0);
}

/* The log of the last start holds a warn line containing word. */
static void expect_warned(const th_tokend_t *t, const char *word) {
  char *log = th_read_file(t->log_path, NULL), *line;
  int found = 0;

  assert_non_null(log);
  for (line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n"))
    found |= strstr(line, " warn ") != NULL && strstr(line, word) != NULL;
  free(log);
  if (!found) {
    th_tokend_dump_log(t);
    fail_msg("no warn line mentioning '%s' in tokend's log", word);
  }
}

static void test_pepper_deleted_with_tokens_refused(void **state) {
  th_fixture_t *f = *state;

  make_db_with_token(&f->tokend);
  assert_int_equal(unlink(f->tokend.pepper_path), 0);
  expect_refused(&f->tokend, NULL, EXIT_START_FAILED, f->tokend.pepper_path);
  /* No new pepper either: the one that made the hashes is to be restored. */
  assert_false(th_path_exists(f->tokend.pepper_path));
}

static void test_wrong_pepper_refused(void **state) {
  th_fixture_t *f = *state;
  uint8_t other[TOKEND_PEPPER_BYTES];
  char *before;
  size_t len;

  make_db_with_token(&f->tokend);
  before = th_read_file(f->tokend.pepper_path, &len);
  assert_non_null(before);
  assert_int_equal(len, TOKEND_PEPPER_BYTES);
  memcpy(other, before, sizeof(other));
  other[0] ^= 1; /* one bit is enough */
  th_write_file_ok(f->tokend.pepper_path, other, sizeof(other), 0600);
  expect_refused(&f->tokend, NULL, EXIT_START_FAILED, "fingerprint");
  /* The right one starts again. */
  th_write_file_ok(f->tokend.pepper_path, before, len, 0600);
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  free(before);
}

static void test_missing_db_without_create_db_refused(void **state) {
  th_fixture_t *f = *state;

  f->tokend.no_create_db = 1;
  expect_refused(&f->tokend, NULL, EXIT_START_FAILED, "--create-db");
  assert_false(th_path_exists(f->tokend.db_path));
  assert_false(th_path_exists(f->tokend.pepper_path));

  /* A database deleted after its first start: the same, and the pepper is
   * left as it was. */
  f->tokend.no_create_db = 0;
  make_db_with_token(&f->tokend);
  /* An existing database needs no --create-db. */
  f->tokend.no_create_db = 1;
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  assert_int_equal(th_tokend_stop(&f->tokend), 0);
  assert_int_equal(unlink(f->tokend.db_path), 0);
  expect_refused(&f->tokend, NULL, EXIT_START_FAILED, f->tokend.db_path);
  assert_false(th_path_exists(f->tokend.db_path));
  assert_true(th_path_exists(f->tokend.pepper_path));
}

static void test_new_pepper_only_with_new_db_logged(void **state) {
  th_fixture_t *f = *state;

  /* First start: both are new, and said so at warn. */
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  expect_warned(&f->tokend, "created a new pepper");
  expect_warned(&f->tokend, "created a new, empty database");
  assert_int_equal(th_tokend_stop(&f->tokend), 0);
  /* An empty database (nothing issued, granted or audited) may get a new
   * pepper: nothing was hashed with the old one. */
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT (SELECT count(*) FROM tokens) + "
                               "(SELECT count(*) FROM audit_events)"),
                   0);
  assert_int_equal(unlink(f->tokend.pepper_path), 0);
  assert_int_equal(truncate(f->tokend.log_path, 0), 0);
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  expect_warned(&f->tokend, "created a new pepper");
  issue_many(&f->tokend, 1);
  assert_int_equal(th_tokend_stop(&f->tokend), 0);
  /* The database records the new pepper's fingerprint, never the pepper. */
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT length(value) FROM meta"
                               " WHERE key = 'pepper_fingerprint'"),
                   32);
  {
    char *pepper = th_read_file(f->tokend.pepper_path, NULL);
    assert_non_null(pepper);
    assert_false(
        th_file_contains(f->tokend.db_path, pepper, TOKEND_PEPPER_BYTES));
    free(pepper);
  }
}

typedef struct {
  const char *args[7];
  const char *word; /* the refusal must mention this */
} bad_flags_t;

static void test_bad_flags_refused(void **state) {
  th_fixture_t *f = *state;
  static const bad_flags_t cases[] = {
      {{"--max-frame-bytes", "0", NULL}, "--max-frame-bytes"},
      {{"--max-frame-bytes", "63", NULL}, "--max-frame-bytes"},
      {{"--max-frame-bytes", "99999999999999999999", NULL},
       "--max-frame-bytes"},
      {{"--max-connections", "abc", NULL}, "--max-connections"},
      {{"--max-connections", "0", NULL}, "--max-connections"},
      {{"--read-timeout-ms", "-5", NULL}, "--read-timeout-ms"},
      {{"--idle-timeout-ms", "1x", NULL}, "--idle-timeout-ms"},
      {{"--max-request-memory", "", NULL}, "--max-request-memory"},
      {{"--max-queued-bytes", "8192", "--max-queued-bytes-hard", "4096", NULL},
       "--max-queued-bytes-hard"},
      {{"--log-level", "loud", NULL}, "--log-level"},
      {{"--token-prefix", "Bad!", NULL}, "--token-prefix"},
      {{"--no-such-flag", NULL}, "--no-such-flag"},
      {{"--flush-interval-ms", NULL}, "--flush-interval-ms"},
      {{"stray-argument", NULL}, "stray-argument"},
  };
  size_t i;

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    expect_refused(&f->tokend, cases[i].args, EXIT_BAD_FLAGS, cases[i].word);
    /* Refused before touching the disk. */
    if (th_path_exists(f->tokend.db_path) ||
        th_path_exists(f->tokend.pepper_path))
      fail_msg("case %zu (%s): tokend created files before refusing its "
               "flags",
               i, cases[i].word);
  }
}

/* ---- --store URL (issue 12) ---- */

/* --store sqlite:PATH serves from PATH (after --db, it wins), --check-db
 * checks it, and an unknown scheme is one line naming the schemes. */
static void test_store_url_selects_database(void **state) {
  th_fixture_t *f = *state;
  char path[TH_PATH_BYTES + 16], url[TH_PATH_BYTES + 32];
  const char *args[] = {"--store", url, NULL};
  const char *check[] = {TOKEND_BIN, "--store", url, "--check-db", NULL};
  const char *unknown[] = {"--store", "foo:bar", NULL};
  th_run_result_t r;

  snprintf(path, sizeof(path), "%s/by-url.db", f->tokend.dir);
  snprintf(url, sizeof(url), "sqlite:%s", path);
  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  assert_int_equal(th_tokend_stop(&f->tokend), 0);
  assert_true(th_path_exists(path));
  assert_false(th_path_exists(f->tokend.db_path));
  assert_int_equal(th_db_count(path, "PRAGMA user_version"), 6);

  assert_int_equal(th_run(check, NULL, NULL, TH_START_TIMEOUT_MS, &r), 0);
  assert_int_equal(r.status, 0);
  assert_non_null(r.out);
  assert_non_null(strstr(r.out, "by-url.db: ok"));
  th_run_result_free(&r);

  expect_refused(&f->tokend, unknown, EXIT_BAD_FLAGS,
                 "unknown store scheme 'foo' in --store foo:bar; this build "
                 "has: sqlite");
  assert_false(th_path_exists(f->tokend.db_path));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_db_in_missing_directory_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_db_under_regular_file_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_pepper_in_missing_directory_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_pepper_wrong_size_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_pepper_group_readable_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_socket_path_longer_than_sun_path_refused, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_db_refused, th_fixture_setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_bad_flags_refused, th_fixture_setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_audit_index_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_audit_table_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_pepper_deleted_with_tokens_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_wrong_pepper_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_missing_db_without_create_db_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_new_pepper_only_with_new_db_logged,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_store_url_selects_database,
                                      th_fixture_setup, th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
