#include "verify_wire.h"

#include <string.h>

/* Field tags (field number << 3 | wire type); all fit in one byte. */
enum {
  WT_VARINT = 0,
  WT_LEN = 2,
};
#define TAG(field, wt) ((uint8_t)(((field) << 3) | (wt)))

/* tokend.v1.Request */
#define REQ_CALL_ID TAG(1, WT_VARINT)
#define REQ_VERIFY TAG(3, WT_LEN)
/* tokend.v1.VerifyRequest */
#define VREQ_TOKEN TAG(1, WT_LEN)
/* tokend.v1.Response */
#define RESP_CALL_ID TAG(1, WT_VARINT)
#define RESP_STATUS TAG(2, WT_LEN)
#define RESP_VERIFY TAG(4, WT_LEN)
/* tokend.v1.VerifyResponse */
#define VRESP_VALID TAG(1, WT_VARINT)
#define VRESP_REASON TAG(2, WT_VARINT)
#define VRESP_TOKEN_ID TAG(3, WT_LEN)
#define VRESP_DOMAIN TAG(4, WT_LEN)
#define VRESP_LABEL TAG(5, WT_LEN)
#define VRESP_SCOPES TAG(6, WT_LEN)
#define VRESP_EXPIRES_AT TAG(7, WT_VARINT)
#define VRESP_METADATA TAG(8, WT_LEN)

/* ---- encoding ---- */

