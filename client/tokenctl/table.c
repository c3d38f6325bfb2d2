/* Output for people (table.h). */
/* wcwidth(). */
#define _GNU_SOURCE

#include "table.h"

#include <string.h>
#include <time.h>
#include <wchar.h>

/* ---- times and scopes ---- */

/* Unix ms as UTC in strftime() format fmt; zero for 0; where the time
 * cannot be shown, the number of ms followed by unit. */
static void ctl_fmt_utc(int64_t ms, const char *fmt, const char *zero,
                        const char *unit, char *buf, size_t len) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;

  if (ms == 0)
    snprintf(buf, len, "%s", zero);
  else if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, fmt, &tm) == 0)
    snprintf(buf, len, "%lld%s", (long long)ms, unit);
}

void ctl_fmt_iso(int64_t ms, char *buf, size_t len) {
  ctl_fmt_utc(ms, "%Y-%m-%dT%H:%M:%SZ", "never", " ms", buf, len);
}

void ctl_fmt_short(int64_t ms, char *buf, size_t len) {
  ctl_fmt_utc(ms, "%Y-%m-%d %H:%M", "-", "", buf, len);
}

void ctl_fmt_seconds(int64_t ms, char *buf, size_t len) {
  ctl_fmt_utc(ms, "%Y-%m-%d %H:%M:%S", "-", "", buf, len);
}

void ctl_print_scopes(FILE *f, const char (*scopes)[TOKEND_SCOPE_BYTES],
                      size_t n) {
  size_t i;

  if (n == 0)
    fputs("(none)", f);
  for (i = 0; i < n; i++)
    fprintf(f, "%s%s", i > 0 ? ", " : "", scopes[i]);
  fputc('\n', f);
}

/* ---- tables ---- */

/* Terminal columns of a UTF-8 string (tokend accepts only valid UTF-8
 * labels): wcwidth() of each code point, so that CJK characters count as
 * two, or one column per code point where wcwidth() does not know it. */
static size_t ctl_display_width(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = 0, len;
  uint32_t cp;
  int w;

  while (*p != '\0') {
    if (*p < 0x80)
      cp = *p, len = 1;
    else if ((*p & 0xE0) == 0xC0)
      cp = *p & 0x1F, len = 2;
    else if ((*p & 0xF0) == 0xE0)
      cp = *p & 0x0F, len = 3;
    else
      cp = *p & 0x07, len = 4;
    for (p++; --len > 0 && (*p & 0xC0) == 0x80; p++)
      cp = (cp << 6) | (*p & 0x3F);
    w = wcwidth((wchar_t)cp);
    n += w >= 0 ? (size_t)w : 1;
  }
  return n;
}

static void ctl_print_cell(const char *s, size_t width, int last) {
  size_t w = ctl_display_width(s);

  fputs(s, stdout);
  if (last)
    return;
  for (; w < width + 2; w++)
    fputc(' ', stdout);
}

/* Length of the valid UTF-8 sequence at s (NUL-terminated): 1-4, or 0 if
 * it is not one (bad or missing continuation bytes, overlong forms,
 * surrogates, beyond U+10FFFF). */
static size_t ctl_utf8_len(const unsigned char *s) {
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  uint32_t cp;
  size_t len, i;

  if (s[0] < 0x80)
    return 1;
  if ((s[0] & 0xE0) == 0xC0)
    cp = s[0] & 0x1F, len = 2;
  else if ((s[0] & 0xF0) == 0xE0)
    cp = s[0] & 0x0F, len = 3;
  else if ((s[0] & 0xF8) == 0xF0)
    cp = s[0] & 0x07, len = 4;
  else
    return 0;
  for (i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

void ctl_copy_text(char *dst, size_t len, const char *src) {
  const unsigned char *p = (const unsigned char *)src;
  size_t n = 0, c;

  while (*p != '\0') {
    c = ctl_utf8_len(p);
    if (c == 0 || *p < 0x20 || *p == 0x7f) {
      if (n + 1 >= len)
        break;
      dst[n++] = '?';
      p += c == 0 ? 1 : c;
      continue;
    }
    if (n + c >= len)
      break;
    memcpy(dst + n, p, c);
    n += c;
    p += c;
  }
  dst[n] = '\0';
}

void ctl_print_table(const char *const *names, size_t ncols, const void *rows,
                     size_t n, ctl_fill_row_t fill) {
  char cell[CTL_MAX_COLS][CTL_CELL_BYTES];
  size_t width[CTL_MAX_COLS], i, col, w;

  for (col = 0; col < ncols; col++)
    width[col] = ctl_display_width(names[col]);
  for (i = 0; i < n; i++) {
    fill(rows, i, cell);
    for (col = 0; col < ncols; col++) {
      w = ctl_display_width(cell[col]);
      if (w > width[col])
        width[col] = w;
    }
  }
  for (col = 0; col < ncols; col++)
    ctl_print_cell(names[col], width[col], col + 1 == ncols);
  fputc('\n', stdout);
  for (i = 0; i < n; i++) {
    fill(rows, i, cell);
    for (col = 0; col < ncols; col++)
      ctl_print_cell(cell[col], width[col], col + 1 == ncols);
    fputc('\n', stdout);
  }
}
