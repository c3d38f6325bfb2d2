/* Unit tests for server/verify_cache: tokens that verified, found again by
 * a keyed SipHash-128 tag. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/verify_cache.h"

#define MANY 20000

/* The cache never reads an entry; distinct addresses are all it needs. */
static index_entry_t *fake_entries;

static index_entry_t *entry(size_t i) {
  return (index_entry_t *)((char *)fake_entries + i * sizeof(index_entry_t));
}

static int setup(void **state) {
  verify_cache_t *vc = NULL;

  if (sodium_init() < 0 || verify_cache_new(&vc) != 0)
    return -1;
  fake_entries = calloc(MANY, sizeof(index_entry_t));
  if (fake_entries == NULL)
    return -1;
  *state = vc;
  return 0;
}

static int teardown(void **state) {
  verify_cache_free(*state);
  free(fake_entries);
  return 0;
}

static int tag_eq(const verify_tag_t *a, const verify_tag_t *b) {
  return a->w[0] == b->w[0] && a->w[1] == b->w[1];
}

static void test_tag_depends_on_every_byte_and_the_key(void **state) {
  verify_cache_t *vc = *state, *other = NULL;
  char tok[] = "tkd_0123456789abcdefghijABCDEFGHIJ0123ab";
  size_t len = strlen(tok), i;
  verify_tag_t t0, t1;

  verify_cache_tag(vc, tok, len, &t0);
  verify_cache_tag(vc, tok, len, &t1);
  assert_true(tag_eq(&t0, &t1));
  for (i = 0; i < len; i++) {
    tok[i] ^= 1;
    verify_cache_tag(vc, tok, len, &t1);
    assert_false(tag_eq(&t0, &t1));
    tok[i] ^= 1;
  }
  /* Length is part of the input: a prefix or a NUL appended differs. */
  verify_cache_tag(vc, tok, len - 1, &t1);
  assert_false(tag_eq(&t0, &t1));
  verify_cache_tag(vc, tok, len + 1, &t1);
  assert_false(tag_eq(&t0, &t1));
  /* Each cache draws its own key. */
  assert_int_equal(verify_cache_new(&other), 0);
  verify_cache_tag(other, tok, len, &t1);
  assert_false(tag_eq(&t0, &t1));
  verify_cache_free(other);
}

static void test_find_only_what_was_added(void **state) {
  verify_cache_t *vc = *state;
  verify_tag_t a, b;

  verify_cache_tag(vc, "a", 1, &a);
  verify_cache_tag(vc, "b", 1, &b);
  assert_null(verify_cache_find(vc, &a));
  verify_cache_add(vc, &a, entry(1));
  assert_ptr_equal(verify_cache_find(vc, &a), entry(1));
  assert_null(verify_cache_find(vc, &b));
  /* A second add of the same tag changes nothing. */
  verify_cache_add(vc, &a, entry(2));
  assert_ptr_equal(verify_cache_find(vc, &a), entry(1));
  assert_int_equal(verify_cache_count(vc), 1);
}

/* Tags that share a bucket (the low bits of their first word) are told
 * apart by all 128 bits: equal first words are not enough. */
static void test_whole_tag_compared(void **state) {
  verify_cache_t *vc = *state;
  verify_tag_t a = {{42, 1}}, b = {{42, 2}}, c = {{42, 3}}, d = {{43, 1}};

  verify_cache_add(vc, &a, entry(1));
  verify_cache_add(vc, &b, entry(2));
  assert_ptr_equal(verify_cache_find(vc, &a), entry(1));
  assert_ptr_equal(verify_cache_find(vc, &b), entry(2));
  assert_null(verify_cache_find(vc, &c));
  assert_null(verify_cache_find(vc, &d));
  assert_int_equal(verify_cache_count(vc), 2);
}

/* Growing the table keeps every tag findable, and only those; so does
 * reserving room first (reserve = 1), before and after tags are in. */
static void fill_and_check(verify_cache_t *vc, int reserve) {
  verify_tag_t t;
  char buf[32];
  size_t i, n;

  if (reserve)
    assert_int_equal(verify_cache_reserve(vc, MANY / 2), 0);

  for (i = 0; i < MANY; i++) {
    n = (size_t)snprintf(buf, sizeof(buf), "token-%zu", i);
    verify_cache_tag(vc, buf, n, &t);
    verify_cache_add(vc, &t, entry(i));
    if (reserve && i == MANY / 4)
      assert_int_equal(verify_cache_reserve(vc, MANY), 0);
  }
  assert_int_equal(verify_cache_count(vc), MANY);
  for (i = 0; i < MANY; i++) {
    n = (size_t)snprintf(buf, sizeof(buf), "token-%zu", i);
    verify_cache_tag(vc, buf, n, &t);
    assert_ptr_equal(verify_cache_find(vc, &t), entry(i));
  }
  for (i = MANY; i < 2 * MANY; i++) {
    n = (size_t)snprintf(buf, sizeof(buf), "token-%zu", i);
    verify_cache_tag(vc, buf, n, &t);
    assert_null(verify_cache_find(vc, &t));
  }
}

static void test_growth_keeps_every_tag(void **state) {
  fill_and_check(*state, 0);
}

static void test_reserve_keeps_every_tag(void **state) {
  fill_and_check(*state, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_tag_depends_on_every_byte_and_the_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_find_only_what_was_added, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_whole_tag_compared, setup, teardown),
      cmocka_unit_test_setup_teardown(test_growth_keeps_every_tag, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_reserve_keeps_every_tag, setup,
                                      teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
