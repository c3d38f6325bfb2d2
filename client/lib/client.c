/* libtokend-client: blocking calls over tokend's Unix socket.
 *
 * The socket is non-blocking and every wait goes through poll(), so one
 * deadline per call bounds the write and the read alike. A call writes one
 * framed Request and reads framed Responses until the one carrying its
 * call_id arrives. */
/* F_GET_SEALS, F_SEAL_SHRINK, MSG_CMSG_CLOEXEC */
#define _GNU_SOURCE
#include <tokend/client.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "clientlib.h"
#include "epoch_region.h"
#include "frame.h"
#include "tokend.pb-c.h"
/* TOKEND_SOCKET_DEFAULT and TOKEND_SOCKET_ENV: the default socket is the
 * library's business, not its public API. */
#include "tokend_limits.h"
#include "vcache.h"

/* A deadline that never passes: timeout_ms 0. */
#define CLIENT_NO_DEADLINE INT64_MAX
/* While the listener's backlog is full, connect() fails with EAGAIN and
 * nothing is queued, so we retry at this interval until the deadline. */
#define CLIENT_CONNECT_RETRY_MS 10
/* Reconnect backoff while tokend is away: the first retry after this, each
 * next one twice as late, never more than the cap apart, so a restarted
 * tokend is found within a cap of its coming back. */
#define CLIENT_BACKOFF_MIN_MS 5
#define CLIENT_BACKOFF_MAX_MS 250
/* How many times one call sends its request again after connections that
 * died before tokend could have read it (see client_call). */
#define CLIENT_UNDELIVERED_RESENDS 3
/* For token details too long for our structs or malformed; issue, verify
 * and list say the same. */
#define CLIENT_BAD_DETAILS                                                     \
  "tokend sent token details that are too long or malformed"

struct tokend_client_s {
  int fd; /* -1 once the stream can no longer be trusted */
  int timeout_ms;
  /* The path connected to, resolved once at open: a reconnect goes to the
   * same tokend even if $TOKEND_SOCKET changes meanwhile. */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  /* How long one call may wait for tokend to come back; 0: never
   * reconnect (tokend_client_set_reconnect). */
  int reconnect_wait_ms;
  uint64_t last_call_id;
  int grpc_status;
  int answered; /* a Response was ever decoded: the peer speaks tokend */
  /* The last read failed with ECONNRESET: tokend's end closed with bytes
   * of ours unread (see client_call). */
  int peer_reset;
  /* A descriptor tokend passed (SCM_RIGHTS) and no answer claimed yet; -1
   * none. */
  int passed_fd;
  /* The Verify cache (tokend_client_cache_enable); NULL when off. */
  vcache_t *cache;
  const epoch_region_t *region; /* mapped read-only; NULL: none yet */
  int region_wanted;            /* ask for it on this connection (once) */
  uint64_t region_seq;          /* counts regions mapped and dropped */
  uint64_t cache_epoch;         /* the epoch the cache last saw */
  int64_t conn_checked_ms;      /* coarse ms of the last look at the socket */
  int64_t mono_slack_ms; /* CLOCK_MONOTONIC_COARSE's (client_coarse_slack_ms) */
  tokend_cache_stats_t cache_stats;
  char errmsg[TOKEND_STATUS_MESSAGE_BYTES];
  /* The user every call acts for (tokend_client_set_actor); "" for none. */
  char actor[TOKEND_USER_BYTES];
  /* How far the last write had spread (tokend_client_last_propagation). */
  tokend_propagation_t propagation;
  int has_propagation;
  /* The frame being read. It outlives a call that timed out, so the next
   * call finishes reading it (and skips it by call_id) instead of losing
   * its place in the stream. */
  uint8_t hdr[TOKEND_FRAME_HEADER_BYTES];
  size_t hdr_got;
  uint8_t *body;
  uint32_t body_len;
  size_t body_got;
};

static int64_t client_now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t client_deadline(int timeout_ms) {
  if (timeout_ms <= 0)
    return CLIENT_NO_DEADLINE;
  return client_now_ms() + timeout_ms;
}

/* The poll() timeout left until deadline: -1 forever, 0 once it passed. */
static int client_remaining_ms(int64_t deadline) {
  int64_t left;

  if (deadline == CLIENT_NO_DEADLINE)
    return -1;
  left = deadline - client_now_ms();
  if (left <= 0)
    return 0;
  return left > INT32_MAX ? INT32_MAX : (int)left;
}

__attribute__((format(printf, 3, 4))) static int
client_fail(tokend_client_t *client, int err, const char *fmt, ...) {
  va_list ap;

  client->grpc_status = tokend_err_grpc(err);
  va_start(ap, fmt);
  vsnprintf(client->errmsg, sizeof(client->errmsg), fmt, ap);
  va_end(ap);
  return err;
}

/* Drops a partly read frame. */
static void client_reset_read(tokend_client_t *client) {
  if (client->body != NULL) {
    sodium_memzero(client->body, client->body_got);
    free(client->body);
  }
  client->body = NULL;
  client->body_len = 0;
  client->body_got = 0;
  client->hdr_got = 0;
}

/* After a failed write, a read error or a bad frame we no longer know where
 * the next frame starts, so the connection is closed for good. */
static void client_break(tokend_client_t *client) {
  if (client->fd >= 0)
    close(client->fd);
  client->fd = -1;
  client_reset_read(client);
}

/* Unmaps the epoch region and empties the cache: its answers were stored
 * under that region's epochs. The next Verify asks for the region of the
 * tokend now connected. */
static void client_region_drop(tokend_client_t *client) {
  if (client->region != NULL) {
    munmap((void *)client->region, EPOCH_REGION_BYTES);
    client->region = NULL;
    client->region_seq++;
  }
  if (client->cache != NULL) {
    vcache_clear(client->cache);
    client->region_wanted = 1;
  }
}

/* Waits until fd is ready for events. Returns 0 (also when poll reports an
 * error or hang-up: the next send or recv tells which), TOKEND_ETIMEDOUT or
 * TOKEND_EIO. */
static int client_wait(int fd, short events, int64_t deadline) {
  struct pollfd pfd;
  int n;

  for (;;) {
    pfd.fd = fd;
    pfd.events = events;
    pfd.revents = 0;
    n = poll(&pfd, 1, client_remaining_ms(deadline));
    if (n > 0)
      return (pfd.revents & POLLNVAL) ? TOKEND_EIO : 0;
    if (n == 0)
      return TOKEND_ETIMEDOUT;
    if (errno != EINTR)
      return TOKEND_EIO;
  }
}

/* Connects fd to addr. On TOKEND_ECONNECT *sys_err gets connect()'s errno,
 * which says why. */
static int client_connect_fd(int fd, const struct sockaddr_un *addr,
                             int64_t deadline, int *sys_err) {
  socklen_t len;
  int soerr, rc;

  *sys_err = 0;
  for (;;) {
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0)
      return 0;
    if (errno == EAGAIN) {
      rc = client_remaining_ms(deadline);
      if (rc == 0)
        return TOKEND_ETIMEDOUT;
      if (rc < 0 || rc > CLIENT_CONNECT_RETRY_MS)
        rc = CLIENT_CONNECT_RETRY_MS;
      poll(NULL, 0, rc);
      continue;
    }
    /* An interrupted non-blocking connect goes on in the background, like
     * one in progress: wait for it to finish either way. */
    if (errno != EINPROGRESS && errno != EINTR) {
      *sys_err = errno;
      return errno == ENOMEM || errno == ENOBUFS ? TOKEND_ENOMEM
                                                 : TOKEND_ECONNECT;
    }
    rc = client_wait(fd, POLLOUT, deadline);
    if (rc != 0)
      return rc == TOKEND_ETIMEDOUT ? rc : TOKEND_ECONNECT;
    soerr = 0;
    len = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
      *sys_err = soerr;
      return TOKEND_ECONNECT;
    }
    return 0;
  }
}

__attribute__((format(printf, 4, 5))) static int
connect_fail(char *why, size_t why_len, int err, const char *fmt, ...) {
  va_list ap;

  if (why_len > 0) {
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
  }
  return err;
}

/* What kind of file st is, for "PATH is not a socket (it is ...)". */
static const char *file_kind(const struct stat *st) {
  if (S_ISREG(st->st_mode))
    return "a regular file";
  if (S_ISDIR(st->st_mode))
    return "a directory";
  if (S_ISFIFO(st->st_mode))
    return "a FIFO";
  return "not a socket";
}

/* Turns connect()'s errno into one of our codes and a sentence that says
 * what to do. connect() alone cannot tell "not a socket" from "no one
 * listening" (both ECONNREFUSED), so the file is looked at too. */
static int connect_explain(const char *path, int sys_err, char *why,
                           size_t why_len) {
  struct stat st;
  struct group *gr;
  char group[64];

  switch (sys_err) {
  case ENOENT:
    return connect_fail(why, why_len, TOKEND_ENOSOCKET,
                        "no such socket %s: is tokend running? (the default "
                        "path is " TOKEND_SOCKET_DEFAULT
                        " under tokend's working directory, else "
                        "$" TOKEND_SOCKET_ENV ")",
                        path);
  case ENOTDIR:
    return connect_fail(why, why_len, TOKEND_ENOSOCKET,
                        "no such socket %s: a component of the path is not "
                        "a directory",
                        path);
  case EACCES:
  case EPERM:
    if (stat(path, &st) != 0)
      return connect_fail(why, why_len, TOKEND_ESOCKPERM,
                          "permission denied on %s: a directory on the path "
                          "is not searchable by you; ask tokend's operator",
                          path);
    gr = getgrgid(st.st_gid);
    if (gr != NULL)
      snprintf(group, sizeof(group), "%s", gr->gr_name);
    else
      snprintf(group, sizeof(group), "%lu", (unsigned long)st.st_gid);
    return connect_fail(why, why_len, TOKEND_ESOCKPERM,
                        "permission denied on %s (mode %03o, group %s): join "
                        "group %s, or ask tokend's operator to let you in",
                        path, (unsigned)(st.st_mode & 0777), group, group);
  case ECONNREFUSED:
    if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
      return connect_fail(why, why_len, TOKEND_ENOTTOKEND,
                          "%s is not a tokend: it is %s, not a socket", path,
                          file_kind(&st));
    return connect_fail(why, why_len, TOKEND_ECONNECT,
                        "nothing listens on %s: a socket left by a tokend "
                        "that is no longer running?",
                        path);
  default:
    return connect_fail(why, why_len, TOKEND_ECONNECT,
                        "cannot connect to %s: %s", path, strerror(sys_err));
  }
}

