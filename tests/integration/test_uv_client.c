/* The libuv client (<tokend/uv.h>, issue 15, section 1): pipelined calls on
 * the test's own loop, the same reconnect rules as the blocking client,
 * and a write in doubt never sent twice. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokend/uv.h>

#include "harness.h"

#define DOMAIN "uv.example"
#define PIPELINED 2000
#define RECONNECT_WAIT_MS (20000 * th_timeout_scale())

typedef struct {
  th_fixture_t *f;
  const char *token;
  long answered, valid, failed;
  int first_err;
  char first_msg[TOKEND_STATUS_MESSAGE_BYTES];
  /* restart tests: restart once this many answers came */
  long restart_at;
  int restart_how; /* 0 none, SIGTERM or SIGKILL */
  long chain_left; /* verifies still to make, one after another */
  int closed;
  int64_t revoked_at;
  char issued_id[TOKEND_TOKEN_ID_BYTES];
  char issued_token[TOKEND_TOKEN_BYTES];
} run_t;

static void note_fail(run_t *r, int status, const char *msg) {
  if (r->failed++ == 0) {
    r->first_err = status;
    snprintf(r->first_msg, sizeof(r->first_msg), "%s", msg);
  }
}

static void restart_tokend(th_tokend_t *t, int how) {
  if (how == SIGKILL)
    assert_int_equal(th_tokend_kill(t), 128 + SIGKILL);
  else
    assert_int_equal(th_tokend_stop_clean(t), 0);
  assert_int_equal(th_tokend_start(t, NULL), 0);
}

static void on_verify(tokend_uv_t *c, int status, const char *msg,
                      const tokend_verify_result_t *res, void *data) {
  run_t *r = data;

  r->answered++;
  if (status != 0)
    note_fail(r, status, msg);
  else if (res->valid && strcmp(res->domain, DOMAIN) == 0)
    r->valid++;
  if (r->restart_how != 0 && r->answered == r->restart_at)
    restart_tokend(&r->f->tokend, r->restart_how);
  if (r->chain_left > 0) {
    r->chain_left--;
    assert_int_equal(tokend_uv_verify(c, r->token, on_verify, r), 0);
  }
}

static void on_closed(void *data) { ((run_t *)data)->closed = 1; }

static tokend_uv_t *open_uv(uv_loop_t *loop, const th_fixture_t *f) {
  tokend_uv_t *c = NULL;
  char why[TOKEND_CONNECT_ERRMSG_BYTES];

  if (tokend_uv_open(loop, f->tokend.socket_path, &c, why, sizeof(why)) != 0)
    fail_msg("tokend_uv_open: %s", why);
  assert_int_equal(tokend_uv_set_reconnect(c, RECONNECT_WAIT_MS), 0);
  return c;
}

/* Closes c and runs the loop until it is freed; the loop must then have
 * nothing left. */
static void close_uv(uv_loop_t *loop, tokend_uv_t *c, run_t *r) {
  tokend_uv_close(c, on_closed, r);
  assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(r->closed, 1);
  assert_int_equal(uv_loop_close(loop), 0);
}

static void issue_token(th_fixture_t *f, tokend_issued_t *is) {
  th_client_issue_ok(f->client, DOMAIN, "uv", 0, is);
}

/* Thousands of Verifies made at once are written together and all
 * answered; the loop then ends by itself (an idle client does not keep it
 * alive). */
static void test_uv_pipelined_verifies_all_answered(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  uv_loop_t loop;
  tokend_uv_t *c;
  run_t r = {.f = f};
  int i;

  issue_token(f, &is);
  r.token = is.token;
  assert_int_equal(uv_loop_init(&loop), 0);
  c = open_uv(&loop, f);
  for (i = 0; i < PIPELINED; i++)
    assert_int_equal(tokend_uv_verify(c, is.token, on_verify, &r), 0);
  assert_int_equal(tokend_uv_pending(c), PIPELINED);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  if (r.failed != 0)
    fail_msg("%ld failed: %s: %s", r.failed, tokend_err_name(r.first_err),
             r.first_msg);
  assert_int_equal(r.valid, PIPELINED);
  assert_int_equal(tokend_uv_pending(c), 0);
  close_uv(&loop, c, &r);
  tokend_client_wipe(&is);
}

