/* The whole life of a token (issue 17), against a real tokend on SQLite:
 * metadata (Issue, Verify, Lookup, List), Lookup without use, Edit, Roll
 * and List's expiring_within_ms; each method's audit rows and refusals
 * (another domain's token is NOT_FOUND, a user who is not the domain's
 * admin PERMISSION_DENIED, bad input INVALID_ARGUMENT naming the field,
 * and nothing changed). The test is an operator acting for ALICE (the
 * domain's admin) or BOB (nobody's). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tokend_client.h"

#define DOMAIN "life.example"
#define OTHER_DOMAIN "other.example"
#define ALICE "alice@example.com"
#define BOB "bob@example.com"
#define HOUR_MS ((int64_t)3600 * 1000)
#define DAY_MS (24 * HOUR_MS)

/* ---- fixture and helpers ---- */

static int setup(void **state) {
  static const char *const args[] = {"--refusal-audit-interval-ms", "0", NULL};
  th_fixture_t *f;

  if (th_fixture_setup_client(state, args) != 0)
    return -1;
  f = *state;
  if (tokend_client_grant_admin(f->client, DOMAIN, ALICE, NULL, NULL) != 0 ||
      tokend_client_grant_admin(f->client, OTHER_DOMAIN, BOB, NULL, NULL) != 0)
    return -1;
  return tokend_client_set_actor(f->client, ALICE);
}

/* Issues a token in domain as the current actor. */
static void issue(th_fixture_t *f, const char *domain, const char *label,
                  int64_t expires_at, const char *const *scopes,
                  size_t n_scopes, const char *metadata, tokend_issued_t *out) {
  tokend_issue_params_t p = {domain, label,    expires_at,
                             scopes, n_scopes, metadata};
  int rc = tokend_client_issue(f->client, &p, out);

  if (rc != 0)
    fail_msg("issue %s/%s: %s (%s)", domain, label, tokend_err_name(rc),
             tokend_client_errmsg(f->client));
}

static void expect_error(tokend_client_t *c, int rc, int want,
                         const char *in_msg) {
  if (rc != want)
    fail_msg("got %s (%s), want %s", tokend_err_name(rc),
             tokend_client_errmsg(c), tokend_err_name(want));
  if (in_msg != NULL && strstr(tokend_client_errmsg(c), in_msg) == NULL)
    fail_msg("message '%s' does not name '%s'", tokend_client_errmsg(c),
             in_msg);
}

static void lookup_ok(th_fixture_t *f, const char *id,
                      tokend_token_info_t *out) {
  int rc = tokend_client_lookup(f->client, DOMAIN, id, out);

  if (rc != 0)
    fail_msg("lookup %s: %s (%s)", id, tokend_err_name(rc),
             tokend_client_errmsg(f->client));
}

/* The newest audit row of domain for method and token id, or fails. */
static void audit_row(th_fixture_t *f, const char *method, const char *id,
                      int code, tokend_audit_event_t *out) {
  tokend_audit_list_t *list = NULL;
  size_t i;

  assert_int_equal(tokend_client_set_actor(f->client, ""), 0);
  assert_int_equal(
      tokend_client_list_audit(f->client, DOMAIN, 0, 0, NULL, &list), 0);
  assert_int_equal(tokend_client_set_actor(f->client, ALICE), 0);
  for (i = 0; i < list->n_events; i++) {
    const tokend_audit_event_t *ev = &list->events[i];

    if (strcmp(ev->method, method) == 0 && strcmp(ev->token_id, id) == 0 &&
        ev->code == code) {
      *out = *ev;
      tokend_audit_list_free(list);
      return;
    }
  }
  tokend_audit_list_free(list);
  fail_msg("no %s audit row for %s with code %d", method, id, code);
}

static const char *const SCOPES_AB[] = {"read", "write"};

/* ---- metadata ---- */

static void test_metadata_set_at_issue_returned_everywhere(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  tokend_verify_result_t v;
  tokend_token_info_t info;
  tokend_token_list_t *list = NULL;

  issue(f, DOMAIN, "with metadata", 0, NULL, 0,
        "{ \"plan\": \"pro\",\n \"seats\": 5 }", &is);
  /* Kept compact: what Verify hands out (and HTTP can carry). */
  assert_string_equal(is.info.metadata, "{\"plan\":\"pro\",\"seats\":5}");
  th_client_verify_ok(f->client, is.token, &v);
  assert_true(v.valid);
  assert_string_equal(v.metadata, "{\"plan\":\"pro\",\"seats\":5}");
  lookup_ok(f, is.info.id, &info);
  assert_string_equal(info.metadata, "{\"plan\":\"pro\",\"seats\":5}");
  assert_int_equal(tokend_client_list(f->client, DOMAIN, 0, NULL, 0, &list), 0);
  assert_int_equal(list->n_tokens, 1);
  assert_string_equal(list->tokens[0].metadata,
                      "{\"plan\":\"pro\",\"seats\":5}");
  tokend_token_list_free(list);
  tokend_client_wipe(&is);

  /* Compacted, not re-encoded: numbers and escapes stay as sent. */
  issue(f, DOMAIN, "exact", 0, NULL, 0,
        "{\"price\": 0.1, \"n\": 123456789012345678901234567890,\n"
        " \"s\": \"a b\\\" \\u00e9\"}",
        &is);
  assert_string_equal(is.info.metadata,
                      "{\"price\":0.1,\"n\":123456789012345678901234567890,"
                      "\"s\":\"a b\\\" \\u00e9\"}");
  tokend_client_wipe(&is);
}

