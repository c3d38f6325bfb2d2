/* What the files of rpc/ share: the rpc_t itself, the call lifetime
 * (call.c), answering through a sink, and the handlers the method table
 * names. Not for use outside rpc/. Loop thread only. */
#ifndef TOKEND_RPC_INTERNAL_H
#define TOKEND_RPC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/authz.h"
#include "core/epoch.h"
#include "core/refusals.h"
#include "core/sink.h"
#include "log.h"
#include "pb_arena.h"
#include "prom.h"
#include "rpc/env.h"
#include "rpc/methods.h"
#include "tokend.pb-c.h"

typedef struct verify_batch_s verify_batch_t;

struct rpc_s {
  rpc_env_t env;
  pb_arena_t arena; /* decodes one request at a time */
  /* Verifies queued in this turn of the loop (verify.c) */
  verify_batch_t *vbatch;
  uv_check_t vbatch_check; /* answers them after each poll phase */
  uv_idle_t vbatch_idle;   /* while any wait: poll must not block */
  int handles;             /* the two above were initialised */
  /* Wall clock (ms) read once per read burst: what "now" means for the
   * Verifies answered from that burst. */
  int64_t now_ms;
  size_t list_bytes;    /* answer rows held by List calls in flight */
  refusals_t *refusals; /* repeated refusals, counted; NULL: interval 0 */
  /* last_used write-back (flush.c): one at a time; failed ones in a row,
   * and the uv_now() before which none is tried again */
  int flush_in_flight;
  uint32_t flush_failures;
  uint64_t flush_not_before;
  char flush_errmsg[128]; /* why the last write-back failed */
  log_limit_t flush_log;  /* its failure line, rate-limited */
  /* Verifies answered, socket and HTTP, by InvalidReason (verify.c) */
  uint64_t verify_counts[RPC_VERIFY_REASONS];
  /* Store calls from call_new to call_end (call.c): [0] reads, [1] writes */
  prom_hist_t call_latency[2];
  /* Socket Verifies, from their read burst to their answers (one clock
   * read a burst and one a batch, not one a Verify). */
  uint64_t burst_ns;
  prom_hist_t verify_latency;
  /* The revocation epoch region handed to caching clients (issue 15):
   * bumped before the answer of every change that takes validity away;
   * its heartbeat refreshed by heartbeat while this host is current. */
  epoch_t epoch;
  uv_timer_t heartbeat;
  /* A pepper rotation's re-keys (rekey.c): failures, rate-limited. */
  log_limit_t rekey_log;
};

/* How old the epoch region's heartbeat may be for a client to use its
 * cache; refreshed four times as often. */
#define RPC_HEARTBEAT_BOUND_MS 1000

/* Makes the epoch region and starts its heartbeat; without one (old
 * kernel) tokend runs on and clients do not cache. */
void rpc_epoch_init(rpc_t *r);

/* A Verify of tok reported hits cached answers (VerifyRequest.cached_hits):
 * adds them to its domain's valid Verifies (hits.c). */
void rpc_verify_cached_hits(rpc_t *r, const char *tok, size_t len,
                            uint64_t hits);

/* A pepper rotation (rekey.c): tok, a well-formed token not found under
 * the current pepper's hash (new_hash), hashed with the previous pepper.
 * Returns its entry if the index has it under that hash, and then queues
 * (once per entry at a time) the store job that moves it to new_hash: the
 * entry is moved in memory when that commits, so a write queued before
 * it (a Revoke) still finds the entry under the hash it reads back.
 * NULL if no previous pepper is configured or the token is not there. */
index_entry_t *
rpc_verify_previous_pepper(rpc_t *r, const char *tok, size_t len,
                           const uint8_t new_hash[TOKEND_HASH_BYTES]);

/* As rpc_verify_previous_pepper, for the calls that look a token up by
 * its secret without using it (Lookup, RevokeLeaked): the entry still on
 * the previous pepper under tok's hash with it, or NULL; queues no
 * re-key. */
index_entry_t *rpc_previous_pepper_find(rpc_t *r, const char *tok, size_t len);

/* ---- answering (rpc.c) ---- */

/* Appends resp, encoded, to k's output (after k's queued Verifies, so
 * answers leave in request order). secret marks a response that carries a
 * token secret. Returns 0 or a TOKEND_E* code (k is then closed). */
int rpc_send(rpc_t *r, sink_t *k, const Tokend__V1__Response *resp, int secret);

