/* The HTTP face (http.h): libmicrohttpd driven from the libuv loop.
 *
 * Why libmicrohttpd: it is maintained (GNU, releases every year; Debian 12
 * ships 0.9.75 with its security fixes), does keep-alive, pipelining and
 * request limits itself, and can be run from someone else's loop: with
 * MHD_USE_EPOLL and no internal thread it keeps its sockets in one epoll
 * descriptor that we watch with a uv_poll_t, and MHD_get_timeout tells when
 * it must run even without input (a pipelined request already read, a
 * connection timing out). libhttp-parser is only a parser, no longer
 * developed (its authors moved to llhttp, which Debian 12 does not
 * package): connections, keep-alive, limits and the writing would all be
 * ours to write and fuzz. */
#define _GNU_SOURCE
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/peer.h"
#include "log.h"
#include "tokend_error.h"

/* The header section of one request may be this large, as a socket
 * request's first read buffer; MHD answers 431 past it. */
#define HTTP_CONN_MEMORY_BYTES (16u * 1024u)
#define HTTP_SCOPE_HEADER "X-Tokend-Scope"
#define HTTP_REALM "Bearer realm=\"tokend\""

/* What /metrics counts requests by: these methods and codes (others are
 * "other" and 0, which this face never answers). */
enum { HTTP_M_GET, HTTP_M_HEAD, HTTP_M_OTHER, HTTP_METHODS };
static const char *const method_names[HTTP_METHODS] = {"GET", "HEAD", "other"};
static const unsigned codes[] = {200, 204, 400, 401, 403, 404, 405, 500, 503};
#define HTTP_CODES (sizeof(codes) / sizeof(codes[0]))

typedef struct http_listener_s {
  http_t *h;
  config_http_addr_t addr;
  struct MHD_Daemon *d;
  uv_poll_t poll;   /* MHD's epoll descriptor */
  uv_timer_t timer; /* MHD_get_timeout */
  int handles;      /* poll and timer initialised */
  int bound_unix;   /* addr.path is ours to remove */
  /* A listening socket the service manager passed (http_adopt), served
   * instead of binding addr; -1: none. Its file is systemd's, never
   * removed here. */
  int passed_fd;
  int passed; /* serving a passed socket */
} http_listener_t;

/* One connection: who is at the other end, read once when it opened. */
typedef struct {
  peer_t peer;
  int may_verify;
} http_conn_t;

struct http_s {
  uv_loop_t *loop;
  const config_t *cfg;
  http_handler_t handler;
  http_listener_t l[CONFIG_HTTP_LISTEN_MAX];
  size_t n;
  int stopped;
  /* The answers that are the same every time, made once and queued as
   * often as needed (MHD counts references). */
  struct MHD_Response *missing, *invalid[RPC_VERIFY_REASONS];
  struct MHD_Response *not_verifier, *not_found, *bad_method, *unavailable;
  struct MHD_Response *ok;
  /* Counters, loop thread only. */
  uint64_t requests[HTTP_METHODS][HTTP_CODES];
  prom_hist_t verify_latency;
  uint64_t conns_opened;
  log_limit_t refuse_log;
};

static void http_run(http_listener_t *l);

/* ---- the pure parts ---- */

int http_token_from_header(const char *header_name, const char *value,
                           const char **tok, size_t *len) {
  const char *end;

  if (value == NULL)
    return TOKEND_ENOTFOUND;
  if (strcasecmp(header_name, "Authorization") == 0) {
    if (strncasecmp(value, "Bearer", 6) != 0 ||
        (value[6] != ' ' && value[6] != '\t'))
      return TOKEND_ENOTFOUND;
    value += 6;
  }
  while (*value == ' ' || *value == '\t')
    value++;
  end = value + strlen(value);
  while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  if (end == value)
    return TOKEND_ENOTFOUND;
  *tok = value;
  *len = (size_t)(end - value);
  return 0;
}

int http_has_scope(const rpc_verify_result_t *r, const char *scope) {
  size_t i;

  for (i = 0; i < r->n_scopes; i++)
    if (strcmp(r->scopes[i], scope) == 0)
      return 1;
  return 0;
}

/* ---- answering ---- */

static size_t code_index(unsigned code) {
  size_t i;

  for (i = 0; i < HTTP_CODES; i++)
    if (codes[i] == code)
      return i;
  return HTTP_CODES - 1;
}

