/* Removing a domain admin while their Issues are in flight (issue 11, item
 * 1): once RevokeDomainAdmin(revoke_their_tokens) has answered OK, the
 * removed user holds no active token in the domain and cannot make one.
 *
 * The race is made deterministic with fault_inject's STALL-SYNC: the writer
 * thread is held in an fsync while the removal and then the admin's Issues
 * queue up behind it, all of them admitted by the loop's in-memory admin
 * table (which changes only once the removal commits). When the disk
 * answers again the worker runs them in that order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#ifndef FAULT_INJECT_LIB
#error "FAULT_INJECT_LIB must name the fault_inject shim"
#endif

#define DOMAIN "race.example"
#define ADMIN "alice@corp"
#define ISSUE_CONNS 4
#define ISSUES_PER_CONN 20 /* below --max-pending-calls (32) */

typedef struct {
  th_tokend_t tokend;
  char data_dir[TH_DIR_BYTES + 8];
  char ctl[TH_PATH_BYTES];
  char env_preload[TH_PATH_BYTES + 16];
  char env_dir[TH_PATH_BYTES + 32];
  char env_ctl[TH_PATH_BYTES + 32];
  const char *env[4];
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));

  if (f == NULL || th_tokend_init(&f->tokend) != 0) {
    free(f);
    return -1;
  }
  /* Only the database's directory stalls, not tokend's log. */
  snprintf(f->data_dir, sizeof(f->data_dir), "%s/data", f->tokend.dir);
  if (mkdir(f->data_dir, 0700) != 0) {
    th_tokend_destroy(&f->tokend);
    free(f);
    return -1;
  }
  snprintf(f->tokend.db_path, sizeof(f->tokend.db_path), "%s/tokend.db",
           f->data_dir);
  snprintf(f->tokend.pepper_path, sizeof(f->tokend.pepper_path), "%s/pepper",
           f->data_dir);
  snprintf(f->ctl, sizeof(f->ctl), "%s/fault", f->tokend.dir);
  snprintf(f->env_preload, sizeof(f->env_preload), "LD_PRELOAD=%s",
           FAULT_INJECT_LIB);
  snprintf(f->env_dir, sizeof(f->env_dir), "TOKEND_FAULT_DIR=%s", f->data_dir);
  snprintf(f->env_ctl, sizeof(f->env_ctl), "TOKEND_FAULT_CTL=%s", f->ctl);
  f->env[0] = f->env_preload;
  f->env[1] = f->env_dir;
  f->env[2] = f->env_ctl;
  f->env[3] = NULL;
  f->tokend.env = f->env;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;

  if (f->tokend.pid != 0)
    th_tokend_kill(&f->tokend);
  th_tokend_destroy(&f->tokend);
  free(f);
  return 0;
}

static void ctl_write(fixture_t *f, const char *what) {
  char tmp[TH_PATH_BYTES + 8];
  FILE *fp;

  /* Renamed into place: the shim never reads half a word. */
  snprintf(tmp, sizeof(tmp), "%s.tmp", f->ctl);
  fp = fopen(tmp, "w");
  assert_non_null(fp);
  assert_int_equal(fputs(what, fp) >= 0, 1);
  assert_int_equal(fclose(fp), 0);
  assert_int_equal(rename(tmp, f->ctl), 0);
}

static void stall_on(fixture_t *f) { ctl_write(f, "STALL-SYNC"); }
static void stall_off(fixture_t *f) { assert_int_equal(unlink(f->ctl), 0); }

/* An Issue by the operator (the test's own uid) acting for ADMIN. */
static void send_admin_issue(int fd, uint64_t call_id) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest is = TOKEND__V1__ISSUE_REQUEST__INIT;

  is.domain = DOMAIN;
  is.label = "racing";
  req.call_id = call_id;
  req.actor = ADMIN;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &is;
  assert_int_equal(th_send_request(fd, &req), 0);
}

static void send_who_am_i(int fd, uint64_t call_id) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__WhoAmIRequest w = TOKEND__V1__WHO_AM_IREQUEST__INIT;

  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_WHO_AM_I;
  req.who_am_i = &w;
  assert_int_equal(th_send_request(fd, &req), 0);
}

static Tokend__V1__Response *recv_call(int fd, uint64_t call_id) {
  Tokend__V1__Response *r = NULL;
  int rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);

  if (rc != 0)
    fail_msg("no answer to call %llu: %s", (unsigned long long)call_id,
             th_recv_name(rc));
  assert_int_equal(r->call_id, call_id);
  return r;
}

/* Answered from memory while the writer stalls: every request sent on fd
 * before it has been dispatched (a store call, submitted to the worker). */
static void dispatched_sync(int fd, uint64_t call_id) {
  send_who_am_i(fd, call_id);
  tokend__v1__response__free_unpacked(recv_call(fd, call_id), NULL);
}

static void expect_code(Tokend__V1__Response *r, int code) {
  if (th_response_code(r) != code)
    fail_msg("call %llu: status %d (%s), want %d",
             (unsigned long long)r->call_id, th_response_code(r),
             r->status != NULL ? r->status->message : "", code);
}

/* The race, with or without revoke_their_tokens. Either way no Issue queued
 * behind the removal may succeed; with it, the token issued before the
 * removal is revoked too. */