/* Answers call_id with err's status and msg. */
void rpc_send_error(rpc_t *r, sink_t *k, uint64_t call_id, int err,
                    const char *msg);

/* 1 if k can still receive answers. */
static inline int rpc_sink_open(const sink_t *k) { return !k->closed; }

/* How many bytes protobuf-c decoded into s, NULs included (the arena
 * remembers). */
size_t rpc_decoded_len(const char *s);

/* Answers INVALID_ARGUMENT and returns 1 if the decoded field s holds a NUL
 * byte (protobuf-c would silently cut it there). */
int rpc_reject_nul(rpc_t *r, sink_t *k, uint64_t call_id, const char *s,
                   const char *field);

/* Submits job to the store on k's behalf: k is held until call_end. */
void rpc_submit(rpc_t *r, sink_t *k, store_job_t *job);

/* ---- refusals (refuse.c) ---- */

/* Answers a refused call with err's status and why, and records it in the
 * audit log (asynchronously; nothing waits for it) and in the log, as
 * authz_refusal decides. */
void rpc_refuse(rpc_t *r, sink_t *k, uint64_t call_id,
                const authz_actor_t *actor, const char *method,
                const char *rule, const char *domain, int err, const char *why);

/* The method table's rules, applied: each answers PERMISSION_DENIED
 * (audited) and returns 1 if the call may not go on. */
int rpc_refuse_not_operator(rpc_t *r, sink_t *k, uint64_t call_id,
                            const authz_actor_t *actor, const char *method,
                            const char *domain);
int rpc_refuse_not_domain_admin(rpc_t *r, sink_t *k, uint64_t call_id,
                                const authz_actor_t *actor, const char *method,
                                const char *domain);

/* RevokeLeaked's rule (issue 17): a --leak-reporter or an operator;
 * otherwise PERMISSION_DENIED (audited) and 1. */
int rpc_refuse_not_leak_reporter(rpc_t *r, sink_t *k, uint64_t call_id,
                                 const authz_actor_t *actor,
                                 const char *method);

/* Refuses a Verify by a peer that is neither a verifier nor an operator. */
void rpc_refuse_verify(rpc_t *r, sink_t *k, uint64_t call_id);

/* The verifier rule, on the path of every Verify: the check inline, the
 * refusal (a large frame: a message, an audit record) out of line. */
static inline int rpc_refuse_not_verifier(rpc_t *r, sink_t *k,
                                          uint64_t call_id) {
  if (k->peer.is_verifier || k->peer.is_operator)
    return 0;
  rpc_refuse_verify(r, k, call_id);
  return 1;
}

/* ---- calls answered by the store (call.c) ---- */

typedef struct call_s call_t;

/* What a kind of call does when its store job is done: the one done path
 * (call_done) runs these. */
typedef struct {
  const char *method; /* for the log and refusals */
  unsigned flags;     /* CALL_* */
  /* What failed, in "could not <what>: ..." */
  const char *what;
  /* Writes only: applies a committed (or found applied) write to memory,
   * whether or not the caller is still there; returns the code to answer
   * (job->result, or an error met applying). NULL: job->result. */
  int (*apply)(call_t *call);
  /* The message for TOKEND_ENOTFOUND; NULL: as any error. */
  void (*not_found)(const call_t *call, char *msg, size_t len);
  /* Succeeded: logs it and answers if the sink is open. */
  void (*ok)(call_t *call);
  /* Frees what the job's outputs hold (NULL: nothing). */
  void (*fini)(call_t *call);
  /* Writes whose memory change is too large for one turn of the loop
   * (a BulkRevoke of 100,000 tokens), NULL otherwise: after apply
   * succeeded, applies the next part (call->applied counts what is done)
   * and returns 1 while parts remain, 0 after the last. call.c calls it
   * once a loop turn (an idle handle), so Verifies are answered between
   * parts; the call goes on (propagation wait, answer) after the last. */
  int (*apply_more)(call_t *call);
} call_kind_t;

#define CALL_WRITE 1u /* the message says whether the change is in effect */
#define CALL_PAGED 2u /* answered when the peer reads (sink answer_later) */
/* Answered once every live host has applied the write (a store several
 * hosts share: env.propagate), or after --propagation-timeout-ms */
#define CALL_PROPAGATE 4u
/* As CALL_PROPAGATE, unless --no-issue-wait: a write that gives validity */
#define CALL_PROPAGATE_GIVES 8u

