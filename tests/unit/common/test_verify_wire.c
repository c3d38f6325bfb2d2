/* Unit tests for common/verify_wire: the hand-written Verify codec must
 * write exactly the bytes protobuf-c packs, read back what it writes, and
 * leave every other shape to protobuf-c (VW_OTHER). protobuf-c (the
 * generated tokend.pb-c.c) is the reference throughout. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"
#include "tokend.pb-c.h"
#include "verify_wire.h"

/* Bytes written after an encoder's output, which must stay untouched. */
#define GUARD_BYTES 16
#define GUARD 0xA5

/* A well-formed token (tests/unit/common/test_token.c builds it independently).
 */
static const char known_token[] = "tkd_0123456789ABCDEFGHIJKLMNOPQRSTUV1QUYSM";

/* What the current case is, for failure messages. */
static char g_case[256];

typedef struct {
  uint8_t *p;
  size_t len;
} bytes_t;

/* protobuf-c's verdict on a body. */
enum { PC_REJECTS = 0, PC_ACCEPTS = 1 };

static void print_hex(const char *what, const uint8_t *p, size_t n) {
  size_t i;

  print_error("%s (%zu bytes):", what, n);
  for (i = 0; i < n && i < 512; i++)
    print_error(" %02x", p[i]);
  print_error("%s\n", n > 512 ? " ..." : "");
}

/* got[0..got_len) == want[0..want_len), else fails showing both. */
static void expect_bytes(const uint8_t *got, size_t got_len,
                         const uint8_t *want, size_t want_len) {
  if (got_len == want_len && memcmp(got, want, got_len) == 0)
    return;
  print_hex("verify_wire", got, got_len);
  print_hex("protobuf-c ", want, want_len);
  fail_msg("%s: bytes differ", g_case);
}

/* A copy of b followed by more[0..n). */
static bytes_t bytes_cat(bytes_t b, const void *more, size_t n) {
  bytes_t r = {malloc(b.len + n), b.len + n};

  assert_non_null(r.p);
  memcpy(r.p, b.p, b.len);
  memcpy(r.p + b.len, more, n);
  return r;
}

/* A buffer of n bytes followed by GUARD_BYTES guard bytes. */
static uint8_t *guarded(size_t n) {
  uint8_t *p = malloc(n + GUARD_BYTES);

  assert_non_null(p);
  memset(p, GUARD, n + GUARD_BYTES);
  return p;
}

static void expect_guard_intact(const uint8_t *p, size_t n) {
  size_t i;

  for (i = 0; i < GUARD_BYTES; i++)
    if (p[n + i] != GUARD)
      fail_msg("%s: encoder wrote past its size, at +%zu", g_case, i);
}

static bytes_t pc_pack_request(const Tokend__V1__Request *req) {
  bytes_t b;

  b.len = tokend__v1__request__get_packed_size(req);
  b.p = malloc(b.len > 0 ? b.len : 1);
  assert_non_null(b.p);
  assert_int_equal(tokend__v1__request__pack(req, b.p), b.len);
  return b;
}

static bytes_t pc_pack_response(const Tokend__V1__Response *resp) {
  bytes_t b;

  b.len = tokend__v1__response__get_packed_size(resp);
  b.p = malloc(b.len > 0 ? b.len : 1);
  assert_non_null(b.p);
  assert_int_equal(tokend__v1__response__pack(resp, b.p), b.len);
  return b;
}

/* protobuf-c's bytes for a Verify Request (actor ""). protobuf-c takes
 * NUL-terminated strings, so a token holding NULs is packed with each NUL
 * replaced by 'N'; the token is the last field and the wire copies string
 * bytes as they are, so its real bytes are then put back at the end. */
static bytes_t pc_verify_request(uint64_t call_id, const char *tok,
                                 size_t len) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  char *copy = malloc(len + 1);
  bytes_t b;
  size_t i;

  assert_non_null(copy);
  for (i = 0; i < len; i++)
    copy[i] = tok[i] != '\0' ? tok[i] : 'N';
  copy[len] = '\0';
  vr.token = copy;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  b = pc_pack_request(&req);
  assert_true(b.len >= len);
  assert_memory_equal(b.p + b.len - len, copy, len);
  memcpy(b.p + b.len - len, tok, len);
  free(copy);
  return b;
}

/* 1 if protobuf-c reads body as a plain Verify (actor "", nothing unknown)
 * and packs it back to exactly body: the one shape vw must accept. */
static int pc_request_is_canonical_verify(const uint8_t *body, size_t len) {
  Tokend__V1__Request *req = tokend__v1__request__unpack(NULL, len, body);
  bytes_t b;
  int canonical = 0;

  if (req == NULL)
    return 0;
  /* A Verify reporting cached hits (issue 15) is not the plain one. */
  if (req->method_case == TOKEND__V1__REQUEST__METHOD_VERIFY &&
      req->actor[0] == '\0' && req->base.n_unknown_fields == 0 &&
      req->verify->base.n_unknown_fields == 0 &&
      req->verify->cached_hits == 0) {
    b = pc_pack_request(req);
    canonical = b.len == len && memcmp(b.p, body, len) == 0;
    free(b.p);
  }
  tokend__v1__request__free_unpacked(req, NULL);
  return canonical;
}

/* Encodes (call_id, tok) with vw and checks size, bytes, the guard, and
 * that both vw and protobuf-c read it back as the same message. */
