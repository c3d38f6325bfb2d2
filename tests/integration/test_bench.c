/* tokend-bench smoke tests: it runs against a real tokend, its CSV has the
 * promised shape, its counts add up (in its output and in tokend's store),
 * and it fails loudly when it cannot run or when answers are wrong. No test
 * here asserts a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"
#include "harness.h"
#include "token.h"
#include "verify_wire.h"

#ifndef TOKEND_BENCH_BIN
#error "TOKEND_BENCH_BIN must name the tokend-bench executable"
#endif

#define BENCH_TIMEOUT_MS 60000
#define CSV_HEADER                                                             \
  "test,conns,pipeline,requests,rps,p50_us,p90_us,p99_us,p999_us,max_us"

static int setup(void **state) { return th_fixture_setup_start(state, NULL); }

/* Runs `tokend-bench -s socket args...` (NULL-terminated). */
static void bench(const char *socket, th_run_result_t *r, ...) {
  const char *const head[] = {TOKEND_BENCH_BIN, "-s", socket, NULL};
  va_list ap;
  int rc;

  va_start(ap, r);
  rc = th_run_va(head, ap, NULL, BENCH_TIMEOUT_MS, r);
  va_end(ap);
  assert_int_equal(rc, 0);
}

typedef struct {
  char test[32];
  unsigned conns, pipeline;
  unsigned long long requests;
  double rps, p50, p90, p99, p999, max;
} csv_row_t;

/* Parses tokend-bench's --csv output: exactly the header, then n rows. */
static void parse_csv(char *out, csv_row_t *rows, size_t n) {
  char *save = NULL, *line;
  size_t i = 0;

  line = strtok_r(out, "\n", &save);
  assert_non_null(line);
  assert_string_equal(line, CSV_HEADER);
  while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
    assert_true(i < n);
    if (sscanf(line, "%31[^,],%u,%u,%llu,%lf,%lf,%lf,%lf,%lf,%lf", rows[i].test,
               &rows[i].conns, &rows[i].pipeline, &rows[i].requests,
               &rows[i].rps, &rows[i].p50, &rows[i].p90, &rows[i].p99,
               &rows[i].p999, &rows[i].max) != 10)
      fail_msg("not a CSV row: '%s'", line);
    i++;
  }
  assert_int_equal(i, n);
}

/* The four tests at -c 3 -P 4, with flag (NULL: none; --keep-watch,
 * --window) added: one CSV row each, and every request sent answered and
 * counted once. */
static void check_counts_add_up(const th_fixture_t *f, const char *flag) {
  static const char *const names[] = {"verify", "issue", "revoke", "mixed"};
  th_run_result_t r;
  csv_row_t rows[4];
  size_t i;

  /* 500 tokens: 300 for revoke, the rest for verify and mixed. */
  bench(f->tokend.socket_path, &r, "-c", "3", "-P", "4", "-n", "300", "-t",
        "verify,issue,revoke,mixed", "--tokens", "500", "--csv", flag, NULL);
  th_expect_exit(&r, 0, "tokend-bench -t verify,issue,revoke,mixed");
  parse_csv(r.out, rows, 4);
  for (i = 0; i < 4; i++) {
    assert_string_equal(rows[i].test, names[i]);
    assert_int_equal(rows[i].conns, 3);
    assert_int_equal(rows[i].pipeline, 4);
    assert_int_equal(rows[i].requests, 300);
    assert_true(rows[i].rps > 0);
    assert_true(rows[i].p50 > 0);
    assert_true(rows[i].p50 <= rows[i].p90);
    assert_true(rows[i].p90 <= rows[i].p99);
    assert_true(rows[i].p99 <= rows[i].p999);
    assert_true(rows[i].p999 <= rows[i].max);
  }
  th_run_result_free(&r);
}

static void test_csv_has_one_row_per_test_and_counts_add_up(void **state) {
  th_fixture_t *f = *state;

  check_counts_add_up(f, NULL); /* waiting as redis-benchmark does */
  check_counts_add_up(f, "--keep-watch");
  check_counts_add_up(f, "--window");
}

