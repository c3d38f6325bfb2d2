/* Verifies a client answered from its cache, reported back (issue 15):
 * counted as the valid Verifies they were, so that the per-domain Verify
 * counters do not undercount while clients cache. The report arrives on a
 * Verify of the same token, which itself moves last_used_at. */
#include <sodium.h>

#include "rpc/internal.h"
#include "token.h"

void rpc_verify_cached_hits(rpc_t *r, const char *tok, size_t len,
                            uint64_t hits) {
  uint8_t hash[TOKEND_HASH_BYTES];
  index_entry_t *e;

  if (hits == 0 || len > TOKEND_TOKEN_MAX_CHARS || token_check(tok, len) != 0)
    return;
  token_hash(tok, len, r->env.pepper, hash);
  e = index_find(r->env.index, hash);
  /* A token still on the previous pepper (its Verify re-keys it). */
  if (e == NULL && r->env.previous_pepper != NULL) {
    token_hash(tok, len, r->env.previous_pepper, hash);
    e = index_find(r->env.index, hash);
  }
  sodium_memzero(hash, sizeof(hash));
  /* A token tokend does not know was never answered valid: nothing to
   * count. */
  if (e != NULL)
    e->domain->valid_verifies += hits;
}
