/* Integration tests: rotating the pepper (issue 16; docs/OPERATIONS.md,
 * "Rotating the pepper"). Tokens issued under the old pepper keep
 * verifying after a restart with --pepper-file NEW --previous-pepper-file
 * OLD, move to the new pepper as they are verified (the count in
 * ServerStatus, tokenctl status and /metrics drops), and the audit log
 * verifies whole across it; a start with NEW alone then answers UNKNOWN
 * only for the tokens never verified meanwhile; mismatched peppers are
 * refused. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "harness.h"

#define N_TOKENS 5
#define ROTATION_DOMAIN "rotate.example"

/* A new pepper file at path: 32 random bytes, mode 0600. */
static void make_pepper(const char *path) {
  uint8_t p[32]; /* TOKEND_PEPPER_BYTES */

  assert_int_equal(getrandom(p, sizeof(p), 0), (ssize_t)sizeof(p));
  th_write_file_ok(path, p, sizeof(p), 0600);
}

/* ServerStatus's count of tokens on the previous pepper. */
static uint64_t previous_count(tokend_client_t *c) {
  uint64_t n = UINT64_MAX;

  assert_int_equal(tokend_client_tokens_previous_pepper(c, &n), 0);
  return n;
}

/* Waits until the count is want: a re-key is answered first and committed
 * after (the count moves when it commits). Fails the test after 10 s. */
static void wait_previous_count(tokend_client_t *c, uint64_t want) {
  int64_t deadline = th_mono_ms() + 10000 * th_timeout_scale();
  uint64_t n;

  while ((n = previous_count(c)) != want && th_mono_ms() < deadline)
    th_sleep_ms(5);
  if (n != want)
    fail_msg("tokens on the previous pepper: %llu, want %llu",
             (unsigned long long)n, (unsigned long long)want);
}

/* GET path over the HTTP face's Unix socket: the whole answer, malloc'd. */
static char *http_get(const char *sock, const char *path) {
  char req[256], *buf;
  size_t len = 0, cap = 1 << 16;
  ssize_t n;
  int fd = th_connect(sock);

  assert_true(fd >= 0);
  snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
  assert_int_equal(th_write_all(fd, req, strlen(req)), 0);
  buf = malloc(cap + 1);
  assert_non_null(buf);
  while (len < cap && (n = read(fd, buf + len, cap - len)) > 0)
    len += (size_t)n;
  buf[len] = '\0';
  close(fd);
  return buf;
}

/* Restarts t with extra args (its pepper_path already set to the one to
 * use as --pepper-file). */
static void restart(th_tokend_t *t, const char *const *args) {
  t->no_create_db = 1;
  assert_int_equal(th_tokend_start(t, args), 0);
}

static void expect_audit_chain_holds(const th_tokend_t *t) {
  th_run_result_t r;

  th_tokenctl(t, NULL, &r, "audit", "--verify", NULL);
  th_expect_exit(&r, 0, "tokenctl audit --verify");
  th_run_result_free(&r);
}

/* tokend-admin copy of a store after a rotation: the copy carries the
 * rotation's meta (generation, sealed audit key), so its audit chain
 * checks out with the current pepper, and tokend serves it. */
