/* The wire protocol, spoken over raw sockets to a real tokend: pipelining,
 * split frames, the frame-size limit, bad frames, empty requests, peers
 * that hang up with calls in flight, and a loop that sleeps when idle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "harness.h"
#include "token.h"
#include "tokend_error.h"

#define DOMAIN "proto.example"
#define PIPELINED_CALLS 100
#define SMALL_MAX_FRAME 256

/* Sends req on fd and reads its answer, which must carry call_id. */
static Tokend__V1__Response *call(int fd, const Tokend__V1__Request *req) {
  Tokend__V1__Response *r = NULL;
  int rc;

  assert_int_equal(th_send_request(fd, req), 0);
  rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);
  if (rc != 0)
    fail_msg("no response to call %llu: %d", (unsigned long long)req->call_id,
             rc);
  assert_int_equal(r->call_id, req->call_id);
  return r;
}

/* Verifies token on a new connection: proof that tokend still serves. */
static void expect_serving(const th_fixture_t *f, const char *token) {
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  th_expect_valid_raw(fd, 4242, token);
  close(fd);
}

/* Every test gets f->token, a valid token issued in setup. */
static int setup(void **state) {
  return th_fixture_setup_token(state, NULL, DOMAIN, "raw");
}

static int setup_small_frames(void **state) {
  static const char *const args[] = {"--max-frame-bytes", "256", NULL};

  return th_fixture_setup_token(state, args, DOMAIN, "raw");
}

static void test_pipelined_calls_all_answered_once(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  int seen[PIPELINED_CALLS] = {0};
  char issued[PIPELINED_CALLS][TOKEND_TOKEN_BYTES];
  uint8_t *buf = NULL;
  size_t len = 0, i, j;
  int fd = th_connect(f->tokend.socket_path);
  const uint64_t base = 1000;

  assert_true(fd >= 0);
  vr.token = f->token;
  ir.domain = DOMAIN;
  ir.label = "pipelined";
  /* Even calls verify, odd calls issue; all in one buffer, one write. */
  for (i = 0; i < PIPELINED_CALLS; i++) {
    req.call_id = base + i;
    if (i % 2 == 0) {
      req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
      req.verify = &vr;
    } else {
      req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
      req.issue = &ir;
    }
    assert_int_equal(th_frame_append(&buf, &len, &req), 0);
  }
  assert_int_equal(th_write_all(fd, buf, len), 0);
  free(buf);

  memset(issued, 0, sizeof(issued));
  for (i = 0; i < PIPELINED_CALLS; i++) {
    int rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);
    size_t k;

    if (rc != 0)
      fail_msg("only %zu of %d pipelined calls answered (%d)", i,
               PIPELINED_CALLS, rc);
    if (r->call_id < base || r->call_id >= base + PIPELINED_CALLS)
      fail_msg("response with call_id %llu, which was never sent",
               (unsigned long long)r->call_id);
    k = (size_t)(r->call_id - base);
    if (seen[k]++)
      fail_msg("call_id %llu answered twice", (unsigned long long)r->call_id);
    if (th_response_code(r) != 0)
      fail_msg("call %zu failed: %d %s", k, th_response_code(r),
               r->status->message);
    if (k % 2 == 0) {
      assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_VERIFY);
      assert_true(r->verify->valid);
    } else {
      assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_ISSUE);
      assert_true(strlen(r->issue->token) < TOKEND_TOKEN_BYTES);
      strcpy(issued[k], r->issue->token);
    }
    tokend__v1__response__free_unpacked(r, NULL);
  }
  /* Nothing more comes. */
  assert_int_equal(th_recv_response(fd, 200, &r), TH_RECV_TIMEOUT);
  /* Every Issue made its own token, and each of them verifies. */
  for (i = 1; i < PIPELINED_CALLS; i += 2) {
    Tokend__V1__Request v = TOKEND__V1__REQUEST__INIT;
    Tokend__V1__VerifyRequest vv = TOKEND__V1__VERIFY_REQUEST__INIT;

    for (j = i + 2; j < PIPELINED_CALLS; j += 2)
      assert_string_not_equal(issued[i], issued[j]);
    vv.token = issued[i];
    v.call_id = 5000 + i;
    v.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
    v.verify = &vv;
    r = call(fd, &v);
    assert_int_equal(th_response_code(r), 0);
    assert_true(r->verify->valid);
    tokend__v1__response__free_unpacked(r, NULL);
  }
  close(fd);
}

