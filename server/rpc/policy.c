/* Domain policies (issue 17): SetDomainPolicy (operators), GetDomainPolicy
 * (a domain's admins and operators). The policy lives in the store only and
 * is read in the transaction of every write it limits (store/policy.h), so
 * no host caches it and a Set needs no propagation of its own beyond the
 * commit; it still waits like any write so that the answer's revision
 * means the same as the others'. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "tokend_time.h"
#include "validate.h"

/* Splits a space-separated scope string in place into out (max). */
static size_t policy_split(char *s, char **out, size_t max) {
  size_t n = 0;
  char *p = s;

  if (*s == '\0')
    return 0;
  while (n < max) {
    out[n++] = p;
    p = strchr(p, ' ');
    if (p == NULL)
      break;
    *p++ = '\0';
  }
  return n;
}

/* Points pb's fields into p (whose scopes it splits in place, into
 * scopes[TOKEND_MAX_SCOPES]). */
static void policy_to_pb(Tokend__V1__DomainPolicy *pb, store_policy_t *p,
                         char **scopes) {
  tokend__v1__domain_policy__init(pb);
  pb->max_lifetime_ms = p->max_lifetime_ms;
  pb->require_expiry = p->require_expiry != 0;
  pb->n_allowed_scopes =
      policy_split(p->allowed_scopes, scopes, TOKEND_MAX_SCOPES);
  pb->allowed_scopes = scopes;
  pb->max_active_tokens =
      p->max_active_tokens > 0 ? (uint32_t)p->max_active_tokens : 0;
  pb->updated_at = p->updated_at;
  pb->updated_by = p->updated_by;
}

/* ---- SetDomainPolicy ---- */