static void test_metadata_bad_is_invalid_argument_nothing_stored(void **state) {
  th_fixture_t *f = *state;
  char big[TOKEND_MAX_METADATA + 64];
  const char *bad[] = {"{\"a\":", "[1,2]", "\"text\"", "{\"a\":1,\"a\":2}",
                       big};
  tokend_issue_params_t p = {DOMAIN, "bad", 0, NULL, 0, NULL};
  tokend_issued_t is;
  size_t i;

  memset(big, 0, sizeof(big));
  snprintf(big, sizeof(big), "{\"k\":\"");
  memset(big + 6, 'x', TOKEND_MAX_METADATA);
  strcat(big, "\"}");
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    p.metadata = bad[i];
    expect_error(f->client, tokend_client_issue(f->client, &p, &is),
                 TOKEND_EINVAL, "metadata");
  }
  assert_int_equal(
      th_db_count(f->tokend.db_path, "SELECT count(*) FROM tokens"), 0);
}

/* ---- Lookup ---- */

static void test_lookup_by_id_and_secret_without_use(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  tokend_verify_result_t v;
  tokend_token_info_t a, b;

  issue(f, DOMAIN, "looked at", 0, SCOPES_AB, 2, NULL, &is);
  lookup_ok(f, is.info.id, &a);
  assert_string_equal(a.label, "looked at");
  assert_int_equal(a.n_scopes, 2);
  assert_int_equal(a.last_used_at, 0);
  assert_int_equal(tokend_client_lookup_secret(f->client, DOMAIN, is.token, &b),
                   0);
  assert_string_equal(b.id, is.info.id);
  assert_int_equal(b.last_used_at, 0);
  /* Neither counted as a use; a Verify does. */
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM tokens WHERE "
                               "last_used_at <> 0"),
                   0);
  th_client_verify_ok(f->client, is.token, &v);
  lookup_ok(f, is.info.id, &a);
  assert_true(a.last_used_at > 0);
  tokend_client_wipe(&is);
}

static void test_lookup_refusals(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t mine, theirs;
  tokend_token_info_t info;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__LookupRequest lr = TOKEND__V1__LOOKUP_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  int fd;

  issue(f, DOMAIN, "mine", 0, NULL, 0, NULL, &mine);
  assert_int_equal(tokend_client_set_actor(f->client, BOB), 0);
  issue(f, OTHER_DOMAIN, "theirs", 0, NULL, 0, NULL, &theirs);
  /* BOB is not DOMAIN's admin. */
  expect_error(f->client,
               tokend_client_lookup(f->client, DOMAIN, mine.info.id, &info),
               TOKEND_EPERM, NULL);
  assert_int_equal(tokend_client_set_actor(f->client, ALICE), 0);
  /* Another domain's token, by id or by secret: as unknown as none. */
  expect_error(f->client,
               tokend_client_lookup(f->client, DOMAIN, theirs.info.id, &info),
               TOKEND_ENOTFOUND, NULL);
  expect_error(
      f->client,
      tokend_client_lookup_secret(f->client, DOMAIN, theirs.token, &info),
      TOKEND_ENOTFOUND, NULL);
  expect_error(f->client,
               tokend_client_lookup(f->client, DOMAIN, "not-an-id", &info),
               TOKEND_EINVAL, "token_id");
  expect_error(
      f->client,
      tokend_client_lookup_secret(f->client, DOMAIN, "tkd_nope", &info),
      TOKEND_EINVAL, "token");

  /* Both selectors at once (the library never sends that). */
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  lr.domain = DOMAIN;
  lr.token_id = mine.info.id;
  lr.token = mine.token;
  req.call_id = 1;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LOOKUP;
  req.lookup = &lr;
  assert_int_equal(th_send_request(fd, &req), 0);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
  assert_int_equal(th_response_code(r), TOKEND_GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(r->status->message, "exactly one"));
  tokend__v1__response__free_unpacked(r, NULL);
  close(fd);
  /* The secret was never logged. */
  assert_false(
      th_file_contains(f->tokend.log_path, mine.token, strlen(mine.token)));
  tokend_client_wipe(&mine);
  tokend_client_wipe(&theirs);
}

/* ---- Edit ---- */