static void test_frames_split_into_single_bytes_answered(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  uint8_t *f1, *f2, *both;
  size_t l1, l2, i;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  vr.token = f->token;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  req.call_id = 11;
  f1 = th_frame_request(&req, &l1);
  req.call_id = 12;
  f2 = th_frame_request(&req, &l2);
  assert_non_null(f1);
  assert_non_null(f2);
  both = malloc(l1 + l2);
  assert_non_null(both);
  memcpy(both, f1, l1);
  memcpy(both + l1, f2, l2);
  /* Two frames, one byte per write, with a pause so that each byte arrives
   * on its own (including across the boundary between the frames). */
  for (i = 0; i < l1 + l2; i++) {
    assert_int_equal(th_write_all(fd, both + i, 1), 0);
    th_sleep_ms(1);
  }
  for (i = 0; i < 2; i++) {
    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
    assert_int_equal(r->call_id, 11 + i);
    assert_int_equal(th_response_code(r), 0);
    assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_VERIFY);
    assert_true(r->verify->valid);
    tokend__v1__response__free_unpacked(r, NULL);
  }
  free(both);
  free(f1);
  free(f2);
  close(fd);
}

static void send_header(int fd, uint8_t flag, uint32_t len) {
  uint8_t hdr[TOKEND_FRAME_HEADER_BYTES];

  frame_encode_header(hdr, len);
  hdr[0] = flag;
  assert_int_equal(th_write_all(fd, hdr, sizeof(hdr)), 0);
}

static void test_oversized_length_resource_exhausted_then_close(void **state) {
  th_fixture_t *f = *state;
  int bystander = th_connect(f->tokend.socket_path);
  int fd = th_connect(f->tokend.socket_path);

  assert_true(bystander >= 0);
  assert_true(fd >= 0);
  /* Only the header: tokend must refuse on the length alone, without
   * waiting for (or allocating) a body of that size. */
  send_header(fd, 0, TOKEND_MAX_FRAME_BYTES_DEFAULT + 1);
  th_expect_error_then_eof(fd, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  close(fd);

  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  send_header(fd, 0, UINT32_MAX);
  th_expect_error_then_eof(fd, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  close(fd);

  /* A connection that was open all along, and a new one, still work. */
  {
    Tokend__V1__Response *r = NULL;

    assert_int_equal(th_send_verify(bystander, 77, f->token), 0);
    assert_int_equal(th_recv_response(bystander, TH_IO_TIMEOUT_MS, &r), 0);
    assert_int_equal(r->call_id, 77);
    assert_true(r->verify->valid);
    tokend__v1__response__free_unpacked(r, NULL);
  }
  close(bystander);
  expect_serving(f, f->token);
}

static void test_bad_flag_invalid_argument_then_close(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  uint8_t *frame;
  size_t len;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  vr.token = f->token;
  req.call_id = 5;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  frame = th_frame_request(&req, &len);
  assert_non_null(frame);
  /* A well-formed request that claims to be compressed. */
  frame[0] = 1;
  assert_int_equal(th_write_all(fd, frame, len), 0);
  free(frame);
  th_expect_error_then_eof(fd, TOKEND_GRPC_INVALID_ARGUMENT);
  close(fd);
  expect_serving(f, f->token);
}

static void test_garbage_protobuf_invalid_argument_then_close(void **state) {
  th_fixture_t *f = *state;
  /* A varint that never ends: no protobuf decoder accepts it. */
  static const uint8_t garbage[] = {0,    0,    0,    0,    6,   0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff};
  /* Field 1 (call_id) as a length-delimited string: wrong wire type. */
  static const uint8_t wrong_type[] = {0, 0, 0, 0, 3, 0x0a, 0x01, 'x'};
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, garbage, sizeof(garbage)), 0);
  th_expect_error_then_eof(fd, TOKEND_GRPC_INVALID_ARGUMENT);
  close(fd);

  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, wrong_type, sizeof(wrong_type)), 0);
  th_expect_error_then_eof(fd, TOKEND_GRPC_INVALID_ARGUMENT);
  close(fd);
  expect_serving(f, f->token);
}

/* protobuf-c cuts decoded strings at a NUL byte; tokend must notice rather
 * than store or accept a silently shortened value. */
