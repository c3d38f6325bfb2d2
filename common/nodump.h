/* nodump: anonymous memory left out of core dumps (MADV_DONTDUMP), for the
 * buffers that hold token secrets: the connections' read buffers (a Verify
 * request carries a token) and output buffers (an Issue answer carries
 * one). Each block is its own mapping, so getting one costs two system
 * calls (mmap, madvise) and giving it back one (munmap): callers keep their
 * blocks for a connection's life rather than per request. */
#ifndef TOKEND_NODUMP_H
#define TOKEND_NODUMP_H

#include <stddef.h>

/* len bytes (rounded up to whole pages), zeroed and excluded from core
 * dumps, or NULL (out of memory, len 0, or the kernel refused the advice:
 * then nothing stays mapped, as a secret must not land in a dump). The
 * caller frees it with nodump_free(p, len). */
void *nodump_alloc(size_t len);

/* Unmaps what nodump_alloc(len) returned (len the same). Does not wipe:
 * the kernel never hands unmapped pages to anyone unzeroed, and a caller
 * whose block held a secret wipes it when done with the secret. NULL is a
 * no-op. */
void nodump_free(void *p, size_t len);

/* Blocks of one size from nodump_alloc, kept for reuse: a connection that
 * closes gives its buffers' block back and the next one takes it without
 * a system call (mapping and unmapping a block for every short connection
 * doubled tokend's CPU time per connection, unmapping a page of a
 * process with several threads costing a TLB shootdown). At most max_free
 * are kept; more are unmapped. Only one thread may use a pool. */
typedef struct {
  size_t block;    /* bytes per block */
  size_t max_free; /* blocks kept at most (0: none) */
  size_t n_free;
  void *free_list; /* linked through each free block's first bytes */
} nodump_pool_t;

void nodump_pool_init(nodump_pool_t *pool, size_t block, size_t max_free);

/* A block (not zeroed: it may be a reused one), or NULL. */
void *nodump_pool_get(nodump_pool_t *pool);

/* Gives back a block from nodump_pool_get (NULL: a no-op). It must hold no
 * secret any more: it is kept as it is. */
void nodump_pool_put(nodump_pool_t *pool, void *b);

/* Unmaps every block kept. */
void nodump_pool_drain(nodump_pool_t *pool);

#endif
