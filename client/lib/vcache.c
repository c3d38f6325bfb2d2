/* The client's Verify cache table (see vcache.h). */
#include "vcache.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "siphash.h"

/* SipHash-1-3: see vcache.h for why these rounds. */
#define VCACHE_SIP_C 1
#define VCACHE_SIP_D 3

/* The strings every answer has before its scopes: token_id, domain, label,
 * metadata. */
#define VCACHE_FIXED_STRS 4

/* An answer too long for its entry: the strings' lengths (each counting
 * its NUL), then the strings back to back: token_id, domain, label,
 * metadata, then the scopes. (tokend_verify_result_t itself is 2.6 kB of fixed
 * arrays, most of them unused.) */
typedef struct {
  uint16_t len[VCACHE_FIXED_STRS + TOKEND_MAX_SCOPES];
  char str[];
} vcache_answer_t;

/* Bytes of an answer held in its entry: one length byte per string (each
 * counting its NUL), then the strings back to back. The token id (24
 * characters), no metadata, and a domain, a label and one scope of 38
 * characters together, fit. */
#define VCACHE_INLINE_BYTES 72

/* An entry: two cache lines, 128-aligned (fetched together: their address
 * is known at once, so a hit waits for one trip to memory, not a chain of
 * them). */
typedef struct {
  uint64_t tag[2];     /* the token's keyed hash */
  uint64_t epoch;      /* the epoch the answer was stored under */
  int64_t expires_at;  /* Unix ms; 0: never */
  int64_t reported_at; /* monotonic ms: stored, or hits last reported */
  uint64_t unreported; /* hits answered since */
  uint8_t n_strs;      /* VCACHE_FIXED_STRS + scopes */
  uint8_t in_entry;    /* 1: the strings are in ans.bytes, 0: ans.heap */
  uint8_t referenced;  /* used since the clock hand last passed */
  uint8_t held;        /* 0: on the free list */
  uint32_t slot;       /* where the index points at it */
  union {
    uint8_t bytes[VCACHE_INLINE_BYTES];
    vcache_answer_t *heap;
  } ans;
} vcache_entry_t;

_Static_assert(sizeof(vcache_entry_t) == 128, "an entry is two cache lines");

/* An index slot: the low 32 bits of the tag's first word (its home is
 * tag & mask, so the index has at most 2^32 slots) and 1 + the entry's
 * number, 0 for a free slot. 8 bytes: the index of 10,000 answers is 128
 * kB, so it stays in the CPU's cache while the entries are looked up. */
typedef struct {
  uint32_t frag;
  uint32_t ent;
} vcache_slot_t;

/* Index slots per answer allowed, at least: linear probing stays short
 * while at most 3/4 of them are used (a power of two at or above max *
 * 4/3, so between 3/8 and 3/4 of them at the bound). */
#define VCACHE_LOAD_NUM 4
#define VCACHE_LOAD_DEN 3
#define VCACHE_ENTRY_ALIGN 128
#define VCACHE_MAX_ENTRIES (UINT32_C(1) << 30)

struct vcache_s {
  uint64_t key[2]; /* the tag's key: random, this process's only */
  size_t mask;     /* index slots - 1; a power of two */
  size_t count, max;
  size_t hand; /* the entry the clock hand looks at next */
  vcache_slot_t *index;
  vcache_entry_t *entries; /* max of them, 128-aligned in entries_mem */
  void *entries_mem;
  uint32_t *free_ents; /* the numbers of the entries not held */
  size_t n_free;
};

