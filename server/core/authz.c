#include "core/authz.h"

#include <stdio.h>
#include <string.h>

#include "tokend_time.h"
#include "validate.h"

int authz_actor(const peer_t *peer, const char *actor, authz_actor_t *out,
                char *why, size_t why_len) {
  memset(out, 0, sizeof(*out));
  if (!peer->is_operator) {
    if (actor[0] != '\0') {
      /* Name the claimed identity for the audit trail, but only if it is a
       * well-formed user, which excludes anything shaped like a token: a
       * secret must never reach the log or the audit table. */
      if (validate_user(actor, NULL, 0) == 0)
        snprintf(why, why_len,
                 "only operators may act for another user; %s must not set "
                 "actor (it claimed \"%s\")",
                 peer->user, actor);
      else
        snprintf(why, why_len,
                 "only operators may act for another user; %s must not set "
                 "actor",
                 peer->user);
      return TOKEND_EPERM;
    }
    snprintf(out->user, sizeof(out->user), "%s", peer->user);
    return 0;
  }
  if (actor[0] == '\0') {
    out->break_glass = 1;
    return 0;
  }
  if (validate_user(actor, why, why_len) != 0)
    return TOKEND_EINVAL;
  snprintf(out->user, sizeof(out->user), "%s", actor);
  return 0;
}

int authz_domain_admin(const peer_t *peer, const domains_t *domains,
                       const authz_actor_t *actor, const char *domain,
                       char *why, size_t why_len) {
  if (actor->break_glass && peer->is_operator)
    return 0;
  if (domains_is_admin(domains, domain, actor->user))
    return 0;
  snprintf(why, why_len,
           "%s is not an admin of domain %s (an operator can grant it: "
           "GrantDomainAdmin)",
           actor->user, domain);
  return TOKEND_EPERM;
}

void authz_job_require_admin(store_job_t *job, const peer_t *peer,
                             const authz_actor_t *actor, const char *domain) {
  if (actor->break_glass && peer->is_operator)
    return;
  job->authz.required = 1;
  snprintf(job->authz.user, sizeof(job->authz.user), "%s", actor->user);
  snprintf(job->authz.domain, sizeof(job->authz.domain), "%s", domain);
}

const char *authz_doer(const peer_t *peer, const authz_actor_t *actor) {
  return actor->break_glass ? peer->user : actor->user;
}

void authz_audit_fill(store_audit_t *ev, const peer_t *peer,
                      const authz_actor_t *actor, const char *method,
                      const char *domain, const char *token_id, int code,
                      const char *detail) {
  memset(ev, 0, sizeof(*ev));
  ev->at = tokend_now_ms();
  ev->peer_uid = peer->uid;
  ev->peer_pid = peer->pid;
  if (actor != NULL) {
    snprintf(ev->actor, sizeof(ev->actor), "%s", actor->user);
    ev->break_glass = actor->break_glass;
  }
  snprintf(ev->domain, sizeof(ev->domain), "%s", domain);
  snprintf(ev->token_id, sizeof(ev->token_id), "%s", token_id);
  snprintf(ev->method, sizeof(ev->method), "%s", method);
  ev->code = code;
  /* The detail may quote a label: never cut it inside a character. */
  validate_copy_utf8(ev->detail, sizeof(ev->detail), detail);
}

refusal_verdict_t authz_refusal(refusals_t *refusals, const peer_t *peer,
                                const authz_actor_t *actor, const char *method,
                                const char *rule, const char *domain, int err,
                                const char *why, store_audit_t *ev) {
  /* A domain that failed validation is not recorded verbatim. */
  authz_audit_fill(ev, peer, actor, method,
                   validate_domain(domain, NULL, 0) == 0 ? domain : "", "",
                   tokend_err_grpc(err), why);
  /* A peer can be refused as fast as it can send: the repeats of a kind
   * are counted, not written or logged one by one (refusals.h), so what it
   * costs the disk and the log is bounded per interval, not per call. */
  if (refusals == NULL)
    return REFUSAL_RECORD;
  return refusals_note(refusals, ev, rule);
}
