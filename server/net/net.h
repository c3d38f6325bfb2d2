/* net: the transport. A listening Unix socket that tokend accepts from
 * itself, per-uid admission, and one conn per peer (net/conn.c): buffers,
 * backpressure, timeouts, peer credentials. It knows nothing of protobuf:
 * it cuts the input into frames, hands each to the handler it was given at
 * creation, and writes the frames the handler writes back through the
 * conn's sink (core/sink.h). Loop thread only. */
#ifndef TOKEND_NET_H
#define TOKEND_NET_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "core/sink.h"

typedef struct net_s net_t;

/* How net reaches the layer above: the only calls it makes upward. */
typedef struct {
  /* One frame body from k's peer (valid during the call). Returns 0, or
   * non-zero when the peer must be closed once its answers are sent. */
  int (*frame)(void *ctx, sink_t *k, const uint8_t *body, size_t len);
  /* Answers k's peer a status for no call: the transport refusing the peer
   * or its input (grpc_code a TOKEND_GRPC_* code). */
  void (*status)(void *ctx, sink_t *k, int grpc_code, const char *message);
  /* Before a batch of requests is handled (a read burst, or requests held
   * back until a store job finished). */
  void (*burst)(void *ctx);
  /* A connection is gone (net_conn_count() says how many remain). */
  void (*closed)(void *ctx);
  void *ctx;
} net_handler_t;

/* A new transport on loop, configured by cfg (which must outlive it). The
 * handler is copied. Returns 0 or TOKEND_ENOMEM. */
int net_new(uv_loop_t *loop, const config_t *cfg, const net_handler_t *handler,
            net_t **out) TOKEND_MUST_CHECK;

/* Checks that the socket's directory exists, is a directory and lets us
 * create the socket, so that start-up says which (libuv's bind reports a
 * missing directory as "permission denied"). Logs one line on failure:
 * TOKEND_ECONFIG. */
int net_socket_dir_check(const char *path) TOKEND_MUST_CHECK;

/* Raises the file-descriptor soft limit for --max-connections, or logs why
 * it cannot: 0 or a negative TOKEND_E* code. */
int net_fd_limit(const config_t *cfg) TOKEND_MUST_CHECK;

/* Binds and listens on cfg->socket_path (a stale socket is replaced, a live
 * one refused), and starts accepting; or, when the service manager passed
 * a socket for it (net/activation.h), serves that one, whose file tokend
 * then never removes. Logs one line on failure. */
int net_listen(net_t *n) TOKEND_MUST_CHECK;

/* Serves an already connected stream socket fd (one end of a socketpair in
 * tests and the fuzzer). Takes ownership of fd. *out (may be NULL) is the
 * conn's sink, valid until the conn closes (its peer may still be changed
 * before the loop runs). */
int net_open_fd(net_t *n, int fd, sink_t **out) TOKEND_MUST_CHECK;

/* Read and idle timeouts of every conn, at loop time now. */
void net_sweep(net_t *n, uint64_t now);

/* Shutdown, step one: stop accepting and reading; answers owed still go
 * out. Idempotent. */
void net_stop(net_t *n);

/* Shutdown, step two: every conn closes once its answers are written. */
void net_close_when_sent(net_t *n);

/* Closes every conn now (peers that do not take their answers). */
void net_close_all(net_t *n);

/* Closes the listening socket's handles (for a loop that is ending). */
void net_close_listener(net_t *n);

/* The path clients connect to once net_listen succeeded (or "fd N" for
 * a passed socket without one). */
const char *net_listen_path(const net_t *n);

/* Conns not yet closed. */
size_t net_conn_count(const net_t *n);

/* Connections refused so far for a limit (--max-connections, per uid, the
 * operators' reserve, file descriptors). */
uint64_t net_refused_count(const net_t *n);

/* Frees n once the loop has closed every handle (NULL is fine); removes the
 * socket file it bound. */
void net_free(net_t *n);

#endif