static void on_revoked(tokend_uv_t *c, int status, const char *msg,
                       int64_t revoked_at, int already, void *data) {
  run_t *r = data;

  (void)c;
  (void)already;
  if (status != 0)
    note_fail(r, status, msg);
  r->revoked_at = revoked_at;
}

static void on_issued(tokend_uv_t *c, int status, const char *msg,
                      const tokend_issued_t *res, void *data) {
  run_t *r = data;

  if (status != 0) {
    note_fail(r, status, msg);
    return;
  }
  snprintf(r->issued_id, sizeof(r->issued_id), "%s", res->info.id);
  snprintf(r->issued_token, sizeof(r->issued_token), "%s", res->token);
  /* A call made from a callback. */
  assert_int_equal(tokend_uv_revoke(c, DOMAIN, res->info.id, on_revoked, r), 0);
}

/* Issue, then Revoke from Issue's callback: the token is revoked. */
static void test_uv_issue_then_revoke(void **state) {
  th_fixture_t *f = *state;
  tokend_issue_params_t params = {.domain = DOMAIN, .label = "uv-issued"};
  uv_loop_t loop;
  tokend_uv_t *c;
  run_t r = {.f = f};

  assert_int_equal(uv_loop_init(&loop), 0);
  c = open_uv(&loop, f);
  assert_int_equal(tokend_uv_issue(c, &params, on_issued, &r), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  if (r.failed != 0)
    fail_msg("%s: %s", tokend_err_name(r.first_err), r.first_msg);
  assert_true(r.revoked_at > 0);
  th_expect_verify(f->client, r.issued_token, 0, TOKEND_VERIFY_REVOKED);
  close_uv(&loop, c, &r);
}

typedef struct {
  int answered, status;
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  tokend_token_info_t info;
} lookup_t;

static void on_lookup(tokend_uv_t *c, int status, const char *msg,
                      const tokend_token_info_t *info, void *data) {
  lookup_t *l = data;

  (void)c;
  l->answered++;
  l->status = status;
  snprintf(l->msg, sizeof(l->msg), "%s", msg);
  if (status == 0)
    l->info = *info;
  else
    assert_null(info);
}

/* Lookup on the loop answers what the blocking client's does, without
 * using the token; another domain's token is NOT_FOUND and a malformed id
 * INVALID_ARGUMENT, each to its own callback. */
static void test_uv_lookup_answers_as_the_blocking_client(void **state) {
  th_fixture_t *f = *state;
  tokend_issue_params_t params = {
      .domain = DOMAIN, .label = "uv-lookup", .metadata = "{\"plan\":\"pro\"}"};
  tokend_token_info_t want;
  tokend_issued_t is, other;
  lookup_t l[3];
  uv_loop_t loop;
  tokend_uv_t *c;
  run_t r = {.f = f};

  assert_int_equal(tokend_client_issue(f->client, &params, &is), 0);
  th_client_issue_ok(f->client, "other.example", "theirs", 0, &other);
  memset(l, 0, sizeof(l));
  assert_int_equal(uv_loop_init(&loop), 0);
  c = open_uv(&loop, f);
  assert_int_equal(tokend_uv_lookup(c, DOMAIN, is.info.id, on_lookup, &l[0]),
                   0);
  assert_int_equal(tokend_uv_lookup(c, DOMAIN, other.info.id, on_lookup, &l[1]),
                   0);
  assert_int_equal(tokend_uv_lookup(c, DOMAIN, "tok_nope", on_lookup, &l[2]),
                   0);
  assert_int_equal(tokend_uv_lookup(c, DOMAIN, NULL, on_lookup, &l[2]),
                   TOKEND_EINVAL);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(l[0].answered, 1);
  if (l[0].status != 0)
    fail_msg("lookup: %s: %s", tokend_err_name(l[0].status), l[0].msg);
  assert_int_equal(tokend_client_lookup(f->client, DOMAIN, is.info.id, &want),
                   0);
  assert_string_equal(l[0].info.id, want.id);
  assert_string_equal(l[0].info.domain, DOMAIN);
  assert_string_equal(l[0].info.label, "uv-lookup");
  assert_string_equal(l[0].info.metadata, "{\"plan\":\"pro\"}");
  assert_string_equal(l[0].info.hint, want.hint);
  assert_int_equal(l[0].info.created_at, want.created_at);
  assert_int_equal(l[0].info.status, TOKEND_TOKEN_ACTIVE);
  assert_int_equal(l[0].info.last_used_at, 0);
  assert_int_equal(l[1].answered, 1);
  assert_int_equal(l[1].status, TOKEND_ENOTFOUND);
  assert_int_equal(l[2].answered, 1);
  assert_int_equal(l[2].status, TOKEND_EINVAL);
  assert_non_null(strstr(l[2].msg, "token_id"));
  close_uv(&loop, c, &r);
  tokend_client_wipe(&is);
  tokend_client_wipe(&other);
}

/* A chain of Verifies (each callback makes the next) with tokend restarted
 * under it, cleanly and killed, while a pipelined batch is in flight:
 * every Verify is answered. */
static void verify_across_restart(th_fixture_t *f, int how) {
  tokend_issued_t is;
  uv_loop_t loop;
  tokend_uv_t *c;
  run_t r = {.f = f};
  int i;

  issue_token(f, &is);
  r.token = is.token;
  r.restart_how = how;
  r.restart_at = 20;
  r.chain_left = 200;
  assert_int_equal(uv_loop_init(&loop), 0);
  c = open_uv(&loop, f);
  for (i = 0; i < 50; i++)
    assert_int_equal(tokend_uv_verify(c, is.token, on_verify, &r), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  if (r.failed != 0)
    fail_msg("%ld of %ld failed: %s: %s", r.failed, r.answered,
             tokend_err_name(r.first_err), r.first_msg);
  assert_int_equal(r.valid, 250);
  close_uv(&loop, c, &r);
  tokend_client_wipe(&is);
}

static void test_uv_verifies_survive_sigterm_restart(void **state) {
  verify_across_restart(*state, SIGTERM);
}

static void test_uv_verifies_survive_sigkill_restart(void **state) {
  verify_across_restart(*state, SIGKILL);
}

static void on_issue_counted(tokend_uv_t *c, int status, const char *msg,
                             const tokend_issued_t *res, void *data) {
  run_t *r = data;

  (void)c;
  (void)res;
  r->answered++;
  if (status != 0)
    note_fail(r, status, msg);
}

/* An Issue written to a tokend that is then killed before answering says
 * "outcome unknown" and is not sent to the restarted tokend: no token is
 * stored. (tokend is stopped, so the request waits unread in its socket
 * until the kill.) */
static void test_uv_issue_in_doubt_not_sent_twice(void **state) {
  th_fixture_t *f = *state;
  tokend_issue_params_t params = {.domain = DOMAIN, .label = "doubt"};
  uv_loop_t loop;
  tokend_uv_t *c;
  run_t r = {.f = f};

  assert_int_equal(uv_loop_init(&loop), 0);
  c = open_uv(&loop, f);
  /* Connected first, so that the Issue is written, not waiting. */
  assert_int_equal(tokend_uv_verify(c, "tkn_nothing", on_verify, &r), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.answered, 1);
  r.answered = 0;
  r.failed = 0;

  assert_int_equal(kill(f->tokend.pid, SIGSTOP), 0);
  assert_int_equal(tokend_uv_issue(c, &params, on_issue_counted, &r), 0);
  /* One turn: the prepare handle writes it. */
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(r.answered, 0);
  assert_int_equal(th_tokend_kill(&f->tokend), 128 + SIGKILL);
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.answered, 1);
  assert_int_equal(r.first_err, TOKEND_EINDOUBT);
  assert_non_null(strstr(r.first_msg, "may or may not"));
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM tokens WHERE label = "
                               "'doubt'"),
                   0);
  /* The client goes on: the next Issue is answered and stored once. */
  r.failed = 0;
  assert_int_equal(tokend_uv_issue(c, &params, on_issue_counted, &r), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.failed, 0);
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM tokens WHERE label = "
                               "'doubt'"),
                   1);
  close_uv(&loop, c, &r);
}