static int method_index(const char *method) {
  if (strcmp(method, MHD_HTTP_METHOD_GET) == 0)
    return HTTP_M_GET;
  if (strcmp(method, MHD_HTTP_METHOD_HEAD) == 0)
    return HTTP_M_HEAD;
  return HTTP_M_OTHER;
}

/* Queues r (NULL: out of memory, answered by closing) and counts it. */
static enum MHD_Result http_reply(http_t *h, struct MHD_Connection *c,
                                  int method, unsigned code,
                                  struct MHD_Response *r) {
  if (r == NULL)
    return MHD_NO;
  h->requests[method][code_index(code)]++;
  return MHD_queue_response(c, code, r);
}

/* A response with body text (copied) and the given Content-Type; NULL if
 * out of memory. */
static struct MHD_Response *text_response(const char *text, const char *type) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);

  if (r != NULL && MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                           type) != MHD_YES) {
    MHD_destroy_response(r);
    r = NULL;
  }
  return r;
}

/* A 401 or 403 for forward-auth: WWW-Authenticate (www, NULL: none) and
 * X-Tokend-Reason. */
static struct MHD_Response *auth_response(const char *www, const char *reason) {
  struct MHD_Response *r = text_response("", "text/plain");

  if (r == NULL)
    return NULL;
  if ((www != NULL &&
       MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, www) !=
           MHD_YES) ||
      MHD_add_response_header(r, "X-Tokend-Reason", reason) != MHD_YES) {
    MHD_destroy_response(r);
    return NULL;
  }
  return r;
}

/* 1 if s can be a header's value: not empty (libmicrohttpd refuses one),
 * and no control characters. Metadata is stored as compact JSON, which
 * has none; a header it cannot be is left out rather than mangled. */
static int header_safe(const char *s) {
  if (*s == '\0')
    return 0;
  for (; *s != '\0'; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return 0;
  return 1;
}

/* The answer to a token that verified: 204 with who it is. The strings
 * point into the index: copied by MHD here, before the loop moves on. */
static struct MHD_Response *valid_response(const rpc_verify_result_t *v) {
  struct MHD_Response *r;
  char scopes[TOKEND_MAX_SCOPES * TOKEND_SCOPE_BYTES + 1], expires[24];
  size_t i, n = 0;

  scopes[0] = '\0';
  /* Space-separated, as OAuth's scope parameter: a scope has no spaces. */
  for (i = 0; i < v->n_scopes; i++)
    n += (size_t)snprintf(scopes + n, sizeof(scopes) - n, "%s%s",
                          i > 0 ? " " : "", v->scopes[i]);
  snprintf(expires, sizeof(expires), "%lld", (long long)v->expires_at);
  r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
  if (r == NULL)
    return NULL;
  if (MHD_add_response_header(r, "X-Tokend-Token-Id", v->token_id) != MHD_YES ||
      MHD_add_response_header(r, "X-Tokend-Domain", v->domain) != MHD_YES ||
      /* libmicrohttpd refuses an empty header value: a token with no
       * scopes has no X-Tokend-Scopes (a proxy reads it as empty). */
      (scopes[0] != '\0' &&
       MHD_add_response_header(r, "X-Tokend-Scopes", scopes) != MHD_YES) ||
      MHD_add_response_header(r, "X-Tokend-Label", v->label) != MHD_YES ||
      MHD_add_response_header(r, "X-Tokend-Expires-At", expires) != MHD_YES ||
      (header_safe(v->metadata) &&
       MHD_add_response_header(r, "X-Tokend-Metadata", v->metadata) !=
           MHD_YES)) {
    MHD_destroy_response(r);
    return NULL;
  }
  return r;
}

/* Forward-auth. Never 5xx for a bad token (a proxy takes 5xx as its own
 * error): 401 for a missing, malformed, unknown, revoked or expired one,
 * 403 for a scope it lacks or a peer that may not verify. */
static enum MHD_Result on_verify(http_t *h, struct MHD_Connection *c,
                                 int method, const http_conn_t *hc) {
  rpc_verify_result_t v;
  struct MHD_Response *r;
  const char *tok, *scope;
  char www[TOKEND_SCOPE_BYTES + 96];
  size_t len;
  uint64_t start = uv_hrtime();
  enum MHD_Result rc;
  unsigned code;

  if (hc == NULL || !hc->may_verify) {
    (void)log_limited(
        &h->refuse_log, LOG_WARN,
        "http: refused /verify by %s (not a verifier%s)",
        hc != NULL && hc->peer.user[0] != '\0' ? hc->peer.user : "a TCP peer",
        hc != NULL && hc->peer.user[0] == '\0' ? "; TCP needs --http-tcp-verify"
                                               : "");
    return http_reply(h, c, method, 403, h->not_verifier);
  }
  if (http_token_from_header(h->cfg->http_token_header,
                             MHD_lookup_connection_value(
                                 c, MHD_HEADER_KIND, h->cfg->http_token_header),
                             &tok, &len) != 0)
    return http_reply(h, c, method, 401, h->missing);
  if (h->handler.verify(h->handler.ctx, tok, len, &v) != 0)
    return http_reply(h, c, method, 503, h->unavailable);
  if (!v.valid) {
    rc = http_reply(h, c, method, 401, h->invalid[v.reason]);
    goto out;
  }
  scope = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "scope");
  if (scope == NULL)
    scope = MHD_lookup_connection_value(c, MHD_HEADER_KIND, HTTP_SCOPE_HEADER);
  if (scope != NULL && !http_has_scope(&v, scope)) {
    /* The scope goes back in a quoted string: one that could not be a
     * scope (quotes, controls, too long) is not echoed. */
    if (strlen(scope) < TOKEND_SCOPE_BYTES &&
        strpbrk(scope, "\"\\\r\n") == NULL)
      snprintf(www, sizeof(www),
               HTTP_REALM ", error=\"insufficient_scope\", scope=\"%s\"",
               scope);
    else
      snprintf(www, sizeof(www), HTTP_REALM ", error=\"insufficient_scope\"");
    r = auth_response(www, "insufficient_scope");
    code = 403;
  } else {
    r = valid_response(&v);
    code = 204;
  }
  rc = http_reply(h, c, method, code, r);
  if (r != NULL)
    MHD_destroy_response(r);
out:
  prom_hist_observe(&h->verify_latency, uv_hrtime() - start);
  return rc;
}