static void test_edit_changes_what_verify_answers_and_audits(void **state) {
  th_fixture_t *f = *state;
  const char *const narrower[] = {"read"};
  tokend_edit_params_t e;
  tokend_issued_t is;
  tokend_token_info_t info;
  tokend_verify_result_t v;
  tokend_audit_event_t ev;
  int64_t exp1 = th_now_ms() + 2 * HOUR_MS, exp2 = th_now_ms() + HOUR_MS;

  issue(f, DOMAIN, "before", exp1, SCOPES_AB, 2, "{\"plan\":\"free\"}", &is);
  th_client_verify_ok(f->client, is.token, &v);
  assert_string_equal(v.label, "before");

  memset(&e, 0, sizeof(e));
  e.label = "after";
  e.metadata = "{\"plan\": \"pro\"}";
  e.set_expires_at = 1;
  e.expires_at = exp2;
  e.set_scopes = 1;
  e.scopes = narrower;
  e.n_scopes = 1;
  assert_int_equal(tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
                   0);
  assert_string_equal(info.label, "after");
  assert_string_equal(info.metadata, "{\"plan\":\"pro\"}");
  assert_int_equal(info.expires_at, exp2);
  assert_int_equal(info.n_scopes, 1);
  assert_string_equal(info.scopes[0], "read");

  /* Verify answers from memory: it must have changed there too. */
  th_client_verify_ok(f->client, is.token, &v);
  assert_true(v.valid);
  assert_string_equal(v.label, "after");
  assert_string_equal(v.metadata, "{\"plan\":\"pro\"}");
  assert_int_equal(v.expires_at, exp2);
  assert_int_equal(v.n_scopes, 1);
  assert_string_equal(v.scopes[0], "read");

  audit_row(f, "Edit", is.info.id, TOKEND_GRPC_OK, &ev);
  assert_string_equal(ev.actor, ALICE);
  assert_non_null(strstr(ev.detail, "scopes 'read write' -> 'read'"));
  assert_non_null(strstr(ev.detail, "label 'before' -> 'after'"));

  /* And a restart loads what was written. */
  tokend_client_close(f->client);
  f->client = NULL;
  th_tokend_stop_ok(&f->tokend);
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  f->client = th_client_connect_ok(&f->tokend);
  th_client_verify_ok(f->client, is.token, &v);
  assert_string_equal(v.label, "after");
  assert_string_equal(v.metadata, "{\"plan\":\"pro\"}");
  assert_int_equal(v.n_scopes, 1);
  tokend_client_wipe(&is);
}

/* Issue refuses a scope given twice, as Edit and SetDomainPolicy do, and
 * stores nothing. */
static void test_issue_scope_twice_is_refused(void **state) {
  th_fixture_t *f = *state;
  const char *const twice[] = {"read", "read"};
  tokend_issue_params_t p = {DOMAIN, "twice", 0, twice, 2, NULL};
  tokend_issued_t is;
  tokend_token_list_t *list = NULL;

  expect_error(f->client, tokend_client_issue(f->client, &p, &is),
               TOKEND_EINVAL, "given twice");
  assert_non_null(strstr(tokend_client_errmsg(f->client), "scopes"));
  assert_int_equal(tokend_client_list(f->client, DOMAIN, 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 0);
  tokend_token_list_free(list);
}

static void test_edit_refusals_change_nothing(void **state) {
  th_fixture_t *f = *state;
  const char *const wider[] = {"read", "admin"};
  const char *const twice[] = {"read", "read"};
  tokend_edit_params_t e;
  tokend_issued_t is, theirs;
  tokend_token_info_t info;
  tokend_audit_event_t ev;
  int64_t exp1 = th_now_ms() + HOUR_MS;

  issue(f, DOMAIN, "kept", exp1, SCOPES_AB, 2, NULL, &is);
  memset(&e, 0, sizeof(e));

  /* Scopes only narrow: refused in the transaction, audited. */
  e.set_scopes = 1;
  e.scopes = wider;
  e.n_scopes = 2;
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_EINVAL, "admin");
  assert_non_null(strstr(tokend_client_errmsg(f->client), "scopes"));
  audit_row(f, "Edit", is.info.id, TOKEND_GRPC_INVALID_ARGUMENT, &ev);
  /* A scope given twice (the token would list it twice). */
  e.scopes = twice;
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_EINVAL, "scopes: read is given twice");
  memset(&e, 0, sizeof(e));

  /* Nothing to change; a past expiry; bad metadata; a bad label. */
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_EINVAL, "nothing to change");
  e.set_expires_at = 1;
  e.expires_at = th_now_ms() - 1000;
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_EINVAL, "expires_at");
  memset(&e, 0, sizeof(e));
  e.metadata = "[]";
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_EINVAL, "metadata");
  memset(&e, 0, sizeof(e));
  e.label = "";
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_EINVAL, "label");

  /* Not the domain's admin; another domain's token. */
  e.label = "x";
  assert_int_equal(tokend_client_set_actor(f->client, BOB), 0);
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_EPERM, NULL);
  issue(f, OTHER_DOMAIN, "theirs", 0, NULL, 0, NULL, &theirs);
  assert_int_equal(tokend_client_set_actor(f->client, ALICE), 0);
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, theirs.info.id, &e, &info),
               TOKEND_ENOTFOUND, NULL);

  lookup_ok(f, is.info.id, &info);
  assert_string_equal(info.label, "kept");
  assert_int_equal(info.n_scopes, 2);
  assert_int_equal(info.expires_at, exp1);
  assert_string_equal(info.metadata, "");

  /* A revoked token is not edited. */
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, is.info.id, NULL, NULL), 0);
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_ECONFIG, "revoked");
  tokend_client_wipe(&is);
  tokend_client_wipe(&theirs);
}

