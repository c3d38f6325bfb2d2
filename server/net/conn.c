#define _GNU_SOURCE /* struct ucred, SO_PEERGROUPS */
#include "net/conn.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/peer.h"
#include "frame.h"
#include "log.h"
#include "secret_buf.h"
#include "store/worker.h"
#include "tokend_error.h"

/* Every connection's read buffer while it holds no request larger than
 * this: what it reads into, and what it goes back to. */
#define CONN_READ_CHUNK 16384
/* An output buffer left larger than this once empty is freed rather than
 * kept for the next answer. */
#define CONN_WRITE_KEEP (64u * 1024u)

typedef struct {
  uv_write_t req;
  conn_t *conn;
  uint8_t *buf;
  size_t len;
  size_t data_len; /* bytes of answers in buf */
  int secret;
} conn_write_t;

/* Moves c's lifetime forward: OPEN -> DRAINING -> CLOSING -> CLOSED, with
 * DRAINING skippable; never back, never twice. */
static void conn_set_state(conn_t *c, conn_state_t to) {
  assert(to > c->state);
  assert(to != CONN_CLOSED || c->state == CONN_CLOSING);
  c->state = to;
  if (to >= CONN_CLOSING)
    c->sink.closed = 1;
}

static int conn_closing(const conn_t *c) { return c->state >= CONN_CLOSING; }

/* Read and output buffers hold token secrets (Verify requests, Issue
 * answers), so all of them are memory left out of core dumps (nodump.h).
 * Getting such memory costs system calls, so a conn takes its own once
 * (conn_home, from the transport's pool of such blocks) and keeps it: a read
 * buffer of CONN_READ_CHUNK and an output buffer of CONN_WRITE_HOME. Only
 * larger buffers, and output buffers made while both of its own are being
 * written, are mapped on demand. */
#define CONN_WRITE_HOME 16384
#define CONN_HOME_BYTES (CONN_READ_CHUNK + CONN_WRITE_HOME)

size_t conn_buffer_block_bytes(void) { return CONN_HOME_BYTES; }

/* The block comes from the transport's pool (--conn-buffer-pool), where the
 * last connection to close left its own: mapped anew only when none is. */
static uint8_t *conn_home(conn_t *c) {
  if (c->home == NULL)
    c->home = nodump_pool_get(&c->net->conn_pool);
  return c->home;
}

static uint8_t *conn_home_wbuf(const conn_t *c) {
  return c->home != NULL ? c->home + CONN_READ_CHUNK : NULL;
}

/* A read buffer: the conn's own (cap is then CONN_READ_CHUNK, which is
 * never asked for while it is in use), or one sized to one request, mapped
 * on its own so that it goes back to the kernel the moment it is unmapped
 * (from malloc's heap it could stay in tokend's resident memory). */
static uint8_t *rbuf_alloc(conn_t *c, size_t cap) {
  if (cap <= CONN_READ_CHUNK)
    return conn_home(c);
  return nodump_alloc(cap);
}

/* Requests carry tokens (Verify), so a buffer is wiped before it is let
 * go. */
static void rbuf_free(conn_t *c, uint8_t *buf, size_t cap) {
  if (buf == NULL)
    return;
  sodium_memzero(buf, cap);
  if (buf != c->home)
    nodump_free(buf, cap);
}

/* Output buffers, for secret_buf_reserve_in (which asks for
 * CONN_WRITE_HOME, then doubles): the conn's own if free, else its spare,
 * else a new mapping. */
static void *wbuf_alloc(void *ctx, size_t len) {
  conn_t *c = ctx;
  uint8_t *p;

  if (len <= CONN_WRITE_HOME) {
    if (!c->home_wbuf_busy && conn_home(c) != NULL) {
      c->home_wbuf_busy = 1;
      return conn_home_wbuf(c);
    }
    if (c->wspare != NULL) {
      p = c->wspare;
      c->wspare = NULL;
      return p;
    }
  }
  return nodump_alloc(len);
}

