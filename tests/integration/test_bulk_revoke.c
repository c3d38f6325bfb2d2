/* BulkRevoke (issue 17): by ids, by creator, every token, every token
 * created before a time; each revoked token audited; in effect when the
 * call returns; refusals (an id of another domain, a non-admin, bad
 * selections) change nothing. And `tokenctl revoke` with several ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tokend_error.h"
#include "tokend_limits.h"

#define DOMAIN "example.com"
#define OTHER "other.com"
#define ALICE "alice@example.com"
#define BOB "bob@example.com"

static int setup(void **state) { return th_fixture_setup_client(state, NULL); }

/* How many audit rows of domain have method and token_id ("" : any). */
static size_t audit_count(tokend_client_t *c, const char *domain,
                          const char *method, const char *token_id) {
  tokend_audit_list_t *a = NULL;
  size_t i, n = 0;

  if (tokend_client_list_audit(c, domain, 0, 1000, NULL, &a) != 0)
    fail_msg("ListAuditEvents: %s", tokend_client_errmsg(c));
  for (i = 0; i < a->n_events; i++)
    if (strcmp(a->events[i].method, method) == 0 &&
        (token_id[0] == '\0' || strcmp(a->events[i].token_id, token_id) == 0))
      n++;
  tokend_audit_list_free(a);
  return n;
}

/* The newest audit row of domain with method; fails if none. */
static void audit_newest(tokend_client_t *c, const char *domain,
                         const char *method, tokend_audit_event_t *out) {
  tokend_audit_list_t *a = NULL;
  size_t i;

  if (tokend_client_list_audit(c, domain, 0, 1000, NULL, &a) != 0)
    fail_msg("ListAuditEvents: %s", tokend_client_errmsg(c));
  for (i = 0; i < a->n_events; i++)
    if (strcmp(a->events[i].method, method) == 0) {
      *out = a->events[i];
      tokend_audit_list_free(a);
      return;
    }
  tokend_audit_list_free(a);
  fail_msg("no %s row in %s's audit log", method, domain);
}

static void expect_bulk(tokend_client_t *c, const char *domain,
                        const tokend_bulk_select_t *sel, uint32_t revoked,
                        uint32_t already) {
  uint32_t r = 99, a = 99;

  if (tokend_client_bulk_revoke(c, domain, sel, &r, &a) != 0)
    fail_msg("BulkRevoke: %s", tokend_client_errmsg(c));
  assert_int_equal(r, revoked);
  assert_int_equal(a, already);
}

/* A refused BulkRevoke: rc, and a message naming what. */
static void expect_refused(tokend_client_t *c, const char *domain,
                           const tokend_bulk_select_t *sel, int rc,
                           const char *what) {
  int got = tokend_client_bulk_revoke(c, domain, sel, NULL, NULL);

  if (got != rc)
    fail_msg("BulkRevoke: %s (%s), wanted %s", tokend_err_name(got),
             tokend_client_errmsg(c), tokend_err_name(rc));
  if (strstr(tokend_client_errmsg(c), what) == NULL)
    fail_msg("BulkRevoke's message \"%s\" does not name %s",
             tokend_client_errmsg(c), what);
}