static void check_request_case(uint64_t call_id, const char *tok, size_t len) {
  bytes_t want = pc_verify_request(call_id, tok, len);
  size_t size = vw_request_size(call_id, len), n;
  uint8_t *out = guarded(size);
  Tokend__V1__Request *req;
  vw_request_t d;

  snprintf(g_case, sizeof(g_case), "request call_id %llu, token of %zu bytes",
           (unsigned long long)call_id, len);
  if (size != want.len)
    fail_msg("%s: vw_request_size %zu, protobuf-c %zu", g_case, size, want.len);
  n = vw_request_encode(out, call_id, tok, len);
  assert_int_equal(n, size);
  expect_guard_intact(out, size);
  expect_bytes(out, n, want.p, want.len);

  /* Round trip through vw: strings point into the body. */
  memset(&d, 0x5A, sizeof(d));
  assert_int_equal(vw_request_decode(out, n, &d), VW_VERIFY);
  assert_int_equal(d.call_id, call_id);
  assert_int_equal(d.token_len, len);
  if (len > 0) {
    assert_true(d.token >= (const char *)out &&
                d.token + len <= (const char *)out + n);
    assert_memory_equal(d.token, tok, len);
  }

  /* protobuf-c reads the same message, all token bytes included. */
  req = tokend__v1__request__unpack(NULL, n, out);
  assert_non_null(req);
  assert_int_equal(req->method_case, TOKEND__V1__REQUEST__METHOD_VERIFY);
  assert_int_equal(req->call_id, call_id);
  assert_string_equal(req->actor, "");
  assert_memory_equal(req->verify->token, tok, len);
  assert_int_equal(req->verify->token[len], '\0');
  tokend__v1__request__free_unpacked(req, NULL);
  free(out);
  free(want.p);
}

static void test_request_encode_matches_protobuf_c(void **state) {
  static const uint64_t call_ids[] = {
      0, 1, 127, 128, 16383, 16384, UINT64_C(1) << 63, UINT64_MAX};
  /* Lengths either side of where the length prefix grows a byte. */
  static const size_t lens[] = {0, 1, 38, 127, 128, 200, 16383, 16384};
  char *tok = malloc(16384);
  size_t i, j, k;

  assert_non_null(tok);
  for (k = 0; k < 16384; k++)
    tok[k] = (char)('a' + k % 26);
  /* Bytes a string may hold on the wire: a NUL, 0xff (never UTF-8). */
  tok[100] = '\0';
  tok[101] = (char)0xff;
  tok[199] = (char)0xff;
  for (i = 0; i < sizeof(call_ids) / sizeof(call_ids[0]); i++) {
    for (j = 0; j < sizeof(lens) / sizeof(lens[0]); j++)
      check_request_case(call_ids[i], tok, lens[j]);
    check_request_case(call_ids[i], known_token, strlen(known_token));
  }
  free(tok);
}

/* Every known byte value as a 1-byte token, and NULL for an empty one. */
static void test_request_encode_any_one_byte_token(void **state) {
  char c;
  int b;

  for (b = 0; b < 256; b++) {
    c = (char)b;
    check_request_case(7, &c, 1);
  }
  assert_int_equal(vw_request_size(7, 0), 4);
  {
    uint8_t out[4 + GUARD_BYTES];

    memset(out, GUARD, sizeof(out));
    assert_int_equal(vw_request_encode(out, 7, NULL, 0), 4);
    expect_guard_intact(out, 4);
    assert_memory_equal(out, "\x08\x07\x1a\x00", 4);
  }
}

/* ---- what the checks below share, for requests and responses ---- */

static int pc_request_accepts(const uint8_t *body, size_t len) {
  Tokend__V1__Request *req = tokend__v1__request__unpack(NULL, len, body);

  tokend__v1__request__free_unpacked(req, NULL); /* NULL: a no-op */
  return req != NULL;
}

static int vw_request_decodes(const uint8_t *body, size_t len) {
  vw_request_t d;

  return vw_request_decode(body, len, &d) == VW_VERIFY;
}

static int pc_response_is_canonical_verify(const uint8_t *body, size_t len);

static int pc_response_accepts(const uint8_t *body, size_t len) {
  Tokend__V1__Response *resp = tokend__v1__response__unpack(NULL, len, body);

  tokend__v1__response__free_unpacked(resp, NULL); /* NULL: a no-op */
  return resp != NULL;
}

static int vw_response_decodes(const uint8_t *body, size_t len) {
  vw_response_t d;

  return vw_response_decode(body, len, &d) == VW_VERIFY;
}

/* One of the two messages, as each decoder sees it. */
typedef struct {
  const char *name;
  int (*pc_accepts)(const uint8_t *body, size_t len);
  int (*pc_canonical)(const uint8_t *body, size_t len);
  int (*vw_decodes)(const uint8_t *body, size_t len);
} msg_kind_t;

static const msg_kind_t REQUEST = {"request", pc_request_accepts,
                                   pc_request_is_canonical_verify,
                                   vw_request_decodes};
static const msg_kind_t RESPONSE = {"response", pc_response_accepts,
                                    pc_response_is_canonical_verify,
                                    vw_response_decodes};

/* vw must return VW_OTHER, and protobuf-c must give verdict pc. */
static void expect_other(const msg_kind_t *k, const char *what,
                         const void *body, size_t len, int pc) {
  int accepts;

  snprintf(g_case, sizeof(g_case), "%s: %s", k->name, what);
  accepts = k->pc_accepts(body, len);
  if (accepts != pc)
    fail_msg("%s: protobuf-c %s it", g_case, accepts ? "accepts" : "rejects");
  if (k->vw_decodes(body, len)) {
    print_hex("body", body, len);
    fail_msg("%s: vw decodes it as a plain Verify", g_case);
  }
  assert_false(k->pc_canonical(body, len));
}

/* Every prefix of b, a canonical message, is VW_VERIFY exactly when
 * protobuf-c reads it as a canonical Verify too (only the whole, for the
 * messages used here). Frees b. */
