/* fuzz_verify_wire: libFuzzer differential target for common/verify_wire
 * against protobuf-c (the generated tokend.pb-c.c), which it must agree
 * with on every input.
 *
 * The input is read as fuzz_frame reads it (the corpus is shared): one
 * byte, then a stream of frames, the last one cut to what remains. Each
 * frame body, and the whole input too, is checked both as a Request and as
 * a Response:
 * - soundness: when vw_*_decode says VW_VERIFY, protobuf-c must read the
 *   same message (a Verify, actor "" or status {0, ""}, nothing unknown,
 *   every field equal, token bytes included), and vw_*_encode of what was
 *   decoded must give back exactly the body: only the canonical shape is
 *   ever VW_VERIFY;
 * - completeness: when protobuf-c reads a plain Verify with nothing unknown
 *   and packs it back to exactly the body, vw_*_decode must say VW_VERIFY;
 * - encoders: for any Verify protobuf-c reads, vw_*_size and vw_*_encode of
 *   the same values must equal protobuf-c's get_packed_size and pack.
 * The input is also taken as the values of a Request and of a Response
 * (integers from its first bytes, strings from the rest), which reaches
 * every varint and length size directly: their encodings must equal
 * protobuf-c's, and go through the checks above.
 * Bodies are heap copies of exactly their size, so ASan sees any read past
 * the end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.pb-c.h"
#include "tokend_limits.h"
#include "verify_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_verify_wire: %s:%d: ", __FILE__, __LINE__);        \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static uint8_t *xmalloc(size_t n) {
  uint8_t *p = malloc(n > 0 ? n : 1);

  FUZZ_CHECK(p != NULL, "out of memory");
  return p;
}

static int bytes_equal(const uint8_t *a, size_t a_len, const uint8_t *b,
                       size_t b_len) {
  return a_len == b_len && memcmp(a, b, a_len) == 0;
}

/* protobuf-c's string s holds exactly v: its buffer has v's bytes and then
 * the NUL protobuf-c adds (it allocates the wire length + 1, so a string
 * shorter than v is an ASan report here). p may be NULL when len is 0. */
static int pc_str_is(const char *s, const char *p, size_t len) {
  return (len == 0 || memcmp(s, p, len) == 0) && s[len] == '\0';
}

static int vw_str_equal(vw_str_t a, vw_str_t b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static vw_str_t pc_str(const char *s) {
  vw_str_t v = {s, strlen(s)};
  return v;
}

/* ---- requests ---- */

/* vw_request_size and vw_request_encode of (call_id, tok[0..len)) must
 * equal protobuf-c's get_packed_size and pack of the same Request; returns
 * the bytes (the caller frees them). protobuf-c takes NUL-terminated
 * strings, so a token holding NULs is packed with each NUL replaced by 'N';
 * the token is the last field and the wire copies string bytes as they
 * are, so its real bytes are then put back at the end. */
static uint8_t *check_request_encode(uint64_t call_id, const char *tok,
                                     size_t len, size_t *out_len) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  char *copy = (char *)xmalloc(len + 1);
  uint8_t *pc, *vw;
  size_t pc_len, vw_len, i;

  for (i = 0; i < len; i++)
    copy[i] = tok[i] != '\0' ? tok[i] : 'N';
  copy[len] = '\0';
  vr.token = copy;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  pc_len = tokend__v1__request__get_packed_size(&req);
  pc = xmalloc(pc_len);
  FUZZ_CHECK(tokend__v1__request__pack(&req, pc) == pc_len && pc_len >= len &&
                 memcmp(pc + pc_len - len, copy, len) == 0,
             "protobuf-c packed other than its size, or the token not last");
  memcpy(pc + pc_len - len, tok, len);
  free(copy);

  vw_len = vw_request_size(call_id, len);
  FUZZ_CHECK(vw_len == pc_len,
             "vw_request_size %zu, protobuf-c %zu (call_id %llu, token of "
             "%zu bytes)",
             vw_len, pc_len, (unsigned long long)call_id, len);
  vw = xmalloc(vw_len);
  FUZZ_CHECK(vw_request_encode(vw, call_id, tok, len) == vw_len &&
                 memcmp(vw, pc, pc_len) == 0,
             "vw_request_encode differs from protobuf-c's pack (call_id %llu, "
             "token of %zu bytes)",
             (unsigned long long)call_id, len);
  free(pc);
  *out_len = vw_len;
  return vw;
}

