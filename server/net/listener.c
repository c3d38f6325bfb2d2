/* The listening socket, accepting, per-uid admission, and the operations
 * on every conn at once (net.h). */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uthash.h>

#include "log.h"
#include "net/activation.h"
#include "net/conn.h"
#include "net/net.h"
#include "tokend_error.h"

/* Binds the listener at path with the configured mode and group, so that
 * the socket never exists with looser permissions than asked for: with the
 * default group the umask sets the mode at bind; with another group the
 * socket is made in a private 0700 directory beside path, given its group
 * and mode there, and renamed into place. */
static int net_bind(net_t *n, const char *path) {
  struct sockaddr_un sa;
  char dir[CONFIG_PATH_BYTES], tmp_dir[CONFIG_PATH_BYTES + 32];
  char tmp_path[CONFIG_PATH_BYTES + 64];
  mode_t old_mask;
  int err;

  if (n->cfg->socket_gid < 0) {
    old_mask = umask(~n->cfg->socket_mode & 0777);
    err = uv_pipe_bind(&n->listener, path);
    umask(old_mask);
    if (err != 0) {
      log_error("cannot bind %s: %s", path, uv_strerror(err));
      return TOKEND_ECONFIG;
    }
    return 0;
  }
  snprintf(dir, sizeof(dir), "%s", path);
  snprintf(tmp_dir, sizeof(tmp_dir), "%s/.tokend-sock-XXXXXX", dirname(dir));
  if (mkdtemp(tmp_dir) == NULL) {
    log_error("cannot create a private directory beside %s: %s", path,
              strerror(errno));
    return TOKEND_ECONFIG;
  }
  snprintf(tmp_path, sizeof(tmp_path), "%s/s", tmp_dir);
  if (strlen(tmp_path) >= sizeof(sa.sun_path)) {
    log_error("socket path %s is too long to be created with --socket-group "
              "(a temporary path beside it must fit in %zu bytes)",
              path, sizeof(sa.sun_path));
    err = TOKEND_ECONFIG;
    goto out_rmdir;
  }
  old_mask = umask(~n->cfg->socket_mode & 0777);
  err = uv_pipe_bind(&n->listener, tmp_path);
  umask(old_mask);
  if (err != 0) {
    log_error("cannot bind %s: %s", tmp_path, uv_strerror(err));
    err = TOKEND_ECONFIG;
    goto out_rmdir;
  }
  if (chown(tmp_path, (uid_t)-1, (gid_t)n->cfg->socket_gid) != 0 ||
      chmod(tmp_path, (mode_t)n->cfg->socket_mode) != 0 ||
      rename(tmp_path, path) != 0) {
    log_error("cannot give socket %s group %lld and mode %03o: %s", path,
              (long long)n->cfg->socket_gid, (unsigned)n->cfg->socket_mode,
              strerror(errno));
    unlink(tmp_path);
    err = TOKEND_ECONFIG;
    goto out_rmdir;
  }
  err = 0;
out_rmdir:
  rmdir(tmp_dir);
  return err;
}

/* Checks that the socket's directory exists, is a directory and lets us
 * create the socket, so that start-up says which (libuv's bind reports a
 * missing directory as "permission denied"). Run before the database and
 * pepper are touched, so a typo in --socket creates nothing. */
int net_socket_dir_check(const char *path) {
  char buf[CONFIG_PATH_BYTES];
  const char *dir;
  struct stat st;

  snprintf(buf, sizeof(buf), "%s", path);
  dir = dirname(buf);
  if (stat(dir, &st) != 0) {
    if (errno == ENOENT)
      log_error("cannot create socket %s: directory %s does not exist", path,
                dir);
    else if (errno == ENOTDIR)
      log_error("cannot create socket %s: a component of %s is not a "
                "directory",
                path, dir);
    else
      log_error("cannot create socket %s: directory %s: %s", path, dir,
                strerror(errno));
    return TOKEND_ECONFIG;
  }
  if (!S_ISDIR(st.st_mode)) {
    log_error("cannot create socket %s: %s is not a directory", path, dir);
    return TOKEND_ECONFIG;
  }
  if (access(dir, W_OK | X_OK) != 0) {
    log_error("cannot create socket %s: permission denied on directory %s "
              "(tokend runs as uid %u)",
              path, dir, (unsigned)geteuid());
    return TOKEND_ECONFIG;
  }
  return 0;
}

/* Decides what to do with an existing file at the socket path: a socket no
 * one listens on (left by a crash) is removed; a live one, or anything that
 * is not a socket, makes us refuse to start. */