static void policy_set_ok(call_t *call) {
  store_job_t *job = &call->job;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__SetDomainPolicyResponse sr =
      TOKEND__V1__SET_DOMAIN_POLICY_RESPONSE__INIT;
  Tokend__V1__DomainPolicy pb;
  Tokend__V1__Propagation prop;
  char *scopes[TOKEND_MAX_SCOPES];

  log_info("policy: %s set by %s", job->u.policy_set.policy.domain,
           job->u.policy_set.policy.updated_by);
  if (!rpc_sink_open(call->sink))
    return;
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_SET_DOMAIN_POLICY;
  resp.set_domain_policy = &sr;
  policy_to_pb(&pb, &job->u.policy_set.policy, scopes);
  sr.policy = &pb;
  sr.propagation = call_propagation(call, &prop);
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static const call_kind_t policy_set_kind = {
    .method = "SetDomainPolicy",
    .flags = CALL_WRITE | CALL_PROPAGATE,
    .what = "set the domain's policy",
    .ok = policy_set_ok,
};

/* The request's policy into p, checked: 0, or TOKEND_EINVAL with why
 * naming the field. */
static int policy_from_pb(const Tokend__V1__DomainPolicy *pb, store_policy_t *p,
                          char *why, size_t why_len) {
  char bad[TOKEND_STATUS_MESSAGE_BYTES / 2];
  size_t i, j, off = 0, len;

  if (pb == NULL)
    return 0; /* every limit 0: no policy in effect */
  if (pb->max_lifetime_ms < 0) {
    snprintf(why, why_len,
             "policy.max_lifetime_ms must be 0 (no limit) or a positive "
             "number of milliseconds");
    return TOKEND_EINVAL;
  }
  if (pb->max_active_tokens > INT32_MAX) {
    snprintf(why, why_len, "policy.max_active_tokens: at most %d",
             (int)INT32_MAX);
    return TOKEND_EINVAL;
  }
  if (pb->n_allowed_scopes > TOKEND_MAX_SCOPES) {
    snprintf(why, why_len, "policy.allowed_scopes: at most %d scopes",
             TOKEND_MAX_SCOPES);
    return TOKEND_EINVAL;
  }
  for (i = 0; i < pb->n_allowed_scopes; i++) {
    /* validate_scope says "scope ...": which field, said first. */
    if (validate_scope(pb->allowed_scopes[i], bad, sizeof(bad)) != 0) {
      snprintf(why, why_len, "policy.allowed_scopes: %s", bad);
      return TOKEND_EINVAL;
    }
    for (j = 0; j < i; j++)
      if (strcmp(pb->allowed_scopes[i], pb->allowed_scopes[j]) == 0) {
        snprintf(why, why_len, "policy.allowed_scopes: %s is given twice",
                 pb->allowed_scopes[i]);
        return TOKEND_EINVAL;
      }
  }
  p->max_lifetime_ms = pb->max_lifetime_ms;
  p->require_expiry = pb->require_expiry != 0;
  p->max_active_tokens = (int32_t)pb->max_active_tokens;
  /* Validated above: each scope fits, so the joined string fits. */
  for (i = 0; i < pb->n_allowed_scopes; i++) {
    len = strlen(pb->allowed_scopes[i]);
    if (i > 0)
      p->allowed_scopes[off++] = ' ';
    memcpy(p->allowed_scopes + off, pb->allowed_scopes[i], len);
    off += len;
  }
  p->allowed_scopes[off] = '\0';
  return 0;
}

void rpc_set_domain_policy(rpc_t *r, sink_t *k, uint64_t call_id,
                           const authz_actor_t *actor,
                           const Tokend__V1__Request *request) {
  const Tokend__V1__SetDomainPolicyRequest *req = request->set_domain_policy;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  store_policy_t *p;
  call_t *call;
  size_t i;

  if (rpc_reject_nul(r, k, call_id, req->domain, "domain") ||
      (req->policy != NULL &&
       rpc_reject_nul(r, k, call_id, req->policy->updated_by,
                      "policy.updated_by")))
    return;
  for (i = 0; req->policy != NULL && i < req->policy->n_allowed_scopes; i++)
    if (rpc_reject_nul(r, k, call_id, req->policy->allowed_scopes[i],
                       "policy.allowed_scopes"))
      return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if ((call = call_new(r, k, call_id, &policy_set_kind,
                       STORE_JOB_POLICY_SET)) == NULL)
    return;
  p = &call->job.u.policy_set.policy;
  if (policy_from_pb(req->policy, p, why, sizeof(why)) != 0) {
    free(call);
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  snprintf(p->domain, sizeof(p->domain), "%s", req->domain);
  p->updated_at = tokend_now_ms();
  snprintf(p->updated_by, sizeof(p->updated_by), "%s",
           authz_doer(&k->peer, actor));
  /* The store job writes the detail: the policy before and after. */
  authz_audit_fill(&call->audit, &k->peer, actor, "SetDomainPolicy",
                   req->domain, "", 0, "");
  call->job.audit = &call->audit;
  call_submit(call);
}

/* ---- GetDomainPolicy ---- */

static void policy_get_ok(call_t *call) {
  store_job_t *job = &call->job;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__GetDomainPolicyResponse gr =
      TOKEND__V1__GET_DOMAIN_POLICY_RESPONSE__INIT;
  Tokend__V1__DomainPolicy pb;
  char *scopes[TOKEND_MAX_SCOPES];

  if (!rpc_sink_open(call->sink))
    return;
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_GET_DOMAIN_POLICY;
  resp.get_domain_policy = &gr;
  /* None set: all zero (the message's documented "no policy"). */
  if (!job->u.policy_get.found)
    memset(&job->u.policy_get.policy, 0, sizeof(job->u.policy_get.policy));
  policy_to_pb(&pb, &job->u.policy_get.policy, scopes);
  gr.policy = &pb;
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static const call_kind_t policy_get_kind = {
    .method = "GetDomainPolicy",
    .what = "read the domain's policy",
    .ok = policy_get_ok,
};

void rpc_get_domain_policy(rpc_t *r, sink_t *k, uint64_t call_id,
                           const authz_actor_t *actor,
                           const Tokend__V1__Request *request) {
  const Tokend__V1__GetDomainPolicyRequest *req = request->get_domain_policy;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  call_t *call;

  if (rpc_reject_nul(r, k, call_id, req->domain, "domain"))
    return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if (rpc_refuse_not_domain_admin(r, k, call_id, actor, "GetDomainPolicy",
                                  req->domain))
    return;
  if ((call = call_new(r, k, call_id, &policy_get_kind,
                       STORE_JOB_POLICY_GET)) == NULL)
    return;
  snprintf(call->job.u.policy_get.domain, sizeof(call->job.u.policy_get.domain),
           "%s", req->domain);
  authz_job_require_admin(&call->job, &k->peer, actor, req->domain);
  call_submit(call);
}
