/* RevokeLeaked (issue 17): secrets found in public are revoked if active,
 * audited as leaked in their own domain with the source (never the
 * secret); the answer says only which were known. --leak-reporter is
 * parsed and printed; tokenctl revoke-leaked reads secrets from stdin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "token.h"
#include "tokend_error.h"
#include "tokend_limits.h"

#define SOURCE "https://github.com/acme/app/blob/main/.env"

static int setup(void **state) {
  static const char *const args[] = {"--leak-reporter", "uid:4242", NULL};

  return th_fixture_setup_client(state, args);
}

/* 1 if any audit row of domain (all: "") holds s in any field. */
static int audit_holds(tokend_client_t *c, const char *domain, const char *s,
                       const char *method, size_t *n_method) {
  tokend_audit_list_t *a = NULL;
  size_t i;
  int hit = 0;

  if (tokend_client_list_audit(c, domain, 0, 1000, NULL, &a) != 0)
    fail_msg("ListAuditEvents: %s", tokend_client_errmsg(c));
  *n_method = 0;
  for (i = 0; i < a->n_events; i++) {
    if (strstr(a->events[i].detail, s) != NULL ||
        strstr(a->events[i].actor, s) != NULL ||
        strstr(a->events[i].token_id, s) != NULL)
      hit = 1;
    if (strcmp(a->events[i].method, method) == 0)
      (*n_method)++;
  }
  tokend_audit_list_free(a);
  return hit;
}

static void test_revoke_leaked_found_revoked_and_audited(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t a, b, gone;
  char unknown[TOKEND_TOKEN_BYTES];
  const char *tokens[5];
  int found[5], already;
  uint32_t revoked = 99;
  size_t n;

  th_client_issue_ok(f->client, "example.com", "a", 0, &a);
  th_client_issue_ok(f->client, "other.org", "b", 0, &b);
  th_client_issue_ok(f->client, "example.com", "gone", 0, &gone);
  assert_int_equal(tokend_client_revoke(f->client, "example.com", gone.info.id,
                                        NULL, &already),
                   0);
  /* Well-formed, but nobody issued it. */
  assert_int_equal(token_generate(TOKEND_PREFIX_DEFAULT, unknown), 0);
  tokens[0] = a.token;
  tokens[1] = "not a token at all";
  tokens[2] = b.token;
  tokens[3] = gone.token;
  tokens[4] = unknown;
  assert_int_equal(tokend_client_revoke_leaked(f->client, tokens, 5, SOURCE,
                                               found, &revoked),
                   0);
  assert_int_equal(found[0], 1);
  assert_int_equal(found[1], 0);
  assert_int_equal(found[2], 1);
  assert_int_equal(found[3], 1); /* known, revoked before */
  assert_int_equal(found[4], 0);
  assert_int_equal(revoked, 2);
  th_expect_verify(f->client, a.token, 0, TOKEND_VERIFY_REVOKED);
  th_expect_verify(f->client, b.token, 0, TOKEND_VERIFY_REVOKED);
  /* Audited in each token's own domain, with the source, never the
   * secret. */
  assert_true(
      audit_holds(f->client, "example.com", SOURCE, "RevokeLeaked", &n));
  assert_int_equal(n, 1);
  assert_true(
      audit_holds(f->client, "other.org", b.info.id, "RevokeLeaked", &n));
  assert_int_equal(n, 1);
  assert_false(audit_holds(f->client, "", a.token, "RevokeLeaked", &n));
  assert_false(audit_holds(f->client, "", b.token, "RevokeLeaked", &n));
  /* Secrets are never logged. */
  assert_int_equal(
      th_file_contains(f->tokend.log_path, a.token, strlen(a.token)), 0);
  /* Once more: known, nothing new to revoke. */
  assert_int_equal(
      tokend_client_revoke_leaked(f->client, tokens, 1, NULL, found, &revoked),
      0);
  assert_int_equal(found[0], 1);
  assert_int_equal(revoked, 0);
}

static void test_revoke_leaked_bad_input_invalid(void **state) {
  th_fixture_t *f = *state;
  const char *tokens[TOKEND_LEAKED_MAX + 1];
  char source[300];
  tokend_issued_t a;
  size_t i;

  th_client_issue_ok(f->client, "example.com", "a", 0, &a);
  for (i = 0; i <= TOKEND_LEAKED_MAX; i++)
    tokens[i] = "x";
  /* Checked by the library first; tokend checks again (test_rpc). */
  assert_int_equal(tokend_client_revoke_leaked(f->client, tokens,
                                               TOKEND_LEAKED_MAX + 1, NULL,
                                               NULL, NULL),
                   TOKEND_EINVAL);
  memset(source, 'a', sizeof(source) - 1);
  source[sizeof(source) - 1] = '\0';
  tokens[0] = a.token;
  assert_int_equal(
      tokend_client_revoke_leaked(f->client, tokens, 1, source, NULL, NULL),
      TOKEND_EINVAL);
  assert_non_null(strstr(tokend_client_errmsg(f->client), "source"));
  /* A secret in the source is refused, not recorded. */
  assert_int_equal(
      tokend_client_revoke_leaked(f->client, tokens, 1, a.token, NULL, NULL),
      TOKEND_EINVAL);
  th_expect_verify(f->client, a.token, 1, TOKEND_VERIFY_VALID);
}

static void test_leak_reporter_in_config_printout(void **state) {
  th_fixture_t *f = *state;
  const char *argv[] = {TOKEND_BIN, "--check-config",  "--leak-reporter",
                        "uid:4242", "--leak-reporter", "4343",
                        NULL};
  th_run_result_t r;

  (void)f;
  assert_int_equal(th_run(argv, NULL, NULL, 10000, &r), 0);
  th_expect_exit(&r, 0, "tokend --check-config --leak-reporter");
  assert_non_null(strstr(r.out, "leak-reporter = 4242"));
  assert_non_null(strstr(r.out, "leak-reporter = 4343"));
  th_run_result_free(&r);
}

static void test_tokenctl_revoke_leaked_from_stdin(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t a;
  char in[TOKEND_TOKEN_BYTES * 2 + 32];
  th_run_result_t r;

  th_client_issue_ok(f->client, "example.com", "a", 0, &a);
  snprintf(in, sizeof(in), "%s\nnot-a-token\n\n", a.token);
  th_tokenctl(&f->tokend, in, &r, "revoke-leaked", "--source", SOURCE, NULL);
  th_expect_exit(&r, 0, "tokenctl revoke-leaked");
  assert_non_null(strstr(r.out, "2 secrets given, 1 known to tokend, 1 "
                                "revoked"));
  assert_null(strstr(r.out, a.token));
  th_run_result_free(&r);
  th_expect_verify(f->client, a.token, 0, TOKEND_VERIFY_REVOKED);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_fixture_teardown)
      T(test_revoke_leaked_found_revoked_and_audited),
      T(test_revoke_leaked_bad_input_invalid),
      T(test_leak_reporter_in_config_printout),
      T(test_tokenctl_revoke_leaked_from_stdin),
#undef T
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
