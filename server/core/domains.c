#include "core/domains.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static domain_t *domain_new(const char *name) {
  size_t n = strlen(name);
  domain_t *dom = calloc(1, sizeof(*dom) + n + 1);

  if (dom != NULL)
    memcpy(dom->name, name, n + 1);
  return dom;
}

int domains_init(domains_t *d) {
  d->table = NULL;
  d->unknown = domain_new("");
  return d->unknown != NULL ? 0 : TOKEND_ENOMEM;
}

void domains_free(domains_t *d) {
  domain_t *dom, *tmp;

  HASH_ITER(hh, d->table, dom, tmp) {
    HASH_DEL(d->table, dom);
    free(dom->admins);
    free(dom);
  }
  free(d->unknown);
  d->unknown = NULL;
}

domain_t *domains_find(const domains_t *d, const char *name) {
  domain_t *dom = NULL;

  HASH_FIND_STR(d->table, name, dom);
  return dom;
}

domain_t *domains_get(domains_t *d, const char *name) {
  domain_t *dom = domains_find(d, name);

  if (dom != NULL)
    return dom;
  dom = domain_new(name);
  if (dom == NULL)
    return NULL;
  HASH_ADD_STR(d->table, name, dom);
  return dom;
}

static domain_admin_t *admin_find(const domain_t *dom, const char *user) {
  size_t i;

  for (i = 0; i < dom->n_admins; i++)
    if (strcmp(dom->admins[i].user, user) == 0)
      return &dom->admins[i];
  return NULL;
}

int domains_is_admin(const domains_t *d, const char *name, const char *user) {
  const domain_t *dom = domains_find(d, name);

  return dom != NULL && user[0] != '\0' && admin_find(dom, user) != NULL;
}

int domains_admin_add(domains_t *d, const char *name, const char *user,
                      int64_t granted_at, const char *granted_by) {
  domain_t *dom = domains_get(d, name);
  domain_admin_t *a, *grown;
  size_t cap;

  if (dom == NULL)
    return TOKEND_ENOMEM;
  a = admin_find(dom, user);
  if (a == NULL) {
    if (dom->n_admins == dom->admins_cap) {
      cap = dom->admins_cap ? dom->admins_cap * 2 : 4;
      grown = realloc(dom->admins, cap * sizeof(*grown));
      if (grown == NULL)
        return TOKEND_ENOMEM;
      dom->admins = grown;
      dom->admins_cap = cap;
    }
    a = &dom->admins[dom->n_admins++];
  }
  snprintf(a->user, sizeof(a->user), "%s", user);
  snprintf(a->granted_by, sizeof(a->granted_by), "%s", granted_by);
  a->granted_at = granted_at;
  return 0;
}

void domains_admin_remove(domains_t *d, const char *name, const char *user) {
  domain_t *dom = domains_find(d, name);
  domain_admin_t *a;

  if (dom == NULL || (a = admin_find(dom, user)) == NULL)
    return;
  /* Order does not matter: move the last entry into the hole. */
  *a = dom->admins[--dom->n_admins];
}

int domains_take_counts(domains_t *d, domain_counts_t **out, size_t *n) {
  domain_t *dom, *tmp;
  domain_counts_t *c;
  size_t k = 0, cap = 0;

  if (d->unknown->valid_verifies + d->unknown->invalid_verifies > 0)
    cap++;
  HASH_ITER(hh, d->table, dom, tmp) {
    if (dom->valid_verifies + dom->invalid_verifies > 0)
      cap++;
  }
  *out = NULL;
  *n = 0;
  if (cap == 0)
    return 0;
  c = calloc(cap, sizeof(*c));
  if (c == NULL)
    return TOKEND_ENOMEM;
  if (d->unknown->valid_verifies + d->unknown->invalid_verifies > 0) {
    c[k].valid = d->unknown->valid_verifies;
    c[k].invalid = d->unknown->invalid_verifies;
    d->unknown->valid_verifies = d->unknown->invalid_verifies = 0;
    k++;
  }
  HASH_ITER(hh, d->table, dom, tmp) {
    if (dom->valid_verifies + dom->invalid_verifies == 0)
      continue;
    snprintf(c[k].domain, sizeof(c[k].domain), "%s", dom->name);
    c[k].valid = dom->valid_verifies;
    c[k].invalid = dom->invalid_verifies;
    dom->valid_verifies = dom->invalid_verifies = 0;
    k++;
  }
  *out = c;
  *n = k;
  return 0;
}

void domains_put_back_counts(domains_t *d, const domain_counts_t *c, size_t n) {
  domain_t *dom;
  size_t i;

  for (i = 0; i < n; i++) {
    dom = c[i].domain[0] == '\0' ? d->unknown : domains_get(d, c[i].domain);
    if (dom == NULL)
      continue; /* out of memory: the counts are lost, nothing else */
    dom->valid_verifies += c[i].valid;
    dom->invalid_verifies += c[i].invalid;
  }
}

void domains_digest(const domains_t *d, uint64_t acc[4]) {
  uint8_t item[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 8], h[32];
  const domain_t *dom, *tmp;
  const domain_admin_t *a;
  size_t i, dn, un;
  uint64_t lane;
  int l;

  HASH_ITER(hh, d->table, dom, tmp) {
    dn = strlen(dom->name) + 1;
    for (i = 0; i < dom->n_admins; i++) {
      a = &dom->admins[i];
      un = strlen(a->user) + 1;
      memcpy(item, dom->name, dn);
      memcpy(item + dn, a->user, un);
      memcpy(item + dn + un, &a->granted_at, 8);
      crypto_generichash(h, sizeof(h), item, dn + un + 8, NULL, 0);
      for (l = 0; l < 4; l++) {
        memcpy(&lane, h + 8 * l, sizeof(lane));
        acc[l] += lane;
      }
    }
  }
}