int vcache_new(size_t max_entries, vcache_t **out) {
  size_t n, i;
  vcache_t *v;

  *out = NULL;
  if (max_entries == 0)
    return TOKEND_EINVAL;
  /* Bounded before the arithmetic: entry numbers fit 32 bits, and so do
   * the index's slots. */
  if (max_entries > VCACHE_MAX_ENTRIES ||
      max_entries > SIZE_MAX / sizeof(vcache_entry_t) - 1)
    return TOKEND_ENOMEM;
  if (sodium_init() < 0)
    return TOKEND_EINTERNAL;
  for (n = 8; n * VCACHE_LOAD_DEN < max_entries * VCACHE_LOAD_NUM; n *= 2)
    ;
  if ((v = calloc(1, sizeof(*v))) == NULL)
    return TOKEND_ENOMEM;
  v->index = calloc(n, sizeof(*v->index));
  /* calloc, aligned by hand: a large table comes zeroed from mmap and its
   * pages are only taken as answers fill them (entries are handed out in
   * order), where aligned_alloc and a memset would take them all now. */
  v->entries_mem = calloc(max_entries + 1, sizeof(*v->entries));
  v->free_ents = calloc(max_entries, sizeof(*v->free_ents));
  if (v->index == NULL || v->entries_mem == NULL || v->free_ents == NULL) {
    free(v->index);
    free(v->entries_mem);
    free(v->free_ents);
    free(v);
    return TOKEND_ENOMEM;
  }
  v->entries =
      (vcache_entry_t *)(((uintptr_t)v->entries_mem + VCACHE_ENTRY_ALIGN - 1) &
                         ~(uintptr_t)(VCACHE_ENTRY_ALIGN - 1));
  v->mask = n - 1;
  v->max = max_entries;
  /* Handed out from the top, so the first answers take the first
   * entries. */
  for (i = 0; i < max_entries; i++)
    v->free_ents[i] = (uint32_t)(max_entries - 1 - i);
  v->n_free = max_entries;
  randombytes_buf(v->key, sizeof(v->key));
  *out = v;
  return 0;
}

void vcache_free(vcache_t *v) {
  if (v == NULL)
    return;
  vcache_clear(v);
  sodium_memzero(v->key, sizeof(v->key));
  free(v->index);
  free(v->entries_mem);
  free(v->free_ents);
  free(v);
}

static void vcache_tag(const vcache_t *v, const char *token, uint64_t tag[2]) {
  siphash128(v->key, token, strlen(token), VCACHE_SIP_C, VCACHE_SIP_D, tag);
}

/* The entry holding tag, or NULL; *pos gets where the search ended (the
 * tag's index slot, or the free slot that ends its run). */
static vcache_entry_t *vcache_find(const vcache_t *v, const uint64_t tag[2],
                                   size_t *pos) {
  uint32_t frag = (uint32_t)tag[0];
  size_t i;

  for (i = tag[0] & v->mask;; i = (i + 1) & v->mask) {
    const vcache_slot_t *x = &v->index[i];

    if (x->ent == 0) {
      *pos = i;
      return NULL;
    }
    if (x->frag == frag) {
      vcache_entry_t *e = &v->entries[x->ent - 1];

      if (e->tag[0] == tag[0] && e->tag[1] == tag[1]) {
        *pos = i;
        return e;
      }
    }
  }
}

/* memcpy for the short strings of an answer: GCC inlines a memcpy of a
 * length it does not know as `rep movsq`, whose start-up alone took most
 * of a hit's time; two overlapping fixed-size moves do not. */
static inline void vcache_copy(char *dst, const char *src, size_t n) {
  if (n >= 16 && n <= 32) {
    memcpy(dst, src, 16);
    memcpy(dst + n - 16, src + n - 16, 16);
  } else if (n >= 8 && n < 16) {
    memcpy(dst, src, 8);
    memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4 && n < 8) {
    memcpy(dst, src, 4);
    memcpy(dst + n - 4, src + n - 4, 4);
  } else if (n < 4) {
    size_t i;

    for (i = 0; i < n; i++)
      dst[i] = src[i];
  } else {
    /* Longer: out of line, where libc picks its best copy. */
    void *(*volatile copy)(void *, const void *, size_t) = memcpy;

    copy(dst, src, n);
  }
}

