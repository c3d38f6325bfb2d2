/* tokend's limits, each hit from outside over raw sockets: connections
 * over --max-connections, peers that stall or trickle a frame
 * (--read-timeout-ms), idle peers (--idle-timeout-ms), peers that never
 * read their answers (--max-queued-bytes), and a small frame that would
 * decode into a huge request (--max-request-memory). The frame-size limit
 * is test_protocol's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "harness.h"
#include "tokend_error.h"

#define DOMAIN "limits.example"

#define MAX_CONNS 4
#define READ_TIMEOUT_MS 300
#define IDLE_TIMEOUT_MS 300
/* How often the trickling peer sends a byte: well inside the read timeout,
 * so only a timeout counted from the frame's first byte can stop it. */
#define TRICKLE_INTERVAL_MS 100
/* How often an "active" peer makes a call: well inside both timeouts. */
#define ACTIVE_INTERVAL_MS 50

#define QUEUED_SOFT "65536"
#define QUEUED_HARD "1048576"
/* A peer that pipelines without reading stops being able to send once
 * tokend stops reading it; this long without progress means it has. */
#define FLOOD_STALL_MS 500
/* Never send more than this, whatever happens. */
#define FLOOD_MAX_BYTES (64L * 1024 * 1024)
#define FLOOD_MAX_GROWTH_KIB (64L * 1024)

#define REQUEST_MEMORY "65536"
/* Empty repeated strings are 2 bytes each on the wire: 400 KB, under the
 * default --max-frame-bytes (1 MiB), that would decode into 200,000
 * pointers and 200,000 allocations. */
#define EMPTY_SCOPES 200000
/* What reading that one frame may add to tokend's peak memory: its read
 * buffer, not the decoded request. */
#define DECODE_MAX_GROWTH_KIB (3L * 1024)

/* Every test gets f->token, a valid token issued in setup. */
static int setup_with(void **state, const char *const *args) {
  return th_fixture_setup_token(state, args, DOMAIN, "limits");
}

static int setup_max_conns(void **state) {
  static const char *const args[] = {"--max-connections", "4", NULL};

  return setup_with(state, args);
}

static int setup_read_timeout(void **state) {
  static const char *const args[] = {"--read-timeout-ms", "300", NULL};

  return setup_with(state, args);
}

static int setup_idle_timeout(void **state) {
  static const char *const args[] = {"--idle-timeout-ms", "300", NULL};

  return setup_with(state, args);
}

static int setup_no_idle_timeout(void **state) {
  static const char *const args[] = {"--idle-timeout-ms", "0", NULL};

  return setup_with(state, args);
}

static int setup_backpressure(void **state) {
  static const char *const args[] = {"--max-queued-bytes", QUEUED_SOFT,
                                     "--max-queued-bytes-hard", QUEUED_HARD,
                                     NULL};

  return setup_with(state, args);
}

static int setup_request_memory(void **state) {
  static const char *const args[] = {"--max-request-memory", REQUEST_MEMORY,
                                     NULL};

  return setup_with(state, args);
}

/* A new connection that tokend serves. A connection that was just closed
 * may still hold its slot for a moment (tokend has not read the EOF yet),
 * so a refusal is retried until timeout_ms; anything but a refusal fails. */
static int connect_served(const th_fixture_t *f, int timeout_ms) {
  int64_t deadline = th_mono_ms() + timeout_ms;
  int fd, rc;

  for (;;) {
    fd = th_connect(f->tokend.socket_path);
    assert_true(fd >= 0);
    rc = th_raw_verify(fd, 1, f->token);
    if (rc == 0)
      return fd;
    close(fd);
    if (rc != TOKEND_GRPC_RESOURCE_EXHAUSTED)
      fail_msg("a new connection's Verify got %d", rc);
    if (th_mono_ms() >= deadline)
      fail_msg("no connection was served within %d ms", timeout_ms);
    th_sleep_ms(10);
  }
}

