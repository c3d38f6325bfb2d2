/* env: what the rpc layer works on and how it reaches the store; the
 * part of rpc.h that rpc's own files share with its callers. */
#ifndef TOKEND_RPC_ENV_H
#define TOKEND_RPC_ENV_H

#include <uv.h>

#include "config.h"
#include "core/domains.h"
#include "core/index.h"
#include "core/verify_cache.h"
#include "store/feed.h"
#include "store/worker.h"

typedef struct rpc_s rpc_t;

/* What ServerStatus reports that rpc does not hold itself (the server
 * fills it). */
typedef struct {
  const char *store;   /* the store's scheme */
  const char *host_id; /* "" with a store of one host */
  int64_t applied_revision;
  int fresh;
  int64_t lease_left_ms;
  char problem[256];
} rpc_server_status_t;
/* The InvalidReason values (proto/tokend.proto), 0 to 5, that Verify
 * answers are counted by: rpc's callers name no protobuf type, so they are
 * plain ints for them. */
#define RPC_VERIFY_REASONS 6

/* What rpc works on, and how it reaches the store. Everything pointed to
 * is owned by the caller and must outlive the rpc_t. */
typedef struct {
  const config_t *cfg;
  index_t *index;
  verify_cache_t *vcache;
  domains_t *domains;
  const uint8_t *pepper; /* TOKEND_PEPPER_BYTES */
  /* A pepper rotation (docs/OPERATIONS.md): the previous pepper (NULL:
   * none), tried only when a token is not found under pepper's hash, and
   * the current pepper's generation, which a re-keyed row gets. */
  const uint8_t *previous_pepper;
  int32_t pepper_gen;
  /* The loop: the Verify batch is answered after each poll phase (a check
   * handle), and the write-back's backoff is timed by it. NULL (unit
   * tests): no handles; rpc_verify_drain is then called by hand. */
  uv_loop_t *loop;
  /* Queues job for the store; job->done(job) runs later on the loop thread.
   * Each submit is matched by one job_end(ctx) after the done callback has
   * finished with the job (the server counts jobs in flight for its
   * shutdown). */
  void (*submit)(void *ctx, store_job_t *job);
  void (*job_end)(void *ctx);
  /* A store several hosts share; both NULL otherwise. fresh_until: the
   * uv_now() until which this host is current (store_feed_t's): Verify
   * answers UNAVAILABLE after it. propagate: waits until every live host
   * has applied revision rev (a committed write's job->rev), then calls
   * w->cb (store/feed.h); never calls it from within. */
  const uint64_t *fresh_until;
  void (*propagate)(void *ctx, store_feed_wait_t *w, int64_t rev);
  /* Fills out for ServerStatus. */
  void (*status)(void *ctx, rpc_server_status_t *out);
  void *ctx;
} rpc_env_t;

#endif