/* TOKEND_CONNECT_CHECK_PEER: one WhoAmI. Any answer from tokend, even a
 * refusal, says it is a tokend; silence, a close without a frame or bytes
 * that are not a frame say it is not. */
static int client_check_peer(tokend_client_t *client, const char *path,
                             char *why, size_t why_len) {
  tokend_whoami_t who;
  int rc, wait_ms = client->reconnect_wait_ms;

  /* The peer itself is under test: a retry on a new connection would only
   * blur what it answered. */
  client->reconnect_wait_ms = 0;
  rc = tokend_client_whoami(client, &who);
  client->reconnect_wait_ms = wait_ms;

  if (rc == 0)
    return 0;
  if (client->answered)
    return connect_fail(why, why_len, rc, "%s", client->errmsg);
  switch (rc) {
  case TOKEND_ETIMEDOUT:
    return connect_fail(why, why_len, TOKEND_ENOTTOKEND,
                        "%s did not answer tokend's protocol within %d ms: "
                        "is it a tokend (or one too busy to answer)?",
                        path, client->timeout_ms);
  case TOKEND_ECLOSED:
    return connect_fail(why, why_len, TOKEND_ENOTTOKEND,
                        "%s is not a tokend: the peer closed the connection "
                        "without answering tokend's protocol",
                        path);
  case TOKEND_EPROTO:
    return connect_fail(why, why_len, TOKEND_ENOTTOKEND,
                        "%s is not a tokend: the peer answered something "
                        "that is not tokend's protocol",
                        path);
  default:
    return connect_fail(why, why_len, rc, "%s: %s", path, client->errmsg);
  }
}

/* Resolves socket_path (NULL: tokend's default) into addr. */
static int client_resolve(const char *socket_path, struct sockaddr_un *addr,
                          char *why, size_t why_len) {
  size_t len;

  if (socket_path == NULL) {
    socket_path = getenv(TOKEND_SOCKET_ENV);
    if (socket_path == NULL || socket_path[0] == '\0')
      socket_path = TOKEND_SOCKET_DEFAULT;
  }
  len = strlen(socket_path);
  /* sun_path needs room for the NUL; a longer path would be cut silently. */
  if (len == 0 || len >= sizeof(addr->sun_path))
    return connect_fail(why, why_len, TOKEND_EINVAL,
                        "socket path is empty or longer than %zu bytes",
                        sizeof(addr->sun_path) - 1);
  memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, socket_path, len);
  return 0;
}

/* One connect to addr, bounded by deadline. On success *fd_out is the
 * connected non-blocking socket; on failure why says which of
 * tokend_client_open()'s reasons it is. */
static int client_dial(const struct sockaddr_un *addr, int64_t deadline,
                       int *fd_out, char *why, size_t why_len) {
  int fd, rc, sys_err;

  *fd_out = -1;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return connect_fail(why, why_len,
                        errno == ENOMEM || errno == ENOBUFS ? TOKEND_ENOMEM
                                                            : TOKEND_ECONNECT,
                        "socket: %s", strerror(errno));
  rc = client_connect_fd(fd, addr, deadline, &sys_err);
  if (rc == TOKEND_ECONNECT && sys_err != 0)
    rc = connect_explain(addr->sun_path, sys_err, why, why_len);
  else if (rc == TOKEND_ETIMEDOUT)
    rc = connect_fail(why, why_len, rc,
                      "timed out connecting to %s: tokend is too busy to "
                      "accept",
                      addr->sun_path);
  else if (rc != 0)
    rc = connect_fail(why, why_len, rc, "cannot connect to %s: %s",
                      addr->sun_path, tokend_strerror(rc));
  if (rc != 0) {
    close(fd);
    return rc;
  }
  *fd_out = fd;
  return 0;
}

int tokend_client_open(const char *socket_path, int timeout_ms, unsigned flags,
                       tokend_client_t **out, char *why, size_t why_len) {
  struct sockaddr_un addr;
  tokend_client_t *client;
  int rc;

  if (why_len > 0)
    why[0] = '\0';
  if (out == NULL || timeout_ms < 0)
    return connect_fail(why, why_len, TOKEND_EINVAL, "invalid argument");
  *out = NULL;
  rc = client_resolve(socket_path, &addr, why, why_len);
  if (rc != 0)
    return rc;

  client = calloc(1, sizeof(*client));
  if (client == NULL)
    return connect_fail(why, why_len, TOKEND_ENOMEM, "out of memory");
  client->fd = -1;
  client->passed_fd = -1;
  client->timeout_ms = timeout_ms;
  client->reconnect_wait_ms = TOKEND_RECONNECT_WAIT_MS_DEFAULT;
  memcpy(client->path, addr.sun_path, sizeof(client->path));

  rc = client_dial(&addr, client_deadline(timeout_ms), &client->fd, why,
                   why_len);
  if (rc != 0)
    goto err_free_client;
  if ((flags & TOKEND_CONNECT_CHECK_PEER) &&
      (rc = client_check_peer(client, client->path, why, why_len)) != 0) {
    tokend_client_close(client);
    return rc;
  }
  *out = client;
  return 0;

err_free_client:
  free(client);
  return rc;
}

int tokend_client_connect(const char *socket_path, int timeout_ms,
                          tokend_client_t **out) {
  int rc = tokend_client_open(socket_path, timeout_ms, 0, out, NULL, 0);

  /* Its callers were promised TOKEND_ECONNECT for every connect failure. */
  if (rc == TOKEND_ENOSOCKET || rc == TOKEND_ESOCKPERM ||
      rc == TOKEND_ENOTTOKEND)
    rc = TOKEND_ECONNECT;
  return rc;
}

void tokend_client_close(tokend_client_t *client) {
  if (client == NULL)
    return;
  client_break(client);
  client_region_drop(client);
  vcache_free(client->cache);
  if (client->passed_fd >= 0)
    close(client->passed_fd);
  free(client);
}

const char *tokend_client_errmsg(const tokend_client_t *client) {
  return client == NULL ? "" : client->errmsg;
}

int tokend_client_grpc_status(const tokend_client_t *client) {
  return client == NULL ? TOKEND_GRPC_INVALID_ARGUMENT : client->grpc_status;
}

/* Writes all of iov, resuming after partial writes; *sent counts the bytes
 * that left (0 tells a request tokend cannot have seen). MSG_NOSIGNAL: a
 * peer that went away gives EPIPE here instead of killing the process. */
static int client_send_all(tokend_client_t *client, struct iovec *iov,
                           int iovcnt, int64_t deadline, size_t *sent) {
  struct msghdr msg;
  ssize_t n;
  int rc;

  *sent = 0;
  while (iovcnt > 0) {
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)iovcnt;
    n = sendmsg(client->fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        rc = client_wait(client->fd, POLLOUT, deadline);
        if (rc == TOKEND_ETIMEDOUT)
          return client_fail(client, rc,
                             "tokend did not accept the request "
                             "within %d ms",
                             client->timeout_ms);
        if (rc != 0)
          return client_fail(client, rc, "waiting to send to tokend failed");
        continue;
      }
      if (errno == EPIPE || errno == ECONNRESET)
        return client_fail(client, TOKEND_ECLOSED,
                           "tokend closed the connection");
      return client_fail(client, TOKEND_EIO, "send: %s", strerror(errno));
    }
    *sent += (size_t)n;
    while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
      n -= (ssize_t)iov->iov_len;
      iov++;
      iovcnt--;
    }
    if (iovcnt > 0) {
      iov->iov_base = (uint8_t *)iov->iov_base + n;
      iov->iov_len -= (size_t)n;
    }
  }
  return 0;
}

/* recv() that also takes a descriptor tokend passed with the bytes (only
 * GetCacheRegion's answer carries one): it waits in client->passed_fd for
 * that answer. Any other descriptor, or more than one, is closed: a
 * recv() without room for them would have the kernel drop them anyway. */
static ssize_t client_recvmsg(tokend_client_t *client, uint8_t *buf,
                              size_t len) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * 4)];
  } ctl;
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  struct cmsghdr *cm;
  ssize_t n;
  size_t i, nfd;
  int fd;

  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof(ctl.buf);
  n = recvmsg(client->fd, &msg, MSG_CMSG_CLOEXEC);
  if (n <= 0 || msg.msg_controllen == 0)
    return n;
  for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
      continue;
    nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (i = 0; i < nfd; i++) {
      memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
      if (client->passed_fd >= 0)
        close(client->passed_fd);
      client->passed_fd = fd;
    }
  }
  return n;
}

/* Reads at most len bytes into buf; *got receives how many (at least 1). */
static int client_recv(tokend_client_t *client, uint8_t *buf, size_t len,
                       int64_t deadline, size_t *got) {
  ssize_t n;
  int rc;

  for (;;) {
    n = client_recvmsg(client, buf, len);
    if (n > 0) {
      *got = (size_t)n;
      return 0;
    }
    if (n == 0)
      return client_fail(client, TOKEND_ECLOSED,
                         "tokend closed the connection");
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      rc = client_wait(client->fd, POLLIN, deadline);
      if (rc == TOKEND_ETIMEDOUT)
        return client_fail(client, rc, "no response from tokend within %d ms",
                           client->timeout_ms);
      if (rc != 0)
        return client_fail(client, rc, "waiting for tokend's answer failed");
      continue;
    }
    if (errno == ECONNRESET) {
      client->peer_reset = 1;
      return client_fail(client, TOKEND_ECLOSED,
                         "tokend closed the connection");
    }
    return client_fail(client, TOKEND_EIO, "recv: %s", strerror(errno));
  }
}

/* Reads one whole frame, resuming one a timed-out call left half read. On
 * success *body (malloc'd; the caller wipes and frees it) holds *body_len
 * bytes. */
