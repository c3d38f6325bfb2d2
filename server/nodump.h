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

#endif
