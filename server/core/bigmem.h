/* bigmem: zeroed memory for the large tables a Verify reads at random (the
 * index's slots and entries, the verify cache's slots). From 2 MiB up it is
 * mapped on a 2 MiB boundary and marked MADV_HUGEPAGE, so the kernel can
 * back it with transparent huge pages where it offers them: one TLB entry
 * per 2 MiB instead of per 4 KiB. With a million tokens, TLB misses were
 * most of what a lookup cost beyond the 10,000-token case. Smaller blocks
 * come from calloc. */
#ifndef TOKEND_BIGMEM_H
#define TOKEND_BIGMEM_H

#include <stddef.h>

/* n * size zeroed bytes, or NULL (also if n * size overflows). */
void *bigmem_calloc(size_t n, size_t size);
/* Frees what bigmem_calloc(n, size) returned; n and size must be the same.
 * NULL is a no-op. */
void bigmem_free(void *p, size_t n, size_t size);

#endif
