/* tokenctl end to end against a real tokend: output shapes, exit codes,
 * error messages, and that no secret ever reaches tokend's files. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "harness.h"
#include "tokend_client.h"

#ifndef TOKENCTL_BIN
#error "TOKENCTL_BIN must name the tokenctl executable"
#endif

#define DOMAIN "ctl.example"
#define CTL_TIMEOUT_MS 10000
#define TOKEN_RE "^[a-z0-9]+_[A-Za-z0-9]{38}$"
/* A run of this many characters of a token's body counts as a leak: 12
 * base62 characters are ~71 random bits, so a match is never chance. */
#define LEAK_WINDOW 12

/* Every test gets f->client, connected to a tokend that logs at debug
 * level. */
static int setup(void **state) {
  static const char *const args[] = {"--log-level", "debug", NULL};

  return th_fixture_setup_client(state, args);
}

static int matches_token_shape(const char *s) {
  regex_t re;
  int ok;

  assert_int_equal(regcomp(&re, TOKEN_RE, REG_EXTENDED | REG_NOSUB), 0);
  ok = regexec(&re, s, 0, NULL, 0) == 0;
  regfree(&re);
  return ok;
}

/* tokenctl issue; returns the token it printed (malloc'd). */
static char *ctl_issue(const th_fixture_t *f, const char *label) {
  th_run_result_t r;
  char *token;

  th_tokenctl(&f->tokend, NULL, &r, "issue", "--domain", DOMAIN, "--label",
              label, NULL);
  th_expect_exit(&r, 0, "issue");
  /* Exactly one line, and that line is the token. */
  assert_true(r.out_len > 1 && r.out[r.out_len - 1] == '\n');
  r.out[r.out_len - 1] = '\0';
  assert_null(strchr(r.out, '\n'));
  if (!matches_token_shape(r.out))
    fail_msg("issue printed '%s', which is not a token", r.out);
  /* The secret goes to stdout only. */
  assert_null(strstr(r.err, r.out));
  token = strdup(r.out);
  th_run_result_free(&r);
  return token;
}

static void lib_verify(const th_fixture_t *f, const char *token,
                       tokend_verify_result_t *v) {
  assert_int_equal(tokend_client_verify(f->client, token, v), 0);
}

static char *with_newline(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n + 2);

  assert_non_null(out);
  memcpy(out, s, n);
  memcpy(out + n, "\n", 2);
  return out;
}

static void test_issue_prints_only_the_token(void **state) {
  th_fixture_t *f = *state;
  tokend_verify_result_t v;
  char *token = ctl_issue(f, "CI deploy");

  lib_verify(f, token, &v);
  assert_true(v.valid);
  assert_string_equal(v.domain, DOMAIN);
  assert_string_equal(v.label, "CI deploy");
  /* TOKEN=$(tokenctl issue ...) works: the captured value is the token. */
  assert_int_equal(strncmp(token, "tkd_", 4), 0);
  free(token);
}

static void test_verify_revoke_verify_exit_codes(void **state) {
  th_fixture_t *f = *state;
  tokend_verify_result_t v;
  th_run_result_t r;
  char *token = ctl_issue(f, "verify me");
  char *line = with_newline(token);
  char id[TOKEND_TOKEN_ID_BYTES];

  th_tokenctl(&f->tokend, line, &r, "verify", NULL);
  th_expect_exit(&r, 0, "verify of a fresh token");
  assert_int_equal(strncmp(r.out, "valid", 5), 0);
  th_run_result_free(&r);

  lib_verify(f, token, &v);
  memcpy(id, v.token_id, sizeof(id));
  th_tokenctl(&f->tokend, NULL, &r, "revoke", "--domain", DOMAIN, id, NULL);
  th_expect_exit(&r, 0, "revoke");
  assert_non_null(strstr(r.out, id));
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, line, &r, "verify", NULL);
  th_expect_exit(&r, 1, "verify of a revoked token");
  assert_non_null(strstr(r.out, "REVOKED"));
  th_run_result_free(&r);

  /* Revoking again is fine and says so. */
  th_tokenctl(&f->tokend, NULL, &r, "revoke", "--domain", DOMAIN, id, NULL);
  th_expect_exit(&r, 0, "second revoke");
  assert_non_null(strstr(r.out, "already"));
  th_run_result_free(&r);

  /* A mangled token: invalid, not an error. */
  line[6] = line[6] == 'A' ? 'B' : 'A';
  th_tokenctl(&f->tokend, line, &r, "verify", NULL);
  th_expect_exit(&r, 1, "verify of a mangled token");
  assert_non_null(strstr(r.out, "MALFORMED"));
  th_run_result_free(&r);

  /* No token at all is an error. */
  th_tokenctl(&f->tokend, "", &r, "verify", NULL);
  th_expect_exit(&r, 2, "verify of empty input");
  assert_true(r.err_len > 0);
  th_run_result_free(&r);
  free(line);
  free(token);
}