/* Runs sql on the database tokend uses (WAL: alongside it). */
static void db_exec(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  char *err = NULL;

  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
    fail_msg("%s: %s", sql, err);
  sqlite3_close(db);
}

static void test_edit_lengthens_only_within_the_policy(void **state) {
  th_fixture_t *f = *state;
  tokend_edit_params_t e;
  tokend_issued_t is;
  tokend_token_info_t info;
  int64_t exp1 = th_now_ms() + HOUR_MS;

  issue(f, DOMAIN, "bounded", exp1, NULL, 0, NULL, &is);
  memset(&e, 0, sizeof(e));
  e.set_expires_at = 1;

  /* No policy: any expiry. */
  e.expires_at = exp1 + DAY_MS;
  assert_int_equal(tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
                   0);
  assert_int_equal(info.expires_at, exp1 + DAY_MS);

  /* At most 2 hours, and an expiry required (h17b's SetDomainPolicy
   * writes this row; here it is written as it would be). */
  db_exec(f->tokend.db_path,
          "INSERT INTO domain_policies (domain, max_lifetime_ms,"
          " require_expiry, updated_at, updated_by) VALUES"
          " ('" DOMAIN "', 7200000, 1, 1, 'root')");
  /* Shortening needs no permission, even past the policy's bound. */
  e.expires_at = exp1 + DAY_MS / 2;
  assert_int_equal(tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
                   0);
  e.expires_at = exp1;
  assert_int_equal(tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
                   0);
  /* Lengthening past it, or removing the expiry, is refused. */
  e.expires_at = th_now_ms() + 3 * HOUR_MS;
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_EINVAL, "policy");
  e.expires_at = 0;
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_EINVAL, "expires_at");
  lookup_ok(f, is.info.id, &info);
  assert_int_equal(info.expires_at, exp1);
  /* Lengthening within it is allowed. */
  e.expires_at = exp1 + HOUR_MS / 2;
  assert_int_equal(tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
                   0);
  assert_int_equal(info.expires_at, exp1 + HOUR_MS / 2);
  tokend_client_wipe(&is);
}

/* The policy's max_lifetime_ms bounds a token's life from its creation:
 * Edits made one after another cannot keep it alive past that, each
 * within max_lifetime_ms of its own time. */
static void
test_edit_lengthens_within_the_lifetime_since_creation(void **state) {
  th_fixture_t *f = *state;
  tokend_edit_params_t e;
  tokend_issued_t is;
  tokend_token_info_t info;
  char sql[256];
  int64_t now = th_now_ms(), created = now - DAY_MS;

  issue(f, DOMAIN, "old", now + HOUR_MS / 2, NULL, 0, NULL, &is);
  /* Issued a day ago (as if), under a policy of at most 2 hours. */
  snprintf(sql, sizeof(sql),
           "UPDATE tokens SET created_at = %lld WHERE id = '%s'",
           (long long)created, is.info.id);
  db_exec(f->tokend.db_path, sql);
  db_exec(f->tokend.db_path,
          "INSERT INTO domain_policies (domain, max_lifetime_ms,"
          " require_expiry, updated_at, updated_by) VALUES"
          " ('" DOMAIN "', 7200000, 0, 1, 'root')");
  memset(&e, 0, sizeof(e));
  e.set_expires_at = 1;
  e.expires_at = now + HOUR_MS;
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_EINVAL, "expires_at");
  assert_non_null(strstr(tokend_client_errmsg(f->client), "creation"));
  lookup_ok(f, is.info.id, &info);
  assert_int_equal(info.expires_at, now + HOUR_MS / 2);
  /* Shortening is still free. */
  e.expires_at = now + HOUR_MS / 4;
  assert_int_equal(tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
                   0);
  assert_int_equal(info.expires_at, now + HOUR_MS / 4);
  tokend_client_wipe(&is);
}

/* An expired token stays expired: moving its expiry would bring it back
 * to life (and past the domain's max_active_tokens, which counts active
 * tokens only), as no Revoke can be undone. Its label may still change. */