/* Takes back an output buffer (wiped already if it held a secret). */
static void wbuf_release(void *ctx, void *p, size_t len) {
  conn_t *c = ctx;

  if (p == NULL)
    return;
  if (p == conn_home_wbuf(c))
    c->home_wbuf_busy = 0;
  else if (len == CONN_WRITE_HOME && c->wspare == NULL)
    c->wspare = p;
  else
    nodump_free(p, len);
}

/* What c's read buffer counts against --max-read-memory. */
static size_t rbuf_counted(size_t cap) {
  return cap > CONN_READ_CHUNK ? cap : 0;
}

/* Moves c's input into a buffer of exactly cap bytes (at least rlen). */
static int conn_rbuf_resize(conn_t *c, size_t cap) {
  uint8_t *nb = rbuf_alloc(c, cap);

  if (nb == NULL)
    return TOKEND_ENOMEM;
  if (c->rlen > 0)
    memcpy(nb, c->rbuf, c->rlen);
  rbuf_free(c, c->rbuf, c->rcap);
  c->net->read_buf_bytes -= rbuf_counted(c->rcap);
  c->net->read_buf_bytes += rbuf_counted(cap);
  c->rbuf = nb;
  c->rcap = cap;
  return 0;
}

/* Sizes c's read buffer for what it is waiting for, once every complete
 * frame in it has been handled: the whole of a partial frame larger than
 * CONN_READ_CHUNK (checked against --max-read-memory before it is
 * allocated), else CONN_READ_CHUNK again, so that a connection that sent
 * one large request and went quiet holds 16 KiB, not the request's size
 * (Redis trims its query buffers the same way). Returns 0, TOKEND_EMSGSIZE
 * with msg filled (the frame would take read buffers past the limit; the
 * buffer is unchanged) or TOKEND_ENOMEM. */
static int conn_rbuf_fit(conn_t *c, char *msg, size_t len) {
  net_t *n = c->net;
  size_t want = CONN_READ_CHUNK, total, others;
  const uint8_t *body;
  uint32_t body_len;

  if (frame_decode(c->rbuf, c->rlen, n->cfg->max_frame_bytes, &body, &body_len,
                   &total) != FRAME_NEED_MORE)
    return 0; /* whole frames still wait (held): handled later */
  if (total > want)
    want = total;
  if (c->rbuf == NULL || want == c->rcap)
    return 0;
  if (want > CONN_READ_CHUNK) {
    others = n->read_buf_bytes - rbuf_counted(c->rcap);
    if (others > n->cfg->max_read_memory ||
        want > n->cfg->max_read_memory - others) {
      snprintf(msg, len,
               "a request of %zu bytes would take read buffers to %zu bytes, "
               "past --max-read-memory %u; try again later",
               want, others + want, (unsigned)n->cfg->max_read_memory);
      return TOKEND_EMSGSIZE;
    }
  }
  return conn_rbuf_resize(c, want);
}

/* Frees c once closed and nothing holds it: no store job owes it an
 * answer, no Verify for it is queued. */
static void conn_maybe_free(conn_t *c) {
  if (c->state != CONN_CLOSED || c->jobs > 0 || c->sink.queued > 0)
    return;
  if (c->wbuf_secret && c->wbuf != NULL)
    sodium_memzero(c->wbuf, c->wcap);
  rbuf_free(c, c->rbuf, c->rcap);
  c->net->read_buf_bytes -= rbuf_counted(c->rcap);
  wbuf_release(c, c->wbuf, c->wcap);
  nodump_free(c->wspare, CONN_WRITE_HOME);
  /* No secret is left in it: the read buffer is wiped when let go, an
   * output buffer once it held one. */
  nodump_pool_put(&c->net->conn_pool, c->home);
  free(c->later);
  free(c);
}

static void conn_end_waiting(conn_t *c);