/* The line of text that contains needle, copied into out. */
static void line_with(const char *text, const char *needle, char *out,
                      size_t len) {
  const char *p = strstr(text, needle), *start, *end;

  if (p == NULL)
    fail_msg("'%s' not in:\n%s", needle, text);
  for (start = p; start > text && start[-1] != '\n'; start--)
    ;
  end = strchr(p, '\n');
  if (end == NULL)
    end = p + strlen(p);
  assert_true((size_t)(end - start) < len);
  memcpy(out, start, (size_t)(end - start));
  out[end - start] = '\0';
}

static void test_list_prints_aligned_table(void **state) {
  th_fixture_t *f = *state;
  tokend_verify_result_t v1, v2;
  char header[512], row[512];
  th_run_result_t r;
  char *t1 = ctl_issue(f, "CI deploy");
  char *t2 = ctl_issue(f, "nightly backup");

  lib_verify(f, t1, &v1);
  lib_verify(f, t2, &v2);
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, v2.token_id, NULL, NULL), 0);

  th_tokenctl(&f->tokend, NULL, &r, "list", "--domain", DOMAIN, NULL);
  th_expect_exit(&r, 0, "list");
  line_with(r.out, "LABEL", header, sizeof(header));
  line_with(r.out, v1.token_id, row, sizeof(row));
  assert_non_null(strstr(row, "CI deploy"));
  /* Aligned: each row's label starts under the LABEL heading. */
  assert_int_equal(strstr(row, "CI deploy") - row,
                   strstr(header, "LABEL") - header);
  /* Without --all the revoked token is not shown. */
  assert_null(strstr(r.out, "nightly backup"));
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "list", "--domain", DOMAIN, "--all", NULL);
  th_expect_exit(&r, 0, "list --all");
  line_with(r.out, v2.token_id, row, sizeof(row));
  assert_non_null(strstr(row, "nightly backup"));
  assert_non_null(strstr(row, "REVOKED"));
  th_run_result_free(&r);
  free(t1);
  free(t2);
}

static void test_issue_json_is_one_object(void **state) {
  th_fixture_t *f = *state;
  tokend_verify_result_t v;
  th_run_result_t r;
  json_error_t jerr;
  json_t *root, *scopes;
  const char *token, *id;

  th_tokenctl(&f->tokend, NULL, &r, "issue", "--domain", DOMAIN, "--label",
              "json \"quoted\"", "--scope", "read", "--scope", "write",
              "--expires-in", "30d", "--json", NULL);
  th_expect_exit(&r, 0, "issue --json");
  /* json_loads rejects anything after the first value. */
  root = json_loads(r.out, 0, &jerr);
  if (root == NULL)
    fail_msg("issue --json output is not one JSON value (%s):\n%s", jerr.text,
             r.out);
  assert_true(json_is_object(root));
  token = json_string_value(json_object_get(root, "token"));
  id = json_string_value(json_object_get(root, "id"));
  assert_non_null(token);
  assert_non_null(id);
  assert_true(matches_token_shape(token));
  assert_int_equal(strncmp(id, "tok_", 4), 0);
  assert_string_equal(json_string_value(json_object_get(root, "domain")),
                      DOMAIN);
  assert_string_equal(json_string_value(json_object_get(root, "label")),
                      "json \"quoted\"");
  scopes = json_object_get(root, "scopes");
  assert_true(json_is_array(scopes));
  assert_int_equal(json_array_size(scopes), 2);
  assert_true(json_integer_value(json_object_get(root, "expires_at")) >
              th_now_ms() + 29LL * 86400 * 1000);

  lib_verify(f, token, &v);
  assert_true(v.valid);
  assert_string_equal(v.token_id, id);
  assert_int_equal(v.n_scopes, 2);
  json_decref(root);
  th_run_result_free(&r);

  /* list --json too. */
  th_tokenctl(&f->tokend, NULL, &r, "list", "--domain", DOMAIN, "--json", NULL);
  th_expect_exit(&r, 0, "list --json");
  root = json_loads(r.out, 0, &jerr);
  assert_non_null(root);
  assert_int_equal(json_array_size(json_object_get(root, "tokens")), 1);
  assert_string_equal(
      json_string_value(json_object_get(
          json_array_get(json_object_get(root, "tokens"), 0), "id")),
      v.token_id);
  json_decref(root);
  th_run_result_free(&r);
}

