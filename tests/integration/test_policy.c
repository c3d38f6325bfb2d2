/* Domain policies (issue 17): SetDomainPolicy and GetDomainPolicy, audited
 * with before and after; Issue held to the policy in its transaction
 * (max lifetime, required expiry, allowed scopes, max active tokens), a
 * refused Issue storing nothing; refusals of bad policies and of
 * non-admins; tokenctl policy set / show. */
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
#define BOB "bob@example.com"
#define DAY_MS 86400000LL

static int setup(void **state) { return th_fixture_setup_client(state, NULL); }

/* An Issue in domain with expires_at and scopes: its result, and the
 * token in *out on success. */
static int issue(tokend_client_t *c, const char *domain, int64_t expires_at,
                 const char *const *scopes, size_t n, tokend_issued_t *out) {
  tokend_issue_params_t p = {.domain = domain,
                             .label = "policy",
                             .expires_at = expires_at,
                             .scopes = scopes,
                             .n_scopes = n};

  return tokend_client_issue(c, &p, out);
}

static size_t n_tokens(tokend_client_t *c, const char *domain) {
  tokend_token_list_t *l = NULL;
  size_t n;

  if (tokend_client_list(c, domain, 0, NULL, 1, &l) != 0)
    fail_msg("List: %s", tokend_client_errmsg(c));
  n = l->n_tokens;
  tokend_token_list_free(l);
  return n;
}

static void expect_issue_refused(tokend_client_t *c, int64_t expires_at,
                                 const char *const *scopes, size_t n, int rc,
                                 const char *names) {
  tokend_issued_t t;
  size_t before = n_tokens(c, DOMAIN);
  int got = issue(c, DOMAIN, expires_at, scopes, n, &t);

  /* By its gRPC status: the client cannot tell TOKEND_EQUOTA from the
   * other RESOURCE_EXHAUSTED codes. */
  if (tokend_err_grpc(got) != tokend_err_grpc(rc))
    fail_msg("Issue: %s (%s), wanted %s", tokend_err_name(got),
             tokend_client_errmsg(c), tokend_err_name(rc));
  if (strstr(tokend_client_errmsg(c), names) == NULL)
    fail_msg("Issue's message \"%s\" does not name %s", tokend_client_errmsg(c),
             names);
  /* Nothing stored. */
  assert_int_equal(n_tokens(c, DOMAIN), before);
}

static void test_policy_set_get_and_audited(void **state) {
  th_fixture_t *f = *state;
  tokend_domain_policy_t p, got;
  tokend_audit_list_t *a = NULL;

  /* None set: all zero. */
  assert_int_equal(tokend_client_get_domain_policy(f->client, DOMAIN, &got), 0);
  assert_int_equal(got.max_lifetime_ms, 0);
  assert_int_equal(got.updated_at, 0);

  memset(&p, 0, sizeof(p));
  p.max_lifetime_ms = 90 * DAY_MS;
  p.require_expiry = 1;
  p.n_allowed_scopes = 2;
  strcpy(p.allowed_scopes[0], "read");
  strcpy(p.allowed_scopes[1], "write");
  p.max_active_tokens = 5;
  assert_int_equal(tokend_client_set_domain_policy(f->client, DOMAIN, &p), 0);
  assert_int_equal(tokend_client_get_domain_policy(f->client, DOMAIN, &got), 0);
  assert_int_equal(got.max_lifetime_ms, 90 * DAY_MS);
  assert_int_equal(got.require_expiry, 1);
  assert_int_equal(got.n_allowed_scopes, 2);
  assert_string_equal(got.allowed_scopes[1], "write");
  assert_int_equal(got.max_active_tokens, 5);
  assert_true(got.updated_at > 0);
  assert_string_equal(got.updated_by, "uid:0");
  /* Another domain has none. */
  assert_int_equal(tokend_client_get_domain_policy(f->client, OTHER, &got), 0);
  assert_int_equal(got.max_active_tokens, 0);

  /* Replaced, audited with before and after. */
  p.max_active_tokens = 7;
  assert_int_equal(tokend_client_set_domain_policy(f->client, DOMAIN, &p), 0);
  assert_int_equal(tokend_client_list_audit(f->client, DOMAIN, 0, 10, NULL, &a),
                   0);
  assert_true(a->n_events >= 2);
  assert_string_equal(a->events[0].method, "SetDomainPolicy");
  assert_non_null(strstr(a->events[0].detail, "before: lifetime="));
  assert_non_null(strstr(a->events[0].detail, "active<=5; after:"));
  assert_non_null(strstr(a->events[0].detail, "active<=7"));
  assert_string_equal(a->events[1].method, "SetDomainPolicy");
  assert_non_null(strstr(a->events[1].detail, "before: none"));
  tokend_audit_list_free(a);
}

static void test_issue_held_to_lifetime_expiry_and_scopes(void **state) {
  th_fixture_t *f = *state;
  const char *ok_scopes[] = {"read"}, *bad_scopes[] = {"read", "admin"};
  tokend_domain_policy_t p;
  tokend_issued_t t;
  int64_t now = th_now_ms();

  memset(&p, 0, sizeof(p));
  p.max_lifetime_ms = 30 * DAY_MS;
  p.require_expiry = 1;
  p.n_allowed_scopes = 2;
  strcpy(p.allowed_scopes[0], "read");
  strcpy(p.allowed_scopes[1], "write");
  assert_int_equal(tokend_client_set_domain_policy(f->client, DOMAIN, &p), 0);

  expect_issue_refused(f->client, now + 31 * DAY_MS, ok_scopes, 1,
                       TOKEND_EINVAL, "expires_at");
  expect_issue_refused(f->client, 0, ok_scopes, 1, TOKEND_EINVAL, "expires_at");
  expect_issue_refused(f->client, now + DAY_MS, bad_scopes, 2, TOKEND_EINVAL,
                       "scopes: admin");
  assert_int_equal(issue(f->client, DOMAIN, now + DAY_MS, ok_scopes, 1, &t), 0);
  th_expect_verify(f->client, t.token, 1, TOKEND_VERIFY_VALID);
  /* Another domain is not held to it. */
  assert_int_equal(issue(f->client, OTHER, 0, bad_scopes, 2, &t), 0);
}

