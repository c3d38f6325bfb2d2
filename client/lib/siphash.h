/* SipHash with a 128-bit output (Aumasson and Bernstein's SipHash-c-d,
 * "siphashx" in libsodium's naming), its round counts chosen by the
 * caller, header-only so that the counts and the short loops fold into the
 * caller. The client's Verify cache (vcache.c) tags tokens with it. Pure:
 * no allocation, no state. */
#ifndef TOKEND_SIPHASH_H
#define TOKEND_SIPHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SIPHASH_KEY_BYTES 16

/* Little-endian, as the reference reads its words. */
static inline uint64_t siphash_le64(uint64_t x) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return __builtin_bswap64(x);
#else
  return x;
#endif
}

static inline uint64_t siphash_rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

#define SIPHASH_ROUND(v0, v1, v2, v3)                                          \
  do {                                                                         \
    v0 += v1;                                                                  \
    v1 = siphash_rotl(v1, 13);                                                 \
    v1 ^= v0;                                                                  \
    v0 = siphash_rotl(v0, 32);                                                 \
    v2 += v3;                                                                  \
    v3 = siphash_rotl(v3, 16);                                                 \
    v3 ^= v2;                                                                  \
    v0 += v3;                                                                  \
    v3 = siphash_rotl(v3, 21);                                                 \
    v3 ^= v0;                                                                  \
    v2 += v1;                                                                  \
    v1 = siphash_rotl(v1, 17);                                                 \
    v1 ^= v2;                                                                  \
    v2 = siphash_rotl(v2, 32);                                                 \
  } while (0)

/* SipHash-c-d with 128-bit output of in[0..len) under key k (two
 * words of the 16-byte key as the caller holds them): out[0] is the first 8
 * bytes of the reference output, out[1] the last 8 (read little-endian). With c
 * = 2, d = 4 it is libsodium's crypto_shorthash_siphashx24 (its 16 bytes read
 * as two little-endian words). */
static inline void siphash128(const uint64_t k[2], const void *in, size_t len,
                              int c, int d, uint64_t out[2]) {
  const unsigned char *p = in, *end = p + (len & ~(size_t)7);
  uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ k[0];
  uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ k[1] ^ 0xee;
  uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ k[0];
  uint64_t v3 = UINT64_C(0x7465646279746573) ^ k[1];
  uint64_t m, b = (uint64_t)len << 56;
  int i;

  for (; p != end; p += 8) {
    memcpy(&m, p, 8);
    m = siphash_le64(m);
    v3 ^= m;
    for (i = 0; i < c; i++)
      SIPHASH_ROUND(v0, v1, v2, v3);
    v0 ^= m;
  }
  /* The last bytes, built in a register as the reference does (a
   * memcpy to a stack word stalls on its load: a fifth of the hash). */
  switch (len & 7) {
  case 7:
    b |= (uint64_t)p[6] << 48;
    /* fall through */
  case 6:
    b |= (uint64_t)p[5] << 40;
    /* fall through */
  case 5:
    b |= (uint64_t)p[4] << 32;
    /* fall through */
  case 4:
    b |= (uint64_t)p[3] << 24;
    /* fall through */
  case 3:
    b |= (uint64_t)p[2] << 16;
    /* fall through */
  case 2:
    b |= (uint64_t)p[1] << 8;
    /* fall through */
  case 1:
    b |= (uint64_t)p[0];
    break;
  default:
    break;
  }
  v3 ^= b;
  for (i = 0; i < c; i++)
    SIPHASH_ROUND(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= 0xee;
  for (i = 0; i < d; i++)
    SIPHASH_ROUND(v0, v1, v2, v3);
  out[0] = v0 ^ v1 ^ v2 ^ v3;
  v1 ^= 0xdd;
  for (i = 0; i < d; i++)
    SIPHASH_ROUND(v0, v1, v2, v3);
  out[1] = v0 ^ v1 ^ v2 ^ v3;
}

#endif