static void vcache_unpack(const vcache_entry_t *e,
                          tokend_verify_result_t *out) {
  const uint8_t *len8 = e->ans.bytes;
  const uint16_t *len16 = NULL;
  const char *p;
  size_t n;
  uint8_t i;

  if (e->in_entry)
    p = (const char *)&e->ans.bytes[e->n_strs];
  else {
    len16 = e->ans.heap->len;
    p = e->ans.heap->str;
  }
#define VCACHE_LEN(k) (len16 == NULL ? (size_t)len8[k] : (size_t)len16[k])
  out->valid = 1;
  out->reason = TOKEND_VERIFY_VALID;
  out->expires_at = e->expires_at;
  vcache_copy(out->token_id, p, n = VCACHE_LEN(0));
  p += n;
  vcache_copy(out->domain, p, n = VCACHE_LEN(1));
  p += n;
  vcache_copy(out->label, p, n = VCACHE_LEN(2));
  p += n;
  vcache_copy(out->metadata, p, n = VCACHE_LEN(3));
  p += n;
  out->n_scopes = (size_t)e->n_strs - VCACHE_FIXED_STRS;
  for (i = VCACHE_FIXED_STRS; i < e->n_strs; i++) {
    vcache_copy(out->scopes[i - VCACHE_FIXED_STRS], p, n = VCACHE_LEN(i));
    p += n;
  }
#undef VCACHE_LEN
}