static void test_help_exits_zero_for_every_command(void **state) {
  th_fixture_t *f = *state;
  static const char *const commands[] = {"issue", "verify", "revoke", "list",
                                         "backup"};
  th_run_result_t r;
  size_t i;

  th_tokenctl(&f->tokend, NULL, &r, "--version", NULL);
  th_expect_exit(&r, 0, "--version");
  assert_string_equal(r.out, "tokenctl " TOKEND_VERSION "\n");
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "--help", NULL);
  th_expect_exit(&r, 0, "--help");
  assert_non_null(strstr(r.out, "Usage"));
  th_run_result_free(&r);
  for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    th_tokenctl(&f->tokend, NULL, &r, commands[i], "--help", NULL);
    th_expect_exit(&r, 0, commands[i]);
    assert_non_null(strstr(r.out, "Usage"));
    assert_non_null(strstr(r.out, commands[i]));
    th_run_result_free(&r);
  }
}

/* A usage error: exit 2, nothing on stdout, and on stderr one line saying
 * what is wrong (containing says_what) then "try 'tokenctl <cmd>
 * --help'": never the whole help. */
static void expect_short_usage_error(const th_fixture_t *f, const char *cmd,
                                     const char *says_what, const char *a,
                                     const char *b, const char *c) {
  char what[160], hint[96];
  const char *nl;
  th_run_result_t r;

  snprintf(what, sizeof(what), "tokenctl %s %s %s", a ? a : "", b ? b : "",
           c ? c : "");
  th_tokenctl(&f->tokend, NULL, &r, a, b, c, NULL);
  th_expect_exit(&r, 2, what);
  assert_int_equal(r.out_len, 0);
  nl = strchr(r.err, '\n');
  if (nl == NULL)
    fail_msg("%s: no line on stderr", what);
  snprintf(hint, sizeof(hint), "try 'tokenctl%s%s --help'\n", cmd[0] ? " " : "",
           cmd);
  if (strcmp(nl + 1, hint) != 0 ||
      memmem(r.err, (size_t)(nl - r.err), says_what, strlen(says_what)) == NULL)
    fail_msg("%s: expected one line with '%s' and then %sgot:\n%s", what,
             says_what, hint, r.err);
  assert_null(strstr(r.err, "Usage"));
  th_run_result_free(&r);
}

static void expect_usage_error(const th_fixture_t *f, const char *a,
                               const char *b, const char *c) {
  th_run_result_t r;
  char what[128];

  snprintf(what, sizeof(what), "tokenctl %s %s %s", a, b ? b : "", c ? c : "");
  th_tokenctl(&f->tokend, NULL, &r, a, b, c, NULL);
  th_expect_exit(&r, 2, what);
  assert_true(r.err_len > 0);
  assert_int_equal(r.out_len, 0);
  th_run_result_free(&r);
}

static void test_bad_flags_exit_2(void **state) {
  th_fixture_t *f = *state;

  expect_usage_error(f, "--bogus", NULL, NULL);
  expect_usage_error(f, "issue", "--bogus", NULL);
  expect_usage_error(f, "verify", "--bogus", NULL);
  expect_usage_error(f, "revoke", "--bogus", NULL);
  expect_usage_error(f, "list", "--bogus", NULL);
  expect_usage_error(f, "issue", "--label", "no domain");
  expect_usage_error(f, "list", NULL, NULL);
  expect_usage_error(f, "frobnicate", NULL, NULL);
}