static void test_string_with_nul_byte_rejected(void **state) {
  th_fixture_t *f = *state;
  /* Request{call_id 9, issue{domain "a", label "ab\0cd"}}, hand-encoded. */
  static const uint8_t issue_body[] = {0x08, 0x09, 0x12, 0x0a, 0x0a, 0x01, 'a',
                                       0x12, 0x05, 'a',  'b',  0x00, 'c',  'd'};
  uint8_t frame[TOKEND_FRAME_HEADER_BYTES + 128];
  size_t tlen = strlen(f->token), n;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListRequest lr = TOKEND__V1__LIST_REQUEST__INIT;
  Tokend__V1__Response *r;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  frame_encode_header(frame, sizeof(issue_body));
  memcpy(frame + TOKEND_FRAME_HEADER_BYTES, issue_body, sizeof(issue_body));
  assert_int_equal(
      th_write_all(fd, frame, TOKEND_FRAME_HEADER_BYTES + sizeof(issue_body)),
      0);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
  assert_int_equal(r->call_id, 9);
  assert_int_equal(th_response_code(r), TOKEND_GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(r->status->message, "label"));
  tokend__v1__response__free_unpacked(r, NULL);

  /* Request{call_id 10, verify{token "<valid token>\0x"}}: the prefix
   * before the NUL is a valid token, the string sent is not. */
  assert_true(tlen + 2 < 120);
  n = 0;
  frame[TOKEND_FRAME_HEADER_BYTES + n++] = 0x08;
  frame[TOKEND_FRAME_HEADER_BYTES + n++] = 10;
  frame[TOKEND_FRAME_HEADER_BYTES + n++] = 0x1a;
  frame[TOKEND_FRAME_HEADER_BYTES + n++] = (uint8_t)(tlen + 4);
  frame[TOKEND_FRAME_HEADER_BYTES + n++] = 0x0a;
  frame[TOKEND_FRAME_HEADER_BYTES + n++] = (uint8_t)(tlen + 2);
  memcpy(frame + TOKEND_FRAME_HEADER_BYTES + n, f->token, tlen);
  n += tlen;
  frame[TOKEND_FRAME_HEADER_BYTES + n++] = 0x00;
  frame[TOKEND_FRAME_HEADER_BYTES + n++] = 'x';
  frame_encode_header(frame, (uint32_t)n);
  assert_int_equal(th_write_all(fd, frame, TOKEND_FRAME_HEADER_BYTES + n), 0);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
  assert_int_equal(r->call_id, 10);
  assert_int_equal(th_response_code(r), 0);
  assert_false(r->verify->valid);
  assert_int_equal(r->verify->reason,
                   TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED);
  tokend__v1__response__free_unpacked(r, NULL);

  /* Nothing was stored for domain "a". */
  lr.domain = "a";
  lr.include_revoked = 1;
  req.call_id = 11;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST;
  req.list = &lr;
  r = call(fd, &req);
  assert_int_equal(th_response_code(r), 0);
  assert_int_equal(r->list->n_tokens, 0);
  tokend__v1__response__free_unpacked(r, NULL);
  close(fd);
}

/* The ways a Verify is put on the wire below: tokend decodes the canonical
 * one by hand (verify_wire) and the others with protobuf-c, and must answer
 * all of them the same. */
enum { SHAPE_CANONICAL, SHAPE_CALL_ID_LAST, SHAPE_UNKNOWN_FIELD, SHAPES };

static size_t verify_body(uint8_t *out, int shape, uint64_t call_id,
                          const char *tok, size_t len) {
  size_t n = 0;

  assert_true(call_id < 128 && len < 120);
  if (shape != SHAPE_CALL_ID_LAST) {
    out[n++] = 0x08; /* call_id */
    out[n++] = (uint8_t)call_id;
  }
  out[n++] = 0x1a; /* verify */
  out[n++] = (uint8_t)(len + 2);
  out[n++] = 0x0a; /* token */
  out[n++] = (uint8_t)len;
  memcpy(out + n, tok, len);
  n += len;
  if (shape == SHAPE_CALL_ID_LAST) {
    out[n++] = 0x08;
    out[n++] = (uint8_t)call_id;
  }
  if (shape == SHAPE_UNKNOWN_FIELD) {
    out[n++] = 0x70; /* field 14, varint: unknown to tokend.v1.Request */
    out[n++] = 0x01;
  }
  return n;
}

/* Verifies tok[0..len) in every shape on fd; each answer must be OK with
 * exactly valid and reason (and the fixture token's id when known). */
