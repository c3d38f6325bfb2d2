/* secret_buf: growing a buffer that may hold token secrets without leaving
 * a copy behind. realloc may move the contents and free the old block as it
 * was; these copy into a new block and wipe the old one first. */
#ifndef TOKEND_SECRET_BUF_H
#define TOKEND_SECRET_BUF_H

#include <stddef.h>

/* Where a buffer's blocks come from, when not from malloc: tokend's
 * connection buffers come from memory left out of core dumps. alloc(ctx,
 * len) returns len bytes or NULL; release(ctx, p, len) takes back what
 * alloc(ctx, len) returned (wiped already, if it held secrets). */
typedef struct {
  void *(*alloc)(void *ctx, size_t len);
  void (*release)(void *ctx, void *p, size_t len);
  void *ctx;
} secret_buf_mem_t;

/* secret_buf_reserve's slow path, when there is not room enough. mem NULL:
 * malloc and free. */
void *secret_buf_grow(void *buf, size_t *cap, size_t used, size_t extra,
                      size_t elem, size_t first, int wipe);
void *secret_buf_grow_in(const secret_buf_mem_t *mem, void *buf, size_t *cap,
                         size_t used, size_t extra, size_t elem, size_t first,
                         int wipe);

/* Room in buf (*cap elements of elem bytes, the first used of them in use)
 * for extra more: buf itself if there is room; else a new block of double
 * the capacity (from first if *cap is 0) as often as needed, holding the
 * first used elements, with *cap updated and buf freed, wiped first if
 * wipe. NULL when out of memory or past SIZE_MAX; buf and *cap are then
 * untouched. Inline: tokend calls it for every answer it writes and every
 * read, and nearly always there is room. */
static inline void *secret_buf_reserve(void *buf, size_t *cap, size_t used,
                                       size_t extra, size_t elem, size_t first,
                                       int wipe) {
  if (*cap - used >= extra)
    return buf;
  return secret_buf_grow(buf, cap, used, extra, elem, first, wipe);
}

/* secret_buf_reserve() with blocks from mem (secret_buf_mem_t), so that a
 * buffer that grows keeps what its first block was given (e.g. being left
 * out of core dumps). */
static inline void *secret_buf_reserve_in(const secret_buf_mem_t *mem,
                                          void *buf, size_t *cap, size_t used,
                                          size_t extra, size_t elem,
                                          size_t first, int wipe) {
  if (*cap - used >= extra)
    return buf;
  return secret_buf_grow_in(mem, buf, cap, used, extra, elem, first, wipe);
}

/* Drops the first n of the len bytes in buf, moving the rest to the front.
 * With wipe, what lies past the new end (bytes dropped, or the old copy of
 * bytes moved) is wiped. */
void secret_buf_consume(unsigned char *buf, size_t len, size_t n, int wipe);

#endif