static void test_connection_over_limit_refused_others_served(void **state) {
  th_fixture_t *f = *state;
  int fds[MAX_CONNS], extra, i;

  for (i = 0; i < MAX_CONNS; i++)
    fds[i] = connect_served(f, TH_IO_TIMEOUT_MS);
  /* One too many: told why, with call_id 0, and closed. */
  extra = th_connect(f->tokend.socket_path);
  assert_true(extra >= 0);
  th_expect_error_then_eof(extra, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  close(extra);
  /* Again: the refused connection gave its slot back, nothing more. */
  extra = th_connect(f->tokend.socket_path);
  assert_true(extra >= 0);
  th_expect_error_then_eof(extra, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  close(extra);
  /* The connections within the limit are unaffected. */
  for (i = 0; i < MAX_CONNS; i++)
    th_expect_valid_raw(fds[i], 100 + (uint64_t)i, f->token);
  /* One leaves: a newcomer takes its place, and then the limit holds. */
  close(fds[0]);
  fds[0] = connect_served(f, TH_IO_TIMEOUT_MS);
  extra = th_connect(f->tokend.socket_path);
  assert_true(extra >= 0);
  th_expect_error_then_eof(extra, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  close(extra);
  for (i = 0; i < MAX_CONNS; i++) {
    th_expect_valid_raw(fds[i], 200 + (uint64_t)i, f->token);
    close(fds[i]);
  }
}

/* A Verify frame of token, for sending in pieces. */
static uint8_t *verify_frame(uint64_t call_id, const char *token, size_t *len) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  uint8_t *frame;

  vr.token = (char *)token;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  frame = th_frame_request(&req, len);
  assert_non_null(frame);
  return frame;
}

static void test_stalled_partial_frame_closed_active_peer_served(void **state) {
  th_fixture_t *f = *state;
  int stalled = th_connect(f->tokend.socket_path);
  int active = th_connect(f->tokend.socket_path);
  int64_t give_up = th_mono_ms() + TH_IO_TIMEOUT_MS;
  struct pollfd pfd;
  uint64_t call_id = 1;
  uint8_t *frame;
  size_t len;

  assert_true(stalled >= 0);
  assert_true(active >= 0);
  frame = verify_frame(7, f->token, &len);
  /* The header and half the body, then nothing. */
  assert_int_equal(th_write_all(stalled, frame, len / 2), 0);
  free(frame);
  /* Meanwhile the active peer keeps calling, each call answered, until
   * tokend gives up on the stalled one. */
  for (;;) {
    th_expect_valid_raw(active, call_id++, f->token);
    pfd.fd = stalled;
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (poll(&pfd, 1, ACTIVE_INTERVAL_MS) > 0)
      break;
    if (th_mono_ms() >= give_up)
      fail_msg("a peer holding half a frame was not closed within %d ms "
               "(--read-timeout-ms %d)",
               TH_IO_TIMEOUT_MS, READ_TIMEOUT_MS);
  }
  th_expect_error_then_eof(stalled, TOKEND_GRPC_DEADLINE_EXCEEDED);
  close(stalled);
  /* Enough calls that the active peer outlived the read timeout. */
  assert_true(call_id > 2);
  th_expect_valid_raw(active, call_id, f->token);
  close(active);
}

static void test_trickled_frame_closed_before_complete(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Response *r = NULL;
  struct pollfd pfd;
  char long_token[256];
  uint8_t *frame;
  size_t len, sent = 0;
  int fd = th_connect(f->tokend.socket_path), rc;

  assert_true(fd >= 0);
  /* A frame long enough to take many read timeouts to trickle in (the
   * token is malformed; it would just be answered MALFORMED). */
  memset(long_token, 'A', sizeof(long_token) - 1);
  long_token[sizeof(long_token) - 1] = '\0';
  frame = verify_frame(9, long_token, &len);
  assert_true((int64_t)len * TRICKLE_INTERVAL_MS > 20 * READ_TIMEOUT_MS);
  /* One byte per interval, each well within the read timeout: only a
   * timeout counted from the frame's first byte ends this. */
  for (;;) {
    if (sent == len)
      fail_msg("the whole %zu-byte frame trickled in without tokend "
               "closing the connection (--read-timeout-ms %d)",
               len, READ_TIMEOUT_MS);
    if (th_write_all(fd, frame + sent, 1) != 0)
      fail_msg("tokend closed the connection without a word after %zu "
               "bytes",
               sent);
    sent++;
    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (poll(&pfd, 1, TRICKLE_INTERVAL_MS) > 0)
      break;
  }
  free(frame);
  rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);
  if (rc != 0)
    fail_msg("want DEADLINE_EXCEEDED, got %s", th_recv_name(rc));
  assert_int_equal(th_response_code(r), TOKEND_GRPC_DEADLINE_EXCEEDED);
  assert_int_equal(r->call_id, 0);
  tokend__v1__response__free_unpacked(r, NULL);
  assert_int_equal(th_wait_eof(fd, TH_IO_TIMEOUT_MS), 1);
  close(fd);
  /* The server is fine. */
  fd = connect_served(f, TH_IO_TIMEOUT_MS);
  close(fd);
}

static void test_idle_connection_closed(void **state) {
  th_fixture_t *f = *state;
  int used = th_connect(f->tokend.socket_path);
  int silent = th_connect(f->tokend.socket_path);
  int active = th_connect(f->tokend.socket_path);
  int64_t until;
  uint64_t call_id = 1;

  assert_true(used >= 0);
  assert_true(silent >= 0);
  assert_true(active >= 0);
  th_expect_valid_raw(used, 1, f->token);
  /* A peer that calls every ACTIVE_INTERVAL_MS is not idle, however long
   * it stays: keep it busy for several idle timeouts. */
  until = th_mono_ms() + 4 * IDLE_TIMEOUT_MS;
  while (th_mono_ms() < until) {
    th_expect_valid_raw(active, call_id++, f->token);
    th_sleep_ms(ACTIVE_INTERVAL_MS);
  }
  /* Both quiet peers are closed, without an answer to anything. */
  if (th_wait_eof(used, TH_IO_TIMEOUT_MS) != 1)
    fail_msg("an idle connection was not closed (--idle-timeout-ms %d)",
             IDLE_TIMEOUT_MS);
  if (th_wait_eof(silent, TH_IO_TIMEOUT_MS) != 1)
    fail_msg("a connection that never sent anything was not closed "
             "(--idle-timeout-ms %d)",
             IDLE_TIMEOUT_MS);
  th_expect_valid_raw(active, call_id, f->token);
  close(used);
  close(silent);
  close(active);
}

static void test_idle_timeout_zero_never_closes(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Response *r = NULL;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  th_expect_valid_raw(fd, 1, f->token);
  /* Several times what a 300 ms timeout would allow: nothing comes, the
   * connection stays. */
  assert_int_equal(th_recv_response(fd, 4 * IDLE_TIMEOUT_MS, &r),
                   TH_RECV_TIMEOUT);
  th_expect_valid_raw(fd, 2, f->token);
  close(fd);
}

/* Every call's frame, back to back, and where each one ends. */
typedef struct {
  uint8_t *buf;
  size_t len;
  size_t *ends; /* ends[i]: offset just past frame i (call_id i + 1) */
  size_t n;
} frames_t;

static void frames_build(frames_t *fr, const char *token, size_t n) {
  size_t i, flen, cap = 0;
  uint8_t *frame;

  memset(fr, 0, sizeof(*fr));
  fr->ends = malloc(n * sizeof(*fr->ends));
  assert_non_null(fr->ends);
  for (i = 0; i < n; i++) {
    frame = verify_frame(i + 1, token, &flen);
    if (fr->len + flen > cap) {
      cap = (fr->len + flen) * 2;
      fr->buf = realloc(fr->buf, cap);
      assert_non_null(fr->buf);
    }
    memcpy(fr->buf + fr->len, frame, flen);
    fr->len += flen;
    fr->ends[i] = fr->len;
    free(frame);
  }
  fr->n = n;
}

static void frames_free(frames_t *fr) {
  free(fr->buf);
  free(fr->ends);
}

static void test_unread_answers_pause_reading_without_loss(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Response *r = NULL;
  frames_t fr;
  size_t sent = 0, whole, answered = 0;
  long hwm_before, hwm_after;
  int64_t deadline;
  struct pollfd pfd;
  ssize_t n;
  int fd = th_connect(f->tokend.socket_path), rc, flags;

  assert_true(fd >= 0);
  /* Far more requests than kernel buffers and tokend's queue hold. */
  frames_build(&fr, f->token, 400000);
  assert_true(fr.len < FLOOD_MAX_BYTES);
  flags = fcntl(fd, F_GETFL);
  assert_int_equal(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
  hwm_before = th_proc_status_kib(f->tokend.pid, "VmHWM");
  assert_true(hwm_before > 0);

  /* Pipeline without reading until tokend stops taking requests. */
  while (sent < fr.len) {
    pfd.fd = fd;
    pfd.events = POLLOUT;
    pfd.revents = 0;
    if (poll(&pfd, 1, FLOOD_STALL_MS) == 0)
      break;
    n = send(fd, fr.buf + sent, fr.len - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n <= 0)
      fail_msg("tokend closed a peer that pipelined %zu bytes without "
               "reading (%s), instead of pausing it",
               sent, strerror(errno));
    sent += (size_t)n;
  }
  if (sent == fr.len)
    fail_msg("tokend took all %zu bytes of requests from a peer that read "
             "none of its answers: it never paused reading",
             fr.len);

  /* tokend holds a bounded amount for this peer. */
  hwm_after = th_proc_status_kib(f->tokend.pid, "VmHWM");
  if (th_memory_measurable() && hwm_after - hwm_before > FLOOD_MAX_GROWTH_KIB)
    fail_msg("a peer that sent %zu KiB without reading grew tokend's peak "
             "memory from %ld to %ld KiB",
             sent >> 10, hwm_before, hwm_after);
  printf("backpressure: %zu of %zu request bytes taken before tokend "
         "paused; peak memory %ld -> %ld KiB\n",
         sent, fr.len, hwm_before, hwm_after);
  /* Others are served meanwhile, on a connection new or old. */
  {
    int other = connect_served(f, TH_IO_TIMEOUT_MS);

    th_expect_valid_raw(other, 2, f->token);
    close(other);
  }

  /* Finish the frame we were in the middle of, then read: every request
   * sent is answered once, in order (Verify answers at once). */
  whole = 0;
  while (whole < fr.n && fr.ends[whole] <= sent)
    whole++;
  if (whole < fr.n && sent > (whole > 0 ? fr.ends[whole - 1] : 0))
    whole++;
  deadline = th_mono_ms() + 10 * TH_IO_TIMEOUT_MS;
  while (answered < whole) {
    size_t target = fr.ends[whole - 1];

    pfd.fd = fd;
    pfd.events = POLLIN | (sent < target ? POLLOUT : 0);
    pfd.revents = 0;
    if (th_mono_ms() >= deadline)
      fail_msg("only %zu of %zu pipelined calls answered", answered, whole);
    if (poll(&pfd, 1, 100) <= 0)
      continue;
    if ((pfd.revents & POLLOUT) && sent < target) {
      n = send(fd, fr.buf + sent, target - sent, MSG_NOSIGNAL);
      if (n > 0)
        sent += (size_t)n;
    }
    if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
      continue;
    rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);
    if (rc != 0)
      fail_msg("after %zu of %zu answers: %s", answered, whole,
               th_recv_name(rc));
    if (r->call_id != answered + 1)
      fail_msg("answer %zu has call_id %llu, want %zu: an answer was %s",
               answered + 1, (unsigned long long)r->call_id, answered + 1,
               r->call_id > answered + 1 ? "lost" : "repeated");
    if (th_response_code(r) != 0 || !r->verify->valid)
      fail_msg("call %zu: status %d", answered + 1, th_response_code(r));
    answered++;
    tokend__v1__response__free_unpacked(r, NULL);
  }
  /* Nothing more, and the connection still works. */
  assert_int_equal(fcntl(fd, F_SETFL, flags), 0);
  assert_int_equal(th_recv_response(fd, 200, &r), TH_RECV_TIMEOUT);
  th_expect_valid_raw(fd, whole + 1, f->token);
  close(fd);
  frames_free(&fr);
}

/* An Issue request (Request.issue) with the given scopes, framed. */
static uint8_t *issue_frame(uint64_t call_id, char **scopes, size_t n_scopes,
                            size_t *len) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;
  uint8_t *frame;

  ir.domain = DOMAIN;
  ir.label = "scopes";
  ir.scopes = scopes;
  ir.n_scopes = n_scopes;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &ir;
  frame = th_frame_request(&req, len);
  assert_non_null(frame);
  return frame;
}