static int client_read_frame(tokend_client_t *client, int64_t deadline,
                             uint8_t **body, uint32_t *body_len) {
  const uint8_t *unused;
  frame_result_t fr;
  uint32_t declared;
  size_t got, need;
  int rc;

  while (client->hdr_got < TOKEND_FRAME_HEADER_BYTES) {
    rc = client_recv(client, client->hdr + client->hdr_got,
                     TOKEND_FRAME_HEADER_BYTES - client->hdr_got, deadline,
                     &got);
    if (rc != 0)
      return rc;
    client->hdr_got += got;
  }
  if (client->body == NULL) {
    /* frame_decode checks the declared length against the cap before we
     * allocate anything. */
    fr = frame_decode(client->hdr, TOKEND_FRAME_HEADER_BYTES,
                      TOKEND_MAX_FRAME_BYTES_LIMIT, &unused, &declared, &need);
    switch (fr) {
    case FRAME_OK: /* an empty body */
      client->body_len = 0;
      break;
    case FRAME_NEED_MORE:
      client->body_len = (uint32_t)(need - TOKEND_FRAME_HEADER_BYTES);
      break;
    case FRAME_ERR_TOO_LARGE:
      return client_fail(client, TOKEND_EMSGSIZE,
                         "tokend sent a frame of %u bytes (the limit is %u)",
                         declared, TOKEND_MAX_FRAME_BYTES_LIMIT);
    default:
      return client_fail(client, TOKEND_EPROTO,
                         "tokend sent a frame with a non-zero flag byte");
    }
    client->body = malloc(client->body_len > 0 ? client->body_len : 1);
    if (client->body == NULL)
      return client_fail(client, TOKEND_ENOMEM,
                         "no memory for a %u-byte response", client->body_len);
    client->body_got = 0;
  }
  while (client->body_got < client->body_len) {
    rc = client_recv(client, client->body + client->body_got,
                     client->body_len - client->body_got, deadline, &got);
    if (rc != 0)
      return rc;
    client->body_got += got;
  }
  *body = client->body;
  *body_len = client->body_len;
  client->body = NULL;
  client_reset_read(client);
  return 0;
}

/* Frees a response, wiping the one secret a response can carry. */
static void client_response_free(Tokend__V1__Response *resp) {
  if (resp == NULL)
    return;
  if (resp->result_case == TOKEND__V1__RESPONSE__RESULT_ISSUE &&
      resp->issue != NULL && resp->issue->token != NULL)
    sodium_memzero(resp->issue->token, strlen(resp->issue->token));
  tokend__v1__response__free_unpacked(resp, NULL);
}

/* tokend answers a connection-level error (oversized or undecodable frame)
 * with a status under call_id 0, then closes. If such a status is waiting,
 * it replaces err and its message becomes the client's. */
static int client_take_parting_status(tokend_client_t *client, int err) {
  Tokend__V1__Response *resp;
  uint8_t *body = NULL;
  uint32_t body_len = 0;
  int code;

  if (client_read_frame(client, client_deadline(200), &body, &body_len) != 0)
    return err;
  resp = tokend__v1__response__unpack(NULL, body_len, body);
  sodium_memzero(body, body_len);
  free(body);
  if (resp == NULL)
    return err;
  client->answered = 1;
  code = resp->status != NULL ? resp->status->code : TOKEND_GRPC_OK;
  if (resp->call_id == 0 && code != TOKEND_GRPC_OK) {
    client->grpc_status = code;
    snprintf(client->errmsg, sizeof(client->errmsg),
             "tokend closed the connection: %s", resp->status->message);
    err = tokend_err_from_grpc(code);
  }
  client_response_free(resp);
  return err;
}

/* Remembers how far a write had spread, when its answer says. */
static void client_note_propagation(tokend_client_t *client,
                                    const Tokend__V1__Propagation *p) {
  if (p == NULL)
    return;
  client->propagation.revision = p->revision;
  client->propagation.hosts_applied = p->hosts_applied;
  client->propagation.hosts_pending = p->hosts_pending;
  client->has_propagation = 1;
}

int tokend_client_last_propagation(const tokend_client_t *client,
                                   tokend_propagation_t *out) {
  if (client == NULL || !client->has_propagation)
    return 0;
  if (out != NULL)
    *out = client->propagation;
  return 1;
}

/* The methods a second copy of cannot change anything: they are sent again
 * on a new connection when the first died before its answer. */
int clientlib_method_idempotent(Tokend__V1__Request__MethodCase m) {
  switch (m) {
  case TOKEND__V1__REQUEST__METHOD_VERIFY:
  case TOKEND__V1__REQUEST__METHOD_LIST:
  case TOKEND__V1__REQUEST__METHOD_WHO_AM_I:
  case TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS:
  case TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS:
  case TOKEND__V1__REQUEST__METHOD_VERIFY_AUDIT_LOG:
  case TOKEND__V1__REQUEST__METHOD_SERVER_STATUS:
  case TOKEND__V1__REQUEST__METHOD_GET_CACHE_REGION:
  case TOKEND__V1__REQUEST__METHOD_LOOKUP:
  case TOKEND__V1__REQUEST__METHOD_GET_DOMAIN_POLICY:
    return 1;
  default:
    return 0;
  }
}

/* Waits, bounded by deadline and the client's reconnect wait, for a new
 * connection to client->path; between attempts the delay doubles from
 * CLIENT_BACKOFF_MIN_MS up to CLIENT_BACKOFF_MAX_MS. Only "nobody there
 * yet" is waited out (no socket, nothing listening, a full backlog); a
 * socket we may not open or that is not a socket fails at once. */
static int client_reconnect(tokend_client_t *client, int64_t deadline) {
  struct sockaddr_un addr;
  int64_t until, now;
  int rc, backoff = CLIENT_BACKOFF_MIN_MS;

  if (client->reconnect_wait_ms <= 0)
    return client_fail(client, TOKEND_ECLOSED,
                       "the connection to tokend was closed after an earlier "
                       "error; connect again");
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, client->path, sizeof(addr.sun_path));
  until = client_now_ms() + client->reconnect_wait_ms;
  if (until > deadline)
    until = deadline;
  for (;;) {
    rc = client_dial(&addr, until, &client->fd, client->errmsg,
                     sizeof(client->errmsg));
    if (rc == 0) {
      client_reset_read(client);
      /* Maybe another tokend: its region, not the old one's. */
      client_region_drop(client);
      return 0;
    }
    client->grpc_status = tokend_err_grpc(rc);
    if (rc != TOKEND_ENOSOCKET && rc != TOKEND_ECONNECT &&
        rc != TOKEND_ETIMEDOUT)
      return rc;
    now = client_now_ms();
    if (now + backoff >= until)
      return rc;
    poll(NULL, 0, backoff);
    backoff = backoff * 2 > CLIENT_BACKOFF_MAX_MS ? CLIENT_BACKOFF_MAX_MS
                                                  : backoff * 2;
  }
}

/* Reads Responses until the one for call_id. A connection-level status
 * (call_id 0) or a broken stream returns its error with the connection
 * broken; TOKEND_ETIMEDOUT leaves the stream intact. */
static int client_await(tokend_client_t *client, uint64_t call_id,
                        int64_t deadline, Tokend__V1__Response **out) {
  Tokend__V1__Response *resp;
  uint8_t *body = NULL;
  uint32_t body_len = 0;
  int rc;

  *out = NULL;
  for (;;) {
    rc = client_read_frame(client, deadline, &body, &body_len);
    if (rc != 0)
      return rc;
    resp = tokend__v1__response__unpack(NULL, body_len, body);
    /* An issue response carries a secret. */
    sodium_memzero(body, body_len);
    free(body);
    if (resp == NULL)
      return client_fail(client, TOKEND_EPROTO,
                         "could not decode tokend's response");
    client->answered = 1;
    if (resp->call_id == call_id)
      break;
    if (resp->call_id == 0 && resp->status != NULL &&
        resp->status->code != TOKEND_GRPC_OK) {
      /* A connection-level error: tokend closes after it. */
      client->grpc_status = resp->status->code;
      snprintf(client->errmsg, sizeof(client->errmsg),
               "tokend closed the connection: %s", resp->status->message);
      rc = tokend_err_from_grpc(resp->status->code);
      client_response_free(resp);
      return rc;
    }
    if (resp->call_id > call_id) {
      rc = client_fail(client, TOKEND_EPROTO,
                       "tokend answered call %llu, which was never made",
                       (unsigned long long)resp->call_id);
      client_response_free(resp);
      return rc;
    }
    /* The late answer to an earlier call that timed out: nobody waits for
     * it any more. */
    client_response_free(resp);
  }
  *out = resp;
  return 0;
}

/* Sends req (its call_id is set here) and waits for its answer, on a new
 * connection when the last one broke. On success *out is a Response with
 * status OK and result want, which the caller frees with
 * client_response_free().
 *
 * When a connection dies (tokend restarted, or closed it as idle), whether
 * the request may be sent again on a new one depends on what tokend can
 * have seen of it:
 *   - none of it left (send failed at once), or tokend's end was closed
 *     with bytes of ours still unread: it cannot have acted on it. The
 *     kernel tells the second case: closing an AF_UNIX stream socket whose
 *     receive queue is not empty, or one never accepted, makes the peer's
 *     next read fail with ECONNRESET, where an emptied queue gives a
 *     plain end of file. A blocking client has one request in flight, so
 *     unread bytes can only be this request's. Sent again, whatever the
 *     method, up to CLIENT_UNDELIVERED_RESENDS times (a SIGKILLed tokend
 *     can reset a connection made while it was dying, too).
 *   - tokend read it all and closed without answering: sent again once if
 *     the method is idempotent, else TOKEND_EINDOUBT. */