static void expect_verify_every_shape(int fd, const char *tok, size_t len,
                                      int valid, int reason,
                                      const char *token_id) {
  uint8_t frame[TOKEND_FRAME_HEADER_BYTES + 160];
  Tokend__V1__Response *r;
  int shape;
  size_t n;

  for (shape = 0; shape < SHAPES; shape++) {
    n = verify_body(frame + TOKEND_FRAME_HEADER_BYTES, shape,
                    (uint64_t)(20 + shape), tok, len);
    frame_encode_header(frame, (uint32_t)n);
    assert_int_equal(th_write_all(fd, frame, TOKEND_FRAME_HEADER_BYTES + n), 0);
    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
    assert_int_equal(r->call_id, 20 + shape);
    assert_int_equal(th_response_code(r), 0);
    assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_VERIFY);
    if (r->verify->valid != valid || (int)r->verify->reason != reason)
      fail_msg("shape %d: valid %d reason %d, expected %d %d", shape,
               r->verify->valid, r->verify->reason, valid, reason);
    assert_string_equal(r->verify->token_id, token_id);
    tokend__v1__response__free_unpacked(r, NULL);
  }
}

/* Once a token has verified, tokend finds it again by a keyed tag of the
 * exact bytes sent. Anything but those exact bytes must still get the full
 * check, and revoking must still win, however the request is encoded. */
static void test_verify_exact_bytes_any_encoding(void **state) {
  th_fixture_t *f = *state;
  char tok[TOKEND_TOKEN_BYTES + 2], never[TOKEND_TOKEN_BYTES];
  size_t len = strlen(f->token);
  tokend_verify_result_t v;
  char id[TOKEND_TOKEN_ID_BYTES];
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  f->client = th_client_connect_ok(&f->tokend);
  th_client_verify_ok(f->client, f->token, &v);
  assert_true(v.valid);
  snprintf(id, sizeof(id), "%s", v.token_id);
  expect_verify_every_shape(fd, f->token, len, 1,
                            TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID,
                            id);

  /* Near misses of the remembered token. */
  memcpy(tok, f->token, len + 1);
  tok[len - 1] = tok[len - 1] == 'A' ? 'B' : 'A'; /* checksum now wrong */
  expect_verify_every_shape(
      fd, tok, len, 0, TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED,
      "");
  memcpy(tok, f->token, len + 1);
  tok[len] = '\0'; /* one byte more: the token, then a NUL */
  expect_verify_every_shape(
      fd, tok, len + 1, 0, TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED,
      "");
  expect_verify_every_shape(
      fd, f->token, len - 1, 0,
      TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED, "");
  assert_int_equal(token_generate(TOKEND_PREFIX_DEFAULT, never), 0);
  expect_verify_every_shape(fd, never, strlen(never), 0,
                            TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN,
                            "");
  expect_verify_every_shape(fd, f->token, len, 1,
                            TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID,
                            id);

  assert_int_equal(tokend_client_revoke(f->client, DOMAIN, id, NULL, NULL), 0);
  expect_verify_every_shape(fd, f->token, len, 0,
                            TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED,
                            id);
  close(fd);
}

/* Verifies are answered in batches after each read (dispatch.c); answers
 * still leave in request order on a connection, also around calls answered
 * at once (WhoAmI, an error), and a peer that half-closes after pipelining
 * gets every answer before the EOF. */
#define ORDER_CALLS 260
#define ORDER_VERIFIES_FIRST 200 /* more than a batch holds (64) */

static void test_answers_in_request_order_then_eof(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__WhoAmIRequest wr = TOKEND__V1__WHO_AM_IREQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  uint8_t *buf = NULL, byte;
  size_t len = 0, i;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  vr.token = f->token;
  for (i = 0; i < ORDER_CALLS; i++) {
    req.call_id = 100 + i;
    if (i >= ORDER_VERIFIES_FIRST && i % 3 == 1) {
      req.method_case = TOKEND__V1__REQUEST__METHOD_WHO_AM_I;
      req.who_am_i = &wr;
    } else if (i >= ORDER_VERIFIES_FIRST && i % 10 == 5) {
      req.method_case = TOKEND__V1__REQUEST__METHOD__NOT_SET; /* error */
    } else {
      req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
      req.verify = &vr;
    }
    assert_int_equal(th_frame_append(&buf, &len, &req), 0);
  }
  assert_int_equal(th_write_all(fd, buf, len), 0);
  free(buf);
  assert_int_equal(shutdown(fd, SHUT_WR), 0);
  for (i = 0; i < ORDER_CALLS; i++) {
    if (th_recv_response(fd, TH_IO_TIMEOUT_MS, &r) != 0)
      fail_msg("only %zu of %d answers before EOF", i, ORDER_CALLS);
    if (r->call_id != 100 + i)
      fail_msg("answer %zu has call_id %llu, want %zu", i,
               (unsigned long long)r->call_id, 100 + i);
    if (i >= ORDER_VERIFIES_FIRST && i % 3 == 1)
      assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_WHO_AM_I);
    else if (i >= ORDER_VERIFIES_FIRST && i % 10 == 5)
      assert_int_equal(th_response_code(r), TOKEND_GRPC_UNIMPLEMENTED);
    else
      assert_true(r->verify->valid);
    tokend__v1__response__free_unpacked(r, NULL);
  }
  assert_int_equal(read(fd, &byte, 1), 0); /* then EOF */
  close(fd);
}