static void test_small_frame_huge_decode_refused(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Response *r = NULL;
  char **scopes = malloc(EMPTY_SCOPES * sizeof(*scopes));
  char names[TOKEND_MAX_SCOPES][8];
  long hwm_before, hwm_after;
  uint8_t *frame;
  size_t len, i;
  int fd;

  assert_non_null(scopes);
  for (i = 0; i < EMPTY_SCOPES; i++)
    scopes[i] = "";
  frame = issue_frame(3, scopes, EMPTY_SCOPES, &len);
  assert_true(len < TOKEND_MAX_FRAME_BYTES_DEFAULT);
  hwm_before = th_proc_status_kib(f->tokend.pid, "VmHWM");
  assert_true(hwm_before > 0);
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, frame, len), 0);
  free(frame);
  th_expect_error_then_eof(fd, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  close(fd);
  hwm_after = th_proc_status_kib(f->tokend.pid, "VmHWM");
  if (th_memory_measurable() && hwm_after - hwm_before > DECODE_MAX_GROWTH_KIB)
    fail_msg("a %zu-byte request grew tokend's peak memory from %ld to %ld "
             "KiB (--max-request-memory %s)",
             len, hwm_before, hwm_after, REQUEST_MEMORY);

  printf("request memory: a %zu-byte frame of empty scopes; peak memory "
         "%ld -> %ld KiB\n",
         len, hwm_before, hwm_after);
  /* The most scopes a token may have decode within the limit: issued. */
  for (i = 0; i < TOKEND_MAX_SCOPES; i++) {
    snprintf(names[i], sizeof(names[i]), "s%zu", i);
    scopes[i] = names[i];
  }
  frame = issue_frame(4, scopes, TOKEND_MAX_SCOPES, &len);
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, frame, len), 0);
  free(frame);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
  assert_int_equal(r->call_id, 4);
  if (th_response_code(r) != 0)
    fail_msg("an Issue with %d scopes failed: %d %s", TOKEND_MAX_SCOPES,
             th_response_code(r), r->status->message);
  assert_int_equal(r->issue->info->n_scopes, TOKEND_MAX_SCOPES);
  assert_string_equal(r->issue->info->scopes[TOKEND_MAX_SCOPES - 1], "s31");
  tokend__v1__response__free_unpacked(r, NULL);
  /* The same connection goes on. */
  th_expect_valid_raw(fd, 5, f->token);
  close(fd);
  free(scopes);
}

