/* Unit tests for server/net: a real loop and a socketpair, a handler that
 * echoes frames (no rpc, no protobuf): framing in and out, and a conn's
 * lifetime (OPEN -> DRAINING -> CLOSING -> CLOSED, freed only once nothing
 * holds it). */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "frame.h"
#include "net/conn.h"
#include "net/net.h"

typedef struct {
  uv_loop_t loop;
  config_t cfg;
  net_t *net;
  int fds[2];
  sink_t *sink;      /* the conn's, while it lives */
  unsigned frames;   /* frames the handler got */
  unsigned closed;   /* closed callbacks */
  unsigned statuses; /* status callbacks */
  int hold_next;     /* the next frame takes a hold (a store job) */
} fixture_t;

/* Echoes each frame's body back in a frame of its own. */
static int on_frame(void *ctx, sink_t *k, const uint8_t *body, size_t len) {
  fixture_t *fx = ctx;
  uint8_t *out;

  fx->frames++;
  if (fx->hold_next) {
    fx->hold_next = 0;
    k->ops->hold(k);
    return 0;
  }
  out = k->ops->frame_begin(k, len);
  assert_non_null(out);
  memcpy(out, body, len);
  assert_int_equal(k->ops->frame_end(k, len, 0), 0);
  return 0;
}

static void on_status(void *ctx, sink_t *k, int code, const char *msg) {
  fixture_t *fx = ctx;

  (void)k;
  (void)code;
  (void)msg;
  fx->statuses++;
}

static void on_burst(void *ctx) { (void)ctx; }

static void on_closed(void *ctx) {
  fixture_t *fx = ctx;

  fx->closed++;
}

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));
  net_handler_t h = {on_frame, on_status, on_burst, on_closed, NULL};

  if (fx == NULL || uv_loop_init(&fx->loop) != 0)
    return -1;
  config_defaults(&fx->cfg);
  h.ctx = fx;
  if (net_new(&fx->loop, &fx->cfg, &h, &fx->net) != 0 ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fx->fds) != 0 ||
      net_open_fd(fx->net, fx->fds[0], &fx->sink) != 0)
    return -1;
  *state = fx;
  return 0;
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static int teardown(void **state) {
  fixture_t *fx = *state;

  net_close_all(fx->net);
  net_close_listener(fx->net);
  uv_walk(&fx->loop, walk_close, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  net_free(fx->net);
  close(fx->fds[1]);
  free(fx);
  return 0;
}

static void send_frame(fixture_t *fx, const char *body) {
  uint8_t buf[256];
  size_t n = strlen(body);

  frame_encode_header(buf, (uint32_t)n);
  memcpy(buf + TOKEND_FRAME_HEADER_BYTES, body, n);
  assert_int_equal(write(fx->fds[1], buf, TOKEND_FRAME_HEADER_BYTES + n),
                   (ssize_t)(TOKEND_FRAME_HEADER_BYTES + n));
}

/* Runs the loop until cond holds (at most 200 turns). */
#define RUN_UNTIL(fx, cond)                                                    \
  do {                                                                         \
    int turns_ = 0;                                                            \
    while (!(cond) && turns_++ < 200)                                          \
      uv_run(&(fx)->loop, UV_RUN_NOWAIT);                                      \
    assert_true(cond);                                                         \
  } while (0)

static conn_t *conn_of(fixture_t *fx) {
  return container_of(fx->sink, conn_t, sink);
}

static void test_net_frames_echoed_in_order(void **state) {
  fixture_t *fx = *state;
  char buf[64];
  ssize_t n;
  size_t got = 0;
  const char want[] = "\0\0\0\0\3one\0\0\0\0\3two";

  assert_int_equal(conn_of(fx)->state, CONN_OPEN);
  send_frame(fx, "one");
  send_frame(fx, "two");
  RUN_UNTIL(fx, fx->frames == 2);
  while (got < sizeof(want) - 1) {
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    n = recv(fx->fds[1], buf + got, sizeof(buf) - got, MSG_DONTWAIT);
    if (n > 0)
      got += (size_t)n;
    else
      assert_true(n < 0 && errno == EAGAIN);
  }
  assert_int_equal(got, sizeof(want) - 1);
  assert_memory_equal(buf, want, got);
  assert_int_equal(fx->statuses, 0);
}

/* The peer hangs up while a store job holds its conn: the conn drains
 * (reads no more) but stays until the hold is released, then closes and is
 * freed (ASan and valgrind see to the freeing). */
static void test_net_conn_lives_until_released(void **state) {
  fixture_t *fx = *state;
  sink_t *k = fx->sink;

  fx->hold_next = 1;
  send_frame(fx, "held");
  RUN_UNTIL(fx, fx->frames == 1);
  assert_int_equal(shutdown(fx->fds[1], SHUT_WR), 0);
  RUN_UNTIL(fx, conn_of(fx)->state == CONN_DRAINING);
  /* Nothing closes it while the job is in flight. */
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  assert_int_equal(conn_of(fx)->state, CONN_DRAINING);
  assert_int_equal(net_conn_count(fx->net), 1);
  assert_int_equal(fx->closed, 0);
  /* The job ends: everything is sent, so the conn closes. */
  k->ops->release(k);
  RUN_UNTIL(fx, fx->closed == 1);
  assert_int_equal(net_conn_count(fx->net), 0);
}

/* Closed while a hold is out: the sink says so (answers are dropped) and
 * the conn is freed only when the hold is released. */
static void test_net_closed_conn_freed_after_release(void **state) {
  fixture_t *fx = *state;
  sink_t *k = fx->sink;

  fx->hold_next = 1;
  send_frame(fx, "held");
  RUN_UNTIL(fx, fx->frames == 1);
  net_close_all(fx->net);
  assert_true(k->closed);
  assert_int_equal(conn_of(fx)->state, CONN_CLOSING);
  RUN_UNTIL(fx, fx->closed == 1);
  assert_int_equal(conn_of(fx)->state, CONN_CLOSED);
  assert_null(k->ops->frame_begin(k, 4));
  k->ops->release(k); /* frees it */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_net_frames_echoed_in_order, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_net_conn_lives_until_released, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_net_closed_conn_freed_after_release,
                                      setup, teardown),
  };

  return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