static void check_prefixes(const msg_kind_t *k, const char *what, bytes_t b) {
  size_t n;
  int canonical, valid = 0;
  uint8_t *cut;

  for (n = 0; n <= b.len; n++) {
    /* Exactly n bytes on the heap, so ASan sees any read past them. */
    cut = malloc(n > 0 ? n : 1);
    assert_non_null(cut);
    memcpy(cut, b.p, n);
    snprintf(g_case, sizeof(g_case), "%s %s, cut to %zu of %zu", k->name, what,
             n, b.len);
    canonical = k->pc_canonical(cut, n);
    if (k->vw_decodes(cut, n) != canonical)
      fail_msg("%s: vw disagrees with protobuf-c (canonical %d)", g_case,
               canonical);
    valid += canonical;
    free(cut);
  }
  assert_int_equal(valid, 1);
  free(b.p);
}

/* ---- requests ---- */

#define EXPECT_REQUEST_OTHER(what, pc, ...)                                    \
  do {                                                                         \
    static const uint8_t body_[] = {__VA_ARGS__};                              \
    expect_other(&REQUEST, what, body_, sizeof(body_), pc);                    \
  } while (0)

static void test_request_decode_actor_is_other(void **state) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__Request *back;
  bytes_t b;

  vr.token = (char *)known_token;
  req.call_id = 9;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  req.actor = "alice@example.com";
  b = pc_pack_request(&req);
  expect_other(&REQUEST, "actor set", b.p, b.len, PC_ACCEPTS);
  back = tokend__v1__request__unpack(NULL, b.len, b.p);
  assert_non_null(back);
  assert_string_equal(back->actor, "alice@example.com");
  tokend__v1__request__free_unpacked(back, NULL);
  free(b.p);
}

static void test_request_decode_unknown_fields_are_other(void **state) {
  /* Field 14 (varint), after, before and inside; field 100, 2-byte tag. */
  EXPECT_REQUEST_OTHER("unknown field last", PC_ACCEPTS, 0x08, 0x01, 0x1a, 0x03,
                       0x0a, 0x01, 'x', 0x70, 0x01);
  EXPECT_REQUEST_OTHER("unknown field first", PC_ACCEPTS, 0x70, 0x01, 0x08,
                       0x01, 0x1a, 0x03, 0x0a, 0x01, 'x');
  EXPECT_REQUEST_OTHER("unknown field between", PC_ACCEPTS, 0x08, 0x01, 0x70,
                       0x01, 0x1a, 0x03, 0x0a, 0x01, 'x');
  EXPECT_REQUEST_OTHER("unknown field 100", PC_ACCEPTS, 0x1a, 0x03, 0x0a, 0x01,
                       'x', 0xa0, 0x06, 0x01);
  EXPECT_REQUEST_OTHER("unknown field inside verify", PC_ACCEPTS, 0x1a, 0x05,
                       0x0a, 0x01, 'x', 0x18, 0x01);
  EXPECT_REQUEST_OTHER("unknown field first inside verify", PC_ACCEPTS, 0x1a,
                       0x05, 0x18, 0x01, 0x0a, 0x01, 'x');
  /* cached_hits (issue 15): known, but a Verify carrying it is protobuf-c's
   * to read (tokend counts the hits there). */
  EXPECT_REQUEST_OTHER("cached_hits inside verify", PC_ACCEPTS, 0x1a, 0x05,
                       0x0a, 0x01, 'x', 0x10, 0x01);
  /* Known fields with the wrong wire type: protobuf-c refuses them. */
  EXPECT_REQUEST_OTHER("call_id as fixed64", PC_REJECTS, 0x09, 1, 0, 0, 0, 0, 0,
                       0, 0, 0x1a, 0x00);
  EXPECT_REQUEST_OTHER("verify as varint", PC_REJECTS, 0x18, 0x00);
  EXPECT_REQUEST_OTHER("token as varint", PC_REJECTS, 0x1a, 0x02, 0x08, 0x01);
}

static void test_request_decode_repeats_and_order_are_other(void **state) {
  EXPECT_REQUEST_OTHER("verify twice", PC_ACCEPTS, 0x1a, 0x03, 0x0a, 0x01, 'x',
                       0x1a, 0x03, 0x0a, 0x01, 'y');
  EXPECT_REQUEST_OTHER("verify before call_id", PC_ACCEPTS, 0x1a, 0x03, 0x0a,
                       0x01, 'x', 0x08, 0x07);
  EXPECT_REQUEST_OTHER("call_id twice", PC_ACCEPTS, 0x08, 0x01, 0x08, 0x02,
                       0x1a, 0x00);
  EXPECT_REQUEST_OTHER("token twice", PC_ACCEPTS, 0x1a, 0x06, 0x0a, 0x01, 'a',
                       0x0a, 0x01, 'b');
  /* A oneof: the last member wins in protobuf-c. */
  EXPECT_REQUEST_OTHER("verify then who_am_i", PC_ACCEPTS, 0x1a, 0x00, 0x52,
                       0x00);
  EXPECT_REQUEST_OTHER("who_am_i then verify", PC_ACCEPTS, 0x52, 0x00, 0x1a,
                       0x00);
}

static void test_request_decode_other_methods_are_other(void **state) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;
  bytes_t b;

  ir.domain = "example.com";
  ir.label = "x";
  req.call_id = 3;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &ir;
  b = pc_pack_request(&req);
  expect_other(&REQUEST, "issue", b.p, b.len, PC_ACCEPTS);
  free(b.p);

  req.method_case = TOKEND__V1__REQUEST__METHOD__NOT_SET;
  b = pc_pack_request(&req);
  expect_other(&REQUEST, "no method", b.p, b.len, PC_ACCEPTS);
  free(b.p);
  expect_other(&REQUEST, "empty body", "", 0, PC_ACCEPTS);
  EXPECT_REQUEST_OTHER("issue, empty", PC_ACCEPTS, 0x12, 0x00);
}