static int client_call(tokend_client_t *client, Tokend__V1__Request *req,
                       Tokend__V1__Response__ResultCase want,
                       Tokend__V1__Response **out) {
  uint8_t hdr[TOKEND_FRAME_HEADER_BYTES];
  Tokend__V1__Response *resp = NULL;
  struct iovec iov[2];
  uint8_t *packed;
  size_t packed_len, sent;
  int64_t deadline;
  int rc, code, undelivered_resends = 0, answerless_resends = 0;
  int idempotent = clientlib_method_idempotent(req->method_case);

  *out = NULL;
  client->grpc_status = TOKEND_GRPC_OK;
  client->errmsg[0] = '\0';
  client->has_propagation = 0;
  deadline = client_deadline(client->timeout_ms);
  req->call_id = ++client->last_call_id;
  if (client->actor[0] != '\0')
    req->actor = client->actor;

  packed_len = tokend__v1__request__get_packed_size(req);
  if (packed_len > TOKEND_MAX_FRAME_BYTES_LIMIT)
    return client_fail(client, TOKEND_EMSGSIZE,
                       "request of %zu bytes is too large", packed_len);
  packed = malloc(packed_len > 0 ? packed_len : 1);
  if (packed == NULL)
    return client_fail(client, TOKEND_ENOMEM, "no memory for the request");
  tokend__v1__request__pack(req, packed);
  frame_encode_header(hdr, (uint32_t)packed_len);

  for (;;) {
    if (client->fd < 0) {
      rc = client_reconnect(client, deadline);
      if (rc != 0)
        goto done;
    }
    client->peer_reset = 0;
    /* Header and body go out in one vectored write. */
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    iov[1].iov_base = packed;
    iov[1].iov_len = packed_len;
    rc = client_send_all(client, iov, 2, deadline, &sent);
    /* tokend answers a frame it refuses (too large) with a status, then
     * closes: that reason is better than "closed". */
    if (rc == TOKEND_ECLOSED)
      rc = client_take_parting_status(client, rc);
    if (rc == 0)
      rc = client_await(client, req->call_id, deadline, &resp);
    if (rc == 0)
      break;
    if (rc == TOKEND_ETIMEDOUT && sent == sizeof(hdr) + packed_len)
      goto done; /* the stream is intact: a later call skips the answer */
    /* If tokend closed without a readable status, say what is likely. */
    if (rc == TOKEND_ECLOSED && packed_len > TOKEND_MAX_FRAME_BYTES_DEFAULT)
      client_fail(client, rc,
                  "tokend closed the connection; the %zu-byte request may "
                  "exceed its --max-frame-bytes",
                  packed_len);
    client_break(client);
    if ((rc != TOKEND_ECLOSED && rc != TOKEND_EIO) ||
        client->reconnect_wait_ms <= 0)
      goto done;
    if (rc == TOKEND_ECLOSED && (sent == 0 || client->peer_reset)) {
      if (undelivered_resends++ < CLIENT_UNDELIVERED_RESENDS)
        continue;
      goto done; /* tokend cannot have seen it: not in doubt */
    }
    if (!idempotent) {
      rc = client_fail(client, TOKEND_EINDOUBT,
                       "the connection to tokend broke after the request "
                       "was sent and before its answer: it may or may not "
                       "have taken effect; check before trying again");
      goto done;
    }
    if (answerless_resends++ < 1)
      continue;
    goto done;
  }

  code = resp->status != NULL ? resp->status->code : TOKEND_GRPC_OK;
  if (code != TOKEND_GRPC_OK) {
    client->grpc_status = code;
    snprintf(client->errmsg, sizeof(client->errmsg), "%s",
             resp->status->message != NULL ? resp->status->message : "");
    rc = tokend_err_from_grpc(code);
    goto err_free_resp;
  }
  if (resp->result_case != want) {
    rc = client_fail(client, TOKEND_EPROTO,
                     "tokend answered with the wrong kind of result");
    goto err_free_resp;
  }
  *out = resp;
  rc = 0;
  goto done;

err_free_resp:
  client_response_free(resp);
done:
  /* A verify request carries a secret. */
  sodium_memzero(packed, packed_len);
  free(packed);
  return rc;
}

int tokend_client_set_reconnect(tokend_client_t *client, int max_wait_ms) {
  if (client == NULL || max_wait_ms < 0)
    return TOKEND_EINVAL;
  client->reconnect_wait_ms = max_wait_ms;
  return 0;
}

/* Copies src into dst[dst_size]. Never truncates: a string that does not fit
 * is more than tokend may send. */
static int client_copy_str(char *dst, size_t dst_size, const char *src) {
  size_t n = src != NULL ? strlen(src) : 0;

  if (n >= dst_size)
    return TOKEND_EPROTO;
  if (n > 0)
    memcpy(dst, src, n);
  dst[n] = '\0';
  return 0;
}

static int client_copy_scopes(char (*dst)[TOKEND_SCOPE_BYTES], size_t *n_dst,
                              char *const *src, size_t n_src) {
  size_t i;

  *n_dst = 0;
  if (n_src > TOKEND_MAX_SCOPES)
    return TOKEND_EPROTO;
  for (i = 0; i < n_src; i++)
    if (client_copy_str(dst[i], TOKEND_SCOPE_BYTES, src[i]) != 0)
      return TOKEND_EPROTO;
  *n_dst = n_src;
  return 0;
}

static int client_copy_info(tokend_token_info_t *dst,
                            const Tokend__V1__TokenInfo *src) {
  if (src == NULL)
    return TOKEND_EPROTO;
  switch (src->status) {
  case TOKEND__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE:
    dst->status = TOKEND_TOKEN_ACTIVE;
    break;
  case TOKEND__V1__TOKEN_STATUS__TOKEN_STATUS_REVOKED:
    dst->status = TOKEND_TOKEN_REVOKED;
    break;
  case TOKEND__V1__TOKEN_STATUS__TOKEN_STATUS_EXPIRED:
    dst->status = TOKEND_TOKEN_EXPIRED;
    break;
  default:
    return TOKEND_EPROTO;
  }
  if (client_copy_str(dst->id, sizeof(dst->id), src->id) != 0 ||
      client_copy_str(dst->domain, sizeof(dst->domain), src->domain) != 0 ||
      client_copy_str(dst->label, sizeof(dst->label), src->label) != 0 ||
      client_copy_str(dst->hint, sizeof(dst->hint), src->hint) != 0 ||
      client_copy_str(dst->created_by, sizeof(dst->created_by),
                      src->created_by) != 0 ||
      client_copy_str(dst->revoked_by, sizeof(dst->revoked_by),
                      src->revoked_by) != 0 ||
      client_copy_str(dst->metadata, sizeof(dst->metadata), src->metadata) !=
          0 ||
      client_copy_str(dst->rolled_from, sizeof(dst->rolled_from),
                      src->rolled_from) != 0 ||
      client_copy_str(dst->rolled_to, sizeof(dst->rolled_to), src->rolled_to) !=
          0 ||
      client_copy_scopes(dst->scopes, &dst->n_scopes, src->scopes,
                         src->n_scopes) != 0)
    return TOKEND_EPROTO;
  dst->created_at = src->created_at;
  dst->expires_at = src->expires_at;
  dst->last_used_at = src->last_used_at;
  dst->revoked_at = src->revoked_at;
  return 0;
}

/* Copies item i of a response's repeated field src_list into dst_item; on
 * failure the client's message says what was wrong. */
typedef int (*client_copy_item_t)(tokend_client_t *client, void *dst_item,
                                  const void *src_list, size_t i);

static int client_copy_token_at(tokend_client_t *client, void *dst_item,
                                const void *src_list, size_t i) {
  const Tokend__V1__TokenInfo *const *tokens = src_list;

  if (client_copy_info(dst_item, tokens[i]) != 0)
    return client_fail(client, TOKEND_EPROTO, CLIENT_BAD_DETAILS);
  return 0;
}

/* Copies the n items of a response's repeated field src, with copy(), into
 * a new array of n items of size bytes each. On success *out is that array
 * (NULL when n is 0), which the caller frees. what names the items in the
 * out-of-memory message. */
static int client_copy_list(tokend_client_t *client, const void *src, size_t n,
                            size_t size, client_copy_item_t copy,
                            const char *what, void **out) {
  uint8_t *items = NULL;
  size_t i;
  int rc;

  *out = NULL;
  /* n is bounded by the frame cap; calloc checks the product. */
  if (n > 0) {
    items = calloc(n, size);
    if (items == NULL)
      return client_fail(client, TOKEND_ENOMEM, "no memory for %zu %s", n,
                         what);
  }
  for (i = 0; i < n; i++) {
    rc = copy(client, items + i * size, src, i);
    if (rc != 0)
      goto err_free_items;
  }
  *out = items;
  return 0;

err_free_items:
  free(items);
  return rc;
}

/* Copies a response's next page token into dst[TOKEND_PAGE_TOKEN_BYTES]. */
static int client_copy_page_token(tokend_client_t *client, char *dst,
                                  const char *src) {
  if (client_copy_str(dst, TOKEND_PAGE_TOKEN_BYTES, src) != 0)
    return client_fail(client, TOKEND_EPROTO,
                       "tokend sent a page token longer than %d bytes",
                       TOKEND_PAGE_TOKEN_BYTES - 1);
  return 0;
}

int clientlib_issued(const Tokend__V1__IssueResponse *res, tokend_issued_t *out,
                     const char **why) {
  if (res->token == NULL || res->token[0] == '\0' ||
      client_copy_str(out->token, sizeof(out->token), res->token) != 0) {
    *why = "tokend sent an empty token or one too long";
    goto err_wipe_out;
  }
  if (client_copy_info(&out->info, res->info) != 0) {
    *why = CLIENT_BAD_DETAILS;
    goto err_wipe_out;
  }
  return 0;

err_wipe_out:
  sodium_memzero(out, sizeof(*out));
  return TOKEND_EPROTO;
}

int tokend_client_issue(tokend_client_t *client,
                        const tokend_issue_params_t *params,
                        tokend_issued_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest issue = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__Response *resp;
  const char *why;
  int rc;

  if (client == NULL || params == NULL || out == NULL)
    return TOKEND_EINVAL;
  memset(out, 0, sizeof(*out));
  rc = clientlib_issue_request(params, &issue, &why);
  if (rc != 0)
    return client_fail(client, rc, "%s", why);
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &issue;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_ISSUE, &resp);
  if (rc != 0)
    return rc;
  rc = clientlib_issued(resp->issue, out, &why);
  if (rc != 0)
    client_fail(client, rc, "%s", why);
  else
    client_note_propagation(client, resp->issue->propagation);
  client_response_free(resp);
  return rc;
}

int clientlib_issue_request(const tokend_issue_params_t *params,
                            Tokend__V1__IssueRequest *issue, const char **why) {
  if (params->domain == NULL || params->label == NULL ||
      (params->n_scopes > 0 && params->scopes == NULL)) {
    *why = "domain, label or scopes is NULL";
    return TOKEND_EINVAL;
  }
  issue->domain = (char *)params->domain;
  issue->label = (char *)params->label;
  issue->expires_at = params->expires_at;
  issue->n_scopes = params->n_scopes;
  issue->scopes = (char **)params->scopes;
  if (params->metadata != NULL)
    issue->metadata = (char *)params->metadata;
  return 0;
}

int clientlib_token_info(const Tokend__V1__TokenInfo *src,
                         tokend_token_info_t *out, const char **why) {
  memset(out, 0, sizeof(*out));
  if (client_copy_info(out, src) != 0) {
    memset(out, 0, sizeof(*out));
    *why = CLIENT_BAD_DETAILS;
    return TOKEND_EPROTO;
  }
  return 0;
}

