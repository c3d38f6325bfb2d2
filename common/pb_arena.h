/* pb_arena: a bump allocator for decoding one request at a time.
 *
 * protobuf-c allocates every string and repeated element of a request
 * separately. Decoding into an arena turns those mallocs into pointer bumps
 * and, by capping the arena, bounds what one request may make the server
 * allocate: a small frame with a million empty repeated elements fails to
 * decode instead of costing hundreds of megabytes. Loop thread only. */
#ifndef TOKEND_PB_ARENA_H
#define TOKEND_PB_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "tokend_error.h"

typedef struct pb_arena_block_s pb_arena_block_t;

typedef struct {
  ProtobufCAllocator allocator; /* pass &arena->allocator to *_unpack */
  pb_arena_block_t *first;      /* kept across resets */
  pb_arena_block_t *extra;      /* overflow blocks, freed on reset */
  size_t used;                  /* bytes handed out since the last reset */
  size_t cap;                   /* at most this many per request */
  int exhausted;                /* an allocation hit cap since the reset */
} pb_arena_t;

/* Prepares a with a first block of first_bytes and a per-request cap. */
int pb_arena_init(pb_arena_t *a, size_t first_bytes,
                  size_t cap) TOKEND_MUST_CHECK;

/* The size asked for when ptr (returned by this arena's allocator, since
 * the last reset) was allocated. */
size_t pb_arena_alloc_size(const void *ptr);

/* Wipes what was handed out (requests may carry secrets) and makes the
 * arena empty again, keeping the first block. */
void pb_arena_reset(pb_arena_t *a);

/* Frees every block. */
void pb_arena_free(pb_arena_t *a);

#endif
