/* Domain admins (operators only): GrantDomainAdmin, RevokeDomainAdmin,
 * ListDomainAdmins; and WhoAmI, what the caller is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "tokend_time.h"
#include "validate.h"

/* Validates a domain and a user; answers INVALID_ARGUMENT and returns 1 if
 * either is bad. */
static int reject_domain_user(rpc_t *r, sink_t *k, uint64_t call_id,
                              const char *domain, const char *user) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];

  if (rpc_reject_nul(r, k, call_id, domain, "domain") ||
      rpc_reject_nul(r, k, call_id, user, "user"))
    return 1;
  if (validate_domain(domain, why, sizeof(why)) != 0 ||
      validate_user(user, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return 1;
  }
  return 0;
}

/* ---- GrantDomainAdmin ---- */

static int grant_apply(call_t *call) {
  store_job_t *job = &call->job;
  int err = job->result;

  if ((err == 0 || job->applied) &&
      domains_admin_add(call->rpc->env.domains, job->u.grant.domain,
                        job->u.grant.user, job->u.grant.granted_at,
                        job->u.grant.by) != 0) {
    log_error("grant: %s of %s stored but not in memory", job->u.grant.user,
              job->u.grant.domain);
    if (err == 0)
      err = TOKEND_ENOMEM;
  }
  return err;
}