static void copy_and_serve(const th_tokend_t *t, const char *pepper,
                           const char *token) {
  char from[TH_PATH_BYTES + 8], to[TH_PATH_BYTES + 8];
  th_tokend_t copy;
  tokend_client_t *c;
  th_run_result_t r;
  size_t len = 0;
  char *data;

  memset(&copy, 0, sizeof(copy));
  assert_int_equal(th_tokend_init(&copy), 0);
  snprintf(from, sizeof(from), "sqlite:%s", t->db_path);
  snprintf(to, sizeof(to), "sqlite:%s", copy.db_path);
  {
    const char *argv[] = {TOKEND_ADMIN_BIN, "copy", "--from", from, "--to", to,
                          "--pepper-file",  pepper, NULL};
    assert_int_equal(th_run(argv, NULL, NULL, 30000 * th_timeout_scale(), &r),
                     0);
  }
  th_expect_exit(&r, 0, "tokend-admin copy");
  assert_non_null(strstr(r.out, "the audit chain verifies with the pepper"));
  th_run_result_free(&r);
  data = th_read_file(pepper, &len);
  assert_non_null(data);
  th_write_file_ok(copy.pepper_path, data, len, 0600);
  free(data);
  copy.no_create_db = 1;
  assert_int_equal(th_tokend_start(&copy, NULL), 0);
  c = th_client_connect_ok(&copy);
  th_expect_verify(c, token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  expect_audit_chain_holds(&copy);
  assert_int_equal(th_tokend_stop_clean(&copy), 0);
  th_tokend_destroy(&copy);
}

static void test_rotation_rekeys_tokens_as_they_verify(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  tokend_issued_t tok[N_TOKENS], fresh;
  char old_pepper[TH_PATH_BYTES], new_pepper[TH_PATH_BYTES];
  char http[TH_PATH_BYTES], listen[TH_PATH_BYTES + 8], *body;
  tokend_client_t *c;
  th_run_result_t r;
  int64_t at;
  int i, already;

  /* Tokens under the old pepper; one of them revoked. */
  assert_int_equal(th_tokend_start(t, NULL), 0);
  c = th_client_connect_ok(t);
  for (i = 0; i < N_TOKENS; i++)
    th_client_issue_ok(c, ROTATION_DOMAIN, "before", 0, &tok[i]);
  assert_int_equal(
      tokend_client_revoke(c, ROTATION_DOMAIN, tok[4].info.id, &at, &already),
      0);
  assert_int_equal(previous_count(c), 0);
  tokend_client_close(c);
  th_tokend_stop_ok(t);

  /* Restart with a new pepper, naming the old one: the rotation begins. */
  snprintf(old_pepper, sizeof(old_pepper), "%s", t->pepper_path);
  snprintf(new_pepper, sizeof(new_pepper), "%s/pepper.new", t->dir);
  make_pepper(new_pepper);
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s", new_pepper);
  snprintf(http, sizeof(http), "%s/http.sock", t->dir);
  snprintf(listen, sizeof(listen), "unix:%s", http);
  {
    const char *args[] = {"--previous-pepper-file", old_pepper, "--http-listen",
                          listen, NULL};
    restart(t, args);
  }
  assert_true(th_file_contains(t->log_path, "pepper rotation begins", 22));
  assert_int_equal(th_db_count(t->db_path, "SELECT count(*) FROM audit_events"
                                           " WHERE method = 'PepperRotation'"),
                   1);
  c = th_client_connect_ok(t);
  assert_int_equal(previous_count(c), N_TOKENS);
  th_tokenctl(t, NULL, &r, "status", NULL);
  th_expect_exit(&r, 0, "tokenctl status");
  assert_non_null(strstr(r.out, "old pepper:   5 tokens"));
  th_run_result_free(&r);
  body = http_get(http, "/metrics");
  assert_non_null(strstr(body, "\ntokend_tokens_previous_pepper 5\n"));
  free(body);

  /* Each verifies as before, and moves to the new pepper. */
  th_expect_verify(c, tok[0].token, 1, TOKEND_VERIFY_VALID);
  wait_previous_count(c, 4);
  th_expect_verify(c, tok[0].token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, tok[1].token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, tok[2].token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, tok[4].token, 0, TOKEND_VERIFY_REVOKED);
  wait_previous_count(c, 1);
  body = http_get(http, "/metrics");
  assert_non_null(strstr(body, "\ntokend_tokens_previous_pepper 1\n"));
  free(body);
  assert_int_equal(th_db_count(t->db_path, "SELECT count(*) FROM tokens"
                                           " WHERE pepper_gen = 1"),
                   4);
  /* A token issued now is on the new pepper from the start. */
  th_client_issue_ok(c, ROTATION_DOMAIN, "during", 0, &fresh);
  assert_int_equal(previous_count(c), 1);
  tokend_client_close(c);
  expect_audit_chain_holds(t);
  th_tokend_stop_ok(t);

  /* Continuing the rotation after a restart: the count is the store's. */
  {
    const char *args[] = {"--previous-pepper-file", old_pepper, NULL};
    restart(t, args);
  }
  c = th_client_connect_ok(t);
  assert_int_equal(previous_count(c), 1);
  th_expect_verify(c, tok[1].token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  th_tokend_stop_ok(t);

  /* The new pepper alone: every token verified during the rotation (and
   * every new one) is as it was; the one never verified is lost. */
  restart(t, NULL);
  assert_true(th_file_contains(t->log_path,
                               "1 tokens were hashed with a "
                               "pepper older",
                               40));
  c = th_client_connect_ok(t);
  assert_int_equal(previous_count(c), 0);
  for (i = 0; i < 3; i++)
    th_expect_verify(c, tok[i].token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, tok[4].token, 0, TOKEND_VERIFY_REVOKED);
  th_expect_verify(c, fresh.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, tok[3].token, 0, TOKEND_VERIFY_UNKNOWN);
  tokend_client_close(c);
  /* The log chained under the old pepper still verifies whole. */
  expect_audit_chain_holds(t);
  th_tokend_stop_ok(t);
  copy_and_serve(t, new_pepper, tok[0].token);

  /* The old pepper alone is refused now. */
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s", old_pepper);
  t->no_create_db = 1;
  assert_int_equal(th_tokend_spawn(t, NULL), 0);
  assert_int_not_equal(th_tokend_wait_exit(t, TH_STOP_TIMEOUT_MS), 0);
  assert_true(th_file_contains(t->log_path, "fingerprints differ", 19));
}

/* A Revoke queued before a Verify that re-keys the same token (one write
 * on one connection, so the store runs them in that order) is in effect
 * in memory afterwards: the entry is moved only once the re-key commits,
 * so the Revoke's answer finds it under the hash it reads back. */
static void test_rotation_revoke_before_rekey_stays_revoked(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RevokeRequest rv = TOKEND__V1__REVOKE_REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__Response *resp;
  char old_pepper[TH_PATH_BYTES];
  tokend_issued_t tok;
  tokend_client_t *c;
  uint8_t *buf = NULL;
  size_t len = 0;
  int fd, i;

  assert_int_equal(th_tokend_start(t, NULL), 0);
  c = th_client_connect_ok(t);
  th_client_issue_ok(c, ROTATION_DOMAIN, "raced", 0, &tok);
  tokend_client_close(c);
  th_tokend_stop_ok(t);
  snprintf(old_pepper, sizeof(old_pepper), "%s", t->pepper_path);
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s/pepper.new", t->dir);
  make_pepper(t->pepper_path);
  {
    const char *args[] = {"--previous-pepper-file", old_pepper, NULL};
    restart(t, args);
  }
  fd = th_connect(t->socket_path);
  assert_true(fd >= 0);
  req.call_id = 1;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE;
  rv.domain = (char *)ROTATION_DOMAIN;
  rv.token_id = tok.info.id;
  req.revoke = &rv;
  assert_int_equal(th_frame_append(&buf, &len, &req), 0);
  req.call_id = 2;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  vr.token = tok.token;
  req.verify = &vr;
  assert_int_equal(th_frame_append(&buf, &len, &req), 0);
  assert_int_equal(th_write_all(fd, buf, len), 0);
  free(buf);
  for (i = 0; i < 2; i++) {
    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &resp), 0);
    assert_int_equal(th_response_code(resp), 0);
    tokend__v1__response__free_unpacked(resp, NULL);
  }
  close(fd);
  c = th_client_connect_ok(t);
  wait_previous_count(c, 0);
  th_expect_verify(c, tok.token, 0, TOKEND_VERIFY_REVOKED);
  tokend_client_close(c);
  th_tokend_stop_ok(t);
  /* And in the store, under the new pepper. */
  restart(t, NULL);
  c = th_client_connect_ok(t);
  th_expect_verify(c, tok.token, 0, TOKEND_VERIFY_REVOKED);
  tokend_client_close(c);
}

