/* Domains are case-insensitive, like the DNS names they usually are (issue
 * 11, item 15): every domain a peer sends is lower-cased, a trailing dot is
 * refused, and the schema 3 migration lower-cases existing domains and
 * strips the one trailing dot schema 2 let in, but refuses to merge two
 * that differ only by case or that dot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"
#include "tokend_error.h"
#include "tokend_limits.h"

static void sql_ok(const char *db_path, const char *sql) {
  sqlite3 *db = NULL;
  char *err = NULL;

  assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL),
                   SQLITE_OK);
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
    fail_msg("%s: %s", sql, err);
  sqlite3_close(db);
}

static size_t list_count(tokend_client_t *c, const char *domain) {
  tokend_token_list_t *l = NULL;
  size_t n;

  if (tokend_client_list(c, domain, 0, NULL, 1, &l) != 0)
    fail_msg("List %s: %s", domain, tokend_client_errmsg(c));
  n = l->n_tokens;
  tokend_token_list_free(l);
  return n;
}

static void test_issue_mixed_case_found_lower_case(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t t;
  tokend_audit_list_t *a = NULL;
  int already = -1;

  th_client_issue_ok(f->client, "Example.COM", "mixed", 0, &t);
  assert_string_equal(t.info.domain, "example.com");
  assert_int_equal(list_count(f->client, "example.com"), 1);
  assert_int_equal(list_count(f->client, "EXAMPLE.com"), 1);
  /* One tenant: revoked under yet another spelling. */
  assert_int_equal(
      tokend_client_revoke(f->client, "eXaMpLe.CoM", t.info.id, NULL, &already),
      0);
  assert_int_equal(already, 0);
  th_expect_verify(f->client, t.token, 0, TOKEND_VERIFY_REVOKED);
  assert_int_equal(
      tokend_client_list_audit(f->client, "Example.Com", 0, 0, NULL, &a), 0);
  assert_int_equal(a->n_events, 2);
  assert_string_equal(a->events[0].domain, "example.com");
  tokend_audit_list_free(a);
  /* Stored in lower case. */
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM tokens"
                               " WHERE domain = 'example.com'"),
                   1);
  tokend_client_wipe(&t);
}

static void test_trailing_dot_refused(void **state) {
  th_fixture_t *f = *state;
  tokend_issue_params_t p = {.domain = "example.com.", .label = "dot"};
  tokend_token_list_t *l = NULL;
  tokend_issued_t t;

  assert_int_equal(tokend_client_issue(f->client, &p, &t), TOKEND_EINVAL);
  assert_int_equal(tokend_client_grpc_status(f->client),
                   TOKEND_GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(tokend_client_errmsg(f->client), "dot"));
  assert_int_equal(
      tokend_client_list(f->client, "example.com.", 0, NULL, 0, &l),
      TOKEND_EINVAL);
  assert_int_equal(
      tokend_client_grant_admin(f->client, "Example.com.", "x", NULL, NULL),
      TOKEND_EINVAL);
  assert_int_equal(
      th_db_count(f->tokend.db_path, "SELECT count(*) FROM tokens"), 0);
}

/* Turns a database this build made back into schema version 2 (which had no
 * meta table, kept domains as sent, and had no audit chain), with the
 * domains set by sql. */
static void make_v2(const th_tokend_t *t, const char *sql) {
  sql_ok(t->db_path, sql);
  sql_ok(t->db_path, "DROP TABLE IF EXISTS meta;"
                     "DROP TABLE IF EXISTS audit_chain;"
                     "DROP TRIGGER IF EXISTS audit_events_no_replace;"
                     "ALTER TABLE audit_events DROP COLUMN hash;"
                     "ALTER TABLE audit_events DROP COLUMN count;"
                     "DROP TABLE IF EXISTS domain_policies;"
                     "ALTER TABLE tokens DROP COLUMN metadata;"
                     "ALTER TABLE tokens DROP COLUMN rolled_from;"
                     "ALTER TABLE tokens DROP COLUMN rolled_to;"
                     "ALTER TABLE tokens DROP COLUMN pepper_gen;"
                     "PRAGMA user_version = 2;");
}

/* Issues one token in each of domains (lower case; a NULL ends them) and
 * grants admin "alice" in the first; stops tokend. */