static void test_edit_does_not_revive_an_expired_token(void **state) {
  th_fixture_t *f = *state;
  tokend_edit_params_t e;
  tokend_issued_t is;
  tokend_token_info_t info;
  tokend_verify_result_t v;
  /* Far enough ahead that a slow (valgrind) tokend still takes it. */
  int64_t exp1 = th_now_ms() + 200 * th_timeout_scale();
  int tries;

  issue(f, DOMAIN, "short-lived", exp1, NULL, 0, NULL, &is);
  /* Wait for the condition, at most 10 s (scaled). */
  for (tries = 0; tries < 1000 * th_timeout_scale(); tries++) {
    th_client_verify_ok(f->client, is.token, &v);
    if (v.reason == TOKEND_VERIFY_EXPIRED)
      break;
    usleep(10 * 1000);
  }
  assert_int_equal(v.reason, TOKEND_VERIFY_EXPIRED);
  memset(&e, 0, sizeof(e));
  e.set_expires_at = 1;
  e.expires_at = th_now_ms() + DAY_MS;
  e.label = "revived?";
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_ECONFIG, "expired");
  e.expires_at = 0;
  expect_error(f->client,
               tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
               TOKEND_ECONFIG, "expired");
  lookup_ok(f, is.info.id, &info);
  assert_int_equal(info.expires_at, exp1);
  assert_string_equal(info.label, "short-lived");
  th_client_verify_ok(f->client, is.token, &v);
  assert_int_equal(v.reason, TOKEND_VERIFY_EXPIRED);
  /* The label alone: a record kept for people, allowed. */
  e.set_expires_at = 0;
  assert_int_equal(tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
                   0);
  assert_string_equal(info.label, "revived?");
  assert_int_equal(info.expires_at, exp1);
  th_client_verify_ok(f->client, is.token, &v);
  assert_int_equal(v.reason, TOKEND_VERIFY_EXPIRED);
  tokend_client_wipe(&is);
}

/* tokend's log names who edited and rolled, break-glass operators too (the
 * audit row holds only their uid; the log said "by=" with nothing). */
static void test_edit_and_roll_logged_with_their_doer(void **state) {
  th_fixture_t *f = *state;
  char want[TOKEND_TOKEN_ID_BYTES + 64];
  tokend_edit_params_t e;
  tokend_issued_t is;
  tokend_rolled_t rolled;
  tokend_token_info_t info;
  size_t len;
  char *log;

  issue(f, DOMAIN, "logged", 0, NULL, 0, NULL, &is);
  assert_int_equal(tokend_client_set_actor(f->client, ""), 0);
  memset(&e, 0, sizeof(e));
  e.label = "logged again";
  assert_int_equal(tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
                   0);
  assert_int_equal(
      tokend_client_roll(f->client, DOMAIN, is.info.id, 0, &rolled), 0);
  log = th_read_file(f->tokend.log_path, &len);
  assert_non_null(log);
  snprintf(want, sizeof(want), "id=%s by=uid:%u: label", is.info.id,
           (unsigned)getuid());
  if (strstr(log, want) == NULL)
    fail_msg("no \"%s\" in tokend's log:\n%s", want, log);
  snprintf(want, sizeof(want), "-> %s by=uid:%u", rolled.info.id,
           (unsigned)getuid());
  if (strstr(log, want) == NULL)
    fail_msg("no \"%s\" in tokend's log:\n%s", want, log);
  free(log);
  sodium_memzero(rolled.token, sizeof(rolled.token));
  tokend_client_wipe(&is);
}

/* ---- Roll ---- */

static void test_roll_replaces_the_token_with_a_grace(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  tokend_rolled_t rolled;
  tokend_verify_result_t v;
  tokend_token_list_t *list = NULL;
  tokend_audit_event_t ev;
  int64_t created, lifetime = 10 * DAY_MS, before, grace_end;

  issue(f, DOMAIN, "rotating", th_now_ms() + lifetime, SCOPES_AB, 2,
        "{\"team\":\"ops\"}", &is);
  created = is.info.created_at;
  before = th_now_ms();
  assert_int_equal(
      tokend_client_roll(f->client, DOMAIN, is.info.id, HOUR_MS, &rolled), 0);

  /* The new one: same label, scopes, metadata; as long a lifetime. */
  assert_string_not_equal(rolled.info.id, is.info.id);
  assert_string_not_equal(rolled.token, is.token);
  assert_string_equal(rolled.info.label, "rotating");
  assert_int_equal(rolled.info.n_scopes, 2);
  assert_string_equal(rolled.info.metadata, "{\"team\":\"ops\"}");
  assert_string_equal(rolled.info.rolled_from, is.info.id);
  assert_int_equal(rolled.info.expires_at - rolled.info.created_at,
                   is.info.expires_at - created);
  /* The old one: replaced, and expiring after the grace. */
  assert_string_equal(rolled.previous.rolled_to, rolled.info.id);
  assert_true(rolled.previous.expires_at >= before + HOUR_MS);
  assert_true(rolled.previous.expires_at <= th_now_ms() + HOUR_MS);

  /* Both verify for now; each with what it is. */
  th_client_verify_ok(f->client, rolled.token, &v);
  assert_true(v.valid);
  assert_string_equal(v.token_id, rolled.info.id);
  assert_string_equal(v.metadata, "{\"team\":\"ops\"}");
  th_client_verify_ok(f->client, is.token, &v);
  assert_true(v.valid);
  assert_int_equal(v.expires_at, rolled.previous.expires_at);

  /* List shows who replaced whom. */
  assert_int_equal(tokend_client_list(f->client, DOMAIN, 0, NULL, 0, &list), 0);
  assert_int_equal(list->n_tokens, 2);
  assert_string_equal(list->tokens[0].rolled_from, is.info.id);
  assert_string_equal(list->tokens[1].rolled_to, rolled.info.id);
  tokend_token_list_free(list);

  audit_row(f, "Roll", is.info.id, TOKEND_GRPC_OK, &ev);
  assert_non_null(strstr(ev.detail, rolled.info.id));

  grace_end = rolled.previous.expires_at;
  /* Rolled once: not again. */
  expect_error(f->client,
               tokend_client_roll(f->client, DOMAIN, is.info.id, 0, &rolled),
               TOKEND_ECONFIG, "already rolled");
  /* Its grace cannot be lengthened (nor the expiry removed) by an Edit;
   * it can be cut short. */
  {
    tokend_edit_params_t e;
    tokend_token_info_t info;

    memset(&e, 0, sizeof(e));
    e.set_expires_at = 1;
    e.expires_at = grace_end + DAY_MS;
    expect_error(f->client,
                 tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
                 TOKEND_ECONFIG, "only be shortened");
    e.expires_at = 0;
    expect_error(f->client,
                 tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info),
                 TOKEND_ECONFIG, "only be shortened");
    e.expires_at = grace_end - 1000;
    assert_int_equal(
        tokend_client_edit(f->client, DOMAIN, is.info.id, &e, &info), 0);
    assert_int_equal(info.expires_at, grace_end - 1000);
  }
  sodium_memzero(rolled.token, sizeof(rolled.token));
  tokend_client_wipe(&is);
}