static void on_close(uv_handle_t *handle) {
  conn_t *c = container_of(handle, conn_t, pipe);
  net_t *n = c->net;

  if (c->pass_fd >= 0) {
    close(c->pass_fd);
    c->pass_fd = -1;
  }
  net_conn_removed(n, c);
  conn_set_state(c, CONN_CLOSED);
  if (c->n_later > 0)
    conn_end_waiting(c); /* may free c */
  else
    conn_maybe_free(c);
  n->h.closed(n->h.ctx);
}

void conn_close(conn_t *c) {
  if (conn_closing(c))
    return;
  conn_set_state(c, CONN_CLOSING);
  log_debug("conn %llu: closed", (unsigned long long)c->sink.id);
  /* Pending writes are cancelled; their callbacks run before on_close. */
  uv_close((uv_handle_t *)&c->pipe, on_close);
}

static void conn_status(conn_t *c, int grpc_code, const char *msg) {
  c->net->h.status(c->net->h.ctx, &c->sink, grpc_code, msg);
}

static int conn_process(conn_t *c);
static void conn_set_reading(conn_t *c, int on);
static int conn_may_read(const conn_t *c);
static void conn_flush(conn_t *c);

/* Must c's next request wait? At the pending-calls limit, and while more
 * than --max-queued-bytes of answers are unread. */
static int conn_must_hold(const conn_t *c) {
  const config_t *cfg = c->net->cfg;

  return c->jobs >= cfg->max_pending_calls ||
         c->out_bytes > cfg->max_queued_bytes;
}

/* So answers are made as fast as the peer reads them, never many pages in
 * one burst: what waits is store results (rows, bounded by
 * --max-list-memory), not encoded bytes. */
static int sink_answer_later(sink_t *k, store_job_t *job) {
  conn_t *c = container_of(k, conn_t, sink);
  store_job_t **nl;
  size_t cap;

  /* Shutting down: answers go out now, and --shutdown-timeout-ms bounds
   * how long a peer that does not read them is waited for. */
  if (conn_closing(c) || job == c->answering || c->net->stopping ||
      (c->n_later == 0 && c->out_bytes <= c->net->cfg->max_queued_bytes))
    return 0;
  if (c->n_later == c->later_cap) {
    cap = c->later_cap ? c->later_cap * 2 : 8;
    nl = realloc(c->later, cap * sizeof(*nl));
    if (nl == NULL)
      return 0; /* answered now: memory over order */
    c->later = nl;
    c->later_cap = cap;
  }
  c->later[c->n_later++] = job;
  return 1;
}

/* Makes the answers that wait, oldest first, while the peer's unread
 * answers stay within --max-queued-bytes (all of them once the server is
 * stopping). Each done callback ends its job, which cannot free c: the jobs
 * still waiting keep it, and c is open. */
static void conn_answer_waiting(conn_t *c) {
  store_job_t *job;

  if (c->answering != NULL)
    return;
  while (c->n_later > 0 && !conn_closing(c) &&
         (c->out_bytes <= c->net->cfg->max_queued_bytes || c->net->stopping)) {
    job = c->later[0];
    memmove(c->later, c->later + 1, --c->n_later * sizeof(*c->later));
    c->answering = job;
    job->done(job);
    c->answering = NULL;
  }
}

/* At close: every job whose answer waits is ended (its done callback sees
 * the sink closed). The last may free c, so c is not touched after. */
static void conn_end_waiting(conn_t *c) {
  store_job_t **later = c->later;
  size_t n = c->n_later, i;

  c->later = NULL;
  c->n_later = c->later_cap = 0;
  for (i = 0; i < n; i++)
    later[i]->done(later[i]);
  free(later);
}

/* Held: once half the calls are answered and the peer has read most of its
 * answers, go on with the requests already buffered, then read again. */