/* One page of domain's tokens (include_revoked); counts all and revoked. */
static void list_domain(const th_fixture_t *f, const char *domain, size_t *all,
                        size_t *revoked) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListRequest lr = TOKEND__V1__LIST_REQUEST__INIT;
  Tokend__V1__Response *resp;
  int fd = th_connect(f->tokend.socket_path);
  size_t i;

  assert_true(fd >= 0);
  lr.domain = (char *)domain;
  lr.page_size = 1000;
  lr.include_revoked = 1;
  req.call_id = 1;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST;
  req.list = &lr;
  assert_int_equal(th_send_request(fd, &req), 0);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &resp), 0);
  assert_int_equal(resp->status->code, 0);
  assert_int_equal(resp->result_case, TOKEND__V1__RESPONSE__RESULT_LIST);
  assert_string_equal(resp->list->next_page_token, "");
  *all = resp->list->n_tokens;
  *revoked = 0;
  for (i = 0; i < resp->list->n_tokens; i++)
    if (resp->list->tokens[i]->revoked_at != 0)
      (*revoked)++;
  tokend__v1__response__free_unpacked(resp, NULL);
  close(fd);
}

static void test_issue_and_revoke_counts_match_the_store(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  csv_row_t row;
  size_t all, revoked;

  bench(f->tokend.socket_path, &r, "-c", "3", "-P", "5", "-n", "250", "-t",
        "issue", "--tokens", "0", "--domain", "bench-issue", "--csv", NULL);
  th_expect_exit(&r, 0, "tokend-bench -t issue");
  parse_csv(r.out, &row, 1);
  th_run_result_free(&r);
  list_domain(f, "bench-issue", &all, &revoked);
  assert_int_equal(all, 250);
  assert_int_equal(revoked, 0);

  bench(f->tokend.socket_path, &r, "-c", "2", "-P", "7", "-n", "120", "-t",
        "revoke", "--tokens", "200", "--domain", "bench-revoke", "--csv", NULL);
  th_expect_exit(&r, 0, "tokend-bench -t revoke");
  parse_csv(r.out, &row, 1);
  th_run_result_free(&r);
  list_domain(f, "bench-revoke", &all, &revoked);
  assert_int_equal(all, 200);
  assert_int_equal(revoked, 120);
}

/* revoke-everywhere (issue 13) against one tokend named again by --host:
 * two rows, one Revoke per request, each in the store; a --host that is
 * another tokend (which never heard of the tokens, so never says REVOKED)
 * makes the run fail, naming that host. */
static void test_revoke_everywhere_polls_every_host(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t other;
  th_run_result_t r;
  csv_row_t rows[2];
  size_t all, revoked;

  bench(f->tokend.socket_path, &r, "-n", "50", "-t", "revoke-everywhere",
        "--host", f->tokend.socket_path, "--tokens", "80", "--domain",
        "bench-everywhere", "--csv", NULL);
  th_expect_exit(&r, 0, "tokend-bench -t revoke-everywhere");
  parse_csv(r.out, rows, 2);
  assert_string_equal(rows[0].test, "revoke-returned");
  assert_string_equal(rows[1].test, "revoke-everywhere");
  assert_int_equal(rows[0].requests, 50);
  assert_int_equal(rows[1].requests, 50);
  /* The last host answers after the Revoke did. */
  assert_true(rows[0].p50 <= rows[1].p50);
  assert_true(rows[0].max <= rows[1].max);
  assert_non_null(strstr(r.err, "0 Verify answers VALID after the Revoke"));
  th_run_result_free(&r);
  list_domain(f, "bench-everywhere", &all, &revoked);
  assert_int_equal(all, 80);
  assert_int_equal(revoked, 50);

  assert_int_equal(th_tokend_init(&other), 0);
  assert_int_equal(th_tokend_start(&other, NULL), 0);
  bench(f->tokend.socket_path, &r, "-n", "5", "-t", "revoke-everywhere",
        "--host", other.socket_path, "--tokens", "5", "--timeout-ms", "300",
        "--csv", NULL);
  th_expect_exit(&r, 2, "tokend-bench -t revoke-everywhere, a foreign host");
  assert_non_null(strstr(r.err, other.socket_path));
  assert_non_null(strstr(r.err, "not REVOKED"));
  th_run_result_free(&r);
  assert_int_equal(th_tokend_stop_clean(&other), 0);
  th_tokend_destroy(&other);
}

