/* The client's Verify cache table (client/lib/vcache.c): its bound under
 * a million distinct tokens, answers only under their epoch and before
 * their expiry, and never an invalid one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "vcache.h"

/* The wall clock the table is handed, set by each test. */
static int64_t clock_now;
static int64_t test_clock(void) { return clock_now; }

static tokend_verify_result_t valid_answer(const char *id, int64_t expires) {
  tokend_verify_result_t r;

  memset(&r, 0, sizeof(r));
  r.valid = 1;
  r.reason = TOKEND_VERIFY_VALID;
  snprintf(r.token_id, sizeof(r.token_id), "%s", id);
  snprintf(r.domain, sizeof(r.domain), "d.example");
  snprintf(r.label, sizeof(r.label), "label");
  r.n_scopes = 2;
  snprintf(r.scopes[0], sizeof(r.scopes[0]), "read");
  snprintf(r.scopes[1], sizeof(r.scopes[1]), "write");
  r.expires_at = expires;
  return r;
}

static void test_answer_comes_back_whole(void **state) {
  uint64_t hits = 0;
  tokend_verify_result_t in = valid_answer("tok_a", 0), out;
  vcache_t *v;

  (void)state;
  assert_int_equal(vcache_new(8, &v), 0);
  vcache_put(v, "tkn_a", 5, 0, &in);
  memset(&out, 0, sizeof(out));
  assert_int_equal(vcache_get(v, "tkn_a", 5, test_clock, 0, 1000, &out, &hits),
                   1);
  assert_int_equal(out.valid, 1);
  assert_string_equal(out.token_id, "tok_a");
  assert_string_equal(out.domain, "d.example");
  assert_string_equal(out.label, "label");
  assert_int_equal(out.n_scopes, 2);
  assert_string_equal(out.scopes[1], "write");
  /* Another token, or another epoch: not held. */
  assert_int_equal(vcache_get(v, "tkn_b", 5, test_clock, 0, 1000, &out, &hits),
                   0);
  assert_int_equal(vcache_get(v, "tkn_a", 6, test_clock, 0, 1000, &out, &hits),
                   0);
  vcache_free(v);
}

static void test_expired_answer_not_returned(void **state) {
  uint64_t hits = 0;
  tokend_verify_result_t in = valid_answer("tok_e", 2000), out;
  vcache_t *v;

  (void)state;
  assert_int_equal(vcache_new(8, &v), 0);
  vcache_put(v, "tkn_e", 1, 0, &in);
  clock_now = 1999;
  assert_int_equal(vcache_get(v, "tkn_e", 1, test_clock, 0, 1000, &out, &hits),
                   1);
  clock_now = 2000;
  assert_int_equal(vcache_get(v, "tkn_e", 1, test_clock, 0, 1000, &out, &hits),
                   0);
  vcache_free(v);
}

/* Whatever it is handed, the table holds only valid answers. */
static void test_invalid_answer_never_held(void **state) {
  uint64_t hits = 0;
  tokend_verify_result_t in = valid_answer("tok_r", 0), out;
  vcache_t *v;

  (void)state;
  assert_int_equal(vcache_new(8, &v), 0);
  in.valid = 0;
  in.reason = TOKEND_VERIFY_REVOKED;
  vcache_put(v, "tkn_r", 1, 0, &in);
  in.valid = 1; /* inconsistent: valid with a reason */
  vcache_put(v, "tkn_r", 1, 0, &in);
  assert_int_equal(vcache_count(v), 0);
  assert_int_equal(vcache_get(v, "tkn_r", 1, test_clock, 0, 1000, &out, &hits),
                   0);
  vcache_free(v);
}

/* Hits are counted, and handed out once report_ms passed since the last
 * report; that lookup is not a hit (the caller asks tokend). */
static void test_hits_reported_once_per_interval(void **state) {
  uint64_t hits = 0;
  tokend_verify_result_t in = valid_answer("tok_h", 0), out;
  vcache_t *v;

  (void)state;
  assert_int_equal(vcache_new(8, &v), 0);
  vcache_put(v, "tkn_h", 1, 0, &in);
  assert_int_equal(vcache_get(v, "tkn_h", 1, test_clock, 10, 1000, &out, &hits),
                   VCACHE_HIT);
  assert_int_equal(
      vcache_get(v, "tkn_h", 1, test_clock, 999, 1000, &out, &hits),
      VCACHE_HIT);
  assert_int_equal(
      vcache_get(v, "tkn_h", 1, test_clock, 1000, 1000, &out, &hits),
      VCACHE_REPORT);
  assert_int_equal(hits, 2);
  assert_int_equal(
      vcache_get(v, "tkn_h", 1, test_clock, 1001, 1000, &out, &hits),
      VCACHE_HIT);
  /* Nothing to report yet: a hit, whatever the time. */
  vcache_put(v, "tkn_h", 1, 5000, &in);
  assert_int_equal(
      vcache_get(v, "tkn_h", 1, test_clock, 9000, 1000, &out, &hits),
      VCACHE_HIT);
  vcache_free(v);
}

/* A million distinct tokens through a table of 1000: never more than
 * 1000 held, and the newest still answer. */
static void test_bound_holds_under_a_million_tokens(void **state) {
  uint64_t hits = 0;
  tokend_verify_result_t in = valid_answer("tok_m", 0), out;
  char token[32];
  vcache_t *v;
  long i;

  (void)state;
  assert_int_equal(vcache_new(1000, &v), 0);
  assert_int_equal(vcache_capacity(v), 1000);
  for (i = 0; i < 1000000; i++) {
    snprintf(token, sizeof(token), "tkn_%ld", i);
    vcache_put(v, token, 1, 0, &in);
    if (vcache_count(v) > vcache_capacity(v))
      fail_msg("%zu answers held after %ld tokens", vcache_count(v), i + 1);
    /* The answer just stored is held, whatever was evicted for it. */
    if (vcache_get(v, token, 1, test_clock, 0, 1000, &out, &hits) != VCACHE_HIT)
      fail_msg("token %ld, just stored, is not held", i);
  }
  assert_int_equal(vcache_count(v), 1000);
  vcache_clear(v);
  assert_int_equal(vcache_count(v), 0);
  assert_int_equal(vcache_get(v, token, 1, test_clock, 0, 1000, &out, &hits),
                   0);
  vcache_free(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_answer_comes_back_whole),
      cmocka_unit_test(test_expired_answer_not_returned),
      cmocka_unit_test(test_invalid_answer_never_held),
      cmocka_unit_test(test_hits_reported_once_per_interval),
      cmocka_unit_test(test_bound_holds_under_a_million_tokens),
  };

  return cmocka_run_group_tests_name("vcache", tests, NULL, NULL);
}
