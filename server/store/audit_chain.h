/* audit_chain: the keyed hash that chains the audit log (audit_chain.c
 * says what it covers). Shared by every backend, so that a log copied from
 * one backend to another still verifies. */
#ifndef TOKEND_STORE_AUDIT_CHAIN_H
#define TOKEND_STORE_AUDIT_CHAIN_H

#include <stdint.h>

#include "core/records.h"

/* out gets the hash of ev chained after prev (32 zero bytes for the first
 * row), keyed with key. Never fails. */
void store_audit_hash(const uint8_t key[STORE_AUDIT_KEY_BYTES],
                      const uint8_t prev[STORE_AUDIT_HASH_BYTES],
                      const store_audit_t *ev,
                      uint8_t out[STORE_AUDIT_HASH_BYTES]);

/* Verifying the chain: a backend reads the log in id order and feeds each
 * row to store_audit_walk_row; the walk says where the chain breaks, so
 * that every backend reports a broken chain in the same words.
 *
 * begin clears *out (kept by the caller until end); anchor_id <= 0: no
 * anchor. row: hash is the row's stored hash, NULL if it has none; returns
 * 0 to go on, 1 when the row is bad (out->first_bad_id and out->why say
 * why): stop there. end fills the head (the last good row) and reports an
 * anchor that was never reached (the newest rows were removed). */
typedef struct {
  const uint8_t *key;
  int64_t anchor_id;
  const uint8_t *anchor_hash;
  store_audit_check_t *out;
  uint8_t prev[STORE_AUDIT_HASH_BYTES];
  int64_t last_id;
  int anchor_seen;
} store_audit_walk_t;

void store_audit_walk_begin(store_audit_walk_t *w,
                            const uint8_t key[STORE_AUDIT_KEY_BYTES],
                            int64_t anchor_id,
                            const uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES],
                            store_audit_check_t *out);
/* After begin, for a log whose oldest rows were removed by retention
 * (--audit-retention-days): the chain goes on from base_hash, the hash of
 * row base_id, the newest removed; an anchor at or before it can no longer
 * be checked and counts as seen. */
void store_audit_walk_from(store_audit_walk_t *w, int64_t base_id,
                           const uint8_t base_hash[STORE_AUDIT_HASH_BYTES]);
int store_audit_walk_row(store_audit_walk_t *w, const store_audit_t *ev,
                         const uint8_t *hash);
void store_audit_walk_end(store_audit_walk_t *w);

#endif
