/* vcache: the client's bounded table of valid Verify answers (issue 15,
 * section 2), keyed by a keyed hash of the token, so the token itself is
 * never stored. Each answer carries the revocation epoch it was stored
 * under and is returned only under that same epoch and before its
 * expires_at.
 *
 * The tag is SipHash-1-3 with a 128-bit output under 16 random bytes drawn
 * when the table is made (this process's only; never derived, stored or
 * sent). Why not SipHash-2-4: the tag is most of the cost of a hit (a
 * 42-character token takes 20 rounds, about 45 ns on this project's
 * machine, against 12 rounds, about 27 ns), and the attacker this must stop
 * never sees a tag: a service presenting guessed tokens learns only
 * whether one was answered from the table. So what the tag needs is that
 * without the key nobody can name a token whose tag equals a held one's: a
 * guess matches one of n held tags with probability n * 2^-128 for a PRF.
 * SipHash-1-3 is conjectured a PRF, is the keyed hash of Rust's HashMap
 * and of CPython's str hash (3.11+), which rest on this same property
 * (outputs never seen, attacker-chosen inputs), and no attack on the full
 * function better than guessing the key is known to us. The index bits a
 * timing observer might learn reveal nothing of the key for a PRF (they
 * would for an almost-universal hash, which is why none is used).
 *
 * The table: an index of 8-byte slots (32 bits of the tag, an entry's
 * number), open addressing with linear probing over a power of two of
 * them, at most 3/4 used, so it stays in the CPU's cache; and max_entries
 * entries of 128 bytes (two cache lines, fetched together), each holding
 * the whole tag, the epoch, expires_at, the hits to report and the answer's
 * strings when they fit (72 bytes: the id, and a domain, a label and one
 * scope of 40 characters together), else a pointer to them. A hit reads
 * the index and one entry, allocates nothing and takes no lock. At the
 * bound a new answer takes the entry of an answer of an older epoch on its
 * probe run if there is one, else a clock hand frees the first answer of
 * an older epoch or not used since it was stored or the hand last passed
 * (second chance); the newest answer is always held. Deletion shifts the
 * run back (no tombstones). Not thread-safe (one per tokend_client_t). */
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

/* The heartbeat rule (issue 15): 1 if cached answers may be used now, by
 * a region whose heartbeat_ms is hb_ms and bound bound_ms. The caller
 * reads the coarse CLOCK_MONOTONIC (coarse_ms, a vDSO read of the last
 * tick) where tokend writes the precise one; the precise clock is at most
 * slack_ms ahead (the coarse clock's resolution, plus 1 for the ms cut
 * off), so the rule compares the latest time it can be: a heartbeat that
 * stopped at hb_ms is trusted only while the precise clock is still below
 * hb_ms + bound_ms, never a tick past it. */
static inline int vcache_heartbeat_fresh(int64_t coarse_ms, int64_t slack_ms,
                                         int64_t hb_ms, uint64_t bound_ms) {
  return coarse_ms + slack_ms - hb_ms < (int64_t)bound_ms;
}

/* Answers held, and the most it may hold. */
size_t vcache_count(const vcache_t *v);
size_t vcache_capacity(const vcache_t *v);

#endif
