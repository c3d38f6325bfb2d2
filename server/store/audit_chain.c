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