/* A Verify is decoded by hand when small enough to carry a token; a bigger
 * one must meet --max-request-memory as any request does, not be answered
 * MALFORMED on a connection that stays open. */
static void test_huge_verify_meets_request_memory_limit(void **state) {
  th_fixture_t *f = *state;
  const size_t big = 2 * 65536; /* twice REQUEST_MEMORY */
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  char *tok = malloc(big + 1);
  uint8_t *frame;
  size_t len;
  int fd;

  assert_non_null(tok);
  /* Just too long to be a token: answered MALFORMED, connection stays. */
  memset(tok, 'a', TOKEND_TOKEN_MAX_CHARS + 1);
  tok[TOKEND_TOKEN_MAX_CHARS + 1] = '\0';
  vr.token = tok;
  req.call_id = 6;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_send_request(fd, &req), 0);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
  assert_int_equal(r->call_id, 6);
  assert_int_equal(th_response_code(r), 0);
  assert_int_equal(r->verify->reason,
                   TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED);
  tokend__v1__response__free_unpacked(r, NULL);
  th_expect_valid_raw(fd, 7, f->token);

  /* Past the decode limit: refused and closed, before any answer. */
  memset(tok, 'a', big);
  tok[big] = '\0';
  req.call_id = 8;
  frame = th_frame_request(&req, &len);
  assert_non_null(frame);
  assert_true(len < TOKEND_MAX_FRAME_BYTES_DEFAULT);
  assert_int_equal(th_write_all(fd, frame, len), 0);
  th_expect_error_then_eof(fd, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  close(fd);
  free(frame);
  free(tok);
}

