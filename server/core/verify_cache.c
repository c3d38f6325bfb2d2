#include "core/verify_cache.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/bigmem.h"

/* The tag is stored whole in the slot, so a probe reads only the slot array
 * until it finds the match, and the entry is touched once, for the answer. */
typedef struct {
  verify_tag_t tag;
  index_entry_t *e; /* NULL: empty */
} slot_t;

struct verify_cache_s {
  slot_t *slots;
  size_t cap; /* power of two */
  size_t count;
  /* crypto_shorthash_siphashx24_KEYBYTES from sodium_malloc: not in core
   * dumps, guard pages around it */
  uint8_t *key;
};

#define VERIFY_CACHE_INITIAL_CAP 1024

_Static_assert(crypto_shorthash_siphashx24_BYTES == sizeof(verify_tag_t),
               "a tag is one SipHash-2-4 128-bit output");

int verify_cache_new(verify_cache_t **out) {
  verify_cache_t *vc = calloc(1, sizeof(*vc));

  if (vc == NULL)
    return TOKEND_ENOMEM;
  vc->slots = bigmem_calloc(VERIFY_CACHE_INITIAL_CAP, sizeof(*vc->slots));
  if (vc->slots == NULL) {
    free(vc);
    return TOKEND_ENOMEM;
  }
  vc->cap = VERIFY_CACHE_INITIAL_CAP;
  vc->key = sodium_malloc(crypto_shorthash_siphashx24_KEYBYTES);
  if (vc->key == NULL) {
    bigmem_free(vc->slots, vc->cap, sizeof(*vc->slots));
    free(vc);
    return TOKEND_ENOMEM;
  }
  randombytes_buf(vc->key, crypto_shorthash_siphashx24_KEYBYTES);
  (void)sodium_mprotect_readonly(vc->key);
  *out = vc;
  return 0;
}

void verify_cache_free(verify_cache_t *vc) {
  if (vc == NULL)
    return;
  sodium_free(vc->key); /* wipes it */
  bigmem_free(vc->slots, vc->cap, sizeof(*vc->slots));
  free(vc);
}

void verify_cache_tag(const verify_cache_t *vc, const char *token, size_t len,
                      verify_tag_t *tag) {
  crypto_shorthash_siphashx24((unsigned char *)tag->w,
                              (const unsigned char *)token, len, vc->key);
}

/* Equal in time independent of where the tags differ. */
static int tag_equal(const verify_tag_t *a, const verify_tag_t *b) {
  return ((a->w[0] ^ b->w[0]) | (a->w[1] ^ b->w[1])) == 0;
}

static size_t probe(const slot_t *slots, size_t cap, const verify_tag_t *tag) {
  size_t mask = cap - 1, i = (size_t)tag->w[0] & mask;

  while (slots[i].e != NULL && !tag_equal(&slots[i].tag, tag))
    i = (i + 1) & mask;
  return i;
}

void verify_cache_prefetch(const verify_cache_t *vc, const verify_tag_t *tag) {
  __builtin_prefetch(&vc->slots[(size_t)tag->w[0] & (vc->cap - 1)]);
}

index_entry_t *verify_cache_find(const verify_cache_t *vc,
                                 const verify_tag_t *tag) {
  return vc->slots[probe(vc->slots, vc->cap, tag)].e;
}

/* Room for n tags at most 3/4 full: 32-64 bytes per tag. */
static int fits(size_t n, size_t cap) { return n <= cap / 4 * 3; }

static int rehash(verify_cache_t *vc, size_t cap) {
  slot_t *slots = bigmem_calloc(cap, sizeof(*slots));
  size_t i;

  if (slots == NULL)
    return TOKEND_ENOMEM;
  for (i = 0; i < vc->cap; i++)
    if (vc->slots[i].e != NULL)
      slots[probe(slots, cap, &vc->slots[i].tag)] = vc->slots[i];
  bigmem_free(vc->slots, vc->cap, sizeof(*vc->slots));
  vc->slots = slots;
  vc->cap = cap;
  return 0;
}

int verify_cache_reserve(verify_cache_t *vc, size_t n) {
  size_t cap = vc->cap;

  while (!fits(n, cap)) {
    if (cap > SIZE_MAX / 2 / sizeof(slot_t))
      return TOKEND_ENOMEM;
    cap *= 2;
  }
  return cap == vc->cap ? 0 : rehash(vc, cap);
}

void verify_cache_add(verify_cache_t *vc, const verify_tag_t *tag,
                      index_entry_t *e) {
  size_t i;

  if (!fits(vc->count + 1, vc->cap) && rehash(vc, vc->cap * 2) != 0)
    return;
  i = probe(vc->slots, vc->cap, tag);
  if (vc->slots[i].e != NULL)
    return;
  vc->slots[i].tag = *tag;
  vc->slots[i].e = e;
  vc->count++;
}

size_t verify_cache_count(const verify_cache_t *vc) { return vc->count; }
