#define _GNU_SOURCE /* MADV_DONTDUMP */
#include "nodump.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t nodump_round(size_t len) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);

  if (len > SIZE_MAX - page)
    return 0;
  return (len + page - 1) & ~(page - 1);
}

void *nodump_alloc(size_t len) {
  size_t bytes = nodump_round(len);
  void *p;

  if (bytes == 0)
    return NULL;
  p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
           0);
  if (p == MAP_FAILED)
    return NULL;
  if (madvise(p, bytes, MADV_DONTDUMP) != 0) {
    munmap(p, bytes);
    return NULL;
  }
  return p;
}

void nodump_free(void *p, size_t len) {
  if (p != NULL)
    munmap(p, nodump_round(len));
}
