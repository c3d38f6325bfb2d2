/* Unit tests for common/prom: the Prometheus text format, byte for byte
 * (a whole /metrics page is parsed by the reference parser in
 * tests/integration/test_http.c). */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "prom.h"

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prom_family_and_samples),
      cmocka_unit_test(test_prom_label_value_escaped),
      cmocka_unit_test(test_prom_histogram_cumulative),
      cmocka_unit_test(test_prom_grows),
  };

  return cmocka_run_group_tests_name("prom", tests, NULL, NULL);
}