static void conn_resume(conn_t *c) {
  const config_t *cfg = c->net->cfg;

  if (!c->held || conn_closing(c) || c->resuming ||
      c->jobs > cfg->max_pending_calls / 2 ||
      c->out_bytes > cfg->max_queued_bytes / 2)
    return;
  c->held = 0;
  c->resuming = 1;
  if (conn_process(c) != 0) {
    c->resuming = 0;
    conn_close_when_sent(c);
    return;
  }
  /* The peer hung up its sending side while held: everything it sent is
   * handled now, so it closes once answered. */
  if (c->peer_eof && !c->held && c->state == CONN_OPEN)
    conn_set_state(c, CONN_DRAINING);
  if (conn_may_read(c))
    conn_set_reading(c, 1);
  conn_flush(c);
  c->resuming = 0;
}

static void sink_hold(sink_t *k) {
  conn_t *c = container_of(k, conn_t, sink);

  c->jobs++;
}

static void sink_release(sink_t *k) {
  conn_t *c = container_of(k, conn_t, sink);

  assert(c->jobs > 0);
  c->jobs--;
  if (c->state == CONN_CLOSED) {
    conn_maybe_free(c);
    return;
  }
  conn_resume(c);
  conn_flush(c);
}

/* rpc is done answering for now (its last queued Verify for c, too). */
static void sink_flush(sink_t *k) {
  conn_t *c = container_of(k, conn_t, sink);

  if (c->state == CONN_CLOSED)
    conn_maybe_free(c);
  else
    conn_flush(c);
}

/* A conn told to close once its answers are out closes when nothing is
 * queued, nothing is being written and nothing owes it an answer. */
static int conn_done_sending(const conn_t *c) {
  return c->state == CONN_DRAINING && c->writes == 0 && c->wlen == 0 &&
         c->jobs == 0 && c->sink.queued == 0;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void conn_set_reading(conn_t *c, int on) {
  if (conn_closing(c) || c->reading == on)
    return;
  if (on) {
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0) {
      conn_close(c);
      return;
    }
    /* A partial frame's clock restarts: the wait was ours, not the peer's. */
    if (c->rlen > 0)
      c->partial_since = uv_now(c->pipe.loop);
  } else {
    uv_read_stop((uv_stream_t *)&c->pipe);
  }
  c->reading = on;
}

/* May c read more requests? Only while open, and not paused, held, at the
 * peer's end of input or stopping. */
static int conn_may_read(const conn_t *c) {
  return c->state == CONN_OPEN && !c->paused && !c->held && !c->peer_eof &&
         !c->net->stopping;
}

void conn_stop_reading(conn_t *c) {
  conn_set_reading(c, 0);
  /* Answers held for a slow reader are owed too: made now, so that the
   * store's jobs end and shutdown can proceed. */
  if (c->n_later > 0) {
    conn_answer_waiting(c);
    conn_flush(c);
  }
}

void conn_close_when_sent(conn_t *c) {
  if (c->state == CONN_OPEN)
    conn_set_state(c, CONN_DRAINING);
  conn_stop_reading(c);
  conn_flush(c);
}

/* Both buffers may hold token secrets (answers to Issue, Verify requests),
 * so neither leaves a copy behind when it grows (secret_buf_reserve) or
 * moves its contents (secret_buf_consume). */
static int wbuf_reserve(conn_t *c, size_t extra) {
  const secret_buf_mem_t mem = {wbuf_alloc, wbuf_release, c};
  uint8_t *nb = secret_buf_reserve_in(&mem, c->wbuf, &c->wcap, c->wlen, extra,
                                      1, CONN_WRITE_HOME, c->wbuf_secret);

  if (nb == NULL)
    return TOKEND_ENOMEM;
  c->wbuf = nb;
  return 0;
}

static uint8_t *sink_frame_begin(sink_t *k, size_t body_len) {
  conn_t *c = container_of(k, conn_t, sink);

  if (conn_closing(c))
    return NULL;
  if (body_len > UINT32_MAX ||
      wbuf_reserve(c, TOKEND_FRAME_HEADER_BYTES + body_len) != 0) {
    log_error("conn %llu: out of memory for a response; closing",
              (unsigned long long)c->sink.id);
    conn_close(c);
    return NULL;
  }
  frame_encode_header(c->wbuf + c->wlen, (uint32_t)body_len);
  return c->wbuf + c->wlen + TOKEND_FRAME_HEADER_BYTES;
}

