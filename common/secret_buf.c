#include "secret_buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

void *secret_buf_grow(void *buf, size_t *cap, size_t used, size_t extra,
                      size_t elem, size_t first, int wipe) {
  return secret_buf_grow_in(NULL, buf, cap, used, extra, elem, first, wipe);
}

void *secret_buf_grow_in(const secret_buf_mem_t *mem, void *buf, size_t *cap,
                         size_t used, size_t extra, size_t elem, size_t first,
                         int wipe) {
  size_t ncap = *cap ? *cap : first;
  void *nb;

  if (extra > SIZE_MAX / elem - used)
    return NULL;
  while (ncap - used < extra) {
    if (ncap > SIZE_MAX / elem / 2)
      return NULL;
    ncap *= 2;
  }
  nb = mem != NULL ? mem->alloc(mem->ctx, ncap * elem) : malloc(ncap * elem);
  if (nb == NULL)
    return NULL;
  if (buf != NULL) {
    memcpy(nb, buf, used * elem);
    if (wipe)
      sodium_memzero(buf, *cap * elem);
    if (mem != NULL)
      mem->release(mem->ctx, buf, *cap * elem);
    else
      free(buf);
  }
  *cap = ncap;
  return nb;
}

void secret_buf_consume(unsigned char *buf, size_t len, size_t n, int wipe) {
  if (n < len)
    memmove(buf, buf + n, len - n);
  if (wipe)
    sodium_memzero(buf + len - n, n);
}
