/* The audit log: ListAuditEvents and VerifyAuditLog. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "validate.h"

/* ---- ListAuditEvents ---- */

static void audit_list_ok(call_t *call) {
  store_job_t *job = &call->job;
  store_audit_t *rows = job->u.audit_list.rows;
  size_t n = job->u.audit_list.n_rows, i;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__ListAuditEventsResponse lr =
      TOKEND__V1__LIST_AUDIT_EVENTS_RESPONSE__INIT;
  Tokend__V1__AuditEvent *evs = NULL, **ptrs = NULL;
  char next[TOKEND_PAGE_TOKEN_BYTES] = "";

  if (n > call->page_size) {
    n = call->page_size;
    rpc_page_token_encode("a1.", rows[n - 1].id, next);
  }
  if (n > 0) {
    evs = calloc(n, sizeof(*evs));
    ptrs = calloc(n, sizeof(*ptrs));
    if (evs == NULL || ptrs == NULL) {
      rpc_send_error(call->rpc, call->sink, call->call_id, TOKEND_ENOMEM,
                     "out of memory");
      goto out;
    }
  }
  for (i = 0; i < n; i++) {
    tokend__v1__audit_event__init(&evs[i]);
    evs[i].id = rows[i].id;
    evs[i].time = rows[i].at;
    evs[i].peer_uid = rows[i].peer_uid;
    evs[i].peer_pid = rows[i].peer_pid;
    evs[i].actor = rows[i].actor;
    evs[i].break_glass = rows[i].break_glass != 0;
    evs[i].domain = rows[i].domain;
    evs[i].token_id = rows[i].token_id;
    evs[i].method = rows[i].method;
    evs[i].code = rows[i].code;
    evs[i].detail = rows[i].detail;
    evs[i].count = rows[i].count > 0 ? (uint64_t)rows[i].count : 1;
    ptrs[i] = &evs[i];
  }
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_LIST_AUDIT_EVENTS;
  resp.list_audit_events = &lr;
  lr.n_events = n;
  lr.events = ptrs;
  lr.next_page_token = next;
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
out:
  free(evs);
  free(ptrs);
}

static void audit_list_fini(call_t *call) { free(call->job.u.audit_list.rows); }

static const call_kind_t audit_list_kind = {
    .method = "ListAuditEvents",
    .flags = CALL_PAGED,
    .what = "read the audit log",
    .ok = audit_list_ok,
    .fini = audit_list_fini,
};

void rpc_list_audit(rpc_t *r, sink_t *k, uint64_t call_id,
                    const authz_actor_t *actor,
                    const Tokend__V1__Request *request) {
  const Tokend__V1__ListAuditEventsRequest *req = request->list_audit_events;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  uint32_t page_size = req->page_size;
  int64_t before = 0;
  call_t *call;

  if (rpc_reject_nul(r, k, call_id, req->domain, "domain") ||
      rpc_reject_nul(r, k, call_id, req->page_token, "page_token"))
    return;
  /* Every domain's log ("") is the operators' alone. */
  if (req->domain[0] == '\0') {
    if (rpc_refuse_not_operator(r, k, call_id, actor, "ListAuditEvents", ""))
      return;
  } else {
    if (validate_domain(req->domain, why, sizeof(why)) != 0) {
      rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
      return;
    }
    if (rpc_refuse_not_domain_admin(r, k, call_id, actor, "ListAuditEvents",
                                    req->domain))
      return;
  }
  if (req->page_token[0] != '\0' &&
      rpc_page_token_decode("a1.", req->page_token, &before) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL,
                   "page_token is not one this server handed out");
    return;
  }
  if (page_size == 0)
    page_size = TOKEND_AUDIT_PAGE_DEFAULT;
  if (page_size > TOKEND_LIST_PAGE_MAX)
    page_size = TOKEND_LIST_PAGE_MAX;
  if ((call = call_new(r, k, call_id, &audit_list_kind,
                       STORE_JOB_AUDIT_LIST)) == NULL)
    return;
  call->page_size = page_size;
  call->job.u.audit_list.rows =
      call_rows(call, (size_t)page_size + 1, sizeof(store_audit_t));
  if (call->job.u.audit_list.rows == NULL) {
    free(call);
    return;
  }
  call->job.u.audit_list.max_rows = (size_t)page_size + 1;
  snprintf(call->job.u.audit_list.domain, sizeof(call->job.u.audit_list.domain),
           "%s", req->domain);
  call->job.u.audit_list.since = req->since;
  call->job.u.audit_list.before_id = before;
  /* Every domain's log ("") is the operators' alone, checked above. */
  if (req->domain[0] != '\0')
    authz_job_require_admin(&call->job, &k->peer, actor, req->domain);
  call_submit(call);
}