static void check_request(const uint8_t *body, size_t len) {
  Tokend__V1__Request *req = tokend__v1__request__unpack(NULL, len, body);
  int plain, canonical = 0;
  uint8_t *pc, *vw;
  size_t pc_len, vw_len;
  vw_request_t d;
  vw_result_t r = vw_request_decode(body, len, &d);

  plain = req != NULL &&
          req->method_case == TOKEND__V1__REQUEST__METHOD_VERIFY &&
          req->actor[0] == '\0' && req->base.n_unknown_fields == 0 &&
          req->verify->base.n_unknown_fields == 0 &&
          /* Hits a caching client reports (issue 15) take protobuf-c's
           * path: the hand-written codec knows the token alone. */
          req->verify->cached_hits == 0;
  if (plain) {
    pc = xmalloc(tokend__v1__request__get_packed_size(req));
    pc_len = tokend__v1__request__pack(req, pc);
    canonical = bytes_equal(pc, pc_len, body, len);
    free(pc);
  }

  if (r == VW_VERIFY) {
    FUZZ_CHECK(req != NULL,
               "VW_VERIFY for a %zu-byte Request protobuf-c rejects", len);
    FUZZ_CHECK(plain,
               "VW_VERIFY for a Request protobuf-c reads as method %d, actor "
               "\"%s\", %u unknown fields",
               (int)req->method_case, req->actor, req->base.n_unknown_fields);
    FUZZ_CHECK(req->call_id == d.call_id, "call_id %llu, protobuf-c %llu",
               (unsigned long long)d.call_id, (unsigned long long)req->call_id);
    FUZZ_CHECK(pc_str_is(req->verify->token, d.token, d.token_len),
               "the token (%zu bytes) differs from protobuf-c's", d.token_len);
    /* Only the canonical shape: re-encoding gives the body back. */
    vw = check_request_encode(d.call_id, d.token, d.token_len, &vw_len);
    FUZZ_CHECK(bytes_equal(vw, vw_len, body, len),
               "VW_VERIFY for a %zu-byte Request that re-encodes to other "
               "bytes (%zu): not canonical",
               len, vw_len);
    free(vw);
  }
  FUZZ_CHECK(!canonical || r == VW_VERIFY,
             "VW_OTHER for a canonical %zu-byte Verify Request", len);

  if (req != NULL && req->method_case == TOKEND__V1__REQUEST__METHOD_VERIFY) {
    vw = check_request_encode(req->call_id, req->verify->token,
                              strlen(req->verify->token), &vw_len);
    free(vw);
  }
  if (req != NULL)
    tokend__v1__request__free_unpacked(req, NULL);
}

/* ---- responses ---- */

/* vw_response_size and vw_response_encode of r must equal protobuf-c's
 * get_packed_size and pack of the same Response (status {0, ""}); r's
 * strings must be NUL-terminated with no NUL inside. Returns the bytes (the
 * caller frees them). */
static uint8_t *check_response_encode(const vw_response_t *r, size_t *out_len) {
  Tokend__V1__Response out = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status st = TOKEND__V1__STATUS__INIT;
  Tokend__V1__VerifyResponse vr = TOKEND__V1__VERIFY_RESPONSE__INIT;
  char *scopes[TOKEND_MAX_SCOPES];
  uint8_t *pc, *vw;
  size_t pc_len, vw_len, i;

  vr.valid = r->valid != 0;
  vr.reason = (Tokend__V1__InvalidReason)r->reason;
  vr.token_id = (char *)r->token_id.p;
  vr.domain = (char *)r->domain.p;
  vr.label = (char *)r->label.p;
  for (i = 0; i < r->n_scopes; i++)
    scopes[i] = (char *)r->scopes[i].p;
  vr.n_scopes = r->n_scopes;
  vr.scopes = scopes;
  vr.expires_at = r->expires_at;
  vr.metadata = r->metadata.len > 0 ? (char *)r->metadata.p : "";
  out.call_id = r->call_id;
  out.status = &st;
  out.result_case = TOKEND__V1__RESPONSE__RESULT_VERIFY;
  out.verify = &vr;
  pc_len = tokend__v1__response__get_packed_size(&out);
  pc = xmalloc(pc_len);
  FUZZ_CHECK(tokend__v1__response__pack(&out, pc) == pc_len,
             "protobuf-c packed other than its size");
  vw_len = vw_response_size(r);
  FUZZ_CHECK(vw_len == pc_len, "vw_response_size %zu, protobuf-c %zu", vw_len,
             pc_len);
  vw = xmalloc(vw_len);
  FUZZ_CHECK(vw_response_encode(vw, r) == vw_len && memcmp(vw, pc, pc_len) == 0,
             "vw_response_encode differs from protobuf-c's pack");
  free(pc);
  *out_len = vw_len;
  return vw;
}