static void test_duration_bounds_a_run_without_n(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  csv_row_t row;

  /* Paced at 200/s for 0.5 s: about 100 requests, never unbounded. */
  bench(f->tokend.socket_path, &r, "-c", "2", "--rate", "200", "--duration",
        "0.5", "--tokens", "10", "--csv", NULL);
  th_expect_exit(&r, 0, "tokend-bench --duration");
  parse_csv(r.out, &row, 1);
  assert_true(row.requests >= 50 && row.requests <= 150);
  th_run_result_free(&r);
}

static void test_no_tokend_exits_2(void **state) {
  th_fixture_t *f = *state;
  char path[TH_PATH_BYTES];
  th_run_result_t r;

  snprintf(path, sizeof(path), "%s/nobody.sock", f->tokend.dir);
  bench(path, &r, "-c", "1", "-n", "10", "--csv", NULL);
  th_expect_exit(&r, 2, "tokend-bench without a tokend");
  assert_non_null(strstr(r.err, "cannot connect"));
  th_run_result_free(&r);
}

/* echo measures the machine, not tokend: it runs with no tokend at the
 * socket, and its row counts every round trip once. */
static void test_echo_needs_no_tokend_and_counts_add_up(void **state) {
  th_fixture_t *f = *state;
  char path[TH_PATH_BYTES];
  th_run_result_t r;
  csv_row_t row;
  int keep_watch;

  snprintf(path, sizeof(path), "%s/nobody.sock", f->tokend.dir);
  for (keep_watch = 0; keep_watch <= 1; keep_watch++) {
    bench(path, &r, "-c", "1", "-P", "1", "-n", "300", "-t", "echo", "--csv",
          keep_watch ? "--keep-watch" : NULL, NULL);
    th_expect_exit(&r, 0, "tokend-bench -t echo");
    parse_csv(r.out, &row, 1);
    assert_string_equal(row.test, "echo");
    assert_int_equal(row.conns, 1);
    assert_int_equal(row.pipeline, 1);
    assert_int_equal(row.requests, 300);
    assert_true(row.rps > 0);
    assert_true(row.p50 > 0 && row.p50 <= row.p99 && row.p99 <= row.max);
    th_run_result_free(&r);
  }
}

static void test_bad_flags_exit_2(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;

  bench(f->tokend.socket_path, &r, "-t", "verify,frobnicate", NULL);
  th_expect_exit(&r, 2, "unknown test name");
  th_run_result_free(&r);
  bench(f->tokend.socket_path, &r, "--mix", "50:40:20", "-t", "mixed", NULL);
  th_expect_exit(&r, 2, "mix not adding up to 100");
  th_run_result_free(&r);
  bench(f->tokend.socket_path, &r, "-t", "revoke", "-n", "100", "--tokens",
        "10", NULL);
  th_expect_exit(&r, 2, "more revokes than tokens");
  th_run_result_free(&r);
  bench(f->tokend.socket_path, &r, "--settle-ms", "600001", NULL);
  th_expect_exit(&r, 2, "settle time out of range");
  th_run_result_free(&r);
  bench(f->tokend.socket_path, &r, "-t", "warm-up", "--tokens", "0", NULL);
  th_expect_exit(&r, 2, "warm-up without tokens");
  th_run_result_free(&r);
  bench(f->tokend.socket_path, &r, "-t", "echo", "-n", "10", NULL);
  th_expect_exit(&r, 2, "echo with the default 50 connections");
  assert_non_null(strstr(r.err, "-c 1 -P 1 only"));
  th_run_result_free(&r);
  bench(f->tokend.socket_path, &r, "-t", "echo", "-c", "1", "-P", "2", "-n",
        "10", NULL);
  th_expect_exit(&r, 2, "echo pipelined");
  th_run_result_free(&r);
}

