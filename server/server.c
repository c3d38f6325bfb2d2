#define _GNU_SOURCE /* accept4 */
#include "server.h"

#include <errno.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uthash.h>

#include "core/pepper.h"
#include "log.h"
#include "net/conn.h"
#include "rpc/dispatch.h"
#include "tokend_time.h"

static int load_row(void *arg, const store_token_t *row) {
  server_t *s = arg;
  domain_t *d = domains_get(&s->domains, row->domain);

  return d != NULL ? index_insert(s->index, row, d) : TOKEND_ENOMEM;
}

static int load_admin(void *arg, const store_admin_t *a) {
  server_t *s = arg;

  return domains_admin_add(&s->domains, a->domain, a->user, a->granted_at,
                           a->granted_by);
}

/* Binds the listener at path with the configured mode and group, so that
 * the socket never exists with looser permissions than asked for: with the
 * default group the umask sets the mode at bind; with another group the
 * socket is made in a private 0700 directory beside path, given its group
 * and mode there, and renamed into place. */
static int server_bind(server_t *s, const char *path) {
  struct sockaddr_un sa;
  char dir[CONFIG_PATH_BYTES], tmp_dir[CONFIG_PATH_BYTES + 32];
  char tmp_path[CONFIG_PATH_BYTES + 64];
  mode_t old_mask;
  int err;

  if (s->cfg.socket_gid < 0) {
    old_mask = umask(~s->cfg.socket_mode & 0777);
    err = uv_pipe_bind(&s->listener, path);
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
  old_mask = umask(~s->cfg.socket_mode & 0777);
  err = uv_pipe_bind(&s->listener, tmp_path);
  umask(old_mask);
  if (err != 0) {
    log_error("cannot bind %s: %s", tmp_path, uv_strerror(err));
    err = TOKEND_ECONFIG;
    goto out_rmdir;
  }
  if (chown(tmp_path, (uid_t)-1, (gid_t)s->cfg.socket_gid) != 0 ||
      chmod(tmp_path, (mode_t)s->cfg.socket_mode) != 0 ||
      rename(tmp_path, path) != 0) {
    log_error("cannot give socket %s group %lld and mode %03o: %s", path,
              (long long)s->cfg.socket_gid, (unsigned)s->cfg.socket_mode,
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
static int socket_dir_check(const char *path) {
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

/* Connections per uid, for --max-connections-per-uid. An entry lives while
 * its uid has an admitted connection. */
typedef struct server_uid_conns_s {
  uint32_t uid;
  uint32_t n;
  UT_hash_handle hh;
} server_uid_conns_t;

int server_conn_admit(server_t *s, conn_t *c, char *msg, size_t len) {
  const config_t *cfg = &s->cfg;
  server_uid_conns_t *u;
  uint32_t uid = c->peer.uid;

  if (s->n_admitted >= cfg->max_connections) {
    snprintf(msg, len,
             "too many connections (the limit is %u, --max-connections); try "
             "again later",
             (unsigned)cfg->max_connections);
    return TOKEND_EMSGSIZE;
  }
  HASH_FIND(hh, s->uid_conns, &uid, sizeof(uid), u);
  if (!c->peer.is_operator) {
    if (s->n_admitted >=
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
    HASH_ADD(hh, s->uid_conns, uid, sizeof(u->uid), u);
  }
  u->n++;
  s->n_admitted++;
  c->admitted = 1;
  return 0;
}

static void server_conn_unadmit(server_t *s, conn_t *c) {
  server_uid_conns_t *u;
  uint32_t uid = c->peer.uid;

  if (!c->admitted)
    return;
  c->admitted = 0;
  s->n_admitted--;
  HASH_FIND(hh, s->uid_conns, &uid, sizeof(uid), u);
  if (u != NULL && --u->n == 0) {
    HASH_DEL(s->uid_conns, u);
    free(u);
  }
}

/* A flood of connections must not make tokend write a line for each: the
 * lines share one log_limit_t (--log-repeat-interval-ms), as every other
 * repeated failure line does. */
void server_log_refusal(server_t *s, const char *what) {
  log_limited(&s->refuse_log, LOG_WARN, "refusing a connection: %s", what);
}

/* After accept fails for want of file descriptors (or memory), the
 * listener is not watched for this long: the waiting connections stay in
 * the backlog, to be served once descriptors are free, instead of making
 * the loop spin on a socket that stays readable. */
#define SERVER_ACCEPT_RETRY_MS 100

static void on_listen_readable(uv_poll_t *h, int status, int events);

static void on_accept_retry(uv_timer_t *t) {
  server_t *s = t->data;

  if (s->state == SERVER_RUNNING &&
      !uv_is_closing((uv_handle_t *)&s->listen_poll))
    uv_poll_start(&s->listen_poll, UV_READABLE, on_listen_readable);
}

/* Accepts every waiting connection. tokend does this itself rather than
 * through uv_listen: when accept fails with EMFILE, libuv closes a spare
 * descriptor, accepts and closes every waiting connection and tells no one
 * (the peers see EOF, the log nothing). Here the failure is logged (at
 * most once per --log-repeat-interval-ms, with a count) and accepting pauses
 * briefly. */
static void on_listen_readable(uv_poll_t *h, int status, int events) {
  server_t *s = h->data;
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  int lfd = -1, fd, err;

  (void)events;
  if (status < 0) {
    snprintf(msg, sizeof(msg), "accept failed: %s", uv_strerror(status));
    server_log_refusal(s, msg);
    return;
  }
  if (s->state != SERVER_RUNNING ||
      uv_fileno((uv_handle_t *)&s->listener, &lfd) != 0)
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
               strerror(errno), s->n_conns,
               errno == EMFILE || errno == ENFILE ? ", out of file descriptors"
                                                  : "",
               SERVER_ACCEPT_RETRY_MS);
      server_log_refusal(s, msg);
      uv_poll_stop(&s->listen_poll);
      uv_timer_start(&s->accept_retry, on_accept_retry, SERVER_ACCEPT_RETRY_MS,
                     0);
      return;
    }
    if ((err = conn_open_fd(s, fd, NULL)) != 0)
      log_warn("could not accept a connection: %s", tokend_strerror(err));
  }
}

/* --max-connections is only real if the process may open that many file
 * descriptors (systemd's default soft limit is 1024). Raise the soft limit
 * as far as needed when the hard limit allows; otherwise refuse to start:
 * an operator who asked for N connections would rather be told than find
 * the extra ones dropped under load. */
static int server_fd_limit(const config_t *cfg) {
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

static void on_sweep_timer(uv_timer_t *t) {
  server_t *s = t->data;
  uint64_t now = uv_now(&s->loop);
  conn_t *c, *next;

  for (c = s->conns; c != NULL; c = next) {
    next = c->next;
    conn_check_timeouts(c, now);
  }
}

/* Sweeps often enough that a timeout fires at most a quarter late. */
static uint64_t sweep_interval(const config_t *cfg) {
  uint64_t t = cfg->read_timeout_ms;

  if (cfg->idle_timeout_ms > 0 && cfg->idle_timeout_ms < t)
    t = cfg->idle_timeout_ms;
  t /= 4;
  return t < 10 ? 10 : t > 1000 ? 1000 : t;
}

/* Connections the kernel queues for accept (what libuv's examples use). */
#define SERVER_LISTEN_BACKLOG 511

static int server_listen(server_t *s) {
  struct sockaddr_un sa;
  uv_os_fd_t fd;
  int err;

  if (strlen(s->cfg.socket_path) >= sizeof(sa.sun_path)) {
    log_error("socket path %s is %zu bytes; a Unix socket path must be "
              "shorter than %zu",
              s->cfg.socket_path, strlen(s->cfg.socket_path),
              sizeof(sa.sun_path));
    return TOKEND_ECONFIG;
  }
  if ((err = socket_path_claim(s->cfg.socket_path)) != 0)
    return err;
  if ((err = uv_pipe_init(&s->loop, &s->listener, 0)) != 0) {
    log_error("pipe init: %s", uv_strerror(err));
    return TOKEND_EINTERNAL;
  }
  s->listener.data = s;
  s->listen_poll.data = s;
  if ((err = server_bind(s, s->cfg.socket_path)) != 0)
    return err;
  s->listening = 1;
  if (uv_fileno((uv_handle_t *)&s->listener, &fd) != 0 ||
      listen(fd, SERVER_LISTEN_BACKLOG) != 0) {
    log_error("cannot listen on %s: %s", s->cfg.socket_path, strerror(errno));
    return TOKEND_EIO;
  }
  if ((err = uv_poll_init(&s->loop, &s->listen_poll, fd)) != 0 ||
      (err = uv_poll_start(&s->listen_poll, UV_READABLE, on_listen_readable)) !=
          0) {
    log_error("cannot watch %s: %s", s->cfg.socket_path, uv_strerror(err));
    return TOKEND_EIO;
  }
  return 0;
}

static void on_flush_timer(uv_timer_t *t) {
  server_t *s = t->data;

  /* After failures, the timer's ticks wait out the backoff. */
  if (uv_now(&s->loop) < s->flush_not_before)
    return;
  dispatch_flush_last_used(s);
}

static void on_refusal_timer(uv_timer_t *t) {
  (void)dispatch_flush_refusals(t->data);
}

static void on_signal(uv_signal_t *h, int signum) {
  server_t *s = h->data;

  log_info("received %s: shutting down",
           signum == SIGINT ? "SIGINT" : "SIGTERM");
  server_stop(s);
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void close_if_open(uv_handle_t *h) {
  if (h->loop != NULL && !uv_is_closing(h))
    uv_close(h, on_handle_closed);
}

static void on_shutdown_timeout(uv_timer_t *t) {
  server_t *s = t->data;
  conn_t *c, *next;

  log_warn("shutdown: %zu connections did not take their answers in time; "
           "closing them",
           s->n_conns);
  for (c = s->conns; c != NULL; c = next) {
    next = c->next;
    conn_close(c);
  }
}

/* Reads the audit log's newest row id and chain hash into s (the store
 * worker must not be running). */
static void server_audit_read_head(server_t *s) {
  if (s->store == NULL ||
      store_audit_head(s->store, &s->audit_head_id, s->audit_head_hash) != 0)
    s->audit_head_id = -1;
}

/* Logs what server_audit_read_head read: the log (journald, a log host)
 * then anchors the chain outside the database. */
static void server_audit_log_head(const server_t *s) {
  char hex[2 * STORE_AUDIT_HASH_BYTES + 1];

  if (s->audit_head_id < 0)
    return;
  sodium_bin2hex(hex, sizeof(hex), s->audit_head_hash,
                 sizeof(s->audit_head_hash));
  log_info("audit log head: row %lld hash %s (anchor for tokenctl audit "
           "--verify --anchor %lld:%s)",
           (long long)s->audit_head_id, hex, (long long)s->audit_head_id, hex);
}

/* The last step of shutdown: every answer is owed no more and last_used is
 * written. Close the remaining handles so the loop ends. */
static void server_finish(server_t *s) {
  conn_t *c, *next;

  s->state = SERVER_CLOSING;
  store_worker_stop(s->worker);
  s->worker = NULL;
  server_audit_read_head(s);
  server_audit_log_head(s);
  close_if_open((uv_handle_t *)&s->flush_timer);
  close_if_open((uv_handle_t *)&s->flush_retry_timer);
  close_if_open((uv_handle_t *)&s->sweep_timer);
  close_if_open((uv_handle_t *)&s->refusal_timer);
  close_if_open((uv_handle_t *)&s->busy_poll);
  for (c = s->conns; c != NULL; c = next) {
    next = c->next;
    conn_close_when_sent(c);
  }
  if (s->n_conns == 0)
    close_if_open((uv_handle_t *)&s->shutdown_timer);
  else
    uv_timer_start(&s->shutdown_timer, on_shutdown_timeout,
                   s->cfg.shutdown_timeout_ms, 0);
}

static void server_maybe_finish(server_t *s);

static void on_flush_retry(uv_timer_t *t) { server_maybe_finish(t->data); }

/* Shutdown could not write last_used_at back within --shutdown-timeout-ms:
 * it is loss-tolerant (those tokens show an older last use), so say once
 * how much was lost and stop rather than retry until the disk recovers. */
static void server_give_up_last_used(server_t *s) {
  s->last_used_lost = index_dirty_count(s->index);
  log_error("shutdown: could not write last_used_at of %zu tokens within "
            "--shutdown-timeout-ms (%u ms, %u attempts; last error: %s); "
            "giving up on it: those tokens keep their last saved "
            "last_used_at. Exiting with status 1",
            s->last_used_lost, (unsigned)s->cfg.shutdown_timeout_ms,
            (unsigned)s->flush_failures, s->flush_errmsg);
}

static void server_maybe_finish(server_t *s) {
  uint64_t now, wake;

  if (s->state != SERVER_DRAINING || s->jobs_in_flight > 0)
    return;
  /* One more write-back: last_used of the final moments survives, also
   * where --last-used-granularity-ms held it back, and of Verifies still
   * queued (read in the same turn as the signal). */
  dispatch_verify_drain(s);
  /* Refusals counted and not yet written are written now. */
  if (dispatch_flush_refusals(s) > 0)
    return;
  if (!s->final_flush_marked) {
    s->final_flush_marked = 1;
    (void)index_mark_unsaved(s->index);
  }
  /* A failed write-back put everything back: failures mean unsaved data. */
  if (s->flush_failures > 0) {
    now = uv_now(&s->loop);
    if (now >= s->drain_deadline) {
      server_give_up_last_used(s);
      server_finish(s);
      return;
    }
    /* Failing: try again after the backoff, but no later than the
     * deadline, where the last try is given up. */
    if (now < s->flush_not_before) {
      wake = s->flush_not_before < s->drain_deadline ? s->flush_not_before
                                                     : s->drain_deadline;
      uv_timer_start(&s->flush_retry_timer, on_flush_retry, wake - now, 0);
      return;
    }
  }
  if (dispatch_flush_last_used(s))
    return;
  server_finish(s);
}

/* Busy polling trades CPU for latency: a caller that sends its next
 * request within --busy-poll-us of the last is read without tokend going to
 * sleep in epoll_wait and being woken again (on a 2-core VM the wake-up is
 * most of a Verify's round trip at one connection). An active idle handle
 * is what makes libuv poll with a zero timeout; it stops itself once the
 * time has passed with nothing read, and at shutdown. */
static void on_busy_poll(uv_idle_t *h) {
  server_t *s = h->data;

  if (s->state != SERVER_RUNNING || uv_hrtime() >= s->busy_poll_until)
    uv_idle_stop(h);
}

void server_read_burst(server_t *s) {
  s->now_ms = tokend_now_ms();
  if (s->cfg.busy_poll_us == 0 || s->state != SERVER_RUNNING)
    return;
  s->busy_poll_until = uv_hrtime() + (uint64_t)s->cfg.busy_poll_us * 1000u;
  if (!uv_is_active((uv_handle_t *)&s->busy_poll))
    uv_idle_start(&s->busy_poll, on_busy_poll);
}

void server_job_begin(server_t *s) { s->jobs_in_flight++; }

void server_job_end(server_t *s) {
  s->jobs_in_flight--;
  server_maybe_finish(s);
}

void server_conn_removed(server_t *s, conn_t *c) {
  server_conn_unadmit(s, c);
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->n_conns--;
  if (s->state == SERVER_CLOSING && s->n_conns == 0)
    close_if_open((uv_handle_t *)&s->shutdown_timer);
}

void server_stop(server_t *s) {
  conn_t *c;

  if (s->state != SERVER_RUNNING)
    return;
  s->state = SERVER_DRAINING;
  uv_update_time(&s->loop);
  s->drain_deadline = uv_now(&s->loop) + s->cfg.shutdown_timeout_ms;
  close_if_open((uv_handle_t *)&s->sigint);
  close_if_open((uv_handle_t *)&s->sigterm);
  /* The watcher first: the listener's close closes the descriptor. */
  close_if_open((uv_handle_t *)&s->listen_poll);
  close_if_open((uv_handle_t *)&s->accept_retry);
  close_if_open((uv_handle_t *)&s->listener);
  uv_idle_stop(&s->busy_poll);
  /* Requests already read are answered; no new ones are read. */
  for (c = s->conns; c != NULL; c = c->next)
    conn_stop_reading(c);
  server_maybe_finish(s);
}

/* Opens the database and the pepper together, so that neither is ever
 * silently replaced: a missing database is created only with --create-db; a
 * new pepper only with a new (or empty) database, and that is logged at
 * warn; a pepper whose fingerprint differs from the one the database
 * recorded, or a missing pepper with a database that holds anything, is
 * refused (every token would answer UNKNOWN). */
static int server_open_store(server_t *s, const config_t *cfg) {
  uint8_t fp[PEPPER_FINGERPRINT_BYTES], stored[STORE_FINGERPRINT_BYTES];
  char why[1024], url[CONFIG_STORE_URL_BYTES];
  int err, db_new, pepper_missing = 0, pepper_new = 0, present;
  int64_t rows = 0;

  /* The backend by URL (--store, or --db's sqlite:PATH). A store that
   * cannot tell whether it exists is left to the open to report. */
  config_store_url(cfg, url, sizeof(url));
  db_new = store_exists_url(url) == 0;
  if (db_new && !cfg->create_db) {
    log_error("no database at %s; pass --create-db to create a new one",
              cfg->db_path);
    return TOKEND_ECONFIG;
  }
  err = pepper_read(cfg->pepper_path, s->pepper, why, sizeof(why));
  if (err == TOKEND_ENOTFOUND) {
    pepper_missing = 1;
  } else if (err != 0) {
    log_error("%s", why);
    return err;
  }
  /* A new database gets a new pepper before the database file exists, so a
   * pepper that cannot be made leaves nothing behind. */
  if (pepper_missing && db_new) {
    if ((err = pepper_create(cfg->pepper_path, s->pepper, why, sizeof(why))) !=
        0) {
      log_error("%s", why);
      return err;
    }
    pepper_new = 1;
  }
  err =
      store_open_url(url,
                     cfg->read_only ? STORE_OPEN_READ_ONLY
                                    : (cfg->create_db ? STORE_OPEN_CREATE : 0),
                     &s->store, why, sizeof(why));
  if (err != 0) {
    log_error("database %s: %s", cfg->db_path, why);
    goto err_unlink_pepper;
  }
  if (pepper_missing && !pepper_new) {
    if ((err = store_count_rows(s->store, &rows)) != 0) {
      log_error("database %s: %s", cfg->db_path, store_errmsg(s->store));
      return err;
    }
    if (rows == 0 && cfg->read_only) {
      log_error("no pepper file at %s, and --read-only cannot create one for "
                "the empty database %s",
                cfg->pepper_path, cfg->db_path);
      return TOKEND_ECONFIG;
    }
    if (rows > 0) {
      log_error("no pepper file at %s, but database %s holds %lld tokens, "
                "admins and audit rows hashed with its pepper; restore that "
                "pepper file (or point --pepper-file at it): a new one would "
                "make every token invalid",
                cfg->pepper_path, cfg->db_path, (long long)rows);
      return TOKEND_ECONFIG;
    }
    if ((err = pepper_create(cfg->pepper_path, s->pepper, why, sizeof(why))) !=
        0) {
      log_error("%s", why);
      return err;
    }
    pepper_new = 1;
  }
  pepper_fingerprint(s->pepper, fp);
  if ((err = store_fingerprint_get(s->store, stored, &present)) != 0) {
    log_error("database %s: %s", cfg->db_path, store_errmsg(s->store));
    return err;
  }
  if (present && !pepper_new &&
      sodium_memcmp(stored, fp, STORE_FINGERPRINT_BYTES) != 0) {
    log_error("pepper file %s is not the pepper of database %s (their "
              "fingerprints differ), so no token would verify; restore the "
              "pepper file that made this database, or point --pepper-file "
              "at it",
              cfg->pepper_path, cfg->db_path);
    return TOKEND_ECONFIG;
  }
  /* First start of this database (or of its schema version 3, whose hashes
   * the pepper in use made), or a new pepper for an empty one. */
  if ((!present || pepper_new) && !cfg->read_only &&
      (err = store_fingerprint_set(s->store, fp)) != 0) {
    log_error("database %s: %s", cfg->db_path, store_errmsg(s->store));
    return err;
  }
  if (db_new)
    log_warn("created a new, empty database %s (--create-db)", cfg->db_path);
  if (pepper_new)
    log_warn("created a new pepper %s for the %s database %s", cfg->pepper_path,
             db_new ? "new" : "empty", cfg->db_path);
  return 0;

err_unlink_pepper:
  /* Made for a database that could not be created: not kept. */
  if (pepper_new && db_new)
    unlink(cfg->pepper_path);
  return err;
}

/* The audit log's chain key: a keyed hash of a fixed string under the
 * pepper, so the pepper itself is never used for two things, and nothing
 * stored reveals it. Logs the chain's head, so that the log (journald, a
 * log host) anchors it outside the database: cutting off the newest rows
 * is then detectable too (tokenctl audit --verify --anchor). */
static int server_audit_chain_start(server_t *s) {
  static const char context[] = "tokend audit-chain key v1";
  uint8_t key[STORE_AUDIT_KEY_BYTES];
  int err;

  crypto_generichash(key, sizeof(key), (const unsigned char *)context,
                     sizeof(context) - 1, s->pepper, TOKEND_PEPPER_BYTES);
  err = store_audit_key_set(s->store, key);
  sodium_memzero(key, sizeof(key));
  if (err != 0) {
    log_error("cannot chain the audit log of %s: %s", s->cfg.db_path,
              store_errmsg(s->store));
    return err;
  }
  return 0;
}

int server_init(server_t *s, const config_t *cfg) {
  int err;

  memset(s, 0, sizeof(*s));
  s->cfg = *cfg;
  if (sodium_init() < 0) {
    log_error("libsodium failed to initialise");
    return TOKEND_EINTERNAL;
  }
  if (cfg->default_dir && mkdir(CONFIG_DIR_DEFAULT, 0700) != 0 &&
      errno != EEXIST) {
    log_error("cannot create %s/: %s", CONFIG_DIR_DEFAULT, strerror(errno));
    return TOKEND_ECONFIG;
  }
  if ((err = socket_dir_check(cfg->socket_path)) != 0 ||
      (err = server_fd_limit(cfg)) != 0)
    return err;
  /* The key of every stored hash: kept where a core dump, an overflow or a
   * stray write cannot reach it. */
  if ((s->pepper = sodium_malloc(TOKEND_PEPPER_BYTES)) == NULL) {
    log_error("out of memory for the pepper");
    return TOKEND_ENOMEM;
  }
  if ((err = server_open_store(s, cfg)) != 0)
    return err;
  if ((err = server_audit_chain_start(s)) != 0)
    return err;
  (void)sodium_mprotect_readonly(s->pepper);
  if ((err = pb_arena_init(&s->arena, 16384, cfg->max_request_memory)) != 0) {
    log_error("out of memory");
    return err;
  }
  if ((err = index_new(&s->index)) != 0 ||
      (err = verify_cache_new(&s->vcache)) != 0 ||
      (err = refusals_new(cfg->refusal_audit_max_keys, &s->refusals)) != 0 ||
      (err = domains_init(&s->domains)) != 0) {
    log_error("out of memory");
    return err;
  }
  if ((err = store_admin_load(s->store, load_admin, s)) != 0) {
    log_error("cannot load domain admins from %s: %s", cfg->db_path,
              store_errmsg(s->store));
    return err;
  }
  if ((err = store_load(s->store, load_row, s)) != 0) {
    log_error("cannot load tokens from %s: %s", cfg->db_path,
              err == TOKEND_EEXIST ? "duplicate token hash"
                                   : store_errmsg(s->store));
    return err;
  }
  /* Room in the verify cache for every token, so it never rehashes while
   * answering (it grows with the index, on Issue). */
  if ((err = verify_cache_reserve(s->vcache, index_count(s->index))) != 0) {
    log_error("out of memory for the verify cache of %zu tokens",
              index_count(s->index));
    return err;
  }
  if ((err = uv_loop_init(&s->loop)) != 0) {
    log_error("loop init: %s", uv_strerror(err));
    return TOKEND_EINTERNAL;
  }
  if ((err = dispatch_init(s)) != 0) {
    log_error("out of memory");
    return err;
  }
  uv_timer_init(&s->loop, &s->flush_timer);
  uv_timer_init(&s->loop, &s->flush_retry_timer);
  s->flush_retry_timer.data = s;
  log_limit_init(&s->flush_log, cfg->log_repeat_interval_ms);
  log_limit_init(&s->refuse_log, cfg->log_repeat_interval_ms);
  nodump_pool_init(&s->conn_pool, conn_buffer_block_bytes(),
                   cfg->conn_buffer_pool);
  uv_timer_init(&s->loop, &s->shutdown_timer);
  uv_timer_init(&s->loop, &s->sweep_timer);
  uv_timer_init(&s->loop, &s->refusal_timer);
  uv_timer_init(&s->loop, &s->accept_retry);
  s->accept_retry.data = s;
  uv_idle_init(&s->loop, &s->busy_poll);
  uv_signal_init(&s->loop, &s->sigint);
  uv_signal_init(&s->loop, &s->sigterm);
  s->flush_timer.data = s->shutdown_timer.data = s->sweep_timer.data = s;
  s->refusal_timer.data = s;
  s->busy_poll.data = s;
  s->sigint.data = s->sigterm.data = s;
  server_audit_read_head(s);
  if ((err = store_worker_start(&s->loop, s->store, &s->worker)) != 0)
    return err;
  /* Signals first: a SIGTERM sent the moment the socket exists must already
   * mean a clean shutdown. */
  uv_signal_start(&s->sigint, on_signal, SIGINT);
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  if ((err = server_listen(s)) != 0)
    return err;
  uv_timer_start(&s->flush_timer, on_flush_timer, cfg->flush_interval_ms,
                 cfg->flush_interval_ms);
  uv_timer_start(&s->sweep_timer, on_sweep_timer, sweep_interval(cfg),
                 sweep_interval(cfg));
  if (cfg->refusal_audit_interval_ms > 0)
    uv_timer_start(&s->refusal_timer, on_refusal_timer,
                   cfg->refusal_audit_interval_ms,
                   cfg->refusal_audit_interval_ms);
  server_audit_log_head(s);
  log_info("tokend %s listening on %s (database %s, %zu tokens)",
           TOKEND_VERSION, cfg->socket_path, cfg->db_path,
           index_count(s->index));
  return 0;
}

int server_run(server_t *s) {
  int rc = uv_run(&s->loop, UV_RUN_DEFAULT);

  if (rc != 0) {
    log_error("event loop ended with active handles");
    return TOKEND_EINTERNAL;
  }
  /* A shutdown that lost last_used_at is not a clean one: exit 1. */
  return s->last_used_lost > 0 ? TOKEND_EIO : 0;
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  close_if_open(h);
}

void server_cleanup(server_t *s) {
  /* Queued Verifies hold their conns: answer them before closing all. */
  if (s->vbatch != NULL)
    dispatch_verify_drain(s);
  if (s->loop.data != NULL || s->listener.loop != NULL ||
      s->flush_timer.loop != NULL || s->vbatch_check.loop != NULL) {
    /* After a failed init (or run), close what is open and let the loop
     * run the close callbacks. */
    if (s->worker != NULL) {
      store_worker_stop(s->worker);
      s->worker = NULL;
    }
    /* The listener's watcher before the listener, which closes the fd. */
    close_if_open((uv_handle_t *)&s->listen_poll);
    uv_walk(&s->loop, walk_close, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
  }
  /* Every admitted conn was removed as the loop closed it; this frees
   * whatever a failed start left. */
  {
    server_uid_conns_t *u, *tmp;

    HASH_ITER(hh, s->uid_conns, u, tmp) {
      HASH_DEL(s->uid_conns, u);
      free(u);
    }
  }
  if (s->listening) {
    unlink(s->cfg.socket_path);
    s->listening = 0;
  }
  dispatch_cleanup(s);
  nodump_pool_drain(&s->conn_pool);
  /* The cache points into the index: it goes first. */
  verify_cache_free(s->vcache);
  s->vcache = NULL;
  index_free(s->index);
  s->index = NULL;
  domains_free(&s->domains);
  refusals_free(s->refusals);
  s->refusals = NULL;
  pb_arena_free(&s->arena);
  store_close(s->store);
  s->store = NULL;
  /* sodium_free wipes it (read-only or not) and unmaps its pages. */
  if (s->pepper != NULL)
    sodium_free(s->pepper);
  s->pepper = NULL;
}