static enum MHD_Result on_metrics(http_t *h, struct MHD_Connection *c,
                                  int method) {
  struct MHD_Response *r;
  enum MHD_Result rc;
  prom_t p;
  char *text;
  size_t len;

  prom_init(&p);
  h->handler.metrics(h->handler.ctx, &p);
  http_metrics(h, &p);
  if ((text = prom_take(&p, &len)) == NULL)
    return http_reply(h, c, method, 503, h->unavailable);
  r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    free(text);
    return MHD_NO;
  }
  if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                              "text/plain; version=0.0.4; charset=utf-8") !=
      MHD_YES) {
    MHD_destroy_response(r);
    return MHD_NO;
  }
  rc = http_reply(h, c, method, 200, r);
  MHD_destroy_response(r);
  return rc;
}

static enum MHD_Result on_readyz(http_t *h, struct MHD_Connection *c,
                                 int method) {
  struct MHD_Response *r;
  enum MHD_Result rc;
  char why[200], line[240];

  why[0] = '\0';
  if (h->handler.ready(h->handler.ctx, why, sizeof(why)))
    return http_reply(h, c, method, 200, h->ok);
  snprintf(line, sizeof(line), "not ready: %s\n", why);
  r = text_response(line, "text/plain; charset=utf-8");
  rc = http_reply(h, c, method, 503, r);
  if (r != NULL)
    MHD_destroy_response(r);
  return rc;
}

/* The token header's value lives in libmicrohttpd's connection memory (the
 * read buffer, parsed in place) until the connection reuses it, and MHD
 * does not clear it: wiped here once answered, as the socket's read
 * buffers are. MHD no longer reads a request's headers once its answer is
 * queued; the value's length is kept apart, so the string only reads as
 * zeros. (A request not yet complete, or sent to another path, is not
 * wiped.) */
static void wipe_token_header(http_t *h, struct MHD_Connection *c) {
  const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                              h->cfg->http_token_header);

  if (v != NULL)
    sodium_memzero((char *)v, strlen(v));
}

