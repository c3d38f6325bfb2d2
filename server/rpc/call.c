/* The lifetime of a call answered by the store: made by its handler,
 * submitted (holding its sink), ended by the one done path below, which
 * every kind of call shares; and the --max-list-memory budget of the rows
 * List-like calls read their answers into. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpc/internal.h"
#include "rpc/rpc.h"
#include "token.h"

void rpc_submit(rpc_t *r, sink_t *k, store_job_t *job) {
  k->ops->hold(k);
  r->env.submit(r->env.ctx, job);
}

static void call_done(store_job_t *job);

call_t *call_new(rpc_t *r, sink_t *k, uint64_t call_id, const call_kind_t *kind,
                 store_job_kind_t job_kind) {
  call_t *call = calloc(1, sizeof(*call));

  if (call == NULL) {
    rpc_send_error(r, k, call_id, TOKEND_ENOMEM, "out of memory");
    return NULL;
  }
  call->job.kind = job_kind;
  call->job.done = call_done;
  call->rpc = r;
  call->sink = k;
  call->kind = kind;
  call->call_id = call_id;
  call->started_ns = uv_hrtime();
  return call;
}

void call_submit(call_t *call) {
  rpc_submit(call->rpc, call->sink, &call->job);
}

/* Many Lists queued behind a slow disk cannot take the memory tokend needs
 * to keep answering Verify. The first call is always let through (a page of
 * big rows may exceed a small limit on its own). */
void *call_rows(call_t *call, size_t n, size_t size) {
  rpc_t *r = call->rpc;
  uint32_t max = r->env.cfg->max_list_memory;
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  size_t bytes = n * size;
  void *rows;

  if (r->list_bytes > 0 &&
      (r->list_bytes >= max || bytes > max - r->list_bytes)) {
    snprintf(msg, sizeof(msg),
             "List calls in flight already hold %zu bytes and this one needs "
             "%zu more, past --max-list-memory %u; try again shortly",
             r->list_bytes, bytes, (unsigned)max);
    rpc_send_error(r, call->sink, call->call_id, TOKEND_ENOMEM, msg);
    return NULL;
  }
  rows = calloc(n, size);
  if (rows == NULL) {
    rpc_send_error(r, call->sink, call->call_id, TOKEND_ENOMEM,
                   "out of memory");
    return NULL;
  }
  call->list_bytes = bytes;
  r->list_bytes += bytes;
  return rows;
}

/* Ends a call: frees it, releases its sink (which flushes what was sent,
 * and may free the sink's owner) and the server's count. */
static void call_end(call_t *call) {
  rpc_t *r = call->rpc;
  sink_t *k = call->sink;

  r->list_bytes -= call->list_bytes;
  /* How long the caller waited, store commit included (for /metrics). */
  prom_hist_observe(&r->call_latency[(call->kind->flags & CALL_WRITE) != 0],
                    uv_hrtime() - call->started_ns);
  /* An Issue's answer copied its token: through registers and stack. */
  if (call->token[0] != '\0')
    token_stack_wipe();
  sodium_memzero(call->token, sizeof(call->token));
  free(call);
  k->ops->release(k);
  r->env.job_end(r->env.ctx);
}

/* A write whose commit failed and whose outcome could not be established
 * leaves memory and the database possibly disagreeing; only a restart,
 * which loads what is really on disk, can make them agree again. */
static void exit_if_outcome_unknown(const store_job_t *job) {
  if (!job->unknown)
    return;
  log_error("a failed commit left the database in an unknown state and it "
            "cannot be read back; exiting so that a restart loads what is "
            "really on disk");
  _exit(70);
}

/* 1 if the store worker refused the call because its actor's admin grant
 * was gone when it ran (store_job_t.authz), after answering it
 * PERMISSION_DENIED. A write's refusal is already in the audit log (its
 * record was written in the same transaction); a read's is recorded now. */
static int refused_by_worker(call_t *call) {
  store_job_t *job = &call->job;
  const char *method = call->kind->method;
  char why[TOKEND_USER_BYTES + sizeof(job->errmsg) + 2];
  authz_actor_t actor = {.break_glass = 0};
  sink_t *k = call->sink;

  if (job->result != TOKEND_EPERM || !job->authz.required)
    return 0;
  snprintf(why, sizeof(why), "%s: %s", job->authz.user, job->errmsg);
  if (!rpc_sink_open(k)) {
    log_info("refused: %s by uid %u: %s", method, (unsigned)k->peer.uid, why);
  } else if (job->audit != NULL) {
    rpc_send_error(call->rpc, k, call->call_id, TOKEND_EPERM, why);
    log_info("refused: %s by uid %u: %s", method, (unsigned)k->peer.uid, why);
  } else {
    snprintf(actor.user, sizeof(actor.user), "%s", job->authz.user);
    rpc_refuse(call->rpc, k, call->call_id, &actor, method, "grant-removed",
               job->authz.domain, TOKEND_EPERM, why);
  }
  return 1;
}

/* The message for a call that failed with err. A write that failed but was
 * found applied after all tells the caller so. */
