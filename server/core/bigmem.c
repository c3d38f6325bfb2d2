#include "core/bigmem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define BIGMEM_HUGE ((size_t)2 << 20)

static size_t round_up(size_t n) {
  return (n + BIGMEM_HUGE - 1) & ~(BIGMEM_HUGE - 1);
}

void *bigmem_calloc(size_t n, size_t size) {
  size_t bytes, head;
  char *map, *p;

  if (size != 0 && n > SIZE_MAX / size)
    return NULL;
  bytes = n * size;
  if (bytes < BIGMEM_HUGE)
    return calloc(n, size);
  if (bytes > SIZE_MAX - 2 * BIGMEM_HUGE)
    return NULL;
  bytes = round_up(bytes);
  /* One huge page more than needed, then trim to a 2 MiB boundary: only an
   * aligned 2 MiB range can become one huge page. */
  map = mmap(NULL, bytes + BIGMEM_HUGE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED)
    return NULL;
  p = (char *)(((uintptr_t)map + BIGMEM_HUGE - 1) &
               ~(uintptr_t)(BIGMEM_HUGE - 1));
  head = (size_t)(p - map);
  if (head > 0)
    munmap(map, head);
  if (BIGMEM_HUGE - head > 0)
    munmap(p + bytes, BIGMEM_HUGE - head);
  /* Advice only: without transparent huge pages this is ordinary memory. */
  (void)madvise(p, bytes, MADV_HUGEPAGE);
  return p;
}

void bigmem_free(void *p, size_t n, size_t size) {
  size_t bytes = n * size;

  if (p == NULL)
    return;
  if (bytes < BIGMEM_HUGE)
    free(p);
  else
    munmap(p, round_up(bytes));
}