int clientlib_verify_result(const Tokend__V1__VerifyResponse *res,
                            tokend_verify_result_t *out, const char **why) {
  out->valid = res->valid ? 1 : 0;
  /* valid decides: tokend sends reason VALID with it, and before issue 14
   * sent nothing (UNSPECIFIED); both mean VALID. */
  if (res->valid) {
    out->reason = TOKEND_VERIFY_VALID;
  } else {
    switch (res->reason) {
    case TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED:
      out->reason = TOKEND_VERIFY_MALFORMED;
      break;
    case TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN:
      out->reason = TOKEND_VERIFY_UNKNOWN;
      break;
    case TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED:
      out->reason = TOKEND_VERIFY_REVOKED;
      break;
    case TOKEND__V1__INVALID_REASON__INVALID_REASON_EXPIRED:
      out->reason = TOKEND_VERIFY_EXPIRED;
      break;
    default:
      *why = "tokend said the token is invalid without a reason";
      goto err_clear;
    }
  }
  if (client_copy_str(out->token_id, sizeof(out->token_id), res->token_id) !=
          0 ||
      client_copy_str(out->domain, sizeof(out->domain), res->domain) != 0 ||
      client_copy_str(out->label, sizeof(out->label), res->label) != 0 ||
      client_copy_str(out->metadata, sizeof(out->metadata), res->metadata) !=
          0 ||
      client_copy_scopes(out->scopes, &out->n_scopes, res->scopes,
                         res->n_scopes) != 0) {
    *why = CLIENT_BAD_DETAILS;
    goto err_clear;
  }
  out->expires_at = res->expires_at;
  return 0;

err_clear:
  memset(out, 0, sizeof(*out));
  return TOKEND_EPROTO;
}

/* ---- the Verify cache (issue 15, section 2) ---- */

/* The coarse clocks (a vDSO read of the last tick's time, ~5 ns, where
 * the precise ones take ~20 ns) lag the precise ones by less than their
 * resolution (one tick, 1-4 ms). Every cache rule compares the latest the
 * precise time can be, coarse + resolution + 1 (the ms truncated): a rule
 * that says "before T" by that holds by the precise clock too, at the
 * price of ending up to a tick early. */
static int64_t client_coarse_slack_ms(clockid_t id) {
  struct timespec res;

  if (clock_getres(id, &res) != 0)
    return 1000; /* unknown: a generous tick */
  return (int64_t)res.tv_sec * 1000 + res.tv_nsec / 1000000 + 1;
}

static int64_t client_clock_ms(clockid_t id) {
  struct timespec ts;

  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The latest the wall clock (Unix ms) can read now: a cached answer is
 * used only while this is before its expires_at. Called only for an answer
 * that expires. */
static int64_t client_wall_latest_ms(void) {
  static _Atomic int64_t slack; /* the same for every client: set once */
  int64_t s = atomic_load_explicit(&slack, memory_order_relaxed);

  if (s == 0) {
    s = client_coarse_slack_ms(CLOCK_REALTIME_COARSE);
    atomic_store_explicit(&slack, s, memory_order_relaxed);
  }
  return client_clock_ms(CLOCK_REALTIME_COARSE) + s;
}

/* Asks tokend for its epoch region and maps it read-only. The descriptor
 * must be a memfd sealed against shrinking (so the mapping can never fault)
 * holding a region whose header matches the answer. */
static int client_region_attach(tokend_client_t *client) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__GetCacheRegionRequest gr =
      TOKEND__V1__GET_CACHE_REGION_REQUEST__INIT;
  Tokend__V1__Response *resp;
  const epoch_region_t *map;
  struct stat st;
  uint64_t generation;
  void *p;
  int rc, fd, seals;

  if (client->passed_fd >= 0) {
    close(client->passed_fd);
    client->passed_fd = -1;
  }
  req.method_case = TOKEND__V1__REQUEST__METHOD_GET_CACHE_REGION;
  req.get_cache_region = &gr;
  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_GET_CACHE_REGION,
                   &resp);
  if (rc != 0)
    return rc;
  generation = resp->get_cache_region->generation;
  client_response_free(resp);
  fd = client->passed_fd;
  client->passed_fd = -1;
  if (fd < 0)
    return client_fail(client, TOKEND_EUNAVAIL,
                       "tokend answered without its region's descriptor: "
                       "not caching");
  seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK) || fstat(fd, &st) != 0 ||
      st.st_size < EPOCH_REGION_BYTES) {
    close(fd);
    return client_fail(client, TOKEND_EUNAVAIL,
                       "tokend's region is not a sealed memfd of %d bytes: "
                       "not caching",
                       EPOCH_REGION_BYTES);
  }
  p = mmap(NULL, EPOCH_REGION_BYTES, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED)
    return client_fail(client, TOKEND_ENOMEM, "cannot map tokend's region");
  map = p;
  if (map->magic != EPOCH_REGION_MAGIC ||
      map->version != EPOCH_REGION_VERSION || map->size != EPOCH_REGION_BYTES ||
      map->generation != generation) {
    munmap(p, EPOCH_REGION_BYTES);
    return client_fail(client, TOKEND_EUNAVAIL,
                       "tokend's region is not one this library reads: not "
                       "caching");
  }
  client_region_drop(client);
  client->region = map;
  client->region_wanted = 0;
  client->cache_epoch = 0;
  return 0;
}

/* 1 if the region's heartbeat is young enough to trust the cache now, by
 * vcache_heartbeat_fresh's rule. tokend writes heartbeat_ms from
 * CLOCK_MONOTONIC, the same clock on one host. */
static int client_region_fresh(const tokend_client_t *client,
                               const epoch_region_t *rg, int64_t coarse_ms) {
  int64_t hb = atomic_load_explicit(&rg->heartbeat_ms, memory_order_acquire);

  return vcache_heartbeat_fresh(coarse_ms, client->mono_slack_ms, hb,
                                rg->heartbeat_bound_ms);
}

static int64_t client_coarse_ms(void) {
  return client_clock_ms(CLOCK_MONOTONIC_COARSE);
}

/* 0 if the connection to tokend is gone: closed by tokend (it died, was
 * killed, or closed us as idle) or broken here. One poll() without
 * waiting: a late answer waiting to be read is no sign of death. */
static int client_conn_alive(const tokend_client_t *client) {
  struct pollfd pfd = {.fd = client->fd, .events = POLLIN | POLLRDHUP};

  if (client->fd < 0)
    return 0;
  if (poll(&pfd, 1, 0) < 0)
    return 1; /* EINTR and the like: look again next tick */
  return (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) == 0;
}

/* What a Verify that the cache did not answer takes to tokend and back. */
typedef struct {
  int cacheable;   /* its answer may be stored, */
  uint64_t epoch;  /* under this epoch (read before the request is sent:
                    * a revoke answered after that moves it) */
  uint64_t seq;    /* while region_seq is still this */
  uint64_t report; /* cached hits of this token to report */
} client_cache_ask_t;

/* Answers token from the cache (1) or fills *ask for asking tokend (0). */
static int client_cache_lookup(tokend_client_t *client, const char *token,
                               tokend_verify_result_t *out,
                               client_cache_ask_t *ask) {
  const epoch_region_t *rg;
  uint64_t e;
  int64_t mono;
  int got;

  memset(ask, 0, sizeof(*ask));
  if (client->region == NULL && client->region_wanted) {
    client->region_wanted = 0; /* once per connection */
    if (client_region_attach(client) != 0)
      return 0;
  }
  if ((rg = client->region) == NULL)
    return 0;
  /* The one clock read of a hit. */
  mono = client_coarse_ms();
  if (!client_region_fresh(client, rg, mono)) {
    client->cache_stats.stale++;
    return 0;
  }
  /* A killed tokend leaves its page looking alive until the heartbeat
   * bound; its socket tells at once. Looked at once per coarse tick (1-4
   * ms), not per hit: a restarted tokend cannot be up and answering a
   * Revoke within one. The next Verify reconnects and maps its page. */
  if (mono != client->conn_checked_ms) {
    client->conn_checked_ms = mono;
    if (!client_conn_alive(client)) {
      client_break(client);
      client_region_drop(client);
      client->cache_stats.stale++;
      return 0;
    }
  }
  e = atomic_load_explicit(&rg->epoch, memory_order_acquire);
  if (e != client->cache_epoch) {
    if (client->cache_epoch != 0)
      client->cache_stats.flushes++;
    client->cache_epoch = e;
  }
  got = vcache_get(client->cache, token, e, client_wall_latest_ms, mono,
                   (int64_t)rg->last_used_granularity_ms, out, &ask->report);
  if (got == VCACHE_HIT) {
    client->cache_stats.hits++;
    return 1;
  }
  if (got == VCACHE_REPORT)
    client->cache_stats.reported += ask->report;
  else
    client->cache_stats.misses++;
  ask->epoch = e;
  ask->seq = client->region_seq;
  ask->cacheable = 1;
  return 0;
}

int tokend_client_cache_enable(tokend_client_t *client, size_t max_entries) {
  vcache_t *v;
  int rc;

  if (client == NULL || max_entries == 0)
    return TOKEND_EINVAL;
  if ((rc = vcache_new(max_entries, &v)) != 0)
    return client_fail(client, rc, "cannot make a cache of %zu answers",
                       max_entries);
  client_region_drop(client);
  vcache_free(client->cache);
  client->cache = v;
  client->mono_slack_ms = client_coarse_slack_ms(CLOCK_MONOTONIC_COARSE);
  memset(&client->cache_stats, 0, sizeof(client->cache_stats));
  rc = client_region_attach(client);
  if (rc != 0) {
    vcache_free(client->cache);
    client->cache = NULL;
    client->region_wanted = 0;
  }
  return rc;
}

void tokend_client_cache_stats(const tokend_client_t *client,
                               tokend_cache_stats_t *out) {
  memset(out, 0, sizeof(*out));
  if (client == NULL || client->cache == NULL)
    return;
  *out = client->cache_stats;
  out->entries = vcache_count(client->cache);
  out->capacity = vcache_capacity(client->cache);
  if (client->region != NULL) {
    out->generation = client->region->generation;
    out->fresh =
        client_region_fresh(client, client->region, client_coarse_ms());
  }
}