static void test_request_decode_bad_lengths_are_other(void **state) {
  EXPECT_REQUEST_OTHER("verify length past the end", PC_REJECTS, 0x1a, 0x05,
                       0x0a, 0x01, 'x');
  EXPECT_REQUEST_OTHER("token length past the end", PC_REJECTS, 0x1a, 0x03,
                       0x0a, 0x05, 'x');
  EXPECT_REQUEST_OTHER("token length past verify", PC_REJECTS, 0x1a, 0x02, 0x0a,
                       0x01, 'x');
  EXPECT_REQUEST_OTHER("verify length 2^32-1", PC_REJECTS, 0x1a, 0xff, 0xff,
                       0xff, 0xff, 0x0f, 0x0a, 0x00);
  EXPECT_REQUEST_OTHER("verify length unterminated", PC_REJECTS, 0x1a, 0x80);
  EXPECT_REQUEST_OTHER("call_id unterminated", PC_REJECTS, 0x08, 0x80);
}

static void test_request_decode_long_varints_are_other(void **state) {
  EXPECT_REQUEST_OTHER("11-byte call_id", PC_REJECTS, 0x08, 0xff, 0xff, 0xff,
                       0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x1a,
                       0x00);
  EXPECT_REQUEST_OTHER("11-byte call_id of 1", PC_REJECTS, 0x08, 0x81, 0x80,
                       0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
                       0x1a, 0x00);
  /* protobuf-c drops the bits past 64; the canonical form has none. */
  EXPECT_REQUEST_OTHER("10-byte call_id, last byte 2", PC_ACCEPTS, 0x08, 0xff,
                       0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                       0x1a, 0x00);
  EXPECT_REQUEST_OTHER("10-byte call_id, last byte 0x7f", PC_ACCEPTS, 0x08,
                       0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                       0x7f, 0x1a, 0x00);
  /* The largest 10-byte varint that is canonical is accepted. */
  {
    static const uint8_t body[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0x01, 0x1a, 0x00};
    vw_request_t d;

    assert_true(pc_request_is_canonical_verify(body, sizeof(body)));
    assert_int_equal(vw_request_decode(body, sizeof(body), &d), VW_VERIFY);
    assert_true(d.call_id == UINT64_MAX);
  }
}

/* The contract is the canonical shape only. A length prefix or a varint
 * with more bytes than it needs is not what an encoder writes; protobuf-c
 * refuses a length prefix of more than 5 bytes outright, so accepting one
 * would answer a Verify where the general path rejects the request. */
static void test_request_decode_overlong_encodings_are_other(void **state) {
  EXPECT_REQUEST_OTHER("6-byte verify length", PC_REJECTS, 0x1a, 0x80, 0x80,
                       0x80, 0x80, 0x80, 0x00);
  EXPECT_REQUEST_OTHER("6-byte token length", PC_REJECTS, 0x1a, 0x07, 0x0a,
                       0x80, 0x80, 0x80, 0x80, 0x80, 0x00);
  EXPECT_REQUEST_OTHER("10-byte token length", PC_REJECTS, 0x1a, 0x0c, 0x0a,
                       0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                       0x00, 'x');
  EXPECT_REQUEST_OTHER("5-byte verify length", PC_ACCEPTS, 0x1a, 0x80, 0x80,
                       0x80, 0x80, 0x00);
  EXPECT_REQUEST_OTHER("2-byte token length", PC_ACCEPTS, 0x1a, 0x04, 0x0a,
                       0x81, 0x00, 'x');
  EXPECT_REQUEST_OTHER("2-byte call_id of 1", PC_ACCEPTS, 0x08, 0x81, 0x00,
                       0x1a, 0x00);
}

/* proto3 writes no field that holds its default: a call_id of 0 or an empty
 * token on the wire is not the canonical shape. */
static void test_request_decode_explicit_defaults_are_other(void **state) {
  EXPECT_REQUEST_OTHER("call_id 0 written", PC_ACCEPTS, 0x08, 0x00, 0x1a, 0x00);
  EXPECT_REQUEST_OTHER("empty token written", PC_ACCEPTS, 0x1a, 0x02, 0x0a,
                       0x00);
}

static void check_request_prefixes(uint64_t call_id, const char *tok,
                                   size_t len) {
  char what[96];

  snprintf(what, sizeof(what), "call_id %llu, token of %zu bytes",
           (unsigned long long)call_id, len);
  check_prefixes(&REQUEST, what, pc_verify_request(call_id, tok, len));
}

static void test_request_decode_every_prefix(void **state) {
  check_request_prefixes(0, "", 0);
  check_request_prefixes(1, "x", 1);
  check_request_prefixes(300, known_token, strlen(known_token));
  check_request_prefixes(UINT64_MAX, known_token, strlen(known_token));
}

/* protobuf-c does not check that a string is UTF-8, and keeps a NUL and
 * what follows it in its buffer; so both decoders hand the server the same
 * bytes, which fail the token's shape check. A reader that took strlen() of
 * protobuf-c's string would see only the well-formed part before the NUL. */
static void test_request_token_nul_and_invalid_utf8(void **state) {
  const size_t tlen = strlen(known_token);
  char with_nul[64], bad_utf8[64];
  const char *toks[2];
  size_t lens[2], i, n;
  Tokend__V1__Request *req;
  vw_request_t d;
  uint8_t out[128];

  assert_int_equal(token_check(known_token, tlen), 0);
  memcpy(with_nul, known_token, tlen);
  memcpy(with_nul + tlen, "\0xy", 3);
  memcpy(bad_utf8, known_token, tlen);
  bad_utf8[10] = (char)0xff;
  toks[0] = with_nul;
  lens[0] = tlen + 3;
  toks[1] = bad_utf8;
  lens[1] = tlen;
  for (i = 0; i < 2; i++) {
    snprintf(g_case, sizeof(g_case), "token %s",
             i == 0 ? "with a NUL" : "with 0xff");
    n = vw_request_encode(out, 5, toks[i], lens[i]);
    req = tokend__v1__request__unpack(NULL, n, out);
    assert_non_null(req); /* protobuf-c accepts both */
    assert_int_equal(req->method_case, TOKEND__V1__REQUEST__METHOD_VERIFY);
    assert_memory_equal(req->verify->token, toks[i], lens[i]);
    assert_int_equal(req->verify->token[lens[i]], '\0');
    assert_int_equal(strlen(req->verify->token), i == 0 ? tlen : lens[i]);
    tokend__v1__request__free_unpacked(req, NULL);

    assert_int_equal(vw_request_decode(out, n, &d), VW_VERIFY);
    assert_int_equal(d.token_len, lens[i]);
    assert_memory_equal(d.token, toks[i], lens[i]);
    assert_int_not_equal(token_check(d.token, d.token_len), 0);
  }
}