static void test_roll_without_grace_expires_the_old_now(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  tokend_rolled_t rolled;
  tokend_verify_result_t v;

  issue(f, DOMAIN, "forever", 0, NULL, 0, NULL, &is);
  assert_int_equal(
      tokend_client_roll(f->client, DOMAIN, is.info.id, 0, &rolled), 0);
  /* No expiry stays none. */
  assert_int_equal(rolled.info.expires_at, 0);
  th_client_verify_ok(f->client, is.token, &v);
  assert_false(v.valid);
  assert_int_equal(v.reason, TOKEND_VERIFY_EXPIRED);
  th_client_verify_ok(f->client, rolled.token, &v);
  assert_true(v.valid);
  /* An expired token does not roll. */
  expect_error(f->client,
               tokend_client_roll(f->client, DOMAIN, is.info.id, 0, &rolled),
               TOKEND_ECONFIG, "expired");
  sodium_memzero(rolled.token, sizeof(rolled.token));
  tokend_client_wipe(&is);
}

/* A token whose expiry is as far as an int64 goes rolls into a valid one
 * (its lifetime from now cannot be added without overflow: the new one
 * gets the farthest expiry there is), never one born expired. */
static void test_roll_of_the_farthest_expiry_does_not_overflow(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  tokend_rolled_t rolled;
  tokend_verify_result_t v;
  char sql[160];

  issue(f, DOMAIN, "far", INT64_MAX, NULL, 0, NULL, &is);
  /* Made a second ago (as if): the old lifetime plus now passes INT64_MAX
   * by about that second. */
  snprintf(sql, sizeof(sql),
           "UPDATE tokens SET created_at = created_at - 1000 WHERE id = '%s'",
           is.info.id);
  db_exec(f->tokend.db_path, sql);
  assert_int_equal(
      tokend_client_roll(f->client, DOMAIN, is.info.id, 0, &rolled), 0);
  assert_int_equal(rolled.info.expires_at, INT64_MAX);
  assert_int_equal(rolled.info.status, TOKEND_TOKEN_ACTIVE);
  th_client_verify_ok(f->client, rolled.token, &v);
  assert_true(v.valid);
  sodium_memzero(rolled.token, sizeof(rolled.token));
  tokend_client_wipe(&is);
}

/* A Roll under a domain policy (merged with h17b's SetDomainPolicy): a
 * lifetime the policy came to forbid is cut to its bound, not refused; a
 * scope it no longer allows is refused, changing nothing; the
 * active-token cap is not counted (the new token replaces the old). */