/* MHD's request callback: called once the request line and headers are
 * read, again for each piece of a body (which no route takes), and once
 * more at the request's end, where it is answered. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method_name,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls) {
  http_listener_t *l = cls;
  http_t *h = l->h;
  const union MHD_ConnectionInfo *info;
  int method = method_index(method_name);
  enum MHD_Result rc;

  (void)version;
  (void)upload;
  /* The first call has the headers; answering then would make MHD close
   * the connection after the answer (the request's end unread). Any body
   * is read and dropped; the answer goes on the call that ends it. */
  if (*req_cls == NULL) {
    *req_cls = l;
    return MHD_YES;
  }
  if (*upload_size != 0) {
    *upload_size = 0;
    return MHD_YES;
  }
  if (method == HTTP_M_OTHER)
    return http_reply(h, c, method, 405, h->bad_method);
  if (strcmp(url, h->cfg->http_verify_path) == 0) {
    info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    rc = on_verify(h, c, method, info != NULL ? info->socket_context : NULL);
    wipe_token_header(h, c);
    return rc;
  }
  if (strcmp(url, "/metrics") == 0)
    return on_metrics(h, c, method);
  if (strcmp(url, "/healthz") == 0)
    return http_reply(h, c, method, 200, h->ok);
  if (strcmp(url, "/readyz") == 0)
    return on_readyz(h, c, method);
  return http_reply(h, c, method, 404, h->not_found);
}

/* A connection opens or closes: who the peer is, from the kernel, once. */
static void on_connection(void *cls, struct MHD_Connection *c,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  http_listener_t *l = cls;
  const union MHD_ConnectionInfo *info;
  http_conn_t *hc;

  if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
    free(*socket_context);
    *socket_context = NULL;
    return;
  }
  l->h->conns_opened++;
  /* Out of memory: the connection lives, but may not verify. */
  if ((hc = calloc(1, sizeof(*hc))) == NULL)
    return;
  *socket_context = hc;
  if (!l->addr.is_unix) {
    hc->may_verify = l->h->cfg->http_tcp_verify;
    return;
  }
  info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (info != NULL &&
      peer_identify(info->connect_fd, l->h->cfg, &hc->peer) == 0)
    hc->may_verify = hc->peer.is_verifier || hc->peer.is_operator;
}

/* ---- the loop ---- */

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  http_run(container_of(p, http_listener_t, poll));
}

static void on_timer(uv_timer_t *t) {
  http_run(container_of(t, http_listener_t, timer));
}

/* Lets MHD do what its sockets are ready for, then arms the timer for when
 * it must run again without new input (0: next turn of the loop). */
static void http_run(http_listener_t *l) {
  MHD_UNSIGNED_LONG_LONG ms;

  if (l->d == NULL)
    return;
  (void)MHD_run(l->d);
  if (MHD_get_timeout(l->d, &ms) == MHD_YES)
    uv_timer_start(&l->timer, on_timer, ms, 0);
  else
    uv_timer_stop(&l->timer);
}

/* ---- listening ---- */

/* The main socket's rule for a file already at the path: a socket no one
 * listens on is removed; anything else is refused. */
static int unix_path_claim(const char *path) {
  struct sockaddr_un sa;
  struct stat st;
  int fd, rc;

  if (lstat(path, &st) != 0)
    return errno == ENOENT ? 0 : TOKEND_ECONFIG;
  if (!S_ISSOCK(st.st_mode)) {
    log_error("http: %s exists and is not a socket; refusing to replace it",
              path);
    return TOKEND_ECONFIG;
  }
  if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
    return TOKEND_EIO;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
  close(fd);
  if (rc == 0) {
    log_error("http: something is already listening on %s; refusing to "
              "start",
              path);
    return TOKEND_EEXIST;
  }
  return unlink(path) == 0 || errno == ENOENT ? 0 : TOKEND_ECONFIG;
}

/* A listening Unix socket at path with --socket-mode and --socket-group.
 * It is bound with mode 000 (no one can connect: nor is it listening yet),
 * then given its group and mode, then listens. */
