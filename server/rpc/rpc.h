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
#include "rpc/env.h"

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

#endif
