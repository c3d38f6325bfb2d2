/* server: tokend's event loop, listening socket, signals, timers and the
 * state every connection shares (index, store worker, pepper). */
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
#include "nodump.h"
#include "pb_arena.h"
#include "rpc/refusals.h"
#include "store/store.h"
#include "store/worker.h"

typedef struct conn_s conn_t;

typedef enum {
  SERVER_RUNNING = 0,
  SERVER_DRAINING, /* no new connections or requests; owed answers go out */
  SERVER_CLOSING   /* closing handles; the loop is about to end */
} server_state_t;

typedef struct verify_batch_s verify_batch_t;

typedef struct server_s {
  config_t cfg;
  uv_loop_t loop;
  uv_pipe_t listener; /* bound by libuv; accepted from by listen_poll */
  /* tokend accepts itself (libuv's uv_listen drops connections silently
   * when out of file descriptors): readiness of the listening socket, and
   * the pause after an accept failed for want of descriptors or memory */
  uv_poll_t listen_poll;
  uv_timer_t accept_retry;
  uv_signal_t sigint, sigterm;
  uv_timer_t flush_timer;
  uv_timer_t shutdown_timer;
  uv_timer_t sweep_timer;   /* read and idle timeouts */
  uv_timer_t refusal_timer; /* ends each --refusal-audit-interval-ms */
  refusals_t *refusals;     /* repeated refusals, counted (authz.c) */
  /* The audit log's newest row and its chain hash, logged at start and at
   * exit so that the log anchors the chain outside the database; -1: not
   * known */
  int64_t audit_head_id;
  uint8_t audit_head_hash[STORE_AUDIT_HASH_BYTES];
  pb_arena_t arena; /* decodes one request at a time */
  store_t *store;
  store_worker_t *worker;
  index_t *index;
  verify_cache_t *vcache; /* tokens that verified, by a keyed tag */
  /* Verifies queued in this turn of the loop (dispatch.c) */
  verify_batch_t *vbatch;
  uv_check_t vbatch_check; /* answers them after each poll phase */
  uv_idle_t vbatch_idle;   /* while any wait: poll must not block */
  domains_t domains;       /* admins and Verify counters, per domain */
  /* TOKEND_PEPPER_BYTES from sodium_malloc: guard pages around it, read-only
   * once loaded, and left out of core dumps (MADV_DONTDUMP) */
  uint8_t *pepper;
  conn_t *conns; /* doubly linked list of open connections */
  size_t n_conns;
  /* Connections admitted (server_conn_admit), in all and per uid: the ones
   * --max-connections and its per-uid and operator shares count. */
  size_t n_admitted;
  struct server_uid_conns_s *uid_conns; /* uthash, by uid */
  /* Refused connections and failed accepts: one line per
   * --log-repeat-interval-ms, then "(N more like this)" (a flood must not
   * flood the log). */
  log_limit_t refuse_log;
  /* closed connections' buffer blocks, for new ones (--conn-buffer-pool) */
  nodump_pool_t conn_pool;
  /* read buffers larger than CONN_READ_CHUNK, all conns (--max-read-memory) */
  size_t read_buf_bytes;
  size_t jobs_in_flight; /* store jobs submitted and not yet done */
  size_t list_bytes;     /* answer rows held by List calls in flight */
  int flush_in_flight;   /* a last_used write-back is running */
  /* Failed write-backs in a row, and the uv_now() before which none is
   * tried again (exponential backoff, --flush-backoff-max-ms). */
  uint32_t flush_failures;
  uint64_t flush_not_before;
  char flush_errmsg[128];       /* why the last write-back failed */
  log_limit_t flush_log;        /* its failure line, rate-limited */
  uv_timer_t flush_retry_timer; /* shutdown: the next write-back try */
  uint64_t drain_deadline;      /* uv_now() at which shutdown gives up on it */
  size_t last_used_lost;        /* tokens whose last_used_at shutdown lost */
  int final_flush_marked;       /* shutdown marked every unsaved last_used */
  int listening;                /* the socket file is ours to remove */
  server_state_t state;
  uint64_t next_conn_id;
  /* Wall clock (ms) read once per read burst: what "now" means for the
   * Verifies answered from that burst. */
  int64_t now_ms;
  /* --busy-poll-us: active (so poll does not sleep) until busy_poll_until,
   * a uv_hrtime() in ns, which each read burst moves on */
  uv_idle_t busy_poll;
  uint64_t busy_poll_until;
} server_t;

/* Opens the store, loads the index, binds the socket. On failure logs one
 * clear line and returns a negative TOKEND_E* code; server_cleanup() must
 * still be called. */
int server_init(server_t *s, const config_t *cfg) TOKEND_MUST_CHECK;

/* Runs until SIGINT/SIGTERM (or server_stop) and a clean shutdown. */
int server_run(server_t *s) TOKEND_MUST_CHECK;

/* Begins a graceful shutdown: stop accepting and reading, answer what is in
 * flight, write back last_used, then end the loop. Idempotent. */
void server_stop(server_t *s);

/* Frees everything server_init made; removes the socket file it bound. */
void server_cleanup(server_t *s);

/* Called by conn.c before it handles a batch of requests (those of a read
 * burst, or those held back until a store job finished): reads the clock
 * for them and, with --busy-poll-us, keeps the loop polling without
 * sleeping for that long after them. */
void server_read_burst(server_t *s);

/* Called by the dispatcher around every store job. */
void server_job_begin(server_t *s);
void server_job_end(server_t *s);

/* Decides whether c (its peer identified) may be served: 0, or
 * TOKEND_EMSGSIZE with msg (len bytes) saying which limit it met:
 * --max-connections, the --reserved-operator-connections that only
 * operators may take, or --max-connections-per-uid (operators are exempt).
 * An admitted c counts until server_conn_removed. */
int server_conn_admit(server_t *s, conn_t *c, char *msg, size_t len);

/* Logs a refused connection or a failed accept at warn through
 * s->refuse_log: at most one line per --log-repeat-interval-ms, the next one
 * out ending with the number held back, "(N more like this)". */
void server_log_refusal(server_t *s, const char *what);

/* Removes c from the server's list (conn.c calls it once c is closed). */
void server_conn_removed(server_t *s, conn_t *c);

#endif
