/* index.c: an open-addressing hash table with linear probing.
 *
 * The key is a BLAKE2b output, already uniform, so its first 8 bytes are
 * the bucket hash and no further mixing is needed. Slots hold pointers; the
 * load factor stays at or below 1/2 so probes are short.
 *
 * Memory (bigmem.h): the slot array, and entries bump-allocated from 2 MiB
 * slabs, since entries are never freed before the index is. Both can be
 * huge pages, and a slab saves malloc's per-block overhead. */
#include "core/index.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/bigmem.h"

struct index_s {
  index_entry_t **slots;
  size_t cap; /* power of two */
  size_t count;
  /* Entries with dirty set, in the order they became dirty. */
  index_entry_t **dirty;
  size_t n_dirty, dirty_cap;
  size_t n_revoked;
  /* The sum, lane by lane, of every entry's digest lanes (entry_lanes),
   * kept as entries change: index_digest is then a copy, not a walk of
   * a million entries (ServerStatus may be asked every millisecond). */
  uint64_t digest[4];
  /* Entries with an expiry, for index_status_counts. */
  index_entry_t **expiring;
  size_t n_expiring, expiring_cap;
  size_t n_owned; /* entries whose strings an edit malloc'd */
  /* Entry slabs: the last one is filled from slab_next on. */
  char **slabs;
  size_t n_slabs, slabs_cap;
  char *slab_next;
  size_t slab_left;
  /* Entries on the previous pepper, by id (open addressing, linear
   * probing): insert only; an entry re-keyed since is skipped by its
   * cleared mark, and the table is freed when none is left. */
  index_entry_t **old_slots;
  size_t old_cap, old_used, n_old;
};

#define INDEX_SLAB_BYTES ((size_t)2 << 20)

#define INDEX_INITIAL_CAP 1024

static uint64_t bucket_of(const uint8_t *hash) {
  uint64_t h;

  memcpy(&h, hash, sizeof(h));
  return h;
}

int index_new(index_t **out) {
  index_t *ix = calloc(1, sizeof(*ix));

  if (ix == NULL)
    return TOKEND_ENOMEM;
  ix->slots = bigmem_calloc(INDEX_INITIAL_CAP, sizeof(*ix->slots));
  if (ix->slots == NULL) {
    free(ix);
    return TOKEND_ENOMEM;
  }
  ix->cap = INDEX_INITIAL_CAP;
  *out = ix;
  return 0;
}

void index_free(index_t *ix) {
  size_t i;

  if (ix == NULL)
    return;
  /* Edited entries' strings are the only blocks outside the slabs. */
  for (i = 0; ix->n_owned > 0 && i < ix->cap; i++)
    if (ix->slots[i] != NULL && ix->slots[i]->strings_owned)
      free(ix->slots[i]->strings);
  for (i = 0; i < ix->n_slabs; i++)
    bigmem_free(ix->slabs[i], 1, INDEX_SLAB_BYTES);
  free(ix->slabs);
  bigmem_free(ix->slots, ix->cap, sizeof(*ix->slots));
  free(ix->dirty);
  free(ix->expiring);
  free(ix->old_slots);
  free(ix);
}

/* size bytes for an entry, 8-aligned, from the current slab or a new one;
 * NULL when out of memory. */
static index_entry_t *entry_alloc(index_t *ix, size_t size) {
  char **slabs, *p;
  size_t cap;

  size = (size + 7) & ~(size_t)7;
  if (size > INDEX_SLAB_BYTES)
    return NULL;
  if (size > ix->slab_left) {
    if (ix->n_slabs == ix->slabs_cap) {
      cap = ix->slabs_cap ? ix->slabs_cap * 2 : 16;
      slabs = realloc(ix->slabs, cap * sizeof(*slabs));
      if (slabs == NULL)
        return NULL;
      ix->slabs = slabs;
      ix->slabs_cap = cap;
    }
    p = bigmem_calloc(1, INDEX_SLAB_BYTES);
    if (p == NULL)
      return NULL;
    ix->slabs[ix->n_slabs++] = p;
    ix->slab_next = p;
    ix->slab_left = INDEX_SLAB_BYTES;
  }
  p = ix->slab_next;
  ix->slab_next += size;
  ix->slab_left -= size;
  return (index_entry_t *)(void *)p;
}