/* ---- responses ---- */

/* protobuf-c's bytes for r, with status {code 0, message} present. */
static bytes_t pc_verify_response(const vw_response_t *r, const char *message) {
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status st = TOKEND__V1__STATUS__INIT;
  Tokend__V1__VerifyResponse vr = TOKEND__V1__VERIFY_RESPONSE__INIT;
  char *scopes[TOKEND_MAX_SCOPES];
  size_t i;

  /* The test's strings are literals: NUL-terminated, no NUL inside. */
  vr.valid = r->valid != 0;
  vr.reason = (Tokend__V1__InvalidReason)r->reason;
  vr.token_id = (char *)r->token_id.p;
  vr.domain = (char *)r->domain.p;
  vr.label = (char *)r->label.p;
  for (i = 0; i < r->n_scopes; i++)
    scopes[i] = (char *)r->scopes[i].p;
  vr.scopes = scopes;
  vr.n_scopes = r->n_scopes;
  vr.expires_at = r->expires_at;
  vr.metadata = r->metadata.len > 0 ? (char *)r->metadata.p : "";
  st.message = (char *)message;
  resp.call_id = r->call_id;
  resp.status = &st;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_VERIFY;
  resp.verify = &vr;
  return pc_pack_response(&resp);
}

static void expect_str_equal(const char *field, vw_str_t got, vw_str_t want,
                             const uint8_t *body, size_t len) {
  /* An absent string may come back as NULL with length 0. */
  if (got.len != want.len ||
      (want.len > 0 && memcmp(got.p, want.p, want.len) != 0))
    fail_msg("%s: %s reads back as %zu bytes, not %zu", g_case, field, got.len,
             want.len);
  if (got.len > 0 && (got.p < (const char *)body ||
                      got.p + got.len > (const char *)body + len))
    fail_msg("%s: %s does not point into the body", g_case, field);
}

static void check_response_case(const vw_response_t *r) {
  static const char empty[] = "";
  bytes_t want = pc_verify_response(r, protobuf_c_empty_string);
  bytes_t want2 = pc_verify_response(r, empty);
  size_t size = vw_response_size(r), n, i;
  uint8_t *out = guarded(size);
  vw_response_t d;

  snprintf(g_case, sizeof(g_case),
           "response call_id %llu valid %d reason %d strings %zu/%zu/%zu "
           "scopes %zu expires_at %lld",
           (unsigned long long)r->call_id, r->valid, r->reason, r->token_id.len,
           r->domain.len, r->label.len, r->n_scopes, (long long)r->expires_at);
  /* Status message protobuf_c_empty_string or another "": same bytes. */
  expect_bytes(want2.p, want2.len, want.p, want.len);
  if (size != want.len)
    fail_msg("%s: vw_response_size %zu, protobuf-c %zu", g_case, size,
             want.len);
  n = vw_response_encode(out, r);
  assert_int_equal(n, size);
  expect_guard_intact(out, size);
  expect_bytes(out, n, want.p, want.len);

  memset(&d, 0x5A, sizeof(d));
  assert_int_equal(vw_response_decode(out, n, &d), VW_VERIFY);
  assert_true(d.call_id == r->call_id);
  assert_int_equal(d.valid != 0, r->valid != 0);
  assert_int_equal(d.reason, r->reason);
  expect_str_equal("token_id", d.token_id, r->token_id, out, n);
  expect_str_equal("domain", d.domain, r->domain, out, n);
  expect_str_equal("label", d.label, r->label, out, n);
  assert_int_equal(d.n_scopes, r->n_scopes);
  for (i = 0; i < r->n_scopes; i++)
    expect_str_equal("scope", d.scopes[i], r->scopes[i], out, n);
  assert_true(d.expires_at == r->expires_at);
  expect_str_equal("metadata", d.metadata, r->metadata, out, n);
  free(out);
  free(want.p);
  free(want2.p);
}

static const char long_label[] =
    "A label of more than 127 bytes, so that its length prefix takes two "
    "bytes on the wire: d\xc3\xa9ploiement \xe2\x9c\x93, and then a few more "
    "words.";

static const char long_metadata[] =
    "{\"customer\":\"cus_0123456789\",\"plan\":\"enterprise\",\"seats\":"
    "250,\"region\":\"eu-west-1\",\"features\":[\"sso\",\"audit\","
    "\"scim\",\"webhooks\"],\"owner\":\"platform-team@example.com\"}";

/* scopes[] for n: 0, 1, or TOKEND_MAX_SCOPES of which one is empty. */
static void set_scopes(vw_response_t *r, size_t n) {
  static const char *const names[] = {
      "read",
      "deploy",
      "admin:tokens",
      "repo/write",
      "x",
      "a.b.c-d_e:f/g",
      "sixty-four-characters-of-scope-name-0123456789abcdefghijklmnopqr"};
  size_t i;

  r->n_scopes = n;
  for (i = 0; i < n; i++)
    r->scopes[i] = vw_cstr(names[i % (sizeof(names) / sizeof(names[0]))]);
  if (n > 5)
    r->scopes[5] = vw_cstr("");
}

