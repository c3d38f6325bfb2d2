/* server: tokend's event loop, signals, timers and shutdown, and the state
 * every layer shares (index, domains, store worker, pepper). The request
 * path's own state is in its layers, opaque here: rpc_t (rpc/rpc.h) and
 * net_t (net/net.h). */
#ifndef TOKEND_SERVER_H
#define TOKEND_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "core/domains.h"
#include "core/index.h"
#include "core/verify_cache.h"
#include "log.h"
#include "store/feed.h"
#include "store/store.h"
#include "store/worker.h"

typedef struct rpc_s rpc_t;
typedef struct net_s net_t;
typedef struct http_s http_t;

typedef enum {
  SERVER_RUNNING = 0,
  SERVER_DRAINING, /* no new connections or requests; owed answers go out */
  SERVER_CLOSING   /* closing handles; the loop is about to end */
} server_state_t;

typedef struct server_s {
  config_t cfg;
  uv_loop_t loop;
  int loop_up; /* uv_loop_init succeeded: cleanup runs and closes it */
  uv_signal_t sigint, sigterm;
  uv_timer_t flush_timer;
  uv_timer_t shutdown_timer;
  uv_timer_t sweep_timer;   /* read and idle timeouts */
  uv_timer_t refusal_timer; /* ends each --refusal-audit-interval-ms */
  /* The audit log's newest row and its chain hash, logged at start and at
   * exit so that the log anchors the chain outside the database; -1: not
   * known */
  int64_t audit_head_id;
  uint8_t audit_head_hash[STORE_AUDIT_HASH_BYTES];
  store_t *store;
  store_worker_t *worker;
  /* A store several hosts share: its change feed's follower (NULL with
   * SQLite), this host's id in it, and the revision the start-up load
   * included. */
  store_feed_t *feed;
  char host_id[CONFIG_HOST_ID_BYTES];
  const char *store_scheme; /* static: the backend's */
  int64_t load_rev;
  int fatal; /* stopped because it could not go on: exit 1 */
  /* The socket is bound once the feed is current (on_feed_ready). */
  int listen_pending;
  index_t *index;
  verify_cache_t *vcache; /* tokens that verified, by a keyed tag */
  domains_t domains;      /* admins and Verify counters, per domain */
  /* TOKEND_PEPPER_BYTES from sodium_malloc: guard pages around it, read-only
   * once loaded, and left out of core dumps (MADV_DONTDUMP) */
  uint8_t *pepper;
  rpc_t *rpc; /* the request path: methods, Verify batch, write-back */
  net_t *net; /* the transport: listener and connections */
  size_t jobs_in_flight;        /* store jobs submitted and not yet done */
  uv_timer_t flush_retry_timer; /* shutdown: the next write-back try */
  uint64_t drain_deadline;      /* uv_now() at which shutdown gives up on it */
  size_t last_used_lost;        /* tokens whose last_used_at shutdown lost */
  int final_flush_marked;       /* shutdown marked every unsaved last_used */
  server_state_t state;
  /* --busy-poll-us: active (so poll does not sleep) until busy_poll_until,
   * a uv_hrtime() in ns, which each read burst moves on */
  uv_idle_t busy_poll;
  uint64_t busy_poll_until;
  http_t *http; /* the HTTP face (--http-listen); NULL: none */
  /* ---- operations (issue 16): systemd and SIGHUP ---- */
  /* The command line, read again with --config's file at SIGHUP (set by
   * main after server_init; argv NULL: no reload). */
  int argc;
  char **argv;
  uv_signal_t sighup;
  size_t status_tokens;       /* the token count STATUS= last told systemd */
  uv_timer_t retention_timer; /* --audit-retention-days: hourly */
  /* A pepper rotation (docs/OPERATIONS.md, "Rotating the pepper"): the
   * previous pepper (--previous-pepper-file; sodium_malloc'd like pepper;
   * NULL: none), the current pepper's generation (the store's meta), and
   * whether this start begins the rotation (the store's fingerprint was
   * the previous pepper's). tokens_lost_pepper: tokens hashed with a
   * pepper older than both, which can no longer verify. */
  uint8_t *previous_pepper;
  int32_t pepper_gen;
  int pepper_rotation_begins;
  size_t tokens_lost_pepper;
} server_t;

/* Start-up, in the order main.c (the composition root) calls it: config
 * -> store (server_init) -> rpc (server_rpc_new) -> net (server_net_new)
 * -> listening (server_listen) -> loop (server_run). Each step logs one
 * clear line on failure and returns a negative TOKEND_E* code;
 * server_cleanup() must still be called, whatever step failed. */

/* Opens the store and the pepper, loads the index and the admins, and sets
 * up the loop, its timers and signals and the store worker. */
int server_init(server_t *s, const config_t *cfg) TOKEND_MUST_CHECK;

/* Makes the rpc layer on what server_init loaded, reaching the store
 * through the worker (s->rpc; freed by server_cleanup). */
int server_rpc_new(server_t *s) TOKEND_MUST_CHECK;

/* Makes the transport, handing its frames to s->rpc (s->net; freed by
 * server_cleanup). After server_rpc_new. */
int server_net_new(server_t *s) TOKEND_MUST_CHECK;

/* Starts the timers, and binds and listens on the socket: at once, or
 * with a store several hosts share once this host is registered and
 * current (from the loop). After server_net_new. */
int server_listen(server_t *s) TOKEND_MUST_CHECK;

/* Runs until SIGINT/SIGTERM (or server_stop) and a clean shutdown. */
int server_run(server_t *s) TOKEND_MUST_CHECK;

/* SIGHUP: reads the settings again (--config's file and the command line)
 * and applies those that can change while running: log level and repeat
 * interval, operator and verifier lists (for connections from then on),
 * connection limits and timeouts. Logs each change, and each changed
 * setting that needs a restart; a file that no longer parses changes
 * nothing. Never stops tokend. */
void server_reload(server_t *s);

/* Begins a graceful shutdown: stop accepting and reading, answer what is in
 * flight, write back last_used, then end the loop. Idempotent. */
void server_stop(server_t *s);

/* Frees everything server_init made; removes the socket file it bound. */
void server_cleanup(server_t *s);

/* ---- the HTTP face (issue 14) ---- */

/* Makes the HTTP face if --http-listen named any address (s->http; freed
 * by server_cleanup), answering from s->rpc. After server_rpc_new. */
int server_http_new(server_t *s) TOKEND_MUST_CHECK;

/* Binds and serves its addresses. After server_net_new and before
 * server_listen, so that all of tokend listens once the main socket
 * does. */
int server_http_listen(server_t *s) TOKEND_MUST_CHECK;

/* 1 if tokend is ready to serve: the index is loaded, the store worker
 * runs, the last write to the store (the last_used write-back) did not
 * fail, and it is not shutting down. 0 otherwise, with a one-line reason
 * in why (len bytes). /readyz answers from it; the multi-host lease state
 * is to be judged here too. */
int server_ready(const server_t *s, char *why, size_t len);

#endif