static void test_empty_request_unimplemented_zero_length_closes(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  static const uint8_t empty_body[] = {0, 0, 0, 0, 0};
  Tokend__V1__Response *r;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  req.call_id = 7;
  r = call(fd, &req);
  assert_int_equal(th_response_code(r), TOKEND_GRPC_UNIMPLEMENTED);
  assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT__NOT_SET);
  tokend__v1__response__free_unpacked(r, NULL);

  /* The same connection still answers. */
  vr.token = f->token;
  req.call_id = 8;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  r = call(fd, &req);
  assert_int_equal(th_response_code(r), 0);
  assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_VERIFY);
  assert_true(r->verify->valid);
  tokend__v1__response__free_unpacked(r, NULL);
  close(fd);

  /* A zero-length body is an empty Request: call_id 0, refused. */
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, empty_body, sizeof(empty_body)), 0);
  th_expect_error_then_eof(fd, TOKEND_GRPC_INVALID_ARGUMENT);
  close(fd);
}

/* Refuses req (whose call_id is 0) after a Verify pipelined before it:
 * the Verify is answered, then INVALID_ARGUMENT on call_id 0 naming
 * call_id, then the connection closes. */
static void expect_call_id_zero_refused(th_fixture_t *f,
                                        Tokend__V1__Request *req) {
  Tokend__V1__Request first = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  uint8_t *buf = NULL;
  size_t len = 0;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  vr.token = f->token;
  first.call_id = 1;
  first.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  first.verify = &vr;
  assert_int_equal(th_frame_append(&buf, &len, &first), 0);
  assert_int_equal(th_frame_append(&buf, &len, req), 0);
  assert_int_equal(th_write_all(fd, buf, len), 0);
  free(buf);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
  assert_int_equal(r->call_id, 1);
  assert_true(r->verify != NULL && r->verify->valid);
  tokend__v1__response__free_unpacked(r, NULL);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
  assert_int_equal(r->call_id, 0);
  assert_int_equal(th_response_code(r), TOKEND_GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(r->status->message, "call_id 0 is reserved"));
  assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT__NOT_SET);
  tokend__v1__response__free_unpacked(r, NULL);
  if (th_wait_eof(fd, TH_IO_TIMEOUT_MS) != 1)
    fail_msg("tokend did not close the connection after call_id 0");
  close(fd);
}

/* call_id 0 is reserved for connection-level errors: a request on it is
 * refused, on the hand-decoded Verify path and on protobuf-c's alike. */
static void test_call_id_zero_refused_then_close(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__WhoAmIRequest wr = TOKEND__V1__WHO_AM_IREQUEST__INIT;

  /* A plain Verify: the hand-written decoder's path. */
  vr.token = f->token;
  req.call_id = 0;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  expect_call_id_zero_refused(f, &req);
  /* A Verify with an actor: protobuf-c's path. */
  req.actor = (char *)"someone";
  expect_call_id_zero_refused(f, &req);
  req.actor = (char *)"";
  req.method_case = TOKEND__V1__REQUEST__METHOD_WHO_AM_I;
  req.who_am_i = &wr;
  expect_call_id_zero_refused(f, &req);
  expect_serving(f, f->token);
}

/* A Verify request whose packed body is exactly body_len bytes. */
static char *verify_token_for_body(size_t body_len, Tokend__V1__Request *req,
                                   Tokend__V1__VerifyRequest *vr) {
  char *tok = malloc(body_len + 1);
  size_t n;

  assert_non_null(tok);
  for (n = 0; n <= body_len; n++) {
    memset(tok, 'A', n);
    tok[n] = '\0';
    vr->token = tok;
    req->method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
    req->verify = vr;
    if (tokend__v1__request__get_packed_size(req) == body_len)
      return tok;
  }
  fail_msg("no token length gives a %zu-byte body", body_len);
  return NULL;
}