static int bind_unix(http_listener_t *l, int *out) {
  const config_t *cfg = l->h->cfg;
  struct sockaddr_un sa;
  mode_t old_mask;
  int fd, err;

  if ((err = unix_path_claim(l->addr.path)) != 0)
    return err;
  if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
    goto err_errno;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, l->addr.path, strlen(l->addr.path) + 1);
  old_mask = umask(0777);
  err = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
  umask(old_mask);
  if (err != 0)
    goto err_close;
  l->bound_unix = 1;
  if ((cfg->socket_gid >= 0 &&
       chown(l->addr.path, (uid_t)-1, (gid_t)cfg->socket_gid) != 0) ||
      chmod(l->addr.path, (mode_t)cfg->socket_mode) != 0 ||
      listen(fd, SOMAXCONN) != 0)
    goto err_close;
  *out = fd;
  return 0;

err_close:
  err = errno;
  close(fd);
  errno = err;
err_errno:
  log_error("http: cannot listen on unix:%s: %s", l->addr.path,
            strerror(errno));
  return TOKEND_ECONFIG;
}

static int bind_tcp(http_listener_t *l, int *out) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd, one = 1, saved;

  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(l->addr.port);
  if (inet_pton(AF_INET, l->addr.host, &sa.sin_addr) != 1 ||
      (fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
    goto err;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(fd, SOMAXCONN) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    saved = errno;
    close(fd);
    errno = saved;
    goto err;
  }
  /* Port 0 picked one: the log says which. */
  l->addr.port = ntohs(sa.sin_port);
  *out = fd;
  return 0;
err:
  log_error("http: cannot listen on %s:%u: %s", l->addr.host,
            (unsigned)l->addr.port, strerror(errno));
  return TOKEND_ECONFIG;
}

static int listener_start(http_listener_t *l) {
  const config_t *cfg = l->h->cfg;
  const union MHD_DaemonInfo *info;
  unsigned timeout_s = (cfg->read_timeout_ms + 999) / 1000;
  int fd, err;

  if (l->passed_fd >= 0) {
    fd = l->passed_fd;
    l->passed_fd = -1; /* MHD's from here (it closes it at stop) */
    l->passed = 1;
  } else {
    err = l->addr.is_unix ? bind_unix(l, &fd) : bind_tcp(l, &fd);
    if (err != 0)
      return err;
  }
  /* No internal thread: MHD runs only when http_run calls it, on the loop
   * thread. MHD's connection timeout is whole seconds: the read timeout,
   * rounded up. TURBO: no shutdown() before close and fewer checks, as a
   * server for local proxies wants. STRICT_FOR_CLIENT 1: HTTP/1.1's rules
   * enforced (Host required, no whitespace before a colon), a 400
   * otherwise. */
  l->d = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_USE_TURBO, 0, NULL, NULL, on_request, l,
      MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
      timeout_s > 0 ? timeout_s : 1u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)HTTP_CONN_MEMORY_BYTES, MHD_OPTION_NOTIFY_CONNECTION,
      on_connection, l, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
  if (l->d == NULL) {
    close(fd);
    log_error("http: libmicrohttpd would not start on %s",
              l->addr.is_unix ? l->addr.path : l->addr.host);
    return TOKEND_EIO;
  }
  info = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == NULL || uv_poll_init(l->h->loop, &l->poll, info->epoll_fd) != 0) {
    log_error("http: cannot watch libmicrohttpd's epoll descriptor");
    return TOKEND_EIO;
  }
  uv_timer_init(l->h->loop, &l->timer);
  l->handles = 1;
  uv_poll_start(&l->poll, UV_READABLE, on_poll);
  if (l->addr.is_unix)
    log_info("http: listening on unix:%s%s", l->addr.path,
             l->passed ? " (passed by the service manager)" : "");
  else
    log_info("http: listening on %s:%u%s%s", l->addr.host,
             (unsigned)l->addr.port,
             cfg->http_tcp_verify ? " (verify open to anyone who connects)"
                                  : " (no verify: --http-tcp-verify is off)",
             l->passed ? " (passed by the service manager)" : "");
  http_run(l);
  return 0;
}

/* ---- sockets passed by the service manager (issue 16) ---- */

/* The address fd is bound to, as an --http-listen address would say it.
 * TOKEND_ECONFIG (logged) for what is not a listening stream socket of a
 * family this face serves. */