/* ---- a fake tokend that gives chosen answers ---- */

#define FAKE_MAX_TOKENS 64

typedef enum {
  /* Every Verify: valid=false, MALFORMED, which is never right for the
   * well-formed tokens tokend-bench sends. */
  FAKE_MALFORMED = 0,
  /* The right answer: valid with the token's id and domain for a token it
   * issued, UNKNOWN for any other. */
  FAKE_RIGHT,
  /* valid, but with the id of another token it issued. */
  FAKE_OTHER_ID,
  /* valid with the right id, but another domain. */
  FAKE_OTHER_DOMAIN,
  /* valid with the right id followed by a NUL byte: a C string compare
   * would not see the difference. */
  FAKE_ID_NUL_SUFFIX,
  /* status UNAVAILABLE, "fake overload", and no result. */
  FAKE_UNAVAILABLE,
  /* The right answer, to a call_id that is not in flight. */
  FAKE_STRAY_CALL_ID,
  /* Issues answered with an OK Verify result (UNKNOWN). */
  FAKE_VERIFY_FOR_ISSUE
} fake_answer_t;

typedef struct {
  int listen_fd;
  fake_answer_t answer;
  /* Leave out the OK status: still a valid Response, but not in the one
   * shape tokend-bench reads without protobuf-c. */
  int omit_status;
  size_t answered; /* Verifies */
  size_t n_issued;
  size_t verified[FAKE_MAX_TOKENS]; /* Verifies of each issued token */
  char tokens[FAKE_MAX_TOKENS][TOKEND_TOKEN_BYTES];
  char ids[FAKE_MAX_TOKENS][TOKEND_TOKEN_ID_BYTES];
  char domain[TOKEND_DOMAIN_BYTES];
} fake_t;

/* An Issue: a new well-formed token and id, remembered for the Verifies. */
static int fake_issue(fake_t *fk, const Tokend__V1__IssueRequest *ir,
                      Tokend__V1__Response *resp, Tokend__V1__IssueResponse *is,
                      Tokend__V1__TokenInfo *info) {
  char *token, *id;

  if (fk->n_issued == FAKE_MAX_TOKENS)
    return -1;
  token = fk->tokens[fk->n_issued];
  id = fk->ids[fk->n_issued];
  if (token_generate(TOKEND_PREFIX_DEFAULT, token) != 0)
    return -1;
  token_id_generate(id);
  fk->n_issued++;
  snprintf(fk->domain, sizeof(fk->domain), "%s", ir->domain);
  info->id = id;
  info->domain = fk->domain;
  is->token = token;
  is->info = info;
  resp->result_case = TOKEND__V1__RESPONSE__RESULT_ISSUE;
  resp->issue = is;
  return 0;
}

/* Writes the frame of fk's answer to a Verify of token with call_id into
 * out (at least 4096 bytes); returns its length. */