static void test_max_frame_bytes_edge(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__Response *r;
  uint8_t *frame;
  size_t len;
  char *tok;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  /* Exactly the limit: answered (the long token is simply malformed). */
  req.call_id = 1;
  tok = verify_token_for_body(SMALL_MAX_FRAME, &req, &vr);
  frame = th_frame_request(&req, &len);
  assert_int_equal(len, TOKEND_FRAME_HEADER_BYTES + SMALL_MAX_FRAME);
  assert_int_equal(th_write_all(fd, frame, len), 0);
  free(frame);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
  assert_int_equal(r->call_id, 1);
  if (th_response_code(r) != 0)
    fail_msg("a %d-byte request at --max-frame-bytes %d got status %d (%s)",
             SMALL_MAX_FRAME, SMALL_MAX_FRAME, th_response_code(r),
             r->status->message);
  assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_VERIFY);
  assert_false(r->verify->valid);
  assert_int_equal(r->verify->reason,
                   TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED);
  tokend__v1__response__free_unpacked(r, NULL);
  free(tok);
  /* The connection is still fine. */
  assert_int_equal(th_send_verify(fd, 2, f->token), 0);
  assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
  assert_int_equal(r->call_id, 2);
  assert_true(r->verify->valid);
  tokend__v1__response__free_unpacked(r, NULL);

  /* One byte over: refused on the header alone. */
  req.call_id = 3;
  tok = verify_token_for_body(SMALL_MAX_FRAME + 1, &req, &vr);
  frame = th_frame_request(&req, &len);
  assert_int_equal(len, TOKEND_FRAME_HEADER_BYTES + SMALL_MAX_FRAME + 1);
  assert_int_equal(th_write_all(fd, frame, TOKEND_FRAME_HEADER_BYTES), 0);
  free(frame);
  free(tok);
  th_expect_error_then_eof(fd, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  close(fd);
  expect_serving(f, f->token);
}

#define HANGUP_ROUNDS 20
#define HANGUP_CALLS 20

static void test_client_hangup_with_calls_in_flight(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  uint8_t *buf = NULL;
  size_t len = 0, i;
  int round, fd;

  ir.domain = DOMAIN;
  ir.label = "hangup";
  vr.token = f->token;
  /* Issues (which go to the database) and verifies, interleaved. */
  for (i = 0; i < HANGUP_CALLS; i++) {
    req.call_id = i + 1;
    if (i % 2 == 0) {
      req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
      req.issue = &ir;
    } else {
      req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
      req.verify = &vr;
    }
    assert_int_equal(th_frame_append(&buf, &len, &req), 0);
  }
  for (round = 0; round < HANGUP_ROUNDS; round++) {
    fd = th_connect(f->tokend.socket_path);
    assert_true(fd >= 0);
    /* Odd rounds also leave half a frame behind. */
    assert_int_equal(th_write_all(fd, buf, round % 2 ? len : len - 3), 0);
    close(fd);
  }
  free(buf);
  /* Hang up after reading one answer, with the rest unread. */
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  for (i = 0; i < HANGUP_CALLS; i++)
    assert_int_equal(th_send_verify(fd, i + 1, f->token), 0);
  {
    Tokend__V1__Response *r = NULL;

    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
    tokend__v1__response__free_unpacked(r, NULL);
  }
  close(fd);

  expect_serving(f, f->token);
  /* And writes still work after the abandoned ones. */
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  {
    char tok[TOKEND_TOKEN_BYTES];

    assert_int_equal(th_raw_issue(fd, 99, DOMAIN, "raw", tok), 0);
    close(fd);
    expect_serving(f, tok);
  }
}

static void test_partial_frame_does_not_block_others(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Response *r = NULL;
  uint8_t half[] = {0, 0, 0, 0, 40, 0x08, 0x01};
  int stalled = th_connect(f->tokend.socket_path);
  int64_t t0;

  assert_true(stalled >= 0);
  /* A header promising 40 bytes, and two of them: tokend must wait for the
   * rest on that connection only. */
  assert_int_equal(th_write_all(stalled, half, sizeof(half)), 0);
  t0 = th_mono_ms();
  expect_serving(f, f->token);
  assert_true(th_mono_ms() - t0 < 1000);
  /* The stalled connection got nothing and was not closed. */
  assert_int_equal(th_recv_response(stalled, 100, &r), TH_RECV_TIMEOUT);
  close(stalled);
}

#define MANY_CONNS 64