static void error_message(const call_t *call, int err, char *msg, size_t len) {
  const store_job_t *job = &call->job;

  if (err == TOKEND_ENOTFOUND && call->kind->not_found != NULL)
    call->kind->not_found(call, msg, len);
  else if (call->kind->flags & CALL_WRITE)
    snprintf(msg, len, "could not %s: %s%s", call->kind->what,
             job->errmsg[0] != '\0' ? job->errmsg
                                    : tokend_strerror(job->result),
             job->applied ? " (the change reached the database before the "
                            "error: it is in effect)"
                          : "");
  else
    snprintf(msg, len, "could not %s: %s", call->kind->what, job->errmsg);
}

/* 1 if call's committed write must spread to every live host before it
 * is answered. */
static int call_waits(const call_t *call) {
  const rpc_t *r = call->rpc;
  unsigned flags = call->kind->flags;

  if (r->env.propagate == NULL || call->job.rev <= 0)
    return 0;
  return (flags & CALL_PROPAGATE) ||
         ((flags & CALL_PROPAGATE_GIVES) && !r->env.cfg->issue_no_wait);
}

/* The write has spread (or the timeout passed): answer, and end. */
static void call_spread(store_feed_wait_t *w, const store_propagation_t *p) {
  call_t *call = container_of(w, call_t, wait);
  const call_kind_t *kind = call->kind;

  call->propagation = *p;
  call->has_propagation = 1;
  if (p->pending > 0)
    log_warn("%s: revision %lld in effect on %u live host(s), not yet on %u "
             "after --propagation-timeout-ms",
             kind->method, (long long)p->revision, (unsigned)p->applied,
             (unsigned)p->pending);
  kind->ok(call);
  if (kind->fini != NULL)
    kind->fini(call);
  call_end(call);
}

Tokend__V1__Propagation *call_propagation(const call_t *call,
                                          Tokend__V1__Propagation *buf) {
  if (!call->has_propagation)
    return NULL;
  tokend__v1__propagation__init(buf);
  buf->revision = call->propagation.revision;
  buf->hosts_applied = call->propagation.applied;
  buf->hosts_pending = call->propagation.pending;
  return buf;
}

static void call_applied(call_t *call, int err);

/* apply_more's handle is closed: the call goes on. */
static void call_slicer_closed(uv_handle_t *h) {
  call_t *call = container_of((uv_idle_t *)h, call_t, slicer);

  call_applied(call, 0);
}

/* Once a loop turn: the next part of a large write's memory change. */
static void call_slice(uv_idle_t *h) {
  call_t *call = container_of(h, call_t, slicer);

  if (call->kind->apply_more(call))
    return;
  uv_idle_stop(h);
  uv_close((uv_handle_t *)h, call_slicer_closed);
}

/* The one done path of every call the store answers. Memory follows the
 * store whether or not the caller is still there; the answer only if it
 * is. */
static void call_done(store_job_t *job) {
  call_t *call = container_of(job, call_t, job);
  const call_kind_t *kind = call->kind;
  int err;

  if (kind->flags & CALL_PAGED) {
    /* A page may be megabytes: made when the peer is ready to read it. */
    if (call->sink->ops->answer_later(call->sink, job))
      return;
    if (!rpc_sink_open(call->sink)) {
      if (kind->fini != NULL)
        kind->fini(call);
      call_end(call);
      return;
    }
  }
  exit_if_outcome_unknown(job);
  if (refused_by_worker(call)) {
    if (kind->fini != NULL)
      kind->fini(call);
    call_end(call);
    return;
  }
  err = kind->apply != NULL ? kind->apply(call) : job->result;
  /* The first part now; the others on later turns, Verifies between. */
  if (err == 0 && kind->apply_more != NULL && kind->apply_more(call)) {
    if (call->rpc->env.loop != NULL &&
        uv_idle_init(call->rpc->env.loop, &call->slicer) == 0 &&
        uv_idle_start(&call->slicer, call_slice) == 0)
      return;
    /* No loop (unit tests) or no handle: the rest at once. */
    while (kind->apply_more(call))
      ;
  }
  call_applied(call, err);
}

/* After apply (and every part of apply_more): answers, at once or once
 * the write has spread, and ends the call. */
static void call_applied(call_t *call, int err) {
  const call_kind_t *kind = call->kind;
  store_job_t *job = &call->job;
  char msg[TOKEND_USER_BYTES + TOKEND_DOMAIN_BYTES +
           TOKEND_STATUS_MESSAGE_BYTES];

  if (err != 0) {
    error_message(call, err, msg, sizeof(msg));
    if (rpc_sink_open(call->sink))
      rpc_send_error(call->rpc, call->sink, call->call_id, err, msg);
    goto out;
  }
  /* In effect here (applied above); answered once it is everywhere. */
  if (call_waits(call)) {
    call->wait.cb = call_spread;
    call->rpc->env.propagate(call->rpc->env.ctx, &call->wait, job->rev);
    return;
  }
  kind->ok(call);
out:
  if (kind->fini != NULL)
    kind->fini(call);
  call_end(call);
}

const prom_hist_t *rpc_call_latency(const rpc_t *r, int writes) {
  return &r->call_latency[writes != 0];
}