/* One call answered by the store worker. */
struct call_s {
  store_job_t job;
  rpc_t *rpc;
  sink_t *sink;
  const call_kind_t *kind;
  uint64_t call_id;
  store_audit_t audit;            /* writes: recorded with the write */
  char token[TOKEND_TOKEN_BYTES]; /* Issue only: the secret, wiped at end */
  uint32_t page_size;             /* List and ListAuditEvents */
  size_t list_bytes;              /* their rows, in rpc_t.list_bytes */
  store_feed_wait_t wait;         /* CALL_PROPAGATE: until it has spread */
  int has_propagation;            /* the wait ended: propagation is set */
  store_propagation_t propagation;
  uint64_t started_ns; /* uv_hrtime() at call_new */
  /* kind->apply_more: its progress, and the handle that calls it once a
   * loop turn (closed after the last part; the call goes on from its
   * close callback). */
  size_t applied;
  uint64_t applied_max_ns; /* the longest part (for the log) */
  uv_idle_t slicer;
};

/* The answer's Propagation field for call, in *buf: NULL when the write
 * did not wait to spread (one host; --no-issue-wait). */
Tokend__V1__Propagation *call_propagation(const call_t *call,
                                          Tokend__V1__Propagation *buf);

/* A new call of kind for store job kind job_kind, or NULL (out of memory:
 * answered already). */
call_t *call_new(rpc_t *r, sink_t *k, uint64_t call_id, const call_kind_t *kind,
                 store_job_kind_t job_kind);

/* Room for the n rows of size bytes a List-like call reads its answer into,
 * counted against --max-list-memory. On refusal answers (RESOURCE_EXHAUSTED
 * or out of memory) and returns NULL; the caller then frees the call with
 * free(), as it holds nothing. */
void *call_rows(call_t *call, size_t n, size_t size);

/* Hands call's job to the store. */
void call_submit(call_t *call);

/* ---- handlers (the method table's last column) ---- */

#define RPC_HANDLER_DECL(name, member, CASE, domain, who, handler)             \
  void handler(rpc_t *r, sink_t *k, uint64_t call_id,                          \
               const authz_actor_t *actor, const Tokend__V1__Request *req);
RPC_METHODS(RPC_HANDLER_DECL)
#undef RPC_HANDLER_DECL

/* 1 if this host is past its lease (a store several hosts share): Verify
 * then answers UNAVAILABLE rather than from memory that may be stale. */
static inline int rpc_stale(const rpc_t *r) {
  return r->env.fresh_until != NULL && r->env.loop != NULL &&
         uv_now(r->env.loop) >= *r->env.fresh_until;
}

/* Verify by its token bytes tok[0..len) (the hand-decoded fast path and the
 * protobuf-c one meet here); the caller checked the verifier rule. */
void rpc_verify_token(rpc_t *r, sink_t *k, uint64_t call_id, const char *tok,
                      size_t len);

/* verify.c: the batch's memory and loop handles. */
int rpc_verify_init(rpc_t *r) TOKEND_MUST_CHECK;
void rpc_verify_fini(rpc_t *r);

/* tokens.c: a token's status at now, and its TokenInfo (fields pointing
 * into row, whose scopes it splits in place into scopes, room for
 * TOKEND_MAX_SCOPES). */
Tokend__V1__TokenStatus rpc_token_status(int64_t revoked_at, int64_t expires_at,
                                         int64_t now);
void rpc_info_from_row(Tokend__V1__TokenInfo *info, store_token_t *row,
                       char **scopes, int64_t now);

/* lifecycle.c (issue 17): the decoded field in as a token's metadata: ""
 * stays "", else a JSON object of at most TOKEND_MAX_METADATA bytes,
 * written to out compact. 0, or TOKEND_EINVAL (TOKEND_ENOMEM) with why
 * naming the field. */
int rpc_metadata_normalize(const char *in, char out[TOKEND_METADATA_BYTES],
                           char *why, size_t why_len) TOKEND_MUST_CHECK;

/* tokens.c: page tokens ("p1." tokens, "a1." audit events) */
void rpc_page_token_encode(const char *tag, int64_t pos,
                           char out[TOKEND_PAGE_TOKEN_BYTES]);
int rpc_page_token_decode(const char *tag, const char *tok,
                          int64_t *pos) TOKEND_MUST_CHECK;

#endif
