/* tokenctl's option parsing (client/tokenctl/opts.c), output for people
 * (table.c) and --json's RFC 3339 times (json.c), driven directly: no
 * tokend, no process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "json.h"
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

static void test_parse_duration_compound(void **state) {
  const char *why = NULL;
  int64_t ms = 0;

  (void)state;
  assert_int_equal(ctl_parse_duration_ms("1h30m", 0, &ms, &why), 0);
  assert_int_equal(ms, 90 * 60000);
  assert_int_equal(ctl_parse_duration_ms("2d12h", 0, &ms, &why), 0);
  assert_int_equal(ms, 60LL * 3600000);
  assert_int_equal(ctl_parse_duration_ms("500ms", 0, &ms, &why), 0);
  assert_int_equal(ms, 500);
  assert_int_equal(ctl_parse_duration_ms("1m500ms", 0, &ms, &why), 0);
  assert_int_equal(ms, 60500);
  assert_int_equal(ctl_parse_duration_ms("1w1d1h1m1s1ms", 0, &ms, &why), 0);
  assert_int_equal(ms, 8LL * 86400000 + 3600000 + 60000 + 1000 + 1);
  /* "m" then digits is minutes, "ms" milliseconds. */
  assert_int_equal(ctl_parse_duration_ms("5m3s", 0, &ms, &why), 0);
  assert_int_equal(ms, 5 * 60000 + 3000);
}