static int passed_addr(int fd, config_http_addr_t *out) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  int type = 0, listening = 0;
  socklen_t ol = sizeof(type);

  memset(out, 0, sizeof(*out));
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ol) != 0 ||
      type != SOCK_STREAM ||
      (ol = sizeof(listening),
       getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol)) != 0 ||
      !listening || getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    goto refuse;
  if (ss.ss_family == AF_UNIX) {
    const struct sockaddr_un *sa = (const struct sockaddr_un *)&ss;

    out->is_unix = 1;
    snprintf(out->path, sizeof(out->path), "%.*s",
             (int)(len - offsetof(struct sockaddr_un, sun_path)), sa->sun_path);
    return 0;
  }
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *sa = (const struct sockaddr_in *)&ss;

    inet_ntop(AF_INET, &sa->sin_addr, out->host, sizeof(out->host));
    out->port = ntohs(sa->sin_port);
    return 0;
  }
  if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)&ss;

    inet_ntop(AF_INET6, &sa->sin6_addr, out->host, sizeof(out->host));
    out->port = ntohs(sa->sin6_port);
    return 0;
  }
refuse:
  log_error("http: the socket passed as \"http\" (fd %d) is not a "
            "listening stream socket on a Unix, IPv4 or IPv6 address",
            fd);
  return TOKEND_ECONFIG;
}

/* 1 if the configured address a names the passed socket's b (a TCP
 * address on port 0 names none: it means "pick one"). */
static int addr_same(const config_http_addr_t *a, const config_http_addr_t *b) {
  struct in_addr x, y;

  if (a->is_unix != b->is_unix)
    return 0;
  if (a->is_unix)
    return strcmp(a->path, b->path) == 0;
  return a->port != 0 && a->port == b->port &&
         inet_pton(AF_INET, a->host, &x) == 1 &&
         inet_pton(AF_INET, b->host, &y) == 1 && x.s_addr == y.s_addr;
}

int http_adopt(http_t *h, int fd) {
  config_http_addr_t addr;
  http_listener_t *l = NULL;
  size_t i;
  int err, fl;

  if ((err = passed_addr(fd, &addr)) != 0)
    goto err_close;
  /* The --http-listen address it is, if one names it; else one more. */
  for (i = 0; i < h->n && l == NULL; i++)
    if (h->l[i].passed_fd < 0 && addr_same(&h->l[i].addr, &addr))
      l = &h->l[i];
  if (l == NULL) {
    if (h->n == CONFIG_HTTP_LISTEN_MAX) {
      log_error("http: more than %d HTTP sockets", CONFIG_HTTP_LISTEN_MAX);
      err = TOKEND_ECONFIG;
      goto err_close;
    }
    l = &h->l[h->n++];
    l->h = h;
    l->addr = addr;
  }
  /* MHD runs it from the loop: accept must never block. */
  if ((fl = fcntl(fd, F_GETFL)) < 0 ||
      fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
      fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    log_error("http: passed socket (fd %d): %s", fd, strerror(errno));
    err = TOKEND_EIO;
    goto err_close;
  }
  l->passed_fd = fd;
  return 0;

err_close:
  close(fd);
  return err;
}

int http_listen(http_t *h) {
  size_t i;
  int err;

  for (i = 0; i < h->n; i++)
    if ((err = listener_start(&h->l[i])) != 0)
      return err;
  return 0;
}

/* ---- life ---- */

static void free_responses(http_t *h) {
  size_t i;

  for (i = 0; i < RPC_VERIFY_REASONS; i++)
    if (h->invalid[i] != NULL)
      MHD_destroy_response(h->invalid[i]);
  if (h->missing != NULL)
    MHD_destroy_response(h->missing);
  if (h->not_verifier != NULL)
    MHD_destroy_response(h->not_verifier);
  if (h->not_found != NULL)
    MHD_destroy_response(h->not_found);
  if (h->bad_method != NULL)
    MHD_destroy_response(h->bad_method);
  if (h->unavailable != NULL)
    MHD_destroy_response(h->unavailable);
  if (h->ok != NULL)
    MHD_destroy_response(h->ok);
}

