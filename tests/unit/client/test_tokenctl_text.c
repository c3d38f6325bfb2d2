/* tokenctl's option parsing (client/tokenctl/opts.c) and output for people
 * (table.c), driven directly: no tokend, no process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include "ctl.h"
#include "table.h"

static void test_parse_uint_bounds(void **state) {
  unsigned long long v = 7;

  (void)state;
  assert_int_equal(ctl_parse_uint("0", 1000, &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(ctl_parse_uint("1000", 1000, &v), 0);
  assert_int_equal(v, 1000);
  assert_int_equal(ctl_parse_uint("1001", 1000, &v), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_uint("18446744073709551615", ULLONG_MAX, &v), 0);
  assert_true(v == ULLONG_MAX);
  assert_int_equal(ctl_parse_uint("18446744073709551616", ULLONG_MAX, &v),
                   TOKEND_EINVAL);
  assert_int_equal(ctl_parse_uint("", 1000, &v), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_uint("-1", 1000, &v), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_uint(" 1", 1000, &v), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_uint("1x", 1000, &v), TOKEND_EINVAL);
  /* A max below one digit: max - digit must not wrap. */
  assert_int_equal(ctl_parse_uint("5", 5, &v), 0);
  assert_int_equal(ctl_parse_uint("7", 5, &v), TOKEND_EINVAL);
}

static void test_parse_duration_units(void **state) {
  const char *why = NULL;
  int64_t ms = 0;

  (void)state;
  assert_int_equal(ctl_parse_duration_ms("90s", 0, &ms, &why), 0);
  assert_int_equal(ms, 90000);
  assert_int_equal(ctl_parse_duration_ms("15m", 0, &ms, &why), 0);
  assert_int_equal(ms, 15 * 60000);
  assert_int_equal(ctl_parse_duration_ms("12h", 0, &ms, &why), 0);
  assert_int_equal(ms, 12 * 3600000);
  assert_int_equal(ctl_parse_duration_ms("30d", 0, &ms, &why), 0);
  assert_int_equal(ms, 30LL * 86400000);
  assert_int_equal(ctl_parse_duration_ms("2w", 0, &ms, &why), 0);
  assert_int_equal(ms, 14LL * 86400000);
}

static void test_parse_duration_refusals_say_why(void **state) {
  const char *why = NULL;
  int64_t ms = 0;

  (void)state;
  assert_int_equal(ctl_parse_duration_ms("0s", 0, &ms, &why), TOKEND_EINVAL);
  assert_string_equal(why, "must be more than 0");
  assert_int_equal(ctl_parse_duration_ms("10", 0, &ms, &why), TOKEND_EINVAL);
  assert_non_null(strstr(why, "a whole number and a unit"));
  assert_int_equal(ctl_parse_duration_ms("s", 0, &ms, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_duration_ms("1 d", 0, &ms, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_duration_ms("10y", 0, &ms, &why), TOKEND_EINVAL);
}

/* now + the duration must fit an int64: one second more than fits is
 * refused, the second that fits is not. */
static void test_parse_duration_overflow_edge(void **state) {
  const char *why = NULL;
  int64_t ms = 0, now = INT64_MAX - 1999;

  (void)state;
  assert_int_equal(ctl_parse_duration_ms("1s", now, &ms, &why), 0);
  assert_int_equal(ms, 1000);
  assert_int_equal(ctl_parse_duration_ms("2s", now, &ms, &why), TOKEND_EINVAL);
  assert_string_equal(why, "too far in the future");
  assert_int_equal(ctl_parse_duration_ms("99999999999999999999w", 0, &ms, &why),
                   TOKEND_EINVAL);
  assert_string_equal(why, "too far in the future");
}

/* A terminal must get no escape from a table, and JSON only UTF-8. */
static void test_copy_text_replaces_controls_and_bad_utf8(void **state) {
  char out[64];

  (void)state;
  ctl_copy_text(out, sizeof(out), "a\x1b[31mb\x7f");
  assert_string_equal(out, "a?[31mb?");
  ctl_copy_text(out, sizeof(out), "caf\xc3\xa9 \xe6\x97\xa5");
  assert_string_equal(out, "caf\xc3\xa9 \xe6\x97\xa5");
  /* Half a character at the end, an overlong '/', a surrogate. */
  ctl_copy_text(out, sizeof(out), "x\xc3");
  assert_string_equal(out, "x?");
  ctl_copy_text(out, sizeof(out), "\xc0\xaf");
  assert_string_equal(out, "??");
  ctl_copy_text(out, sizeof(out), "\xed\xa0\x80");
  assert_string_equal(out, "???");
}

static void test_copy_text_cuts_whole_characters(void **state) {
  char out[4];

  (void)state;
  /* "ab" + a 2-byte character needs 5 bytes with the NUL: the character
   * goes whole. */
  ctl_copy_text(out, sizeof(out), "ab\xc3\xa9");
  assert_string_equal(out, "ab");
  ctl_copy_text(out, sizeof(out), "abcdef");
  assert_string_equal(out, "abc");
}

static void test_times_for_people(void **state) {
  char buf[32];

  (void)state;
  ctl_fmt_iso(1764410823000, buf, sizeof(buf));
  assert_string_equal(buf, "2025-11-29T10:07:03Z");
  ctl_fmt_short(1764410823000, buf, sizeof(buf));
  assert_string_equal(buf, "2025-11-29 10:07");
  ctl_fmt_seconds(1764410823000, buf, sizeof(buf));
  assert_string_equal(buf, "2025-11-29 10:07:03");
  ctl_fmt_iso(0, buf, sizeof(buf));
  assert_string_equal(buf, "never");
  ctl_fmt_short(0, buf, sizeof(buf));
  assert_string_equal(buf, "-");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_uint_bounds),
      cmocka_unit_test(test_parse_duration_units),
      cmocka_unit_test(test_parse_duration_refusals_say_why),
      cmocka_unit_test(test_parse_duration_overflow_edge),
      cmocka_unit_test(test_copy_text_replaces_controls_and_bad_utf8),
      cmocka_unit_test(test_copy_text_cuts_whole_characters),
      cmocka_unit_test(test_times_for_people),
  };
  return cmocka_run_group_tests_name("tokenctl_text", tests, NULL, NULL);
}