static void test_roll_under_a_policy(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is, other;
  tokend_rolled_t rolled;
  tokend_token_info_t info;
  int64_t before;

  issue(f, DOMAIN, "long-lived", th_now_ms() + 30 * DAY_MS, SCOPES_AB, 2, NULL,
        &is);
  issue(f, DOMAIN, "second", 0, NULL, 0, NULL, &other);
  db_exec(f->tokend.db_path,
          "INSERT INTO domain_policies (domain, max_lifetime_ms,"
          " require_expiry, allowed_scopes, max_active_tokens, updated_at,"
          " updated_by) VALUES ('" DOMAIN
          "', 7200000, 1, 'read', 1, 1, 'root')");
  /* write is no longer allowed: refused, and nothing changed. */
  expect_error(f->client,
               tokend_client_roll(f->client, DOMAIN, is.info.id, 0, &rolled),
               TOKEND_EINVAL, "scopes");
  lookup_ok(f, is.info.id, &info);
  assert_string_equal(info.rolled_to, "");
  assert_int_equal(info.expires_at, is.info.expires_at);

  db_exec(f->tokend.db_path,
          "UPDATE domain_policies SET allowed_scopes = 'read write'");
  before = th_now_ms();
  /* Two active tokens against a cap of 1: a Roll is not refused. */
  assert_int_equal(
      tokend_client_roll(f->client, DOMAIN, is.info.id, HOUR_MS, &rolled), 0);
  /* 30 days cut to the policy's 2 hours. */
  assert_true(rolled.info.expires_at >= before + 2 * HOUR_MS);
  assert_true(rolled.info.expires_at <= th_now_ms() + 2 * HOUR_MS);
}

static void test_roll_refusals_change_nothing(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is, theirs;
  tokend_rolled_t rolled;

  issue(f, DOMAIN, "stays", 0, NULL, 0, NULL, &is);
  expect_error(f->client,
               tokend_client_roll(f->client, DOMAIN, is.info.id, -1, &rolled),
               TOKEND_EINVAL, "grace_ms");
  expect_error(
      f->client,
      tokend_client_roll(f->client, DOMAIN, is.info.id, 31 * DAY_MS, &rolled),
      TOKEND_EINVAL, "grace_ms");
  expect_error(f->client,
               tokend_client_roll(f->client, DOMAIN, "tok_x", 0, &rolled),
               TOKEND_EINVAL, "token_id");
  assert_int_equal(tokend_client_set_actor(f->client, BOB), 0);
  expect_error(f->client,
               tokend_client_roll(f->client, DOMAIN, is.info.id, 0, &rolled),
               TOKEND_EPERM, NULL);
  issue(f, OTHER_DOMAIN, "theirs", 0, NULL, 0, NULL, &theirs);
  assert_int_equal(tokend_client_set_actor(f->client, ALICE), 0);
  expect_error(
      f->client,
      tokend_client_roll(f->client, DOMAIN, theirs.info.id, 0, &rolled),
      TOKEND_ENOTFOUND, NULL);
  assert_int_equal(
      th_db_count(f->tokend.db_path, "SELECT count(*) FROM tokens"), 2);
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM tokens WHERE "
                               "expires_at <> 0 OR rolled_to <> ''"),
                   0);
  /* A revoked token does not roll. */
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, is.info.id, NULL, NULL), 0);
  expect_error(f->client,
               tokend_client_roll(f->client, DOMAIN, is.info.id, 0, &rolled),
               TOKEND_ECONFIG, "revoked");
  assert_int_equal(
      th_db_count(f->tokend.db_path, "SELECT count(*) FROM tokens"), 2);
  tokend_client_wipe(&is);
  tokend_client_wipe(&theirs);
}

/* ---- expiring soon ---- */

static void test_list_expiring_within(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t soon, later, never, revoked;
  tokend_token_list_t *list = NULL;
  int64_t now = th_now_ms();

  issue(f, DOMAIN, "soon", now + HOUR_MS, NULL, 0, NULL, &soon);
  issue(f, DOMAIN, "later", now + 10 * DAY_MS, NULL, 0, NULL, &later);
  issue(f, DOMAIN, "never", 0, NULL, 0, NULL, &never);
  issue(f, DOMAIN, "revoked", now + HOUR_MS, NULL, 0, NULL, &revoked);
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, revoked.info.id, NULL, NULL), 0);
  assert_int_equal(tokend_client_list_expiring(f->client, DOMAIN, 0, NULL,
                                               7 * DAY_MS, &list),
                   0);
  assert_int_equal(list->n_tokens, 1);
  assert_string_equal(list->tokens[0].id, soon.info.id);
  tokend_token_list_free(list);
  assert_int_equal(tokend_client_list_expiring(f->client, DOMAIN, 0, NULL,
                                               30 * DAY_MS, &list),
                   0);
  assert_int_equal(list->n_tokens, 2);
  tokend_token_list_free(list);
  expect_error(
      f->client,
      tokend_client_list_expiring(f->client, DOMAIN, 0, NULL, 0, &list),
      TOKEND_EINVAL, NULL);
  tokend_client_wipe(&soon);
  tokend_client_wipe(&later);
  tokend_client_wipe(&never);
  tokend_client_wipe(&revoked);
}

/* ---- tokenctl ---- */

/* The id on the "id:" line of tokenctl's details (stderr for issue and
 * roll), into id. */
static void detail_id(const char *text, char id[TOKEND_TOKEN_ID_BYTES]) {
  const char *p = strstr(text, "id:");

  assert_non_null(p);
  p += 3;
  while (*p == ' ')
    p++;
  snprintf(id, TOKEND_TOKEN_ID_BYTES, "%.*s", (int)strcspn(p, "\n"), p);
}

