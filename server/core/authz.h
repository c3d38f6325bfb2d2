/* authz: who a call acts as, what it may do, and the audit record of it.
 * Pure decisions: nothing here sends, logs or submits a store job; the rpc
 * layer does what a verdict says.
 *
 * The caller's identity is the peer's, read from the kernel at accept
 * (peer_t). A non-operator acts as itself ("uid:<n>") and may not name
 * anyone else. An operator acts for Request.actor, or with no actor as
 * break-glass (recorded as such). Loop thread only. */
#ifndef TOKEND_AUTHZ_H
#define TOKEND_AUTHZ_H

#include <stddef.h>
#include <stdint.h>

#include "core/domains.h"
#include "core/peer.h"
#include "core/refusals.h"
#include "store/store.h"
#include "store/worker.h"

typedef struct {
  char user[TOKEND_USER_BYTES]; /* the acting user */
  int break_glass;              /* an operator acting with no actor */
} authz_actor_t;

/* Works out who a call by peer with the given Request.actor acts as. On
 * refusal (a non-operator naming an actor, or an invalid actor) writes the
 * reason into why and returns TOKEND_EPERM or TOKEND_EINVAL. */
int authz_actor(const peer_t *peer, const char *actor, authz_actor_t *out,
                char *why, size_t why_len) TOKEND_MUST_CHECK;

/* May actor manage domain's tokens? Operators' break-glass calls may; else
 * the actor must be an admin of domain in domains. 0 or TOKEND_EPERM with
 * why. */
int authz_domain_admin(const peer_t *peer, const domains_t *domains,
                       const authz_actor_t *actor, const char *domain,
                       char *why, size_t why_len) TOKEND_MUST_CHECK;

/* Marks job so that the store worker checks again, where writes are
 * serialized, that actor is an admin of domain when job runs (see
 * store_job_t.authz): nothing for an operator's break-glass call, which
 * needs no grant. */
void authz_job_require_admin(store_job_t *job, const peer_t *peer,
                             const authz_actor_t *actor, const char *domain);

/* The name recorded as created_by / revoked_by / granted_by: the actor, or
 * for break-glass the operator's own "uid:<n>". Points into peer or
 * actor. */
const char *authz_doer(const peer_t *peer, const authz_actor_t *actor);

/* Fills an audit record for a call by peer as actor (actor may be NULL
 * when none could be worked out). */
void authz_audit_fill(store_audit_t *ev, const peer_t *peer,
                      const authz_actor_t *actor, const char *method,
                      const char *domain, const char *token_id, int code,
                      const char *detail);

/* The verdict on a refused call (err, a TOKEND_E* code, and why) by peer as
 * actor: *ev is filled with its audit record (a domain that failed
 * validation is not recorded verbatim), and the return says what to do
 * with it, as refusals.h says: REFUSAL_RECORD, write it and log it now;
 * REFUSAL_COUNTED or REFUSAL_OVERFLOW_COUNTED, nothing (a repeat, counted
 * into a later row); REFUSAL_OVERFLOW, log that the table is full, write
 * nothing. refusals may be NULL (every refusal recorded: interval 0). rule
 * names the check that refused it (a short static string, e.g.
 * "not-domain-admin"). */
refusal_verdict_t authz_refusal(refusals_t *refusals, const peer_t *peer,
                                const authz_actor_t *actor, const char *method,
                                const char *rule, const char *domain, int err,
                                const char *why, store_audit_t *ev);

#endif
