/* audit_chain.c: the audit log's hash chain, the same for every backend.
 *
 * hash(row) = BLAKE2b-256 keyed with the audit key, over a domain-separating
 * tag, the previous row's hash (32 zero bytes for the first row) and the
 * row's fields in a fixed order: integers as 8 bytes little-endian, strings
 * as their 4-byte little-endian length and bytes. Every field is covered,
 * the id too, so a row cannot be changed, moved or replaced, and a removed
 * or inserted row breaks the link of the row after it. */
#include "store/audit_chain.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define AUDIT_HASH_TAG "tokend audit v1"

static void hash_int(crypto_generichash_state *st, int64_t v) {
  uint8_t b[8];
  uint64_t u = (uint64_t)v;
  int i;

  for (i = 0; i < 8; i++)
    b[i] = (uint8_t)(u >> (8 * i));
  crypto_generichash_update(st, b, sizeof(b));
}

static void hash_str(crypto_generichash_state *st, const char *str) {
  size_t n = strlen(str);

  hash_int(st, (int64_t)n); /* 8 bytes: never ambiguous */
  crypto_generichash_update(st, (const unsigned char *)str, n);
}

void store_audit_hash(const uint8_t key[STORE_AUDIT_KEY_BYTES],
                      const uint8_t prev[STORE_AUDIT_HASH_BYTES],
                      const store_audit_t *ev,
                      uint8_t out[STORE_AUDIT_HASH_BYTES]) {
  crypto_generichash_state st;

  crypto_generichash_init(&st, key, STORE_AUDIT_KEY_BYTES,
                          STORE_AUDIT_HASH_BYTES);
  crypto_generichash_update(&st, (const unsigned char *)AUDIT_HASH_TAG,
                            sizeof(AUDIT_HASH_TAG));
  crypto_generichash_update(&st, prev, STORE_AUDIT_HASH_BYTES);
  hash_int(&st, ev->id);
  hash_int(&st, ev->at);
  hash_int(&st, ev->peer_uid);
  hash_int(&st, ev->peer_pid);
  hash_str(&st, ev->actor);
  hash_int(&st, ev->break_glass ? 1 : 0);
  hash_str(&st, ev->domain);
  hash_str(&st, ev->token_id);
  hash_str(&st, ev->method);
  hash_int(&st, ev->code);
  hash_str(&st, ev->detail);
  hash_int(&st, ev->count);
  crypto_generichash_final(&st, out, STORE_AUDIT_HASH_BYTES);
}

void store_audit_walk_begin(store_audit_walk_t *w,
                            const uint8_t key[STORE_AUDIT_KEY_BYTES],
                            int64_t anchor_id,
                            const uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES],
                            store_audit_check_t *out) {
  memset(w, 0, sizeof(*w));
  memset(out, 0, sizeof(*out));
  w->key = key;
  w->anchor_id = anchor_id;
  w->anchor_hash = anchor_hash;
  w->out = out;
  w->anchor_seen = anchor_id <= 0;
}

void store_audit_walk_from(store_audit_walk_t *w, int64_t base_id,
                           const uint8_t base_hash[STORE_AUDIT_HASH_BYTES]) {
  memcpy(w->prev, base_hash, sizeof(w->prev));
  w->last_id = base_id;
  if (w->anchor_id > 0 && w->anchor_id <= base_id)
    w->anchor_seen = 1;
}

int store_audit_walk_row(store_audit_walk_t *w, const store_audit_t *ev,
                         const uint8_t *hash) {
  store_audit_check_t *out = w->out;
  uint8_t want[STORE_AUDIT_HASH_BYTES];

  out->rows_checked++;
  if (hash == NULL) {
    out->first_bad_id = ev->id;
    snprintf(out->why, sizeof(out->why),
             "row %lld has no chain hash: it was not written by tokend",
             (long long)ev->id);
    return 1;
  }
  store_audit_hash(w->key, w->prev, ev, want);
  if (sodium_memcmp(want, hash, sizeof(want)) != 0) {
    out->first_bad_id = ev->id;
    snprintf(out->why, sizeof(out->why),
             "row %lld does not match its hash: it, or the row before it "
             "(id %lld), was changed, removed, inserted or moved",
             (long long)ev->id, (long long)w->last_id);
    return 1;
  }
  if (ev->id == w->anchor_id) {
    w->anchor_seen = 1;
    if (sodium_memcmp(w->anchor_hash, hash, STORE_AUDIT_HASH_BYTES) != 0) {
      out->first_bad_id = ev->id;
      out->anchor_mismatch = 1;
      snprintf(out->why, sizeof(out->why),
               "row %lld is not the row anchored: the log was rewritten "
               "from there on",
               (long long)ev->id);
      return 1;
    }
  }
  memcpy(w->prev, hash, sizeof(w->prev));
  w->last_id = ev->id;
  return 0;
}

void store_audit_walk_end(store_audit_walk_t *w) {
  store_audit_check_t *out = w->out;

  out->head_id = w->last_id;
  memcpy(out->head_hash, w->prev, sizeof(w->prev));
  if (out->first_bad_id == 0 && !w->anchor_seen) {
    out->first_bad_id = w->anchor_id;
    out->anchor_mismatch = 1;
    snprintf(out->why, sizeof(out->why),
             "the anchored row %lld is gone: the newest rows were removed "
             "(the log ends at row %lld)",
             (long long)w->anchor_id, (long long)w->last_id);
  }
}
