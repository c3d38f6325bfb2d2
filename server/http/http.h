/* http: tokend's HTTP face (issue 14). HTTP/1.1 served by libmicrohttpd
 * (Debian's libmicrohttpd-dev) on tokend's own libuv loop: each
 * --http-listen address is one MHD daemon in its external-epoll mode, whose
 * epoll descriptor sits in a uv_poll_t and whose next timeout is a
 * uv_timer_t; MHD_run does the reading, parsing and writing, and the
 * request callback answers at once, on the loop thread.
 *
 *   GET <--http-verify-path> (default /verify)  forward-auth for nginx
 *       auth_request, Traefik forwardAuth, Envoy ext_authz: 204 with
 *       X-Tokend-* headers, 401 + WWW-Authenticate, 403 for a missing scope
 *       or a peer that may not verify, 503 only when tokend cannot answer
 *   GET /metrics   Prometheus text
 *   GET /healthz   200 while the loop runs
 *   GET /readyz    200, or 503 with the reason the handler gives
 *
 * A layer at the level of net/: it reaches the layers below only through
 * the handler server.c gives it (as net does), and it never names a
 * net/ conn. Peer identity on a Unix address comes from the kernel
 * (core/peer.h), judged by the verifier policy of the main socket; a TCP
 * address has none, so /verify there needs --http-tcp-verify. Loop thread
 * only. */
#ifndef TOKEND_HTTP_H
#define TOKEND_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "prom.h"
#include "rpc/rpc.h"

typedef struct http_s http_t;

/* How http reaches the layers below: the only calls it makes. */
typedef struct {
  /* Verifies tok[0..len) into *out (rpc_verify_now). Returns 0, or a
   * negative TOKEND_E* code when tokend cannot answer (answered 503). */
  int (*verify)(void *ctx, const char *tok, size_t len,
                rpc_verify_result_t *out);
  /* Appends the server's own metric families to p (http adds its own). */
  void (*metrics)(void *ctx, prom_t *p);
  /* 1 if ready to serve; 0 with a one-line reason in why (len bytes). */
  int (*ready)(void *ctx, char *why, size_t len);
  void *ctx;
} http_handler_t;

/* A new HTTP face for cfg's --http-listen addresses (cfg must outlive it;
 * handler is copied). Nothing is bound yet. Returns 0 or TOKEND_ENOMEM. */
int http_new(uv_loop_t *loop, const config_t *cfg,
             const http_handler_t *handler, http_t **out) TOKEND_MUST_CHECK;

/* Takes fd, a listening socket the service manager passed under the name
 * "http" (systemd's socket activation), which h owns from now on (closed
 * on failure too): the --http-listen address it is bound to is served
 * from it instead of being bound (its file is never removed here); a
 * socket no --http-listen names is served as one more address. Before
 * http_listen. TOKEND_ECONFIG (logged) for a socket that is not a
 * listening stream socket on a Unix, IPv4 or IPv6 address, or one too
 * many. */
int http_adopt(http_t *h, int fd) TOKEND_MUST_CHECK;

/* Binds and listens on every address (a stale Unix socket is replaced, a
 * live one refused; mode and group as --socket-mode and --socket-group)
 * and starts serving. Logs one line per address, or on failure one line
 * saying why: TOKEND_ECONFIG or TOKEND_EIO. */
int http_listen(http_t *h) TOKEND_MUST_CHECK;

/* Stops serving: closes the listeners, every connection and the loop
 * handles (the loop may then end). Idempotent. */
void http_stop(http_t *h);

/* Appends the HTTP face's own metrics to p: requests by method and code,
 * /verify latency, connections. */
void http_metrics(const http_t *h, prom_t *p);

/* Connections open now, over every address. */
size_t http_conn_count(const http_t *h);

/* Stops h if it is not yet stopped and frees it once the loop has closed
 * its handles (NULL is fine); removes the Unix socket files it bound. */
void http_free(http_t *h);

/* ---- pure parts, exposed for the unit tests ---- */

/* The token in a header value: for Authorization (header named, any case),
 * what follows "Bearer " (scheme in any case, spaces skipped); for another
 * header, the whole value. Sets *tok and *len and returns 0, or returns
 * TOKEND_ENOTFOUND when there is none. */
int http_token_from_header(const char *header_name, const char *value,
                           const char **tok, size_t *len) TOKEND_MUST_CHECK;

/* 1 if scope is one of r's scopes. */
int http_has_scope(const rpc_verify_result_t *r, const char *scope);

#endif