static int sink_frame_end(sink_t *k, size_t body_len, int secret) {
  conn_t *c = container_of(k, conn_t, sink);

  c->wlen += TOKEND_FRAME_HEADER_BYTES + body_len;
  c->out_bytes += TOKEND_FRAME_HEADER_BYTES + body_len;
  if (secret)
    c->wbuf_secret = 1;
  /* A peer that never reads cannot make us buffer without bound. */
  if (c->out_bytes > c->net->cfg->max_queued_bytes_hard) {
    log_warn("conn %llu: %zu bytes of answers unread (hard limit %u); "
             "closing",
             (unsigned long long)c->sink.id, c->out_bytes,
             (unsigned)c->net->cfg->max_queued_bytes_hard);
    conn_close(c);
    return TOKEND_EMSGSIZE;
  }
  return 0;
}

static int sink_pass_fd(sink_t *k, int fd) {
  conn_t *c = container_of(k, conn_t, sink);
  int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);

  if (dup_fd < 0)
    return TOKEND_EUNAVAIL;
  if (c->pass_fd >= 0)
    close(c->pass_fd);
  c->pass_fd = dup_fd;
  return 0;
}

static const sink_ops_t conn_sink_ops = {
    .frame_begin = sink_frame_begin,
    .frame_end = sink_frame_end,
    .flush = sink_flush,
    .hold = sink_hold,
    .release = sink_release,
    .answer_later = sink_answer_later,
    .pass_fd = sink_pass_fd,
};

/* After answers left: close if that was all, resume a paused peer. */
static void conn_after_write(conn_t *c) {
  c->last_active = uv_now(c->pipe.loop);
  if (conn_done_sending(c)) {
    conn_close(c);
    return;
  }
  /* Backpressure: resume once the peer has taken most of its answers. */
  if (c->paused && c->out_bytes <= c->net->cfg->max_queued_bytes / 2) {
    c->paused = 0;
    if (conn_may_read(c))
      conn_set_reading(c, 1);
  }
  conn_answer_waiting(c);
  conn_resume(c);
}

static void on_write(uv_write_t *req, int status) {
  conn_write_t *w = container_of(req, conn_write_t, req);
  conn_t *c = w->conn;

  if (w->secret)
    sodium_memzero(w->buf, w->len);
  c->out_bytes -= w->data_len;
  wbuf_release(c, w->buf, w->len);
  free(w);
  assert(c->writes > 0);
  c->writes--;
  if (status < 0 && status != UV_ECANCELED) {
    log_debug("conn %llu: write failed: %s", (unsigned long long)c->sink.id,
              uv_strerror(status));
    conn_close(c);
    return;
  }
  conn_after_write(c);
}

/* uv_try_write() of the whole buffer, with c->pass_fd riding on its first
 * byte (libuv passes descriptors only on IPC pipes, which tokend's are
 * not, so this one write goes around it; nothing is queued in libuv, so
 * order holds). Once sent, our duplicate is closed. */
static int conn_send_with_fd(conn_t *c) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct iovec iov = {.iov_base = c->wbuf, .iov_len = c->wlen};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  struct cmsghdr *cm;
  uv_os_fd_t sock;
  ssize_t n;

  if (uv_fileno((uv_handle_t *)&c->pipe, &sock) != 0)
    return UV_EBADF;
  memset(&ctl, 0, sizeof(ctl));
  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof(ctl.buf);
  cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &c->pass_fd, sizeof(int));
  do
    n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK ? UV_EAGAIN : -errno;
  close(c->pass_fd);
  c->pass_fd = -1;
  return (int)n;
}

/* Writes what the socket takes at once, without queueing a request (no
 * allocation, no epoll change): the common case of a peer that reads. The
 * rest, if any, stays at the front of wbuf. Returns 0 or a libuv error. */