int http_new(uv_loop_t *loop, const config_t *cfg,
             const http_handler_t *handler, http_t **out) {
  http_t *h = calloc(1, sizeof(*h));
  char why[64];
  size_t i;
  int ok = 1;

  if (h == NULL)
    return TOKEND_ENOMEM;
  h->loop = loop;
  h->cfg = cfg;
  h->handler = *handler;
  log_limit_init(&h->refuse_log, cfg->log_repeat_interval_ms);
  for (i = 0; i < CONFIG_HTTP_LISTEN_MAX; i++)
    h->l[i].passed_fd = -1;
  for (i = 0; i < cfg->n_http_listen; i++) {
    h->l[i].h = h;
    /* config_parse checked it: this cannot fail. */
    if (config_http_addr_parse(cfg->http_listen[i], &h->l[i].addr, why,
                               sizeof(why)) != 0)
      ok = 0;
  }
  h->n = cfg->n_http_listen;
  h->missing = auth_response(HTTP_REALM, "missing");
  for (i = 0; i < RPC_VERIFY_REASONS; i++) {
    h->invalid[i] = auth_response(HTTP_REALM ", error=\"invalid_token\"",
                                  rpc_verify_reason_name((int)i));
    ok = ok && h->invalid[i] != NULL;
  }
  h->not_verifier = auth_response(NULL, "not_verifier");
  h->not_found = text_response("not found\n", "text/plain");
  h->bad_method = text_response("only GET and HEAD\n", "text/plain");
  h->unavailable = text_response("tokend cannot answer now\n", "text/plain");
  h->ok = text_response("ok\n", "text/plain");
  if (!ok || h->missing == NULL || h->not_verifier == NULL ||
      h->not_found == NULL || h->unavailable == NULL || h->ok == NULL ||
      h->bad_method == NULL ||
      MHD_add_response_header(h->bad_method, MHD_HTTP_HEADER_ALLOW,
                              "GET, HEAD") != MHD_YES) {
    free_responses(h);
    free(h);
    return TOKEND_ENOMEM;
  }
  *out = h;
  return 0;
}

static void on_handle_closed(uv_handle_t *handle) { (void)handle; }

void http_stop(http_t *h) {
  http_listener_t *l;
  size_t i;

  if (h == NULL || h->stopped)
    return;
  h->stopped = 1;
  for (i = 0; i < h->n; i++) {
    l = &h->l[i];
    /* The poll handle lets go of the epoll descriptor (uv_close stops it
     * at once) before MHD closes it. */
    if (l->handles) {
      if (!uv_is_closing((uv_handle_t *)&l->poll))
        uv_close((uv_handle_t *)&l->poll, on_handle_closed);
      if (!uv_is_closing((uv_handle_t *)&l->timer))
        uv_close((uv_handle_t *)&l->timer, on_handle_closed);
    }
    if (l->d != NULL) {
      MHD_stop_daemon(l->d);
      l->d = NULL;
    }
    if (l->bound_unix) {
      (void)unlink(l->addr.path);
      l->bound_unix = 0;
    }
    /* Passed and never started (a failed start). */
    if (l->passed_fd >= 0) {
      close(l->passed_fd);
      l->passed_fd = -1;
    }
  }
}

void http_free(http_t *h) {
  if (h == NULL)
    return;
  http_stop(h);
  free_responses(h);
  free(h);
}

size_t http_conn_count(const http_t *h) {
  const union MHD_DaemonInfo *info;
  size_t i, n = 0;

  for (i = 0; i < h->n; i++)
    if (h->l[i].d != NULL &&
        (info = MHD_get_daemon_info(
             h->l[i].d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS)) != NULL)
      n += info->num_connections;
  return n;
}

void http_metrics(const http_t *h, prom_t *p) {
  char labels[64];
  size_t m, i;

  prom_family(p, "tokend_http_requests_total", "counter",
              "HTTP requests answered, by method and status code.");
  for (m = 0; m < HTTP_METHODS; m++)
    for (i = 0; i < HTTP_CODES; i++) {
      snprintf(labels, sizeof(labels), "method=\"%s\",code=\"%u\"",
               method_names[m], codes[i]);
      prom_sample(p, "tokend_http_requests_total", labels, h->requests[m][i]);
    }
  prom_family(p, "tokend_http_verify_duration_seconds", "histogram",
              "Time to answer an HTTP forward-auth request, from its headers "
              "read to its answer queued.");
  prom_hist_write(p, "tokend_http_verify_duration_seconds", "",
                  &h->verify_latency);
  prom_family(p, "tokend_http_connections_opened_total", "counter",
              "HTTP connections accepted.");
  prom_sample(p, "tokend_http_connections_opened_total", "", h->conns_opened);
}