static int socket_path_claim(const char *path) {
  struct sockaddr_un sa;
  struct stat st;
  int fd, rc, saved;

  if (lstat(path, &st) != 0) {
    if (errno == ENOENT)
      return 0;
    log_error("cannot use socket path %s: %s", path, strerror(errno));
    return TOKEND_ECONFIG;
  }
  if (!S_ISSOCK(st.st_mode)) {
    log_error("socket path %s exists and is not a socket; refusing to "
              "replace it",
              path);
    return TOKEND_ECONFIG;
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    log_error("socket: %s", strerror(errno));
    return TOKEND_EIO;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
  saved = errno;
  close(fd);
  if (rc == 0) {
    log_error("another tokend is already listening on %s; refusing to start",
              path);
    return TOKEND_EEXIST;
  }
  if (saved != ECONNREFUSED) {
    log_error("cannot probe existing socket %s: %s", path, strerror(saved));
    return TOKEND_ECONFIG;
  }
  log_warn("removing stale socket %s (no tokend listening on it)", path);
  if (unlink(path) != 0 && errno != ENOENT) {
    log_error("cannot remove stale socket %s: %s", path, strerror(errno));
    return TOKEND_ECONFIG;
  }
  return 0;
}

/* --max-connections is only real if the process may open that many file
 * descriptors (systemd's default soft limit is 1024). Raise the soft limit
 * as far as needed when the hard limit allows; otherwise refuse to start:
 * an operator who asked for N connections would rather be told than find
 * the extra ones dropped under load. */
int net_fd_limit(const config_t *cfg) {
  rlim_t need = (rlim_t)cfg->max_connections + CONFIG_FD_RESERVE;
  struct rlimit rl;

  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    log_error("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    return TOKEND_EINTERNAL;
  }
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
    return 0;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
    log_error("--max-connections %u needs %llu file descriptors (%d for "
              "tokend itself) but RLIMIT_NOFILE allows %llu (hard limit); "
              "raise it (systemd LimitNOFILE=, ulimit -Hn as root) or lower "
              "--max-connections to %llu",
              (unsigned)cfg->max_connections, (unsigned long long)need,
              CONFIG_FD_RESERVE, (unsigned long long)rl.rlim_max,
              rl.rlim_max > CONFIG_FD_RESERVE
                  ? (unsigned long long)(rl.rlim_max - CONFIG_FD_RESERVE)
                  : 0ull);
    return TOKEND_ECONFIG;
  }
  log_info("raising the file-descriptor soft limit from %llu to %llu for "
           "--max-connections %u",
           (unsigned long long)rl.rlim_cur, (unsigned long long)need,
           (unsigned)cfg->max_connections);
  rl.rlim_cur = need;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    log_error("cannot raise RLIMIT_NOFILE to %llu for --max-connections %u: "
              "%s",
              (unsigned long long)need, (unsigned)cfg->max_connections,
              strerror(errno));
    return TOKEND_ECONFIG;
  }
  return 0;
}

/* Connections per uid, for --max-connections-per-uid. An entry lives while
 * its uid has an admitted connection. */
typedef struct net_uid_conns_s {
  uint32_t uid;
  uint32_t n;
  UT_hash_handle hh;
} net_uid_conns_t;

int net_admit(net_t *n, conn_t *c, char *msg, size_t len) {
  const config_t *cfg = n->cfg;
  net_uid_conns_t *u;
  uint32_t uid = c->sink.peer.uid;

  if (n->n_admitted >= cfg->max_connections) {
    snprintf(msg, len,
             "too many connections (the limit is %u, --max-connections); try "
             "again later",
             (unsigned)cfg->max_connections);
    return TOKEND_EMSGSIZE;
  }
  HASH_FIND(hh, n->uid_conns, &uid, sizeof(uid), u);
  if (!c->sink.peer.is_operator) {
    if (n->n_admitted >=
        cfg->max_connections - cfg->reserved_operator_connections) {
      snprintf(msg, len,
               "only the %u connections reserved for operators are free "
               "(--reserved-operator-connections of --max-connections %u); "
               "try again later",
               (unsigned)cfg->reserved_operator_connections,
               (unsigned)cfg->max_connections);
      return TOKEND_EMSGSIZE;
    }
    if (u != NULL && u->n >= cfg->max_connections_per_uid) {
      snprintf(msg, len,
               "uid %u already has %u connections, the most one uid may have "
               "(--max-connections-per-uid); close some or try again later",
               (unsigned)uid, (unsigned)u->n);
      return TOKEND_EMSGSIZE;
    }
  }
  if (u == NULL) {
    if ((u = calloc(1, sizeof(*u))) == NULL) {
      snprintf(msg, len, "out of memory");
      return TOKEND_ENOMEM;
    }
    u->uid = uid;
    HASH_ADD(hh, n->uid_conns, uid, sizeof(u->uid), u);
  }
  u->n++;
  n->n_admitted++;
  c->admitted = 1;
  return 0;
}

