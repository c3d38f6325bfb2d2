#define _GNU_SOURCE /* MADV_DONTDUMP */
#include "nodump.h"

#include <stdint.h>
#include <string.h>
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

void nodump_pool_init(nodump_pool_t *pool, size_t block, size_t max_free) {
  pool->block = block < sizeof(void *) ? sizeof(void *) : block;
  pool->max_free = max_free;
  pool->n_free = 0;
  pool->free_list = NULL;
}

void *nodump_pool_get(nodump_pool_t *pool) {
  void *b = pool->free_list;

  if (b == NULL)
    return nodump_alloc(pool->block);
  memcpy(&pool->free_list, b, sizeof(void *));
  pool->n_free--;
  return b;
}

void nodump_pool_put(nodump_pool_t *pool, void *b) {
  if (b == NULL)
    return;
  if (pool->n_free >= pool->max_free) {
    nodump_free(b, pool->block);
    return;
  }
  memcpy(b, &pool->free_list, sizeof(void *));
  pool->free_list = b;
  pool->n_free++;
}

void nodump_pool_drain(nodump_pool_t *pool) {
  void *b;

  while ((b = pool->free_list) != NULL) {
    memcpy(&pool->free_list, b, sizeof(void *));
    nodump_free(b, pool->block);
  }
  pool->n_free = 0;
}
