/* verify_wire: a hand-written codec for the one call on the hot path, a
 * Verify, without protobuf-c's reflection (which cost about a fifth of the
 * server's CPU per Verify).
 *
 * Encoders write exactly the bytes protobuf-c's pack writes for the same
 * message (tests/unit/common/test_verify_wire.c checks this byte for byte).
 * Decoders accept only the canonical shape an encoder writes: each known
 * field at most once, in field-number order, no field holding its default,
 * every varint in its shortest form, nothing else. Anything else,
 * even if valid protobuf (unknown fields, repeats, other order, an actor,
 * overlong tags), is VW_OTHER: the caller hands it to protobuf-c, so what a
 * message means never depends on which decoder read it.
 *
 * Pure code: no allocation, no I/O. Decoded strings point into the body and
 * are not NUL-terminated; they may contain any bytes. */
#ifndef TOKEND_VERIFY_WIRE_H
#define TOKEND_VERIFY_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tokend_limits.h"

typedef enum {
  VW_OTHER = 0, /* not (only) a plain Verify: use protobuf-c */
  VW_VERIFY = 1 /* decoded */
} vw_result_t;

/* A tokend.v1.Request whose method is verify and that sets no actor. */
typedef struct {
  uint64_t call_id;
  const char *token; /* into the body; not NUL-terminated */
  size_t token_len;
} vw_request_t;

/* A string that is not NUL-terminated. */
typedef struct {
  const char *p;
  size_t len;
} vw_str_t;

/* A NUL-terminated string as a vw_str_t. */
static inline vw_str_t vw_cstr(const char *s) {
  vw_str_t v = {s, strlen(s)};

  return v;
}

/* A tokend.v1.Response with status code 0 and result verify. */
typedef struct {
  uint64_t call_id;
  int valid;
  int reason; /* tokend.v1.InvalidReason */
  vw_str_t token_id, domain, label;
  vw_str_t scopes[TOKEND_MAX_SCOPES];
  size_t n_scopes;
  int64_t expires_at;
  vw_str_t metadata; /* VerifyResponse.metadata (issue 17); len 0: none */
} vw_response_t;

/* Bytes vw_request_encode writes (the body, without the frame header). */
size_t vw_request_size(uint64_t call_id, size_t token_len);
/* Writes the body of a Verify Request into out (vw_request_size bytes);
 * returns the count. */
size_t vw_request_encode(uint8_t *out, uint64_t call_id, const char *token,
                         size_t token_len);
vw_result_t vw_request_decode(const uint8_t *body, size_t len,
                              vw_request_t *out);

size_t vw_response_size(const vw_response_t *r);
/* Writes the body of a Verify Response (status present, code 0, no
 * message) into out (vw_response_size bytes); returns the count. */
size_t vw_response_encode(uint8_t *out, const vw_response_t *r);
/* VW_VERIFY only for a Response whose status is present with code 0 and no
 * message, and whose result is verify, in canonical shape. out->scopes
 * past out->n_scopes are left as they were. */
vw_result_t vw_response_decode(const uint8_t *body, size_t len,
                               vw_response_t *out);

#endif
