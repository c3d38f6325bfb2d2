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

typedef struct server_s server_t;

typedef struct conn_s {
  uv_pipe_t pipe; /* pipe.data points back to the conn */
  server_t *server;
  struct conn_s *prev, *next;
  uint64_t id;
  uint8_t *rbuf; /* unparsed input */
  size_t rlen, rcap;
  uint8_t *wbuf; /* responses not yet handed to uv_write */
  size_t wlen, wcap;
  int wbuf_secret;     /* wbuf holds a token secret: wipe when done */
  unsigned jobs;       /* store jobs whose answers this conn is owed */
  unsigned writes;     /* uv_write requests in flight */
  int closing;         /* uv_close called */
  int closed;          /* close callback ran */
  int close_when_sent; /* protocol error: close once wbuf is written */
} conn_t;

/* Accepts one connection from listener. Returns 0 or a TOKEND_E* code. */
int conn_accept(server_t *s, uv_stream_t *listener);

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

/* A store job now refers to c / no longer does (may free c). */
void conn_job_begin(conn_t *c);
void conn_job_end(conn_t *c);

/* 1 if c can still receive responses. */
int conn_is_open(const conn_t *c);

#endif
