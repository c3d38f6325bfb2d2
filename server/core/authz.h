/* authz: who a call acts as, what it may do, and the audit trail of it.
 *
 * The caller's identity is the peer's, read from the kernel at accept
 * (conn->peer). A non-operator acts as itself ("uid:<n>") and may not name
 * anyone else. An operator acts for Request.actor, or with no actor as
 * break-glass (recorded as such). Loop thread only. */
#ifndef TOKEND_AUTHZ_H
#define TOKEND_AUTHZ_H

#include <stdint.h>

#include "net/conn.h"
#include "store/store.h"
#include "store/worker.h"

typedef struct {
  char user[TOKEND_USER_BYTES]; /* the acting user */
  int break_glass;              /* an operator acting with no actor */
} authz_actor_t;

/* Works out who a call with the given Request.actor acts as. On refusal
 * (a non-operator naming an actor, or an invalid actor) writes the reason
 * into why and returns TOKEND_EPERM or TOKEND_EINVAL. */
int authz_actor(const conn_t *c, const char *actor, authz_actor_t *out,
                char *why, size_t why_len) TOKEND_MUST_CHECK;

/* May actor manage domain's tokens? Operators' break-glass calls may; else
 * the actor must be an admin of domain. 0 or TOKEND_EPERM with why. */
int authz_domain_admin(const conn_t *c, const authz_actor_t *actor,
                       const char *domain, char *why,
                       size_t why_len) TOKEND_MUST_CHECK;

/* Asks the store worker to check again, where writes are serialized, that
 * actor is an admin of domain when job runs (see store_job_t.authz):
 * nothing for an operator's break-glass call, which needs no grant. */
void authz_job_require_admin(store_job_t *job, const conn_t *c,
                             const authz_actor_t *actor, const char *domain);

/* The name recorded as created_by / revoked_by / granted_by: the actor, or
 * for break-glass the operator's own "uid:<n>". */
const char *authz_doer(const conn_t *c, const authz_actor_t *actor);

/* Fills an audit record for a call by c as actor (actor may be NULL when
 * none could be worked out). */
void authz_audit_fill(store_audit_t *ev, const conn_t *c,
                      const authz_actor_t *actor, const char *method,
                      const char *domain, const char *token_id, int code,
                      const char *detail);

/* Answers a refused call with err's status and why, and records it in the
 * audit log (asynchronously; nothing waits for it) and in the log, as
 * refusals.h says: the first of its kind (peer uid, actor, method, rule)
 * at once, repeats as one row with their count per
 * --refusal-audit-interval-ms. rule names the check that refused it (a
 * short static string, e.g. "not-domain-admin"). */
void authz_refuse(conn_t *c, uint64_t call_id, const authz_actor_t *actor,
                  const char *method, const char *rule, const char *domain,
                  int err, const char *why);

/* Ends a refusal interval: writes one audit row (and logs one line) per
 * kind of refusal repeated since the last. Returns how many rows it
 * submitted to the store worker (each counted as a server job). Called by
 * the server's timer, and at shutdown until it returns 0. */
size_t authz_refusals_flush(server_t *s);

#endif