static void test_bulk_revoke_by_ids(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t t[3], o;
  const char *ids[2];
  tokend_bulk_select_t sel = {.token_ids = ids, .n_token_ids = 2};
  tokend_audit_event_t ev;
  int i;

  for (i = 0; i < 3; i++)
    th_client_issue_ok(f->client, DOMAIN, "bulk", 0, &t[i]);
  th_client_issue_ok(f->client, OTHER, "other", 0, &o);
  ids[0] = t[0].info.id;
  ids[1] = t[1].info.id;
  expect_bulk(f->client, DOMAIN, &sel, 2, 0);
  /* In effect when the call returned. */
  th_expect_verify(f->client, t[0].token, 0, TOKEND_VERIFY_REVOKED);
  th_expect_verify(f->client, t[1].token, 0, TOKEND_VERIFY_REVOKED);
  th_expect_verify(f->client, t[2].token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(f->client, o.token, 1, TOKEND_VERIFY_VALID);
  /* Each token its own audit row, and one row for the call. */
  assert_int_equal(audit_count(f->client, DOMAIN, "BulkRevoke", ids[0]), 1);
  assert_int_equal(audit_count(f->client, DOMAIN, "BulkRevoke", ids[1]), 1);
  assert_int_equal(audit_count(f->client, DOMAIN, "BulkRevoke", ""), 3);
  audit_newest(f->client, DOMAIN, "BulkRevoke", &ev);
  assert_string_equal(ev.token_id, "");
  assert_int_equal(ev.code, 0);
  assert_non_null(strstr(ev.detail, "2 revoked"));

  /* Once more with one revoked and one not. */
  ids[0] = t[1].info.id;
  ids[1] = t[2].info.id;
  expect_bulk(f->client, DOMAIN, &sel, 1, 1);
  th_expect_verify(f->client, t[2].token, 0, TOKEND_VERIFY_REVOKED);
  assert_int_equal(audit_count(f->client, DOMAIN, "BulkRevoke", ids[1]), 1);
}

static void test_bulk_revoke_by_creator_and_all(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t a[2], mine, o;
  tokend_bulk_select_t by_alice = {.created_by = ALICE};
  tokend_bulk_select_t all = {.all = 1};

  assert_int_equal(
      tokend_client_grant_admin(f->client, DOMAIN, ALICE, NULL, NULL), 0);
  assert_int_equal(tokend_client_set_actor(f->client, ALICE), 0);
  th_client_issue_ok(f->client, DOMAIN, "alice 1", 0, &a[0]);
  th_client_issue_ok(f->client, DOMAIN, "alice 2", 0, &a[1]);
  assert_int_equal(tokend_client_set_actor(f->client, NULL), 0);
  th_client_issue_ok(f->client, DOMAIN, "break-glass", 0, &mine);
  th_client_issue_ok(f->client, OTHER, "other", 0, &o);

  expect_bulk(f->client, DOMAIN, &by_alice, 2, 0);
  th_expect_verify(f->client, a[0].token, 0, TOKEND_VERIFY_REVOKED);
  th_expect_verify(f->client, a[1].token, 0, TOKEND_VERIFY_REVOKED);
  th_expect_verify(f->client, mine.token, 1, TOKEND_VERIFY_VALID);

  expect_bulk(f->client, DOMAIN, &all, 1, 2);
  th_expect_verify(f->client, mine.token, 0, TOKEND_VERIFY_REVOKED);
  /* Another domain's tokens are not "all". */
  th_expect_verify(f->client, o.token, 1, TOKEND_VERIFY_VALID);
  assert_int_equal(audit_count(f->client, DOMAIN, "BulkRevoke", mine.info.id),
                   1);
  /* Nothing left: a call that revokes nothing is an answer. */
  expect_bulk(f->client, DOMAIN, &all, 0, 3);
}

static void test_bulk_revoke_created_before(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t old, young;
  tokend_bulk_select_t sel = {.created_before = 0};

  th_client_issue_ok(f->client, DOMAIN, "old", 0, &old);
  /* The next token must be created in a later millisecond. */
  while (th_now_ms() <= old.info.created_at)
    ;
  th_client_issue_ok(f->client, DOMAIN, "young", 0, &young);
  assert_true(young.info.created_at > old.info.created_at);
  sel.created_before = young.info.created_at;
  expect_bulk(f->client, DOMAIN, &sel, 1, 0);
  th_expect_verify(f->client, old.token, 0, TOKEND_VERIFY_REVOKED);
  th_expect_verify(f->client, young.token, 1, TOKEND_VERIFY_VALID);
}

static void test_bulk_revoke_other_domain_id_not_found(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t t, o;
  const char *ids[2];
  tokend_bulk_select_t sel = {.token_ids = ids, .n_token_ids = 2};

  th_client_issue_ok(f->client, DOMAIN, "mine", 0, &t);
  th_client_issue_ok(f->client, OTHER, "theirs", 0, &o);
  ids[0] = t.info.id;
  ids[1] = o.info.id;
  expect_refused(f->client, DOMAIN, &sel, TOKEND_ENOTFOUND, o.info.id);
  /* Nothing revoked: not even the id that was there. */
  th_expect_verify(f->client, t.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(f->client, o.token, 1, TOKEND_VERIFY_VALID);
  assert_int_equal(audit_count(f->client, DOMAIN, "BulkRevoke", t.info.id), 0);
  /* The refusal itself is audited. */
  assert_int_equal(audit_count(f->client, DOMAIN, "BulkRevoke", ""), 1);
}

static void test_bulk_revoke_non_admin_denied(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t t;
  tokend_bulk_select_t all = {.all = 1};

  th_client_issue_ok(f->client, DOMAIN, "kept", 0, &t);
  assert_int_equal(tokend_client_set_actor(f->client, BOB), 0);
  expect_refused(f->client, DOMAIN, &all, TOKEND_EPERM, "");
  assert_int_equal(tokend_client_set_actor(f->client, NULL), 0);
  th_expect_verify(f->client, t.token, 1, TOKEND_VERIFY_VALID);
}

static void test_bulk_revoke_bad_selection_invalid(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t t;
  const char *ids[TOKEND_BULK_IDS_MAX + 1];
  tokend_bulk_select_t none = {.token_ids = NULL};
  tokend_bulk_select_t two = {.all = 1, .created_by = ALICE};
  tokend_bulk_select_t bad_id = {.token_ids = ids, .n_token_ids = 2};
  tokend_bulk_select_t too_many = {.token_ids = ids,
                                   .n_token_ids = TOKEND_BULK_IDS_MAX + 1};
  tokend_bulk_select_t bad_time = {.created_before = -5};
  tokend_bulk_select_t bad_user = {.created_by = "no spaces allowed"};
  size_t i;

  th_client_issue_ok(f->client, DOMAIN, "kept", 0, &t);
  expect_refused(f->client, DOMAIN, &none, TOKEND_EINVAL, "token_ids");
  expect_refused(f->client, DOMAIN, &two, TOKEND_EINVAL, "all");
  ids[0] = t.info.id;
  ids[1] = "tok_not-an-id";
  expect_refused(f->client, DOMAIN, &bad_id, TOKEND_EINVAL, "token_ids[1]");
  ids[1] = t.info.id;
  expect_refused(f->client, DOMAIN, &bad_id, TOKEND_EINVAL, "twice");
  for (i = 0; i <= TOKEND_BULK_IDS_MAX; i++)
    ids[i] = t.info.id;
  expect_refused(f->client, DOMAIN, &too_many, TOKEND_EINVAL, "at most 1000");
  expect_refused(f->client, DOMAIN, &bad_time, TOKEND_EINVAL, "created_before");
  expect_refused(f->client, DOMAIN, &bad_user, TOKEND_EINVAL, "");
  expect_refused(f->client, "bad domain!", &two, TOKEND_EINVAL, "");
  th_expect_verify(f->client, t.token, 1, TOKEND_VERIFY_VALID);
  assert_int_equal(audit_count(f->client, DOMAIN, "BulkRevoke", ""), 0);
}

static void test_tokenctl_revoke_several_ids(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t t[2];
  th_run_result_t r;

  th_client_issue_ok(f->client, DOMAIN, "a", 0, &t[0]);
  th_client_issue_ok(f->client, DOMAIN, "b", 0, &t[1]);
  /* Not a terminal and no --yes: refused, nothing revoked. */
  th_tokenctl(&f->tokend, NULL, &r, "revoke", "--domain", DOMAIN, t[0].info.id,
              t[1].info.id, NULL);
  th_expect_exit(&r, 2, "tokenctl revoke ID ID without --yes");
  assert_non_null(strstr(r.err, "--yes"));
  th_run_result_free(&r);
  th_expect_verify(f->client, t[0].token, 1, TOKEND_VERIFY_VALID);

  th_tokenctl(&f->tokend, NULL, &r, "revoke", "--domain", DOMAIN, "--yes",
              t[0].info.id, t[1].info.id, NULL);
  th_expect_exit(&r, 0, "tokenctl revoke --yes ID ID");
  assert_non_null(strstr(r.out, "revoked 2 tokens"));
  th_run_result_free(&r);
  th_expect_verify(f->client, t[0].token, 0, TOKEND_VERIFY_REVOKED);
  th_expect_verify(f->client, t[1].token, 0, TOKEND_VERIFY_REVOKED);

  /* An id that is no token of the domain: one short message that says so
   * once, and where to look. */
  th_tokenctl(&f->tokend, NULL, &r, "revoke", "--domain", DOMAIN, "--yes",
              t[0].info.id, "tok_AAAAAAAAAAAAAAAAAAAA", NULL);
  th_expect_exit(&r, 2, "tokenctl revoke --yes ID UNKNOWN");
  assert_non_null(strstr(r.err, "tok_AAAAAAAAAAAAAAAAAAAA"));
  assert_non_null(strstr(r.err, "nothing was revoked"));
  if (strstr(strstr(r.err, "nothing was revoked") + 1, "nothing was revoked"))
    fail_msg("said twice that nothing was revoked: %s", r.err);
  assert_non_null(strstr(r.err, "tokenctl list --domain " DOMAIN " --all"));
  th_run_result_free(&r);

  /* Two selections at once: a usage error. */
  th_tokenctl(&f->tokend, NULL, &r, "revoke", "--domain", DOMAIN, "--yes",
              "--all", "--created-by", ALICE, NULL);
  th_expect_exit(&r, 2, "tokenctl revoke --all --created-by");
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "revoke", "--domain", DOMAIN, "--yes",
              "--created-before", "2001-02-03", "--json", NULL);
  th_expect_exit(&r, 0, "tokenctl revoke --created-before DATE");
  assert_non_null(strstr(r.out, "\"revoked\": 0"));
  th_run_result_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_fixture_teardown)
      T(test_bulk_revoke_by_ids),
      T(test_bulk_revoke_by_creator_and_all),
      T(test_bulk_revoke_created_before),
      T(test_bulk_revoke_other_domain_id_not_found),
      T(test_bulk_revoke_non_admin_denied),
      T(test_bulk_revoke_bad_selection_invalid),
      T(test_tokenctl_revoke_several_ids),
#undef T
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
