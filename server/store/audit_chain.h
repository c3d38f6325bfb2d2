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

#endif
