#include "core/authz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"
#include "tokend_time.h"
#include "validate.h"

int authz_actor(const conn_t *c, const char *actor, authz_actor_t *out,
                char *why, size_t why_len) {
  memset(out, 0, sizeof(*out));
  if (!c->peer.is_operator) {
    if (actor[0] != '\0') {
      /* Name the claimed identity for the audit trail, but only if it is a
       * well-formed user, which excludes anything shaped like a token: a
       * secret must never reach the log or the audit table. */
      if (validate_user(actor, NULL, 0) == 0)
        snprintf(why, why_len,
                 "only operators may act for another user; %s must not set "
                 "actor (it claimed \"%s\")",
                 c->peer.user, actor);
      else
        snprintf(why, why_len,
                 "only operators may act for another user; %s must not set "
                 "actor",
                 c->peer.user);
      return TOKEND_EPERM;
    }
    snprintf(out->user, sizeof(out->user), "%s", c->peer.user);
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

int authz_domain_admin(const conn_t *c, const authz_actor_t *actor,
                       const char *domain, char *why, size_t why_len) {
  if (actor->break_glass && c->peer.is_operator)
    return 0;
  if (domains_is_admin(&c->server->domains, domain, actor->user))
    return 0;
  snprintf(why, why_len,
           "%s is not an admin of domain %s (an operator can grant it: "
           "GrantDomainAdmin)",
           actor->user, domain);
  return TOKEND_EPERM;
}

void authz_job_require_admin(store_job_t *job, const conn_t *c,
                             const authz_actor_t *actor, const char *domain) {
  if (actor->break_glass && c->peer.is_operator)
    return;
  job->authz.required = 1;
  snprintf(job->authz.user, sizeof(job->authz.user), "%s", actor->user);
  snprintf(job->authz.domain, sizeof(job->authz.domain), "%s", domain);
}

const char *authz_doer(const conn_t *c, const authz_actor_t *actor) {
  return actor->break_glass ? c->peer.user : actor->user;
}

void authz_audit_fill(store_audit_t *ev, const conn_t *c,
                      const authz_actor_t *actor, const char *method,
                      const char *domain, const char *token_id, int code,
                      const char *detail) {
  memset(ev, 0, sizeof(*ev));
  ev->at = tokend_now_ms();
  ev->peer_uid = c->peer.uid;
  ev->peer_pid = c->peer.pid;
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

typedef struct {
  store_job_t job; /* first: done recovers the record */
  store_audit_t ev;
  conn_t *conn;     /* held (conn_job_submit) until the record is written */
  server_t *server; /* an interval's row: no conn, a server job */
} refusal_t;

static void refusal_done(store_job_t *job) {
  refusal_t *r = (refusal_t *)job;
  conn_t *c = r->conn;
  server_t *s = r->server;

  if (job->result != 0)
    log_error("audit: could not record %lld refused %s calls by uid %u: %s",
              (long long)(r->ev.count > 0 ? r->ev.count : 1), r->ev.method,
              (unsigned)r->ev.peer_uid, job->errmsg);
  free(r);
  if (c != NULL)
    conn_job_end(c);
  else
    server_job_end(s);
}

void authz_refuse(conn_t *c, uint64_t call_id, const authz_actor_t *actor,
                  const char *method, const char *rule, const char *domain,
                  int err, const char *why) {
  server_t *s = c->server;
  store_audit_t ev;
  refusal_t *r;

  conn_send_status(c, call_id, tokend_err_grpc(err), why);
  /* A domain that failed validation is not recorded verbatim. */
  authz_audit_fill(&ev, c, actor, method,
                   validate_domain(domain, NULL, 0) == 0 ? domain : "", "",
                   tokend_err_grpc(err), why);
  /* A peer can be refused as fast as it can send: the repeats of a kind
   * are counted, not written or logged one by one (refusals.h), so what it
   * costs the disk and the log is bounded per interval, not per call. */
  if (s->cfg.refusal_audit_interval_ms > 0 && s->refusals != NULL) {
    switch (refusals_note(s->refusals, &ev, rule)) {
    case REFUSAL_RECORD:
      break;
    case REFUSAL_OVERFLOW:
      log_warn("refused: %s by uid %u (pid %d): %s; the refusal table "
               "(--refusal-audit-max-keys %u) is full: refusals of kinds it "
               "does not hold share one audit row this interval",
               method, (unsigned)c->peer.uid, (int)c->peer.pid, why,
               (unsigned)s->cfg.refusal_audit_max_keys);
      return;
    case REFUSAL_COUNTED:
    case REFUSAL_OVERFLOW_COUNTED:
      return;
    }
  }
  log_info("refused: %s by uid %u (pid %d): %s", method, (unsigned)c->peer.uid,
           (int)c->peer.pid, why);
  r = calloc(1, sizeof(*r));
  if (r == NULL) {
    log_error("audit: out of memory recording a refused %s call", method);
    return;
  }
  r->ev = ev;
  /* Counted against the peer's --max-pending-calls like any store call, so
   * a peer sending calls that are refused cannot queue audit records
   * without bound while the disk is slow: tokend stops reading it. */
  r->conn = c;
  r->job.kind = STORE_JOB_AUDIT;
  r->job.done = refusal_done;
  r->job.audit = &r->ev;
  conn_job_submit(c, &r->job);
}

size_t authz_refusals_flush(server_t *s) {
  store_audit_t *rows;
  refusal_t *r;
  size_t n = 0, i, submitted = 0;

  if (s->refusals == NULL || s->worker == NULL)
    return 0;
  if (refusals_take(s->refusals, tokend_now_ms(), &rows, &n) != 0) {
    log_error("audit: out of memory writing the repeated refusals; they "
              "stay counted until the next interval");
    return 0;
  }
  for (i = 0; i < n; i++) {
    log_info("refused: %s by uid %u: %s (%lld more like this in the last %u "
             "ms)",
             rows[i].method, (unsigned)rows[i].peer_uid, rows[i].detail,
             (long long)rows[i].count,
             (unsigned)s->cfg.refusal_audit_interval_ms);
    if ((r = calloc(1, sizeof(*r))) == NULL) {
      log_error("audit: out of memory recording %lld refused %s calls",
                (long long)rows[i].count, rows[i].method);
      continue;
    }
    r->ev = rows[i];
    r->server = s;
    r->job.kind = STORE_JOB_AUDIT;
    r->job.done = refusal_done;
    r->job.audit = &r->ev;
    server_job_begin(s);
    store_worker_submit(s->worker, &r->job);
    submitted++;
  }
  free(rows);
  return submitted;
}