static void check_response_fields(const Tokend__V1__Response *resp,
                                  const vw_response_t *d) {
  const Tokend__V1__VerifyResponse *v = resp->verify;
  size_t i;

  FUZZ_CHECK(resp->call_id == d->call_id, "call_id %llu, protobuf-c %llu",
             (unsigned long long)d->call_id, (unsigned long long)resp->call_id);
  FUZZ_CHECK((v->valid != 0) == (d->valid != 0), "valid %d, protobuf-c %d",
             d->valid, (int)v->valid);
  FUZZ_CHECK((int)v->reason == d->reason, "reason %d, protobuf-c %d", d->reason,
             (int)v->reason);
  FUZZ_CHECK(pc_str_is(v->token_id, d->token_id.p, d->token_id.len),
             "token_id differs from protobuf-c's");
  FUZZ_CHECK(pc_str_is(v->domain, d->domain.p, d->domain.len),
             "domain differs from protobuf-c's");
  FUZZ_CHECK(pc_str_is(v->label, d->label.p, d->label.len),
             "label differs from protobuf-c's");
  FUZZ_CHECK(v->n_scopes == d->n_scopes, "%zu scopes, protobuf-c %zu",
             d->n_scopes, v->n_scopes);
  for (i = 0; i < d->n_scopes; i++)
    FUZZ_CHECK(pc_str_is(v->scopes[i], d->scopes[i].p, d->scopes[i].len),
               "scope %zu differs from protobuf-c's", i);
  FUZZ_CHECK(v->expires_at == d->expires_at, "expires_at %lld, protobuf-c %lld",
             (long long)d->expires_at, (long long)v->expires_at);
  FUZZ_CHECK(pc_str_is(v->metadata, d->metadata.p, d->metadata.len),
             "metadata differs from protobuf-c's");
}

/* d's encoding must be exactly body[0..len); d's strings point into body
 * and may hold NULs, so this compares with vw's own encoder (itself checked
 * against protobuf-c on every Verify protobuf-c reads). */
static void check_response_canonical(const vw_response_t *d,
                                     const uint8_t *body, size_t len) {
  size_t vw_len = vw_response_size(d);
  uint8_t *vw;

  FUZZ_CHECK(vw_len == len,
             "VW_VERIFY for a %zu-byte Response that re-encodes to %zu "
             "bytes: not canonical",
             len, vw_len);
  vw = xmalloc(vw_len);
  FUZZ_CHECK(vw_response_encode(vw, d) == vw_len && memcmp(vw, body, len) == 0,
             "VW_VERIFY for a Response that re-encodes to other bytes: not "
             "canonical");
  free(vw);
}

static void check_response(const uint8_t *body, size_t len) {
  Tokend__V1__Response *resp = tokend__v1__response__unpack(NULL, len, body);
  const Tokend__V1__VerifyResponse *v;
  int is_verify, plain, canonical = 0;
  uint8_t *pc;
  size_t pc_len, i;
  vw_response_t d, e;
  vw_result_t r = vw_response_decode(body, len, &d);

  is_verify =
      resp != NULL && resp->result_case == TOKEND__V1__RESPONSE__RESULT_VERIFY;
  plain = is_verify && resp->status != NULL && resp->status->code == 0 &&
          resp->status->message[0] == '\0' &&
          resp->status->base.n_unknown_fields == 0 &&
          resp->base.n_unknown_fields == 0 &&
          resp->verify->base.n_unknown_fields == 0 &&
          resp->verify->n_scopes <= TOKEND_MAX_SCOPES;
  if (plain) {
    pc = xmalloc(tokend__v1__response__get_packed_size(resp));
    pc_len = tokend__v1__response__pack(resp, pc);
    canonical = bytes_equal(pc, pc_len, body, len);
    free(pc);
  }

  if (r == VW_VERIFY) {
    FUZZ_CHECK(resp != NULL,
               "VW_VERIFY for a %zu-byte Response protobuf-c rejects", len);
    FUZZ_CHECK(is_verify, "VW_VERIFY for a Response with result %d",
               (int)resp->result_case);
    FUZZ_CHECK(resp->status == NULL || (resp->status->code == 0 &&
                                        resp->status->message[0] == '\0'),
               "VW_VERIFY for a Response with status code %d",
               (int)resp->status->code);
    FUZZ_CHECK(plain, "VW_VERIFY for a Response protobuf-c reads with "
                      "unknown fields, a status message or too many scopes");
    check_response_fields(resp, &d);
    check_response_canonical(&d, body, len);
  }
  FUZZ_CHECK(!canonical || r == VW_VERIFY,
             "VW_OTHER for a canonical %zu-byte Verify Response", len);

  /* vw encodes whatever Verify protobuf-c read as protobuf-c packs it. */
  if (is_verify && resp->verify->n_scopes <= TOKEND_MAX_SCOPES) {
    v = resp->verify;
    memset(&e, 0, sizeof(e));
    e.call_id = resp->call_id;
    e.valid = v->valid;
    e.reason = (int)v->reason;
    e.token_id = pc_str(v->token_id);
    e.domain = pc_str(v->domain);
    e.label = pc_str(v->label);
    e.n_scopes = v->n_scopes;
    for (i = 0; i < v->n_scopes; i++)
      e.scopes[i] = pc_str(v->scopes[i]);
    e.expires_at = v->expires_at;
    e.metadata = pc_str(v->metadata);
    free(check_response_encode(&e, &pc_len));
  }
  if (resp != NULL)
    tokend__v1__response__free_unpacked(resp, NULL);
}

