#include "core/refusals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "validate.h"

/* Zero-filled before use, so that the whole struct can be the hash key. */
typedef struct {
  uint32_t peer_uid;
  char actor[TOKEND_USER_BYTES];
  char method[TOKEND_AUDIT_METHOD_BYTES];
  char rule[REFUSALS_RULE_BYTES];
} refusal_key_t;

typedef struct {
  UT_hash_handle hh;
  refusal_key_t key;
  store_audit_t first; /* the first repeat of this interval */
  uint64_t repeats;    /* since the last row */
  int domains_vary;
} refusal_entry_t;

struct refusals_s {
  refusal_entry_t *table;
  size_t n, max_keys;
  refusal_entry_t overflow; /* not in the table; repeats 0: unused */
};

int refusals_new(size_t max_keys, refusals_t **out) {
  refusals_t *r;

  *out = NULL;
  if (max_keys == 0)
    return TOKEND_EINVAL;
  if ((r = calloc(1, sizeof(*r))) == NULL)
    return TOKEND_ENOMEM;
  r->max_keys = max_keys;
  *out = r;
  return 0;
}

void refusals_free(refusals_t *r) {
  refusal_entry_t *e, *tmp;

  if (r == NULL)
    return;
  HASH_ITER(hh, r->table, e, tmp) {
    HASH_DEL(r->table, e);
    free(e);
  }
  free(r);
}

size_t refusals_count(const refusals_t *r) { return r->n; }

/* Counts ev into e: the first repeat of an interval is kept as the row's
 * content. */
static void entry_count(refusal_entry_t *e, const store_audit_t *ev) {
  if (e->repeats++ == 0) {
    e->first = *ev;
    e->domains_vary = 0;
  } else if (!e->domains_vary && strcmp(e->first.domain, ev->domain) != 0) {
    e->domains_vary = 1;
  }
}

refusal_verdict_t refusals_note(refusals_t *r, const store_audit_t *ev,
                                const char *rule) {
  refusal_key_t key;
  refusal_entry_t *e;

  memset(&key, 0, sizeof(key));
  key.peer_uid = ev->peer_uid;
  snprintf(key.actor, sizeof(key.actor), "%s", ev->actor);
  snprintf(key.method, sizeof(key.method), "%s", ev->method);
  snprintf(key.rule, sizeof(key.rule), "%s", rule);
  HASH_FIND(hh, r->table, &key, sizeof(key), e);
  if (e != NULL) {
    entry_count(e, ev);
    return REFUSAL_COUNTED;
  }
  /* Out of room (or memory): one row for all the kinds not held, so the
   * table's memory stays bounded whatever a peer varies. */
  if (r->n >= r->max_keys || (e = calloc(1, sizeof(*e))) == NULL) {
    entry_count(&r->overflow, ev);
    return r->overflow.repeats == 1 ? REFUSAL_OVERFLOW
                                    : REFUSAL_OVERFLOW_COUNTED;
  }
  e->key = key;
  HASH_ADD(hh, r->table, key, sizeof(key), e);
  r->n++;
  return REFUSAL_RECORD;
}

/* The row for e's repeats. */
static void entry_row(const refusal_entry_t *e, int64_t now, int overflow,
                      store_audit_t *row) {
  /* Room for the whole; cut to the row's size on a character boundary. */
  char detail[TOKEND_STATUS_MESSAGE_BYTES + 128];

  *row = e->first;
  row->at = now;
  row->count = (int64_t)e->repeats;
  if (e->domains_vary)
    row->domain[0] = '\0';
  if (overflow) {
    /* Several kinds share this row: say so, then the first one's reason. */
    snprintf(detail, sizeof(detail),
             "refusals of kinds not itemised (the refusal table, "
             "--refusal-audit-max-keys, was full); the first: %s",
             e->first.detail);
    validate_copy_utf8(row->detail, sizeof(row->detail), detail);
  }
}

int refusals_take(refusals_t *r, int64_t now, store_audit_t **rows, size_t *n) {
  refusal_entry_t *e, *tmp;
  store_audit_t *out = NULL;
  size_t k = 0, due = r->overflow.repeats > 0;

  *rows = NULL;
  *n = 0;
  HASH_ITER(hh, r->table, e, tmp) due += e->repeats > 0;
  if (due > 0 && (out = calloc(due, sizeof(*out))) == NULL)
    return TOKEND_ENOMEM;
  HASH_ITER(hh, r->table, e, tmp) {
    if (e->repeats == 0) {
      HASH_DEL(r->table, e);
      free(e);
      r->n--;
      continue;
    }
    entry_row(e, now, 0, &out[k++]);
    e->repeats = 0;
  }
  if (r->overflow.repeats > 0) {
    entry_row(&r->overflow, now, 1, &out[k++]);
    r->overflow.repeats = 0;
  }
  *rows = out;
  *n = k;
  return 0;
}
