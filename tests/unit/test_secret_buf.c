/* Unit tests for common/secret_buf: growing and consuming buffers that may
 * hold secrets. (That the old block is wiped before it is freed cannot be
 * observed without reading freed memory; the ASan build checks the frees.) */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secret_buf.h"

typedef struct {
  char s[24];
} item_t;

static void test_room_enough_returns_the_same_block(void **state) {
  size_t cap = 16;
  unsigned char *buf = malloc(cap);

  (void)state;
  assert_non_null(buf);
  assert_ptr_equal(secret_buf_reserve(buf, &cap, 10, 6, 1, 8, 1), buf);
  assert_int_equal(cap, 16);
  free(buf);
}

static void test_first_block_and_doubling(void **state) {
  size_t cap = 0;
  unsigned char *buf = NULL, *nb;

  (void)state;
  buf = secret_buf_reserve(buf, &cap, 0, 3, 1, 8, 1);
  assert_non_null(buf);
  assert_int_equal(cap, 8);
  memcpy(buf, "abcdefgh", 8);
  /* 8 used, 20 more: 8 -> 16 -> 32. */
  nb = secret_buf_reserve(buf, &cap, 8, 20, 1, 8, 1);
  assert_non_null(nb);
  assert_int_equal(cap, 32);
  assert_memory_equal(nb, "abcdefgh", 8);
  free(nb);
}

static void test_elements_keep_their_contents(void **state) {
  size_t cap = 0, i;
  item_t *items = NULL, *ni;

  (void)state;
  items = secret_buf_reserve(items, &cap, 0, 2, sizeof(item_t), 2, 0);
  assert_non_null(items);
  for (i = 0; i < 2; i++)
    snprintf(items[i].s, sizeof(items[i].s), "token-%zu", i);
  ni = secret_buf_reserve(items, &cap, 2, 1, sizeof(item_t), 2, 0);
  assert_non_null(ni);
  assert_int_equal(cap, 4);
  assert_string_equal(ni[0].s, "token-0");
  assert_string_equal(ni[1].s, "token-1");
  free(ni);
}

static void test_too_big_fails_and_changes_nothing(void **state) {
  size_t cap = 16;
  unsigned char *buf = malloc(cap);

  (void)state;
  assert_non_null(buf);
  memcpy(buf, "keep", 4);
  assert_null(secret_buf_reserve(buf, &cap, 4, SIZE_MAX - 2, 1, 8, 1));
  assert_int_equal(cap, 16);
  assert_null(
      secret_buf_reserve(buf, &cap, 4, SIZE_MAX / 8, sizeof(item_t), 8, 1));
  assert_int_equal(cap, 16);
  /* Doubling would pass SIZE_MAX before reaching the room asked for. */
  assert_null(secret_buf_reserve(buf, &cap, 4, SIZE_MAX / 2, 1, 8, 1));
  assert_int_equal(cap, 16);
  assert_memory_equal(buf, "keep", 4);
  free(buf);
}

static void test_consume_moves_the_rest_and_wipes_the_tail(void **state) {
  unsigned char buf[8];

  (void)state;
  memcpy(buf, "abcdefgh", 8);
  secret_buf_consume(buf, 8, 3, 1);
  assert_memory_equal(buf, "defgh\0\0\0", 8);
  memcpy(buf, "abcdefgh", 8);
  secret_buf_consume(buf, 8, 8, 1);
  assert_memory_equal(buf, "\0\0\0\0\0\0\0\0", 8);
  memcpy(buf, "abcdefgh", 8);
  secret_buf_consume(buf, 8, 3, 0); /* not wiped: the old bytes stay */
  assert_memory_equal(buf, "defghfgh", 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_room_enough_returns_the_same_block),
      cmocka_unit_test(test_first_block_and_doubling),
      cmocka_unit_test(test_elements_keep_their_contents),
      cmocka_unit_test(test_too_big_fails_and_changes_nothing),
      cmocka_unit_test(test_consume_moves_the_rest_and_wipes_the_tail),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
