/* rpc: turns one request frame into its answer. The entry point of the
 * request path: net/ hands it each frame body with the sink to answer
 * through (rpc_frame, the callback net was given); rpc decodes it, runs the
 * method table (rpc/methods.h) and writes encoded frames to the sink. It
 * never names a connection.
 *
 * Verify is answered from the index, in batches (rpc/verify.c); Issue,
 * Revoke, List and the rest go through the store (env.submit) and are
 * answered when their job is done. All the state of the request path (the
 * Verify batch, the list-memory budget, the last_used write-back, the
 * refusal counts, the decoding arena) is in the opaque rpc_t. Loop thread
 * only. */
#ifndef TOKEND_RPC_H
#define TOKEND_RPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/sink.h"
#include "prom.h"
#include "rpc/env.h"
#include "tokend_limits.h"

/* A new rpc_t for env (copied). Returns 0 or TOKEND_ENOMEM. */
int rpc_new(const rpc_env_t *env, rpc_t **out) TOKEND_MUST_CHECK;

/* Frees r (NULL is fine): its handles are closed by the loop's end (their
 * memory is r's, so the loop must have closed them: uv_walk + uv_run before
 * rpc_free). Queued Verifies must have been drained. */
void rpc_free(rpc_t *r);

/* Something outside rpc (a revoke from the store's change feed) took
 * validity away from tokens the index holds: bumps the revocation epoch,
 * so that clients drop their cached answers. NULL is a no-op. */
void rpc_validity_taken(rpc_t *r);

/* tokend is shutting down: caching clients stop trusting their caches now
 * (epoch_retire). NULL is a no-op. */
void rpc_epoch_retire(rpc_t *r);

/* The store's change feed is about to be closed (env.fresh_until points
 * into it, and it is freed once its handles close): from now on this host
 * counts as not current (Verify answers UNAVAILABLE, the epoch heartbeat
 * stops). NULL or a store without a feed: nothing. */
void rpc_feed_closed(rpc_t *r);

/* Handles one frame body from the peer behind k. Returns 0 to go on
 * reading, or a negative TOKEND_E* code if the frame did not decode (an
 * error answer has then been written and the peer should be closed once it
 * is sent). body is only read during the call. */
int rpc_frame(rpc_t *r, sink_t *k, const uint8_t *body, size_t len);

/* Answers on k a status for no call (call_id 0): what the transport says
 * when it refuses a peer or its input (frame too large, connection limit,
 * timeout). grpc_code is a TOKEND_GRPC_* code. */
void rpc_status(rpc_t *r, sink_t *k, int grpc_code, const char *message);

/* Reads the clock for the requests of one read burst: what "now" means for
 * the Verifies answered from it. */
void rpc_burst(rpc_t *r);

/* Answers every queued Verify now, in order. */
void rpc_verify_drain(rpc_t *r);

/* last_used write-back (rpc/flush.c). rpc_flush_last_used starts one if any
 * is pending and none is running: 1 if a job was submitted. The timer's
 * tick should wait until rpc_flush_not_before (uv_now time) after
 * failures; rpc_flush_failures counts failures in a row (0: the last
 * worked) and rpc_flush_errmsg says why the last failed. */
int rpc_flush_last_used(rpc_t *r);
uint64_t rpc_flush_not_before(const rpc_t *r);
uint32_t rpc_flush_failures(const rpc_t *r);
const char *rpc_flush_errmsg(const rpc_t *r);

/* How long to wait after failures failed write-backs in a row: 0 after
 * none, then CONFIG_FLUSH_BACKOFF_MIN_MS doubling up to max_ms. */
uint64_t rpc_flush_backoff_ms(uint32_t failures, uint32_t max_ms);

/* Ends a refusal interval: writes one audit row (and logs one line) per
 * kind of refusal repeated since the last. Returns how many rows it
 * submitted. Called by the server's timer, and at shutdown until it
 * returns 0. */
size_t rpc_flush_refusals(rpc_t *r);

/* Verify answered synchronously, for a transport that answers at once
 * (the HTTP face's forward-auth): the same index, cache and counters as the
 * socket's Verify, and the same rules. */

typedef struct {
  int valid;  /* 1: reason is INVALID_REASON_VALID */
  int reason; /* an InvalidReason value, below RPC_VERIFY_REASONS */
  /* "" when the index does not know the token. The strings point into the
   * index: valid until control returns to the loop (an Issue or Revoke
   * applied may move them). */
  const char *token_id, *domain, *label;
  const char *scopes[TOKEND_MAX_SCOPES];
  size_t n_scopes;
  int64_t expires_at;   /* unix ms; 0: never */
  const char *metadata; /* the token's JSON object (compact); "": none */
} rpc_verify_result_t;

/* Verifies tok[0..len) now (reading the clock), into *out. The caller
 * applies the verifier rule (rpc answers no peer here). tok is only read
 * during the call, and the copies of it that hashing left on the stack are
 * wiped. Returns 0 (every token, even malformed, gets a verdict). */
int rpc_verify_now(rpc_t *r, const char *tok, size_t len,
                   rpc_verify_result_t *out) TOKEND_MUST_CHECK;

/* Verifies answered so far (socket and HTTP) by reason: counts[reason]. */
void rpc_verify_counts(const rpc_t *r, uint64_t counts[RPC_VERIFY_REASONS]);

/* How long store calls took, from their request read to their answer (the
 * store commit included): writes (Issue, Revoke, grants) if writes, else
 * reads (List, audit). Valid as long as r. */
const prom_hist_t *rpc_call_latency(const rpc_t *r, int writes);

/* Socket Verifies from the read of their burst to their answers. */
const prom_hist_t *rpc_verify_latency(const rpc_t *r);

/* The reason's name for metrics and headers: "valid", "malformed",
 * "unknown", "revoked", "expired" ("unspecified" for any other). */
const char *rpc_verify_reason_name(int reason);

#endif
