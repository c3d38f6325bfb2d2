/* The client library's reconnect and retry rules, against a scripted fake
 * tokend on a temporary Unix socket: what is sent again after a connection
 * dies, what is never sent twice (the writes: TOKEND_EINDOUBT), what a
 * request that never left does, and the pool's borrowing. The fake serves
 * one connection at a time and records every request it read, so each test
 * checks exactly how many copies of a call tokend would have seen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <tokend/client.h>

#include "frame.h"
#include "tokend.pb-c.h"

#define FAKE_IO_TIMEOUT_MS 10000
#define FAKE_MAX_STEPS 8
#define CLIENT_TIMEOUT_MS 10000

typedef enum {
  /* Read one request and answer it. */
  STEP_ANSWER,
  /* Read one request and close the connection without answering: tokend
   * restarted or crashed with the request in flight. */
  STEP_CLOSE_AFTER_READ,
  /* Close the connection before reading anything (an idle timeout), then
   * post `closed`. */
  STEP_CLOSE_UNREAD,
  /* Wait for a request to arrive and close with it unread: tokend stopped
   * reading (shutting down) or was killed before reading it. */
  STEP_CLOSE_WITH_REQUEST_UNREAD
} fake_step_t;

typedef struct {
  char dir[64];
  char path[96];
  int lfd;
  int cfd; /* the connection being served; -1 none */
  pthread_t thread;
  fake_step_t steps[FAKE_MAX_STEPS];
  size_t n_steps;
  sem_t closed; /* posted after each STEP_CLOSE_UNREAD */
  /* What the fake saw, read by the test after joining it. */
  int n_accepts;
  size_t n_requests;
  Tokend__V1__Request__MethodCase methods[FAKE_MAX_STEPS];
} fake_t;

static int read_exact(int fd, uint8_t *buf, size_t len) {
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  size_t got = 0;
  ssize_t n;

  while (got < len) {
    if (poll(&pfd, 1, FAKE_IO_TIMEOUT_MS) != 1)
      return -1;
    n = read(fd, buf + got, len - got);
    if (n <= 0)
      return -1;
    got += (size_t)n;
  }
  return 0;
}