static void test_response_encode_matches_protobuf_c(void **state) {
  static const uint64_t call_ids[] = {0, 1, 300, UINT64_MAX};
  static const int reasons[] = {
      0,  1,         2,
      3,  4,         TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID,
      -1, INT32_MIN, INT32_MAX};
  static const int64_t expires[] = {0,  1,         4102444800000LL,
                                    -1, INT64_MIN, INT64_MAX};
  static const size_t n_scopes[] = {0, 1, TOKEND_MAX_SCOPES};
  vw_response_t r;
  size_t a, b, c, e, f, g, cases = 0;

  assert_true(strlen(long_label) > 127);
  assert_true(strlen(long_metadata) > 127);
  for (a = 0; a < sizeof(call_ids) / sizeof(call_ids[0]); a++)
    for (b = 0; b < 2; b++)
      for (c = 0; c < sizeof(reasons) / sizeof(reasons[0]); c++)
        for (e = 0; e < 3; e++)
          for (f = 0; f < sizeof(n_scopes) / sizeof(n_scopes[0]); f++)
            for (g = 0; g < sizeof(expires) / sizeof(expires[0]); g++) {
              memset(&r, 0, sizeof(r));
              r.call_id = call_ids[a];
              r.valid = (int)b;
              r.reason = reasons[c];
              /* No strings; all three; only a long label. */
              r.token_id = vw_cstr(e == 1 ? "tok_0123456789ABCDEFGHIJ" : "");
              r.domain = vw_cstr(e == 1 ? "example.com" : "");
              r.label = vw_cstr(e == 0   ? ""
                                : e == 1 ? "CI deploy"
                                         : long_label);
              /* issue 17's metadata: none, short, or with a 2-byte
               * length prefix. */
              r.metadata = vw_cstr(e == 0   ? ""
                                   : e == 1 ? "{\"plan\":\"pro\"}"
                                            : long_metadata);
              set_scopes(&r, n_scopes[f]);
              r.expires_at = expires[g];
              check_response_case(&r);
              cases++;
            }
  assert_int_equal(cases, 4 * 2 * 9 * 3 * 3 * 6);
}

/* Any nonzero valid is written as true (1), as protobuf-c writes a bool. */
static void test_response_encode_valid_nonzero_is_true(void **state) {
  vw_response_t r, one;
  uint8_t a[64], b[64];
  size_t na, nb;

  memset(&r, 0, sizeof(r));
  r.token_id = r.domain = r.label = vw_cstr("");
  one = r;
  r.valid = 2;
  one.valid = 1;
  na = vw_response_encode(a, &r);
  nb = vw_response_encode(b, &one);
  assert_int_equal(vw_response_size(&r), na);
  expect_bytes(a, na, b, nb);
}

/* 1 if protobuf-c reads body as a Verify Response with status {0, ""},
 * nothing unknown and at most TOKEND_MAX_SCOPES scopes, and packs it back
 * to exactly body. */
static int pc_response_is_canonical_verify(const uint8_t *body, size_t len) {
  Tokend__V1__Response *resp = tokend__v1__response__unpack(NULL, len, body);
  bytes_t b;
  int canonical = 0;

  if (resp == NULL)
    return 0;
  if (resp->result_case == TOKEND__V1__RESPONSE__RESULT_VERIFY &&
      resp->status != NULL && resp->status->code == 0 &&
      resp->status->message[0] == '\0' &&
      resp->status->base.n_unknown_fields == 0 &&
      resp->base.n_unknown_fields == 0 &&
      resp->verify->base.n_unknown_fields == 0 &&
      resp->verify->n_scopes <= TOKEND_MAX_SCOPES) {
    b = pc_pack_response(resp);
    canonical = b.len == len && memcmp(b.p, body, len) == 0;
    free(b.p);
  }
  tokend__v1__response__free_unpacked(resp, NULL);
  return canonical;
}

#define EXPECT_RESPONSE_OTHER(what, pc, ...)                                   \
  do {                                                                         \
    static const uint8_t body_[] = {__VA_ARGS__};                              \
    expect_other(&RESPONSE, what, body_, sizeof(body_), pc);                   \
  } while (0)

/* A valid Verify Response and its parts, for the variants below. */
static Tokend__V1__Response *base_response(Tokend__V1__Response *resp,
                                           Tokend__V1__Status *st,
                                           Tokend__V1__VerifyResponse *vr) {
  static char *scopes[] = {"read", "deploy"};

  *resp = (Tokend__V1__Response)TOKEND__V1__RESPONSE__INIT;
  *st = (Tokend__V1__Status)TOKEND__V1__STATUS__INIT;
  *vr = (Tokend__V1__VerifyResponse)TOKEND__V1__VERIFY_RESPONSE__INIT;
  vr->valid = 1;
  vr->token_id = "tok_0123456789ABCDEFGHIJ";
  vr->domain = "example.com";
  vr->label = "CI";
  vr->scopes = scopes;
  vr->n_scopes = 2;
  vr->expires_at = 4102444800000LL;
  resp->call_id = 42;
  resp->status = st;
  resp->result_case = TOKEND__V1__RESPONSE__RESULT_VERIFY;
  resp->verify = vr;
  return resp;
}

static void expect_packed_response_other(const char *what,
                                         const Tokend__V1__Response *resp) {
  bytes_t b = pc_pack_response(resp);

  expect_other(&RESPONSE, what, b.p, b.len, PC_ACCEPTS);
  free(b.p);
}