static size_t fake_verify(fake_t *fk, uint64_t call_id, const char *token,
                          uint8_t *out) {
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status st = TOKEND__V1__STATUS__INIT;
  Tokend__V1__VerifyResponse vr = TOKEND__V1__VERIFY_RESPONSE__INIT;
  vw_response_t w;
  size_t i, n;

  for (i = 0; i < fk->n_issued && strcmp(fk->tokens[i], token) != 0; i++)
    ;
  if (i < fk->n_issued)
    fk->verified[i]++;
  resp.call_id = call_id;
  resp.status = fk->omit_status ? NULL : &st;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_VERIFY;
  resp.verify = &vr;
  if (fk->answer == FAKE_MALFORMED) {
    vr.reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED;
  } else if (i == fk->n_issued) {
    vr.reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN;
  } else {
    vr.valid = 1;
    vr.token_id =
        fk->ids[fk->answer == FAKE_OTHER_ID ? (i + 1) % fk->n_issued : i];
    vr.domain = fk->answer == FAKE_OTHER_DOMAIN ? "not-the-domain" : fk->domain;
  }
  if (fk->answer == FAKE_UNAVAILABLE) {
    st.code = 14;
    st.message = "fake overload";
    resp.status = &st;
    resp.result_case = TOKEND__V1__RESPONSE__RESULT__NOT_SET;
    resp.verify = NULL;
  }
  if (fk->answer == FAKE_STRAY_CALL_ID)
    resp.call_id = call_id + (1u << 16); /* the slot's next sequence */
  if (fk->answer == FAKE_ID_NUL_SUFFIX) {
    /* protobuf-c strings end at a NUL: write this one by length. */
    memset(&w, 0, sizeof(w));
    w.call_id = call_id;
    w.valid = 1;
    w.token_id.p = vr.token_id;
    w.token_id.len = strlen(vr.token_id) + 1;
    w.domain.p = vr.domain;
    w.domain.len = strlen(vr.domain);
    n = vw_response_encode(out + TOKEND_FRAME_HEADER_BYTES, &w);
  } else {
    n = tokend__v1__response__pack(&resp, out + TOKEND_FRAME_HEADER_BYTES);
  }
  frame_encode_header(out, (uint32_t)n);
  return TOKEND_FRAME_HEADER_BYTES + n;
}

/* Serves one connection: Issues get new tokens, Verifies fk->answer. */
static void *fake_serve(void *arg) {
  fake_t *fk = arg;
  uint8_t hdr[TOKEND_FRAME_HEADER_BYTES], body[4096], out[4096];
  Tokend__V1__Request *req;
  Tokend__V1__Response resp;
  Tokend__V1__Status st;
  Tokend__V1__IssueResponse is;
  Tokend__V1__TokenInfo info;
  struct pollfd pfd = {fk->listen_fd, POLLIN, 0};
  uint32_t len;
  size_t n;
  int fd, ok;

  /* Bounded: if tokend-bench never connects, the test fails, not hangs. */
  if (poll(&pfd, 1, BENCH_TIMEOUT_MS) != 1 ||
      (fd = accept(fk->listen_fd, NULL, NULL)) < 0)
    return NULL;
  while (th_read_all(fd, hdr, sizeof(hdr), BENCH_TIMEOUT_MS) == 0) {
    len = ((uint32_t)hdr[1] << 24) | ((uint32_t)hdr[2] << 16) |
          ((uint32_t)hdr[3] << 8) | hdr[4];
    if (len > sizeof(body) || th_read_all(fd, body, len, BENCH_TIMEOUT_MS) != 0)
      break;
    req = tokend__v1__request__unpack(NULL, len, body);
    if (req == NULL)
      break;
    ok = 1;
    if (req->method_case == TOKEND__V1__REQUEST__METHOD_VERIFY) {
      n = fake_verify(fk, req->call_id, req->verify->token, out);
      fk->answered++;
    } else if (fk->answer == FAKE_VERIFY_FOR_ISSUE) {
      n = fake_verify(fk, req->call_id, "never issued", out);
    } else {
      tokend__v1__response__init(&resp);
      tokend__v1__status__init(&st);
      tokend__v1__issue_response__init(&is);
      tokend__v1__token_info__init(&info);
      resp.call_id = req->call_id;
      resp.status = &st;
      ok = req->method_case == TOKEND__V1__REQUEST__METHOD_ISSUE &&
           fake_issue(fk, req->issue, &resp, &is, &info) == 0;
      n = tokend__v1__response__pack(&resp, out + TOKEND_FRAME_HEADER_BYTES);
      frame_encode_header(out, (uint32_t)n);
      n += TOKEND_FRAME_HEADER_BYTES;
    }
    tokend__v1__request__free_unpacked(req, NULL);
    if (!ok || th_write_all(fd, out, n) != 0)
      break;
  }
  close(fd);
  return NULL;
}

/* Runs `tokend-bench -s <fake> -c 1 args...` (NULL-terminated) against a
 * fake tokend answering as fk says (its listen_fd is set here). */