static void populate(th_fixture_t *f, const char *const *domains,
                     char token[TOKEND_TOKEN_BYTES]) {
  tokend_issued_t t;
  size_t i;

  for (i = 0; domains[i] != NULL; i++) {
    th_client_issue_ok(f->client, domains[i], "before", 0, &t);
    if (i == 0)
      memcpy(token, t.token, TOKEND_TOKEN_BYTES);
    tokend_client_wipe(&t);
  }
  assert_int_equal(
      tokend_client_grant_admin(f->client, domains[0], "alice", NULL, NULL), 0);
  tokend_client_close(f->client);
  f->client = NULL;
  assert_int_equal(th_tokend_stop(&f->tokend), 0);
}

static void test_v2_mixed_case_domains_migrated(void **state) {
  static const char *const domains[] = {"mixed.example", NULL};
  th_fixture_t *f = *state;
  char token[TOKEND_TOKEN_BYTES];
  tokend_admin_list_t *admins = NULL;
  tokend_verify_result_t v;
  uint8_t other[TOKEND_PEPPER_BYTES];
  char *pepper;
  size_t len;

  populate(f, domains, token);
  make_v2(&f->tokend,
          "UPDATE tokens SET domain = 'Mixed.Example';"
          "UPDATE domain_admins SET domain = 'Mixed.Example';"
          "INSERT INTO audit_events (at, peer_uid, peer_pid, actor,"
          " break_glass, domain, token_id, method, code, detail)"
          " VALUES (1, 0, 1, 'root', 0, 'Mixed.Example', '', 'Issue', 0, '');");

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  f->client = th_client_connect_ok(&f->tokend);
  th_client_verify_ok(f->client, token, &v);
  assert_true(v.valid);
  assert_string_equal(v.domain, "mixed.example");
  assert_int_equal(list_count(f->client, "mixed.example"), 1);
  assert_int_equal(
      tokend_client_list_admins(f->client, "Mixed.example", &admins), 0);
  assert_int_equal(admins->n_admins, 1);
  assert_string_equal(admins->admins[0].user, "alice");
  tokend_admin_list_free(admins);
  tokend_client_close(f->client);
  f->client = NULL;
  th_tokend_stop_ok(&f->tokend);

  /* Migrated to the newest schema (4: the audit chain came after v3; 5:
   * audit retention). */
  assert_int_equal(th_db_count(f->tokend.db_path, "PRAGMA user_version"), 6);
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM tokens"
                               " WHERE domain <> lower(domain)"),
                   0);
  /* The audit log keeps what was written. */
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM audit_events"
                               " WHERE domain = 'Mixed.Example'"),
                   1);
  /* The migration recorded the fingerprint of the pepper in use: another
   * one is refused from now on. */
  pepper = th_read_file(f->tokend.pepper_path, &len);
  assert_non_null(pepper);
  memcpy(other, pepper, sizeof(other));
  other[5] ^= 0x80;
  th_write_file_ok(f->tokend.pepper_path, other, sizeof(other), 0600);
  assert_int_equal(th_tokend_spawn(&f->tokend, NULL), 0);
  assert_int_equal(th_tokend_wait_exit(&f->tokend, TH_START_TIMEOUT_MS), 1);
  th_write_file_ok(f->tokend.pepper_path, pepper, len, 0600);
  free(pepper);
}

static void test_v2_case_variants_refused(void **state) {
  static const char *const domains[] = {"dup.example", "other.example",
                                        "twin.example", NULL};
  th_fixture_t *f = *state;
  char token[TOKEND_TOKEN_BYTES], *log;
  int status;

  populate(f, domains, token);
  /* Two tenants that differ only by case, one of them only by its admin. */
  make_v2(&f->tokend, "UPDATE tokens SET domain = 'Dup.Example'"
                      " WHERE domain = 'other.example';"
                      "UPDATE tokens SET domain = 'TWIN.example'"
                      " WHERE domain = 'twin.example';"
                      "UPDATE domain_admins SET domain = 'twin.example';");
  assert_int_equal(truncate(f->tokend.log_path, 0), 0);
  assert_int_equal(th_tokend_spawn(&f->tokend, NULL), 0);
  status = th_tokend_wait_exit(&f->tokend, TH_START_TIMEOUT_MS);
  if (status < 0)
    th_tokend_kill(&f->tokend);
  log = th_read_file(f->tokend.log_path, NULL);
  assert_non_null(log);
  if (status != 1 || strstr(log, "Dup.Example and dup.example") == NULL ||
      strstr(log, "TWIN.example and twin.example") == NULL ||
      strchr(log, '\n')[1] != '\0')
    fail_msg("want exit 1 and one line naming both pairs; got %d:\n%s", status,
             log);
  free(log);
  /* Nothing was merged, or migrated. */
  assert_int_equal(th_db_count(f->tokend.db_path, "PRAGMA user_version"), 2);
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM tokens"
                               " WHERE domain = 'Dup.Example'"),
                   1);
}

