/* conn: one client connection. A small state machine in the manner of
 * Redis's client struct: a read buffer, the frame parser, an output buffer
 * that collects every response produced from one read and goes out in one
 * write, and a count of answers still owed by the store worker.
 *
 * Memory: a conn is freed only after uv_close's callback AND once no store
 * job refers to it, whichever comes last. */
#ifndef TOKEND_CONN_H
#define TOKEND_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tokend.pb-c.h"
#include "tokend_error.h"
#include "tokend_limits.h"

typedef struct server_s server_t;
typedef struct store_job_s store_job_t;

/* Who is at the other end, from the kernel (SO_PEERCRED, SO_PEERGROUPS) at
 * accept time. Nothing in a request can change it. */
typedef struct {
  uint32_t uid, gid;
  int32_t pid;
  int is_operator;
  int is_verifier;
  char user[TOKEND_USER_BYTES]; /* "uid:<uid>": who a non-operator acts as */
} peer_t;

typedef struct conn_s {
  uv_pipe_t pipe; /* pipe.data points back to the conn */
  server_t *server;
  struct conn_s *prev, *next;
  uint64_t id;
  peer_t peer;
  uint8_t *rbuf; /* unparsed input */
  size_t rlen, rcap;
  uint8_t *wbuf; /* responses not yet handed to uv_write */
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
  unsigned jobs;     /* store jobs it started: answers it is owed, and the audit
                      * records of its refused calls */
  unsigned deferred; /* queued Verifies (dispatch.c) not yet answered */
  unsigned writes;   /* uv_write requests in flight */
  int resuming;      /* conn_resume is running: not again from within */
  /* Store jobs done whose answers wait until the peer has read most of
   * what it was sent (conn_answer_later), oldest first, and the one whose
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
  int closing;         /* uv_close called */
  int closed;          /* close callback ran */
  int close_when_sent; /* protocol error: close once wbuf is written */
  int peer_eof; /* the peer is done sending; held requests are still served */
  int admitted; /* counted by server_conn_admit */
} conn_t;

/* Serves an already connected stream socket fd: one the server's listener
 * accepted, or one end of a socketpair in tests and the fuzzer. Its peer is
 * identified; a peer over a connection limit (server_conn_admit) is told
 * RESOURCE_EXHAUSTED and closed at once. Takes ownership of fd: it is
 * closed with the conn. *out (may be NULL) is valid until the conn
 * closes. */
int conn_open_fd(server_t *s, int fd, conn_t **out) TOKEND_MUST_CHECK;

/* The size of the block holding a connection's own read and output buffers
 * (server_t.conn_pool's blocks). */
size_t conn_buffer_block_bytes(void);

/* Enforces the read and idle timeouts at loop time now. */
void conn_check_timeouts(conn_t *c, uint64_t now);

/* Around a Verify queued for answering later in this turn of the loop: the
 * conn is neither closed for being done nor freed until it is answered;
 * the end flushes the conn's answers once none is queued. */
void conn_deferred_begin(conn_t *c);
void conn_deferred_end(conn_t *c);

/* Appending a response encoded by hand: conn_frame_begin returns where its
 * body_len bytes go (after the frame header), or NULL if c is closing or
 * out of memory (c is then closed); conn_frame_end counts them in. secret
 * marks a response that carries a token secret. conn_frame_end returns 0 or
 * TOKEND_EMSGSIZE (c is then closed: the peer does not read its answers). */
uint8_t *conn_frame_begin(conn_t *c, size_t body_len);
int conn_frame_end(conn_t *c, size_t body_len, int secret);

/* Appends resp, framed, to c's output. secret marks a response that carries
 * a token secret. Returns 0 or TOKEND_ENOMEM (c is then closed). */
int conn_send(conn_t *c, const Tokend__V1__Response *resp, int secret);

/* Appends a response with only call_id and a status. */
void conn_send_status(conn_t *c, uint64_t call_id, int grpc_code,
                      const char *message);

/* Hands the output buffer to the socket in one write. */
void conn_flush(conn_t *c);

/* Stops reading; closes once what is already queued has been written. */
void conn_close_when_sent(conn_t *c);

/* Stops reading new requests (shutdown). Owed answers still go out. */
void conn_stop_reading(conn_t *c);

/* Closes now. Idempotent. */
void conn_close(conn_t *c);

/* Submits job to the store worker on c's behalf: it counts against c's
 * --max-pending-calls, and keeps c and the server's shutdown waiting until
 * conn_job_end(c). */
void conn_job_submit(conn_t *c, store_job_t *job);

/* From job's done callback, once it no longer needs c: releases c (which
 * may free it) and the server's count (which may finish a shutdown). */
void conn_job_end(conn_t *c);

/* Called first by the done callback of a job whose answer may be large (a
 * List page can be megabytes): 1 if the answer must wait because c's peer
 * has more than --max-queued-bytes of answers unread (or older answers
 * already wait); the callback then returns at once, keeping its results,
 * and c calls job->done(job) again once the peer has read most of its
 * answers, or when c closes (conn_is_open then says 0). 0: answer now.
 * So answers are made as fast as the peer reads them, never many pages in
 * one burst: what waits is store results (rows, bounded by
 * --max-list-memory), not encoded bytes. */
int conn_answer_later(conn_t *c, store_job_t *job);

/* 1 if c can still receive responses. */
int conn_is_open(const conn_t *c);

#endif