static void check_body(const uint8_t *p, size_t len) {
  uint8_t *copy = xmalloc(len);

  memcpy(copy, p, len);
  check_request(copy, len);
  check_response(copy, len);
  free(copy);
}

/* ---- the input as values ---- */

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  int i;

  for (i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

/* The input as a Request: call_id from bytes 1-8, shifted right by byte 0
 * (so small values are common), and the rest as the token. Its encoding
 * must equal protobuf-c's and read back as the same values. */
static void check_values_as_request(const uint8_t *data, size_t size) {
  uint64_t call_id;
  const char *tok;
  size_t len, n;
  uint8_t *body;
  vw_request_t d;

  if (size < 9)
    return;
  call_id = le64(data + 1) >> (data[0] & 63);
  tok = (const char *)data + 9;
  len = size - 9;
  body = check_request_encode(call_id, tok, len, &n);
  FUZZ_CHECK(vw_request_decode(body, n, &d) == VW_VERIFY &&
                 d.call_id == call_id && d.token_len == len &&
                 (len == 0 || memcmp(d.token, tok, len) == 0),
             "a Request of call_id %llu, token of %zu bytes, does not read "
             "back",
             (unsigned long long)call_id, len);
  check_request(body, n);
  free(body);
}

/* The input as a Response: call_id, valid, reason and expires_at from its
 * first 22 bytes, then strings cut at each NUL: token_id, domain, label,
 * metadata and up to TOKEND_MAX_SCOPES scopes. */
static void check_values_as_response(const uint8_t *data, size_t size) {
  vw_response_t r, d;
  vw_str_t *strs[4];
  char *rest;
  size_t rest_len, off, n, i, k = 0;
  uint8_t *body;

  if (size < 22)
    return;
  memset(&r, 0, sizeof(r));
  r.call_id = le64(data + 2) >> (data[0] & 63);
  r.valid = data[1] & 1;
  r.reason = (int)(int32_t)(uint32_t)le64(data + 10);
  if (data[1] & 2)
    r.reason %= 8; /* small, as the real ones are */
  r.expires_at =
      (int64_t)le64(data + 14) / ((int64_t)1 << ((data[1] >> 2) % 63));
  r.token_id = r.domain = r.label = r.metadata = pc_str("");

  /* A NUL-terminated copy, so that protobuf-c can take the strings. */
  rest_len = size - 22;
  rest = (char *)xmalloc(rest_len + 1);
  memcpy(rest, data + 22, rest_len);
  rest[rest_len] = '\0';
  strs[0] = &r.token_id;
  strs[1] = &r.domain;
  strs[2] = &r.label;
  strs[3] = &r.metadata;
  for (off = 0; off < rest_len && k < 4 + TOKEND_MAX_SCOPES; off += n + 1) {
    n = strlen(rest + off);
    if (k < 4)
      *strs[k] = pc_str(rest + off);
    else
      r.scopes[r.n_scopes++] = pc_str(rest + off);
    k++;
  }

  body = check_response_encode(&r, &n);
  FUZZ_CHECK(vw_response_decode(body, n, &d) == VW_VERIFY,
             "a %zu-byte Response vw encoded does not decode", n);
  FUZZ_CHECK(d.call_id == r.call_id && d.valid == (r.valid != 0) &&
                 d.reason == r.reason && d.expires_at == r.expires_at &&
                 d.n_scopes == r.n_scopes,
             "a Response does not read back as its values");
  FUZZ_CHECK(vw_str_equal(d.token_id, r.token_id) &&
                 vw_str_equal(d.domain, r.domain) &&
                 vw_str_equal(d.label, r.label) &&
                 vw_str_equal(d.metadata, r.metadata),
             "a Response's strings do not read back");
  for (i = 0; i < r.n_scopes; i++)
    FUZZ_CHECK(vw_str_equal(d.scopes[i], r.scopes[i]),
               "scope %zu does not read back", i);
  check_response(body, n);
  free(body);
  free(rest);
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off = 1, n;

  check_body(data, size);
  /* The peer byte, then frames (whatever their flag byte says). */
  while (size > off && size - off >= TOKEND_FRAME_HEADER_BYTES) {
    n = be32(data + off + 1);
    off += TOKEND_FRAME_HEADER_BYTES;
    if (n > size - off)
      n = size - off;
    check_body(data + off, n);
    off += n;
  }
  check_values_as_request(data, size);
  check_values_as_response(data, size);
  return 0;
}