static int conn_try_write(conn_t *c) {
  uv_buf_t buf = uv_buf_init((char *)c->wbuf, (unsigned)c->wlen);
  int n;

  /* Behind queued writes, order demands the queue. */
  if (c->writes > 0)
    return 0;
  if (c->pass_fd >= 0)
    n = conn_send_with_fd(c);
  else
    n = uv_try_write((uv_stream_t *)&c->pipe, &buf, 1);
  if (n == UV_EAGAIN)
    return 0;
  if (n < 0)
    return n;
  secret_buf_consume(c->wbuf, c->wlen, (size_t)n, c->wbuf_secret);
  c->wlen -= (size_t)n;
  c->out_bytes -= (size_t)n;
  if (c->wlen == 0)
    c->wbuf_secret = 0;
  return 0;
}

/* Hands the output buffer to the socket in one write. */
static void conn_flush(conn_t *c) {
  conn_write_t *w;
  uv_buf_t buf;
  int err;

  if (conn_closing(c))
    return;
  if (c->wlen == 0) {
    if (conn_done_sending(c))
      conn_close(c);
    return;
  }
  if ((err = conn_try_write(c)) != 0) {
    log_debug("conn %llu: write failed: %s", (unsigned long long)c->sink.id,
              uv_strerror(err));
    conn_close(c);
    return;
  }
  if (c->wlen == 0) {
    /* A large answer went out whole: do not keep its buffer. */
    if (c->wcap > CONN_WRITE_KEEP) {
      wbuf_release(c, c->wbuf, c->wcap);
      c->wbuf = NULL;
      c->wcap = 0;
    }
    conn_after_write(c);
    return;
  }
  w = malloc(sizeof(*w));
  if (w == NULL) {
    conn_close(c);
    return;
  }
  /* The write request takes the buffer; the conn starts a new one. A
   * descriptor cannot ride on a queued libuv write: the peer gets the
   * bytes without it (and so does not cache). */
  if (c->pass_fd >= 0) {
    close(c->pass_fd);
    c->pass_fd = -1;
  }
  w->conn = c;
  w->buf = c->wbuf;
  w->len = c->wcap;
  w->data_len = c->wlen;
  w->secret = c->wbuf_secret;
  buf = uv_buf_init((char *)c->wbuf, (unsigned)c->wlen);
  c->wbuf = NULL;
  c->wlen = c->wcap = 0;
  c->wbuf_secret = 0;
  err = uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, on_write);
  if (err != 0) {
    log_debug("conn %llu: write failed: %s", (unsigned long long)c->sink.id,
              uv_strerror(err));
    if (w->secret)
      sodium_memzero(w->buf, w->len);
    c->out_bytes -= w->data_len;
    wbuf_release(c, w->buf, w->len);
    free(w);
    conn_close(c);
    return;
  }
  c->writes++;
  /* Backpressure: a peer that does not read its answers is not read from
   * until it does. */
  if (c->out_bytes > c->net->cfg->max_queued_bytes && !c->paused) {
    log_debug("conn %llu: %zu bytes of answers unread; pausing reads",
              (unsigned long long)c->sink.id, c->out_bytes);
    c->paused = 1;
    conn_set_reading(c, 0);
  }
}

/* conn_process has sized the buffer for the frame being read (or its
 * header), so there is always room here but for the first read. */
static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  conn_t *c = container_of(handle, conn_t, pipe);

  (void)suggested;
  if (c->rbuf == NULL) {
    if ((c->rbuf = rbuf_alloc(c, CONN_READ_CHUNK)) == NULL) {
      *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
      return;
    }
    c->rcap = CONN_READ_CHUNK;
  }
  if (c->rcap == c->rlen) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

/* Parses every complete frame in the buffer, then trims once. Returns 0, or
 * non-zero when the connection must close after its answers are sent. */
