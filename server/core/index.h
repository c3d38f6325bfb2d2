/* index: the in-memory map from a token's keyed hash to what Verify answers.
 * Loaded from the store at start-up and kept in step with every committed
 * write; Verify reads only this. Entries are never removed while the server
 * runs (a revoked token stays, to answer REVOKED), and never move: the
 * verify cache (verify_cache.h) keeps pointers to them. Loop thread only. */
#ifndef TOKEND_INDEX_H
#define TOKEND_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "core/domains.h"
#include "core/records.h"
#include "tokend_error.h"
#include "tokend_limits.h"

typedef struct index_entry_s {
  uint8_t hash[TOKEND_HASH_BYTES];
  domain_t *domain; /* interned; owned by the domains registry */
  char id[TOKEND_TOKEN_ID_BYTES];
  int64_t expires_at;         /* 0: never */
  int64_t revoked_at;         /* 0: not revoked */
  int64_t last_used_at;       /* 0: never; may be ahead of the store */
  int64_t saved_last_used_at; /* what was last handed to the store */
  uint8_t dirty;              /* last_used_at not yet written to the store */
  uint8_t listed_expiring;    /* in the index's list of expiring entries */
  uint8_t n_scopes;
  /* strings points at inline_strings until an edit (index_set_strings)
   * gives the entry a block of its own (strings_owned), which a later edit
   * frees: a string read from an entry is valid until the loop's next
   * apply of a write, not across it. */
  uint8_t strings_owned;
  /* A pepper rotation (docs/OPERATIONS.md): hash is still the previous
   * pepper's (index_pepper_old_add), and a job to re-key it is queued. */
  uint8_t pepper_old;
  uint8_t rekey_pending;
  uint16_t metadata_off; /* where the metadata starts in strings */
  /* NUL-separated: label, then each scope, then the metadata ("" none). */
  char *strings;
  char inline_strings[];
} index_entry_t;

typedef struct index_s index_t;

int index_new(index_t **out) TOKEND_MUST_CHECK;
/* Frees the index and every entry. NULL is a no-op. */
void index_free(index_t *index);

/* Adds an entry built from row (the index owns it), in domain (which must be
 * row->domain's, and outlive the index). TOKEND_EEXIST if the hash is
 * already present, TOKEND_ENOMEM. */
int index_insert(index_t *index, const store_token_t *row,
                 domain_t *domain) TOKEND_MUST_CHECK;

/* Marks e revoked at `at` unless it was already (a revocation is never
 * undone, nor moved). */
void index_revoke(index_t *index, index_entry_t *e, int64_t at);

/* Gives e a new label, scopes (space-separated, as in a row) and metadata
 * (issue 17's Edit; a follower's feed). Nothing moves if they are what e
 * holds; else a new block replaces e's strings (the old one, if an earlier
 * edit made it, is freed: pointers into it die). 0 or TOKEND_ENOMEM (e
 * unchanged). */
int index_set_strings(index_t *index, index_entry_t *e, const char *label,
                      const char *scopes,
                      const char *metadata) TOKEND_MUST_CHECK;

/* Adds to each domain's expiring_soon (domains.h; the caller zeroes them
 * first) its active tokens that expire within (now, now + within_ms]: a
 * walk of the entries that have an expiry, not of the whole index. */
void index_expiring_tally(const index_t *index, int64_t now, int64_t within_ms);

/* Sets e's expiry (0: never). */
int index_set_expiry(index_t *index, index_entry_t *e,
                     int64_t expires_at) TOKEND_MUST_CHECK;

/* How many tokens are active, revoked and expired (not revoked) at now:
 * counted as they change, and the expired from the tokens that have an
 * expiry only. */
void index_status_counts(const index_t *index, int64_t now, size_t *active,
                         size_t *revoked, size_t *expired);

/* The entry for hash, or NULL. Valid until index_free. */
index_entry_t *index_find(const index_t *index,
                          const uint8_t hash[TOKEND_HASH_BYTES]);

size_t index_count(const index_t *index);

/* Accessors into entry->strings. */
const char *index_entry_domain(const index_entry_t *e);
const char *index_entry_label(const index_entry_t *e);
/* The metadata (a JSON object), "" for none. */
const char *index_entry_metadata(const index_entry_t *e);
/* Fills scopes (room for TOKEND_MAX_SCOPES) with pointers into e; returns
 * the count. */
size_t index_entry_scopes(const index_entry_t *e, const char **scopes);

/* Records a successful verify at now. Marks the entry dirty (to be written
 * back) only if what the store has is granularity_ms or more older: a token
 * in constant use costs one write per granularity, not one per flush. */
void index_touch(index_t *index, index_entry_t *e, int64_t now,
                 int64_t granularity_ms);
/* Marks dirty every entry whose last_used_at is ahead of the store's, so
 * that a final write-back (at shutdown) loses nothing. Returns how many. */
size_t index_mark_unsaved(index_t *index);

/* Moves up to max dirty entries' (hash, last_used_at) into out and clears
 * their dirty mark. Returns how many were written. */
size_t index_take_dirty(index_t *index, store_touch_t *out, size_t max);
size_t index_dirty_count(const index_t *index);
/* Marks the entries of a failed write-back dirty again. */
void index_mark_dirty(index_t *index, const store_touch_t *items, size_t n);

/* Adds to acc (four lanes, zeroed by the caller for a new digest) a
 * digest of every entry's hash, domain, expiry and revocation, whatever
 * order the table holds them in: two hosts whose indexes answer Verify
 * alike get the same sums (ServerStatus compares them). */
void index_digest(const index_t *index, uint64_t acc[4]);

/* ---- a pepper rotation (issue 16) ----
 * Entries whose hash the previous pepper made are marked and findable by
 * id: another host's re-key reaches this one as the row's new hash, which
 * no entry here has yet, so the entry is found by its id instead. */

/* Marks e as hashed with the previous pepper and makes it findable by id.
 * TOKEND_ENOMEM (e is then unmarked). */
int index_pepper_old_add(index_t *index, index_entry_t *e) TOKEND_MUST_CHECK;

/* The entry with token id still on the previous pepper, or NULL. */
index_entry_t *index_pepper_old_find(const index_t *index, const char *id);

/* How many entries are still on the previous pepper. */
size_t index_pepper_old_count(const index_t *index);

/* Moves e (on the previous pepper) to hash, the current pepper's: the
 * entry stays where it is (the verify cache keeps pointing at it), is
 * found by its new hash from now on and not by its old one, and is no
 * longer on the previous pepper. Its last use, if any, is written back
 * again under the new hash (a write-back queued under the old one may
 * miss). TOKEND_EEXIST if another entry has hash (e unchanged). */
int index_rekey(index_t *index, index_entry_t *e,
                const uint8_t hash[TOKEND_HASH_BYTES]) TOKEND_MUST_CHECK;

#endif
