/* vcache: the client's bounded table of valid Verify answers (issue 15,
 * section 2), keyed by a keyed hash of the token: SipHash-128 under a
 * random key made when the table is, so the token itself is never stored.
 * Each answer carries the revocation epoch it was stored under and is
 * returned only under that same epoch and before its expires_at. Set
 * associative (8 ways, twice the slots the bound allows): a full set, or
 * any set once the bound is reached, replaces an answer of an older epoch,
 * else its oldest one; at the bound, a set holding nothing takes the room
 * of the next answer a clock hand finds. Not thread-safe (one per
 * tokend_client_t). */
#ifndef TOKEND_VCACHE_H
#define TOKEND_VCACHE_H

#include <stddef.h>
#include <stdint.h>

#include <tokend/client.h>

typedef struct vcache_s vcache_t;

/* A table holding at most max_entries (>= 1) answers. Returns 0,
 * TOKEND_EINVAL or TOKEND_ENOMEM; *out is freed with vcache_free(). */
int vcache_new(size_t max_entries, vcache_t **out);
void vcache_free(vcache_t *v);

/* The caller's wall clock, Unix ms. */
typedef int64_t (*vcache_clock_t)(void);

/* vcache_get() results. */
#define VCACHE_MISS 0
#define VCACHE_HIT 1
/* Held and good, but the hits it answered are due to be reported to
 * tokend: *hits gets them (taken out) and the caller asks tokend, with
 * them, instead of answering from the table. */
#define VCACHE_REPORT 2

/* Looks token up: VCACHE_HIT with *out's fields filled (valid, reason,
 * token_id, domain, label, n_scopes and those scopes, expires_at; the rest
 * of *out untouched) if its answer is held under epoch and has not expired
 * by now() (called only for an answer that expires), and its hits were
 * reported less than report_ms ago (mono_ms and the report times are one
 * monotonic clock's); VCACHE_REPORT as above; VCACHE_MISS otherwise. */
int vcache_get(vcache_t *v, const char *token, uint64_t epoch,
               vcache_clock_t now, int64_t mono_ms, int64_t report_ms,
               tokend_verify_result_t *out, uint64_t *hits);

/* Holds res (which must be valid: anything else is ignored) for token,
 * under epoch, with no hits to report since mono_ms. Hits not yet reported
 * of an answer replaced, or of one an epoch move made useless, are lost
 * (at most report_ms worth per token). */
void vcache_put(vcache_t *v, const char *token, uint64_t epoch, int64_t mono_ms,
                const tokend_verify_result_t *res);

/* Drops every answer (the epochs of a new region start again; a moved
 * epoch needs no clearing: older answers are never returned). */
void vcache_clear(vcache_t *v);

/* Answers held, and the most it may hold. */
size_t vcache_count(const vcache_t *v);
size_t vcache_capacity(const vcache_t *v);

#endif