static void bench_fake(const th_fixture_t *f, fake_t *fk, th_run_result_t *r,
                       ...) {
  struct sockaddr_un sa;
  pthread_t thread;
  char path[TH_PATH_BYTES];
  const char *head[] = {TOKEND_BENCH_BIN, "-s", path, "-c", "1", NULL};
  va_list ap;
  int rc;

  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(path, sizeof(path), "%s/fake.sock", f->tokend.dir);
  assert_true(strlen(path) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, path, strlen(path) + 1);
  unlink(path);
  fk->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fk->listen_fd >= 0);
  assert_int_equal(bind(fk->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(fk->listen_fd, 4), 0);
  assert_int_equal(pthread_create(&thread, NULL, fake_serve, fk), 0);
  va_start(ap, r);
  rc = th_run_va(head, ap, NULL, BENCH_TIMEOUT_MS, r);
  va_end(ap);
  assert_int_equal(pthread_join(thread, NULL), 0);
  close(fk->listen_fd);
  assert_int_equal(rc, 0);
}

static void test_wrong_answers_are_counted_and_exit_1(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  int omit;

  /* No --tokens: every Verify is of a never-issued token, so each must say
   * UNKNOWN; the fake says MALFORMED, with and without the OK status (the
   * two ways tokend-bench reads an answer). */
  for (omit = 0; omit <= 1; omit++) {
    fake_t fk = {.answer = FAKE_MALFORMED, .omit_status = omit};

    bench_fake(f, &fk, &r, "-P", "3", "-n", "10", "--tokens", "0", "--csv",
               NULL);
    th_expect_exit(&r, 1, "tokend-bench against a fake giving wrong answers");
    assert_int_equal(fk.answered, 10);
    assert_non_null(strstr(r.err, "10 unexpected answers"));
    assert_non_null(strstr(r.err, "reason=MALFORMED"));
    th_run_result_free(&r);
  }
}

static void test_right_answers_pass_with_or_without_ok_status(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  csv_row_t row;
  int omit;

  /* Half of the Verifies are of issued tokens (valid, id, domain), half of
   * never-issued ones (UNKNOWN). */
  for (omit = 0; omit <= 1; omit++) {
    fake_t fk = {.answer = FAKE_RIGHT, .omit_status = omit};

    bench_fake(f, &fk, &r, "-P", "4", "-n", "40", "--tokens", "5",
               "--invalid-pct", "50", "--csv", NULL);
    th_expect_exit(&r, 0, "tokend-bench against a fake giving right answers");
    assert_int_equal(fk.n_issued, 5);
    assert_int_equal(fk.answered, 40);
    parse_csv(r.out, &row, 1);
    assert_int_equal(row.requests, 40);
    th_run_result_free(&r);
  }
}

/* The warm-up test verifies every issued token exactly once, in order,
 * whatever -n, and checks those answers like any other. */
static void test_warm_up_verifies_each_token_once(void **state) {
  th_fixture_t *f = *state;
  fake_t fk = {.answer = FAKE_RIGHT};
  fake_t wrong = {.answer = FAKE_OTHER_ID};
  th_run_result_t r;
  csv_row_t rows[2];
  size_t i;

  /* The Verifies after it are all of never-issued tokens. */
  bench_fake(f, &fk, &r, "-P", "4", "-n", "5", "--tokens", "7", "--invalid-pct",
             "100", "-t", "warm-up,verify", "--settle-ms", "10", "--csv", NULL);
  th_expect_exit(&r, 0, "tokend-bench -t warm-up against right answers");
  assert_int_equal(fk.n_issued, 7);
  for (i = 0; i < fk.n_issued; i++)
    assert_int_equal(fk.verified[i], 1);
  assert_int_equal(fk.answered, 7 + 5);
  parse_csv(r.out, rows, 2);
  assert_string_equal(rows[0].test, "warm-up");
  assert_int_equal(rows[0].requests, 7);
  assert_int_equal(rows[1].requests, 5);
  th_run_result_free(&r);

  bench_fake(f, &wrong, &r, "--tokens", "3", "-t", "warm-up", NULL);
  th_expect_exit(&r, 1, "tokend-bench -t warm-up against a wrong id");
  assert_non_null(strstr(r.err, "3 unexpected answers"));
  th_run_result_free(&r);
}