/* ---- VerifyAuditLog ---- */

static void audit_verify_ok(call_t *call) {
  const store_audit_check_t *chk = &call->job.u.audit_verify.check;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__VerifyAuditLogResponse vr =
      TOKEND__V1__VERIFY_AUDIT_LOG_RESPONSE__INIT;
  char hex[2 * STORE_AUDIT_HASH_BYTES + 1];
  char problem[sizeof(chk->why)];

  /* A chain that does not hold is tampering; an anchor that does not match
   * may be tampering (rows cut off) or a wrong anchor: the caller says. */
  if (chk->first_bad_id != 0 && !chk->anchor_mismatch)
    log_error("audit log: %s", chk->why);
  else if (chk->first_bad_id != 0)
    log_warn("audit log: %s", chk->why);
  else
    log_info("audit log verified: %lld rows", (long long)chk->rows_checked);
  if (!rpc_sink_open(call->sink))
    return;
  sodium_bin2hex(hex, sizeof(hex), chk->head_hash, sizeof(chk->head_hash));
  snprintf(problem, sizeof(problem), "%s", chk->why);
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_VERIFY_AUDIT_LOG;
  resp.verify_audit_log = &vr;
  vr.rows_checked = chk->rows_checked;
  vr.first_bad_id = chk->first_bad_id;
  vr.problem = problem;
  vr.head_id = chk->head_id;
  vr.head_hash = hex;
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static const call_kind_t audit_verify_kind = {
    .method = "VerifyAuditLog",
    .what = "read the audit log",
    .ok = audit_verify_ok,
};

/* Operators only (the method table). Runs on the store worker, which it
 * keeps from writing while it walks the log: one pass of a keyed hash per
 * row. */
void rpc_verify_audit(rpc_t *r, sink_t *k, uint64_t call_id,
                      const authz_actor_t *actor,
                      const Tokend__V1__Request *request) {
  const Tokend__V1__VerifyAuditLogRequest *req = request->verify_audit_log;
  uint8_t anchor[STORE_AUDIT_HASH_BYTES];
  size_t n = 0;
  call_t *call;

  (void)actor;
  if (rpc_reject_nul(r, k, call_id, req->anchor_hash, "anchor_hash"))
    return;
  if (req->anchor_id < 0 ||
      (req->anchor_id > 0 &&
       (strlen(req->anchor_hash) != 2 * sizeof(anchor) ||
        sodium_hex2bin(anchor, sizeof(anchor), req->anchor_hash,
                       strlen(req->anchor_hash), NULL, &n, NULL) != 0 ||
        n != sizeof(anchor)))) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL,
                   "an anchor is a row id > 0 and its hash in 64 hex digits");
    return;
  }
  if ((call = call_new(r, k, call_id, &audit_verify_kind,
                       STORE_JOB_AUDIT_VERIFY)) == NULL)
    return;
  call->job.u.audit_verify.anchor_id = req->anchor_id;
  if (req->anchor_id > 0)
    memcpy(call->job.u.audit_verify.anchor_hash, anchor, sizeof(anchor));
  call_submit(call);
}