/* 1 if the two hashes are equal, in time independent of where they differ
 * (the keys derive from secrets): four 64-bit XORs ORed together, no early
 * exit. sodium_memcmp does the same byte by byte, several times slower on
 * the path of every Verify. */
_Static_assert(TOKEND_HASH_BYTES == 32, "hash_equal compares 4 x 64 bits");

static int hash_equal(const uint8_t *a, const uint8_t *b) {
  uint64_t x[4], y[4];

  memcpy(x, a, sizeof(x));
  memcpy(y, b, sizeof(y));
  return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

static size_t probe(index_entry_t *const *slots, size_t cap,
                    const uint8_t *hash) {
  size_t mask = cap - 1, i = (size_t)bucket_of(hash) & mask;

  while (slots[i] != NULL && !hash_equal(slots[i]->hash, hash))
    i = (i + 1) & mask;
  return i;
}

static int index_grow(index_t *ix) {
  size_t new_cap = ix->cap * 2, i;
  index_entry_t **slots;

  slots = bigmem_calloc(new_cap, sizeof(*slots));
  if (slots == NULL)
    return TOKEND_ENOMEM;
  for (i = 0; i < ix->cap; i++)
    if (ix->slots[i] != NULL)
      slots[probe(slots, new_cap, ix->slots[i]->hash)] = ix->slots[i];
  bigmem_free(ix->slots, ix->cap, sizeof(*ix->slots));
  ix->slots = slots;
  ix->cap = new_cap;
  return 0;
}

/* splitmix64's finaliser: a 64-bit value's bits spread over all 64. */
static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* An entry's four digest lanes: its hash (already uniform: a keyed
 * BLAKE2b), each lane stirred with one of what Verify answers from
 * (expiry, revocation, domain). Not a security property: two hosts'
 * indexes agree when their sums do. */
static void entry_lanes(const index_entry_t *e, uint64_t lanes[4]) {
  const char *d = index_entry_domain(e);
  uint64_t dh = 0xcbf29ce484222325ULL; /* FNV-1a of the domain's name */

  for (; *d != '\0'; d++)
    dh = (dh ^ (unsigned char)*d) * 0x100000001b3ULL;
  memcpy(lanes, e->hash, 4 * sizeof(uint64_t));
  lanes[0] = mix64(lanes[0] ^ mix64((uint64_t)e->expires_at));
  lanes[1] = mix64(lanes[1] ^ mix64((uint64_t)e->revoked_at + 1));
  lanes[2] = mix64(lanes[2] ^ dh);
  lanes[3] = mix64(lanes[3] ^ lanes[0] ^ lanes[1] ^ lanes[2]);
}

static void digest_apply(index_t *ix, const index_entry_t *e, int sign) {
  uint64_t lanes[4];
  int i;

  entry_lanes(e, lanes);
  for (i = 0; i < 4; i++)
    ix->digest[i] += sign > 0 ? lanes[i] : (uint64_t)0 - lanes[i];
}

void index_digest(const index_t *ix, uint64_t acc[4]) {
  int i;

  for (i = 0; i < 4; i++)
    acc[i] += ix->digest[i];
}

static int expiring_add(index_t *ix, index_entry_t *e) {
  index_entry_t **a;
  size_t cap;

  if (ix->n_expiring == ix->expiring_cap) {
    cap = ix->expiring_cap == 0 ? 64 : 2 * ix->expiring_cap;
    if ((a = realloc(ix->expiring, cap * sizeof(*a))) == NULL)
      return TOKEND_ENOMEM;
    ix->expiring = a;
    ix->expiring_cap = cap;
  }
  ix->expiring[ix->n_expiring++] = e;
  e->listed_expiring = 1;
  return 0;
}

/* Bytes an entry's strings take: label, scopes and metadata, each with
 * its NUL (the scopes' spaces become NULs). */
static size_t strings_size(const char *label, const char *scopes,
                           const char *metadata) {
  return strlen(label) + 1 + strlen(scopes) + 1 + strlen(metadata) + 1;
}

/* Writes label, the scopes (space-separated in, NUL-separated out) and
 * metadata into dst (strings_size bytes), and sets e's n_scopes and
 * metadata_off. */
