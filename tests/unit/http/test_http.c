/* Unit tests for server/http: the Prometheus text writer (byte for byte)
 * and forward-auth's pure parts (the token in a header, the scope rule).
 * The HTTP face itself runs against real nginx in
 * tests/integration/test_http.c. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "http/prom.h"

static char *take(prom_t *p) {
  size_t len;
  char *text = prom_take(p, &len);

  assert_non_null(text);
  assert_int_equal(strlen(text), len);
  return text;
}

static void test_prom_family_and_samples(void **state) {
  prom_t p;
  char *text;

  (void)state;
  prom_init(&p);
  prom_family(&p, "tokend_x_total", "counter", "Things.");
  prom_sample(&p, "tokend_x_total", "", 3);
  prom_sample(&p, "tokend_x_total", "code=\"200\"", 18446744073709551615u);
  text = take(&p);
  assert_string_equal(text, "# HELP tokend_x_total Things.\n"
                            "# TYPE tokend_x_total counter\n"
                            "tokend_x_total 3\n"
                            "tokend_x_total{code=\"200\"} "
                            "18446744073709551615\n");
  free(text);
}

/* Backslash, double quote and newline are the three a label value must
 * escape; everything else (UTF-8 too) goes through. */
static void test_prom_label_value_escaped(void **state) {
  prom_t p;
  char *text;

  (void)state;
  prom_init(&p);
  prom_appendf(&p, "m{v=\"");
  prom_label_value(&p, "a\\b\"c\nd\xc3\xa9");
  prom_appendf(&p, "\"} 1\n");
  text = take(&p);
  assert_string_equal(text, "m{v=\"a\\\\b\\\"c\\nd\xc3\xa9\"} 1\n");
  free(text);
}

/* Buckets are cumulative, the +Inf bucket is the count, the sum is in
 * seconds; an observation on a bound falls in that bound's bucket. */
static void test_prom_histogram_cumulative(void **state) {
  prom_hist_t h;
  prom_t p;
  char *text, *line;

  (void)state;
  memset(&h, 0, sizeof(h));
  prom_hist_observe(&h, 5000);       /* 5 us: first bucket */
  prom_hist_observe(&h, 10000);      /* exactly 10 us: first bucket */
  prom_hist_observe(&h, 300000);     /* 300 us: le 0.0005 */
  prom_hist_observe(&h, 2000000000); /* 2 s: only +Inf */
  prom_init(&p);
  prom_hist_write(&p, "lat_seconds", "m=\"x\"", &h);
  text = take(&p);
  assert_non_null(strstr(text, "lat_seconds_bucket{m=\"x\",le=\"1e-05\"} 2\n"));
  assert_non_null(
      strstr(text, "lat_seconds_bucket{m=\"x\",le=\"0.00025\"} 2\n"));
  assert_non_null(
      strstr(text, "lat_seconds_bucket{m=\"x\",le=\"0.0005\"} 3\n"));
  assert_non_null(strstr(text, "lat_seconds_bucket{m=\"x\",le=\"1\"} 3\n"));
  assert_non_null(strstr(text, "lat_seconds_bucket{m=\"x\",le=\"+Inf\"} 4\n"));
  assert_non_null(strstr(text, "lat_seconds_sum{m=\"x\"} 2.000315000\n"));
  assert_non_null(strstr(text, "lat_seconds_count{m=\"x\"} 4\n"));
  /* PROM_HIST_BUCKETS bounds, +Inf, sum and count: nothing else. */
  line = text;
  {
    size_t lines = 0;

    for (; *line != '\0'; line++)
      lines += *line == '\n';
    assert_int_equal(lines, PROM_HIST_BUCKETS + 3);
  }
  free(text);
}

/* A page larger than the first 4 KiB grows and stays whole. */
static void test_prom_grows(void **state) {
  prom_t p;
  char *text;
  size_t len, i;

  (void)state;
  prom_init(&p);
  for (i = 0; i < 1000; i++)
    prom_sample(&p, "tokend_y", "", i);
  text = prom_take(&p, &len);
  assert_non_null(text);
  assert_int_equal(strlen(text), len);
  assert_true(len > 4096);
  assert_non_null(strstr(text, "tokend_y 999\n"));
  assert_memory_equal(text, "tokend_y 0\ntokend_y 1\n", 22);
  free(text);
}

static void assert_token(const char *header, const char *value,
                         const char *want) {
  const char *tok = NULL;
  size_t len = 0;

  if (want == NULL) {
    assert_int_equal(http_token_from_header(header, value, &tok, &len),
                     TOKEND_ENOTFOUND);
    return;
  }
  assert_int_equal(http_token_from_header(header, value, &tok, &len), 0);
  assert_int_equal(len, strlen(want));
  assert_memory_equal(tok, want, len);
}

/* Authorization needs the Bearer scheme (any case); another header's whole
 * value is the token; blanks around it are not part of it. */
static void test_http_token_from_header(void **state) {
  (void)state;
  assert_token("Authorization", "Bearer tk_abc", "tk_abc");
  assert_token("authorization", "bearer  tk_abc \t", "tk_abc");
  assert_token("Authorization", "BEARER\ttk_abc", "tk_abc");
  assert_token("Authorization", "Basic dXNlcjpwYXNz", NULL);
  assert_token("Authorization", "Bearertk_abc", NULL);
  assert_token("Authorization", "Bearer ", NULL);
  assert_token("Authorization", "", NULL);
  assert_token("Authorization", NULL, NULL);
  assert_token("X-Api-Key", " tk_abc ", "tk_abc");
  assert_token("X-Api-Key", "Bearer tk_abc", "Bearer tk_abc");
  assert_token("X-Api-Key", "  ", NULL);
}

static void test_http_has_scope(void **state) {
  rpc_verify_result_t r;

  (void)state;
  memset(&r, 0, sizeof(r));
  r.scopes[0] = "read";
  r.scopes[1] = "write";
  r.n_scopes = 2;
  assert_true(http_has_scope(&r, "read"));
  assert_true(http_has_scope(&r, "write"));
  assert_false(http_has_scope(&r, "wri"));
  assert_false(http_has_scope(&r, "admin"));
  assert_false(http_has_scope(&r, ""));
  r.n_scopes = 0;
  assert_false(http_has_scope(&r, "read"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prom_family_and_samples),
      cmocka_unit_test(test_prom_label_value_escaped),
      cmocka_unit_test(test_prom_histogram_cumulative),
      cmocka_unit_test(test_prom_grows),
      cmocka_unit_test(test_http_token_from_header),
      cmocka_unit_test(test_http_has_scope),
  };

  return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
