#include "token.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

static const char base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static int is_base62(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
         (c >= 'a' && c <= 'z');
}

static int is_prefix_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
}

static void random_base62(char *out, size_t n) {
  size_t i;
  /* randombytes_uniform() rejects biased draws, so each char is uniform. */
  for (i = 0; i < n; i++)
    out[i] = base62[randombytes_uniform(62)];
}

static void checksum_encode(uint32_t crc,
                            char out[TOKEND_TOKEN_CHECKSUM_CHARS]) {
  int i;
  /* Fixed width, most significant digit first. */
  for (i = TOKEND_TOKEN_CHECKSUM_CHARS - 1; i >= 0; i--) {
    out[i] = base62[crc % 62];
    crc /= 62;
  }
}

/* Table-driven CRC-32 (reflected, polynomial 0xEDB88320): one lookup per
 * byte instead of eight shifts, on the path of every Verify. */
static uint32_t crc_table[256];

static void crc_table_init(void) {
  uint32_t c;
  int i, k;

  for (i = 0; i < 256; i++) {
    c = (uint32_t)i;
    for (k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    crc_table[i] = c;
  }
}

uint32_t token_crc32(const uint8_t *buf, size_t len) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  uint32_t crc = 0xFFFFFFFFu;
  size_t i;

  pthread_once(&once, crc_table_init);
  for (i = 0; i < len; i++)
    crc = (crc >> 8) ^ crc_table[(crc ^ buf[i]) & 0xFFu];
  return ~crc;
}

int token_prefix_check(const char *prefix) {
  size_t n = strlen(prefix);
  size_t i;

  if (n == 0 || n > TOKEND_PREFIX_MAX_CHARS)
    return TOKEND_EINVAL;
  for (i = 0; i < n; i++)
    if (!is_prefix_char(prefix[i]))
      return TOKEND_EINVAL;
  return 0;
}

int token_generate(const char *prefix, char out[TOKEND_TOKEN_BYTES]) {
  size_t plen;
  char *p;

  if (token_prefix_check(prefix) != 0)
    return TOKEND_EINVAL;
  plen = strlen(prefix);
  memcpy(out, prefix, plen);
  out[plen] = '_';
  p = out + plen + 1;
  random_base62(p, TOKEND_TOKEN_BODY_CHARS);
  p += TOKEND_TOKEN_BODY_CHARS;
  checksum_encode(token_crc32((const uint8_t *)out, (size_t)(p - out)), p);
  p[TOKEND_TOKEN_CHECKSUM_CHARS] = '\0';
  return 0;
}

int token_check(const char *tok, size_t len) {
  const size_t tail = 1 + TOKEND_TOKEN_BODY_CHARS + TOKEND_TOKEN_CHECKSUM_CHARS;
  size_t plen, i;
  char sum[TOKEND_TOKEN_CHECKSUM_CHARS];

  /* Bounds first: the prefix must be 1..16 chars. */
  if (len < tail + 1 || len > TOKEND_TOKEN_MAX_CHARS)
    return TOKEND_EINVAL;
  plen = len - tail;
  for (i = 0; i < plen; i++)
    if (!is_prefix_char(tok[i]))
      return TOKEND_EINVAL;
  if (tok[plen] != '_')
    return TOKEND_EINVAL;
  for (i = plen + 1; i < len; i++)
    if (!is_base62(tok[i]))
      return TOKEND_EINVAL;
  checksum_encode(
      token_crc32((const uint8_t *)tok, len - TOKEND_TOKEN_CHECKSUM_CHARS),
      sum);
  /* The checksum is not secret, but the compare costs nothing extra. */
  if (sodium_memcmp(sum, tok + len - TOKEND_TOKEN_CHECKSUM_CHARS,
                    TOKEND_TOKEN_CHECKSUM_CHARS) != 0)
    return TOKEND_EINVAL;
  return 0;
}

int token_find_embedded(const char *s, size_t len) {
  const size_t tail = 1 + TOKEND_TOKEN_BODY_CHARS + TOKEND_TOKEN_CHECKSUM_CHARS;
  size_t u, plen;

  /* Every '_' with a full tail after it, and every prefix of 1-16 chars of
   * [a-z0-9] before it: a token's exact extent inside a longer run is not
   * known, but its checksum tells (a random match is 1 in 62^6). */
  for (u = 1; u + tail <= len; u++) {
    if (s[u] != '_')
      continue;
    for (plen = 1; plen <= TOKEND_PREFIX_MAX_CHARS && plen <= u; plen++) {
      if (!is_prefix_char(s[u - plen]))
        break;
      if (token_check(s + u - plen, plen + tail) == 0)
        return 1;
    }
  }
  return 0;
}

/* Called through a volatile pointer, so that the compiler cannot turn the
 * call into inline stores: it must be the C library's own memcpy. */
static void *(*volatile wipe_memcpy)(void *, const void *, size_t) = memcpy;

__attribute__((noinline)) void token_stack_wipe(void) {
  unsigned char stack[TOKEND_STACK_WIPE_BYTES];
  static const unsigned char zeros[256];

  /* sodium_memzero is never optimised away, though stack is dead after. */
  sodium_memzero(stack, sizeof(stack));
  /* memcpy and strlen of a token leave its bytes in vector registers, which
   * a core dump records for every thread: the C library's memcpy of 256
   * zero bytes loads zeros into the registers its copy of a token used
   * (whichever set the CPU made it choose: AVX-512's ymm16-23 included),
   * and on x86-64 vzeroall clears the rest. */
  wipe_memcpy(stack, zeros, sizeof(zeros));
  wipe_memcpy(stack, zeros, 48);
  sodium_memzero(stack, sizeof(zeros));
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx"))
    __asm__ volatile("vzeroall" ::: "memory");
#endif
}

void token_hash(const char *tok, size_t len,
                const uint8_t pepper[TOKEND_PEPPER_BYTES],
                uint8_t out[TOKEND_HASH_BYTES]) {
  crypto_generichash(out, TOKEND_HASH_BYTES, (const unsigned char *)tok, len,
                     pepper, TOKEND_PEPPER_BYTES);
}

void token_hint(const char *tok, size_t len, char out[TOKEND_HINT_BYTES]) {
  const size_t tail = 1 + TOKEND_TOKEN_BODY_CHARS + TOKEND_TOKEN_CHECKSUM_CHARS;
  size_t plen = len > tail ? len - tail : 0;

  if (plen > TOKEND_PREFIX_MAX_CHARS || len < 4) {
    out[0] = '\0';
    return;
  }
  memcpy(out, tok, plen);
  memcpy(out + plen, "_...", 4);
  memcpy(out + plen + 4, tok + len - 4, 4);
  out[plen + 8] = '\0';
}

void token_id_generate(char out[TOKEND_TOKEN_ID_BYTES]) {
  memcpy(out, "tok_", 4);
  random_base62(out + 4, TOKEND_TOKEN_ID_RANDOM_CHARS);
  out[TOKEND_TOKEN_ID_CHARS] = '\0';
}

int token_id_check(const char *id, size_t len) {
  size_t i;

  if (len != TOKEND_TOKEN_ID_CHARS || memcmp(id, "tok_", 4) != 0)
    return TOKEND_EINVAL;
  for (i = 4; i < len; i++)
    if (!is_base62(id[i]))
      return TOKEND_EINVAL;
  return 0;
}
