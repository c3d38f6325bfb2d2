/* Unit tests for common/log: level parsing, filtering and the line format. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tokend_error.h"

#define CAPTURE_BYTES 4096

/* stderr is redirected to a temporary file while a test logs. */
static FILE *capture_file;
static int saved_stderr = -1;

static void capture_start(void) {
  capture_file = tmpfile();
  assert_non_null(capture_file);
  fflush(stderr);
  saved_stderr = dup(STDERR_FILENO);
  assert_true(saved_stderr >= 0);
  assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was logged (NUL-terminated). */
static size_t capture_end(char *out, size_t out_len) {
  size_t n;

  fflush(stderr);
  assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
  close(saved_stderr);
  saved_stderr = -1;
  rewind(capture_file);
  n = fread(out, 1, out_len - 1, capture_file);
  out[n] = '\0';
  fclose(capture_file);
  capture_file = NULL;
  return n;
}

/* Runs first, before any test changes the level. */
static void test_log_default_level_is_info(void **state) {
  assert_int_equal(log_get_level(), LOG_INFO);
}

static void test_log_level_parse_names(void **state) {
  log_level_t level = LOG_ERROR;

  assert_int_equal(log_level_parse("debug", &level), 0);
  assert_int_equal(level, LOG_DEBUG);
  assert_int_equal(log_level_parse("info", &level), 0);
  assert_int_equal(level, LOG_INFO);
  assert_int_equal(log_level_parse("warn", &level), 0);
  assert_int_equal(level, LOG_WARN);
  assert_int_equal(log_level_parse("error", &level), 0);
  assert_int_equal(level, LOG_ERROR);
}

static void test_log_level_parse_rejects_unknown(void **state) {
  static const char *const bad[] = {"",      "DEBUG", "warning", "err",
                                    "info ", "trace", "fatal"};
  log_level_t level = LOG_WARN;
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(log_level_parse(bad[i], &level), TOKEND_EINVAL);
    assert_int_equal(level, LOG_WARN);
  }
}

static void test_log_line_format(void **state) {
  char out[CAPTURE_BYTES];
  regex_t re;

  assert_int_equal(regcomp(&re,
                           "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                           "[0-9]{2}\\.[0-9]{3}Z warn  hello 42\n$",
                           REG_EXTENDED | REG_NOSUB),
                   0);
  log_set_level(LOG_INFO);
  capture_start();
  log_warn("hello %d", 42);
  capture_end(out, sizeof(out));
  if (regexec(&re, out, 0, NULL, 0) != 0)
    fail_msg("bad log line: \"%s\"", out);
  regfree(&re);
}

static void test_log_lines_below_level_dropped(void **state) {
  char out[CAPTURE_BYTES];

  log_set_level(LOG_WARN);
  assert_int_equal(log_get_level(), LOG_WARN);
  capture_start();
  log_debug("d-line");
  log_info("i-line");
  log_warn("w-line");
  log_error("e-line");
  capture_end(out, sizeof(out));
  log_set_level(LOG_INFO);
  assert_null(strstr(out, "d-line"));
  assert_null(strstr(out, "i-line"));
  assert_non_null(strstr(out, " warn  w-line\n"));
  assert_non_null(strstr(out, " error e-line\n"));

  log_set_level(LOG_DEBUG);
  capture_start();
  log_debug("d-line");
  capture_end(out, sizeof(out));
  log_set_level(LOG_INFO);
  assert_non_null(strstr(out, " debug d-line\n"));
}

/* A long message is cut, but still comes out as one newline-ended line. */
static void test_log_long_message_cut_to_one_line(void **state) {
  char msg[3000], out[CAPTURE_BYTES];
  size_t n;

  memset(msg, 'm', sizeof(msg) - 1);
  msg[sizeof(msg) - 1] = '\0';
  log_set_level(LOG_INFO);
  capture_start();
  log_info("%s", msg);
  n = capture_end(out, sizeof(out));
  /* Cut (the message alone is longer), but not to nothing. */
  assert_true(n < sizeof(msg));
  assert_true(n > 512);
  assert_int_equal(out[n - 1], '\n');
  assert_ptr_equal(strchr(out, '\n'), out + n - 1);
  assert_int_equal(out[n - 2], 'm');
}

/* Within an interval only the first line goes out; the rest are counted,
 * and the first line after the interval reports how many. */