static void test_valid_with_wrong_id_or_domain_is_counted(void **state) {
  static const struct {
    fake_answer_t answer;
    int omit_status;
  } cases[] = {{FAKE_OTHER_ID, 0},
               {FAKE_OTHER_ID, 1},
               {FAKE_OTHER_DOMAIN, 0},
               {FAKE_OTHER_DOMAIN, 1},
               {FAKE_ID_NUL_SUFFIX, 0}};
  th_fixture_t *f = *state;
  th_run_result_t r;
  size_t i;

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    fake_t fk = {.answer = cases[i].answer,
                 .omit_status = cases[i].omit_status};

    /* Every Verify is of an issued token, and every answer is wrong. */
    bench_fake(f, &fk, &r, "-P", "4", "-n", "20", "--tokens", "3",
               "--invalid-pct", "0", "--csv", NULL);
    th_expect_exit(&r, 1, "tokend-bench against a fake with wrong ids");
    assert_int_equal(fk.answered, 20);
    assert_non_null(strstr(r.err, "20 unexpected answers"));
    assert_non_null(strstr(r.err, "verify of an active token tok_"));
    assert_non_null(strstr(r.err, "got valid=1 reason=UNSPECIFIED id=tok_"));
    th_run_result_free(&r);
  }
}

static void test_error_status_is_counted_with_its_message(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  fake_t fk = {.answer = FAKE_UNAVAILABLE};

  bench_fake(f, &fk, &r, "-P", "2", "-n", "6", "--tokens", "2", "--csv", NULL);
  th_expect_exit(&r, 1, "tokend-bench against a fake that is overloaded");
  assert_int_equal(fk.answered, 6);
  assert_non_null(strstr(r.err, "6 unexpected answers; the first: verify: "
                                "verify: status UNAVAILABLE: fake overload"));
  th_run_result_free(&r);
}

static void test_answer_to_a_call_not_in_flight_exits_2(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  fake_t fk = {.answer = FAKE_STRAY_CALL_ID};

  bench_fake(f, &fk, &r, "-P", "2", "-n", "6", "--tokens", "2", "--csv", NULL);
  th_expect_exit(&r, 2, "tokend-bench against a fake with stray call_ids");
  assert_true(fk.answered >= 1);
  assert_non_null(strstr(r.err, "which is not in flight (status 0: )"));
  th_run_result_free(&r);
}

static void test_verify_answer_to_an_issue_is_counted(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  fake_t fk = {.answer = FAKE_VERIFY_FOR_ISSUE};

  /* The --tokens phase needs every Issue to succeed, so this one exits 2. */
  bench_fake(f, &fk, &r, "-P", "2", "-n", "6", "--tokens", "3", "--csv", NULL);
  th_expect_exit(&r, 2, "tokend-bench against a fake answering Issues wrong");
  assert_int_equal(fk.answered, 0);
  assert_non_null(strstr(r.err, "setup: only 0 of 3 Issues succeeded; first "
                                "failure: issue: status OK but result case "
                                "4"));
  th_run_result_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_csv_has_one_row_per_test_and_counts_add_up, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_issue_and_revoke_counts_match_the_store, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_revoke_everywhere_polls_every_host,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_duration_bounds_a_run_without_n,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_no_tokend_exits_2, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_echo_needs_no_tokend_and_counts_add_up, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_bad_flags_exit_2, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_wrong_answers_are_counted_and_exit_1,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_right_answers_pass_with_or_without_ok_status, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_warm_up_verifies_each_token_once,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_valid_with_wrong_id_or_domain_is_counted, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_error_status_is_counted_with_its_message, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_answer_to_a_call_not_in_flight_exits_2, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_verify_answer_to_an_issue_is_counted,
                                      setup, th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