/* Usage errors are one line and a hint, and a near miss names the
 * command, subcommand or option meant. */
static void test_usage_errors_are_one_line_with_hint(void **state) {
  th_fixture_t *f = *state;

  expect_short_usage_error(f, "", "unknown option '--bogus'", "--bogus", NULL,
                           NULL);
  expect_short_usage_error(f, "issue", "unknown option '--bogus'", "issue",
                           "--bogus", NULL);
  expect_short_usage_error(f, "list", "--domain is required", "list", NULL,
                           NULL);
  expect_short_usage_error(f, "", "missing command", NULL, NULL, NULL);
  expect_short_usage_error(f, "revoke", "needs a value", "revoke", "--domain",
                           NULL);
  expect_short_usage_error(f, "",
                           "unknown command 'revok'; did you mean 'revoke'?",
                           "revok", NULL, NULL);
  expect_short_usage_error(f, "", "unknown command 'frobnicate'", "frobnicate",
                           NULL, NULL);
  expect_short_usage_error(f, "admins",
                           "unknown subcommand 'grnat'; did you mean 'grant'?",
                           "admins", "grnat", NULL);
  expect_short_usage_error(f, "admins", "missing subcommand", "admins", NULL,
                           NULL);
  expect_short_usage_error(f, "", "did you mean 'list'?", "help", "lsit", NULL);
  expect_short_usage_error(
      f, "issue", "unknown option '--expire-in'; did you mean '--expires-in'?",
      "issue", "--expire-in", "1d");
  /* Durations and times name the flag and say what is wrong. */
  expect_short_usage_error(f, "issue", "--expires-in '4000d': longer than",
                           "issue", "--expires-in", "4000d");
  expect_short_usage_error(f, "issue", "--expires-in '1h30': expected", "issue",
                           "--expires-in", "1h30");
  expect_short_usage_error(f, "issue", "--expires-at '2027-02-30': not a valid",
                           "issue", "--expires-at", "2027-02-30");
  expect_short_usage_error(f, "audit", "--since 'last week': expected", "audit",
                           "--since", "last week");
}

/* --json times: each Unix ms key keeps its value and gains an RFC 3339
 * twin; --expires-at takes an ISO date; the list shows scopes. */
