/* fuzz_frame: libFuzzer target for the pure input code, without a loop or a
 * store, so it runs at far more inputs per second than fuzz_server.
 *
 * The input is read as fuzz_server reads it (the corpus is shared): one
 * byte, then a stream of frames.
 * - frame_decode() must agree with a reference reading of the header, for
 *   two maximum sizes, and every shorter prefix of a whole frame must be
 *   NEED_MORE with the right size;
 * - each frame body is decoded as a Request into an arena with a small cap,
 *   which must never hand out more than its cap, also when driven directly
 *   with sizes read from the input;
 * - every string a decoded Request carries, and the raw input cut at NULs,
 *   goes through token_check, token_id_check and validate_domain, _label,
 *   _scope and _user, whose verdicts must equal simple reference
 *   implementations written from the rules in README.md, and through
 *   validate_copy_utf8, which must never cut a character;
 * - validate_escape_excerpt() of the input must fit its buffer, hold only
 *   printable ASCII, and unescape to a prefix of the input.
 * Buffers are heap copies of exactly the input's size, so ASan sees any read
 * past the end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "pb_arena.h"
#include "token.h"
#include "tokend.pb-c.h"
#include "tokend_limits.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small enough that inputs of a few KiB reach it. */
#define FUZZ_ARENA_CAP 4096
#define FUZZ_MAX_STRINGS 16

#define FUZZ_CHECK(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_frame: %s:%d: ", __FILE__, __LINE__);              \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* ---- reference implementations, written from the documented rules ---- */

static int ref_is_base62(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
         (c >= 'a' && c <= 'z');
}

static int ref_charset_ok(const char *s, size_t max, const char *extra) {
  size_t n = strlen(s), i;

  if (n < 1 || n > max)
    return 0;
  for (i = 0; i < n; i++)
    if (!ref_is_base62((unsigned char)s[i]) && strchr(extra, s[i]) == NULL)
      return 0;
  return 1;
}

/* ... and no trailing dot (README: Protocol, Issue). */
static int ref_domain_ok(const char *s) {
  return ref_charset_ok(s, TOKEND_DOMAIN_MAX_CHARS, "._:-") &&
         s[strlen(s) - 1] != '.';
}

static int ref_scope_ok(const char *s) {
  return ref_charset_ok(s, TOKEND_SCOPE_MAX_CHARS, "._:/-");
}

/* A user is also never token-shaped: a '_' and then 20 or more letters and
 * digits to the end. */
static int ref_token_shaped(const char *s) {
  const char *u = strrchr(s, '_');
  size_t n;

  if (u == NULL)
    return 0;
  n = strlen(u + 1);
  return n >= 20 &&
         strspn(u + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                       "0123456789") == n;
}

static int ref_user_ok(const char *s) {
  return ref_charset_ok(s, TOKEND_USER_MAX_CHARS, "._@:+-") &&
         !ref_token_shaped(s);
}

/* Well-formed UTF-8 per the Unicode standard's table of byte sequences. */
static size_t ref_utf8_len(const unsigned char *s, uint32_t *cp) {
  unsigned char b0 = s[0];
  unsigned char lo = 0x80, hi = 0xBF;
  size_t n, i;

  if (b0 <= 0x7F) {
    *cp = b0;
    return 1;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF)
    n = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF)
    n = 3;
  else if (b0 >= 0xF0 && b0 <= 0xF4)
    n = 4;
  else
    return 0;
  if (b0 == 0xE0)
    lo = 0xA0;
  else if (b0 == 0xED)
    hi = 0x9F;
  else if (b0 == 0xF0)
    lo = 0x90;
  else if (b0 == 0xF4)
    hi = 0x8F;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xBF)
      return 0;
  *cp = b0 & (n == 2 ? 0x1Fu : n == 3 ? 0x0Fu : 0x07u);
  for (i = 1; i < n; i++)
    *cp = *cp << 6 | (s[i] & 0x3Fu);
  return n;
}

static int ref_utf8_ok(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n;
  uint32_t cp;

  for (; *p != '\0'; p += n)
    if ((n = ref_utf8_len(p, &cp)) == 0)
      return 0;
  return 1;
}

static int ref_label_ok(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t chars = 0, n;
  uint32_t cp;

  while (*p != '\0') {
    n = ref_utf8_len(p, &cp);
    if (n == 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F))
      return 0;
    p += n;
    chars++;
  }
  return chars >= 1 && chars <= TOKEND_LABEL_MAX_CHARS;
}