/* --max-pending-calls: a peer pipelining far more store calls (each List
 * reserves room for its page) than the limit cannot make tokend hold them
 * all at once: it stops reading at the limit, and still answers every call
 * exactly once. */
#define PENDING_LIMIT "4"
#define LIST_TOKENS 200
#define LIST_CALLS 1000
#define LIST_MAX_GROWTH_KIB (64 * 1024)

static int setup_pending_calls(void **state) {
  static const char *const args[] = {"--max-pending-calls", PENDING_LIMIT,
                                     NULL};

  return setup_with(state, args);
}

typedef struct {
  int fd;
  const uint8_t *buf;
  size_t len;
  int rc;
} writer_t;

static void *write_all_thread(void *arg) {
  writer_t *w = arg;

  w->rc = th_write_all(w->fd, w->buf, w->len);
  return NULL;
}

static void test_pending_calls_limit_bounds_memory(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListRequest lr = TOKEND__V1__LIST_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  uint8_t *buf = NULL;
  size_t i, len = 0, got = 0;
  char *seen;
  long hwm_before, hwm_after;
  pthread_t thread;
  writer_t w;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  /* A domain with LIST_TOKENS tokens (setup issued one in DOMAIN). */
  for (i = 1; i < LIST_TOKENS; i++)
    assert_int_equal(th_send_issue(fd, 100 + i, DOMAIN, "list me"), 0);
  for (i = 1; i < LIST_TOKENS; i++) {
    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
    assert_int_equal(th_response_code(r), 0);
    tokend__v1__response__free_unpacked(r, NULL);
  }

  lr.domain = DOMAIN;
  lr.page_size = 1000;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST;
  req.list = &lr;
  th_frame_repeat(&buf, &len, &req, 10000, LIST_CALLS);
  seen = calloc(LIST_CALLS, 1);
  assert_non_null(seen);
  hwm_before = th_proc_status_kib(f->tokend.pid, "VmHWM");
  w.fd = fd;
  w.buf = buf;
  w.len = len;
  w.rc = -1;
  assert_int_equal(pthread_create(&thread, NULL, write_all_thread, &w), 0);
  while (got < LIST_CALLS) {
    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
    assert_int_equal(th_response_code(r), 0);
    assert_true(r->call_id >= 10000 && r->call_id < 10000 + LIST_CALLS);
    assert_int_equal(seen[r->call_id - 10000], 0);
    seen[r->call_id - 10000] = 1;
    assert_int_equal(r->list->n_tokens, LIST_TOKENS);
    tokend__v1__response__free_unpacked(r, NULL);
    got++;
  }
  assert_int_equal(pthread_join(thread, NULL), 0);
  assert_int_equal(w.rc, 0);
  hwm_after = th_proc_status_kib(f->tokend.pid, "VmHWM");
  printf("peak memory grew %ld KiB over %d pipelined Lists\n",
         hwm_after - hwm_before, LIST_CALLS);
  if (th_memory_measurable() && hwm_after - hwm_before > LIST_MAX_GROWTH_KIB)
    fail_msg("tokend's peak memory grew %ld KiB (bound %d KiB)",
             hwm_after - hwm_before, LIST_MAX_GROWTH_KIB);
  th_expect_valid_raw(fd, 1, f->token);
  free(seen);
  free(buf);
  close(fd);
}