static void test_json_times_rfc3339_and_expires_at(void **state) {
  th_fixture_t *f = *state;
  char date[16], want[40], header[512], row[512];
  int64_t midnight, created;
  json_error_t jerr;
  json_t *root, *tok;
  th_run_result_t r;
  time_t t;
  struct tm tm;

  /* Midnight UTC 40 days ahead, as a date. */
  t = (time_t)(th_now_ms() / 1000 + 40 * 86400);
  assert_non_null(gmtime_r(&t, &tm));
  strftime(date, sizeof(date), "%Y-%m-%d", &tm);
  midnight = ((int64_t)t - (int64_t)t % 86400) * 1000;

  th_tokenctl(&f->tokend, NULL, &r, "issue", "--domain", DOMAIN, "--label",
              "dated", "--expires-at", date, "--scope", "read", "--scope",
              "write", "--json", NULL);
  th_expect_exit(&r, 0, "issue --expires-at --json");
  root = json_loads(r.out, 0, &jerr);
  assert_non_null(root);
  assert_int_equal(json_integer_value(json_object_get(root, "expires_at")),
                   midnight);
  snprintf(want, sizeof(want), "%sT00:00:00.000Z", date);
  assert_string_equal(
      json_string_value(json_object_get(root, "expires_at_rfc3339")), want);
  created = json_integer_value(json_object_get(root, "created_at"));
  assert_true(created > 0);
  assert_non_null(
      json_string_value(json_object_get(root, "created_at_rfc3339")));
  /* Not set: null, and its twin null. */
  assert_true(json_is_null(json_object_get(root, "revoked_at")));
  assert_true(json_is_null(json_object_get(root, "revoked_at_rfc3339")));
  json_decref(root);
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "list", "--domain", DOMAIN, "--json", NULL);
  th_expect_exit(&r, 0, "list --json");
  root = json_loads(r.out, 0, &jerr);
  assert_non_null(root);
  tok = json_array_get(json_object_get(root, "tokens"), 0);
  assert_int_equal(json_integer_value(json_object_get(tok, "expires_at")),
                   midnight);
  assert_string_equal(
      json_string_value(json_object_get(tok, "expires_at_rfc3339")), want);
  assert_int_equal(json_integer_value(json_object_get(tok, "created_at")),
                   created);
  json_decref(root);
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "list", "--domain", DOMAIN, NULL);
  th_expect_exit(&r, 0, "list");
  line_with(r.out, "SCOPES", header, sizeof(header));
  line_with(r.out, "dated", row, sizeof(row));
  assert_non_null(strstr(row, "read,write"));
  assert_int_equal(strstr(row, "read,write") - row,
                   strstr(header, "SCOPES") - header);
  th_run_result_free(&r);

  /* The past, and beyond 10 years, are refused. */
  expect_short_usage_error(f, "issue", "--expires-at is in the past", "issue",
                           "--expires-at", "2001-01-01");
  expect_short_usage_error(f, "issue", "more than 10 years", "issue",
                           "--expires-at", "2999-01-01T00:00:00Z");

  /* audit --since takes a date (yesterday's: this test's events). */
  t = (time_t)(th_now_ms() / 1000 - 86400);
  assert_non_null(gmtime_r(&t, &tm));
  strftime(date, sizeof(date), "%Y-%m-%d", &tm);
  th_tokenctl(&f->tokend, NULL, &r, "audit", "--domain", DOMAIN, "--since",
              date, "--json", NULL);
  th_expect_exit(&r, 0, "audit --since DATE --json");
  root = json_loads(r.out, 0, &jerr);
  assert_non_null(root);
  assert_true(json_array_size(json_object_get(root, "events")) > 0);
  assert_non_null(json_string_value(json_object_get(
      json_array_get(json_object_get(root, "events"), 0), "time_rfc3339")));
  assert_non_null(json_string_value(json_object_get(root, "since_rfc3339")));
  json_decref(root);
  th_run_result_free(&r);
}

/* Removing an admin without --revoke-tokens warns that their tokens stay
 * valid, and how many; with it, or with none left, it does not. */
static void test_admins_revoke_warns_tokens_stay_active(void **state) {
  th_fixture_t *f = *state;
  tokend_issue_params_t p = {0};
  tokend_issued_t issued;
  json_error_t jerr;
  th_run_result_t r;
  json_t *root;
  int i;

  assert_int_equal(
      tokend_client_grant_admin(f->client, DOMAIN, "alice@corp", NULL, NULL),
      0);
  assert_int_equal(tokend_client_set_actor(f->client, "alice@corp"), 0);
  p.domain = DOMAIN;
  p.label = "alice's";
  for (i = 0; i < 3; i++) {
    assert_int_equal(tokend_client_issue(f->client, &p, &issued), 0);
    tokend_client_wipe(&issued);
  }
  /* One of them revoked: it does not count. */
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, issued.info.id, NULL, NULL), 0);
  assert_int_equal(tokend_client_set_actor(f->client, NULL), 0);
  /* Someone else's token does not count either. */
  p.label = "break-glass";
  assert_int_equal(tokend_client_issue(f->client, &p, &issued), 0);
  tokend_client_wipe(&issued);

  th_tokenctl(&f->tokend, NULL, &r, "admins", "revoke", "--domain", DOMAIN,
              "--user", "alice@corp", NULL);
  th_expect_exit(&r, 0, "admins revoke");
  if (strstr(r.err, "warning: 2 tokens alice@corp") == NULL ||
      strstr(r.err, "still active") == NULL)
    fail_msg("no warning about 2 active tokens:\n%s", r.err);
  th_run_result_free(&r);

  /* --json: the warning on stderr, the count as a new key. */
  assert_int_equal(
      tokend_client_grant_admin(f->client, DOMAIN, "alice@corp", NULL, NULL),
      0);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "revoke", "--domain", DOMAIN,
              "--user", "alice@corp", "--json", NULL);
  th_expect_exit(&r, 0, "admins revoke --json");
  root = json_loads(r.out, 0, &jerr);
  assert_non_null(root);
  assert_int_equal(
      json_integer_value(json_object_get(root, "tokens_still_active")), 2);
  assert_int_equal(json_integer_value(json_object_get(root, "tokens_revoked")),
                   0);
  assert_non_null(strstr(r.err, "warning: 2 tokens"));
  json_decref(root);
  th_run_result_free(&r);

  /* With --revoke-tokens nothing is left, and nothing is said. */
  assert_int_equal(
      tokend_client_grant_admin(f->client, DOMAIN, "alice@corp", NULL, NULL),
      0);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "revoke", "--domain", DOMAIN,
              "--user", "alice@corp", "--revoke-tokens", NULL);
  th_expect_exit(&r, 0, "admins revoke --revoke-tokens");
  assert_null(strstr(r.err, "warning"));
  assert_non_null(strstr(r.out, "revoked 2 of their tokens"));
  th_run_result_free(&r);
}

