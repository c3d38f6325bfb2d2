/* verify_cache: remembers the index entry of every token that has verified,
 * under a keyed SipHash-2-4 128-bit tag of the token, so that the next
 * Verify of the same token skips the shape check and the keyed BLAKE2b
 * (together about 0.45 us, most of a Verify's CPU). Sibling services send
 * the same few tokens over and over, so nearly every Verify is a hit.
 *
 * Security: the tag key is 16 random bytes drawn at start-up, kept only in
 * this process's memory, never derived from the pepper and never stored;
 * tags never leave the process. Only tokens that passed the full check
 * (shape, keyed BLAKE2b, index) are added, and the answer is read from the
 * entry each time, so Revoke and expiry act on cached tokens at once. The
 * cost: SipHash-2-4 is a PRF, so without the key a guess matches one of n
 * remembered tags with probability n * 2^-128, where guessing a token
 * outright has n * 2^-190. At n = 2^24 that is 2^-104 per guess instead of
 * 2^-166: still far beyond any online attacker, but a smaller margin, which
 * is the price of skipping BLAKE2b.
 *
 * Entries are never removed: index entries live until the index is freed
 * (index.h), and each token is added at most once, so the table never holds
 * more tags than the index holds tokens (24 bytes a slot, at most 3/4 full).
 * Loop thread only. */
#ifndef TOKEND_VERIFY_CACHE_H
#define TOKEND_VERIFY_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/index.h"
#include "tokend_error.h"

typedef struct {
  uint64_t w[2];
} verify_tag_t;

typedef struct verify_cache_s verify_cache_t;

int verify_cache_new(verify_cache_t **out) TOKEND_MUST_CHECK;
/* Frees the table (not the entries it points to). NULL is a no-op. */
void verify_cache_free(verify_cache_t *vc);

/* The tag of token[0..len); token may hold any bytes. */
void verify_cache_tag(const verify_cache_t *vc, const char *token, size_t len,
                      verify_tag_t *tag);
/* The entry remembered under tag, or NULL. */
index_entry_t *verify_cache_find(const verify_cache_t *vc,
                                 const verify_tag_t *tag);
/* Starts loading the slot tag would be found in, for a find soon after. */
void verify_cache_prefetch(const verify_cache_t *vc, const verify_tag_t *tag);
/* Remembers e under tag, which must not be present yet. Out of memory is
 * not an error: the token is simply not remembered. */
void verify_cache_add(verify_cache_t *vc, const verify_tag_t *tag,
                      index_entry_t *e);
size_t verify_cache_count(const verify_cache_t *vc);
/* Makes room for n tags, so that adding up to n never grows the table (a
 * rehash of every slot) while Verifies are being answered. The server keeps
 * room for every token in the index. TOKEND_ENOMEM leaves the table as it
 * was (it then grows on demand). */
int verify_cache_reserve(verify_cache_t *vc, size_t n) TOKEND_MUST_CHECK;

#endif