/* Requests held back at the pending-calls limit are not an incomplete
 * request: once they are all answered, an idle pause longer than the read
 * timeout must not close the connection. */
static int setup_hold_and_read_timeout(void **state) {
  static const char *const args[] = {"--max-pending-calls", "2",
                                     "--read-timeout-ms", "300", NULL};

  return setup_with(state, args);
}

static void test_held_requests_do_not_start_read_timeout(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  uint8_t *buf = NULL;
  size_t i, len = 0;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  ir.domain = DOMAIN;
  ir.label = "held";
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &ir;
  th_frame_repeat(&buf, &len, &req, 500, 40);
  /* All 40 in one write: tokend holds most of them back at the limit. */
  assert_int_equal(th_write_all(fd, buf, len), 0);
  for (i = 0; i < 40; i++) {
    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
    assert_int_equal(th_response_code(r), 0);
    tokend__v1__response__free_unpacked(r, NULL);
  }
  /* Idle for several read timeouts: nothing is incomplete, so nothing
   * closes (the idle timeout is 5 minutes). */
  th_sleep_ms(4 * 300);
  th_expect_valid_raw(fd, 7, f->token);
  free(buf);
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_connection_over_limit_refused_others_served, setup_max_conns,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_stalled_partial_frame_closed_active_peer_served,
          setup_read_timeout, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_trickled_frame_closed_before_complete, setup_read_timeout,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_idle_connection_closed,
                                      setup_idle_timeout, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_idle_timeout_zero_never_closes,
                                      setup_no_idle_timeout,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_unread_answers_pause_reading_without_loss, setup_backpressure,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_huge_verify_meets_request_memory_limit, setup_request_memory,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_small_frame_huge_decode_refused,
                                      setup_request_memory,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_pending_calls_limit_bounds_memory,
                                      setup_pending_calls, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_held_requests_do_not_start_read_timeout,
          setup_hold_and_read_timeout, th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
