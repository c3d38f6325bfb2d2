/* The client's Verify cache table (client/lib/vcache.c): its bound under
 * a million distinct tokens, answers only under their epoch and before
 * their expiry, never an invalid one; every held answer found after
 * evictions moved the runs, answers of every length back whole, a used
 * answer kept over unused ones, and the tag's SipHash against libsodium's;
 * the heartbeat rule at its edge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "siphash.h"
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
  snprintf(r.metadata, sizeof(r.metadata), "{\"plan\":\"pro\"}");
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
  assert_string_equal(out.metadata, "{\"plan\":\"pro\"}");
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

/* Every answer the table counts is one a lookup finds: evictions (which
 * shift the index's runs back) and replacements of older epochs leave no
 * answer unreachable, and count no answer twice. */
static void test_every_held_answer_is_found(void **state) {
  uint64_t hits = 0, epoch;
  tokend_verify_result_t in = valid_answer("tok_f", 0), out;
  char token[32];
  size_t found;
  vcache_t *v;
  long i;

  (void)state;
  assert_int_equal(vcache_new(500, &v), 0);
  for (i = 0; i < 20000; i++) {
    /* The epoch moves now and then: some puts take an older answer's
     * entry, others evict. */
    epoch = 1 + (uint64_t)(i / 3000);
    snprintf(token, sizeof(token), "tkn_%ld", i);
    vcache_put(v, token, epoch, 0, &in);
  }
  found = 0;
  for (i = 0; i < 20000; i++) {
    snprintf(token, sizeof(token), "tkn_%ld", i);
    if (vcache_get(v, token, epoch, test_clock, 0, 1000000, &out, &hits) ==
        VCACHE_HIT)
      found++;
  }
  /* Under the last epoch only its answers count; every one is found. */
  assert_true(found > 0);
  assert_true(found <= vcache_count(v));
  for (i = 0; i < 20000; i++) {
    snprintf(token, sizeof(token), "tkn_%ld", i);
    if (i / 3000 != 6)
      continue;
    vcache_put(v, token, epoch, 0, &in); /* refreshed: held again */
  }
  found = 0;
  for (i = 0; i < 20000; i++) {
    snprintf(token, sizeof(token), "tkn_%ld", i);
    if (vcache_get(v, token, epoch, test_clock, 0, 1000000, &out, &hits) ==
        VCACHE_HIT)
      found++;
  }
  assert_int_equal(vcache_count(v), 500);
  /* Each held answer answers under the epoch now current or is of an older
   * one; count the older ones by looking each token up under its own. */
  for (i = 0; i < 20000; i++) {
    snprintf(token, sizeof(token), "tkn_%ld", i);
    if (i / 3000 != 6 &&
        vcache_get(v, token, 1 + (uint64_t)(i / 3000), test_clock, 0, 1000000,
                   &out, &hits) == VCACHE_HIT)
      found++;
  }
  assert_int_equal(found, vcache_count(v));
  vcache_free(v);
}

/* An answer of every string length, held in its entry or apart, comes back
 * byte for byte (the copy has a path per length range). */
static void test_answers_of_every_length_come_back_whole(void **state) {
  uint64_t hits = 0;
  tokend_verify_result_t in, out;
  char token[32];
  vcache_t *v;
  size_t n, k;

  (void)state;
  assert_int_equal(vcache_new(4, &v), 0);
  for (n = 0; n < TOKEND_LABEL_BYTES; n++) {
    in = valid_answer("tok_l", 0);
    memset(in.label, 0, sizeof(in.label));
    for (k = 0; k < n; k++)
      in.label[k] = (char)('a' + k % 26);
    /* Metadata of every length too, up to its longest. */
    memset(in.metadata, 0, sizeof(in.metadata));
    memset(in.metadata, 'm', (n * 7) % TOKEND_METADATA_BYTES);
    /* Every scope at its longest on some lengths: the apart path. */
    in.n_scopes = n % 3 == 0 ? TOKEND_MAX_SCOPES : n % 3;
    for (k = 0; k < in.n_scopes; k++) {
      memset(in.scopes[k], 0, sizeof(in.scopes[k]));
      memset(in.scopes[k], (int)('A' + k % 26), (n + k) % TOKEND_SCOPE_BYTES);
    }
    snprintf(token, sizeof(token), "tkn_len_%zu", n);
    vcache_put(v, token, 1, 0, &in);
    memset(&out, 0x5a, sizeof(out));
    assert_int_equal(
        vcache_get(v, token, 1, test_clock, 0, 1000000, &out, &hits),
        VCACHE_HIT);
    assert_string_equal(out.token_id, in.token_id);
    assert_string_equal(out.domain, in.domain);
    assert_string_equal(out.label, in.label);
    assert_string_equal(out.metadata, in.metadata);
    assert_int_equal(out.n_scopes, in.n_scopes);
    for (k = 0; k < in.n_scopes; k++)
      assert_string_equal(out.scopes[k], in.scopes[k]);
  }
  vcache_free(v);
}

