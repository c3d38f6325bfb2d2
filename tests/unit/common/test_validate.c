/* Unit tests for common/validate: domain, label and scope checks, and the
 * escaped excerpt used in log lines. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "tokend_limits.h"
#include "validate.h"

#define WHY_BYTES 128

/* Fills out with n copies of the UTF-8 character ch and a NUL. */
static char *repeat(char *out, const char *ch, size_t n) {
  size_t w = strlen(ch), i;

  for (i = 0; i < n; i++)
    memcpy(out + i * w, ch, w);
  out[n * w] = '\0';
  return out;
}

typedef int (*validate_fn)(const char *s, char *why, size_t why_len);

static void expect_ok(validate_fn fn, const char *s) {
  char why[WHY_BYTES] = "";

  if (fn(s, why, sizeof(why)) != 0)
    fail_msg("rejected \"%s\": %s", s, why);
}

/* Rejected, with a reason containing what. */
static void expect_rejected(validate_fn fn, const char *s, const char *what) {
  char why[WHY_BYTES];

  memset(why, 0, sizeof(why));
  if (fn(s, why, sizeof(why)) != TOKEND_EINVAL)
    fail_msg("accepted or wrong code for \"%s\"", s);
  if (strstr(why, what) == NULL)
    fail_msg("reason \"%s\" for \"%s\" does not mention \"%s\"", why, s, what);
  /* Reasons never quote the input. */
  if (strlen(s) >= 3 && strstr(why, s) != NULL)
    fail_msg("reason \"%s\" quotes the input", why);
}

/* ---- domain ---- */

static void test_domain_1_and_128_chars_accepted(void **state) {
  char s[TOKEND_DOMAIN_BYTES + 8];

  expect_ok(validate_domain, "a");
  expect_ok(validate_domain, "Z");
  expect_ok(validate_domain, "7");
  expect_ok(validate_domain, repeat(s, "d", TOKEND_DOMAIN_MAX_CHARS));
}

static void test_domain_empty_and_129_chars_rejected(void **state) {
  char s[TOKEND_DOMAIN_BYTES + 8];

  expect_rejected(validate_domain, "", "empty");
  expect_rejected(validate_domain, repeat(s, "d", TOKEND_DOMAIN_MAX_CHARS + 1),
                  "longer than 128");
}

static void test_domain_allowed_punctuation_accepted(void **state) {
  expect_ok(validate_domain, ".a");
  expect_ok(validate_domain, "_");
  expect_ok(validate_domain, ":");
  expect_ok(validate_domain, "-");
  expect_ok(validate_domain, "billing.prod_eu:v2-b");
  expect_ok(validate_domain, "ABCXYZabcxyz0189");
}

/* "example.com." would be a tenant apart from "example.com". */
static void test_domain_trailing_dot_rejected(void **state) {
  (void)state;
  expect_rejected(validate_domain, "example.com.", "dot");
  expect_rejected(validate_domain, ".", "dot");
  expect_rejected(validate_domain, "a..", "dot");
  expect_ok(validate_domain, "example.com");
}

static void test_domain_normalize_lowers_ascii_only(void **state) {
  char d[] = "Billing.PROD_eu:V2-b";
  char empty[] = "";

  (void)state;
  validate_domain_normalize(d);
  assert_string_equal(d, "billing.prod_eu:v2-b");
  validate_domain_normalize(empty);
  assert_string_equal(empty, "");
}

static void test_domain_disallowed_chars_rejected(void **state) {
  static const char *const bad[] = {
      "a b",  "a/b", "a@b", "caf\xc3\xa9", "a\tb", "a\nb",  "a+b",
      "a,b",  "a;b", "a*b", "a\"b",        "a\\b", "\x7f",  "a%b",
      "\xff", "a#b", "a=b", "a~b",         "a!b",  "a b.c", " a",
  };
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    expect_rejected(validate_domain, bad[i], "may only contain");
}

/* ---- label ---- */

static void test_label_1_and_100_chars_accepted(void **state) {
  char s[TOKEND_LABEL_BYTES + 8];

  expect_ok(validate_label, "x");
  expect_ok(validate_label, " ");
  expect_ok(validate_label, "deploy key for \"ci\" \\ staging (eu-1) ~!");
  expect_ok(validate_label, repeat(s, "a", TOKEND_LABEL_MAX_CHARS));
  /* Length is counted in characters, not bytes. */
  expect_ok(validate_label, repeat(s, "\xc3\xa9", TOKEND_LABEL_MAX_CHARS));
  expect_ok(validate_label, repeat(s, "\xe2\x82\xac", TOKEND_LABEL_MAX_CHARS));
  expect_ok(validate_label,
            repeat(s, "\xf0\x9f\x98\x80", TOKEND_LABEL_MAX_CHARS));
}