int tokend_client_verify(tokend_client_t *client, const char *token,
                         tokend_verify_result_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest verify = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__Response *resp;
  client_cache_ask_t ask = {0, 0, 0, 0};
  const char *why;
  int rc = 0;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  /* A hit fills every field; the 2.6 kB clearing is for the other paths
   * (it would be most of a hit's cost). */
  if (token != NULL && client->cache != NULL &&
      client_cache_lookup(client, token, out, &ask)) {
    client->grpc_status = TOKEND_GRPC_OK;
    client->errmsg[0] = '\0';
    client->has_propagation = 0;
    return 0;
  }
  memset(out, 0, sizeof(*out));
  if (token == NULL)
    return client_fail(client, TOKEND_EINVAL, "token is NULL");
  verify.token = (char *)token;
  /* The hits this token's cached answer gave since the last report: tokend
   * counts them (and this Verify moves last_used_at). Lost if the call
   * fails. */
  verify.cached_hits = ask.report;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &verify;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_VERIFY, &resp);
  if (rc != 0)
    return rc;
  rc = clientlib_verify_result(resp->verify, out, &why);
  if (rc != 0)
    client_fail(client, rc, "%s", why);
  /* Only under the region the epoch was read from (a reconnect during the
   * call dropped it). */
  else if (ask.cacheable && ask.seq == client->region_seq)
    vcache_put(client->cache, token, ask.epoch, client_coarse_ms(), out);
  client_response_free(resp);
  return rc;
}

int tokend_client_revoke(tokend_client_t *client, const char *domain,
                         const char *token_id, int64_t *revoked_at,
                         int *already_revoked) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RevokeRequest revoke = TOKEND__V1__REVOKE_REQUEST__INIT;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL)
    return TOKEND_EINVAL;
  if (domain == NULL || token_id == NULL)
    return client_fail(client, TOKEND_EINVAL, "domain or token id is NULL");
  revoke.domain = (char *)domain;
  revoke.token_id = (char *)token_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE;
  req.revoke = &revoke;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_REVOKE, &resp);
  if (rc != 0)
    return rc;
  if (revoked_at != NULL)
    *revoked_at = resp->revoke->revoked_at;
  if (already_revoked != NULL)
    *already_revoked = resp->revoke->already_revoked ? 1 : 0;
  client_note_propagation(client, resp->revoke->propagation);
  client_response_free(resp);
  return 0;
}

static int client_list(tokend_client_t *client, const char *domain,
                       uint32_t page_size, const char *page_token,
                       int include_revoked, int64_t expiring_within_ms,
                       tokend_token_list_t **out);

int tokend_client_list(tokend_client_t *client, const char *domain,
                       uint32_t page_size, const char *page_token,
                       int include_revoked, tokend_token_list_t **out) {
  return client_list(client, domain, page_size, page_token, include_revoked, 0,
                     out);
}

int tokend_client_list_expiring(tokend_client_t *client, const char *domain,
                                uint32_t page_size, const char *page_token,
                                int64_t within_ms, tokend_token_list_t **out) {
  if (client != NULL && within_ms <= 0)
    return client_fail(client, TOKEND_EINVAL, "within_ms must be > 0");
  return client_list(client, domain, page_size, page_token, 0, within_ms, out);
}

static int client_list(tokend_client_t *client, const char *domain,
                       uint32_t page_size, const char *page_token,
                       int include_revoked, int64_t expiring_within_ms,
                       tokend_token_list_t **out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListRequest list_req = TOKEND__V1__LIST_REQUEST__INIT;
  Tokend__V1__ListResponse *res;
  Tokend__V1__Response *resp;
  tokend_token_list_t *list;
  void *tokens;
  int rc;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  *out = NULL;
  if (domain == NULL)
    return client_fail(client, TOKEND_EINVAL, "domain is NULL");
  list_req.domain = (char *)domain;
  list_req.page_size = page_size;
  if (page_token != NULL)
    list_req.page_token = (char *)page_token;
  list_req.include_revoked = include_revoked ? 1 : 0;
  list_req.expiring_within_ms = expiring_within_ms;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST;
  req.list = &list_req;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_LIST, &resp);
  if (rc != 0)
    return rc;
  res = resp->list;

  list = calloc(1, sizeof(*list));
  if (list == NULL) {
    rc = client_fail(client, TOKEND_ENOMEM, "no memory for the token list");
    goto err_free_resp;
  }
  rc = client_copy_list(client, res->tokens, res->n_tokens,
                        sizeof(*list->tokens), client_copy_token_at, "tokens",
                        &tokens);
  if (rc != 0)
    goto err_free_list;
  list->tokens = tokens;
  list->n_tokens = res->n_tokens;
  rc = client_copy_page_token(client, list->next_page_token,
                              res->next_page_token);
  if (rc != 0)
    goto err_free_list;
  client_response_free(resp);
  *out = list;
  return 0;

err_free_list:
  tokend_token_list_free(list);
err_free_resp:
  client_response_free(resp);
  return rc;
}

void tokend_token_list_free(tokend_token_list_t *list) {
  if (list == NULL)
    return;
  free(list->tokens);
  free(list);
}

/* ---- identity, domain admins and the audit log ---- */

int tokend_client_set_actor(tokend_client_t *client, const char *actor) {
  if (client == NULL)
    return TOKEND_EINVAL;
  /* On failure the previous actor stays: clearing it would turn an
   * operator's later calls into break-glass calls. */
  if (client_copy_str(client->actor, sizeof(client->actor),
                      actor != NULL ? actor : "") != 0)
    return client_fail(client, TOKEND_EINVAL,
                       "actor is longer than %d characters",
                       TOKEND_USER_MAX_CHARS);
  return 0;
}

int tokend_client_whoami(tokend_client_t *client, tokend_whoami_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__WhoAmIRequest who = TOKEND__V1__WHO_AM_IREQUEST__INIT;
  Tokend__V1__WhoAmIResponse *res;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  memset(out, 0, sizeof(*out));
  req.method_case = TOKEND__V1__REQUEST__METHOD_WHO_AM_I;
  req.who_am_i = &who;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_WHO_AM_I, &resp);
  if (rc != 0)
    return rc;
  res = resp->who_am_i;
  if (client_copy_str(out->user, sizeof(out->user), res->user) != 0) {
    rc = client_fail(client, TOKEND_EPROTO,
                     "tokend sent a user name longer than %d characters",
                     TOKEND_USER_MAX_CHARS);
    memset(out, 0, sizeof(*out));
    goto done;
  }
  out->uid = res->uid;
  out->gid = res->gid;
  out->pid = res->pid;
  out->is_operator = res->operator_ ? 1 : 0;
  out->is_verifier = res->verifier ? 1 : 0;

done:
  client_response_free(resp);
  return rc;
}

int tokend_client_grant_admin(tokend_client_t *client, const char *domain,
                              const char *user, int64_t *granted_at,
                              int *already) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__GrantDomainAdminRequest grant =
      TOKEND__V1__GRANT_DOMAIN_ADMIN_REQUEST__INIT;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL)
    return TOKEND_EINVAL;
  if (domain == NULL || user == NULL)
    return client_fail(client, TOKEND_EINVAL, "domain or user is NULL");
  grant.domain = (char *)domain;
  grant.user = (char *)user;
  req.method_case = TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN;
  req.grant_domain_admin = &grant;

  rc = client_call(client, &req,
                   TOKEND__V1__RESPONSE__RESULT_GRANT_DOMAIN_ADMIN, &resp);
  if (rc != 0)
    return rc;
  if (granted_at != NULL)
    *granted_at = resp->grant_domain_admin->granted_at;
  if (already != NULL)
    *already = resp->grant_domain_admin->already_admin ? 1 : 0;
  client_note_propagation(client, resp->grant_domain_admin->propagation);
  client_response_free(resp);
  return 0;
}

int tokend_client_revoke_admin(tokend_client_t *client, const char *domain,
                               const char *user, int revoke_tokens,
                               uint32_t *tokens_revoked) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RevokeDomainAdminRequest revoke =
      TOKEND__V1__REVOKE_DOMAIN_ADMIN_REQUEST__INIT;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL)
    return TOKEND_EINVAL;
  if (domain == NULL || user == NULL)
    return client_fail(client, TOKEND_EINVAL, "domain or user is NULL");
  revoke.domain = (char *)domain;
  revoke.user = (char *)user;
  revoke.revoke_their_tokens = revoke_tokens ? 1 : 0;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN;
  req.revoke_domain_admin = &revoke;

  rc = client_call(client, &req,
                   TOKEND__V1__RESPONSE__RESULT_REVOKE_DOMAIN_ADMIN, &resp);
  if (rc != 0)
    return rc;
  if (tokens_revoked != NULL)
    *tokens_revoked = resp->revoke_domain_admin->tokens_revoked;
  client_note_propagation(client, resp->revoke_domain_admin->propagation);
  client_response_free(resp);
  return 0;
}

static int client_copy_admin_at(tokend_client_t *client, void *dst_item,
                                const void *src_list, size_t i) {
  const Tokend__V1__DomainAdmin *const *admins = src_list;
  const Tokend__V1__DomainAdmin *src = admins[i];
  tokend_admin_t *dst = dst_item;

  if (src == NULL ||
      client_copy_str(dst->user, sizeof(dst->user), src->user) != 0 ||
      client_copy_str(dst->granted_by, sizeof(dst->granted_by),
                      src->granted_by) != 0)
    return client_fail(client, TOKEND_EPROTO,
                       "tokend sent a user name longer than %d characters",
                       TOKEND_USER_MAX_CHARS);
  dst->granted_at = src->granted_at;
  return 0;
}

int tokend_client_list_admins(tokend_client_t *client, const char *domain,
                              tokend_admin_list_t **out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListDomainAdminsRequest list_req =
      TOKEND__V1__LIST_DOMAIN_ADMINS_REQUEST__INIT;
  Tokend__V1__ListDomainAdminsResponse *res;
  Tokend__V1__Response *resp;
  tokend_admin_list_t *list;
  void *admins;
  int rc;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  *out = NULL;
  if (domain == NULL)
    return client_fail(client, TOKEND_EINVAL, "domain is NULL");
  list_req.domain = (char *)domain;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS;
  req.list_domain_admins = &list_req;

  rc = client_call(client, &req,
                   TOKEND__V1__RESPONSE__RESULT_LIST_DOMAIN_ADMINS, &resp);
  if (rc != 0)
    return rc;
  res = resp->list_domain_admins;

  list = calloc(1, sizeof(*list));
  if (list == NULL) {
    rc = client_fail(client, TOKEND_ENOMEM, "no memory for the admin list");
    goto err_free_resp;
  }
  rc = client_copy_list(client, res->admins, res->n_admins,
                        sizeof(*list->admins), client_copy_admin_at, "admins",
                        &admins);
  if (rc != 0)
    goto err_free_list;
  list->admins = admins;
  list->n_admins = res->n_admins;
  client_response_free(resp);
  *out = list;
  return 0;

err_free_list:
  tokend_admin_list_free(list);
err_free_resp:
  client_response_free(resp);
  return rc;
}

