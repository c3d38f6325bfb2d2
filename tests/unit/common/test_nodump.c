/* nodump: memory left out of core dumps, and the pool that reuses it. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nodump.h"

/* 1 if the mapping holding p has the "dd" (do not dump) flag in
 * /proc/self/smaps, 0 if not, -1 if no mapping holds p. */
static int dontdump_flag(const void *p) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  uintptr_t lo, hi, a = (uintptr_t)p;
  int in = 0, found = -1;

  assert_non_null(f);
  while (fgets(line, sizeof(line), f) != NULL) {
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ':') != NULL &&
        line[strspn(line, "0123456789abcdef")] == '-') {
      in = a >= lo && a < hi;
      continue;
    }
    if (in && strncmp(line, "VmFlags:", 8) == 0) {
      found = strstr(line, " dd") != NULL;
      break;
    }
  }
  fclose(f);
  return found;
}

static void test_alloc_is_left_out_of_dumps(void **state) {
  size_t len = 3 * (size_t)sysconf(_SC_PAGESIZE) + 1;
  unsigned char *p = nodump_alloc(len);
  void *heap = malloc(64);

  (void)state;
  assert_non_null(p);
  assert_int_equal(p[len - 1], 0);
  p[len - 1] = 1; /* the whole length is usable */
  assert_int_equal(dontdump_flag(p), 1);
  assert_int_equal(dontdump_flag(p + len - 1), 1);
  /* The check can fail: ordinary heap is dumped. */
  assert_int_equal(dontdump_flag(heap), 0);
  free(heap);
  nodump_free(p, len);
  assert_null(nodump_alloc(0));
}

/* A block given back is the next one taken (no system call); past
 * max_free, blocks given back are unmapped; drain empties the pool. */
static void test_pool_reuses_up_to_max_free(void **state) {
  nodump_pool_t pool;
  void *a, *b, *c;

  (void)state;
  nodump_pool_init(&pool, 32768, 1);
  a = nodump_pool_get(&pool);
  b = nodump_pool_get(&pool);
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  assert_int_equal(dontdump_flag(a), 1);
  nodump_pool_put(&pool, a);
  nodump_pool_put(&pool, b); /* past max_free: unmapped */
  assert_int_equal(pool.n_free, 1);
  c = nodump_pool_get(&pool);
  assert_ptr_equal(c, a);
  assert_int_equal(pool.n_free, 0);
  nodump_pool_put(&pool, c);
  nodump_pool_put(&pool, NULL);
  assert_int_equal(pool.n_free, 1);
  nodump_pool_drain(&pool);
  assert_int_equal(pool.n_free, 0);
  assert_null(pool.free_list);

  /* max_free 0: nothing is kept. */
  nodump_pool_init(&pool, 32768, 0);
  a = nodump_pool_get(&pool);
  assert_non_null(a);
  nodump_pool_put(&pool, a);
  assert_int_equal(pool.n_free, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alloc_is_left_out_of_dumps),
      cmocka_unit_test(test_pool_reuses_up_to_max_free),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