/* CRC-32 (IEEE), table driven, independent of token_crc32(). */
static uint32_t ref_crc32(const uint8_t *buf, size_t len) {
  static uint32_t table[256];
  static int ready;
  uint32_t c;
  size_t i;
  int k;

  if (!ready) {
    for (i = 0; i < 256; i++) {
      c = (uint32_t)i;
      for (k = 0; k < 8; k++)
        c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = 1;
  }
  c = 0xFFFFFFFFu;
  for (i = 0; i < len; i++)
    c = table[(c ^ buf[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

static int ref_token_ok(const char *tok, size_t len) {
  static const char digits[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  const size_t tail = 1 + TOKEND_TOKEN_BODY_CHARS + TOKEND_TOKEN_CHECKSUM_CHARS;
  const char *us;
  size_t plen, i;
  uint32_t crc;

  us = memchr(tok, '_', len);
  if (us == NULL)
    return 0;
  plen = (size_t)(us - tok);
  if (plen < 1 || plen > TOKEND_PREFIX_MAX_CHARS || len - plen != tail)
    return 0;
  for (i = 0; i < plen; i++)
    if (!((tok[i] >= 'a' && tok[i] <= 'z') || (tok[i] >= '0' && tok[i] <= '9')))
      return 0;
  for (i = plen + 1; i < len; i++)
    if (!ref_is_base62((unsigned char)tok[i]))
      return 0;
  crc = ref_crc32((const uint8_t *)tok, len - TOKEND_TOKEN_CHECKSUM_CHARS);
  for (i = len; i-- > len - TOKEND_TOKEN_CHECKSUM_CHARS;) {
    if (tok[i] != digits[crc % 62])
      return 0;
    crc /= 62;
  }
  return 1;
}

static int ref_token_id_ok(const char *id, size_t len) {
  size_t i;

  if (len != TOKEND_TOKEN_ID_CHARS || memcmp(id, "tok_", 4) != 0)
    return 0;
  for (i = 4; i < len; i++)
    if (!ref_is_base62((unsigned char)id[i]))
      return 0;
  return 1;
}

/* ---- checks ---- */

/* s[0..len) in a heap buffer of exactly len bytes: no NUL after it. */
static void check_token_bytes(const char *s, size_t len) {
  char *copy = malloc(len ? len : 1);
  char *hint;
  int ok;

  FUZZ_CHECK(copy != NULL, "out of memory");
  memcpy(copy, s, len);
  ok = token_check(copy, len) == 0;
  FUZZ_CHECK(ok == ref_token_ok(copy, len),
             "token_check says %d, reference says %d (len %zu)", ok, !ok, len);
  if (ok) {
    hint = malloc(TOKEND_HINT_BYTES);
    FUZZ_CHECK(hint != NULL, "out of memory");
    token_hint(copy, len, hint);
    FUZZ_CHECK(strlen(hint) == len - 39 + 8 &&
                   memcmp(hint + strlen(hint) - 4, copy + len - 4, 4) == 0,
               "token_hint of a %zu-char token is \"%s\"", len, hint);
    free(hint);
  }
  ok = token_id_check(copy, len) == 0;
  FUZZ_CHECK(ok == ref_token_id_ok(copy, len),
             "token_id_check says %d, reference says %d", ok, !ok);
  free(copy);
}

/* validate_copy_utf8() copies a prefix that fits, and never cuts valid
 * UTF-8 inside a character. */
static void check_copy_utf8(const char *s) {
  static const size_t caps[] = {1, 2, 3, 4, 5, 16, 129, 256};
  size_t i, n;
  char *dst;

  for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
    dst = malloc(caps[i]);
    FUZZ_CHECK(dst != NULL, "out of memory");
    validate_copy_utf8(dst, caps[i], s);
    n = strnlen(dst, caps[i]);
    FUZZ_CHECK(n < caps[i] && memcmp(dst, s, n) == 0,
               "validate_copy_utf8 into %zu bytes is not a prefix", caps[i]);
    if (strlen(s) < caps[i])
      FUZZ_CHECK(n == strlen(s), "validate_copy_utf8 cut a string that fits");
    /* Valid UTF-8 loses at most the one character that did not fit. */
    if (ref_utf8_ok(s))
      FUZZ_CHECK(ref_utf8_ok(dst) && (strlen(s) < caps[i] || n + 4 >= caps[i]),
                 "validate_copy_utf8 into %zu bytes kept %zu: bad cut", caps[i],
                 n);
    free(dst);
  }
}

static void check_string(const char *s) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  int ok;

  check_token_bytes(s, strlen(s));
  ok = validate_domain(s, why, sizeof(why)) == 0;
  FUZZ_CHECK(ok == ref_domain_ok(s), "validate_domain says %d", ok);
  ok = validate_scope(s, why, sizeof(why)) == 0;
  FUZZ_CHECK(ok == ref_scope_ok(s), "validate_scope says %d", ok);
  ok = validate_user(s, why, sizeof(why)) == 0;
  FUZZ_CHECK(ok == ref_user_ok(s), "validate_user says %d", ok);
  ok = validate_label(s, why, sizeof(why)) == 0;
  FUZZ_CHECK(ok == ref_label_ok(s), "validate_label says %d", ok);
  check_copy_utf8(s);
  /* A reason is always written, and short. */
  ok = validate_label(s, why, 8);
  FUZZ_CHECK(ok == 0 || strlen(why) < 8, "reason overflows why");
}

static void check_request(const Tokend__V1__Request *req) {
  size_t i;

  check_string(req->actor);
  switch (req->method_case) {
  case TOKEND__V1__REQUEST__METHOD_ISSUE:
    check_string(req->issue->domain);
    check_string(req->issue->label);
    for (i = 0; i < req->issue->n_scopes && i < FUZZ_MAX_STRINGS; i++)
      check_string(req->issue->scopes[i]);
    break;
  case TOKEND__V1__REQUEST__METHOD_VERIFY:
    check_string(req->verify->token);
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE:
    check_string(req->revoke->domain);
    check_string(req->revoke->token_id);
    break;
  case TOKEND__V1__REQUEST__METHOD_LIST:
    check_string(req->list->domain);
    check_string(req->list->page_token);
    break;
  case TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN:
    check_string(req->grant_domain_admin->domain);
    check_string(req->grant_domain_admin->user);
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN:
    check_string(req->revoke_domain_admin->domain);
    check_string(req->revoke_domain_admin->user);
    break;
  case TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS:
    check_string(req->list_domain_admins->domain);
    break;
  case TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS:
    check_string(req->list_audit_events->domain);
    check_string(req->list_audit_events->page_token);
    break;
  case TOKEND__V1__REQUEST__METHOD_BULK_REVOKE:
    check_string(req->bulk_revoke->domain);
    check_string(req->bulk_revoke->created_by);
    for (i = 0; i < req->bulk_revoke->n_token_ids && i < FUZZ_MAX_STRINGS; i++)
      check_string(req->bulk_revoke->token_ids[i]);
    break;
  case TOKEND__V1__REQUEST__METHOD_SET_DOMAIN_POLICY:
    check_string(req->set_domain_policy->domain);
    if (req->set_domain_policy->policy != NULL)
      for (i = 0; i < req->set_domain_policy->policy->n_allowed_scopes &&
                  i < FUZZ_MAX_STRINGS;
           i++)
        check_string(req->set_domain_policy->policy->allowed_scopes[i]);
    break;
  case TOKEND__V1__REQUEST__METHOD_GET_DOMAIN_POLICY:
    check_string(req->get_domain_policy->domain);
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE_LEAKED:
    check_string(req->revoke_leaked->source);
    for (i = 0; i < req->revoke_leaked->n_tokens && i < FUZZ_MAX_STRINGS; i++)
      check_string(req->revoke_leaked->tokens[i]);
    break;
  default:
    break;
  }
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

/* Walks buf as frames with bodies of at most max bytes. */
static void check_frames(const uint8_t *buf, size_t len, uint32_t max,
                         pb_arena_t *arena) {
  const uint8_t *body, *b2;
  uint32_t body_len, l2;
  size_t off = 0, consumed, c2, k, rest;
  frame_result_t r;
  Tokend__V1__Request *req;

  for (;;) {
    rest = len - off;
    r = frame_decode(buf + off, rest, max, &body, &body_len, &consumed);
    if (rest >= 1 && buf[off] != 0) {
      FUZZ_CHECK(r == FRAME_ERR_BAD_FLAG, "flag 0x%02x gave %d", buf[off], r);
      return;
    }
    if (rest < TOKEND_FRAME_HEADER_BYTES) {
      FUZZ_CHECK(r == FRAME_NEED_MORE && consumed == 0,
                 "%zu header bytes gave %d, consumed %zu", rest, r, consumed);
      return;
    }
    if (be32(buf + off + 1) > max) {
      FUZZ_CHECK(r == FRAME_ERR_TOO_LARGE && body_len == be32(buf + off + 1),
                 "length %u over %u gave %d", be32(buf + off + 1), max, r);
      return;
    }
    if (rest - TOKEND_FRAME_HEADER_BYTES < be32(buf + off + 1)) {
      FUZZ_CHECK(r == FRAME_NEED_MORE &&
                     consumed == TOKEND_FRAME_HEADER_BYTES +
                                     (size_t)be32(buf + off + 1),
                 "partial frame gave %d, consumed %zu", r, consumed);
      return;
    }
    FUZZ_CHECK(r == FRAME_OK && body == buf + off + TOKEND_FRAME_HEADER_BYTES &&
                   body_len == be32(buf + off + 1) &&
                   consumed == TOKEND_FRAME_HEADER_BYTES + (size_t)body_len,
               "whole frame gave %d", r);
    /* Every cut of this frame waits for the rest, knowing its size once
     * the header is in. */
    for (k = 0; k < consumed; k++) {
      FUZZ_CHECK(frame_decode(buf + off, k, max, &b2, &l2, &c2) ==
                         FRAME_NEED_MORE &&
                     c2 == (k < TOKEND_FRAME_HEADER_BYTES ? 0 : consumed),
                 "a cut at %zu of a %zu-byte frame", k, consumed);
    }
    req = tokend__v1__request__unpack(&arena->allocator, body_len, body);
    FUZZ_CHECK(arena->used <= arena->cap,
               "arena handed out %zu bytes, over its cap of %zu", arena->used,
               arena->cap);
    if (req != NULL) {
      check_request(req);
      tokend__v1__request__free_unpacked(req, &arena->allocator);
    }
    pb_arena_reset(arena);
    off += consumed;
  }
}

/* Drives the arena directly with sizes taken two bytes at a time: it must
 * never hand out more than its cap, and every block must be usable for its
 * whole size (ASan watches). */
static void check_arena(const uint8_t *data, size_t size, pb_arena_t *arena) {
  size_t i, want;
  uint8_t *p;

  for (i = 0; i + 1 < size; i += 2) {
    want = ((size_t)data[i] << 8 | data[i + 1]) % (FUZZ_ARENA_CAP + 64);
    p = arena->allocator.alloc(arena->allocator.allocator_data, want);
    FUZZ_CHECK(arena->used <= arena->cap,
               "arena handed out %zu bytes, over its cap of %zu, after a "
               "request for %zu",
               arena->used, arena->cap, want);
    if (p != NULL)
      memset(p, 0xA5, want);
  }
  pb_arena_reset(arena);
}

/* Unescapes out (produced by validate_escape_excerpt) and checks that it is
 * a prefix of in; returns how many input bytes it stands for. */
static size_t unescape_prefix(const char *out, const uint8_t *in,
                              size_t in_len) {
  size_t o = 0, i = 0;
  unsigned v;

  while (out[o] != '\0' && strcmp(out + o, "...") != 0) {
    FUZZ_CHECK(i < in_len, "excerpt is longer than the input");
    if (out[o] == '\\') {
      FUZZ_CHECK(sscanf(out + o, "\\x%2x", &v) == 1, "bad escape");
      o += 4;
    } else {
      FUZZ_CHECK(out[o] >= 0x20 && out[o] < 0x7F && out[o] != '"',
                 "unescaped byte 0x%02x", (unsigned char)out[o]);
      v = (unsigned char)out[o++];
    }
    FUZZ_CHECK(v == in[i], "excerpt differs at input byte %zu", i);
    i++;
  }
  return i;
}

static void check_excerpt(const uint8_t *data, size_t size) {
  size_t out_len, max_in, n, used;
  char *out;

  if (size < 2)
    return;
  out_len = data[0];
  max_in = data[1];
  out = malloc(out_len ? out_len : 1);
  FUZZ_CHECK(out != NULL, "out of memory");
  validate_escape_excerpt((const char *)data, size, max_in, out, out_len);
  if (out_len > 0) {
    n = strnlen(out, out_len);
    FUZZ_CHECK(n < out_len, "excerpt is not NUL-terminated in %zu bytes",
               out_len);
    used = unescape_prefix(out, data, size);
    FUZZ_CHECK(used <= max_in, "excerpt shows %zu bytes, max_in %zu", used,
               max_in);
    /* A cut is marked whenever there is room to mark it. */
    if (used < size && out_len >= 4)
      FUZZ_CHECK(n >= 3 && strcmp(out + n - 3, "...") == 0,
                 "a cut excerpt lacks \"...\"");
  }
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static pb_arena_t arena;
  static int arena_ready;
  char *copy;
  size_t off, n;
  int strings = 0;

  if (!arena_ready) {
    FUZZ_CHECK(pb_arena_init(&arena, 1024, FUZZ_ARENA_CAP) == 0,
               "pb_arena_init");
    arena_ready = 1;
  }
  if (size > 0) {
    check_frames(data + 1, size - 1, TOKEND_MAX_FRAME_BYTES_DEFAULT, &arena);
    check_frames(data + 1, size - 1, 64, &arena);
  }

  /* The raw input, cut at each NUL, as strings. */
  copy = malloc(size + 1);
  FUZZ_CHECK(copy != NULL, "out of memory");
  memcpy(copy, data, size);
  copy[size] = '\0';
  for (off = 0; off <= size && strings < FUZZ_MAX_STRINGS; off += n + 1) {
    n = strlen(copy + off);
    check_string(copy + off);
    strings++;
  }
  free(copy);
  check_token_bytes((const char *)data, size);
  check_excerpt(data, size);
  check_arena(data, size, &arena);
  return 0;
}