static void test_response_decode_status_other_than_ok_is_other(void **state) {
  Tokend__V1__Response resp;
  Tokend__V1__Status st;
  Tokend__V1__VerifyResponse vr;
  bytes_t b;
  vw_response_t d;

  /* The base itself is canonical: the variants differ only as named. */
  b = pc_pack_response(base_response(&resp, &st, &vr));
  assert_true(pc_response_is_canonical_verify(b.p, b.len));
  assert_int_equal(vw_response_decode(b.p, b.len, &d), VW_VERIFY);
  free(b.p);

  base_response(&resp, &st, &vr);
  st.code = 5;
  expect_packed_response_other("status code 5", &resp);
  st.code = -1;
  expect_packed_response_other("status code -1", &resp);
  base_response(&resp, &st, &vr);
  st.message = "why";
  expect_packed_response_other("status with a message", &resp);
  base_response(&resp, &st, &vr);
  resp.status = NULL;
  expect_packed_response_other("no status", &resp);
  /* Status written with code 0 spelled out. */
  EXPECT_RESPONSE_OTHER("status code 0 written", PC_ACCEPTS, 0x12, 0x02, 0x08,
                        0x00, 0x22, 0x00);
  EXPECT_RESPONSE_OTHER("unknown field in status", PC_ACCEPTS, 0x12, 0x02, 0x18,
                        0x01, 0x22, 0x00);
  EXPECT_RESPONSE_OTHER("status after verify", PC_ACCEPTS, 0x22, 0x00, 0x12,
                        0x00);
  EXPECT_RESPONSE_OTHER("status twice", PC_ACCEPTS, 0x12, 0x00, 0x12, 0x00,
                        0x22, 0x00);
}

static void test_response_decode_other_results_are_other(void **state) {
  Tokend__V1__Response resp;
  Tokend__V1__Status st;
  Tokend__V1__VerifyResponse vr;
  Tokend__V1__IssueResponse ir = TOKEND__V1__ISSUE_RESPONSE__INIT;

  base_response(&resp, &st, &vr);
  ir.token = "tkd_x";
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_ISSUE;
  resp.issue = &ir;
  expect_packed_response_other("issue", &resp);
  resp.result_case = TOKEND__V1__RESPONSE__RESULT__NOT_SET;
  expect_packed_response_other("no result", &resp);
  EXPECT_RESPONSE_OTHER("verify then issue", PC_ACCEPTS, 0x12, 0x00, 0x22, 0x00,
                        0x1a, 0x00);
  EXPECT_RESPONSE_OTHER("verify twice", PC_ACCEPTS, 0x12, 0x00, 0x22, 0x02,
                        0x08, 0x01, 0x22, 0x02, 0x08, 0x01);
}

static void test_response_decode_too_many_scopes_is_other(void **state) {
  static char *scopes[TOKEND_MAX_SCOPES + 1];
  Tokend__V1__Response resp;
  Tokend__V1__Status st;
  Tokend__V1__VerifyResponse vr;
  bytes_t b;
  vw_response_t d;
  size_t i;

  for (i = 0; i < TOKEND_MAX_SCOPES + 1; i++)
    scopes[i] = "s";
  base_response(&resp, &st, &vr);
  vr.scopes = scopes;
  /* Exactly the limit decodes; one more is protobuf-c's. */
  vr.n_scopes = TOKEND_MAX_SCOPES;
  b = pc_pack_response(&resp);
  assert_int_equal(vw_response_decode(b.p, b.len, &d), VW_VERIFY);
  assert_int_equal(d.n_scopes, TOKEND_MAX_SCOPES);
  free(b.p);
  vr.n_scopes = TOKEND_MAX_SCOPES + 1;
  expect_packed_response_other("33 scopes", &resp);
}

static void
test_response_decode_unknown_and_misordered_are_other(void **state) {
  Tokend__V1__Response resp;
  Tokend__V1__Status st;
  Tokend__V1__VerifyResponse vr;
  bytes_t b, c;

  b = pc_pack_response(base_response(&resp, &st, &vr));
  c = bytes_cat(b, "\x70\x01", 2);
  expect_other(&RESPONSE, "trailing unknown field", c.p, c.len, PC_ACCEPTS);
  free(c.p);
  c = bytes_cat(b, "\xa0\x06\x01", 3);
  expect_other(&RESPONSE, "trailing unknown field 100", c.p, c.len, PC_ACCEPTS);
  free(c.p);
  c = bytes_cat(b, "\x08\x01", 2);
  expect_other(&RESPONSE, "call_id again at the end", c.p, c.len, PC_ACCEPTS);
  free(c.p);
  free(b.p);
  EXPECT_RESPONSE_OTHER("unknown field in verify", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x04, 0x08, 0x01, 0x78, 0x01);
  EXPECT_RESPONSE_OTHER("domain before token_id", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x06, 0x22, 0x01, 'd', 0x1a, 0x01, 't');
  EXPECT_RESPONSE_OTHER("expires_at before a scope", PC_ACCEPTS, 0x12, 0x00,
                        0x22, 0x08, 0x32, 0x01, 'a', 0x38, 0x01, 0x32, 0x01,
                        'b');
  EXPECT_RESPONSE_OTHER("valid twice", PC_ACCEPTS, 0x12, 0x00, 0x22, 0x04, 0x08,
                        0x01, 0x08, 0x01);
  EXPECT_RESPONSE_OTHER("reason before valid", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x04, 0x10, 0x01, 0x08, 0x01);
  EXPECT_RESPONSE_OTHER("label twice", PC_ACCEPTS, 0x12, 0x00, 0x22, 0x06, 0x2a,
                        0x01, 'a', 0x2a, 0x01, 'b');
  EXPECT_RESPONSE_OTHER("call_id after status", PC_ACCEPTS, 0x12, 0x00, 0x08,
                        0x01, 0x22, 0x00);
  /* protobuf-c reads a bool of any wire type (a quirk); vw does not. */
  EXPECT_RESPONSE_OTHER("valid as fixed32", PC_ACCEPTS, 0x12, 0x00, 0x22, 0x05,
                        0x0d, 0x01, 0x00, 0x00, 0x00);
  EXPECT_RESPONSE_OTHER("scope length past the end", PC_REJECTS, 0x12, 0x00,
                        0x22, 0x03, 0x32, 0x05, 'a');
  EXPECT_RESPONSE_OTHER("11-byte expires_at", PC_REJECTS, 0x12, 0x00, 0x22,
                        0x0c, 0x38, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                        0xff, 0xff, 0xff, 0x01);
  EXPECT_RESPONSE_OTHER("10-byte expires_at, last byte 2", PC_ACCEPTS, 0x12,
                        0x00, 0x22, 0x0b, 0x38, 0xff, 0xff, 0xff, 0xff, 0xff,
                        0xff, 0xff, 0xff, 0xff, 0x02);
}