static void net_unadmit(net_t *n, conn_t *c) {
  net_uid_conns_t *u;
  uint32_t uid = c->sink.peer.uid;

  if (!c->admitted)
    return;
  c->admitted = 0;
  n->n_admitted--;
  HASH_FIND(hh, n->uid_conns, &uid, sizeof(uid), u);
  if (u != NULL && --u->n == 0) {
    HASH_DEL(n->uid_conns, u);
    free(u);
  }
}

void net_conn_removed(net_t *n, conn_t *c) {
  net_unadmit(n, c);
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    n->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  n->n_conns--;
}

/* A flood of connections must not make tokend write a line for each: the
 * lines share one log_limit_t (--log-repeat-interval-ms), as every other
 * repeated failure line does. */
void net_log_refusal(net_t *n, const char *what) {
  n->refused++;
  log_limited(&n->refuse_log, LOG_WARN, "refusing a connection: %s", what);
}

/* After accept fails for want of file descriptors (or memory), the
 * listener is not watched for this long: the waiting connections stay in
 * the backlog, to be served once descriptors are free, instead of making
 * the loop spin on a socket that stays readable. */
#define NET_ACCEPT_RETRY_MS 100

static void on_listen_readable(uv_poll_t *h, int status, int events);

static void on_accept_retry(uv_timer_t *t) {
  net_t *n = container_of(t, net_t, accept_retry);

  if (!n->stopping && !uv_is_closing((uv_handle_t *)&n->listen_poll))
    uv_poll_start(&n->listen_poll, UV_READABLE, on_listen_readable);
}

/* Accepts every waiting connection. tokend does this itself rather than
 * through uv_listen: when accept fails with EMFILE, libuv closes a spare
 * descriptor, accepts and closes every waiting connection and tells no one
 * (the peers see EOF, the log nothing). Here the failure is logged (at
 * most once per --log-repeat-interval-ms, with a count) and accepting pauses
 * briefly. */
static void on_listen_readable(uv_poll_t *h, int status, int events) {
  net_t *n = container_of(h, net_t, listen_poll);
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  int lfd = -1, fd, err;

  (void)events;
  if (status < 0) {
    snprintf(msg, sizeof(msg), "accept failed: %s", uv_strerror(status));
    net_log_refusal(n, msg);
    return;
  }
  if (n->stopping || uv_fileno((uv_handle_t *)&n->listener, &lfd) != 0)
    return;
  for (;;) {
    fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      snprintf(msg, sizeof(msg),
               "accept failed: %s (%zu connections open%s); connections "
               "wait in the backlog, accepting again in %d ms",
               strerror(errno), n->n_conns,
               errno == EMFILE || errno == ENFILE ? ", out of file descriptors"
                                                  : "",
               NET_ACCEPT_RETRY_MS);
      net_log_refusal(n, msg);
      uv_poll_stop(&n->listen_poll);
      uv_timer_start(&n->accept_retry, on_accept_retry, NET_ACCEPT_RETRY_MS, 0);
      return;
    }
    if ((err = conn_open_fd(n, fd, NULL)) != 0)
      log_warn("could not accept a connection: %s", tokend_strerror(err));
  }
}

/* Connections the kernel queues for accept (what libuv's examples use). */
#define NET_LISTEN_BACKLOG 511

/* Serves fd, a listening socket the service manager bound (and owns: its
 * file is never removed here), as net_listen's. */
static int net_listen_activated(net_t *n, int fd) {
  struct sockaddr_un sa;
  socklen_t len = sizeof(sa);
  int err;

  if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
    log_error("the socket the service manager passed (fd %d) is not a "
              "listening Unix stream socket; check ListenStream= in the "
              ".socket unit",
              fd);
    close(fd);
    return TOKEND_ECONFIG;
  }
  memset(&sa, 0, sizeof(sa));
  if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 &&
      sa.sun_path[0] != '\0')
    snprintf(n->listen_path, sizeof(n->listen_path), "%.*s",
             (int)sizeof(sa.sun_path), sa.sun_path);
  else
    snprintf(n->listen_path, sizeof(n->listen_path), "fd %d", fd);
  if ((err = uv_pipe_init(n->loop, &n->listener, 0)) != 0 ||
      (err = uv_pipe_open(&n->listener, fd)) != 0) {
    log_error("cannot serve the socket the service manager passed: %s",
              uv_strerror(err));
    close(fd);
    return TOKEND_EINTERNAL;
  }
  if ((err = uv_poll_init(n->loop, &n->listen_poll, fd)) != 0 ||
      (err = uv_poll_start(&n->listen_poll, UV_READABLE, on_listen_readable)) !=
          0) {
    log_error("cannot watch %s: %s", n->listen_path, uv_strerror(err));
    return TOKEND_EIO;
  }
  if (strcmp(n->listen_path, n->cfg->socket_path) != 0)
    log_info("serving %s, passed by the service manager, rather than "
             "--socket %s (clients must be told: tokenctl --socket or "
             "$TOKEND_SOCKET)",
             n->listen_path, n->cfg->socket_path);
  return 0;
}