/* A domain that schema 2 stored with a trailing dot is migrated without it
 * (and in lower case): its tokens still verify, and can be listed and
 * revoked again, its admins listed, under the name peers may now send. */
static void test_v2_trailing_dot_domains_migrated(void **state) {
  static const char *const domains[] = {"dot.example", NULL};
  th_fixture_t *f = *state;
  char token[TOKEND_TOKEN_BYTES];
  tokend_admin_list_t *admins = NULL;
  tokend_token_list_t *l = NULL;
  tokend_verify_result_t v;
  int already = -1;

  populate(f, domains, token);
  make_v2(&f->tokend, "UPDATE tokens SET domain = 'Dot.Example.';"
                      "UPDATE domain_admins SET domain = 'Dot.Example.';");

  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  f->client = th_client_connect_ok(&f->tokend);
  th_client_verify_ok(f->client, token, &v);
  assert_true(v.valid);
  assert_string_equal(v.domain, "dot.example");
  if (tokend_client_list(f->client, "dot.example", 0, NULL, 1, &l) != 0)
    fail_msg("List dot.example: %s", tokend_client_errmsg(f->client));
  assert_int_equal(l->n_tokens, 1);
  assert_int_equal(tokend_client_list_admins(f->client, "dot.example", &admins),
                   0);
  assert_int_equal(admins->n_admins, 1);
  assert_string_equal(admins->admins[0].user, "alice");
  tokend_admin_list_free(admins);
  assert_int_equal(tokend_client_revoke(f->client, "dot.example",
                                        l->tokens[0].id, NULL, &already),
                   0);
  assert_int_equal(already, 0);
  tokend_token_list_free(l);
  th_expect_verify(f->client, token, 0, TOKEND_VERIFY_REVOKED);
  tokend_client_close(f->client);
  f->client = NULL;
  th_tokend_stop_ok(&f->tokend);

  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM (SELECT domain FROM tokens"
                               " UNION ALL SELECT domain FROM domain_admins)"
                               " WHERE domain LIKE '%.'"),
                   0);
}

/* "trailing.example." and "trailing.example" would be one tenant after the
 * migration: refused like case variants, and nothing migrated. */
static void test_v2_trailing_dot_variants_refused(void **state) {
  static const char *const domains[] = {"trailing.example", "second.example",
                                        NULL};
  th_fixture_t *f = *state;
  char token[TOKEND_TOKEN_BYTES], *log;
  int status;

  populate(f, domains, token);
  make_v2(&f->tokend, "UPDATE tokens SET domain = 'Trailing.example.'"
                      " WHERE domain = 'second.example';");
  assert_int_equal(truncate(f->tokend.log_path, 0), 0);
  assert_int_equal(th_tokend_spawn(&f->tokend, NULL), 0);
  status = th_tokend_wait_exit(&f->tokend, TH_START_TIMEOUT_MS);
  if (status < 0)
    th_tokend_kill(&f->tokend);
  log = th_read_file(f->tokend.log_path, NULL);
  assert_non_null(log);
  if (status != 1 || strstr(log, "trailing dot") == NULL ||
      (strstr(log, "Trailing.example. and trailing.example") == NULL &&
       strstr(log, "trailing.example and Trailing.example.") == NULL))
    fail_msg("want exit 1 and a line naming both spellings; got %d:\n%s",
             status, log);
  free(log);
  assert_int_equal(th_db_count(f->tokend.db_path, "PRAGMA user_version"), 2);
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM tokens"
                               " WHERE domain = 'Trailing.example.'"),
                   1);
}

static int setup(void **state) { return th_fixture_setup_client(state, NULL); }

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_issue_mixed_case_found_lower_case,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_trailing_dot_refused, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_v2_mixed_case_domains_migrated,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_v2_case_variants_refused, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_v2_trailing_dot_domains_migrated,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_v2_trailing_dot_variants_refused,
                                      setup, th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