static void test_log_limit_one_per_interval_then_count(void **state) {
  log_limit_t l = LOG_LIMIT_INIT(1000);
  uint64_t held = 99;
  int i;

  assert_int_equal(log_limit_allow(&l, 5000, &held), 1);
  assert_int_equal(held, 0);
  for (i = 0; i < 500; i++)
    assert_int_equal(log_limit_allow(&l, 5000 + (uint64_t)i, &held), 0);
  assert_int_equal(log_limit_allow(&l, 5999, &held), 0);
  assert_int_equal(log_limit_allow(&l, 6000, &held), 1);
  assert_int_equal(held, 501);
  /* The count starts again. */
  assert_int_equal(log_limit_allow(&l, 7000, &held), 1);
  assert_int_equal(held, 0);
}

/* The first line ever goes out whatever the clock says (even at 0). */
static void test_log_limit_first_line_always_out(void **state) {
  log_limit_t l;
  uint64_t held = 7;

  log_limit_init(&l, 60000);
  assert_int_equal(log_limit_allow(&l, 0, &held), 1);
  assert_int_equal(held, 0);
  assert_int_equal(log_limit_allow(&l, 1, &held), 0);
}

/* A flood through log_limited() is one line, and the next line out says how
 * many were held back. */
static void test_log_limited_flood_is_one_line_with_count(void **state) {
  log_limit_t l = LOG_LIMIT_INIT(60000);
  char out[CAPTURE_BYTES];
  int i, lines = 0;
  char *p;

  log_set_level(LOG_INFO);
  capture_start();
  for (i = 0; i < 10000; i++)
    lines += log_limited(&l, LOG_WARN, "write failed (%d)", i);
  /* The interval is over: the next line carries the count. */
  l.next_ms = 0;
  lines += log_limited(&l, LOG_WARN, "write failed (%s)", "again");
  capture_end(out, sizeof(out));
  assert_int_equal(lines, 2);
  for (p = out, i = 0; (p = strchr(p, '\n')) != NULL; p++)
    i++;
  assert_int_equal(i, 2);
  assert_non_null(strstr(out, " warn  write failed (0)\n"));
  assert_non_null(strstr(out, "write failed (again) (9999 more like this)\n"));
}

/* The count survives a message too long for a line. */
static void test_log_limited_count_kept_when_cut(void **state) {
  log_limit_t l = LOG_LIMIT_INIT(60000);
  char msg[3000], out[CAPTURE_BYTES];
  size_t n;

  memset(msg, 'm', sizeof(msg) - 1);
  msg[sizeof(msg) - 1] = '\0';
  log_set_level(LOG_INFO);
  capture_start();
  assert_int_equal(log_limited(&l, LOG_ERROR, "%s", msg), 1);
  assert_int_equal(log_limited(&l, LOG_ERROR, "%s", msg), 0);
  l.next_ms = 0;
  assert_int_equal(log_limited(&l, LOG_ERROR, "%s", msg), 1);
  n = capture_end(out, sizeof(out));
  assert_int_equal(out[n - 1], '\n');
  assert_non_null(strstr(out, "m (1 more like this)\n"));
}

/* A line below the level is neither written nor counted as held back. */
static void test_log_limited_below_level_not_counted(void **state) {
  log_limit_t l = LOG_LIMIT_INIT(60000);
  char out[CAPTURE_BYTES];

  log_set_level(LOG_ERROR);
  capture_start();
  assert_int_equal(log_limited(&l, LOG_WARN, "quiet"), 0);
  capture_end(out, sizeof(out));
  log_set_level(LOG_INFO);
  assert_string_equal(out, "");
  assert_int_equal(l.suppressed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_default_level_is_info),
      cmocka_unit_test(test_log_level_parse_names),
      cmocka_unit_test(test_log_level_parse_rejects_unknown),
      cmocka_unit_test(test_log_line_format),
      cmocka_unit_test(test_log_lines_below_level_dropped),
      cmocka_unit_test(test_log_long_message_cut_to_one_line),
      cmocka_unit_test(test_log_limit_one_per_interval_then_count),
      cmocka_unit_test(test_log_limit_first_line_always_out),
      cmocka_unit_test(test_log_limited_flood_is_one_line_with_count),
      cmocka_unit_test(test_log_limited_count_kept_when_cut),
      cmocka_unit_test(test_log_limited_below_level_not_counted),
  };

  return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