/* A field not NUL-terminated within its array is not held (it is not an
 * answer the library decoded). */
static void test_unterminated_answer_not_held(void **state) {
  uint64_t hits = 0;
  tokend_verify_result_t in = valid_answer("tok_u", 0), out;
  vcache_t *v;

  (void)state;
  assert_int_equal(vcache_new(8, &v), 0);
  memset(in.domain, 'd', sizeof(in.domain));
  vcache_put(v, "tkn_u", 1, 0, &in);
  assert_int_equal(vcache_count(v), 0);
  assert_int_equal(vcache_get(v, "tkn_u", 1, test_clock, 0, 1000, &out, &hits),
                   VCACHE_MISS);
  vcache_free(v);
}

/* At the bound, an answer used since the clock hand last passed is kept
 * over ones that were not: a token looked up between each new one survives
 * any number of them. */
static void test_used_answer_kept_at_the_bound(void **state) {
  uint64_t hits = 0;
  tokend_verify_result_t in = valid_answer("tok_k", 0), out;
  char token[32];
  vcache_t *v;
  long i;

  (void)state;
  assert_int_equal(vcache_new(64, &v), 0);
  vcache_put(v, "tkn_hot", 1, 0, &in);
  for (i = 0; i < 10000; i++) {
    snprintf(token, sizeof(token), "tkn_cold_%ld", i);
    vcache_put(v, token, 1, 0, &in);
    if (vcache_get(v, "tkn_hot", 1, test_clock, 0, 1000000, &out, &hits) !=
        VCACHE_HIT)
      fail_msg("the token in use was evicted after %ld others", i + 1);
  }
  vcache_free(v);
}

/* The tag's SipHash, run with libsodium's rounds (2-4), is libsodium's
 * crypto_shorthash_siphashx24 for every length a token can have and more:
 * the table's SipHash-1-3 differs only in its round counts. */
static void test_siphash_matches_libsodium(void **state) {
  uint8_t key[crypto_shorthash_siphashx24_KEYBYTES];
  uint8_t in[128], want[crypto_shorthash_siphashx24_BYTES];
  uint64_t k[2], got[2];
  size_t n;

  (void)state;
  assert_true(sodium_init() >= 0);
  randombytes_buf(key, sizeof(key));
  randombytes_buf(in, sizeof(in));
  memcpy(k, key, sizeof(k));
  for (n = 0; n <= sizeof(in); n++) {
    crypto_shorthash_siphashx24(want, in, n, key);
    siphash128(k, in, n, 2, 4, got);
    assert_memory_equal(got, want, sizeof(want));
  }
}

/* The heartbeat rule at its edge: with a coarse clock up to slack_ms
 * behind the precise one, a heartbeat is trusted only while even the
 * latest precise time is within the bound. */
static void test_heartbeat_rule_counts_the_coarse_lag(void **state) {
  (void)state;
  /* hb 10,000, bound 1,000, slack 5: trusted while coarse + 5 < 11,000. */
  assert_true(vcache_heartbeat_fresh(10000, 5, 10000, 1000));
  assert_true(vcache_heartbeat_fresh(10994, 5, 10000, 1000));
  assert_false(vcache_heartbeat_fresh(10995, 5, 10000, 1000));
  assert_false(vcache_heartbeat_fresh(11000, 5, 10000, 1000));
  /* A zeroed heartbeat (tokend shut down) is never fresh. */
  assert_false(vcache_heartbeat_fresh(10000, 5, 0, 1000));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_answer_comes_back_whole),
      cmocka_unit_test(test_expired_answer_not_returned),
      cmocka_unit_test(test_invalid_answer_never_held),
      cmocka_unit_test(test_hits_reported_once_per_interval),
      cmocka_unit_test(test_bound_holds_under_a_million_tokens),
      cmocka_unit_test(test_every_held_answer_is_found),
      cmocka_unit_test(test_answers_of_every_length_come_back_whole),
      cmocka_unit_test(test_unterminated_answer_not_held),
      cmocka_unit_test(test_used_answer_kept_at_the_bound),
      cmocka_unit_test(test_siphash_matches_libsodium),
      cmocka_unit_test(test_heartbeat_rule_counts_the_coarse_lag),
  };

  return cmocka_run_group_tests_name("vcache", tests, NULL, NULL);
}