static void race_removal(void **state, int revoke_tokens) {
  fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__GrantDomainAdminRequest gr =
      TOKEND__V1__GRANT_DOMAIN_ADMIN_REQUEST__INIT;
  Tokend__V1__RevokeDomainAdminRequest rr =
      TOKEND__V1__REVOKE_DOMAIN_ADMIN_REQUEST__INIT;
  Tokend__V1__Response *r;
  char tokens[1 + ISSUE_CONNS * ISSUES_PER_CONN][TOKEND_TOKEN_BYTES];
  size_t n_tokens = 0, issued_after = 0, i, k;
  int op, fds[ISSUE_CONNS], verifier;

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  op = th_connect(f->tokend.socket_path);
  verifier = th_connect(f->tokend.socket_path);
  assert_true(op >= 0 && verifier >= 0);
  for (k = 0; k < ISSUE_CONNS; k++)
    assert_true((fds[k] = th_connect(f->tokend.socket_path)) >= 0);

  gr.domain = DOMAIN;
  gr.user = ADMIN;
  req.call_id = 1;
  req.method_case = TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN;
  req.grant_domain_admin = &gr;
  assert_int_equal(th_send_request(op, &req), 0);
  r = recv_call(op, 1);
  expect_code(r, TOKEND_GRPC_OK);
  tokend__v1__response__free_unpacked(r, NULL);

  /* The writer stalls committing the admin's first Issue. */
  stall_on(f);
  send_admin_issue(fds[0], 100);
  dispatched_sync(fds[0], 101);

  /* The removal queues behind it... */
  rr.domain = DOMAIN;
  rr.user = ADMIN;
  rr.revoke_their_tokens = revoke_tokens;
  req.call_id = 2;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN;
  req.revoke_domain_admin = &rr;
  assert_int_equal(th_send_request(op, &req), 0);
  dispatched_sync(op, 3);

  /* ...and the admin's pipelined Issues behind the removal, each admitted by
   * the in-memory admin table, which still names the admin. */
  for (k = 0; k < ISSUE_CONNS; k++) {
    for (i = 0; i < ISSUES_PER_CONN; i++)
      send_admin_issue(fds[k], 1000 + i);
    dispatched_sync(fds[k], 2000);
  }
  stall_off(f);

  r = recv_call(fds[0], 100); /* before the removal: issued, then revoked */
  expect_code(r, TOKEND_GRPC_OK);
  snprintf(tokens[n_tokens++], TOKEND_TOKEN_BYTES, "%s", r->issue->token);
  tokend__v1__response__free_unpacked(r, NULL);
  r = recv_call(op, 2);
  expect_code(r, TOKEND_GRPC_OK);
  if (revoke_tokens)
    assert_int_equal(r->revoke_domain_admin->tokens_revoked, 1);
  else
    assert_int_equal(r->revoke_domain_admin->tokens_revoked, 0);
  tokend__v1__response__free_unpacked(r, NULL);

  for (k = 0; k < ISSUE_CONNS; k++)
    for (i = 0; i < ISSUES_PER_CONN; i++) {
      r = recv_call(fds[k], 1000 + i);
      if (th_response_code(r) == TOKEND_GRPC_OK) {
        snprintf(tokens[n_tokens++], TOKEND_TOKEN_BYTES, "%s", r->issue->token);
        issued_after++;
      } else {
        expect_code(r, TOKEND_GRPC_PERMISSION_DENIED);
      }
      tokend__v1__response__free_unpacked(r, NULL);
    }

  /* No token of the removed admin verifies (but the one issued before a
   * plain removal)... */
  for (i = revoke_tokens ? 0 : 1; i < n_tokens; i++)
    if (th_raw_verify(verifier, 3000 + i, tokens[i]) == 0)
      fail_msg("a token the removed admin issued still verifies VALID (%zu "
               "of their Issues queued behind the removal were answered OK)",
               issued_after);
  assert_int_equal(issued_after, 0);

  /* And a new Issue is refused. */
  send_admin_issue(fds[1], 4000);
  r = recv_call(fds[1], 4000);
  expect_code(r, TOKEND_GRPC_PERMISSION_DENIED);
  tokend__v1__response__free_unpacked(r, NULL);

  for (k = 0; k < ISSUE_CONNS; k++)
    close(fds[k]);
  close(op);
  close(verifier);
  assert_int_equal(th_tokend_stop_clean(&f->tokend), 0);
  /* ...or lists as active, and none was made after the removal. */
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM tokens WHERE created_by ="
                               " '" ADMIN "' AND revoked_at = 0"),
                   revoke_tokens ? 0 : 1);
  /* The refusals are in the audit log (those queued behind the removal in
   * the same transactions), and the last one's. */
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM audit_events WHERE method"
                               " = 'Issue' AND actor = '" ADMIN "' AND code "
                               "= 7"),
                   ISSUE_CONNS * ISSUES_PER_CONN + 1);
}

static void test_removed_admin_keeps_no_token_issued_in_flight(void **state) {
  race_removal(state, 1);
}

static void test_plain_removal_refuses_issues_in_flight(void **state) {
  race_removal(state, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_removed_admin_keeps_no_token_issued_in_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_plain_removal_refuses_issues_in_flight, setup, teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