static void test_many_connections_served_together(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Response *r = NULL;
  int fds[MANY_CONNS];
  size_t i;

  /* All open at once, each with an Issue and a Verify outstanding. */
  for (i = 0; i < MANY_CONNS; i++) {
    fds[i] = th_connect(f->tokend.socket_path);
    assert_true(fds[i] >= 0);
    assert_int_equal(th_send_issue(fds[i], 2 * i + 1, DOMAIN, "many"), 0);
    assert_int_equal(th_send_verify(fds[i], 2 * i + 2, f->token), 0);
  }
  /* Each connection gets its own two answers, in any order. */
  for (i = 0; i < MANY_CONNS; i++) {
    int got_issue = 0, got_verify = 0, k;

    for (k = 0; k < 2; k++) {
      assert_int_equal(th_recv_response(fds[i], TH_IO_TIMEOUT_MS, &r), 0);
      assert_int_equal(th_response_code(r), 0);
      if (r->call_id == 2 * i + 1) {
        assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_ISSUE);
        got_issue++;
      } else if (r->call_id == 2 * i + 2) {
        assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_VERIFY);
        assert_true(r->verify->valid);
        got_verify++;
      } else {
        fail_msg("connection %zu got call_id %llu, not one of its own", i,
                 (unsigned long long)r->call_id);
      }
      tokend__v1__response__free_unpacked(r, NULL);
    }
    assert_int_equal(got_issue, 1);
    assert_int_equal(got_verify, 1);
  }
  for (i = 0; i < MANY_CONNS; i++)
    close(fds[i]);
}

#define SEQUENTIAL_CALLS 2000

/* Many request/response round trips on one connection, each answered in
 * turn with its own call id. (Speed is measured by tokend-bench, never by
 * a test.) */
static void test_sequential_verifies_each_answered_in_turn(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Response *r = NULL;
  int fd = th_connect(f->tokend.socket_path);
  size_t i;

  assert_true(fd >= 0);
  for (i = 0; i < SEQUENTIAL_CALLS; i++) {
    assert_int_equal(th_send_verify(fd, i + 1, f->token), 0);
    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
    assert_int_equal(r->call_id, i + 1);
    assert_true(r->verify->valid);
    tokend__v1__response__free_unpacked(r, NULL);
  }
  close(fd);
}

/* tokend asleep between calls: over IDLE_WINDOW_MS with nothing to do it
 * may use at most a quarter of that in CPU. A loop that never blocks (a
 * busy-poll or batch idle handle left active) uses all of a core. */
#define IDLE_WINDOW_MS 1500
#define IDLE_SETTLE_MS 100 /* > the longest --busy-poll-us (10 ms) */

static void expect_sleeps_when_idle(const th_fixture_t *f) {
  long before, after;

  th_sleep_ms(IDLE_SETTLE_MS);
  before = th_proc_cpu_ms(f->tokend.pid);
  th_sleep_ms(IDLE_WINDOW_MS);
  after = th_proc_cpu_ms(f->tokend.pid);
  assert_true(before >= 0 && after >= 0);
  if (after - before > IDLE_WINDOW_MS / 4)
    fail_msg("tokend used %ld ms of CPU in %d ms with nothing to do: its "
             "loop does not sleep",
             after - before, IDLE_WINDOW_MS);
}

static int setup_busy_poll(void **state) {
  static const char *const args[] = {"--busy-poll-us", "10000", NULL};

  return th_fixture_setup_token(state, args, DOMAIN, "raw");
}

/* Round trips and a pipelined burst are answered as usual with or without
 * --busy-poll-us, and afterwards tokend goes back to sleep. */
#define IDLE_ROUND_TRIPS 200

static void test_sleeps_when_idle_after_calls(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  uint8_t *buf = NULL;
  size_t len = 0, i;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  for (i = 0; i < IDLE_ROUND_TRIPS; i++)
    th_expect_valid_raw(fd, i + 1, f->token);
  expect_sleeps_when_idle(f);
  vr.token = f->token;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  th_frame_repeat(&buf, &len, &req, 1000, IDLE_ROUND_TRIPS);
  assert_int_equal(th_write_all(fd, buf, len), 0);
  free(buf);
  for (i = 0; i < IDLE_ROUND_TRIPS; i++) {
    assert_int_equal(th_recv_response(fd, TH_IO_TIMEOUT_MS, &r), 0);
    assert_int_equal(r->call_id, 1000 + i);
    assert_true(r->verify->valid);
    tokend__v1__response__free_unpacked(r, NULL);
  }
  expect_sleeps_when_idle(f);
  close(fd);
}

static void test_busy_poll_sleeps_when_idle_after_calls(void **state) {
  test_sleeps_when_idle_after_calls(state);
}