static void test_label_101_chars_rejected(void **state) {
  char s[TOKEND_LABEL_BYTES + 8];

  expect_rejected(validate_label, repeat(s, "a", TOKEND_LABEL_MAX_CHARS + 1),
                  "longer than 100");
  expect_rejected(validate_label,
                  repeat(s, "\xc3\xa9", TOKEND_LABEL_MAX_CHARS + 1),
                  "longer than 100");
  expect_rejected(validate_label,
                  repeat(s, "\xf0\x9f\x98\x80", TOKEND_LABEL_MAX_CHARS + 1),
                  "longer than 100");
}

static void test_label_empty_rejected(void **state) {
  expect_rejected(validate_label, "", "empty");
}

/* Code points at the edges of the valid ranges are accepted. */
static void test_label_valid_utf8_edges_accepted(void **state) {
  expect_ok(validate_label, "\xc2\xa0");         /* U+00A0, first after C1 */
  expect_ok(validate_label, "\xdf\xbf");         /* U+07FF */
  expect_ok(validate_label, "\xe0\xa0\x80");     /* U+0800 */
  expect_ok(validate_label, "\xed\x9f\xbf");     /* U+D7FF */
  expect_ok(validate_label, "\xee\x80\x80");     /* U+E000 */
  expect_ok(validate_label, "\xef\xbf\xbf");     /* U+FFFF */
  expect_ok(validate_label, "\xf0\x90\x80\x80"); /* U+10000 */
  expect_ok(validate_label, "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
  expect_ok(validate_label, "~");                /* U+007E, last before DEL */
}

static void test_label_invalid_utf8_rejected(void **state) {
  static const char *const bad[] = {
      "\x80",                 /* lone continuation byte */
      "ab\xbf",               /* lone continuation byte after ASCII */
      "\xc3",                 /* truncated 2-byte sequence */
      "\xe2\x82",             /* truncated 3-byte sequence */
      "\xf0\x9f\x98",         /* truncated 4-byte sequence */
      "\xe2\x82x",            /* sequence cut by an ASCII byte */
      "\xc0\xaf",             /* overlong '/' */
      "\xc1\xbf",             /* overlong U+007F */
      "\xe0\x80\xaf",         /* overlong 3-byte '/' */
      "\xe0\x9f\xbf",         /* overlong U+07FF */
      "\xf0\x80\x80\xaf",     /* overlong 4-byte '/' */
      "\xf0\x8f\xbf\xbf",     /* overlong U+FFFF */
      "\xed\xa0\x80",         /* surrogate U+D800 */
      "\xed\xbf\xbf",         /* surrogate U+DFFF */
      "\xf4\x90\x80\x80",     /* U+110000, above U+10FFFF */
      "\xf7\xbf\xbf\xbf",     /* U+1FFFFF */
      "\xf8\x88\x80\x80\x80", /* 5-byte form */
      "\xfe",                 /* never valid */
      "\xff",                 /* never valid */
  };
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    expect_rejected(validate_label, bad[i], "UTF-8");
}

static void test_label_control_chars_rejected(void **state) {
  static const char *const bad[] = {
      "a\nb",       /* C0 */
      "a\tb",       /* C0 */
      "a\rb",       /* C0 */
      "\x01",       /* C0 */
      "\x1f",       /* C0 */
      "a\x1b[0m",   /* ESC: terminal escape */
      "a\x7f",      /* DEL */
      "\xc2\x85",   /* C1 NEL, U+0085 */
      "\xc2\x80",   /* C1, U+0080 */
      "\xc2\x9f",   /* C1, U+009F */
      "ok\xc2\x9b", /* C1 CSI */
  };
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    expect_rejected(validate_label, bad[i], "control");
}

/* ---- scope ---- */

static void test_scope_1_and_64_chars_accepted(void **state) {
  char s[TOKEND_SCOPE_BYTES + 8];

  expect_ok(validate_scope, "r");
  expect_ok(validate_scope, repeat(s, "s", TOKEND_SCOPE_MAX_CHARS));
  expect_ok(validate_scope, "repo:read");
  /* '/' is allowed in scopes, unlike domains. */
  expect_ok(validate_scope, "/");
  expect_ok(validate_scope, "orgs/acme/repos.write_all-v1:x");
}

static void test_scope_empty_and_65_chars_rejected(void **state) {
  char s[TOKEND_SCOPE_BYTES + 8];

  expect_rejected(validate_scope, "", "empty");
  expect_rejected(validate_scope, repeat(s, "s", TOKEND_SCOPE_MAX_CHARS + 1),
                  "longer than 64");
}

static void test_scope_disallowed_chars_rejected(void **state) {
  static const char *const bad[] = {"a b",      "a@b",  "a*b", "a,b", "a\nb",
                                    "\xc3\xa9", "a\\b", "a?b", "a#b", "a\x7f"};
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    expect_rejected(validate_scope, bad[i], "may only contain");
}

/* ---- why buffer ---- */

static void test_why_may_be_null_or_small(void **state) {
  char why[8];

  assert_int_equal(validate_domain("", NULL, 0), TOKEND_EINVAL);
  assert_int_equal(validate_label("\x80", NULL, 0), TOKEND_EINVAL);
  assert_int_equal(validate_scope("a b", NULL, 0), TOKEND_EINVAL);
  /* A zero-length buffer is not written to. */
  why[0] = 'Q';
  assert_int_equal(validate_domain("", why, 0), TOKEND_EINVAL);
  assert_int_equal(why[0], 'Q');
  /* A short buffer gets a truncated, NUL-terminated reason. */
  memset(why, 'Q', sizeof(why));
  assert_int_equal(validate_label("", why, 5), TOKEND_EINVAL);
  assert_string_equal(why, "labe");
  assert_int_equal(why[5], 'Q');
}

/* ---- escape excerpt ---- */

static void escape(const char *in, size_t in_len, size_t max_in, char *out,
                   size_t out_len) {
  validate_escape_excerpt(in, in_len, max_in, out, out_len);
}

static void test_escape_printable_ascii_copied(void **state) {
  char out[64];

  escape("abc XYZ 019 ~!{}", 16, 32, out, sizeof(out));
  assert_string_equal(out, "abc XYZ 019 ~!{}");
  escape("", 0, 32, out, sizeof(out));
  assert_string_equal(out, "");
}

static void test_escape_non_printables_quotes_and_backslash(void **state) {
  char out[64];

  escape("a\nb", 3, 32, out, sizeof(out));
  assert_string_equal(out, "a\\x0ab");
  /* Embedded NUL: in_len, not strlen, decides. */
  escape("a\0b", 3, 32, out, sizeof(out));
  assert_string_equal(out, "a\\x00b");
  escape("\x7f\x80\xff\x1b", 4, 32, out, sizeof(out));
  assert_string_equal(out, "\\x7f\\x80\\xff\\x1b");
  escape("say \"hi\"", 8, 32, out, sizeof(out));
  assert_string_equal(out, "say \\x22hi\\x22");
  escape("C:\\tmp", 6, 32, out, sizeof(out));
  assert_string_equal(out, "C:\\x5ctmp");
}

static void test_escape_truncates_at_max_in_with_dots(void **state) {
  char out[64];

  escape("abcdefgh", 8, 4, out, sizeof(out));
  assert_string_equal(out, "abcd...");
  /* One byte over is still cut. */
  escape("abcde", 5, 4, out, sizeof(out));
  assert_string_equal(out, "abcd...");
  escape("\n\n\n\n\n", 5, 2, out, sizeof(out));
  assert_string_equal(out, "\\x0a\\x0a...");
  /* Exactly max_in bytes: nothing was cut, no dots. */
  escape("abcd", 4, 4, out, sizeof(out));
  assert_string_equal(out, "abcd");
  escape("abcd", 4, 0, out, sizeof(out));
  assert_string_equal(out, "...");
}

/* For every out_len, the output stays inside out, is NUL-terminated and is a
 * prefix of the full excerpt, never ending inside a \xNN escape. */
static void test_escape_never_overflows_small_out(void **state) {
  static const char in[] = "ab\n\"\\cd\xff"
                           "efghijklmnop";
  const size_t in_len = sizeof(in) - 1;
  char full[256], out[64 + 16];
  size_t out_len, n, i;

  escape(in, in_len, 1000, full, sizeof(full));
  assert_string_equal(full, "ab\\x0a\\x22\\x5ccd\\xffefghijklmnop");
  for (out_len = 0; out_len <= 64; out_len++) {
    memset(out, 'Q', sizeof(out));
    escape(in, in_len, 1000, out, out_len);
    for (i = out_len; i < sizeof(out); i++)
      if (out[i] != 'Q')
        fail_msg("out_len %zu: byte %zu written", out_len, i);
    if (out_len == 0)
      continue;
    n = strlen(out);
    assert_true(n < out_len);
    if (n <= strlen(full) && memcmp(out, full, n) == 0) {
      /* A prefix: its last escape, if any, is whole. */
      const char *bs = strrchr(out, '\\');
      if (bs != NULL)
        assert_true(strlen(bs) >= 4);
    } else {
      /* Otherwise a prefix followed by the "..." marker. */
      assert_true(n >= 3);
      assert_memory_equal(out + n - 3, "...", 3);
      assert_memory_equal(out, full, n - 3);
    }
  }
}

/* An excerpt cut short because out is small must still say it was cut: a log
 * reader cannot otherwise tell "abcdefg" from the whole input. */
static void test_escape_cut_by_small_out_still_marked(void **state) {
  static const char in[] = "abcdefghijklmnopqrstuvwxyz";
  const size_t in_len = sizeof(in) - 1;
  char out[32];
  size_t out_len, n;

  for (out_len = 4; out_len <= in_len; out_len++) {
    escape(in, in_len, 1000, out, out_len);
    n = strlen(out);
    if (n < 3 || memcmp(out + n - 3, "...", 3) != 0)
      fail_msg("out_len %zu: excerpt \"%s\" of a %zu-byte input has no \"...\"",
               out_len, out, in_len);
  }
}

static void test_user_edges(void **state) {
  char why[128], s[TOKEND_USER_MAX_CHARS + 2];

  assert_int_equal(validate_user("uid:1000", why, sizeof(why)), 0);
  assert_int_equal(validate_user("alice+ops@example.com", why, sizeof(why)), 0);
  memset(s, 'u', TOKEND_USER_MAX_CHARS);
  s[TOKEND_USER_MAX_CHARS] = '\0';
  assert_int_equal(validate_user(s, why, sizeof(why)), 0);
  s[TOKEND_USER_MAX_CHARS] = 'u';
  s[TOKEND_USER_MAX_CHARS + 1] = '\0';
  assert_int_equal(validate_user(s, why, sizeof(why)), TOKEND_EINVAL);
  assert_non_null(strstr(why, "128"));
  assert_int_equal(validate_user("", why, sizeof(why)), TOKEND_EINVAL);
  assert_int_equal(validate_user("al ice", why, sizeof(why)), TOKEND_EINVAL);
  assert_int_equal(validate_user("alice/ops", why, sizeof(why)), TOKEND_EINVAL);
  assert_non_null(strstr(why, "user"));
}

/* A cut never leaves half a UTF-8 character behind. */
static void test_copy_utf8_cuts_at_character_boundary(void **state) {
  char out[8];

  validate_copy_utf8(out, sizeof(out), "abc");
  assert_string_equal(out, "abc");
  /* 7 bytes of room: "ab" + one 4-byte emoji fits (6), the second does
   * not and must be dropped whole. */
  validate_copy_utf8(out, sizeof(out), "ab\xF0\x9F\x98\x80\xF0\x9F\x98\x80");
  assert_string_equal(out, "ab\xF0\x9F\x98\x80");
  validate_copy_utf8(out, 4, "\xC3\xA9\xC3\xA9");
  assert_string_equal(out, "\xC3\xA9");
  validate_copy_utf8(out, 1, "abc");
  assert_string_equal(out, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_domain_1_and_128_chars_accepted),
      cmocka_unit_test(test_user_edges),
      cmocka_unit_test(test_copy_utf8_cuts_at_character_boundary),
      cmocka_unit_test(test_domain_empty_and_129_chars_rejected),
      cmocka_unit_test(test_domain_allowed_punctuation_accepted),
      cmocka_unit_test(test_domain_disallowed_chars_rejected),
      cmocka_unit_test(test_domain_trailing_dot_rejected),
      cmocka_unit_test(test_domain_normalize_lowers_ascii_only),
      cmocka_unit_test(test_label_1_and_100_chars_accepted),
      cmocka_unit_test(test_label_101_chars_rejected),
      cmocka_unit_test(test_label_empty_rejected),
      cmocka_unit_test(test_label_valid_utf8_edges_accepted),
      cmocka_unit_test(test_label_invalid_utf8_rejected),
      cmocka_unit_test(test_label_control_chars_rejected),
      cmocka_unit_test(test_scope_1_and_64_chars_accepted),
      cmocka_unit_test(test_scope_empty_and_65_chars_rejected),
      cmocka_unit_test(test_scope_disallowed_chars_rejected),
      cmocka_unit_test(test_why_may_be_null_or_small),
      cmocka_unit_test(test_escape_printable_ascii_copied),
      cmocka_unit_test(test_escape_non_printables_quotes_and_backslash),
      cmocka_unit_test(test_escape_truncates_at_max_in_with_dots),
      cmocka_unit_test(test_escape_never_overflows_small_out),
      cmocka_unit_test(test_escape_cut_by_small_out_still_marked),
  };

  return cmocka_run_group_tests_name("validate", tests, NULL, NULL);
}
