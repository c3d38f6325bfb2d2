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
/* A buffer whose blocks come from an allocator of its own (tokend's
 * connection buffers, left out of core dumps) gets every block from it,
 * grown ones too, and gives the old block back to it wiped. */
typedef struct {
  unsigned char pool[2][256];
  int next;
  int released;
  int released_wiped;
  size_t released_len;
} test_mem_t;

static void *test_mem_alloc(void *ctx, size_t len) {
  test_mem_t *m = ctx;

  if (len > sizeof(m->pool[0]) || m->next >= 2)
    return NULL;
  return m->pool[m->next++];
}

static void test_mem_release(void *ctx, void *p, size_t len) {
  test_mem_t *m = ctx;
  const unsigned char *b = p;
  size_t i;

  m->released++;
  m->released_len = len;
  m->released_wiped = 1;
  for (i = 0; i < len; i++)
    if (b[i] != 0)
      m->released_wiped = 0;
}

static void test_grow_in_uses_the_allocator(void **state) {
  test_mem_t m;
  const secret_buf_mem_t mem = {test_mem_alloc, test_mem_release, &m};
  size_t cap = 0;
  unsigned char *b;

  (void)state;
  memset(&m, 0, sizeof(m));
  b = secret_buf_reserve_in(&mem, NULL, &cap, 0, 10, 1, 64, 1);
  assert_ptr_equal(b, m.pool[0]);
  assert_int_equal(cap, 64);
  memset(b, 'x', 60);
  b = secret_buf_reserve_in(&mem, b, &cap, 60, 100, 1, 64, 1);
  assert_ptr_equal(b, m.pool[1]);
  assert_int_equal(cap, 256);
  assert_int_equal(b[59], 'x');
  assert_int_equal(m.released, 1);
  assert_int_equal(m.released_len, 64);
  assert_true(m.released_wiped);
  /* Out of blocks: NULL, and the buffer as it was. */
  assert_null(secret_buf_reserve_in(&mem, b, &cap, 256, 1, 1, 64, 1));
  assert_int_equal(cap, 256);
  assert_int_equal(m.released, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_room_enough_returns_the_same_block),
      cmocka_unit_test(test_first_block_and_doubling),
      cmocka_unit_test(test_elements_keep_their_contents),
      cmocka_unit_test(test_too_big_fails_and_changes_nothing),
      cmocka_unit_test(test_consume_moves_the_rest_and_wipes_the_tail),
      cmocka_unit_test(test_grow_in_uses_the_allocator),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
