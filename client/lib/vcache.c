/* The client's Verify cache table (see vcache.h). */
#include "vcache.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define VCACHE_WAYS 8
#define VCACHE_KEY_BYTES crypto_shorthash_siphashx24_BYTES /* 16 */

/* An answer, packed: tokend_verify_result_t is 2.6 kB of fixed arrays,
 * most of it unused; blob holds token_id, domain, label, the scopes and
 * the metadata, each NUL-terminated, in that order. */
typedef struct {
  uint8_t key[VCACHE_KEY_BYTES];
  uint64_t epoch;
  uint64_t stamp; /* when stored: the oldest is replaced first */
  int64_t expires_at;
  int64_t reported_at; /* monotonic ms: stored, or hits last reported */
  uint64_t unreported; /* hits answered since */
  uint32_t n_scopes;
  char *blob; /* NULL: the slot is free */
} vcache_entry_t;

/* Twice the slots the bound allows, in a power of two of sets: a table
 * sized to exactly the hot set would overflow some sets (balls into bins)
 * and evict what it was sized to hold. The bound is on answers held. */
#define VCACHE_SLACK 2

struct vcache_s {
  uint8_t hash_key[crypto_shorthash_siphashx24_KEYBYTES];
  size_t n_sets, ways, count, max;
  size_t hand; /* where vcache_evict_one looks next */
  uint64_t clock;
  vcache_entry_t *entries; /* n_sets * ways */
};

int vcache_new(size_t max_entries, vcache_t **out) {
  vcache_t *v;

  *out = NULL;
  if (max_entries == 0)
    return TOKEND_EINVAL;
  if (sodium_init() < 0)
    return TOKEND_EINTERNAL;
  v = calloc(1, sizeof(*v));
  if (v == NULL)
    return TOKEND_ENOMEM;
  v->ways = VCACHE_WAYS;
  v->max = max_entries;
  /* Bounded before the arithmetic: no more sets than the answers allowed. */
  for (v->n_sets = 1; v->n_sets * v->ways < VCACHE_SLACK * max_entries &&
                      v->n_sets < max_entries;
       v->n_sets *= 2)
    ;
  /* calloc checks the product. */
  v->entries = calloc(v->n_sets * v->ways, sizeof(*v->entries));
  if (v->entries == NULL) {
    free(v);
    return TOKEND_ENOMEM;
  }
  randombytes_buf(v->hash_key, sizeof(v->hash_key));
  *out = v;
  return 0;
}

void vcache_free(vcache_t *v) {
  if (v == NULL)
    return;
  vcache_clear(v);
  sodium_memzero(v->hash_key, sizeof(v->hash_key));
  free(v->entries);
  free(v);
}

/* Copies the NUL-terminated string at *p into dst[size] and moves *p past
 * it. The blob was made from strings that fit. */
static void vcache_unpack_str(const char **p, char *dst, size_t size) {
  size_t n = strlen(*p);

  if (n >= size)
    n = size - 1;
  memcpy(dst, *p, n);
  dst[n] = '\0';
  *p += strlen(*p) + 1;
}

static void vcache_unpack(const vcache_entry_t *e,
                          tokend_verify_result_t *out) {
  const char *p = e->blob;
  uint32_t i;

  out->valid = 1;
  out->reason = TOKEND_VERIFY_VALID;
  out->expires_at = e->expires_at;
  vcache_unpack_str(&p, out->token_id, sizeof(out->token_id));
  vcache_unpack_str(&p, out->domain, sizeof(out->domain));
  vcache_unpack_str(&p, out->label, sizeof(out->label));
  out->n_scopes = e->n_scopes;
  for (i = 0; i < e->n_scopes; i++)
    vcache_unpack_str(&p, out->scopes[i], sizeof(out->scopes[i]));
  vcache_unpack_str(&p, out->metadata, sizeof(out->metadata));
}

/* A new blob of res's strings; NULL when out of memory. */
static char *vcache_pack(const tokend_verify_result_t *res) {
  size_t n = strlen(res->token_id) + strlen(res->domain) + strlen(res->label) +
             strlen(res->metadata) + 4,
         i, k;
  char *blob, *p;

  for (i = 0; i < res->n_scopes; i++)
    n += strlen(res->scopes[i]) + 1;
  if ((blob = malloc(n)) == NULL)
    return NULL;
  p = blob;
#define VCACHE_PACK(s)                                                         \
  do {                                                                         \
    k = strlen(s) + 1;                                                         \
    memcpy(p, (s), k);                                                         \
    p += k;                                                                    \
  } while (0)
  VCACHE_PACK(res->token_id);
  VCACHE_PACK(res->domain);
  VCACHE_PACK(res->label);
  for (i = 0; i < res->n_scopes; i++)
    VCACHE_PACK(res->scopes[i]);
  VCACHE_PACK(res->metadata);
#undef VCACHE_PACK
  return blob;
}

