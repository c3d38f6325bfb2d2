/* Refused calls: answered, logged and audited as authz_refusal decides;
 * repeats written once per interval (rpc_flush_refusals). */
#include <stdio.h>
#include <stdlib.h>

#include "rpc/internal.h"
#include "rpc/rpc.h"
#include "tokend_time.h"

/* An audit record written on its own (a refused call, or an interval's row
 * of repeats). */
typedef struct {
  store_job_t job;
  store_audit_t ev;
  rpc_t *rpc;
  sink_t *sink; /* held until the record is written; NULL: interval row */
} refusal_t;

static void refusal_done(store_job_t *job) {
  refusal_t *f = container_of(job, refusal_t, job);
  sink_t *k = f->sink;
  rpc_t *r = f->rpc;

  if (job->result != 0)
    log_error("audit: could not record %lld refused %s calls by uid %u: %s",
              (long long)(f->ev.count > 0 ? f->ev.count : 1), f->ev.method,
              (unsigned)f->ev.peer_uid, job->errmsg);
  free(f);
  if (k != NULL)
    k->ops->release(k);
  r->env.job_end(r->env.ctx);
}

void rpc_refuse(rpc_t *r, sink_t *k, uint64_t call_id,
                const authz_actor_t *actor, const char *method,
                const char *rule, const char *domain, int err,
                const char *why) {
  store_audit_t ev;
  refusal_t *f;

  rpc_send_error(r, k, call_id, err, why);
  switch (authz_refusal(r->refusals, &k->peer, actor, method, rule, domain, err,
                        why, &ev)) {
  case REFUSAL_RECORD:
    break;
  case REFUSAL_OVERFLOW:
    log_warn("refused: %s by uid %u (pid %d): %s; the refusal table "
             "(--refusal-audit-max-keys %u) is full: refusals of kinds it "
             "does not hold share one audit row this interval",
             method, (unsigned)k->peer.uid, (int)k->peer.pid, why,
             (unsigned)r->env.cfg->refusal_audit_max_keys);
    return;
  case REFUSAL_COUNTED:
  case REFUSAL_OVERFLOW_COUNTED:
    return;
  }
  log_info("refused: %s by uid %u (pid %d): %s", method, (unsigned)k->peer.uid,
           (int)k->peer.pid, why);
  f = calloc(1, sizeof(*f));
  if (f == NULL) {
    log_error("audit: out of memory recording a refused %s call", method);
    return;
  }
  f->ev = ev;
  f->rpc = r;
  /* Counted against the peer's --max-pending-calls like any store call, so
   * a peer sending calls that are refused cannot queue audit records
   * without bound while the disk is slow: tokend stops reading it. */
  f->sink = k;
  f->job.kind = STORE_JOB_AUDIT;
  f->job.done = refusal_done;
  f->job.audit = &f->ev;
  rpc_submit(r, k, &f->job);
}

size_t rpc_flush_refusals(rpc_t *r) {
  store_audit_t *rows;
  refusal_t *f;
  size_t n = 0, i, submitted = 0;

  if (r == NULL || r->refusals == NULL)
    return 0;
  if (refusals_take(r->refusals, tokend_now_ms(), &rows, &n) != 0) {
    log_error("audit: out of memory writing the repeated refusals; they "
              "stay counted until the next interval");
    return 0;
  }
  for (i = 0; i < n; i++) {
    log_info("refused: %s by uid %u: %s (%lld more like this in the last %u "
             "ms)",
             rows[i].method, (unsigned)rows[i].peer_uid, rows[i].detail,
             (long long)rows[i].count,
             (unsigned)r->env.cfg->refusal_audit_interval_ms);
    if ((f = calloc(1, sizeof(*f))) == NULL) {
      log_error("audit: out of memory recording %lld refused %s calls",
                (long long)rows[i].count, rows[i].method);
      continue;
    }
    f->ev = rows[i];
    f->rpc = r;
    f->job.kind = STORE_JOB_AUDIT;
    f->job.done = refusal_done;
    f->job.audit = &f->ev;
    r->env.submit(r->env.ctx, &f->job);
    submitted++;
  }
  free(rows);
  return submitted;
}

int rpc_refuse_not_operator(rpc_t *r, sink_t *k, uint64_t call_id,
                            const authz_actor_t *actor, const char *method,
                            const char *domain) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];

  if (k->peer.is_operator)
    return 0;
  snprintf(why, sizeof(why), "%s may not call %s: operators only", k->peer.user,
           method);
  rpc_refuse(r, k, call_id, actor, method, "operators-only", domain,
             TOKEND_EPERM, why);
  return 1;
}

int rpc_refuse_not_domain_admin(rpc_t *r, sink_t *k, uint64_t call_id,
                                const authz_actor_t *actor, const char *method,
                                const char *domain) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];

  if (authz_domain_admin(&k->peer, r->env.domains, actor, domain, why,
                         sizeof(why)) == 0)
    return 0;
  rpc_refuse(r, k, call_id, actor, method, "not-domain-admin", domain,
             TOKEND_EPERM, why);
  return 1;
}

void rpc_refuse_verify(rpc_t *r, sink_t *k, uint64_t call_id) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  authz_actor_t self = {.break_glass = 0};

  snprintf(self.user, sizeof(self.user), "%s", k->peer.user);
  snprintf(why, sizeof(why), "%s may not call Verify (not a verifier)",
           k->peer.user);
  rpc_refuse(r, k, call_id, &self, "Verify", "not-verifier", "", TOKEND_EPERM,
             why);
}

int rpc_refuse_not_leak_reporter(rpc_t *r, sink_t *k, uint64_t call_id,
                                 const authz_actor_t *actor,
                                 const char *method) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];

  if (k->peer.is_leak_reporter || k->peer.is_operator)
    return 0;
  snprintf(why, sizeof(why),
           "%s may not call %s: --leak-reporter identities and operators "
           "only",
           k->peer.user, method);
  rpc_refuse(r, k, call_id, actor, method, "leak-reporters-only", "",
             TOKEND_EPERM, why);
  return 1;
}