static void strings_fill(index_entry_t *e, char *dst, const char *label,
                         const char *scopes, const char *metadata) {
  size_t llen = strlen(label), slen = strlen(scopes), i;
  char *sc = dst + llen + 1;

  memcpy(dst, label, llen + 1);
  memcpy(sc, scopes, slen + 1);
  e->n_scopes = 0;
  if (slen > 0) {
    e->n_scopes = 1;
    for (i = 0; i < slen; i++) {
      if (sc[i] == ' ') {
        sc[i] = '\0';
        e->n_scopes++;
      }
    }
  }
  e->metadata_off = (uint16_t)(llen + 1 + slen + 1);
  memcpy(dst + e->metadata_off, metadata, strlen(metadata) + 1);
}

int index_insert(index_t *ix, const store_token_t *row, domain_t *domain) {
  size_t slot;
  index_entry_t *e;
  int err;

  if ((ix->count + 1) * 2 > ix->cap && (err = index_grow(ix)) != 0)
    return err;
  slot = probe(ix->slots, ix->cap, row->hash);
  if (ix->slots[slot] != NULL)
    return TOKEND_EEXIST;

  e = entry_alloc(ix, sizeof(*e) +
                          strings_size(row->label, row->scopes, row->metadata));
  if (e == NULL)
    return TOKEND_ENOMEM;
  memcpy(e->hash, row->hash, TOKEND_HASH_BYTES);
  e->domain = domain;
  memcpy(e->id, row->id, sizeof(e->id));
  e->expires_at = row->expires_at;
  e->revoked_at = row->revoked_at;
  e->last_used_at = e->saved_last_used_at = row->last_used_at;
  e->dirty = 0;
  e->listed_expiring = 0;
  e->pepper_old = e->rekey_pending = 0;
  e->strings_owned = 0;
  e->strings = e->inline_strings;
  strings_fill(e, e->strings, row->label, row->scopes, row->metadata);
  if (e->expires_at != 0 && expiring_add(ix, e) != 0)
    return TOKEND_ENOMEM;
  ix->slots[slot] = e;
  ix->count++;
  if (e->revoked_at != 0)
    ix->n_revoked++;
  digest_apply(ix, e, 1);
  domain->n_tokens++;
  return 0;
}

void index_revoke(index_t *ix, index_entry_t *e, int64_t at) {
  if (e->revoked_at != 0 || at == 0)
    return;
  digest_apply(ix, e, -1);
  e->revoked_at = at;
  digest_apply(ix, e, 1);
  ix->n_revoked++;
}

/* 1 if e's strings are label, scopes (space-separated) and metadata. */
static int strings_equal(const index_entry_t *e, const char *label,
                         const char *scopes, const char *metadata) {
  const char *p = e->strings, *q = scopes;
  size_t i;

  if (strcmp(p, label) != 0 ||
      strcmp(e->strings + e->metadata_off, metadata) != 0)
    return 0;
  p += strlen(p) + 1;
  for (i = 0; i < e->n_scopes; i++) {
    size_t n = strlen(p);

    if (strncmp(p, q, n) != 0 || (q[n] != ' ' && q[n] != '\0'))
      return 0;
    q += n;
    if (*q == ' ')
      q++;
    p += n + 1;
  }
  return *q == '\0';
}

int index_set_strings(index_t *ix, index_entry_t *e, const char *label,
                      const char *scopes, const char *metadata) {
  char *block;

  if (strings_equal(e, label, scopes, metadata))
    return 0;
  block = malloc(strings_size(label, scopes, metadata));
  if (block == NULL)
    return TOKEND_ENOMEM;
  strings_fill(e, block, label, scopes, metadata);
  if (e->strings_owned)
    free(e->strings);
  else
    ix->n_owned++;
  e->strings = block;
  e->strings_owned = 1;
  return 0;
}

void index_expiring_tally(const index_t *ix, int64_t now, int64_t within_ms) {
  size_t i;
  const index_entry_t *e;

  for (i = 0; i < ix->n_expiring; i++) {
    e = ix->expiring[i];
    if (e->revoked_at == 0 && e->expires_at > now &&
        e->expires_at - now <= within_ms)
      e->domain->expiring_soon++;
  }
}