/* Reads one framed Request; NULL on EOF or error. */
static Tokend__V1__Request *fake_read_request(int fd) {
  uint8_t hdr[TOKEND_FRAME_HEADER_BYTES], *body;
  Tokend__V1__Request *req;
  uint32_t len;

  if (read_exact(fd, hdr, sizeof(hdr)) != 0)
    return NULL;
  len = (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 |
        (uint32_t)hdr[3] << 8 | hdr[4];
  body = malloc(len > 0 ? len : 1);
  if (body == NULL || read_exact(fd, body, len) != 0) {
    free(body);
    return NULL;
  }
  req = tokend__v1__request__unpack(NULL, len, body);
  free(body);
  return req;
}

/* Answers req with a plausible OK result for its method. */
static int fake_answer(int fd, const Tokend__V1__Request *req) {
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__VerifyResponse verify = TOKEND__V1__VERIFY_RESPONSE__INIT;
  Tokend__V1__WhoAmIResponse who = TOKEND__V1__WHO_AM_IRESPONSE__INIT;
  Tokend__V1__RevokeResponse revoke = TOKEND__V1__REVOKE_RESPONSE__INIT;
  Tokend__V1__LookupResponse lookup = TOKEND__V1__LOOKUP_RESPONSE__INIT;
  Tokend__V1__TokenInfo info = TOKEND__V1__TOKEN_INFO__INIT;
  uint8_t hdr[TOKEND_FRAME_HEADER_BYTES], *buf;
  size_t len;
  int rc = 0;

  resp.call_id = req->call_id;
  switch (req->method_case) {
  case TOKEND__V1__REQUEST__METHOD_VERIFY:
    verify.valid = 1;
    verify.reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID;
    verify.domain = "fake.example";
    resp.result_case = TOKEND__V1__RESPONSE__RESULT_VERIFY;
    resp.verify = &verify;
    break;
  case TOKEND__V1__REQUEST__METHOD_WHO_AM_I:
    who.user = "uid:0";
    resp.result_case = TOKEND__V1__RESPONSE__RESULT_WHO_AM_I;
    resp.who_am_i = &who;
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE:
    revoke.revoked_at = 1234;
    resp.result_case = TOKEND__V1__RESPONSE__RESULT_REVOKE;
    resp.revoke = &revoke;
    break;
  case TOKEND__V1__REQUEST__METHOD_LOOKUP: /* issue 17 */
    info.id = "tok_1";
    info.domain = "fake.example";
    info.status = TOKEND__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE;
    lookup.info = &info;
    resp.result_case = TOKEND__V1__RESPONSE__RESULT_LOOKUP;
    resp.lookup = &lookup;
    break;
  default:
    return -1; /* the tests answer nothing else */
  }
  len = tokend__v1__response__get_packed_size(&resp);
  buf = malloc(sizeof(hdr) + len);
  if (buf == NULL)
    return -1;
  frame_encode_header(buf, (uint32_t)len);
  tokend__v1__response__pack(&resp, buf + sizeof(hdr));
  if (write(fd, buf, sizeof(hdr) + len) != (ssize_t)(sizeof(hdr) + len))
    rc = -1;
  free(buf);
  return rc;
}

static void *fake_run(void *arg) {
  fake_t *f = arg;
  Tokend__V1__Request *req;
  size_t i;

  for (i = 0; i < f->n_steps; i++) {
    if (f->cfd < 0) {
      f->cfd = accept(f->lfd, NULL, NULL);
      if (f->cfd < 0)
        break;
      f->n_accepts++;
    }
    if (f->steps[i] == STEP_CLOSE_WITH_REQUEST_UNREAD) {
      struct pollfd pfd = {.fd = f->cfd, .events = POLLIN};

      if (poll(&pfd, 1, FAKE_IO_TIMEOUT_MS) != 1)
        break;
      close(f->cfd);
      f->cfd = -1;
      continue;
    }
    if (f->steps[i] == STEP_CLOSE_UNREAD) {
      close(f->cfd);
      f->cfd = -1;
      sem_post(&f->closed);
      continue;
    }
    req = fake_read_request(f->cfd);
    if (req == NULL)
      break;
    f->methods[f->n_requests++] = req->method_case;
    if (f->steps[i] == STEP_ANSWER)
      fake_answer(f->cfd, req);
    else {
      close(f->cfd);
      f->cfd = -1;
    }
    tokend__v1__request__free_unpacked(req, NULL);
  }
  if (f->cfd >= 0)
    close(f->cfd);
  f->cfd = -1;
  return NULL;
}

/* Listens on a new temporary socket; the script runs once fake_start() is
 * called. */
static int setup(void **state) {
  struct sockaddr_un addr;
  fake_t *f = calloc(1, sizeof(*f));

  if (f == NULL)
    return -1;
  snprintf(f->dir, sizeof(f->dir), "/tmp/tokend-retry-XXXXXX");
  if (mkdtemp(f->dir) == NULL)
    return -1;
  snprintf(f->path, sizeof(f->path), "%s/sock", f->dir);
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", f->path);
  f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
      listen(f->lfd, 8) != 0)
    return -1;
  f->cfd = -1;
  sem_init(&f->closed, 0, 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fake_t *f = *state;

  close(f->lfd);
  unlink(f->path);
  rmdir(f->dir);
  sem_destroy(&f->closed);
  free(f);
  return 0;
}

static void fake_start(fake_t *f, size_t n, const fake_step_t *steps) {
  assert_true(n <= FAKE_MAX_STEPS);
  memcpy(f->steps, steps, n * sizeof(*steps));
  f->n_steps = n;
  assert_int_equal(pthread_create(&f->thread, NULL, fake_run, f), 0);
}

/* Waits for the script to end: every step ran or the client stopped
 * talking. */
static void fake_join(fake_t *f) {
  assert_int_equal(pthread_join(f->thread, NULL), 0);
}

static tokend_client_t *client_open(const fake_t *f) {
  tokend_client_t *c = NULL;
  char why[TOKEND_CONNECT_ERRMSG_BYTES];

  assert_int_equal(
      tokend_client_open(f->path, CLIENT_TIMEOUT_MS, 0, &c, why, sizeof(why)),
      0);
  return c;
}

/* A Verify whose connection died before its answer is sent again, once, on
 * a new connection, and the caller sees only the answer. */
static void test_verify_sent_again_after_connection_died(void **state) {
  static const fake_step_t steps[] = {STEP_CLOSE_AFTER_READ, STEP_ANSWER};
  fake_t *f = *state;
  tokend_verify_result_t r;
  tokend_client_t *c;

  fake_start(f, 2, steps);
  c = client_open(f);
  assert_int_equal(tokend_client_verify(c, "tkn_x", &r), 0);
  assert_int_equal(r.valid, 1);
  assert_string_equal(r.domain, "fake.example");
  tokend_client_close(c);
  fake_join(f);
  assert_int_equal(f->n_accepts, 2);
  assert_int_equal(f->n_requests, 2);
  assert_int_equal(f->methods[1], TOKEND__V1__REQUEST__METHOD_VERIFY);
}

/* Only once: a second death gives the error, not a third copy. */
static void test_verify_sent_again_only_once(void **state) {
  static const fake_step_t steps[] = {STEP_CLOSE_AFTER_READ,
                                      STEP_CLOSE_AFTER_READ, STEP_ANSWER};
  fake_t *f = *state;
  tokend_verify_result_t r;
  tokend_client_t *c;

  fake_start(f, 3, steps);
  c = client_open(f);
  assert_int_equal(tokend_client_verify(c, "tkn_x", &r), TOKEND_ECLOSED);
  assert_int_equal(f->n_requests, 2);
  /* The next call is a new one: it reconnects and is answered. */
  assert_int_equal(tokend_client_verify(c, "tkn_x", &r), 0);
  assert_int_equal(r.valid, 1);
  tokend_client_close(c);
  fake_join(f);
  assert_int_equal(f->n_requests, 3);
}

/* Each write whose connection died after it left says "outcome unknown"
 * and is never sent a second time; the client is usable afterwards. */
static void expect_write_in_doubt(fake_t *f, int method) {
  static const fake_step_t steps[] = {STEP_CLOSE_AFTER_READ, STEP_ANSWER};
  tokend_issue_params_t params = {.domain = "fake.example", .label = "l"};
  tokend_edit_params_t edit = {.label = "l"};
  tokend_rolled_t rolled;
  tokend_issued_t issued;
  tokend_whoami_t who;
  tokend_client_t *c;
  uint32_t n_revoked;
  int rc = 0;

  fake_start(f, 2, steps);
  c = client_open(f);
  switch (method) {
  case TOKEND__V1__REQUEST__METHOD_ISSUE:
    rc = tokend_client_issue(c, &params, &issued);
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE:
    rc = tokend_client_revoke(c, "fake.example", "tok_1", NULL, NULL);
    break;
  case TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN:
    rc = tokend_client_grant_admin(c, "fake.example", "uid:1", NULL, NULL);
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN:
    rc = tokend_client_revoke_admin(c, "fake.example", "uid:1", 1, &n_revoked);
    break;
  case TOKEND__V1__REQUEST__METHOD_EDIT: /* issue 17 */
    rc = tokend_client_edit(c, "fake.example", "tok_1", &edit, NULL);
    break;
  case TOKEND__V1__REQUEST__METHOD_ROLL:
    rc = tokend_client_roll(c, "fake.example", "tok_1", 0, &rolled);
    break;
  default:
    fail_msg("not a write: %d", method);
  }
  assert_int_equal(rc, TOKEND_EINDOUBT);
  assert_string_equal(tokend_err_name(rc), "TOKEND_EINDOUBT");
  assert_non_null(strstr(tokend_client_errmsg(c), "may or may not"));
  assert_int_equal(tokend_client_whoami(c, &who), 0);
  tokend_client_close(c);
  fake_join(f);
  /* The write once, then the WhoAmI on a new connection. */
  assert_int_equal(f->n_requests, 2);
  assert_int_equal(f->methods[0], method);
  assert_int_equal(f->methods[1], TOKEND__V1__REQUEST__METHOD_WHO_AM_I);
  assert_int_equal(f->n_accepts, 2);
}

static void test_issue_in_doubt_never_sent_twice(void **state) {
  expect_write_in_doubt(*state, TOKEND__V1__REQUEST__METHOD_ISSUE);
}

static void test_revoke_in_doubt_never_sent_twice(void **state) {
  expect_write_in_doubt(*state, TOKEND__V1__REQUEST__METHOD_REVOKE);
}

static void test_grant_admin_in_doubt_never_sent_twice(void **state) {
  expect_write_in_doubt(*state, TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN);
}

static void test_revoke_admin_in_doubt_never_sent_twice(void **state) {
  expect_write_in_doubt(*state,
                        TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN);
}

/* issue 17: Edit and Roll are writes; Lookup reads, and is sent again. */
static void test_edit_in_doubt_never_sent_twice(void **state) {
  expect_write_in_doubt(*state, TOKEND__V1__REQUEST__METHOD_EDIT);
}

static void test_roll_in_doubt_never_sent_twice(void **state) {
  expect_write_in_doubt(*state, TOKEND__V1__REQUEST__METHOD_ROLL);
}

static void test_lookup_sent_again_after_connection_died(void **state) {
  static const fake_step_t steps[] = {STEP_CLOSE_AFTER_READ, STEP_ANSWER};
  fake_t *f = *state;
  tokend_token_info_t info;
  tokend_client_t *c;

  fake_start(f, 2, steps);
  c = client_open(f);
  assert_int_equal(tokend_client_lookup(c, "fake.example", "tok_1", &info), 0);
  assert_string_equal(info.id, "tok_1");
  tokend_client_close(c);
  fake_join(f);
  assert_int_equal(f->n_requests, 2);
  assert_int_equal(f->methods[1], TOKEND__V1__REQUEST__METHOD_LOOKUP);
}

/* A connection tokend closed while it was idle: nothing of the next
 * request can have reached it, so it goes out on a new connection, a write
 * too, exactly once. (The fake then answers the WhoAmI it is given.) */
static void test_request_on_idle_closed_connection_goes_out_once(void **state) {
  static const fake_step_t steps[] = {STEP_CLOSE_UNREAD, STEP_ANSWER};
  fake_t *f = *state;
  tokend_whoami_t who;
  tokend_client_t *c;

  fake_start(f, 2, steps);
  c = client_open(f);
  assert_int_equal(sem_wait(&f->closed), 0);
  assert_int_equal(tokend_client_whoami(c, &who), 0);
  assert_string_equal(who.user, "uid:0");
  tokend_client_close(c);
  fake_join(f);
  assert_int_equal(f->n_accepts, 2);
  assert_int_equal(f->n_requests, 1);
}

/* tokend closed with the request still unread (the kernel says so with
 * ECONNRESET): it cannot have acted on it, so even a write goes out again,
 * and is answered. */
static void test_write_left_unread_is_sent_again(void **state) {
  static const fake_step_t steps[] = {STEP_CLOSE_WITH_REQUEST_UNREAD,
                                      STEP_ANSWER};
  fake_t *f = *state;
  tokend_client_t *c;
  int64_t revoked_at = 0;

  fake_start(f, 2, steps);
  c = client_open(f);
  assert_int_equal(
      tokend_client_revoke(c, "fake.example", "tok_1", &revoked_at, NULL), 0);
  assert_int_equal(revoked_at, 1234);
  tokend_client_close(c);
  fake_join(f);
  assert_int_equal(f->n_accepts, 2);
  assert_int_equal(f->n_requests, 1);
  assert_int_equal(f->methods[0], TOKEND__V1__REQUEST__METHOD_REVOKE);
}

/* With reconnecting off, a broken connection stays broken, as before. */
static void test_reconnect_off_keeps_connection_closed(void **state) {
  static const fake_step_t steps[] = {STEP_CLOSE_AFTER_READ};
  fake_t *f = *state;
  tokend_verify_result_t r;
  tokend_client_t *c;

  fake_start(f, 1, steps);
  c = client_open(f);
  assert_int_equal(tokend_client_set_reconnect(c, 0), 0);
  assert_int_equal(tokend_client_verify(c, "tkn_x", &r), TOKEND_ECLOSED);
  assert_int_equal(tokend_client_verify(c, "tkn_x", &r), TOKEND_ECLOSED);
  tokend_client_close(c);
  fake_join(f);
  assert_int_equal(f->n_requests, 1);
  assert_int_equal(f->n_accepts, 1);
  assert_int_equal(tokend_client_set_reconnect(NULL, 0), TOKEND_EINVAL);
}

/* No tokend comes back: the call waits its reconnect bound, then says why
 * with tokend_client_open()'s code and sentence. */
static void test_reconnect_gives_up_with_the_reason(void **state) {
  static const fake_step_t steps[] = {STEP_CLOSE_UNREAD};
  fake_t *f = *state;
  tokend_verify_result_t r;
  tokend_client_t *c;

  fake_start(f, 1, steps);
  c = client_open(f);
  assert_int_equal(tokend_client_set_reconnect(c, 50), 0);
  fake_join(f);
  /* The fake is gone: its socket file too. */
  close(f->lfd);
  f->lfd = -1;
  unlink(f->path);
  assert_int_equal(tokend_client_verify(c, "tkn_x", &r), TOKEND_ENOSOCKET);
  assert_non_null(strstr(tokend_client_errmsg(c), "no such socket"));
  tokend_client_close(c);
}

/* The pool lends each client to one borrower at a time, and a borrower
 * waits (here: until the pool's timeout) while all are lent. */
static void test_pool_lends_each_client_once(void **state) {
  fake_t *f = *state;
  tokend_client_t *a, *b, *c;
  tokend_pool_t *pool;
  char why[TOKEND_CONNECT_ERRMSG_BYTES];

  /* Two connections, left in the listen backlog: connect() completes
   * without an accept. */
  assert_int_equal(tokend_pool_open(f->path, 20, 0, 2, &pool, why, sizeof(why)),
                   0);
  assert_int_equal(tokend_pool_acquire(pool, &a), 0);
  assert_int_equal(tokend_pool_acquire(pool, &b), 0);
  assert_ptr_not_equal(a, b);
  assert_int_equal(tokend_pool_acquire(pool, &c), TOKEND_ETIMEDOUT);
  assert_null(c);
  tokend_pool_release(pool, a);
  assert_int_equal(tokend_pool_acquire(pool, &c), 0);
  assert_ptr_equal(c, a);
  tokend_pool_release(pool, b);
  tokend_pool_release(pool, c);
  tokend_pool_close(pool);
}

/* A pool that cannot connect says why, as tokend_client_open() does, and
 * leaves nothing open. */
static void test_pool_open_says_why(void **state) {
  fake_t *f = *state;
  tokend_pool_t *pool = NULL;
  char why[TOKEND_CONNECT_ERRMSG_BYTES], path[160];

  snprintf(path, sizeof(path), "%s/nothing-here", f->dir);
  assert_int_equal(tokend_pool_open(path, 1000, 0, 3, &pool, why, sizeof(why)),
                   TOKEND_ENOSOCKET);
  assert_null(pool);
  assert_non_null(strstr(why, "no such socket"));
  assert_int_equal(tokend_pool_open(f->path, 1000, 0, 0, &pool, NULL, 0),
                   TOKEND_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_verify_sent_again_after_connection_died, setup, teardown),
      cmocka_unit_test_setup_teardown(test_verify_sent_again_only_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_issue_in_doubt_never_sent_twice,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_edit_in_doubt_never_sent_twice,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_roll_in_doubt_never_sent_twice,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_lookup_sent_again_after_connection_died, setup, teardown),
      cmocka_unit_test_setup_teardown(test_revoke_in_doubt_never_sent_twice,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_grant_admin_in_doubt_never_sent_twice, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_revoke_admin_in_doubt_never_sent_twice, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_request_on_idle_closed_connection_goes_out_once, setup,
          teardown),
      cmocka_unit_test_setup_teardown(test_write_left_unread_is_sent_again,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_reconnect_off_keeps_connection_closed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reconnect_gives_up_with_the_reason,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_pool_lends_each_client_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_pool_open_says_why, setup, teardown),
  };

  return cmocka_run_group_tests_name("client_retry", tests, NULL, NULL);
}