static void test_parse_duration_refusals_say_why(void **state) {
  const char *why = NULL;
  int64_t ms = 0;

  (void)state;
  assert_int_equal(ctl_parse_duration_ms("0s", 0, &ms, &why), TOKEND_EINVAL);
  assert_string_equal(why, "must be more than 0");
  assert_int_equal(ctl_parse_duration_ms("0h0m", 0, &ms, &why), TOKEND_EINVAL);
  assert_string_equal(why, "must be more than 0");
  assert_int_equal(ctl_parse_duration_ms("10", 0, &ms, &why), TOKEND_EINVAL);
  assert_non_null(strstr(why, "whole numbers with units"));
  assert_int_equal(ctl_parse_duration_ms("s", 0, &ms, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_duration_ms("", 0, &ms, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_duration_ms("1 d", 0, &ms, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_duration_ms("10y", 0, &ms, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_duration_ms("1h30", 0, &ms, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_duration_ms("1hm", 0, &ms, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_duration_ms("-1h", 0, &ms, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_duration_ms("1h+1m", 0, &ms, &why), TOKEND_EINVAL);
  /* A typo after a too-long term is the message. */
  assert_int_equal(ctl_parse_duration_ms("99999d1x", 0, &ms, &why),
                   TOKEND_EINVAL);
  assert_non_null(strstr(why, "whole numbers with units"));
}

/* 10 years is the most any flag takes: 3653d passes, a millisecond more
 * (in one term or spread over several) does not. */
static void test_parse_duration_upper_bound(void **state) {
  const char *why = NULL;
  int64_t ms = 0;

  (void)state;
  assert_int_equal(ctl_parse_duration_ms("3653d", 0, &ms, &why), 0);
  assert_int_equal(ms, (int64_t)CTL_DURATION_MAX_MS);
  assert_int_equal(ctl_parse_duration_ms("3653d1ms", 0, &ms, &why),
                   TOKEND_EINVAL);
  assert_non_null(strstr(why, "10 years"));
  assert_int_equal(ctl_parse_duration_ms("3654d", 0, &ms, &why), TOKEND_EINVAL);
  assert_non_null(strstr(why, "10 years"));
  assert_int_equal(ctl_parse_duration_ms("3000d3000d", 0, &ms, &why),
                   TOKEND_EINVAL);
  assert_non_null(strstr(why, "10 years"));
  assert_int_equal(ctl_parse_duration_ms("315619200001ms", 0, &ms, &why),
                   TOKEND_EINVAL);
  assert_int_equal(ctl_parse_duration_ms("521w", 0, &ms, &why), 0);
  assert_int_equal(ctl_parse_duration_ms("522w", 0, &ms, &why), TOKEND_EINVAL);
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
  /* Digits beyond any integer: refused as too long, no wrap. */
  assert_int_equal(
      ctl_parse_duration_ms("99999999999999999999999w", 0, &ms, &why),
      TOKEND_EINVAL);
  assert_non_null(strstr(why, "10 years"));
  assert_int_equal(
      ctl_parse_duration_ms("18446744073709551617ms", 0, &ms, &why),
      TOKEND_EINVAL);
  assert_non_null(strstr(why, "10 years"));
}

static void test_parse_time_iso_and_unix_ms(void **state) {
  const char *why = NULL;
  int64_t t = 0;

  (void)state;
  /* 2027-01-31T00:00:00Z is 1801353600 s. */
  assert_int_equal(ctl_parse_time_ms("2027-01-31", &t, &why), 0);
  assert_int_equal(t, 1801353600000LL);
  assert_int_equal(ctl_parse_time_ms("2027-01-31T12:00:00Z", &t, &why), 0);
  assert_int_equal(t, 1801353600000LL + 12 * 3600000LL);
  assert_int_equal(ctl_parse_time_ms("2027-01-31t12:00z", &t, &why), 0);
  assert_int_equal(t, 1801353600000LL + 12 * 3600000LL);
  assert_int_equal(ctl_parse_time_ms("2027-01-31 12:00:00Z", &t, &why), 0);
  assert_int_equal(t, 1801353600000LL + 12 * 3600000LL);
  /* Offsets: 12:00 at +02:00 is 10:00 UTC; -0530 is 17:30 UTC. */
  assert_int_equal(ctl_parse_time_ms("2027-01-31T12:00:00+02:00", &t, &why), 0);
  assert_int_equal(t, 1801353600000LL + 10 * 3600000LL);
  assert_int_equal(ctl_parse_time_ms("2027-01-31T12:00-0530", &t, &why), 0);
  assert_int_equal(t, 1801353600000LL + 17 * 3600000LL + 30 * 60000LL);
  /* Fractions keep milliseconds. */
  assert_int_equal(ctl_parse_time_ms("2027-01-31T00:00:01.5Z", &t, &why), 0);
  assert_int_equal(t, 1801353601500LL);
  assert_int_equal(ctl_parse_time_ms("2027-01-31T00:00:01.123456Z", &t, &why),
                   0);
  assert_int_equal(t, 1801353601123LL);
  /* Leap days, and the epoch. */
  assert_int_equal(ctl_parse_time_ms("2028-02-29", &t, &why), 0);
  assert_int_equal(t, 1835395200000LL);
  assert_int_equal(ctl_parse_time_ms("2000-02-29", &t, &why), 0);
  assert_int_equal(t, 951782400000LL);
  assert_int_equal(ctl_parse_time_ms("1970-01-01T00:00:00Z", &t, &why), 0);
  assert_int_equal(t, 0);
  /* Unix ms as before. */
  assert_int_equal(ctl_parse_time_ms("1801353600000", &t, &why), 0);
  assert_int_equal(t, 1801353600000LL);
}

static void test_parse_time_refusals_say_why(void **state) {
  const char *why = NULL;
  int64_t t = 0;

  (void)state;
  /* No zone: refused, never read in $TZ. */
  assert_int_equal(ctl_parse_time_ms("2027-01-31T12:00", &t, &why),
                   TOKEND_EINVAL);
  assert_non_null(strstr(why, "zone"));
  assert_int_equal(ctl_parse_time_ms("2027-02-29", &t, &why), TOKEND_EINVAL);
  assert_string_equal(why, "not a valid date or time");
  assert_int_equal(ctl_parse_time_ms("1900-02-29", &t, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_time_ms("2027-13-01", &t, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_time_ms("2027-04-31", &t, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_time_ms("2027-01-31T24:00Z", &t, &why),
                   TOKEND_EINVAL);
  assert_int_equal(ctl_parse_time_ms("1969-12-31", &t, &why), TOKEND_EINVAL);
  assert_string_equal(why, "before 1970");
  assert_int_equal(ctl_parse_time_ms("1970-01-01T00:30+01:00", &t, &why),
                   TOKEND_EINVAL);
  assert_string_equal(why, "before 1970");
  assert_int_equal(ctl_parse_time_ms("2027-1-31", &t, &why), TOKEND_EINVAL);
  assert_non_null(strstr(why, "2027-01-31"));
  assert_int_equal(ctl_parse_time_ms("2027-01-31Z", &t, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_time_ms("2027-01-31T12:00:00Zjunk", &t, &why),
                   TOKEND_EINVAL);
  assert_int_equal(ctl_parse_time_ms("2027-01-31T12:00:00.Z", &t, &why),
                   TOKEND_EINVAL);
  assert_int_equal(ctl_parse_time_ms("tomorrow", &t, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_time_ms("", &t, &why), TOKEND_EINVAL);
  assert_int_equal(ctl_parse_time_ms("99999999999999999999", &t, &why),
                   TOKEND_EINVAL);
}

/* --since's WHEN: a duration ago, or a time. */
static void test_parse_when(void **state) {
  const char *why = NULL;
  int64_t now = 1801353600000LL, t = 0;

  (void)state;
  assert_int_equal(ctl_parse_when("1h30m", now, &t, &why), 0);
  assert_int_equal(t, now - 90 * 60000);
  assert_int_equal(ctl_parse_when("2027-01-30", now, &t, &why), 0);
  assert_int_equal(t, now - 86400000LL);
  assert_int_equal(ctl_parse_when("1000", now, &t, &why), 0);
  assert_int_equal(t, 1000);
  /* Before 1970 is everything. */
  assert_int_equal(ctl_parse_when("3000d", 86400000, &t, &why), 0);
  assert_int_equal(t, 0);
  assert_int_equal(ctl_parse_when("yesterday", now, &t, &why), TOKEND_EINVAL);
  assert_non_null(strstr(why, "duration ago"));
}

static void test_edit_distance(void **state) {
  (void)state;
  assert_int_equal(ctl_edit_distance("revoke", "revoke"), 0);
  assert_int_equal(ctl_edit_distance("revok", "revoke"), 1);
  assert_int_equal(ctl_edit_distance("rvoke", "revoke"), 1);
  assert_int_equal(ctl_edit_distance("revoek", "revoke"), 2);
  assert_int_equal(ctl_edit_distance("", "list"), 4);
  assert_int_equal(ctl_edit_distance("kitten", "sitting"), 3);
  assert_int_equal(ctl_edit_distance("flaw", "lawn"), 2);
}

static void test_suggest_did_you_mean(void **state) {
  static const char *const names[] = {"issue",  "verify", "revoke", "list",
                                      "admins", "audit",  "whoami", "status",
                                      "backup", "help"};
  const size_t n = sizeof(names) / sizeof(names[0]);

  (void)state;
  assert_string_equal(ctl_suggest("revok", names, n), "revoke");
  assert_string_equal(ctl_suggest("revoek", names, n), "revoke");
  assert_string_equal(ctl_suggest("isue", names, n), "issue");
  assert_string_equal(ctl_suggest("lst", names, n), "list");
  assert_string_equal(ctl_suggest("veirfy", names, n), "verify");
  assert_string_equal(ctl_suggest("audi", names, n), "audit");
  /* A unique prefix beats two edits elsewhere. */
  assert_string_equal(ctl_suggest("st", names, n), "status");
  assert_string_equal(ctl_suggest("bac", names, n), "backup");
  /* Nothing near: no guess. */
  assert_null(ctl_suggest("frobnicate", names, n));
  assert_null(ctl_suggest("x", names, n));
  assert_null(ctl_suggest("", names, n));
  /* Longer than anything compared. */
  assert_null(
      ctl_suggest("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                  "aaaaaaaaaaaaaaaaaaaa",
                  names, n));
}

static void test_rfc3339_siblings(void **state) {
  json_t *in, *out;
  char buf[48], *text;

  (void)state;
  assert_int_equal(ctl_fmt_rfc3339(1801353601500LL, buf, sizeof(buf)), 0);
  assert_string_equal(buf, "2027-01-31T00:00:01.500Z");
  assert_int_equal(ctl_fmt_rfc3339(0, buf, sizeof(buf)), 0);
  assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
  assert_int_equal(ctl_fmt_rfc3339(-1, buf, sizeof(buf)), TOKEND_EINVAL);

  in = json_pack("{s:s, s:I, s:n, s:[{s:I, s:s}], s:{s:I}, s:I, s:I, s:s}",
                 "id", "tok_1", "created_at", (json_int_t)1801353600000LL,
                 "expires_at", "tokens", "time", (json_int_t)1000, "x", "y",
                 "propagation", "revision", (json_int_t)7, "since",
                 (json_int_t)0, "count", (json_int_t)3, "revoked_at", "n/a");
  assert_non_null(in);
  out = ctl_json_with_rfc3339(in);
  assert_non_null(out);
  text = json_dumps(out, JSON_PRESERVE_ORDER | JSON_COMPACT);
  assert_non_null(text);
  /* Every existing key kept as it was, each time followed by its twin;
   * not-set stays null; non-times and non-integers get none. */
  assert_string_equal(
      text, "{\"id\":\"tok_1\",\"created_at\":1801353600000,"
            "\"created_at_rfc3339\":\"2027-01-31T00:00:00.000Z\","
            "\"expires_at\":null,\"expires_at_rfc3339\":null,"
            "\"tokens\":[{\"time\":1000,"
            "\"time_rfc3339\":\"1970-01-01T00:00:01.000Z\",\"x\":\"y\"}],"
            "\"propagation\":{\"revision\":7},\"since\":0,"
            "\"since_rfc3339\":\"1970-01-01T00:00:00.000Z\",\"count\":3,"
            "\"revoked_at\":\"n/a\"}");
  /* The input is left as it was. */
  assert_null(json_object_get(in, "created_at_rfc3339"));
  free(text);
  json_decref(out);
  json_decref(in);
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
      cmocka_unit_test(test_parse_duration_compound),
      cmocka_unit_test(test_parse_duration_refusals_say_why),
      cmocka_unit_test(test_parse_duration_upper_bound),
      cmocka_unit_test(test_parse_duration_overflow_edge),
      cmocka_unit_test(test_parse_time_iso_and_unix_ms),
      cmocka_unit_test(test_parse_time_refusals_say_why),
      cmocka_unit_test(test_parse_when),
      cmocka_unit_test(test_edit_distance),
      cmocka_unit_test(test_suggest_did_you_mean),
      cmocka_unit_test(test_rfc3339_siblings),
      cmocka_unit_test(test_copy_text_replaces_controls_and_bad_utf8),
      cmocka_unit_test(test_copy_text_cuts_whole_characters),
      cmocka_unit_test(test_times_for_people),
  };
  return cmocka_run_group_tests_name("tokenctl_text", tests, NULL, NULL);
}