/* No tokend there: the call waits out its reconnect bound, then fails
 * with the connect error and its sentence. */
static void test_uv_no_socket_fails_with_reason(void **state) {
  th_fixture_t *f = *state;
  char path[TH_PATH_BYTES + 16];
  char why[TOKEND_CONNECT_ERRMSG_BYTES];
  uv_loop_t loop;
  tokend_uv_t *c;
  run_t r = {.f = f};

  snprintf(path, sizeof(path), "%s/none", f->tokend.dir);
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(tokend_uv_open(&loop, path, &c, why, sizeof(why)), 0);
  assert_int_equal(tokend_uv_set_reconnect(c, 30), 0);
  assert_int_equal(tokend_uv_verify(c, "tkn_x", on_verify, &r), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.failed, 1);
  assert_int_equal(r.first_err, TOKEND_ENOSOCKET);
  assert_non_null(strstr(r.first_msg, "no such socket"));
  close_uv(&loop, c, &r);
}

static void on_verify_copy(tokend_uv_t *c, int status, const char *msg,
                           const tokend_verify_result_t *res, void *data) {
  tokend_verify_result_t *out = data;

  (void)c;
  if (status != 0)
    fail_msg("uv verify: %s: %s", tokend_err_name(status), msg);
  *out = *res;
}