void tokend_admin_list_free(tokend_admin_list_t *list) {
  if (list == NULL)
    return;
  free(list->admins);
  free(list);
}

static int client_copy_event_at(tokend_client_t *client, void *dst_item,
                                const void *src_list, size_t i) {
  const Tokend__V1__AuditEvent *const *events = src_list;
  const Tokend__V1__AuditEvent *src = events[i];
  tokend_audit_event_t *dst = dst_item;

  if (src == NULL ||
      client_copy_str(dst->actor, sizeof(dst->actor), src->actor) != 0 ||
      client_copy_str(dst->domain, sizeof(dst->domain), src->domain) != 0 ||
      client_copy_str(dst->token_id, sizeof(dst->token_id), src->token_id) !=
          0 ||
      client_copy_str(dst->method, sizeof(dst->method), src->method) != 0 ||
      client_copy_str(dst->detail, sizeof(dst->detail), src->detail) != 0)
    return client_fail(client, TOKEND_EPROTO,
                       "tokend sent an audit event that is too long or "
                       "malformed");
  dst->id = src->id;
  dst->time = src->time;
  dst->peer_uid = src->peer_uid;
  dst->peer_pid = src->peer_pid;
  dst->break_glass = src->break_glass ? 1 : 0;
  dst->code = src->code;
  /* tokend before schema 4 sent no count: each row was one call. */
  dst->count = src->count > 0 ? src->count : 1;
  return 0;
}

int tokend_client_list_audit(tokend_client_t *client, const char *domain,
                             int64_t since, uint32_t page_size,
                             const char *page_token,
                             tokend_audit_list_t **out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListAuditEventsRequest list_req =
      TOKEND__V1__LIST_AUDIT_EVENTS_REQUEST__INIT;
  Tokend__V1__ListAuditEventsResponse *res;
  Tokend__V1__Response *resp;
  tokend_audit_list_t *list;
  void *events;
  int rc;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  *out = NULL;
  if (domain == NULL)
    return client_fail(client, TOKEND_EINVAL, "domain is NULL");
  list_req.domain = (char *)domain;
  list_req.since = since;
  list_req.page_size = page_size;
  if (page_token != NULL)
    list_req.page_token = (char *)page_token;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS;
  req.list_audit_events = &list_req;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_LIST_AUDIT_EVENTS,
                   &resp);
  if (rc != 0)
    return rc;
  res = resp->list_audit_events;

  list = calloc(1, sizeof(*list));
  if (list == NULL) {
    rc = client_fail(client, TOKEND_ENOMEM, "no memory for the audit events");
    goto err_free_resp;
  }
  rc = client_copy_list(client, res->events, res->n_events,
                        sizeof(*list->events), client_copy_event_at, "events",
                        &events);
  if (rc != 0)
    goto err_free_list;
  list->events = events;
  list->n_events = res->n_events;
  rc = client_copy_page_token(client, list->next_page_token,
                              res->next_page_token);
  if (rc != 0)
    goto err_free_list;
  client_response_free(resp);
  *out = list;
  return 0;

err_free_list:
  tokend_audit_list_free(list);
err_free_resp:
  client_response_free(resp);
  return rc;
}

void tokend_audit_list_free(tokend_audit_list_t *list) {
  if (list == NULL)
    return;
  free(list->events);
  free(list);
}

int tokend_client_verify_audit(tokend_client_t *client, int64_t anchor_id,
                               const char *anchor_hash,
                               tokend_audit_check_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyAuditLogRequest vr =
      TOKEND__V1__VERIFY_AUDIT_LOG_REQUEST__INIT;
  Tokend__V1__VerifyAuditLogResponse *res;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  memset(out, 0, sizeof(*out));
  vr.anchor_id = anchor_id;
  if (anchor_hash != NULL)
    vr.anchor_hash = (char *)anchor_hash;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY_AUDIT_LOG;
  req.verify_audit_log = &vr;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_VERIFY_AUDIT_LOG,
                   &resp);
  if (rc != 0)
    return rc;
  res = resp->verify_audit_log;
  if (client_copy_str(out->problem, sizeof(out->problem), res->problem) != 0 ||
      client_copy_str(out->head_hash, sizeof(out->head_hash), res->head_hash) !=
          0) {
    rc = client_fail(client, TOKEND_EPROTO,
                     "tokend sent an audit check that is too long");
    memset(out, 0, sizeof(*out));
    goto done;
  }
  out->rows_checked = res->rows_checked;
  out->first_bad_id = res->first_bad_id;
  out->head_id = res->head_id;

done:
  client_response_free(resp);
  return rc;
}

int tokend_client_backup(tokend_client_t *client, const char *path,
                         tokend_backup_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__BackupRequest br = TOKEND__V1__BACKUP_REQUEST__INIT;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL || path == NULL || out == NULL)
    return TOKEND_EINVAL;
  memset(out, 0, sizeof(*out));
  br.path = (char *)path;
  req.method_case = TOKEND__V1__REQUEST__METHOD_BACKUP;
  req.backup = &br;
  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_BACKUP, &resp);
  if (rc != 0)
    return rc;
  if (client_copy_str(out->pepper_file, sizeof(out->pepper_file),
                      resp->backup->pepper_file) != 0) {
    rc = client_fail(client, TOKEND_EPROTO,
                     "tokend sent a pepper file name that is too long");
    memset(out, 0, sizeof(*out));
    goto done;
  }
  out->bytes = resp->backup->bytes;

done:
  client_response_free(resp);
  return rc;
}

void tokend_client_wipe(tokend_issued_t *issued) {
  if (issued != NULL)
    sodium_memzero(issued->token, sizeof(issued->token));
}

const char *tokend_verify_reason_name(tokend_verify_reason_t reason) {
  switch (reason) {
  case TOKEND_VERIFY_VALID:
    return "VALID";
  case TOKEND_VERIFY_MALFORMED:
    return "MALFORMED";
  case TOKEND_VERIFY_UNKNOWN:
    return "UNKNOWN";
  case TOKEND_VERIFY_REVOKED:
    return "REVOKED";
  case TOKEND_VERIFY_EXPIRED:
    return "EXPIRED";
  }
  return "UNSPECIFIED";
}

const char *tokend_token_status_name(tokend_token_status_t status) {
  switch (status) {
  case TOKEND_TOKEN_ACTIVE:
    return "ACTIVE";
  case TOKEND_TOKEN_REVOKED:
    return "REVOKED";
  case TOKEND_TOKEN_EXPIRED:
    return "EXPIRED";
  }
  return "UNSPECIFIED";
}

int tokend_client_server_status(tokend_client_t *client,
                                tokend_server_status_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ServerStatusRequest st = TOKEND__V1__SERVER_STATUS_REQUEST__INIT;
  Tokend__V1__ServerStatusResponse *res;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  memset(out, 0, sizeof(*out));
  req.method_case = TOKEND__V1__REQUEST__METHOD_SERVER_STATUS;
  req.server_status = &st;
  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_SERVER_STATUS,
                   &resp);
  if (rc != 0)
    return rc;
  res = resp->server_status;
  /* Longer strings than the struct holds are cut: they are for reading. */
  snprintf(out->version, sizeof(out->version), "%s", res->version);
  snprintf(out->store, sizeof(out->store), "%s", res->store);
  snprintf(out->host_id, sizeof(out->host_id), "%s", res->host_id);
  snprintf(out->index_digest, sizeof(out->index_digest), "%s",
           res->index_digest);
  snprintf(out->problem, sizeof(out->problem), "%s", res->problem);
  out->applied_revision = res->applied_revision;
  out->fresh = res->fresh ? 1 : 0;
  out->lease_left_ms = res->lease_left_ms;
  out->tokens = res->tokens;
  client_response_free(resp);
  return 0;
}

/* ---- The whole life of a token (issue 17) ---- */

/* Lookup by id or by secret (exactly one non-NULL). */
static int client_lookup(tokend_client_t *client, const char *domain,
                         const char *token_id, const char *token,
                         tokend_token_info_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__LookupRequest lookup = TOKEND__V1__LOOKUP_REQUEST__INIT;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  memset(out, 0, sizeof(*out));
  if (domain == NULL || (token_id == NULL && token == NULL))
    return client_fail(client, TOKEND_EINVAL, "domain or token is NULL");
  lookup.domain = (char *)domain;
  if (token_id != NULL)
    lookup.token_id = (char *)token_id;
  else
    lookup.token = (char *)token;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LOOKUP;
  req.lookup = &lookup;
  /* client_call wipes its packed copy of the request (the secret). */
  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_LOOKUP, &resp);
  if (rc != 0)
    return rc;
  if (client_copy_info(out, resp->lookup->info) != 0)
    rc = client_fail(client, TOKEND_EPROTO, CLIENT_BAD_DETAILS);
  client_response_free(resp);
  return rc;
}

int tokend_client_lookup(tokend_client_t *client, const char *domain,
                         const char *token_id, tokend_token_info_t *out) {
  if (client != NULL && token_id == NULL)
    return client_fail(client, TOKEND_EINVAL, "token_id is NULL");
  return client_lookup(client, domain, token_id, NULL, out);
}

int tokend_client_lookup_secret(tokend_client_t *client, const char *domain,
                                const char *token, tokend_token_info_t *out) {
  if (client != NULL && token == NULL)
    return client_fail(client, TOKEND_EINVAL, "token is NULL");
  return client_lookup(client, domain, NULL, token, out);
}