int vcache_get(vcache_t *v, const char *token, uint64_t epoch,
               vcache_clock_t now, int64_t mono_ms, int64_t report_ms,
               tokend_verify_result_t *out, uint64_t *hits) {
  uint64_t tag[2];
  vcache_entry_t *e;
  size_t pos;

  vcache_tag(v, token, tag);
  if ((e = vcache_find(v, tag, &pos)) == NULL)
    return VCACHE_MISS;
  if (e->epoch != epoch || (e->expires_at != 0 && now() >= e->expires_at))
    return VCACHE_MISS;
  e->referenced = 1;
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

/* Frees what an entry holds and clears it. */
static void vcache_entry_clear(vcache_entry_t *e) {
  if (e->held && !e->in_entry)
    free(e->ans.heap);
  memset(e, 0, sizeof(*e));
}

/* Drops the entry index slot i points at: the entry goes back to the free
 * list and the index closes the gap (backward-shift deletion: each later
 * slot of the run that may live nearer its home moves back), so every held
 * tag stays reachable from its home without tombstones. */
static void vcache_remove_at(vcache_t *v, size_t i) {
  uint32_t ent = v->index[i].ent - 1;
  size_t j = i, home;

  vcache_entry_clear(&v->entries[ent]);
  v->free_ents[v->n_free++] = ent;
  v->count--;
  for (;;) {
    j = (j + 1) & v->mask;
    if (v->index[j].ent == 0)
      break;
    home = v->index[j].frag & v->mask;
    /* j's tag may fill the gap at i only if its home is not in (i, j]. */
    if (((j - home) & v->mask) >= ((j - i) & v->mask)) {
      v->index[i] = v->index[j];
      v->entries[v->index[i].ent - 1].slot = (uint32_t)i;
      i = j;
    }
  }
  v->index[i].frag = 0;
  v->index[i].ent = 0;
}

/* At the bound: frees one answer, the first the clock hand finds that is of
 * an older epoch than epoch or was not used since the hand last passed
 * (second chance, an approximation of least recently used). At most two
 * turns of the hand. */
static void vcache_evict_one(vcache_t *v, uint64_t epoch) {
  for (;;) {
    vcache_entry_t *e = &v->entries[v->hand];

    v->hand = (v->hand + 1) % v->max;
    if (!e->held)
      continue;
    if (e->epoch != epoch || !e->referenced) {
      vcache_remove_at(v, e->slot);
      return;
    }
    e->referenced = 0;
  }
}

/* Fills e's answer with res's strings; TOKEND_ENOMEM, or TOKEND_EINVAL when
 * a string does not end within its field (the caller's struct is not one
 * tokend filled). */
static int vcache_pack(vcache_entry_t *e, const tokend_verify_result_t *res) {
  const char *str[VCACHE_FIXED_STRS + TOKEND_MAX_SCOPES];
  size_t cap[VCACHE_FIXED_STRS + TOKEND_MAX_SCOPES];
  size_t len[VCACHE_FIXED_STRS + TOKEND_MAX_SCOPES];
  size_t n = VCACHE_FIXED_STRS + res->n_scopes, total = 0, i;
  char *p;

  str[0] = res->token_id;
  cap[0] = sizeof(res->token_id);
  str[1] = res->domain;
  cap[1] = sizeof(res->domain);
  str[2] = res->label;
  cap[2] = sizeof(res->label);
  str[3] = res->metadata;
  cap[3] = sizeof(res->metadata);
  for (i = 0; i < res->n_scopes; i++) {
    str[VCACHE_FIXED_STRS + i] = res->scopes[i];
    cap[VCACHE_FIXED_STRS + i] = sizeof(res->scopes[i]);
  }
  for (i = 0; i < n; i++) {
    len[i] = strnlen(str[i], cap[i]);
    if (len[i] == cap[i])
      return TOKEND_EINVAL;
    total += ++len[i];
  }
  e->n_strs = (uint8_t)n;
  /* Every string fits a length byte when they fit together. */
  if (n + total <= VCACHE_INLINE_BYTES) {
    e->in_entry = 1;
    p = (char *)&e->ans.bytes[n];
    for (i = 0; i < n; i++) {
      e->ans.bytes[i] = (uint8_t)len[i];
      memcpy(p, str[i], len[i]);
      p += len[i];
    }
    return 0;
  }
  e->in_entry = 0;
  if ((e->ans.heap = malloc(sizeof(*e->ans.heap) + total)) == NULL)
    return TOKEND_ENOMEM;
  p = e->ans.heap->str;
  for (i = 0; i < n; i++) {
    e->ans.heap->len[i] = (uint16_t)len[i];
    memcpy(p, str[i], len[i]);
    p += len[i];
  }
  return 0;
}

void vcache_put(vcache_t *v, const char *token, uint64_t epoch, int64_t mono_ms,
                const tokend_verify_result_t *res) {
  vcache_entry_t *e, *stale;
  uint64_t tag[2];
  size_t pos, i;
  uint32_t ent;

  if (!res->valid || res->reason != TOKEND_VERIFY_VALID ||
      res->n_scopes > TOKEND_MAX_SCOPES)
    return;
  vcache_tag(v, token, tag);
  for (;;) {
    /* The token's entry if held: its new answer replaces the old. */
    if ((e = vcache_find(v, tag, &pos)) != NULL)
      break;
    /* Else the first answer of an older epoch on the tag's run: taking its
     * slot keeps every other run whole. */
    for (i = tag[0] & v->mask; i != pos; i = (i + 1) & v->mask) {
      stale = &v->entries[v->index[i].ent - 1];
      if (stale->epoch != epoch) {
        e = stale;
        pos = i;
        break;
      }
    }
    if (e != NULL)
      break;
    /* Else a free entry, at the end of the run. */
    if (v->n_free > 0) {
      ent = v->free_ents[--v->n_free];
      v->index[pos].ent = ent + 1;
      e = &v->entries[ent];
      v->count++;
      break;
    }
    /* At the bound: room is made elsewhere, which may move this run. */
    vcache_evict_one(v, epoch);
  }
  vcache_entry_clear(e);
  /* Out of memory (or a malformed answer): not cached, and the slot
   * freed. */
  if (vcache_pack(e, res) != 0) {
    e->held = 1;
    e->in_entry = 1;
    vcache_remove_at(v, pos);
    return;
  }
  v->index[pos].frag = (uint32_t)tag[0];
  e->tag[0] = tag[0];
  e->tag[1] = tag[1];
  e->epoch = epoch;
  e->expires_at = res->expires_at;
  e->reported_at = mono_ms;
  e->unreported = 0;
  /* Kept at the bound only once used again: otherwise, with every answer
   * marked, one turn of the hand would clear all and the second evict
   * wherever it stood, a token in constant use included. */
  e->referenced = 0;
  e->held = 1;
  e->slot = (uint32_t)pos;
}

/* Frees every answer (a new region: its epochs start again). Answers of an
 * older epoch need no clearing: they are never returned, and are the first
 * replaced. */
void vcache_clear(vcache_t *v) {
  size_t i;

  for (i = 0; i < v->max; i++)
    if (v->entries[i].held)
      vcache_entry_clear(&v->entries[i]);
  memset(v->index, 0, (v->mask + 1) * sizeof(*v->index));
  for (i = 0; i < v->max; i++)
    v->free_ents[i] = (uint32_t)(v->max - 1 - i);
  v->n_free = v->max;
  v->count = 0;
  v->hand = 0;
}

size_t vcache_count(const vcache_t *v) { return v->count; }

size_t vcache_capacity(const vcache_t *v) { return v->max; }