static void test_tokenctl_show_edit_roll_list(void **state) {
  th_fixture_t *f = *state;
  char id[TOKEND_TOKEN_ID_BYTES], new_id[TOKEND_TOKEN_ID_BYTES];
  char secret[TOKEND_TOKEN_BYTES + 2];
  th_run_result_t r;

  th_tokenctl(&f->tokend, NULL, &r, "--actor", ALICE, "--identity", "issue",
              "--domain", DOMAIN, "--label", "cli", "--scope", "read",
              "--scope", "write", "--expires-in", "2h", "--metadata",
              "{\"plan\": \"pro\"}", NULL);
  th_expect_exit(&r, 0, "tokenctl issue --metadata");
  snprintf(secret, sizeof(secret), "%s", r.out);
  detail_id(r.err, id);
  th_run_result_free(&r);

  /* show by id and by the secret on stdin, which is never on argv. */
  th_tokenctl(&f->tokend, NULL, &r, "--actor", ALICE, "--identity", "show",
              "--domain", DOMAIN, id, NULL);
  th_expect_exit(&r, 0, "tokenctl show ID");
  assert_non_null(strstr(r.out, "metadata:  {\"plan\":\"pro\"}"));
  assert_non_null(strstr(r.out, "last used: never"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, secret, &r, "--actor", ALICE, "--identity", "show",
              "--domain", DOMAIN, "--stdin", "--json", NULL);
  th_expect_exit(&r, 0, "tokenctl show --stdin");
  assert_non_null(strstr(r.out, id));
  assert_non_null(strstr(r.out, "\"plan\": \"pro\""));
  th_run_result_free(&r);

  /* edit: narrower scopes, no metadata; a wider one is refused. */
  th_tokenctl(&f->tokend, NULL, &r, "--actor", ALICE, "--identity", "edit",
              "--domain", DOMAIN, "--scopes", "read", "--no-metadata",
              "--label", "cli2", id, NULL);
  th_expect_exit(&r, 0, "tokenctl edit");
  assert_non_null(strstr(r.out, "label:     cli2"));
  assert_non_null(strstr(r.out, "metadata:  (none)"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "--actor", ALICE, "--identity", "edit",
              "--domain", DOMAIN, "--scopes", "read,admin", id, NULL);
  th_expect_exit(&r, 2, "tokenctl edit --scopes wider");
  assert_non_null(strstr(r.err, "admin"));
  th_run_result_free(&r);

  /* roll: the new secret alone on stdout; list marks the old one. */
  th_tokenctl(&f->tokend, NULL, &r, "--actor", ALICE, "--identity", "roll",
              "--domain", DOMAIN, "--grace", "1h", id, NULL);
  th_expect_exit(&r, 0, "tokenctl roll");
  assert_int_equal(strcspn(r.out, "\n"), strlen(secret) - 1);
  assert_null(strstr(r.out, "id:"));
  detail_id(r.err, new_id);
  assert_string_not_equal(new_id, id);
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "--actor", ALICE, "--identity", "list",
              "--domain", DOMAIN, NULL);
  th_expect_exit(&r, 0, "tokenctl list");
  assert_non_null(strstr(r.out, "(rolled)"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "--actor", ALICE, "--identity", "list",
              "--domain", DOMAIN, "--expiring-within", "90m", "--json", NULL);
  th_expect_exit(&r, 0, "tokenctl list --expiring-within");
  /* The old token (1 h grace) only: the new one lives 2 h. */
  {
    char want[64], unwanted[64];

    snprintf(want, sizeof(want), "\"id\": \"%s\"", id);
    snprintf(unwanted, sizeof(unwanted), "\"id\": \"%s\"", new_id);
    assert_non_null(strstr(r.out, want));
    assert_null(strstr(r.out, unwanted));
  }
  th_run_result_free(&r);
  sodium_memzero(secret, sizeof(secret));
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_fixture_teardown)
      T(test_metadata_set_at_issue_returned_everywhere),
      T(test_metadata_bad_is_invalid_argument_nothing_stored),
      T(test_lookup_by_id_and_secret_without_use),
      T(test_lookup_refusals),
      T(test_edit_changes_what_verify_answers_and_audits),
      T(test_edit_refusals_change_nothing),
      T(test_issue_scope_twice_is_refused),
      T(test_edit_lengthens_only_within_the_policy),
      T(test_edit_does_not_revive_an_expired_token),
      T(test_edit_and_roll_logged_with_their_doer),
      T(test_edit_lengthens_within_the_lifetime_since_creation),
      T(test_roll_under_a_policy),
      T(test_roll_replaces_the_token_with_a_grace),
      T(test_roll_without_grace_expires_the_old_now),
      T(test_roll_of_the_farthest_expiry_does_not_overflow),
      T(test_roll_refusals_change_nothing),
      T(test_list_expiring_within),
      T(test_tokenctl_show_edit_roll_list),
#undef T
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