/* The token's key and the set it lives in. */
static vcache_entry_t *vcache_set(const vcache_t *v, const char *token,
                                  uint8_t key[VCACHE_KEY_BYTES]) {
  uint64_t h;

  crypto_shorthash_siphashx24(key, (const unsigned char *)token, strlen(token),
                              v->hash_key);
  memcpy(&h, key, sizeof(h));
  return v->entries + (h & (v->n_sets - 1)) * v->ways;
}

int vcache_get(vcache_t *v, const char *token, uint64_t epoch,
               vcache_clock_t now, int64_t mono_ms, int64_t report_ms,
               tokend_verify_result_t *out, uint64_t *hits) {
  uint8_t key[VCACHE_KEY_BYTES];
  vcache_entry_t *set = vcache_set(v, token, key);
  size_t i;

  for (i = 0; i < v->ways; i++) {
    vcache_entry_t *e = &set[i];

    if (e->blob == NULL || memcmp(e->key, key, sizeof(key)) != 0)
      continue;
    if (e->epoch != epoch || (e->expires_at != 0 && now() >= e->expires_at))
      return VCACHE_MISS;
    if (e->unreported > 0 && mono_ms - e->reported_at >= report_ms) {
      *hits = e->unreported;
      e->unreported = 0;
      e->reported_at = mono_ms;
      return VCACHE_REPORT;
    }
    e->unreported++;
    vcache_unpack(e, out);
    return VCACHE_HIT;
  }
  return VCACHE_MISS;
}

/* At the bound, with nothing held in the set a new answer goes to: frees
 * the next held answer a clock hand finds, so the newest is always held. */
static void vcache_evict_one(vcache_t *v) {
  size_t n, total = v->n_sets * v->ways;
  vcache_entry_t *e;

  for (n = 0; n < total; n++) {
    e = &v->entries[v->hand];
    v->hand = (v->hand + 1) % total;
    if (e->blob != NULL) {
      free(e->blob);
      memset(e, 0, sizeof(*e));
      v->count--;
      return;
    }
  }
}

/* How much a slot is worth keeping: free < of another epoch < older. */
static int vcache_worse(const vcache_entry_t *a, const vcache_entry_t *b,
                        uint64_t epoch) {
  if ((a->blob == NULL) != (b->blob == NULL))
    return a->blob == NULL;
  if ((a->epoch != epoch) != (b->epoch != epoch))
    return a->epoch != epoch;
  return a->stamp < b->stamp;
}

void vcache_put(vcache_t *v, const char *token, uint64_t epoch, int64_t mono_ms,
                const tokend_verify_result_t *res) {
  uint8_t key[VCACHE_KEY_BYTES];
  vcache_entry_t *set, *victim = NULL;
  char *blob;
  size_t i;

  if (!res->valid || res->reason != TOKEND_VERIFY_VALID ||
      res->n_scopes > TOKEND_MAX_SCOPES)
    return;
  set = vcache_set(v, token, key);
  for (i = 0; i < v->ways; i++) {
    if (set[i].blob != NULL && memcmp(set[i].key, key, sizeof(key)) == 0) {
      victim = &set[i]; /* the same token: its new answer replaces it */
      break;
    }
    /* At the bound, only a held answer may make room. */
    if (v->count >= v->max && set[i].blob == NULL)
      continue;
    if (victim == NULL || vcache_worse(&set[i], victim, epoch))
      victim = &set[i];
  }
  if (victim == NULL) {
    /* At the bound, and nothing held in this set: room is made elsewhere,
     * and any slot of this (empty) set takes it. */
    vcache_evict_one(v);
    victim = &set[0];
  }
  /* Out of memory: simply not cached (room made above stays free). */
  if ((blob = vcache_pack(res)) == NULL)
    return;
  if (victim->blob == NULL)
    v->count++;
  free(victim->blob);
  memcpy(victim->key, key, sizeof(key));
  victim->epoch = epoch;
  victim->stamp = ++v->clock;
  victim->expires_at = res->expires_at;
  victim->reported_at = mono_ms;
  victim->unreported = 0;
  victim->n_scopes = (uint32_t)res->n_scopes;
  victim->blob = blob;
}

/* Frees every answer (a new region: its epochs start again). Answers of an
 * older epoch need no clearing: they are never returned, and are the first
 * replaced. */
void vcache_clear(vcache_t *v) {
  size_t i;

  for (i = 0; v->count > 0 && i < v->n_sets * v->ways; i++)
    if (v->entries[i].blob != NULL) {
      free(v->entries[i].blob);
      memset(&v->entries[i], 0, sizeof(v->entries[i]));
      v->count--;
    }
}

size_t vcache_count(const vcache_t *v) { return v->count; }

size_t vcache_capacity(const vcache_t *v) { return v->max; }