static void grant_ok(call_t *call) {
  store_job_t *job = &call->job;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__Propagation prop;
  Tokend__V1__GrantDomainAdminResponse gr =
      TOKEND__V1__GRANT_DOMAIN_ADMIN_RESPONSE__INIT;

  if (!job->u.grant.already)
    log_info("grant: %s is now an admin of %s (by %s)", job->u.grant.user,
             job->u.grant.domain, job->u.grant.by);
  if (!rpc_sink_open(call->sink))
    return;
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_GRANT_DOMAIN_ADMIN;
  resp.grant_domain_admin = &gr;
  gr.propagation = call_propagation(call, &prop);
  gr.granted_at = job->u.grant.granted_at;
  gr.already_admin = job->u.grant.already != 0;
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static const call_kind_t grant_kind = {
    .method = "GrantDomainAdmin",
    .flags = CALL_WRITE | CALL_PROPAGATE,
    .what = "grant",
    .apply = grant_apply,
    .ok = grant_ok,
};

void rpc_grant_admin(rpc_t *r, sink_t *k, uint64_t call_id,
                     const authz_actor_t *actor,
                     const Tokend__V1__Request *request) {
  const Tokend__V1__GrantDomainAdminRequest *req = request->grant_domain_admin;
  call_t *call;

  if (reject_domain_user(r, k, call_id, req->domain, req->user))
    return;
  if ((call = call_new(r, k, call_id, &grant_kind, STORE_JOB_GRANT)) == NULL)
    return;
  snprintf(call->job.u.grant.domain, sizeof(call->job.u.grant.domain), "%s",
           req->domain);
  snprintf(call->job.u.grant.user, sizeof(call->job.u.grant.user), "%s",
           req->user);
  snprintf(call->job.u.grant.by, sizeof(call->job.u.grant.by), "%s",
           authz_doer(&k->peer, actor));
  call->job.u.grant.now = tokend_now_ms();
  authz_audit_fill(&call->audit, &k->peer, actor, "GrantDomainAdmin",
                   req->domain, "", 0, req->user);
  call->job.audit = &call->audit;
  call_submit(call);
}

/* ---- RevokeDomainAdmin ---- */

/* Committed (or found committed): the user is no admin and their tokens
 * verify REVOKED. */
static int admin_remove_apply(call_t *call) {
  store_job_t *job = &call->job;
  index_entry_t *e;
  size_t i;

  if (job->result == 0 || job->applied) {
    domains_admin_remove(call->rpc->env.domains, job->u.admin_remove.domain,
                         job->u.admin_remove.user);
    for (i = 0; i < job->u.admin_remove.n_hashes; i++) {
      e = index_find(call->rpc->env.index, job->u.admin_remove.hashes[i]);
      if (e != NULL)
        index_revoke(call->rpc->env.index, e, job->u.admin_remove.now);
    }
    /* Before the answer: caching clients see the revocations first. */
    if (job->u.admin_remove.n_hashes > 0)
      epoch_bump(&call->rpc->epoch);
  }
  return job->result;
}

static void admin_remove_not_found(const call_t *call, char *msg, size_t len) {
  snprintf(msg, len, "%s is not an admin of domain %s",
           call->job.u.admin_remove.user, call->job.u.admin_remove.domain);
}

static void admin_remove_ok(call_t *call) {
  store_job_t *job = &call->job;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__Propagation prop;
  Tokend__V1__RevokeDomainAdminResponse rr =
      TOKEND__V1__REVOKE_DOMAIN_ADMIN_RESPONSE__INIT;

  log_info("admin removed: %s of %s (by %s), %zu tokens revoked",
           job->u.admin_remove.user, job->u.admin_remove.domain,
           job->u.admin_remove.by, job->u.admin_remove.n_hashes);
  if (!rpc_sink_open(call->sink))
    return;
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_REVOKE_DOMAIN_ADMIN;
  resp.revoke_domain_admin = &rr;
  rr.propagation = call_propagation(call, &prop);
  rr.tokens_revoked = (uint32_t)job->u.admin_remove.n_hashes;
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static void admin_remove_fini(call_t *call) {
  free(call->job.u.admin_remove.hashes);
}

static const call_kind_t admin_remove_kind = {
    .method = "RevokeDomainAdmin",
    .flags = CALL_WRITE | CALL_PROPAGATE,
    .what = "remove the admin",
    .apply = admin_remove_apply,
    .not_found = admin_remove_not_found,
    .ok = admin_remove_ok,
    .fini = admin_remove_fini,
};

void rpc_revoke_admin(rpc_t *r, sink_t *k, uint64_t call_id,
                      const authz_actor_t *actor,
                      const Tokend__V1__Request *request) {
  const Tokend__V1__RevokeDomainAdminRequest *req =
      request->revoke_domain_admin;
  call_t *call;

  if (reject_domain_user(r, k, call_id, req->domain, req->user))
    return;
  if ((call = call_new(r, k, call_id, &admin_remove_kind,
                       STORE_JOB_ADMIN_REMOVE)) == NULL)
    return;
  snprintf(call->job.u.admin_remove.domain,
           sizeof(call->job.u.admin_remove.domain), "%s", req->domain);
  snprintf(call->job.u.admin_remove.user, sizeof(call->job.u.admin_remove.user),
           "%s", req->user);
  snprintf(call->job.u.admin_remove.by, sizeof(call->job.u.admin_remove.by),
           "%s", authz_doer(&k->peer, actor));
  call->job.u.admin_remove.revoke_tokens = req->revoke_their_tokens;
  call->job.u.admin_remove.now = tokend_now_ms();
  authz_audit_fill(&call->audit, &k->peer, actor, "RevokeDomainAdmin",
                   req->domain, "", 0,
                   req->revoke_their_tokens ? "and revoke their tokens" : "");
  snprintf(call->audit.detail, sizeof(call->audit.detail), "%s%s", req->user,
           req->revoke_their_tokens ? " (and their tokens)" : "");
  call->job.audit = &call->audit;
  call_submit(call);
}

/* ---- ListDomainAdmins ---- */

/* Answered from memory: the admin table is kept in step with the store. */
void rpc_list_admins(rpc_t *r, sink_t *k, uint64_t call_id,
                     const authz_actor_t *actor,
                     const Tokend__V1__Request *request) {
  const Tokend__V1__ListDomainAdminsRequest *req = request->list_domain_admins;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__ListDomainAdminsResponse lr =
      TOKEND__V1__LIST_DOMAIN_ADMINS_RESPONSE__INIT;
  Tokend__V1__DomainAdmin *admins = NULL, **ptrs = NULL;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  const domain_t *dom;
  size_t i, n = 0;

  (void)actor;
  if (rpc_reject_nul(r, k, call_id, req->domain, "domain"))
    return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  dom = domains_find(r->env.domains, req->domain);
  if (dom != NULL && dom->n_admins > 0) {
    n = dom->n_admins;
    admins = calloc(n, sizeof(*admins));
    ptrs = calloc(n, sizeof(*ptrs));
    if (admins == NULL || ptrs == NULL) {
      rpc_send_error(r, k, call_id, TOKEND_ENOMEM, "out of memory");
      goto out;
    }
    for (i = 0; i < n; i++) {
      tokend__v1__domain_admin__init(&admins[i]);
      admins[i].user = (char *)dom->admins[i].user;
      admins[i].granted_at = dom->admins[i].granted_at;
      admins[i].granted_by = (char *)dom->admins[i].granted_by;
      ptrs[i] = &admins[i];
    }
  }
  resp.call_id = call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_LIST_DOMAIN_ADMINS;
  resp.list_domain_admins = &lr;
  lr.n_admins = n;
  lr.admins = ptrs;
  (void)rpc_send(r, k, &resp, 0);
out:
  free(admins);
  free(ptrs);
}

/* ---- WhoAmI ---- */

void rpc_whoami(rpc_t *r, sink_t *k, uint64_t call_id,
                const authz_actor_t *actor,
                const Tokend__V1__Request *request) {
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__WhoAmIResponse wr = TOKEND__V1__WHO_AM_IRESPONSE__INIT;

  (void)request;
  resp.call_id = call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_WHO_AM_I;
  resp.who_am_i = &wr;
  wr.uid = k->peer.uid;
  wr.gid = k->peer.gid;
  wr.pid = k->peer.pid;
  wr.user = (char *)authz_doer(&k->peer, actor);
  wr.operator_ = k->peer.is_operator != 0;
  wr.verifier = k->peer.is_verifier || k->peer.is_operator;
  (void)rpc_send(r, k, &resp, 0);
}
