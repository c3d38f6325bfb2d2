/* policy.c: a domain's policy, checked in the write transaction
 * (store/policy.h). */
#include "store/policy.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* 1 if scope is one of the space-separated words of list. */
static int scope_listed(const char *list, const char *scope, size_t len) {
  const char *p = list, *end;

  while (*p != '\0') {
    end = strchr(p, ' ');
    if (end == NULL)
      end = p + strlen(p);
    if ((size_t)(end - p) == len && memcmp(p, scope, len) == 0)
      return 1;
    p = *end == ' ' ? end + 1 : end;
  }
  return 0;
}

int store_policy_check_token(const store_policy_t *p, int64_t now,
                             int64_t expires_at, const char *scopes, char *why,
                             size_t why_len) {
  const char *s = scopes, *end;
  size_t len;

  if (expires_at == 0 && p->require_expiry) {
    snprintf(why, why_len,
             "expires_at is required by the domain's policy (tokens must "
             "expire)");
    return TOKEND_EINVAL;
  }
  /* Compared without adding to now: no overflow near INT64_MAX. A token
   * that never expires is refused only with require_expiry (issue 17: the
   * two are set apart). */
  if (p->max_lifetime_ms > 0 && expires_at != 0 &&
      expires_at - now > p->max_lifetime_ms) {
    snprintf(why, why_len,
             "expires_at is beyond the domain's policy: at most "
             "max_lifetime_ms %" PRId64 " (%" PRId64 " days) from now",
             p->max_lifetime_ms, p->max_lifetime_ms / 86400000);
    return TOKEND_EINVAL;
  }
  if (p->allowed_scopes[0] == '\0')
    return 0;
  while (*s != '\0') {
    end = strchr(s, ' ');
    len = end != NULL ? (size_t)(end - s) : strlen(s);
    if (!scope_listed(p->allowed_scopes, s, len)) {
      snprintf(why, why_len,
               "scopes: %.*s is not one of the domain's allowed_scopes (%s)",
               (int)(len < 64 ? len : 64), s, p->allowed_scopes);
      return TOKEND_EINVAL;
    }
    s += len;
    if (*s == ' ')
      s++;
  }
  return 0;
}

int store_policy_enforce(store_t *store, const char *domain, int64_t now,
                         int64_t expires_at, const char *scopes,
                         int adds_active, char *why, size_t why_len) {
  store_policy_t p;
  int64_t n = 0;
  int err;

  why[0] = '\0';
  err = store_policy_get(store, domain, &p);
  if (err == TOKEND_ENOTFOUND)
    return 0;
  if (err != 0)
    return err;
  if ((err = store_policy_check_token(&p, now, expires_at, scopes, why,
                                      why_len)) != 0)
    return err;
  if (!adds_active || p.max_active_tokens <= 0)
    return 0;
  /* Counted no further than the cap: a domain far under it costs its
   * active tokens, one at it costs the cap's worth of an index range. */
  if ((err = store_active_count(store, domain, now, p.max_active_tokens, &n)) !=
      0)
    return err;
  if (n < p.max_active_tokens)
    return 0;
  snprintf(why, why_len,
           "the domain has %" PRId64 " active tokens, its policy's "
           "max_active_tokens; revoke some first",
           n);
  return TOKEND_EQUOTA;
}

void store_policy_describe(const store_policy_t *p, char *buf, size_t len) {
  char scopes[72];
  size_t i;

  if (p == NULL) {
    snprintf(buf, len, "none");
    return;
  }
  snprintf(scopes, sizeof(scopes), "%.71s",
           p->allowed_scopes[0] != '\0' ? p->allowed_scopes : "any");
  for (i = 0; scopes[i] != '\0'; i++)
    if (scopes[i] == ' ')
      scopes[i] = ',';
  snprintf(buf, len,
           "lifetime=%" PRId64 "ms expiry=%s scopes=%s active<=%" PRId32,
           p->max_lifetime_ms, p->require_expiry ? "required" : "optional",
           scopes, p->max_active_tokens);
}