int index_set_expiry(index_t *ix, index_entry_t *e, int64_t expires_at) {
  /* Listed once, when it first gets an expiry; never removed (an entry
   * whose expiry is taken away again is skipped by the count). */
  if (e->expires_at == 0 && expires_at != 0 && !e->listed_expiring &&
      expiring_add(ix, e) != 0)
    return TOKEND_ENOMEM;
  if (e->expires_at == expires_at)
    return 0;
  digest_apply(ix, e, -1);
  e->expires_at = expires_at;
  digest_apply(ix, e, 1);
  return 0;
}

void index_status_counts(const index_t *ix, int64_t now, size_t *active,
                         size_t *revoked, size_t *expired) {
  size_t i, n = 0;
  const index_entry_t *e;

  for (i = 0; i < ix->n_expiring; i++) {
    e = ix->expiring[i];
    if (e->revoked_at == 0 && e->expires_at != 0 && now >= e->expires_at)
      n++;
  }
  *revoked = ix->n_revoked;
  *expired = n;
  *active = ix->count - ix->n_revoked - n;
}

index_entry_t *index_find(const index_t *ix,
                          const uint8_t hash[TOKEND_HASH_BYTES]) {
  return ix->slots[probe(ix->slots, ix->cap, hash)];
}

size_t index_count(const index_t *ix) { return ix->count; }

const char *index_entry_domain(const index_entry_t *e) {
  return e->domain->name;
}

const char *index_entry_label(const index_entry_t *e) { return e->strings; }

const char *index_entry_metadata(const index_entry_t *e) {
  return e->strings + e->metadata_off;
}

size_t index_entry_scopes(const index_entry_t *e, const char **scopes) {
  const char *p = index_entry_label(e);
  size_t i;

  p += strlen(p) + 1;
  for (i = 0; i < e->n_scopes && i < TOKEND_MAX_SCOPES; i++) {
    scopes[i] = p;
    p += strlen(p) + 1;
  }
  return i;
}

static void mark_dirty(index_t *ix, index_entry_t *e) {
  index_entry_t **d;
  size_t cap;

  if (e->dirty)
    return;
  if (ix->n_dirty == ix->dirty_cap) {
    cap = ix->dirty_cap ? ix->dirty_cap * 2 : 256;
    d = realloc(ix->dirty, cap * sizeof(*d));
    /* Out of memory: last_used_at stays correct in memory, only its
     * write-back is skipped. */
    if (d == NULL)
      return;
    ix->dirty = d;
    ix->dirty_cap = cap;
  }
  e->dirty = 1;
  ix->dirty[ix->n_dirty++] = e;
}

void index_touch(index_t *ix, index_entry_t *e, int64_t now,
                 int64_t granularity_ms) {
  if (now > e->last_used_at)
    e->last_used_at = now;
  if (e->last_used_at - e->saved_last_used_at >= granularity_ms)
    mark_dirty(ix, e);
}

size_t index_mark_unsaved(index_t *ix) {
  size_t i, n = 0;
  index_entry_t *e;

  for (i = 0; i < ix->cap; i++) {
    e = ix->slots[i];
    if (e != NULL && !e->dirty && e->last_used_at > e->saved_last_used_at) {
      mark_dirty(ix, e);
      n++;
    }
  }
  return n;
}

size_t index_take_dirty(index_t *ix, store_touch_t *out, size_t max) {
  size_t n = ix->n_dirty < max ? ix->n_dirty : max, i;

  /* Take from the end: O(1) removal, and order does not matter here. */
  for (i = 0; i < n; i++) {
    index_entry_t *e = ix->dirty[--ix->n_dirty];
    memcpy(out[i].hash, e->hash, TOKEND_HASH_BYTES);
    out[i].last_used_at = e->saved_last_used_at = e->last_used_at;
    e->dirty = 0;
  }
  return n;
}

size_t index_dirty_count(const index_t *ix) { return ix->n_dirty; }

void index_mark_dirty(index_t *ix, const store_touch_t *items, size_t n) {
  size_t i;

  for (i = 0; i < n; i++) {
    index_entry_t *e = index_find(ix, items[i].hash);
    if (e != NULL)
      mark_dirty(ix, e);
  }
}

/* ---- a pepper rotation ---- */

