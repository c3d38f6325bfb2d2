#include "pb_arena.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct pb_arena_block_s {
  pb_arena_block_t *next;
  size_t size, off;
  max_align_t data[]; /* aligned for anything protobuf-c stores */
};

#define PB_ARENA_ALIGN (sizeof(max_align_t))

static pb_arena_block_t *block_new(size_t size) {
  pb_arena_block_t *b = malloc(sizeof(*b) + size);

  if (b != NULL) {
    b->next = NULL;
    b->size = size;
    b->off = 0;
  }
  return b;
}

/* Each allocation is preceded by one aligned header slot holding its size,
 * so pb_arena_alloc_size() can tell how long a decoded string really was. */
static void *pb_arena_alloc(void *data, size_t size) {
  pb_arena_t *a = data;
  pb_arena_block_t *b;
  size_t n;
  char *p;

  /* Bounds first: size is attacker-influenced. */
  if (size == 0 || size > a->cap) {
    a->exhausted = 1;
    return NULL;
  }
  n = PB_ARENA_ALIGN + ((size + PB_ARENA_ALIGN - 1) & ~(PB_ARENA_ALIGN - 1));
  /* n itself may exceed cap (size just under it, rounded up): check it
   * before subtracting, or cap - n wraps. */
  if (n > a->cap || a->used > a->cap - n) {
    a->exhausted = 1;
    return NULL;
  }
  b = a->extra != NULL ? a->extra : a->first;
  if (b->size - b->off < n) {
    /* A new block at least as big as the first, so small requests that
     * overflow still take one malloc. */
    b = block_new(n > a->first->size ? n : a->first->size);
    if (b == NULL)
      return NULL;
    b->next = a->extra;
    a->extra = b;
  }
  p = (char *)b->data + b->off;
  memcpy(p, &size, sizeof(size));
  b->off += n;
  a->used += n;
  return p + PB_ARENA_ALIGN;
}

size_t pb_arena_alloc_size(const void *ptr) {
  size_t size;

  memcpy(&size, (const char *)ptr - PB_ARENA_ALIGN, sizeof(size));
  return size;
}

/* Individual frees are no-ops; pb_arena_reset releases everything at once. */
static void pb_arena_free_one(void *data, void *ptr) {
  (void)data;
  (void)ptr;
}

int pb_arena_init(pb_arena_t *a, size_t first_bytes, size_t cap) {
  a->first = block_new(first_bytes);
  if (a->first == NULL)
    return TOKEND_ENOMEM;
  a->extra = NULL;
  a->used = 0;
  a->cap = cap;
  a->exhausted = 0;
  a->allocator.alloc = pb_arena_alloc;
  a->allocator.free = pb_arena_free_one;
  a->allocator.allocator_data = a;
  return 0;
}

void pb_arena_reset(pb_arena_t *a) {
  pb_arena_block_t *b, *next;

  for (b = a->extra; b != NULL; b = next) {
    next = b->next;
    sodium_memzero(b->data, b->off);
    free(b);
  }
  a->extra = NULL;
  sodium_memzero(a->first->data, a->first->off);
  a->first->off = 0;
  a->used = 0;
  a->exhausted = 0;
}

void pb_arena_free(pb_arena_t *a) {
  if (a->first == NULL)
    return;
  pb_arena_reset(a);
  free(a->first);
  a->first = NULL;
}
