#include "validate.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tokend_limits.h"

static int fail(char *why, size_t why_len, const char *msg) {
  if (why != NULL && why_len > 0)
    snprintf(why, why_len, "%s", msg);
  return TOKEND_EINVAL;
}

static int is_alnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
         (c >= 'a' && c <= 'z');
}

int validate_domain(const char *s, char *why, size_t why_len) {
  size_t i;

  for (i = 0; s[i] != '\0'; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i >= TOKEND_DOMAIN_MAX_CHARS)
      return fail(why, why_len, "domain is longer than 128 characters");
    if (!is_alnum(c) && c != '.' && c != '_' && c != ':' && c != '-')
      return fail(why, why_len,
                  "domain may only contain letters, digits and . _ : -");
  }
  if (i == 0)
    return fail(why, why_len, "domain is empty");
  if (s[i - 1] == '.')
    return fail(why, why_len,
                "domain must not end with a dot (domains are names without "
                "the root's trailing dot)");
  return 0;
}

void validate_domain_normalize(char *domain) {
  for (; *domain != '\0'; domain++)
    if (*domain >= 'A' && *domain <= 'Z')
      *domain = (char)(*domain - 'A' + 'a');
}

int validate_scope(const char *s, char *why, size_t why_len) {
  size_t i;

  for (i = 0; s[i] != '\0'; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i >= TOKEND_SCOPE_MAX_CHARS)
      return fail(why, why_len, "scope is longer than 64 characters");
    if (!is_alnum(c) && c != '.' && c != '_' && c != ':' && c != '-' &&
        c != '/')
      return fail(why, why_len,
                  "scope may only contain letters, digits and . _ : / -");
  }
  if (i == 0)
    return fail(why, why_len, "scope is empty");
  return 0;
}

int validate_user(const char *s, char *why, size_t why_len) {
  const char *tail;
  size_t i;

  for (i = 0; s[i] != '\0'; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i >= TOKEND_USER_MAX_CHARS)
      return fail(why, why_len, "user is longer than 128 characters");
    if (!is_alnum(c) && c != '.' && c != '_' && c != '@' && c != ':' &&
        c != '+' && c != '-')
      return fail(why, why_len,
                  "user may only contain letters, digits and . _ @ : + -");
  }
  if (i == 0)
    return fail(why, why_len, "user is empty");
  /* A token pasted into the wrong field (prefix_ + a long base62 body)
   * must not end up in a log line or the audit table. */
  tail = strrchr(s, '_');
  if (tail != NULL) {
    for (i = 1; is_alnum((unsigned char)tail[i]); i++)
      ;
    if (tail[i] == '\0' && i - 1 >= 20)
      return fail(why, why_len,
                  "user looks like an API token; never paste a token here");
  }
  return 0;
}

/* Decodes one UTF-8 sequence at s (NUL-terminated). Returns its length in
 * bytes and the code point in *cp, or 0 if it is not valid UTF-8. */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp) {
  uint32_t c = s[0], min;
  size_t n, i;

  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if ((c & 0xE0) == 0xC0) {
    n = 2, min = 0x80, c &= 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, min = 0x800, c &= 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, min = 0x10000, c &= 0x07;
  } else {
    return 0;
  }
  for (i = 1; i < n; i++) {
    /* A NUL terminator fails this test too, so we never read past it. */
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    c = (c << 6) | (s[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    return 0;
  *cp = c;
  return n;
}

int validate_label(const char *s, char *why, size_t why_len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t chars = 0, n;
  uint32_t cp;

  while (*p != '\0') {
    if (chars >= TOKEND_LABEL_MAX_CHARS)
      return fail(why, why_len, "label is longer than 100 characters");
    n = utf8_decode(p, &cp);
    if (n == 0)
      return fail(why, why_len, "label is not valid UTF-8");
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0))
      return fail(why, why_len, "label contains a control character");
    p += n;
    chars++;
  }
  if (chars == 0)
    return fail(why, why_len, "label is empty");
  return 0;
}

void validate_copy_utf8(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);

  if (cap == 0)
    return;
  if (n >= cap) {
    n = cap - 1;
    /* Back off over continuation bytes to the start of the cut character,
     * and drop it. */
    while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
      n--;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

static size_t escaped_width(unsigned char c) {
  return (c >= 0x20 && c < 0x7F && c != '\\' && c != '"') ? 1 : 4;
}

void validate_escape_excerpt(const char *in, size_t in_len, size_t max_in,
                             char *out, size_t out_len) {
  static const char hex[] = "0123456789abcdef";
  size_t i, o = 0, room, need = 0, n = in_len < max_in ? in_len : max_in;

  if (out_len == 0)
    return;
  for (i = 0; i < n; i++)
    need += escaped_width((unsigned char)in[i]);
  /* If anything will be cut, keep room for "..." so the cut is marked. */
  if (n == in_len && need < out_len)
    room = need;
  else
    room = out_len > 4 ? out_len - 4 : 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)in[i];
    size_t w = escaped_width(c);
    if (o + w > room)
      break;
    if (w == 1) {
      out[o++] = (char)c;
    } else {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  if (i < in_len && out_len >= 4) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}