/* A second rotation (P1 -> P2) begun before the first (P0 -> P1) was
 * done: tokens re-keyed to P1 move on to P2; one never verified is on P0,
 * which neither pepper file is, and answers UNKNOWN (counted in the log,
 * not in the count of tokens left to move); the audit key sealed under P1
 * is opened and sealed again under P2, so the log still verifies whole. */
static void test_rotation_twice(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char p0[TH_PATH_BYTES], p1[TH_PATH_BYTES], p2[TH_PATH_BYTES];
  tokend_issued_t moved, left;
  tokend_client_t *c;

  assert_int_equal(th_tokend_start(t, NULL), 0);
  c = th_client_connect_ok(t);
  th_client_issue_ok(c, ROTATION_DOMAIN, "moved", 0, &moved);
  th_client_issue_ok(c, ROTATION_DOMAIN, "left", 0, &left);
  tokend_client_close(c);
  th_tokend_stop_ok(t);
  snprintf(p0, sizeof(p0), "%s", t->pepper_path);
  snprintf(p1, sizeof(p1), "%s/pepper.1", t->dir);
  snprintf(p2, sizeof(p2), "%s/pepper.2", t->dir);
  make_pepper(p1);
  make_pepper(p2);

  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s", p1);
  {
    const char *args[] = {"--previous-pepper-file", p0, NULL};
    restart(t, args);
  }
  c = th_client_connect_ok(t);
  th_expect_verify(c, moved.token, 1, TOKEND_VERIFY_VALID);
  wait_previous_count(c, 1);
  tokend_client_close(c);
  th_tokend_stop_ok(t);

  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s", p2);
  th_write_file_ok(t->log_path, "", 0, 0600);
  {
    const char *args[] = {"--previous-pepper-file", p1, NULL};
    restart(t, args);
  }
  assert_true(th_file_contains(t->log_path,
                               "1 tokens were hashed with a "
                               "pepper older than both",
                               44));
  assert_int_equal(th_db_count(t->db_path, "SELECT count(*) FROM audit_events"
                                           " WHERE method = 'PepperRotation'"),
                   2);
  c = th_client_connect_ok(t);
  assert_int_equal(previous_count(c), 1);
  th_expect_verify(c, moved.token, 1, TOKEND_VERIFY_VALID);
  wait_previous_count(c, 0);
  th_expect_verify(c, left.token, 0, TOKEND_VERIFY_UNKNOWN);
  tokend_client_close(c);
  expect_audit_chain_holds(t);
  th_tokend_stop_ok(t);
  assert_int_equal(
      th_db_count(t->db_path, "SELECT max(pepper_gen) FROM tokens"), 2);
}