static void test_errors_name_grpc_code(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  char missing[TH_PATH_BYTES + 16];

  th_tokenctl(&f->tokend, NULL, &r, "issue", "--domain", "bad domain!",
              "--label", "x", NULL);
  th_expect_exit(&r, 2, "issue with a bad domain");
  assert_non_null(strstr(r.err, "INVALID_ARGUMENT"));
  assert_int_equal(r.out_len, 0);
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "revoke", "--domain", DOMAIN,
              "tok_AAAAAAAAAAAAAAAAAAAA", NULL);
  th_expect_exit(&r, 2, "revoke of an unknown id");
  assert_non_null(strstr(r.err, "NOT_FOUND"));
  th_run_result_free(&r);

  /* No tokend there: the message names the socket. */
  snprintf(missing, sizeof(missing), "%s/nobody.sock", f->tokend.dir);
  {
    const char *argv[] = {TOKENCTL_BIN, "--socket", missing, "list",
                          "--domain",   DOMAIN,     NULL};

    assert_int_equal(th_run(argv, NULL, NULL, CTL_TIMEOUT_MS, &r), 0);
  }
  th_expect_exit(&r, 2, "list without tokend");
  assert_non_null(strstr(r.err, missing));
  th_run_result_free(&r);
}

static void test_socket_from_environment(void **state) {
  th_fixture_t *f = *state;
  char env[TH_PATH_BYTES + 32];
  const char *envv[] = {env, NULL};
  const char *argv[] = {TOKENCTL_BIN, "issue", "--domain", DOMAIN,
                        "--label",    "env",   NULL};
  th_run_result_t r;

  snprintf(env, sizeof(env), "TOKEND_SOCKET=%s", f->tokend.socket_path);
  assert_int_equal(th_run(argv, envv, NULL, CTL_TIMEOUT_MS, &r), 0);
  th_expect_exit(&r, 0, "issue with TOKEND_SOCKET");
  th_run_result_free(&r);
}

/* ---- secret hygiene ---- */

#define HYGIENE_TOKENS 6

typedef struct {
  char *secrets[HYGIENE_TOKENS * 2];
  size_t n;
} secrets_t;

/* Fails if any LEAK_WINDOW-character run of a secret's body (the part after
 * the prefix) appears in the file. Returns the file's size. */
static size_t expect_no_secret_in(const char *path, const secrets_t *s) {
  size_t len, i, k;
  char *data = th_read_file(path, &len);

  if (data == NULL)
    return 0;
  for (i = 0; i < s->n; i++) {
    const char *body = strchr(s->secrets[i], '_') + 1;
    size_t blen = strlen(body);

    for (k = 0; k + LEAK_WINDOW <= blen; k++)
      if (memmem(data, len, body + k, LEAK_WINDOW) != NULL)
        fail_msg(
            "%s contains part of secret %zu ('%.*s' at offset %zu)", path, i,
            LEAK_WINDOW, body + k,
            (size_t)((char *)memmem(data, len, body + k, LEAK_WINDOW) - data));
  }
  free(data);
  return len;
}

/* Every file in tokend's directory: database, -wal, -shm, pepper, log. */
static void expect_no_secret_in_dir(const char *dir, const secrets_t *s) {
  char path[TH_PATH_BYTES * 2];
  struct dirent *e;
  DIR *d = opendir(dir);
  int files = 0;

  assert_non_null(d);
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    expect_no_secret_in(path, s);
    files++;
  }
  closedir(d);
  assert_true(files >= 3);
}

