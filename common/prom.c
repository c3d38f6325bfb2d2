/* The Prometheus text format (prom.h). */
#include "prom.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double prom_hist_bounds[PROM_HIST_BUCKETS] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001,   0.0025,   0.005,   0.01,   0.1,     1.0};

void prom_init(prom_t *p) { memset(p, 0, sizeof(*p)); }

void prom_free(prom_t *p) {
  free(p->buf);
  prom_init(p);
}

char *prom_take(prom_t *p, size_t *len) {
  char *out = p->buf;

  if (p->failed || out == NULL) {
    prom_free(p);
    return NULL;
  }
  *len = p->len;
  prom_init(p);
  return out;
}

/* Room for need more bytes and a NUL: doubles the buffer (4 KiB first). */
static int prom_reserve(prom_t *p, size_t need) {
  size_t cap = p->cap != 0 ? p->cap : 4096;
  char *buf;

  if (p->failed)
    return -1;
  if (need > SIZE_MAX / 2 - p->len)
    goto err;
  while (cap < p->len + need + 1)
    cap *= 2;
  if (cap == p->cap)
    return 0;
  if ((buf = realloc(p->buf, cap)) == NULL)
    goto err;
  p->buf = buf;
  p->cap = cap;
  return 0;
err:
  p->failed = 1;
  return -1;
}

void prom_appendf(prom_t *p, const char *fmt, ...) {
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    p->failed = 1;
    return;
  }
  if (prom_reserve(p, (size_t)n) != 0)
    return;
  va_start(ap, fmt);
  (void)vsnprintf(p->buf + p->len, p->cap - p->len, fmt, ap);
  va_end(ap);
  p->len += (size_t)n;
}

void prom_label_value(prom_t *p, const char *s) {
  size_t n = strlen(s);
  const char *c;

  /* At most two bytes out per byte in. */
  if (n > SIZE_MAX / 2 || prom_reserve(p, n * 2) != 0)
    return;
  for (c = s; *c != '\0'; c++) {
    if (*c == '\\' || *c == '"') {
      p->buf[p->len++] = '\\';
      p->buf[p->len++] = *c;
    } else if (*c == '\n') {
      p->buf[p->len++] = '\\';
      p->buf[p->len++] = 'n';
    } else {
      p->buf[p->len++] = *c;
    }
  }
  p->buf[p->len] = '\0';
}

void prom_family(prom_t *p, const char *name, const char *type,
                 const char *help) {
  prom_appendf(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void prom_sample(prom_t *p, const char *name, const char *labels,
                 uint64_t value) {
  if (labels[0] == '\0')
    prom_appendf(p, "%s %llu\n", name, (unsigned long long)value);
  else
    prom_appendf(p, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
}

void prom_hist_observe(prom_hist_t *h, uint64_t ns) {
  prom_hist_observe_n(h, ns, 1);
}

void prom_hist_observe_n(prom_hist_t *h, uint64_t ns, uint64_t n) {
  size_t i;

  /* The bounds in ns, compared as integers: no floating point per call. */
  static const uint64_t bound_ns[PROM_HIST_BUCKETS] = {
      10000,   25000,   50000,   100000,   250000,    500000,
      1000000, 2500000, 5000000, 10000000, 100000000, 1000000000};

  for (i = 0; i < PROM_HIST_BUCKETS; i++)
    if (ns <= bound_ns[i]) {
      h->buckets[i] += n;
      break;
    }
  h->count += n;
  h->sum_ns += ns * n;
}

void prom_hist_write(prom_t *p, const char *name, const char *labels,
                     const prom_hist_t *h) {
  const char *sep = labels[0] != '\0' ? "," : "";
  uint64_t cum = 0;
  size_t i;

  for (i = 0; i < PROM_HIST_BUCKETS; i++) {
    cum += h->buckets[i];
    prom_appendf(p, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                 prom_hist_bounds[i], (unsigned long long)cum);
  }
  prom_appendf(p, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
               (unsigned long long)h->count);
  if (labels[0] != '\0') {
    prom_appendf(p, "%s_sum{%s} %.9f\n", name, labels, (double)h->sum_ns / 1e9);
    prom_appendf(p, "%s_count{%s} %llu\n", name, labels,
                 (unsigned long long)h->count);
  } else {
    prom_appendf(p, "%s_sum %.9f\n", name, (double)h->sum_ns / 1e9);
    prom_appendf(p, "%s_count %llu\n", name, (unsigned long long)h->count);
  }
}