static int conn_process(conn_t *c) {
  net_t *n = c->net;
  size_t off = 0, consumed;
  const uint8_t *body;
  uint32_t body_len;
  frame_result_t r;
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  int stop = 0;

  n->h.burst(n->h.ctx);
  while (!stop && c->state == CONN_OPEN) {
    /* A peer cannot queue unbounded work for the store, nor have answers
     * made faster than it reads them: stop here and read no more until
     * conn_resume. */
    if (conn_must_hold(c)) {
      c->held = 1;
      conn_set_reading(c, 0);
      break;
    }
    r = frame_decode(c->rbuf + off, c->rlen - off, n->cfg->max_frame_bytes,
                     &body, &body_len, &consumed);
    if (r == FRAME_NEED_MORE)
      break;
    if (r == FRAME_ERR_TOO_LARGE) {
      snprintf(msg, sizeof(msg),
               "frame of %u bytes exceeds the maximum of %u bytes",
               (unsigned)body_len, (unsigned)n->cfg->max_frame_bytes);
      log_warn("conn %llu: %s; closing", (unsigned long long)c->sink.id, msg);
      conn_status(c, TOKEND_GRPC_RESOURCE_EXHAUSTED, msg);
      stop = 1;
      break;
    }
    if (r == FRAME_ERR_BAD_FLAG) {
      log_warn("conn %llu: frame flag byte 0x%02x (compression is not "
               "supported); closing",
               (unsigned long long)c->sink.id, c->rbuf[off]);
      conn_status(c, TOKEND_GRPC_INVALID_ARGUMENT,
                  "compressed-flag must be 0: compression is not supported");
      stop = 1;
      break;
    }
    if (n->h.frame(n->h.ctx, &c->sink, body, body_len) != 0)
      stop = 1;
    off += consumed;
  }
  if (off > 0) {
    secret_buf_consume(c->rbuf, c->rlen, off, 1);
    c->rlen -= off;
  }
  if (!stop && !conn_closing(c)) {
    int err = conn_rbuf_fit(c, msg, sizeof(msg));

    if (err == TOKEND_EMSGSIZE) {
      log_warn("conn %llu: %s; closing", (unsigned long long)c->sink.id, msg);
      conn_status(c, TOKEND_GRPC_RESOURCE_EXHAUSTED, msg);
      stop = 1;
    } else if (err != 0) {
      log_error("conn %llu: out of memory for a request; closing",
                (unsigned long long)c->sink.id);
      conn_status(c, TOKEND_GRPC_RESOURCE_EXHAUSTED, "out of memory");
      stop = 1;
    }
  }
  /* The read timeout runs from the first byte of input not yet handled:
   * none left, no clock; frames handled, the rest starts its own. Every
   * caller (a read, or a resume after the pending-calls hold) passes
   * here. */
  if (c->rlen == 0)
    c->partial_since = 0;
  else if (off > 0 || c->partial_since == 0)
    c->partial_since = uv_now(c->pipe.loop);
  return stop;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = container_of(stream, conn_t, pipe);

  (void)buf;
  if (nread < 0) {
    if (nread != UV_EOF)
      log_debug("conn %llu: read failed: %s", (unsigned long long)c->sink.id,
                uv_strerror((int)nread));
    if (nread == UV_EOF) {
      /* The peer is done sending (maybe only half-closed): it still gets
       * the answers it is owed, to requests held back too, then the
       * connection closes. */
      c->peer_eof = 1;
      if (c->held)
        conn_set_reading(c, 0);
      else
        conn_close_when_sent(c);
    } else {
      conn_close(c);
    }
    return;
  }
  if (nread == 0)
    return;
  c->rlen += (size_t)nread;
  c->last_active = uv_now(c->pipe.loop);
  if (conn_process(c) != 0) {
    conn_close_when_sent(c);
    return;
  }
  conn_flush(c);
}