static void test_secret_never_in_db_wal_or_log(void **state) {
  th_fixture_t *f = *state;
  secrets_t s = {{0}, 0};
  tokend_issue_params_t p = {DOMAIN, "library", 0, NULL, 0, NULL};
  tokend_verify_result_t v;
  tokend_issued_t is;
  th_run_result_t r;
  char wal[TH_PATH_BYTES + 8], *line;
  size_t i, n_real, len;
  json_t *root;

  /* Through tokenctl, plain and --json, and through the library. */
  for (i = 0; i < 3; i++)
    s.secrets[s.n++] = ctl_issue(f, "hygiene");
  th_tokenctl(&f->tokend, NULL, &r, "issue", "--domain", DOMAIN, "--label",
              "hygiene json", "--json", NULL);
  th_expect_exit(&r, 0, "issue --json");
  root = json_loads(r.out, 0, NULL);
  assert_non_null(root);
  s.secrets[s.n++] = strdup(json_string_value(json_object_get(root, "token")));
  json_decref(root);
  th_run_result_free(&r);
  for (i = 0; i < 2; i++) {
    assert_int_equal(tokend_client_issue(f->client, &p, &is), 0);
    s.secrets[s.n++] = strdup(is.token);
    tokend_client_wipe(&is);
  }
  n_real = s.n;

  /* Verify each, valid and mangled, both ways; revoke one. */
  for (i = 0; i < n_real; i++) {
    char *mangled = strdup(s.secrets[i]);

    len = strlen(mangled);
    mangled[len - 8] = mangled[len - 8] == 'z' ? 'y' : 'z';
    s.secrets[s.n++] = mangled;
    lib_verify(f, s.secrets[i], &v);
    assert_true(v.valid);
    lib_verify(f, mangled, &v);
    assert_false(v.valid);
    line = with_newline(s.secrets[i]);
    th_tokenctl(&f->tokend, line, &r, "verify", NULL);
    th_expect_exit(&r, 0, "verify");
    th_run_result_free(&r);
    free(line);
    line = with_newline(mangled);
    th_tokenctl(&f->tokend, line, &r, "verify", NULL);
    th_expect_exit(&r, 1, "verify of a mangled token");
    th_run_result_free(&r);
    free(line);
  }
  lib_verify(f, s.secrets[0], &v);
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, v.token_id, NULL, NULL), 0);
  th_tokenctl(&f->tokend, NULL, &r, "list", "--domain", DOMAIN, "--all",
              "--json", NULL);
  th_expect_exit(&r, 0, "list");
  th_run_result_free(&r);

  /* While tokend runs, the writes sit in the WAL. */
  snprintf(wal, sizeof(wal), "%s-wal", f->tokend.db_path);
  if (expect_no_secret_in(wal, &s) == 0)
    fail_msg("%s is missing or empty while tokend runs: the test would "
             "check nothing",
             wal);
  expect_no_secret_in_dir(f->tokend.dir, &s);

  assert_int_equal(th_tokend_stop(&f->tokend), 0);
  assert_true(expect_no_secret_in(f->tokend.db_path, &s) > 0);
  assert_true(expect_no_secret_in(f->tokend.log_path, &s) > 0);
  expect_no_secret_in(wal, &s);
  expect_no_secret_in_dir(f->tokend.dir, &s);
  /* The debug log did record the calls, so it was worth searching. */
  assert_true(th_file_contains(f->tokend.log_path, "issue", 5));

  for (i = 0; i < s.n; i++)
    free(s.secrets[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_issue_prints_only_the_token, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_verify_revoke_verify_exit_codes,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_list_prints_aligned_table, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_issue_json_is_one_object, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_help_exits_zero_for_every_command,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_bad_flags_exit_2, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_usage_errors_are_one_line_with_hint,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_json_times_rfc3339_and_expires_at,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_admins_revoke_warns_tokens_stay_active, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_errors_name_grpc_code, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_socket_from_environment, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_secret_never_in_db_wal_or_log, setup,
                                      th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
