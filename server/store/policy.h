/* policy: a domain's policy (issue 17) enforced where tokens are written,
 * in the write transaction on the writer thread, so that every host of a
 * shared store agrees without caching a policy: Issue calls it today, and
 * Roll and Edit (issue 17, h17a) are to call store_policy_enforce the same
 * way, inside their job's transaction, before they write.
 *
 * Backend-neutral: store.h calls only. */
#ifndef TOKEND_STORE_POLICY_H
#define TOKEND_STORE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Checks a token's expiry and scopes against p (pure: no store). now and
 * expires_at in Unix ms (expires_at 0: never); scopes space-separated.
 * Returns 0, or TOKEND_EINVAL with why (why_len bytes) naming the field and
 * the limit: "expires_at ..." (later than now + max_lifetime_ms, or 0 while
 * require_expiry) or "scopes ..." (one outside allowed_scopes). */
int store_policy_check_token(const store_policy_t *p, int64_t now,
                             int64_t expires_at, const char *scopes, char *why,
                             size_t why_len) TOKEND_MUST_CHECK;

/* Enforces domain's policy, if it has one, on a token about to be written
 * with expires_at and scopes: store_policy_check_token, then, when
 * adds_active (Issue, Roll: one more active token) and the policy caps
 * them, the count of the domain's active tokens at now
 * (store_active_count). Call inside the write transaction. Returns 0 (no
 * policy, or within it), TOKEND_EINVAL (as above), TOKEND_EQUOTA (the
 * domain already has max_active_tokens active tokens; why says so), or
 * a store failure (why empty; store_errmsg says it). */
int store_policy_enforce(store_t *store, const char *domain, int64_t now,
                         int64_t expires_at, const char *scopes,
                         int adds_active, char *why,
                         size_t why_len) TOKEND_MUST_CHECK;

/* p in one short line ("lifetime=90d expiry=required scopes=a,b
 * active<=100"; "none" for a NULL p), for the audit log, into buf (len
 * bytes, truncated). */
void store_policy_describe(const store_policy_t *p, char *buf, size_t len);

#endif