/* FNV-1a of a token id, mixed: ids are random, but not uniform bytes. */
static uint64_t id_bucket(const char *id) {
  uint64_t h = 0xcbf29ce484222325ULL;

  for (; *id != '\0'; id++)
    h = (h ^ (unsigned char)*id) * 0x100000001b3ULL;
  return mix64(h);
}

static size_t old_probe(index_entry_t *const *slots, size_t cap,
                        const char *id) {
  size_t mask = cap - 1, i = (size_t)id_bucket(id) & mask;

  while (slots[i] != NULL && strcmp(slots[i]->id, id) != 0)
    i = (i + 1) & mask;
  return i;
}

/* Room for one more id at a load of at most 1/2; re-keyed entries are
 * dropped when the table is rebuilt. */
static int old_reserve(index_t *ix) {
  size_t cap = ix->old_cap ? ix->old_cap : 64, i, used = 0;
  index_entry_t **slots;

  if ((ix->old_used + 1) * 2 <= ix->old_cap)
    return 0;
  while ((ix->n_old + 1) * 2 > cap)
    cap *= 2;
  if ((slots = calloc(cap, sizeof(*slots))) == NULL)
    return TOKEND_ENOMEM;
  for (i = 0; i < ix->old_cap; i++)
    if (ix->old_slots[i] != NULL && ix->old_slots[i]->pepper_old) {
      slots[old_probe(slots, cap, ix->old_slots[i]->id)] = ix->old_slots[i];
      used++;
    }
  free(ix->old_slots);
  ix->old_slots = slots;
  ix->old_cap = cap;
  ix->old_used = used;
  return 0;
}

int index_pepper_old_add(index_t *ix, index_entry_t *e) {
  size_t i;
  int err;

  if (e->pepper_old)
    return 0;
  if ((err = old_reserve(ix)) != 0)
    return err;
  i = old_probe(ix->old_slots, ix->old_cap, e->id);
  /* An id whose entry was re-keyed keeps its slot: reuse it. */
  if (ix->old_slots[i] == NULL)
    ix->old_used++;
  ix->old_slots[i] = e;
  e->pepper_old = 1;
  ix->n_old++;
  return 0;
}

index_entry_t *index_pepper_old_find(const index_t *ix, const char *id) {
  index_entry_t *e;

  if (ix->n_old == 0)
    return NULL;
  e = ix->old_slots[old_probe(ix->old_slots, ix->old_cap, id)];
  return e != NULL && e->pepper_old ? e : NULL;
}

size_t index_pepper_old_count(const index_t *ix) { return ix->n_old; }

/* Removes the entry in slot i, shifting back the entries after it that
 * probed past it (linear probing's deletion without tombstones), so every
 * remaining entry is still found from its home slot. */
static void slot_remove(index_t *ix, size_t i) {
  size_t mask = ix->cap - 1, j = i, home;

  for (;;) {
    ix->slots[i] = NULL;
    for (;;) {
      j = (j + 1) & mask;
      if (ix->slots[j] == NULL)
        return;
      home = (size_t)bucket_of(ix->slots[j]->hash) & mask;
      /* Moves back unless its home lies cyclically in (i, j]. */
      if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
        break;
    }
    ix->slots[i] = ix->slots[j];
    i = j;
  }
}

int index_rekey(index_t *ix, index_entry_t *e,
                const uint8_t hash[TOKEND_HASH_BYTES]) {
  size_t slot = probe(ix->slots, ix->cap, hash);

  if (ix->slots[slot] != NULL)
    return ix->slots[slot] == e ? 0 : TOKEND_EEXIST;
  slot_remove(ix, probe(ix->slots, ix->cap, e->hash));
  digest_apply(ix, e, -1);
  memcpy(e->hash, hash, TOKEND_HASH_BYTES);
  digest_apply(ix, e, 1);
  /* Probed again: the removal may have moved entries. */
  ix->slots[probe(ix->slots, ix->cap, hash)] = e;
  if (e->pepper_old) {
    e->pepper_old = 0;
    if (--ix->n_old == 0) {
      free(ix->old_slots);
      ix->old_slots = NULL;
      ix->old_cap = ix->old_used = 0;
    }
  }
  /* A write-back taken under the old hash updates no row. */
  if (e->last_used_at != 0) {
    e->saved_last_used_at = 0;
    mark_dirty(ix, e);
  }
  return 0;
}