/* As for requests: the canonical shape only. */
static void test_response_decode_overlong_encodings_are_other(void **state) {
  EXPECT_RESPONSE_OTHER("6-byte verify length", PC_REJECTS, 0x12, 0x00, 0x22,
                        0x80, 0x80, 0x80, 0x80, 0x80, 0x00);
  EXPECT_RESPONSE_OTHER("6-byte status length", PC_REJECTS, 0x12, 0x80, 0x80,
                        0x80, 0x80, 0x80, 0x00, 0x22, 0x00);
  EXPECT_RESPONSE_OTHER("6-byte label length", PC_REJECTS, 0x12, 0x00, 0x22,
                        0x07, 0x2a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00);
  EXPECT_RESPONSE_OTHER("2-byte status length", PC_ACCEPTS, 0x12, 0x80, 0x00,
                        0x22, 0x00);
  /* An int32 enum: protobuf-c keeps the low 32 bits of any varint, and
   * writes a negative one in ten bytes. */
  EXPECT_RESPONSE_OTHER("reason -1 in 5 bytes", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x06, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f);
  EXPECT_RESPONSE_OTHER("reason with bits past 32", PC_ACCEPTS, 0x12, 0x00,
                        0x22, 0x08, 0x08, 0x01, 0x10, 0xff, 0xff, 0xff, 0xdf,
                        0x2a);
  EXPECT_RESPONSE_OTHER("reason 1 plus 2^32", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x06, 0x10, 0x81, 0x80, 0x80, 0x80, 0x10);
  EXPECT_RESPONSE_OTHER("2-byte expires_at of 1", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x03, 0x38, 0x81, 0x00);
}

static void test_response_decode_explicit_defaults_are_other(void **state) {
  EXPECT_RESPONSE_OTHER("call_id 0 written", PC_ACCEPTS, 0x08, 0x00, 0x12, 0x00,
                        0x22, 0x00);
  EXPECT_RESPONSE_OTHER("valid false written", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x02, 0x08, 0x00);
  EXPECT_RESPONSE_OTHER("valid written as 2", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x02, 0x08, 0x02);
  EXPECT_RESPONSE_OTHER("reason 0 written", PC_ACCEPTS, 0x12, 0x00, 0x22, 0x02,
                        0x10, 0x00);
  EXPECT_RESPONSE_OTHER("empty token_id written", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x02, 0x1a, 0x00);
  EXPECT_RESPONSE_OTHER("empty domain written", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x02, 0x22, 0x00);
  EXPECT_RESPONSE_OTHER("empty label written", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x02, 0x2a, 0x00);
  EXPECT_RESPONSE_OTHER("expires_at 0 written", PC_ACCEPTS, 0x12, 0x00, 0x22,
                        0x02, 0x38, 0x00);
}

static void check_response_prefixes(const vw_response_t *r) {
  check_prefixes(&RESPONSE, "", pc_verify_response(r, protobuf_c_empty_string));
}

static void test_response_decode_every_prefix(void **state) {
  vw_response_t r;

  memset(&r, 0, sizeof(r));
  r.token_id = r.domain = r.label = vw_cstr("");
  check_response_prefixes(&r);
  r.call_id = 300;
  r.reason = -1;
  r.token_id = vw_cstr("tok_0123456789ABCDEFGHIJ");
  r.domain = vw_cstr("example.com");
  r.label = vw_cstr(long_label);
  set_scopes(&r, 7);
  r.expires_at = INT64_MIN;
  check_response_prefixes(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_encode_matches_protobuf_c),
      cmocka_unit_test(test_request_encode_any_one_byte_token),
      cmocka_unit_test(test_request_decode_actor_is_other),
      cmocka_unit_test(test_request_decode_unknown_fields_are_other),
      cmocka_unit_test(test_request_decode_repeats_and_order_are_other),
      cmocka_unit_test(test_request_decode_other_methods_are_other),
      cmocka_unit_test(test_request_decode_bad_lengths_are_other),
      cmocka_unit_test(test_request_decode_long_varints_are_other),
      cmocka_unit_test(test_request_decode_overlong_encodings_are_other),
      cmocka_unit_test(test_request_decode_explicit_defaults_are_other),
      cmocka_unit_test(test_request_decode_every_prefix),
      cmocka_unit_test(test_request_token_nul_and_invalid_utf8),
      cmocka_unit_test(test_response_encode_matches_protobuf_c),
      cmocka_unit_test(test_response_encode_valid_nonzero_is_true),
      cmocka_unit_test(test_response_decode_status_other_than_ok_is_other),
      cmocka_unit_test(test_response_decode_other_results_are_other),
      cmocka_unit_test(test_response_decode_too_many_scopes_is_other),
      cmocka_unit_test(test_response_decode_unknown_and_misordered_are_other),
      cmocka_unit_test(test_response_decode_overlong_encodings_are_other),
      cmocka_unit_test(test_response_decode_explicit_defaults_are_other),
      cmocka_unit_test(test_response_decode_every_prefix),
  };

  return cmocka_run_group_tests_name("verify_wire", tests, NULL, NULL);
}