int net_listen(net_t *n) {
  const char *path = n->cfg->socket_path;
  struct sockaddr_un sa;
  uv_os_fd_t fd;
  int err, afd;

  /* Socket activation: systemd bound the socket (with its own mode and
   * group, SocketMode=, SocketGroup=) before tokend started. */
  if ((afd = net_take_activated(NET_ACTIVATION_MAIN)) >= 0)
    return net_listen_activated(n, afd);
  snprintf(n->listen_path, sizeof(n->listen_path), "%s", path);
  if (strlen(path) >= sizeof(sa.sun_path)) {
    log_error("socket path %s is %zu bytes; a Unix socket path must be "
              "shorter than %zu",
              path, strlen(path), sizeof(sa.sun_path));
    return TOKEND_ECONFIG;
  }
  if ((err = socket_path_claim(path)) != 0)
    return err;
  if ((err = uv_pipe_init(n->loop, &n->listener, 0)) != 0) {
    log_error("pipe init: %s", uv_strerror(err));
    return TOKEND_EINTERNAL;
  }
  if ((err = net_bind(n, path)) != 0)
    return err;
  n->listening = 1;
  if (uv_fileno((uv_handle_t *)&n->listener, &fd) != 0 ||
      listen(fd, NET_LISTEN_BACKLOG) != 0) {
    log_error("cannot listen on %s: %s", path, strerror(errno));
    return TOKEND_EIO;
  }
  if ((err = uv_poll_init(n->loop, &n->listen_poll, fd)) != 0 ||
      (err = uv_poll_start(&n->listen_poll, UV_READABLE, on_listen_readable)) !=
          0) {
    log_error("cannot watch %s: %s", path, uv_strerror(err));
    return TOKEND_EIO;
  }
  return 0;
}

int net_new(uv_loop_t *loop, const config_t *cfg, const net_handler_t *handler,
            net_t **out) {
  net_t *n = calloc(1, sizeof(*n));

  if (n == NULL)
    return TOKEND_ENOMEM;
  n->loop = loop;
  n->cfg = cfg;
  n->h = *handler;
  log_limit_init(&n->refuse_log, cfg->log_repeat_interval_ms);
  nodump_pool_init(&n->conn_pool, conn_buffer_block_bytes(),
                   cfg->conn_buffer_pool);
  uv_timer_init(loop, &n->accept_retry);
  *out = n;
  return 0;
}

int net_open_fd(net_t *n, int fd, sink_t **out) {
  conn_t *c;
  int err = conn_open_fd(n, fd, &c);

  if (err == 0 && out != NULL)
    *out = &c->sink;
  return err;
}

void net_sweep(net_t *n, uint64_t now) {
  conn_t *c, *next;

  for (c = n->conns; c != NULL; c = next) {
    next = c->next;
    conn_check_timeouts(c, now);
  }
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void close_if_open(uv_handle_t *h) {
  if (h->loop != NULL && !uv_is_closing(h))
    uv_close(h, on_handle_closed);
}

void net_close_listener(net_t *n) {
  /* The watcher first: the listener's close closes the descriptor. */
  close_if_open((uv_handle_t *)&n->listen_poll);
  close_if_open((uv_handle_t *)&n->accept_retry);
  close_if_open((uv_handle_t *)&n->listener);
}

void net_stop(net_t *n) {
  conn_t *c;

  if (n->stopping)
    return;
  n->stopping = 1;
  net_close_listener(n);
  /* Requests already read are answered; no new ones are read. */
  for (c = n->conns; c != NULL; c = c->next)
    conn_stop_reading(c);
}

void net_close_when_sent(net_t *n) {
  conn_t *c, *next;

  for (c = n->conns; c != NULL; c = next) {
    next = c->next;
    conn_close_when_sent(c);
  }
}

void net_close_all(net_t *n) {
  conn_t *c, *next;

  for (c = n->conns; c != NULL; c = next) {
    next = c->next;
    conn_close(c);
  }
}

size_t net_conn_count(const net_t *n) { return n->n_conns; }

uint64_t net_refused_count(const net_t *n) { return n->refused; }
const char *net_listen_path(const net_t *n) { return n->listen_path; }

void net_free(net_t *n) {
  net_uid_conns_t *u, *tmp;

  if (n == NULL)
    return;
  /* Every admitted conn was removed as the loop closed it; this frees
   * whatever a failed start left. */
  HASH_ITER(hh, n->uid_conns, u, tmp) {
    HASH_DEL(n->uid_conns, u);
    free(u);
  }
  if (n->listening)
    unlink(n->cfg->socket_path);
  nodump_pool_drain(&n->conn_pool);
  free(n);
}
