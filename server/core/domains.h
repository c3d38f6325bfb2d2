/* domains: what the loop thread knows per domain, in memory: its admins
 * (loaded at start-up, updated after each committed grant or removal, so
 * permission checks never touch the store) and its Verify counters (written
 * back with last_used_at). Domain names are interned here: every index entry
 * of a domain points at one domain_t. Loop thread only. */
#ifndef TOKEND_DOMAINS_H
#define TOKEND_DOMAINS_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "tokend_error.h"
#include "tokend_limits.h"

typedef struct {
  char user[TOKEND_USER_BYTES];
  char granted_by[TOKEND_USER_BYTES];
  int64_t granted_at;
} domain_admin_t;

typedef struct domain_s {
  UT_hash_handle hh;
  domain_admin_t *admins; /* n_admins of them, unordered */
  size_t n_admins, admins_cap;
  size_t n_tokens;           /* tokens of this domain in the index */
  uint64_t valid_verifies;   /* since the last write-back */
  uint64_t invalid_verifies; /* since the last write-back */
  size_t expiring_soon;      /* scratch of index_expiring_tally (/metrics) */
  char name[];               /* "" for tokens of no known domain */
} domain_t;

typedef struct {
  domain_t *table;
  domain_t *unknown; /* counts Verifies of malformed or unknown tokens */
} domains_t;

/* A per-domain count of Verifies, as written back to the store. */
typedef struct {
  char domain[TOKEND_DOMAIN_BYTES];
  uint64_t valid, invalid;
} domain_counts_t;

int domains_init(domains_t *d) TOKEND_MUST_CHECK;
void domains_free(domains_t *d);

/* The domain named name, created if missing (NULL only when out of memory).
 * Valid until domains_free. */
domain_t *domains_get(domains_t *d, const char *name);
/* The domain named name, or NULL. */
domain_t *domains_find(const domains_t *d, const char *name);

/* 1 if user is an admin of the domain named name. */
int domains_is_admin(const domains_t *d, const char *name, const char *user);

/* Records a committed grant (replacing an existing entry for user). */
int domains_admin_add(domains_t *d, const char *name, const char *user,
                      int64_t granted_at,
                      const char *granted_by) TOKEND_MUST_CHECK;
/* Records a committed removal; a no-op if user was not an admin. */
void domains_admin_remove(domains_t *d, const char *name, const char *user);

/* Moves every nonzero Verify count into a new array (*out, *n; free()d by
 * the caller), zeroing the counters. Returns 0 or TOKEND_ENOMEM (counters
 * kept). */
int domains_take_counts(domains_t *d, domain_counts_t **out,
                        size_t *n) TOKEND_MUST_CHECK;
/* Adds back counts that could not be written. */
void domains_put_back_counts(domains_t *d, const domain_counts_t *c, size_t n);

/* Adds to acc a digest of every domain admin grant (domain, user,
 * granted_at), as index_digest does for tokens. */
void domains_digest(const domains_t *d, uint64_t acc[4]);

#endif
