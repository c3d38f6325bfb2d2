/* Issue, Verify, Revoke and List against a real tokend, through the client
 * library. Each test gets its own tokend, database and socket. */
#define _GNU_SOURCE /* memmem */
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
#include "tokend_client.h"

/* Every test gets f->client, connected to its own tokend. */
static int setup(void **state) { return th_fixture_setup_client(state, NULL); }

static void test_issue_verify_revoke_verify_revoked(void **state) {
  th_fixture_t *f = *state;
  const char *scopes[] = {"read", "deploy:prod"};
  tokend_issue_params_t p = {
      "example.com", "CI deploy \xc3\xa9t\xc3\xa9", 0, scopes, 2, NULL};
  tokend_issued_t is;
  tokend_verify_result_t v;
  int64_t before = th_now_ms(), revoked_at = 0;
  int already = -1;
  char hint[TOKEND_HINT_BYTES];

  assert_int_equal(tokend_client_issue(f->client, &p, &is), 0);
  assert_int_equal(token_check(is.token, strlen(is.token)), 0);
  assert_true(strncmp(is.token, "tkd_", 4) == 0);
  assert_true(strncmp(is.info.id, "tok_", 4) == 0);
  assert_string_equal(is.info.domain, "example.com");
  assert_string_equal(is.info.label, p.label);
  assert_int_equal(is.info.n_scopes, 2);
  assert_string_equal(is.info.scopes[0], "read");
  assert_string_equal(is.info.scopes[1], "deploy:prod");
  assert_int_equal(is.info.status, TOKEND_TOKEN_ACTIVE);
  assert_true(is.info.created_at >= before - 1000 &&
              is.info.created_at <= th_now_ms() + 1000);
  assert_int_equal(is.info.expires_at, 0);
  assert_int_equal(is.info.revoked_at, 0);
  /* The hint is the prefix and the last 4 characters, never more. */
  snprintf(hint, sizeof(hint), "tkd_...%s", is.token + strlen(is.token) - 4);
  assert_string_equal(is.info.hint, hint);

  th_client_verify_ok(f->client, is.token, &v);
  assert_int_equal(v.valid, 1);
  assert_int_equal(v.reason, TOKEND_VERIFY_VALID);
  assert_string_equal(v.token_id, is.info.id);
  assert_string_equal(v.domain, "example.com");
  assert_string_equal(v.label, p.label);
  assert_int_equal(v.n_scopes, 2);
  assert_string_equal(v.scopes[0], "read");
  assert_string_equal(v.scopes[1], "deploy:prod");
  assert_int_equal(v.expires_at, 0);

  assert_int_equal(tokend_client_revoke(f->client, "example.com", is.info.id,
                                        &revoked_at, &already),
                   0);
  assert_int_equal(already, 0);
  assert_true(revoked_at >= before - 1000 && revoked_at <= th_now_ms() + 1000);

  th_client_verify_ok(f->client, is.token, &v);
  assert_int_equal(v.valid, 0);
  assert_string_equal(tokend_verify_reason_name(v.reason), "REVOKED");
  /* A known token still says which one it is. */
  assert_string_equal(v.token_id, is.info.id);
  assert_string_equal(v.domain, "example.com");
  tokend_client_wipe(&is);
}

static void test_revoke_twice_is_idempotent(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  int64_t first = 0, second = 0;
  int already1 = -1, already2 = -1;

  th_client_issue_ok(f->client, "example.com", "twice", 0, &is);
  assert_int_equal(tokend_client_revoke(f->client, "example.com", is.info.id,
                                        &first, &already1),
                   0);
  /* Let the clock move, so a second revocation time would differ. */
  th_sleep_ms(20);
  assert_int_equal(tokend_client_revoke(f->client, "example.com", is.info.id,
                                        &second, &already2),
                   0);
  assert_int_equal(already1, 0);
  assert_int_equal(already2, 1);
  assert_true(first > 0);
  assert_int_equal(second, first);
  th_expect_verify(f->client, is.token, 0, TOKEND_VERIFY_REVOKED);
}

