/* conn: one client connection, private to net/. A small state machine in
 * the manner of Redis's client struct: a read buffer, the frame parser, an
 * output buffer that collects every answer produced from one read and goes
 * out in one write, and the holds of store jobs and queued Verifies that
 * still owe it answers.
 *
 * Lifetime is a state (conn_state_t), moved forward only, each move
 * asserted (libuv's UV_HANDLE_CLOSING / UV_HANDLE_CLOSED): a conn is freed
 * only in CONN_CLOSED (uv_close's callback ran) once nothing holds it. */
#ifndef TOKEND_CONN_H
#define TOKEND_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "core/sink.h"
#include "log.h"
#include "net/net.h"
#include "nodump.h"

typedef enum {
  CONN_OPEN,     /* reading (unless held or paused) and answering */
  CONN_DRAINING, /* reads no more; closes once its answers are written */
  CONN_CLOSING,  /* uv_close called: nothing more is written */
  CONN_CLOSED    /* its close callback ran: freed once nothing holds it */
} conn_state_t;

typedef struct conn_s {
  uv_pipe_t pipe;
  sink_t sink; /* what rpc answers through; sink.peer is the peer */
  net_t *net;
  struct conn_s *prev, *next;
  conn_state_t state;
  uint8_t *rbuf; /* unparsed input */
  size_t rlen, rcap;
  uint8_t *wbuf; /* answers not yet handed to uv_write */
  size_t wlen, wcap;
  int wbuf_secret; /* wbuf holds a token secret: wipe when done */
  /* The buffers' own memory, left out of core dumps (nodump.h), mapped at
   * the first read or answer and kept for the conn's life, so that a
   * request costs no system call for it: the read buffer (16 KiB) and the
   * output buffer (16 KiB) each goes back to, and whether the latter is in
   * use (as wbuf, or handed to a write). wspare: one more output buffer of
   * that size, kept for the answers made while the home one is written. */
  uint8_t *home;
  uint8_t *wspare;
  int home_wbuf_busy;
  unsigned jobs;   /* store jobs that owe it an answer or an audit record */
  unsigned writes; /* uv_write requests in flight */
  int resuming;    /* conn_resume is running: not again from within */
  /* Store jobs done whose answers wait until the peer has read most of
   * what it was sent (answer_later), oldest first, and the one whose
   * answer is being made now. */
  store_job_t **later;
  size_t n_later, later_cap;
  store_job_t *answering;
  size_t out_bytes;       /* answers produced and not yet written */
  uint64_t partial_since; /* loop time a partial frame began waiting; 0 */
  uint64_t last_active;   /* loop time of the last read or write */
  int reading;            /* uv_read_start is in force */
  int paused;             /* reading stopped until the peer takes its answers */
  /* requests not handled until jobs fall to half --max-pending-calls and
   * the unread answers to half --max-queued-bytes; reading stopped
   * meanwhile */
  int held;
  int peer_eof; /* the peer is done sending; held requests are still served */
  int admitted; /* counted by net_admit */
  /* A descriptor to send with the next bytes (sink pass_fd, issue 15);
   * -1: none */
  int pass_fd;
} conn_t;

/* What listener.c and conn.c share. */
struct net_s {
  uv_loop_t *loop;
  const config_t *cfg;
  net_handler_t h;
  uv_pipe_t listener; /* bound by libuv; accepted from by listen_poll */
  /* tokend accepts itself (libuv's uv_listen drops connections silently
   * when out of file descriptors): readiness of the listening socket, and
   * the pause after an accept failed for want of descriptors or memory */
  uv_poll_t listen_poll;
  uv_timer_t accept_retry;
  int listening; /* the socket file is ours to remove */
  /* what clients connect to: --socket's path, or the one of a socket the
   * service manager passed */
  char listen_path[CONFIG_PATH_BYTES];
  int stopping;  /* net_stop: no new peers or requests */
  conn_t *conns; /* doubly linked list of conns not yet closed */
  size_t n_conns;
  uint64_t next_conn_id;
  /* Connections admitted, in all and per uid: the ones --max-connections
   * and its per-uid and operator shares count. */
  size_t n_admitted;
  struct net_uid_conns_s *uid_conns; /* uthash, by uid */
  /* Refused connections and failed accepts: one line per
   * --log-repeat-interval-ms, then "(N more like this)" (a flood must not
   * flood the log). */
  log_limit_t refuse_log;
  uint64_t refused; /* connections refused (limits), for /metrics */
  /* closed connections' buffer blocks, for new ones (--conn-buffer-pool) */
  nodump_pool_t conn_pool;
  /* read buffers larger than CONN_READ_CHUNK, all conns (--max-read-memory) */
  size_t read_buf_bytes;
};

/* The size of the block holding a connection's own read and output buffers
 * (net_t.conn_pool's blocks). */
size_t conn_buffer_block_bytes(void);

/* Serves fd (owned from here): identifies its peer, admits it or tells it
 * which limit it met and closes it. *out (may be NULL) as net_open_fd. */
int conn_open_fd(net_t *n, int fd, conn_t **out) TOKEND_MUST_CHECK;

/* Enforces the read and idle timeouts at loop time now. */
void conn_check_timeouts(conn_t *c, uint64_t now);

/* Stops reading new requests (shutdown). Owed answers still go out. */
void conn_stop_reading(conn_t *c);

/* Stops reading; closes once what is already queued has been written. */
void conn_close_when_sent(conn_t *c);

/* Closes now. Idempotent. */
void conn_close(conn_t *c);

/* listener.c: decides whether c (its peer identified) may be served: 0, or
 * TOKEND_EMSGSIZE / TOKEND_ENOMEM with msg (len bytes) saying which limit
 * it met. An admitted c counts until net_conn_removed. */
int net_admit(net_t *n, conn_t *c, char *msg, size_t len);

/* listener.c: logs a refused connection or a failed accept at warn, at
 * most once per --log-repeat-interval-ms, the next line out ending with the
 * number held back, "(N more like this)". */
void net_log_refusal(net_t *n, const char *what);

/* listener.c: unlinks c from n's list and admission counts (its close
 * callback calls it). */
void net_conn_removed(net_t *n, conn_t *c);

#endif