/* And --busy-poll-us does something: with calls 2 ms apart and a 10 ms
 * window tokend never sleeps between them. Sleeping shows as a voluntary
 * context switch of its loop thread (epoll_wait blocking) for every call;
 * polling makes none, however little CPU a loaded machine gives it (CPU
 * time would be a duration, which a busy machine cannot promise). */
#define SPIN_WINDOW_MS 500
#define SPIN_GAP_MS 2

static void test_busy_poll_keeps_polling_between_calls(void **state) {
  th_fixture_t *f = *state;
  long before, after, calls = 0;
  uint64_t call_id = 1;
  int64_t end;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  /* The first call wakes it from its idle sleep. */
  th_expect_valid_raw(fd, call_id++, f->token);
  before = th_proc_status_kib(f->tokend.pid, "voluntary_ctxt_switches");
  end = th_mono_ms() + SPIN_WINDOW_MS;
  do {
    th_expect_valid_raw(fd, call_id++, f->token);
    th_sleep_ms(SPIN_GAP_MS);
    calls++;
  } while (th_mono_ms() < end);
  after = th_proc_status_kib(f->tokend.pid, "voluntary_ctxt_switches");
  assert_true(before >= 0 && after >= 0);
  if ((after - before) * 4 >= calls)
    fail_msg("tokend's loop slept %ld times in %ld calls %d ms apart with "
             "--busy-poll-us 10000: it did not keep polling between them",
             after - before, calls, SPIN_GAP_MS);
  close(fd);
}

/* What a client that never reads may send before the check: far more than
 * socket buffers hold, so without backpressure tokend would buffer the
 * answers. */
#define FLOOD_BYTES (64L * 1024 * 1024)
/* How much tokend's memory may grow meanwhile. */
#define FLOOD_MAX_GROWTH_KIB (16L * 1024)
#define FLOOD_BATCH 1000

static void test_client_not_reading_cannot_grow_memory(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  uint8_t *frame, *batch;
  size_t flen, i;
  long sent = 0, rss_before, rss_after;
  ssize_t n;
  int fd = th_connect(f->tokend.socket_path);

  assert_true(fd >= 0);
  vr.token = f->token;
  req.call_id = 9;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  frame = th_frame_request(&req, &flen);
  assert_non_null(frame);
  batch = malloc(flen * FLOOD_BATCH);
  assert_non_null(batch);
  for (i = 0; i < FLOOD_BATCH; i++)
    memcpy(batch + i * flen, frame, flen);
  free(frame);

  rss_before = th_proc_status_kib(f->tokend.pid, "VmRSS");
  assert_true(rss_before > 0);
  /* Write until tokend stops taking requests (backpressure: our writes
   * block), closes us, or FLOOD_BYTES are in. Never read. */
  while (sent < FLOOD_BYTES) {
    struct pollfd pfd = {fd, POLLOUT, 0};

    if (poll(&pfd, 1, 500) == 0)
      break;
    n = send(fd, batch, flen * FLOOD_BATCH, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n <= 0)
      break;
    sent += n;
  }
  free(batch);
  rss_after = th_proc_status_kib(f->tokend.pid, "VmRSS");
  if (rss_after - rss_before > FLOOD_MAX_GROWTH_KIB)
    fail_msg("a client that sent %ld MiB of Verify requests without reading "
             "the answers grew tokend from %ld to %ld KiB: tokend buffers "
             "answers without bound instead of pausing the reader",
             sent >> 20, rss_before, rss_after);
  /* Others are still served meanwhile. */
  expect_serving(f, f->token);
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_pipelined_calls_all_answered_once,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_frames_split_into_single_bytes_answered, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_oversized_length_resource_exhausted_then_close, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_bad_flag_invalid_argument_then_close,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_garbage_protobuf_invalid_argument_then_close, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_empty_request_unimplemented_zero_length_closes, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_call_id_zero_refused_then_close,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_max_frame_bytes_edge,
                                      setup_small_frames, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_client_hangup_with_calls_in_flight,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_partial_frame_does_not_block_others,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_many_connections_served_together,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_sequential_verifies_each_answered_in_turn, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_string_with_nul_byte_rejected, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_verify_exact_bytes_any_encoding,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_answers_in_request_order_then_eof,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_client_not_reading_cannot_grow_memory, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_sleeps_when_idle_after_calls, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_busy_poll_sleeps_when_idle_after_calls, setup_busy_poll,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_busy_poll_keeps_polling_between_calls, setup_busy_poll,
          th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