static void test_expired_token_verifies_expired(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  tokend_verify_result_t v;
  tokend_token_list_t *list = NULL;
  int64_t expires_at = th_now_ms() + 1500;

  th_client_issue_ok(f->client, "example.com", "short-lived", expires_at, &is);
  assert_int_equal(is.info.expires_at, expires_at);
  th_client_verify_ok(f->client, is.token, &v);
  assert_int_equal(v.valid, 1);
  assert_int_equal(v.expires_at, expires_at);

  while (th_now_ms() <= expires_at + 50)
    th_sleep_ms(50);
  th_client_verify_ok(f->client, is.token, &v);
  assert_int_equal(v.valid, 0);
  assert_string_equal(tokend_verify_reason_name(v.reason), "EXPIRED");
  assert_string_equal(v.token_id, is.info.id);

  /* List reports it as expired too. */
  assert_int_equal(
      tokend_client_list(f->client, "example.com", 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 1);
  assert_string_equal(list->tokens[0].id, is.info.id);
  assert_string_equal(tokend_token_status_name(list->tokens[0].status),
                      "EXPIRED");
  tokend_token_list_free(list);
}

static void test_issue_past_expiry_invalid_argument(void **state) {
  th_fixture_t *f = *state;
  tokend_issue_params_t p = {"example.com", "late", th_now_ms() - 60000,
                             NULL,          0,      NULL};
  tokend_token_list_t *list = NULL;
  tokend_issued_t is;

  assert_int_equal(tokend_client_issue(f->client, &p, &is), TOKEND_EINVAL);
  assert_int_equal(tokend_client_grpc_status(f->client),
                   TOKEND_GRPC_INVALID_ARGUMENT);
  assert_true(strlen(tokend_client_errmsg(f->client)) > 0);
  assert_int_equal(
      tokend_client_list(f->client, "example.com", 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 0);
  tokend_token_list_free(list);
}

static void expect_issue_invalid(tokend_client_t *c, const char *domain,
                                 const char *label, const char *scope,
                                 const char *word) {
  tokend_issue_params_t p = {domain, label, 0, &scope, scope != NULL, NULL};
  tokend_issued_t is;
  int rc = tokend_client_issue(c, &p, &is);

  if (rc != TOKEND_EINVAL || tokend_client_grpc_status(c) != 3)
    fail_msg("issue domain '%s' label '%s' scope '%s': want INVALID_ARGUMENT, "
             "got %s / grpc %d",
             domain, label, scope != NULL ? scope : "(none)",
             tokend_err_name(rc), tokend_client_grpc_status(c));
  /* The message says what is wrong. */
  if (strstr(tokend_client_errmsg(c), word) == NULL)
    fail_msg("message '%s' for domain '%s' label '%s' does not mention '%s'",
             tokend_client_errmsg(c), domain, label, word);
}

static void test_issue_invalid_domain_or_label_rejected(void **state) {
  th_fixture_t *f = *state;
  tokend_token_list_t *list = NULL;
  char long_domain[TOKEND_DOMAIN_MAX_CHARS + 2];
  char long_label[TOKEND_LABEL_MAX_CHARS + 2];
  char ok_domain[TOKEND_DOMAIN_MAX_CHARS + 1];
  char ok_label[TOKEND_LABEL_MAX_CHARS + 1];
  tokend_issued_t is;

  memset(long_domain, 'a', sizeof(long_domain) - 1);
  long_domain[sizeof(long_domain) - 1] = '\0';
  memset(long_label, 'x', sizeof(long_label) - 1);
  long_label[sizeof(long_label) - 1] = '\0';

  expect_issue_invalid(f->client, "", "label", NULL, "domain");
  expect_issue_invalid(f->client, "exa mple.com", "label", NULL, "domain");
  expect_issue_invalid(f->client, "example.com/x", "label", NULL, "domain");
  expect_issue_invalid(f->client, long_domain, "label", NULL, "domain");
  expect_issue_invalid(f->client, "example.com", "", NULL, "label");
  expect_issue_invalid(f->client, "example.com", "tab\there", NULL, "label");
  expect_issue_invalid(f->client, "example.com", "nl\nhere", NULL, "label");
  expect_issue_invalid(f->client, "example.com", "bad \xff utf8", NULL,
                       "label");
  expect_issue_invalid(f->client, "example.com", long_label, NULL, "label");
  expect_issue_invalid(f->client, "example.com", "label", "bad scope", "scope");

  /* Nothing was stored. */
  assert_int_equal(
      tokend_client_list(f->client, "example.com", 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 0);
  tokend_token_list_free(list);

  /* The edges themselves are accepted: 128-char domain, 100-char label
   * (multi-byte characters count as one). */
  memset(ok_domain, 'd', sizeof(ok_domain) - 1);
  ok_domain[sizeof(ok_domain) - 1] = '\0';
  memset(ok_label, 'l', sizeof(ok_label) - 1);
  ok_label[sizeof(ok_label) - 1] = '\0';
  th_client_issue_ok(f->client, ok_domain, ok_label, 0, &is);
  th_client_issue_ok(f->client, "A-z_0.9:x", "\xe2\x9c\x93 ok", 0, &is);
  assert_string_equal(is.info.label, "\xe2\x9c\x93 ok");
  {
    /* 100 two-byte characters pass; 101 do not. */
    char wide[2 * (TOKEND_LABEL_MAX_CHARS + 1) + 1];
    size_t i;

    for (i = 0; i < TOKEND_LABEL_MAX_CHARS + 1; i++)
      memcpy(wide + 2 * i, "\xc3\xa9", 2);
    wide[2 * (TOKEND_LABEL_MAX_CHARS + 1)] = '\0';
    expect_issue_invalid(f->client, "example.com", wide, NULL, "label");
    wide[2 * TOKEND_LABEL_MAX_CHARS] = '\0';
    th_client_issue_ok(f->client, "example.com", wide, 0, &is);
    assert_string_equal(is.info.label, wide);
  }
}

static void test_revoke_other_domain_not_found(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  tokend_verify_result_t v;
  tokend_token_list_t *list = NULL;
  int64_t revoked_at = 0;

  th_client_issue_ok(f->client, "a.example", "mine", 0, &is);
  assert_int_equal(tokend_client_revoke(f->client, "b.example", is.info.id,
                                        &revoked_at, NULL),
                   TOKEND_ENOTFOUND);
  assert_int_equal(tokend_client_grpc_status(f->client), TOKEND_GRPC_NOT_FOUND);
  /* An id that does not exist at all gets the same answer. */
  assert_int_equal(tokend_client_revoke(f->client, "a.example",
                                        "tok_AAAAAAAAAAAAAAAAAAAA", NULL, NULL),
                   TOKEND_ENOTFOUND);

  th_client_verify_ok(f->client, is.token, &v);
  assert_int_equal(v.valid, 1);
  assert_int_equal(
      tokend_client_list(f->client, "a.example", 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 1);
  assert_int_equal(list->tokens[0].status, TOKEND_TOKEN_ACTIVE);
  assert_int_equal(list->tokens[0].revoked_at, 0);
  tokend_token_list_free(list);
  /* And the other domain cannot see it either. */
  assert_int_equal(
      tokend_client_list(f->client, "b.example", 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 0);
  tokend_token_list_free(list);
}

static void test_verify_unknown_token_unknown(void **state) {
  th_fixture_t *f = *state;
  char token[TOKEND_TOKEN_BYTES];
  tokend_issued_t is;

  /* Issue one, so the index is not empty. */
  th_client_issue_ok(f->client, "example.com", "real", 0, &is);
  /* Well formed (right shape and checksum) but never issued here. */
  assert_int_equal(token_generate("tkd", token), 0);
  assert_int_equal(token_check(token, strlen(token)), 0);
  th_expect_verify(f->client, token, 0, TOKEND_VERIFY_UNKNOWN);
  /* Another prefix, well formed too. */
  assert_int_equal(token_generate("other", token), 0);
  th_expect_verify(f->client, token, 0, TOKEND_VERIFY_UNKNOWN);
}

static void test_verify_mangled_token_malformed(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  char bad[TOKEND_TOKEN_BYTES + 8];
  size_t len, i, positions[3];

  th_client_issue_ok(f->client, "example.com", "mangle me", 0, &is);
  len = strlen(is.token);
  /* One character changed: in the body, in the checksum, at the end. */
  positions[0] = 4;
  positions[1] = len - TOKEND_TOKEN_CHECKSUM_CHARS;
  positions[2] = len - 1;
  for (i = 0; i < 3; i++) {
    memcpy(bad, is.token, len + 1);
    bad[positions[i]] = bad[positions[i]] == 'A' ? 'B' : 'A';
    th_expect_verify(f->client, bad, 0, TOKEND_VERIFY_MALFORMED);
  }
  /* Truncated, extended, empty, and no separator. */
  memcpy(bad, is.token, len + 1);
  bad[len - 1] = '\0';
  th_expect_verify(f->client, bad, 0, TOKEND_VERIFY_MALFORMED);
  snprintf(bad, sizeof(bad), "%sA", is.token);
  th_expect_verify(f->client, bad, 0, TOKEND_VERIFY_MALFORMED);
  th_expect_verify(f->client, "", 0, TOKEND_VERIFY_MALFORMED);
  th_expect_verify(f->client, is.token + 4, 0, TOKEND_VERIFY_MALFORMED);
  /* The original still works. */
  {
    tokend_verify_result_t v;

    th_client_verify_ok(f->client, is.token, &v);
    assert_int_equal(v.valid, 1);
  }
}

#define PAGED_TOKENS 7

static void test_list_paginates_newest_first(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is[PAGED_TOKENS], other;
  tokend_token_list_t *page = NULL;
  char page_token[TOKEND_PAGE_TOKEN_BYTES] = "";
  const size_t want_sizes[] = {3, 3, 1};
  int64_t prev_created = INT64_MAX;
  char label[32];
  size_t seen = 0, p, i;

  for (i = 0; i < PAGED_TOKENS; i++) {
    snprintf(label, sizeof(label), "token %zu", i);
    th_client_issue_ok(f->client, "paged.example", label, 0, &is[i]);
    /* Another domain's tokens, issued in between, never show up. */
    if (i == 3)
      th_client_issue_ok(f->client, "other.example", "other", 0, &other);
  }
  for (p = 0; p < 3; p++) {
    assert_int_equal(
        tokend_client_list(f->client, "paged.example", 3, page_token, 0, &page),
        0);
    if (page->n_tokens != want_sizes[p])
      fail_msg("page %zu has %zu tokens, want %zu", p, page->n_tokens,
               want_sizes[p]);
    for (i = 0; i < page->n_tokens; i++, seen++) {
      /* Newest first: is[6], is[5], ..., is[0], each exactly once. */
      const tokend_issued_t *want = &is[PAGED_TOKENS - 1 - seen];
      const tokend_token_info_t *t = &page->tokens[i];

      if (strcmp(t->id, want->info.id) != 0)
        fail_msg("position %zu: got %s (%s), want %s (%s)", seen, t->id,
                 t->label, want->info.id, want->info.label);
      assert_string_equal(t->domain, "paged.example");
      assert_string_equal(t->label, want->info.label);
      assert_string_equal(t->hint, want->info.hint);
      assert_int_equal(t->created_at, want->info.created_at);
      assert_int_equal(t->status, TOKEND_TOKEN_ACTIVE);
      assert_true(t->created_at <= prev_created);
      prev_created = t->created_at;
    }
    if (p < 2)
      assert_true(page->next_page_token[0] != '\0');
    else
      assert_string_equal(page->next_page_token, "");
    memcpy(page_token, page->next_page_token, sizeof(page_token));
    tokend_token_list_free(page);
    page = NULL;
  }
  assert_int_equal(seen, PAGED_TOKENS);

  /* page_size 0 is the default (50): all on one page. */
  assert_int_equal(
      tokend_client_list(f->client, "paged.example", 0, NULL, 0, &page), 0);
  assert_int_equal(page->n_tokens, PAGED_TOKENS);
  assert_string_equal(page->next_page_token, "");
  tokend_token_list_free(page);
}

static void test_list_garbage_page_token_invalid_argument(void **state) {
  th_fixture_t *f = *state;
  tokend_token_list_t *list = NULL;
  tokend_issued_t is;

  th_client_issue_ok(f->client, "example.com", "one", 0, &is);
  assert_int_equal(tokend_client_list(f->client, "example.com", 1,
                                      "not-a-page-token!", 0, &list),
                   TOKEND_EINVAL);
  assert_int_equal(tokend_client_grpc_status(f->client),
                   TOKEND_GRPC_INVALID_ARGUMENT);
  /* A bad domain is refused the same way. */
  assert_int_equal(
      tokend_client_list(f->client, "bad domain", 0, NULL, 0, &list),
      TOKEND_EINVAL);
}

static void test_list_hides_revoked_unless_asked(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is[3];
  tokend_token_list_t *list = NULL;
  int64_t revoked_at = 0;
  size_t i;

  th_client_issue_ok(f->client, "example.com", "first", 0, &is[0]);
  th_client_issue_ok(f->client, "example.com", "second", 0, &is[1]);
  th_client_issue_ok(f->client, "example.com", "third", 0, &is[2]);
  assert_int_equal(tokend_client_revoke(f->client, "example.com", is[1].info.id,
                                        &revoked_at, NULL),
                   0);

  assert_int_equal(
      tokend_client_list(f->client, "example.com", 0, NULL, 0, &list), 0);
  assert_int_equal(list->n_tokens, 2);
  assert_string_equal(list->tokens[0].id, is[2].info.id);
  assert_string_equal(list->tokens[1].id, is[0].info.id);
  for (i = 0; i < list->n_tokens; i++) {
    assert_int_equal(list->tokens[i].status, TOKEND_TOKEN_ACTIVE);
    assert_int_equal(list->tokens[i].revoked_at, 0);
  }
  tokend_token_list_free(list);

  assert_int_equal(
      tokend_client_list(f->client, "example.com", 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 3);
  assert_string_equal(list->tokens[0].id, is[2].info.id);
  assert_string_equal(list->tokens[1].id, is[1].info.id);
  assert_string_equal(list->tokens[2].id, is[0].info.id);
  assert_int_equal(list->tokens[1].status, TOKEND_TOKEN_REVOKED);
  assert_int_equal(list->tokens[1].revoked_at, revoked_at);
  assert_int_equal(list->tokens[0].status, TOKEND_TOKEN_ACTIVE);
  assert_int_equal(list->tokens[2].status, TOKEND_TOKEN_ACTIVE);
  /* No field of a listing carries the secret. */
  for (i = 0; i < list->n_tokens; i++) {
    const tokend_token_info_t *t = &list->tokens[i];
    size_t k;

    for (k = 0; k < 3; k++)
      assert_null(memmem(t, sizeof(*t), is[k].token + 4, 12));
  }
  tokend_token_list_free(list);
}

#define SHARED_REVOKES 20

static void test_revocation_seen_by_other_connection(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is[SHARED_REVOKES];
  tokend_verify_result_t v;
  tokend_client_t *other = NULL;
  size_t i;

  other = th_client_connect_ok(&f->tokend);
  for (i = 0; i < SHARED_REVOKES; i++)
    th_client_issue_ok(f->client, "example.com", "shared", 0, &is[i]);
  for (i = 0; i < SHARED_REVOKES; i++) {
    th_client_verify_ok(other, is[i].token, &v);
    assert_int_equal(v.valid, 1);
    assert_int_equal(tokend_client_revoke(f->client, "example.com",
                                          is[i].info.id, NULL, NULL),
                     0);
    /* Right after the revoke response, on another connection. */
    th_client_verify_ok(other, is[i].token, &v);
    if (v.valid || v.reason != TOKEND_VERIFY_REVOKED)
      fail_msg("token %zu: verify on the other connection after revoke gave "
               "valid=%d reason=%s",
               i, v.valid, tokend_verify_reason_name(v.reason));
  }
  tokend_client_close(other);
}

static int setup_prefix(void **state) {
  static const char *const args[] = {"--token-prefix", "acme9", NULL};

  return th_fixture_setup_client(state, args);
}

static void test_token_prefix_flag_names_new_tokens(void **state) {
  th_fixture_t *f = *state;
  tokend_verify_result_t v;
  tokend_issued_t is;
  char other[TOKEND_TOKEN_BYTES];

  th_client_issue_ok(f->client, "example.com", "prefixed", 0, &is);
  assert_int_equal(strncmp(is.token, "acme9_", 6), 0);
  assert_int_equal(strncmp(is.info.hint, "acme9_...", 9), 0);
  th_client_verify_ok(f->client, is.token, &v);
  assert_int_equal(v.valid, 1);
  /* A well-formed token with the default prefix was never issued here. */
  assert_int_equal(token_generate("tkd", other), 0);
  th_client_verify_ok(f->client, other, &v);
  assert_int_equal(v.valid, 0);
  assert_true(v.reason == TOKEND_VERIFY_UNKNOWN ||
              v.reason == TOKEND_VERIFY_MALFORMED);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_issue_verify_revoke_verify_revoked,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_revoke_twice_is_idempotent, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_expired_token_verifies_expired,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_issue_past_expiry_invalid_argument,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_issue_invalid_domain_or_label_rejected, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_revoke_other_domain_not_found, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_verify_unknown_token_unknown, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_verify_mangled_token_malformed,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_list_paginates_newest_first, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_list_garbage_page_token_invalid_argument, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_list_hides_revoked_unless_asked,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_revocation_seen_by_other_connection,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_token_prefix_flag_names_new_tokens,
                                      setup_prefix, th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