static void test_issue_past_max_active_exhausted(void **state) {
  th_fixture_t *f = *state;
  tokend_domain_policy_t p;
  tokend_issued_t t[2], gone;
  int already;

  th_client_issue_ok(f->client, DOMAIN, "before the policy", 0, &gone);
  memset(&p, 0, sizeof(p));
  p.max_active_tokens = 2;
  assert_int_equal(tokend_client_set_domain_policy(f->client, DOMAIN, &p), 0);
  th_client_issue_ok(f->client, DOMAIN, "second", 0, &t[0]);
  expect_issue_refused(f->client, 0, NULL, 0, TOKEND_EQUOTA,
                       "max_active_tokens");
  /* A revoked token is not active: room for one more. */
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, gone.info.id, NULL, &already), 0);
  th_client_issue_ok(f->client, DOMAIN, "third", 0, &t[1]);
  expect_issue_refused(f->client, 0, NULL, 0, TOKEND_EQUOTA,
                       "max_active_tokens");
}

static void test_policy_refusals(void **state) {
  th_fixture_t *f = *state;
  tokend_domain_policy_t p, got;

  memset(&p, 0, sizeof(p));
  p.max_lifetime_ms = -1;
  assert_int_equal(tokend_client_set_domain_policy(f->client, DOMAIN, &p),
                   TOKEND_EINVAL);
  assert_non_null(
      strstr(tokend_client_errmsg(f->client), "policy.max_lifetime_ms"));
  p.max_lifetime_ms = 0;
  p.n_allowed_scopes = 1;
  strcpy(p.allowed_scopes[0], "no spaces");
  assert_int_equal(tokend_client_set_domain_policy(f->client, DOMAIN, &p),
                   TOKEND_EINVAL);
  /* The message names the field. */
  assert_non_null(
      strstr(tokend_client_errmsg(f->client), "policy.allowed_scopes"));
  assert_int_equal(
      tokend_client_set_domain_policy(f->client, "bad domain!", &p),
      TOKEND_EINVAL);
  /* Nothing was set. */
  assert_int_equal(tokend_client_get_domain_policy(f->client, DOMAIN, &got), 0);
  assert_int_equal(got.updated_at, 0);
  /* A non-admin may not read it. */
  assert_int_equal(tokend_client_set_actor(f->client, BOB), 0);
  assert_int_equal(tokend_client_get_domain_policy(f->client, DOMAIN, &got),
                   TOKEND_EPERM);
  assert_int_equal(tokend_client_set_actor(f->client, NULL), 0);
}

static void test_tokenctl_policy_set_and_show(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;

  th_tokenctl(&f->tokend, NULL, &r, "policy", "set", "--domain", DOMAIN,
              "--max-lifetime", "90d", "--require-expiry", "--allowed-scopes",
              "read,write", "--max-active", "100", NULL);
  th_expect_exit(&r, 0, "tokenctl policy set");
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "policy", "show", "--domain", DOMAIN, NULL);
  th_expect_exit(&r, 0, "tokenctl policy show");
  assert_non_null(strstr(r.out, "90.0 days"));
  assert_non_null(strstr(r.out, "read, write"));
  assert_non_null(strstr(r.out, "100"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "policy", "show", "--domain", DOMAIN,
              "--json", NULL);
  th_expect_exit(&r, 0, "tokenctl policy show --json");
  assert_non_null(strstr(r.out, "\"max_lifetime_ms\": 7776000000"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "policy", "set", "--domain", DOMAIN,
              "--max-active", "0", NULL);
  th_expect_exit(&r, 2, "tokenctl policy set --max-active 0");
  th_run_result_free(&r);

  /* Setting a policy is the operator's own act: acting for a domain admin
   * would record that admin as having set it (updated_by, the audit
   * row's actor), which no admin may do. Refused, nothing changed. */
  assert_int_equal(
      tokend_client_grant_admin(f->client, DOMAIN, BOB, NULL, NULL), 0);
  th_tokenctl(&f->tokend, NULL, &r, "--actor", BOB, "policy", "set", "--domain",
              DOMAIN, "--max-active", "5", NULL);
  th_expect_exit(&r, 2, "tokenctl --actor U policy set");
  assert_non_null(strstr(r.err, "--actor does not apply"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "policy", "show", "--domain", DOMAIN,
              "--json", NULL);
  th_expect_exit(&r, 0, "tokenctl policy show --json");
  assert_non_null(strstr(r.out, "\"max_active_tokens\": 100"));
  th_run_result_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_fixture_teardown)
      T(test_policy_set_get_and_audited),
      T(test_issue_held_to_lifetime_expiry_and_scopes),
      T(test_issue_past_max_active_exhausted),
      T(test_policy_refusals),
      T(test_tokenctl_policy_set_and_show),
#undef T
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