int tokend_client_edit(tokend_client_t *client, const char *domain,
                       const char *token_id, const tokend_edit_params_t *params,
                       tokend_token_info_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__EditRequest edit = TOKEND__V1__EDIT_REQUEST__INIT;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL || params == NULL)
    return TOKEND_EINVAL;
  if (out != NULL)
    memset(out, 0, sizeof(*out));
  if (domain == NULL || token_id == NULL ||
      (params->set_scopes && params->n_scopes > 0 && params->scopes == NULL))
    return client_fail(client, TOKEND_EINVAL,
                       "domain, token id or scopes is NULL");
  edit.domain = (char *)domain;
  edit.token_id = (char *)token_id;
  if (params->label != NULL) {
    edit.set_label = 1;
    edit.label = (char *)params->label;
  }
  if (params->metadata != NULL) {
    edit.set_metadata = 1;
    edit.metadata = (char *)params->metadata;
  }
  edit.set_expires_at = params->set_expires_at ? 1 : 0;
  edit.expires_at = params->expires_at;
  if (params->set_scopes) {
    edit.set_scopes = 1;
    edit.n_scopes = params->n_scopes;
    edit.scopes = (char **)params->scopes;
  }
  req.method_case = TOKEND__V1__REQUEST__METHOD_EDIT;
  req.edit = &edit;
  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_EDIT, &resp);
  if (rc != 0)
    return rc;
  if (out != NULL && client_copy_info(out, resp->edit->info) != 0)
    rc = client_fail(client, TOKEND_EPROTO, CLIENT_BAD_DETAILS);
  else
    client_note_propagation(client, resp->edit->propagation);
  client_response_free(resp);
  return rc;
}

int tokend_client_roll(tokend_client_t *client, const char *domain,
                       const char *token_id, int64_t grace_ms,
                       tokend_rolled_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RollRequest roll = TOKEND__V1__ROLL_REQUEST__INIT;
  Tokend__V1__RollResponse *res;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  memset(out, 0, sizeof(*out));
  if (domain == NULL || token_id == NULL)
    return client_fail(client, TOKEND_EINVAL, "domain or token id is NULL");
  roll.domain = (char *)domain;
  roll.token_id = (char *)token_id;
  roll.grace_ms = grace_ms;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ROLL;
  req.roll = &roll;
  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_ROLL, &resp);
  if (rc != 0)
    return rc;
  res = resp->roll;
  if (res->token == NULL || res->token[0] == '\0' ||
      client_copy_str(out->token, sizeof(out->token), res->token) != 0 ||
      client_copy_info(&out->info, res->info) != 0 ||
      client_copy_info(&out->previous, res->previous) != 0) {
    sodium_memzero(out, sizeof(*out));
    rc = client_fail(client, TOKEND_EPROTO, CLIENT_BAD_DETAILS);
  } else {
    client_note_propagation(client, res->propagation);
  }
  /* The answer held the new secret. */
  if (res->token != NULL)
    sodium_memzero(res->token, strlen(res->token));
  client_response_free(resp);
  return rc;
}

/* ---- issue 17: revocation in bulk ---- */

int tokend_client_bulk_revoke(tokend_client_t *client, const char *domain,
                              const tokend_bulk_select_t *sel,
                              uint32_t *revoked, uint32_t *already_revoked) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__BulkRevokeRequest bulk = TOKEND__V1__BULK_REVOKE_REQUEST__INIT;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL)
    return TOKEND_EINVAL;
  if (domain == NULL || sel == NULL ||
      (sel->n_token_ids > 0 && sel->token_ids == NULL))
    return client_fail(client, TOKEND_EINVAL,
                       "domain, selection or token ids is NULL");
  bulk.domain = (char *)domain;
  /* tokend checks the selection (exactly one, each valid) and names the
   * field it refuses. */
  bulk.n_token_ids = sel->n_token_ids;
  bulk.token_ids = (char **)sel->token_ids;
  if (sel->created_by != NULL)
    bulk.created_by = (char *)sel->created_by;
  bulk.all = sel->all ? 1 : 0;
  bulk.created_before = sel->created_before;
  req.method_case = TOKEND__V1__REQUEST__METHOD_BULK_REVOKE;
  req.bulk_revoke = &bulk;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_BULK_REVOKE,
                   &resp);
  if (rc != 0)
    return rc;
  if (revoked != NULL)
    *revoked = resp->bulk_revoke->revoked;
  if (already_revoked != NULL)
    *already_revoked = resp->bulk_revoke->already_revoked;
  client_note_propagation(client, resp->bulk_revoke->propagation);
  client_response_free(resp);
  return 0;
}

/* ---- issue 17: domain policies ---- */

int tokend_client_set_domain_policy(tokend_client_t *client, const char *domain,
                                    const tokend_domain_policy_t *policy) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__SetDomainPolicyRequest set =
      TOKEND__V1__SET_DOMAIN_POLICY_REQUEST__INIT;
  Tokend__V1__DomainPolicy pb = TOKEND__V1__DOMAIN_POLICY__INIT;
  char *scopes[TOKEND_MAX_SCOPES];
  Tokend__V1__Response *resp;
  size_t i;
  int rc;

  if (client == NULL)
    return TOKEND_EINVAL;
  if (domain == NULL || policy == NULL)
    return client_fail(client, TOKEND_EINVAL, "domain or policy is NULL");
  if (policy->n_allowed_scopes > TOKEND_MAX_SCOPES)
    return client_fail(client, TOKEND_EINVAL,
                       "policy.allowed_scopes: at most %d scopes",
                       TOKEND_MAX_SCOPES);
  for (i = 0; i < policy->n_allowed_scopes; i++)
    scopes[i] = (char *)policy->allowed_scopes[i];
  pb.max_lifetime_ms = policy->max_lifetime_ms;
  pb.require_expiry = policy->require_expiry ? 1 : 0;
  pb.n_allowed_scopes = policy->n_allowed_scopes;
  pb.allowed_scopes = scopes;
  pb.max_active_tokens = policy->max_active_tokens;
  set.domain = (char *)domain;
  set.policy = &pb;
  req.method_case = TOKEND__V1__REQUEST__METHOD_SET_DOMAIN_POLICY;
  req.set_domain_policy = &set;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_SET_DOMAIN_POLICY,
                   &resp);
  if (rc != 0)
    return rc;
  client_note_propagation(client, resp->set_domain_policy->propagation);
  client_response_free(resp);
  return 0;
}

int tokend_client_get_domain_policy(tokend_client_t *client, const char *domain,
                                    tokend_domain_policy_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__GetDomainPolicyRequest get =
      TOKEND__V1__GET_DOMAIN_POLICY_REQUEST__INIT;
  const Tokend__V1__DomainPolicy *pb;
  Tokend__V1__Response *resp;
  size_t i;
  int rc;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  memset(out, 0, sizeof(*out));
  if (domain == NULL)
    return client_fail(client, TOKEND_EINVAL, "domain is NULL");
  get.domain = (char *)domain;
  req.method_case = TOKEND__V1__REQUEST__METHOD_GET_DOMAIN_POLICY;
  req.get_domain_policy = &get;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_GET_DOMAIN_POLICY,
                   &resp);
  if (rc != 0)
    return rc;
  pb = resp->get_domain_policy->policy;
  if (pb != NULL) {
    if (pb->n_allowed_scopes > TOKEND_MAX_SCOPES)
      rc = client_fail(client, TOKEND_EPROTO,
                       "tokend sent more than %d allowed scopes",
                       TOKEND_MAX_SCOPES);
    for (i = 0; rc == 0 && i < pb->n_allowed_scopes; i++)
      if (client_copy_str(out->allowed_scopes[i],
                          sizeof(out->allowed_scopes[i]),
                          pb->allowed_scopes[i]) != 0)
        rc = client_fail(client, TOKEND_EPROTO,
                         "tokend sent a scope longer than %d characters",
                         TOKEND_SCOPE_MAX_CHARS);
    if (rc == 0 && client_copy_str(out->updated_by, sizeof(out->updated_by),
                                   pb->updated_by) != 0)
      rc = client_fail(client, TOKEND_EPROTO,
                       "tokend sent a user name longer than %d characters",
                       TOKEND_USER_MAX_CHARS);
    if (rc == 0) {
      out->n_allowed_scopes = pb->n_allowed_scopes;
      out->max_lifetime_ms = pb->max_lifetime_ms;
      out->require_expiry = pb->require_expiry != 0;
      out->max_active_tokens = pb->max_active_tokens;
      out->updated_at = pb->updated_at;
    }
  }
  client_response_free(resp);
  if (rc != 0)
    memset(out, 0, sizeof(*out));
  return rc;
}

/* ---- issue 17: leaked tokens ---- */

int tokend_client_revoke_leaked(tokend_client_t *client,
                                const char *const *tokens, size_t n,
                                const char *source, int *found,
                                uint32_t *revoked) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RevokeLeakedRequest leaked =
      TOKEND__V1__REVOKE_LEAKED_REQUEST__INIT;
  const Tokend__V1__RevokeLeakedResponse *res;
  Tokend__V1__Response *resp;
  size_t i;
  int rc;

  if (client == NULL)
    return TOKEND_EINVAL;
  if (tokens == NULL || n == 0 || n > TOKEND_LEAKED_MAX)
    return client_fail(client, TOKEND_EINVAL, "tokens: give 1 to %d secrets",
                       TOKEND_LEAKED_MAX);
  for (i = 0; i < n; i++)
    if (tokens[i] == NULL)
      return client_fail(client, TOKEND_EINVAL, "tokens[%zu] is NULL", i);
  /* client_call packs the request into the client's buffer, which it
   * wipes: the secrets leave no copy behind here. */
  leaked.n_tokens = n;
  leaked.tokens = (char **)tokens;
  if (source != NULL)
    leaked.source = (char *)source;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE_LEAKED;
  req.revoke_leaked = &leaked;

  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_REVOKE_LEAKED,
                   &resp);
  if (rc != 0)
    return rc;
  res = resp->revoke_leaked;
  if (res->n_found != n) {
    rc = client_fail(client, TOKEND_EPROTO,
                     "tokend answered for %zu secrets, not %zu", res->n_found,
                     n);
  } else {
    for (i = 0; found != NULL && i < n; i++)
      found[i] = res->found[i] ? 1 : 0;
    if (revoked != NULL)
      *revoked = res->revoked;
    client_note_propagation(client, res->propagation);
  }
  client_response_free(resp);
  return rc;
}

int tokend_client_tokens_previous_pepper(tokend_client_t *client,
                                         uint64_t *out) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ServerStatusRequest st = TOKEND__V1__SERVER_STATUS_REQUEST__INIT;
  Tokend__V1__Response *resp;
  int rc;

  if (client == NULL || out == NULL)
    return TOKEND_EINVAL;
  *out = 0;
  req.method_case = TOKEND__V1__REQUEST__METHOD_SERVER_STATUS;
  req.server_status = &st;
  rc = client_call(client, &req, TOKEND__V1__RESPONSE__RESULT_SERVER_STATUS,
                   &resp);
  if (rc != 0)
    return rc;
  *out = resp->server_status->tokens_previous_pepper;
  client_response_free(resp);
  return 0;
}
