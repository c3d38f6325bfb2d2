/* Unit tests for server/refusals.c: how repeated refusals are grouped into
 * audit rows, and what happens when the table is full. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/refusals.h"

static void refusal(store_audit_t *ev, uint32_t uid, int32_t pid,
                    const char *method, const char *domain) {
  memset(ev, 0, sizeof(*ev));
  ev->peer_uid = uid;
  ev->peer_pid = pid;
  snprintf(ev->actor, sizeof(ev->actor), "uid:%u", (unsigned)uid);
  snprintf(ev->method, sizeof(ev->method), "%s", method);
  snprintf(ev->domain, sizeof(ev->domain), "%s", domain);
  snprintf(ev->detail, sizeof(ev->detail), "not an admin of %s", domain);
  ev->code = 7;
}

/* The first of a kind is recorded at once; repeats are counted into one
 * row per interval, carrying the first repeat's pid; a kind with no
 * repeats in an interval is forgotten. */
static void test_refusals_repeats_become_one_row(void **state) {
  refusals_t *r;
  store_audit_t ev, *rows;
  size_t n, i;

  (void)state;
  assert_int_equal(refusals_new(16, &r), 0);
  refusal(&ev, 1000, 1, "Issue", "a.example");
  assert_int_equal(refusals_note(r, &ev, "not-domain-admin"), REFUSAL_RECORD);
  for (i = 0; i < 999; i++) {
    refusal(&ev, 1000, (int32_t)(2 + i), "Issue", "a.example");
    assert_int_equal(refusals_note(r, &ev, "not-domain-admin"),
                     REFUSAL_COUNTED);
  }
  /* Another method, rule or uid is another kind. */
  refusal(&ev, 1000, 1, "List", "a.example");
  assert_int_equal(refusals_note(r, &ev, "not-domain-admin"), REFUSAL_RECORD);
  refusal(&ev, 1000, 1, "Issue", "a.example");
  assert_int_equal(refusals_note(r, &ev, "actor-not-allowed"), REFUSAL_RECORD);
  refusal(&ev, 1001, 1, "Issue", "a.example");
  assert_int_equal(refusals_note(r, &ev, "not-domain-admin"), REFUSAL_RECORD);
  assert_int_equal(refusals_count(r), 4);

  assert_int_equal(refusals_take(r, 5000, &rows, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(rows[0].count, 999);
  assert_int_equal(rows[0].peer_pid, 2);
  assert_int_equal(rows[0].at, 5000);
  assert_string_equal(rows[0].domain, "a.example");
  assert_string_equal(rows[0].method, "Issue");
  free(rows);
  /* Only the kind with repeats is still held; next interval, nothing. */
  assert_int_equal(refusals_count(r), 1);
  assert_int_equal(refusals_take(r, 6000, &rows, &n), 0);
  assert_int_equal(n, 0);
  assert_null(rows);
  assert_int_equal(refusals_count(r), 0);
  refusal(&ev, 1000, 1, "Issue", "a.example");
  assert_int_equal(refusals_note(r, &ev, "not-domain-admin"), REFUSAL_RECORD);
  refusals_free(r);
}

/* Repeats across domains share their row, which then names no domain. */
static void test_refusals_varying_domains_share_a_row(void **state) {
  refusals_t *r;
  store_audit_t ev, *rows;
  size_t n;

  (void)state;
  assert_int_equal(refusals_new(16, &r), 0);
  refusal(&ev, 1000, 1, "Issue", "a.example");
  assert_int_equal(refusals_note(r, &ev, "not-domain-admin"), REFUSAL_RECORD);
  refusal(&ev, 1000, 1, "Issue", "b.example");
  assert_int_equal(refusals_note(r, &ev, "not-domain-admin"), REFUSAL_COUNTED);
  refusal(&ev, 1000, 1, "Issue", "c.example");
  assert_int_equal(refusals_note(r, &ev, "not-domain-admin"), REFUSAL_COUNTED);
  assert_int_equal(refusals_take(r, 1, &rows, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(rows[0].count, 2);
  assert_string_equal(rows[0].domain, "");
  free(rows);
  refusals_free(r);
}

/* A full table holds no more kinds: their refusals share one overflow row
 * per interval (the first says it should be logged), so memory stays
 * bounded whatever a peer varies. */
static void test_refusals_full_table_counts_into_overflow(void **state) {
  refusals_t *r;
  store_audit_t ev, *rows;
  size_t n;
  uint32_t uid;

  (void)state;
  assert_int_equal(refusals_new(2, &r), 0);
  refusal(&ev, 1, 1, "Issue", "a.example");
  assert_int_equal(refusals_note(r, &ev, "x"), REFUSAL_RECORD);
  refusal(&ev, 2, 1, "Issue", "a.example");
  assert_int_equal(refusals_note(r, &ev, "x"), REFUSAL_RECORD);
  refusal(&ev, 3, 1, "Issue", "a.example");
  assert_int_equal(refusals_note(r, &ev, "x"), REFUSAL_OVERFLOW);
  for (uid = 4; uid < 100; uid++) {
    refusal(&ev, uid, 1, "Issue", "a.example");
    assert_int_equal(refusals_note(r, &ev, "x"), REFUSAL_OVERFLOW_COUNTED);
  }
  assert_int_equal(refusals_count(r), 2);
  assert_int_equal(refusals_take(r, 1, &rows, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(rows[0].count, 97);
  assert_int_equal(rows[0].peer_uid, 3);
  assert_non_null(strstr(rows[0].detail, "--refusal-audit-max-keys"));
  free(rows);
  /* The kinds without repeats were forgotten: room again. */
  assert_int_equal(refusals_count(r), 0);
  refusal(&ev, 3, 1, "Issue", "a.example");
  assert_int_equal(refusals_note(r, &ev, "x"), REFUSAL_RECORD);
  refusals_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refusals_repeats_become_one_row),
      cmocka_unit_test(test_refusals_varying_domains_share_a_row),
      cmocka_unit_test(test_refusals_full_table_counts_into_overflow),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