/* Every kind of Verify answer (valid with scopes and an expiry, revoked,
 * unknown, malformed) comes back from tokend_uv_verify as the blocking
 * client gives it: the async client reads Verify answers with its own
 * decoder (common/verify_wire), the blocking one with protobuf-c. */
static void test_uv_verify_answers_match_blocking_client(void **state) {
  th_fixture_t *f = *state;
  const char *const scopes[] = {"read", "write:all", "x"};
  tokend_issue_params_t params = {.domain = DOMAIN,
                                  .label = "uv-answers",
                                  .expires_at = th_now_ms() + 3600000,
                                  .scopes = scopes,
                                  .n_scopes = 3};
  tokend_verify_result_t want, got;
  tokend_issued_t valid_one, revoked_one;
  const char *tokens[4];
  uv_loop_t loop;
  tokend_uv_t *c;
  run_t r = {.f = f};
  size_t i, k;

  assert_int_equal(tokend_client_issue(f->client, &params, &valid_one), 0);
  assert_int_equal(tokend_client_issue(f->client, &params, &revoked_one), 0);
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, revoked_one.info.id, NULL, NULL),
      0);
  tokens[0] = valid_one.token;
  tokens[1] = revoked_one.token;
  tokens[2] = "tkd_00000000000000000000000000000000aaaaaa"; /* bad sum */
  tokens[3] = "not a token";
  assert_int_equal(uv_loop_init(&loop), 0);
  c = open_uv(&loop, f);
  for (i = 0; i < 4; i++) {
    assert_int_equal(tokend_client_verify(f->client, tokens[i], &want), 0);
    memset(&got, 0x5a, sizeof(got));
    assert_int_equal(tokend_uv_verify(c, tokens[i], on_verify_copy, &got), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(got.valid, want.valid);
    assert_int_equal(got.reason, want.reason);
    assert_string_equal(got.token_id, want.token_id);
    assert_string_equal(got.domain, want.domain);
    assert_string_equal(got.label, want.label);
    assert_int_equal(got.n_scopes, want.n_scopes);
    for (k = 0; k < want.n_scopes; k++)
      assert_string_equal(got.scopes[k], want.scopes[k]);
    assert_int_equal(got.expires_at, want.expires_at);
  }
  assert_int_equal(want.valid, 0);
  close_uv(&loop, c, &r);
  tokend_client_wipe(&valid_one);
  tokend_client_wipe(&revoked_one);
}

/* A call written to a tokend that does not answer (stopped) fails with
 * TOKEND_ETIMEDOUT at its deadline; once tokend runs again its late
 * answer is dropped, and the connection and the next call on it go on (a
 * late answer taken for one to a call never made would break the
 * connection and fail the call written after it). */
