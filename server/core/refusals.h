/* refusals: keeps a flood of refused calls from flooding the audit log and
 * the log (issue 11, item 6).
 *
 * Refusals are grouped by kind: peer uid, actor, method and the rule that
 * refused them. The first refusal of a kind is recorded (and logged) at
 * once; the repeats are only counted, and each interval
 * (--refusal-audit-interval-ms) every kind with repeats becomes one audit
 * row carrying their count (and one log line "N more like this"). A kind
 * with no repeats in an interval is forgotten, so its next refusal is again
 * recorded at once. The table holds at most max_keys kinds; once full, the
 * refusals of kinds it does not hold are counted together in one overflow
 * row per interval. Pure bookkeeping (no loop, no store): the caller records
 * what it is told to. Loop thread only. */
#ifndef TOKEND_REFUSALS_H
#define TOKEND_REFUSALS_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "tokend_error.h"

/* A rule's name, e.g. "not-domain-admin": short, static, never user input. */
#define REFUSALS_RULE_BYTES 32

typedef struct refusals_s refusals_t;

typedef enum {
  REFUSAL_RECORD,   /* first of its kind: record and log it now */
  REFUSAL_COUNTED,  /* a repeat: counted into its kind's next row */
  REFUSAL_OVERFLOW, /* table full: counted into the overflow row; the first
                       overflow of an interval should be logged */
  REFUSAL_OVERFLOW_COUNTED
} refusal_verdict_t;

/* A new table for at most max_keys kinds (> 0). */
int refusals_new(size_t max_keys, refusals_t **out) TOKEND_MUST_CHECK;
void refusals_free(refusals_t *r);

/* Notes the refusal ev (filled as for the audit log) under rule. */
refusal_verdict_t refusals_note(refusals_t *r, const store_audit_t *ev,
                                const char *rule);

/* Ends an interval at now: *rows (malloc'd, the caller frees; NULL if none)
 * gets *n rows, one per kind with repeats (count = the repeats, the first
 * repeat's pid, detail and domain, or "" when the domains varied) and the
 * overflow row. Kinds without repeats are forgotten. TOKEND_ENOMEM leaves
 * the counts as they were. */
int refusals_take(refusals_t *r, int64_t now, store_audit_t **rows,
                  size_t *n) TOKEND_MUST_CHECK;

/* Kinds held now (for tests and the bound). */
size_t refusals_count(const refusals_t *r);

#endif