/* Starts t with args and expects it to refuse, naming why in its log. */
static void expect_refused(th_tokend_t *t, const char *const *args,
                           const char *why) {
  t->no_create_db = 1;
  th_write_file_ok(t->log_path, "", 0, 0600); /* this start's lines only */
  assert_int_equal(th_tokend_spawn(t, args), 0);
  assert_int_not_equal(th_tokend_wait_exit(t, TH_STOP_TIMEOUT_MS), 0);
  if (!th_file_contains(t->log_path, why, strlen(why))) {
    th_tokend_dump_log(t);
    fail_msg("tokend did not say '%s'", why);
  }
}

/* The calls that take a secret without using it, and Roll, during a
 * rotation: Lookup by secret finds a token still on the old pepper (and
 * does not re-key it: not a use), RevokeLeaked finds and revokes one, and
 * the token a Roll makes is on the new pepper (it verifies once the old
 * pepper is gone). */
static void test_rotation_lookup_leaked_and_roll(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  tokend_issued_t tok[3];
  tokend_token_info_t info;
  tokend_rolled_t rolled;
  char old_pepper[TH_PATH_BYTES], new_pepper[TH_PATH_BYTES], sql[160];
  const char *leaked[1];
  tokend_client_t *c;
  uint32_t revoked = 0;
  int found[1] = {0}, i;

  assert_int_equal(th_tokend_start(t, NULL), 0);
  c = th_client_connect_ok(t);
  for (i = 0; i < 3; i++)
    th_client_issue_ok(c, ROTATION_DOMAIN, "before", 0, &tok[i]);
  tokend_client_close(c);
  th_tokend_stop_ok(t);

  snprintf(old_pepper, sizeof(old_pepper), "%s", t->pepper_path);
  snprintf(new_pepper, sizeof(new_pepper), "%s/pepper.new", t->dir);
  make_pepper(new_pepper);
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s", new_pepper);
  {
    const char *args[] = {"--previous-pepper-file", old_pepper, NULL};
    restart(t, args);
  }
  c = th_client_connect_ok(t);
  assert_int_equal(previous_count(c), 3);

  assert_int_equal(
      tokend_client_lookup_secret(c, ROTATION_DOMAIN, tok[0].token, &info), 0);
  assert_string_equal(info.id, tok[0].info.id);
  assert_int_equal(info.last_used_at, 0);

  leaked[0] = tok[1].token;
  assert_int_equal(tokend_client_revoke_leaked(c, leaked, 1,
                                               "https://example.com/paste",
                                               found, &revoked),
                   0);
  assert_int_equal(found[0], 1);
  assert_int_equal(revoked, 1);
  /* Revoked (looked up, not verified: a Verify is a use, and re-keys). */
  assert_int_equal(
      tokend_client_lookup_secret(c, ROTATION_DOMAIN, tok[1].token, &info), 0);
  assert_true(info.revoked_at != 0);

  assert_int_equal(
      tokend_client_roll(c, ROTATION_DOMAIN, tok[2].info.id, 0, &rolled), 0);
  snprintf(sql, sizeof(sql),
           "SELECT count(*) FROM tokens WHERE id = '%s' AND pepper_gen = 1",
           rolled.info.id);
  assert_int_equal(th_db_count(t->db_path, sql), 1);
  /* Nothing above re-keyed a token: a, b and the rolled-away c are still
   * on the old pepper. */
  assert_int_equal(previous_count(c), 3);
  tokend_client_close(c);
  th_tokend_stop_ok(t);

  /* The new pepper alone: the rolled token verifies. */
  restart(t, NULL);
  c = th_client_connect_ok(t);
  th_expect_verify(c, rolled.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  sodium_memzero(rolled.token, sizeof(rolled.token));
  for (i = 0; i < 3; i++)
    tokend_client_wipe(&tok[i]);
}

static void test_rotation_mismatched_peppers_refused(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char old_pepper[TH_PATH_BYTES], new_pepper[TH_PATH_BYTES];
  char other[TH_PATH_BYTES];
  tokend_issued_t tok;
  tokend_client_t *c;

  assert_int_equal(th_tokend_start(t, NULL), 0);
  c = th_client_connect_ok(t);
  th_client_issue_ok(c, ROTATION_DOMAIN, "kept", 0, &tok);
  tokend_client_close(c);
  th_tokend_stop_ok(t);
  snprintf(old_pepper, sizeof(old_pepper), "%s", t->pepper_path);
  snprintf(new_pepper, sizeof(new_pepper), "%s/pepper.new", t->dir);
  snprintf(other, sizeof(other), "%s/pepper.other", t->dir);
  make_pepper(new_pepper);
  make_pepper(other);

  /* A previous pepper that is not the database's. */
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s", new_pepper);
  {
    const char *args[] = {"--previous-pepper-file", other, NULL};
    expect_refused(t, args, "made with neither pepper file");
  }
  /* The same pepper twice. */
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s", old_pepper);
  {
    const char *args[] = {"--previous-pepper-file", old_pepper, NULL};
    expect_refused(t, args, "holds the same pepper");
  }
  /* A new pepper that does not exist yet: never made by tokend. */
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s/pepper.missing", t->dir);
  {
    const char *args[] = {"--previous-pepper-file", old_pepper, NULL};
    expect_refused(t, args, "the new pepper (--pepper-file) is missing");
  }
  assert_false(th_path_exists(t->pepper_path));
  /* The new pepper alone, before any rotation. */
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s", new_pepper);
  expect_refused(t, NULL, "name the old one with --previous-pepper-file");

  /* Nothing was changed: the old pepper still serves the token. */
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s", old_pepper);
  restart(t, NULL);
  c = th_client_connect_ok(t);
  th_expect_verify(c, tok.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);

  /* Once rotated, a previous pepper other than the one rotated from. */
  th_tokend_stop_ok(t);
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s", new_pepper);
  {
    const char *args[] = {"--previous-pepper-file", old_pepper, NULL};
    restart(t, args);
  }
  th_tokend_stop_ok(t);
  {
    const char *args[] = {"--previous-pepper-file", other, NULL};
    expect_refused(t, args, "is not the pepper database");
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_rotation_rekeys_tokens_as_they_verify, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_rotation_revoke_before_rekey_stays_revoked, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_rotation_mismatched_peppers_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_rotation_lookup_leaked_and_roll,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_rotation_twice, th_fixture_setup,
                                      th_fixture_teardown),
  };

  return cmocka_run_group_tests_name("pepper_rotation", tests, NULL, NULL);
}
