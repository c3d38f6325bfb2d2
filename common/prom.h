/* prom: the Prometheus text exposition format (version 0.0.4), written into
 * a growing buffer: metric families (HELP and TYPE lines), samples with
 * escaped label values, and fixed-bucket histograms. Pure: no loop, no I/O,
 * so the unit tests check its output byte for byte; the integration test
 * parses a whole /metrics page with a real Prometheus parser.
 *
 * Counters and histograms are kept by their owners on the loop thread
 * (plain integers, no locks); prom only writes them out when /metrics is
 * asked for (server/http/). In common/ because it is pure, and so that
 * rpc/ may keep a histogram without naming the HTTP face. */
#ifndef TOKEND_PROM_H
#define TOKEND_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "tokend_error.h"

/* A page being written. Every write appends; once an allocation failed the
 * page is marked failed and later writes do nothing (one check at the
 * end, prom_take). */
typedef struct {
  char *buf; /* malloc'd, NUL-terminated while len > 0 */
  size_t len, cap;
  int failed;
} prom_t;

/* Latency histogram buckets, in seconds: 10 us to 1 s. */
#define PROM_HIST_BUCKETS 12

/* A histogram of durations. Zero it to start (prom_hist_observe adds). */
typedef struct {
  uint64_t buckets[PROM_HIST_BUCKETS]; /* observations <= bound[i], alone */
  uint64_t count;                      /* all observations (+Inf) */
  uint64_t sum_ns;
} prom_hist_t;

/* The upper bounds of the buckets, in seconds (the "le" label values). */
extern const double prom_hist_bounds[PROM_HIST_BUCKETS];

/* An empty page (no allocation until the first write). */
void prom_init(prom_t *p);

/* Frees what p holds (and clears it); a taken page holds nothing. */
void prom_free(prom_t *p);

/* The text written, handed to the caller (free() it), with its length in
 * *len; p is left empty. NULL (and p freed) if any write failed for want
 * of memory. */
char *prom_take(prom_t *p, size_t *len);

/* Appends printf-style text as is (no escaping: for names and numbers). */
void prom_appendf(prom_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends s as a label value: backslash, double quote and newline escaped,
 * as the format requires (no surrounding quotes). */
void prom_label_value(prom_t *p, const char *s);

/* Starts a metric family: its "# HELP" and "# TYPE" lines. type is
 * "counter", "gauge" or "histogram"; help must hold no newline. */
void prom_family(prom_t *p, const char *name, const char *type,
                 const char *help);

/* One sample line: name{labels} value. labels is "" or already formatted
 * ("code=\"200\",method=\"GET\"", values escaped by the caller's choice of
 * fixed strings or prom_label_value). */
void prom_sample(prom_t *p, const char *name, const char *labels,
                 uint64_t value);

/* Adds one observation of ns nanoseconds. */
void prom_hist_observe(prom_hist_t *h, uint64_t ns);
/* Adds n observations of ns nanoseconds each. */
void prom_hist_observe_n(prom_hist_t *h, uint64_t ns, uint64_t n);

/* Writes h as the samples of histogram family name (the family line is the
 * caller's): cumulative name_bucket{labels,le="..."} lines ending with
 * le="+Inf", then name_sum (seconds) and name_count. labels as in
 * prom_sample. */
void prom_hist_write(prom_t *p, const char *name, const char *labels,
                     const prom_hist_t *h);

#endif