static void test_uv_written_call_times_out_late_answer_dropped(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  uv_loop_t loop;
  tokend_uv_t *c;
  run_t r = {.f = f};

  issue_token(f, &is);
  assert_int_equal(uv_loop_init(&loop), 0);
  c = open_uv(&loop, f);
  /* Connected first, so that the next call is written, not waiting. */
  assert_int_equal(tokend_uv_verify(c, is.token, on_verify, &r), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.valid, 1);
  assert_int_equal(tokend_uv_set_timeout(c, 200), 0);
  assert_int_equal(tokend_uv_set_timeout(c, -1), TOKEND_EINVAL);

  assert_int_equal(kill(f->tokend.pid, SIGSTOP), 0);
  assert_int_equal(tokend_uv_verify(c, is.token, on_verify, &r), 0);
  /* Runs until the deadline fails it: nothing else is waiting. */
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.answered, 2);
  assert_int_equal(r.failed, 1);
  assert_int_equal(r.first_err, TOKEND_ETIMEDOUT);
  assert_non_null(strstr(r.first_msg, "within 200 ms"));
  assert_int_equal(tokend_uv_pending(c), 0);

  assert_int_equal(kill(f->tokend.pid, SIGCONT), 0);
  /* Written on the same connection, behind the forgotten one. */
  assert_int_equal(tokend_uv_verify(c, is.token, on_verify, &r), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.answered, 3);
  if (r.failed != 1)
    fail_msg("the call after the forgotten one failed too (%ld failures)",
             r.failed);
  assert_int_equal(r.valid, 2);
  close_uv(&loop, c, &r);
}

/* A call still waiting for a connection fails at its deadline, not at the
 * (much later) reconnect bound, and is never sent. */
static void
test_uv_waiting_call_times_out_before_reconnect_bound(void **state) {
  th_fixture_t *f = *state;
  char path[TH_PATH_BYTES + 16];
  char why[TOKEND_CONNECT_ERRMSG_BYTES];
  uv_loop_t loop;
  tokend_uv_t *c;
  run_t r = {.f = f};

  snprintf(path, sizeof(path), "%s/none", f->tokend.dir);
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(tokend_uv_open(&loop, path, &c, why, sizeof(why)), 0);
  assert_int_equal(tokend_uv_set_reconnect(c, RECONNECT_WAIT_MS), 0);
  assert_int_equal(tokend_uv_set_timeout(c, 100), 0);
  assert_int_equal(tokend_uv_verify(c, "tkn_x", on_verify, &r), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.answered, 1);
  assert_int_equal(r.first_err, TOKEND_ETIMEDOUT);
  close_uv(&loop, c, &r);
}

/* Closing fails every pending call at once with TOKEND_ECLOSED, and later
 * calls are refused. */
static void test_uv_close_fails_pending_calls(void **state) {
  th_fixture_t *f = *state;
  uv_loop_t loop;
  tokend_uv_t *c;
  run_t r = {.f = f};
  int i;

  assert_int_equal(uv_loop_init(&loop), 0);
  c = open_uv(&loop, f);
  for (i = 0; i < 10; i++)
    assert_int_equal(tokend_uv_verify(c, "tkn_x", on_verify, &r), 0);
  tokend_uv_close(c, on_closed, &r);
  assert_int_equal(r.answered, 10);
  assert_int_equal(r.failed, 10);
  assert_int_equal(r.first_err, TOKEND_ECLOSED);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.closed, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static int setup(void **state) { return th_fixture_setup_client(state, NULL); }

int main(void) {
  /* As <tokend/uv.h> asks of every program using it. */
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_uv_pipelined_verifies_all_answered,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_uv_lookup_answers_as_the_blocking_client, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_uv_issue_then_revoke, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_uv_verifies_survive_sigterm_restart,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_uv_verifies_survive_sigkill_restart,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_uv_issue_in_doubt_not_sent_twice,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_uv_no_socket_fails_with_reason,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_uv_verify_answers_match_blocking_client, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_uv_written_call_times_out_late_answer_dropped, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_uv_waiting_call_times_out_before_reconnect_bound, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_uv_close_fails_pending_calls, setup,
                                      th_fixture_teardown),
  };

  return cmocka_run_group_tests_name("uv_client", tests, NULL, NULL);
}