void conn_check_timeouts(conn_t *c, uint64_t now) {
  const config_t *cfg = c->net->cfg;
  char msg[TOKEND_STATUS_MESSAGE_BYTES];

  if (conn_closing(c))
    return;
  if (c->reading && c->partial_since != 0 &&
      now - c->partial_since >= cfg->read_timeout_ms) {
    snprintf(msg, sizeof(msg),
             "request incomplete after %u ms (%zu bytes received); closing",
             (unsigned)cfg->read_timeout_ms, c->rlen);
    log_warn("conn %llu: %s", (unsigned long long)c->sink.id, msg);
    conn_status(c, TOKEND_GRPC_DEADLINE_EXCEEDED, msg);
    conn_flush(c);
    conn_close(c);
    return;
  }
  if (cfg->idle_timeout_ms > 0 && c->rlen == 0 && c->jobs == 0 &&
      c->sink.queued == 0 && c->writes == 0 &&
      now - c->last_active >= cfg->idle_timeout_ms) {
    log_debug("conn %llu: idle for %u ms; closing",
              (unsigned long long)c->sink.id, (unsigned)cfg->idle_timeout_ms);
    conn_close(c);
  }
}

/* Allocates a conn and links it into n's list; on_close unlinks it, so
 * once this returns every failure path is conn_close(). */
static conn_t *conn_new(net_t *n) {
  conn_t *c = calloc(1, sizeof(*c));

  if (c == NULL)
    return NULL;
  c->net = n;
  c->state = CONN_OPEN;
  c->pass_fd = -1;
  c->sink.ops = &conn_sink_ops;
  c->sink.id = ++n->next_conn_id;
  if (uv_pipe_init(n->loop, &c->pipe, 0) != 0) {
    free(c);
    return NULL;
  }
  c->next = n->conns;
  if (n->conns != NULL)
    n->conns->prev = c;
  n->conns = c;
  n->n_conns++;
  c->last_active = uv_now(n->loop);
  return c;
}

/* Reads the peer's credentials from the kernel and decides its roles
 * (core/peer.c, shared with the HTTP face's Unix socket). */
static int conn_identify(conn_t *c) {
  uv_os_fd_t fd;

  if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
      peer_identify(fd, c->net->cfg, &c->sink.peer) != 0) {
    log_warn("conn %llu: cannot read peer credentials; closing",
             (unsigned long long)c->sink.id);
    return TOKEND_EPERM;
  }
  return 0;
}

/* Starts serving c, or tells it which connection limit it met and closes
 * it. */
static int conn_start(conn_t *c) {
  char msg[TOKEND_STATUS_MESSAGE_BYTES];

  if (conn_identify(c) != 0) {
    conn_close(c);
    return TOKEND_EPERM;
  }
  if (net_admit(c->net, c, msg, sizeof(msg)) != 0) {
    net_log_refusal(c->net, msg);
    conn_status(c, TOKEND_GRPC_RESOURCE_EXHAUSTED, msg);
    conn_close_when_sent(c);
    return 0;
  }
  conn_set_reading(c, 1);
  if (conn_closing(c))
    return TOKEND_EIO;
  log_debug("conn %llu: accepted uid=%u pid=%d%s",
            (unsigned long long)c->sink.id, (unsigned)c->sink.peer.uid,
            (int)c->sink.peer.pid, c->sink.peer.is_operator ? " operator" : "");
  return 0;
}

int conn_open_fd(net_t *n, int fd, conn_t **out) {
  conn_t *c;
  int err;

  /* Like the listener, a stopping server takes no new peers. */
  if (n->stopping) {
    close(fd);
    return TOKEND_EUNAVAIL;
  }
  c = conn_new(n);
  if (c == NULL) {
    close(fd);
    return TOKEND_ENOMEM;
  }
  if ((err = uv_pipe_open(&c->pipe, fd)) != 0) {
    log_warn("cannot open fd %d: %s", fd, uv_strerror(err));
    conn_close(c);
    return TOKEND_EIO;
  }
  if ((err = conn_start(c)) != 0)
    return err;
  if (out != NULL)
    *out = c;
  return 0;
}