static size_t varint_size(uint64_t v) {
  size_t n = 1;

  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static size_t varint_put(uint8_t *out, uint64_t v) {
  size_t n = 0;

  while (v >= 0x80) {
    out[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (uint8_t)v;
  return n;
}

/* tag + length + bytes */
static size_t len_field_size(size_t len) { return 1 + varint_size(len) + len; }

static size_t len_field_put(uint8_t *out, uint8_t tag, const void *p,
                            size_t len) {
  size_t n;

  out[0] = tag;
  n = 1 + varint_put(out + 1, len);
  memcpy(out + n, p, len);
  return n + len;
}

/* proto3 leaves out a string that is empty (protobuf-c: NULL or ""). */
static size_t opt_str_size(vw_str_t s) {
  return s.len > 0 ? len_field_size(s.len) : 0;
}

static size_t opt_str_put(uint8_t *out, uint8_t tag, vw_str_t s) {
  return s.len > 0 ? len_field_put(out, tag, s.p, s.len) : 0;
}

static size_t vreq_size(size_t token_len) {
  return token_len > 0 ? len_field_size(token_len) : 0;
}

size_t vw_request_size(uint64_t call_id, size_t token_len) {
  size_t n = call_id != 0 ? 1 + varint_size(call_id) : 0;

  /* A oneof member is written even when its message is empty. */
  return n + len_field_size(vreq_size(token_len));
}

size_t vw_request_encode(uint8_t *out, uint64_t call_id, const char *token,
                         size_t token_len) {
  size_t n = 0;

  if (call_id != 0) {
    out[n++] = REQ_CALL_ID;
    n += varint_put(out + n, call_id);
  }
  out[n++] = REQ_VERIFY;
  n += varint_put(out + n, vreq_size(token_len));
  if (token_len > 0)
    n += len_field_put(out + n, VREQ_TOKEN, token, token_len);
  return n;
}

static size_t vresp_size(const vw_response_t *r) {
  size_t n = 0, i;

  if (r->valid)
    n += 2;
  if (r->reason != 0)
    n += 1 + varint_size((uint64_t)(int64_t)r->reason);
  n += opt_str_size(r->token_id);
  n += opt_str_size(r->domain);
  n += opt_str_size(r->label);
  /* Repeated strings: every element, even an empty one. */
  for (i = 0; i < r->n_scopes; i++)
    n += len_field_size(r->scopes[i].len);
  if (r->expires_at != 0)
    n += 1 + varint_size((uint64_t)r->expires_at);
  n += opt_str_size(r->metadata);
  return n;
}

size_t vw_response_size(const vw_response_t *r) {
  size_t n = r->call_id != 0 ? 1 + varint_size(r->call_id) : 0;

  n += 2; /* status: present, code 0 and no message, so empty */
  return n + len_field_size(vresp_size(r));
}

size_t vw_response_encode(uint8_t *out, const vw_response_t *r) {
  size_t n = 0, i;

  if (r->call_id != 0) {
    out[n++] = RESP_CALL_ID;
    n += varint_put(out + n, r->call_id);
  }
  out[n++] = RESP_STATUS;
  out[n++] = 0;
  out[n++] = RESP_VERIFY;
  n += varint_put(out + n, vresp_size(r));
  if (r->valid) {
    out[n++] = VRESP_VALID;
    out[n++] = 1;
  }
  if (r->reason != 0) {
    /* An enum is an int32: a negative one takes ten bytes. */
    out[n++] = VRESP_REASON;
    n += varint_put(out + n, (uint64_t)(int64_t)r->reason);
  }
  n += opt_str_put(out + n, VRESP_TOKEN_ID, r->token_id);
  n += opt_str_put(out + n, VRESP_DOMAIN, r->domain);
  n += opt_str_put(out + n, VRESP_LABEL, r->label);
  for (i = 0; i < r->n_scopes; i++)
    n += len_field_put(out + n, VRESP_SCOPES, r->scopes[i].p, r->scopes[i].len);
  if (r->expires_at != 0) {
    out[n++] = VRESP_EXPIRES_AT;
    n += varint_put(out + n, (uint64_t)r->expires_at);
  }
  n += opt_str_put(out + n, VRESP_METADATA, r->metadata);
  return n;
}

/* ---- decoding ---- */

typedef struct {
  const uint8_t *p, *end;
} cursor_t;

/* A varint of at most 10 bytes whose value fits 64 bits, in its shortest
 * form (what varint_put writes); 0 if not. protobuf-c refuses a length
 * prefix longer than 5 bytes, so a longer form must never be VW_VERIFY. */
static int get_varint(cursor_t *c, uint64_t *out) {
  uint64_t v = 0;
  unsigned shift;

  for (shift = 0; shift < 64 && c->p < c->end; shift += 7) {
    uint8_t b = *c->p++;
    /* The tenth byte may carry only the top bit of a 64-bit value. */
    if (shift == 63 && b > 1)
      return 0;
    v |= (uint64_t)(b & 0x7F) << shift;
    if ((b & 0x80) == 0) {
      if (b == 0 && shift > 0)
        return 0; /* a longer form than needed */
      *out = v;
      return 1;
    }
  }
  return 0;
}

/* A length-delimited payload; bounds checked before any pointer moves. */
static int get_len(cursor_t *c, cursor_t *payload) {
  uint64_t len;

  if (!get_varint(c, &len) || len > (uint64_t)(c->end - c->p))
    return 0;
  payload->p = c->p;
  payload->end = c->p + len;
  c->p += len;
  return 1;
}

/* Consumes tag if it is next. */
static int next_is(cursor_t *c, uint8_t tag) {
  if (c->p < c->end && *c->p == tag) {
    c->p++;
    return 1;
  }
  return 0;
}

/* proto3 writes no scalar that holds its default. */
static int get_nonzero_varint(cursor_t *c, uint64_t *out) {
  return get_varint(c, out) && *out != 0;
}

static int get_str(cursor_t *c, vw_str_t *out) {
  cursor_t s;

  if (!get_len(c, &s))
    return 0;
  out->p = (const char *)s.p;
  out->len = (size_t)(s.end - s.p);
  return 1;
}

/* A singular string: proto3 leaves out an empty one. */
static int get_nonempty_str(cursor_t *c, vw_str_t *out) {
  return get_str(c, out) && out->len > 0;
}

vw_result_t vw_request_decode(const uint8_t *body, size_t len,
                              vw_request_t *out) {
  cursor_t c = {body, body + len}, v;
  vw_str_t tok = {"", 0};

  out->call_id = 0;
  if (next_is(&c, REQ_CALL_ID) && !get_nonzero_varint(&c, &out->call_id))
    return VW_OTHER;
  if (!next_is(&c, REQ_VERIFY) || !get_len(&c, &v))
    return VW_OTHER;
  /* Anything after the verify member (an actor, unknown fields, a second
   * method) is protobuf-c's to interpret. */
  if (c.p != c.end)
    return VW_OTHER;
  if (next_is(&v, VREQ_TOKEN) && !get_nonempty_str(&v, &tok))
    return VW_OTHER;
  if (v.p != v.end)
    return VW_OTHER;
  out->token = tok.p;
  out->token_len = tok.len;
  return VW_VERIFY;
}

vw_result_t vw_response_decode(const uint8_t *body, size_t len,
                               vw_response_t *out) {
  cursor_t c = {body, body + len}, st, v;
  uint64_t x;

  /* Field by field: scopes[] (most of the struct) is written only as far
   * as n_scopes says. */
  out->call_id = 0;
  out->valid = out->reason = 0;
  out->token_id.p = out->domain.p = out->label.p = "";
  out->token_id.len = out->domain.len = out->label.len = 0;
  out->n_scopes = 0;
  out->expires_at = 0;
  out->metadata.p = "";
  out->metadata.len = 0;
  if (next_is(&c, RESP_CALL_ID) && !get_nonzero_varint(&c, &out->call_id))
    return VW_OTHER;
  /* Status present and empty (code 0, no message); else it is an error
   * and protobuf-c reads it. */
  if (!next_is(&c, RESP_STATUS) || !get_len(&c, &st) || st.p != st.end)
    return VW_OTHER;
  if (!next_is(&c, RESP_VERIFY) || !get_len(&c, &v) || c.p != c.end)
    return VW_OTHER;
  if (next_is(&v, VRESP_VALID)) {
    /* protobuf-c writes true as 1 and leaves false out. */
    if (!get_varint(&v, &x) || x != 1)
      return VW_OTHER;
    out->valid = 1;
  }
  if (next_is(&v, VRESP_REASON)) {
    /* An int32: protobuf-c writes a negative one sign-extended to ten
     * bytes, and reads any varint as its low 32 bits. */
    if (!get_nonzero_varint(&v, &x) ||
        x != (uint64_t)(int64_t)(int32_t)(uint32_t)x)
      return VW_OTHER;
    out->reason = (int)(int32_t)(uint32_t)x;
  }
  if ((next_is(&v, VRESP_TOKEN_ID) && !get_nonempty_str(&v, &out->token_id)) ||
      (next_is(&v, VRESP_DOMAIN) && !get_nonempty_str(&v, &out->domain)) ||
      (next_is(&v, VRESP_LABEL) && !get_nonempty_str(&v, &out->label)))
    return VW_OTHER;
  while (next_is(&v, VRESP_SCOPES)) {
    if (out->n_scopes == TOKEND_MAX_SCOPES ||
        !get_str(&v, &out->scopes[out->n_scopes]))
      return VW_OTHER;
    out->n_scopes++;
  }
  if (next_is(&v, VRESP_EXPIRES_AT)) {
    if (!get_nonzero_varint(&v, &x))
      return VW_OTHER;
    out->expires_at = (int64_t)x;
  }
  if (next_is(&v, VRESP_METADATA) && !get_nonempty_str(&v, &out->metadata))
    return VW_OTHER;
  return v.p == v.end ? VW_VERIFY : VW_OTHER;
}
