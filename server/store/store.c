/* store.c: the registry of backends by URL scheme, and the thin wrappers
 * that call a store's ops (as SQLite's os.c calls pMethods). */
#include "store/store.h"

#include <stdio.h>
#include <string.h>

#include "store/backends.h"

/* Every backend this build has; the first is the one a bare path names. */
static const struct store_backend *const backends[] = {
#define X(name) &store_##name##_backend,
    STORE_BACKENDS(X)
#undef X
};
#define N_BACKENDS (sizeof(backends) / sizeof(backends[0]))

const char *store_schemes(void) {
  static char list[128];
  size_t i, off = 0;

  if (list[0] != '\0')
    return list;
  for (i = 0; i < N_BACKENDS && off < sizeof(list); i++)
    off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
                            i > 0 ? ", " : "", backends[i]->scheme);
  return list;
}

/* Length of url's scheme (RFC 3986: a letter, then letters, digits, '+',
 * '-', '.'), 0 if url does not start with "scheme:". */
static size_t url_scheme_len(const char *url) {
  size_t n = 0;

  if (!((url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z')))
    return 0;
  while ((url[n] >= 'a' && url[n] <= 'z') || (url[n] >= 'A' && url[n] <= 'Z') ||
         (url[n] >= '0' && url[n] <= '9') || url[n] == '+' || url[n] == '-' ||
         url[n] == '.')
    n++;
  return url[n] == ':' ? n : 0;
}

const char *store_url_redact(const char *url, char *buf, size_t len) {
  const char *auth = strstr(url, "://"), *end, *at, *colon, *p;
  size_t o = 0, n;

  if (len == 0)
    return buf;
  buf[0] = '\0';
#define PUT(src, count)                                                        \
  do {                                                                         \
    n = (count);                                                               \
    if (n > len - 1 - o)                                                       \
      n = len - 1 - o;                                                         \
    memcpy(buf + o, (src), n);                                                 \
    o += n;                                                                    \
  } while (0)
  p = url;
  if (auth != NULL) {
    auth += 3;
    end = auth + strcspn(auth, "/?#");
    at = NULL;
    for (colon = auth; colon < end; colon++)
      if (*colon == '@')
        at = colon;
    colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon != NULL) {
      PUT(url, (size_t)(colon - url));
      p = at;
    }
  }
  /* The rest, with each password= value hidden. */
  while (*p != '\0') {
    const char *q = strstr(p, "password=");

    if (q == NULL || (q != url && q[-1] != '?' && q[-1] != '&')) {
      if (q == NULL) {
        PUT(p, strlen(p));
        break;
      }
      PUT(p, (size_t)(q - p) + 9);
      p = q + 9;
      continue;
    }
    PUT(p, (size_t)(q - p) + 9);
    PUT("xxx", 3);
    p = q + 9 + strcspn(q + 9, "&#");
  }
#undef PUT
  buf[o] = '\0';
  return buf;
}

int store_url_parse(const char *url, const struct store_backend **backend,
                    const char **location, char *why, size_t why_len) {
  size_t i, n = url_scheme_len(url);
  char redacted[256];

  if (n == 0) {
    *backend = backends[0];
    *location = url;
    return 0;
  }
  for (i = 0; i < N_BACKENDS; i++) {
    if (strlen(backends[i]->scheme) == n &&
        strncmp(url, backends[i]->scheme, n) == 0) {
      *backend = backends[i];
      *location = url + n + 1;
      return 0;
    }
  }
  snprintf(why, why_len,
           "unknown store scheme '%.*s' in --store %.200s; this build has: %s",
           (int)(n < 64 ? n : 64), url,
           store_url_redact(url, redacted, sizeof(redacted)), store_schemes());
  return TOKEND_ECONFIG;
}

int store_open_url(const char *url, int flags, store_t **out, char *why,
                   size_t why_len) {
  const struct store_backend *be;
  const char *location;
  int err;

  *out = NULL;
  if ((err = store_url_parse(url, &be, &location, why, why_len)) != 0)
    return err;
  return be->open(location, flags, out, why, why_len);
}

int store_exists_url(const char *url) {
  const struct store_backend *be;
  const char *location;
  char why[8];
  int err;

  if ((err = store_url_parse(url, &be, &location, why, sizeof(why))) != 0)
    return err;
  return be->exists(location);
}

int store_check_url(const char *url, FILE *out) {
  const struct store_backend *be;
  const char *location;
  char why[512];
  int err;

  if ((err = store_url_parse(url, &be, &location, why, sizeof(why))) != 0) {
    fprintf(out, "%s\n", why);
    return err;
  }
  return be->check(location, out);
}

int store_is_read_only(const store_t *s) {
  return (s->flags & STORE_OPEN_READ_ONLY) != 0;
}

void store_close(store_t *s) {
  if (s != NULL)
    s->ops->close(s);
}

const char *store_errmsg(const store_t *s) { return s->ops->errmsg(s); }

int store_file_check(store_t *s) { return s->ops->file_check(s); }

int store_file_lost(const store_t *s) { return s->ops->file_lost(s); }

int store_fingerprint_get(store_t *s, uint8_t out[STORE_FINGERPRINT_BYTES],
                          int *present) {
  return s->ops->fingerprint_get(s, out, present);
}

int store_fingerprint_set(store_t *s,
                          const uint8_t fp[STORE_FINGERPRINT_BYTES]) {
  return s->ops->fingerprint_set(s, fp);
}

int store_count_rows(store_t *s, int64_t *n) {
  return s->ops->count_rows(s, n);
}

int store_load(store_t *s, store_load_cb cb, void *arg) {
  return s->ops->load(s, cb, arg);
}

/* Ends the policy memo's transaction (store_s.policy_memo). */
static void policy_memo_end(store_t *s) {
  s->policy_memo.in_tx = 0;
  s->policy_memo.valid = 0;
}

int store_begin(store_t *s) {
  int err = s->ops->begin(s);

  policy_memo_end(s);
  s->policy_memo.in_tx = err == 0;
  return err;
}

int store_commit(store_t *s) {
  policy_memo_end(s);
  return s->ops->commit(s);
}

void store_rollback(store_t *s) {
  policy_memo_end(s);
  s->ops->rollback(s);
}

int store_insert(store_t *s, store_token_t *row) {
  return s->ops->insert(s, row);
}

int store_revoke(store_t *s, const char *domain, const char *id, int64_t now,
                 const char *by, int64_t *revoked_at, int *already,
                 uint8_t hash[TOKEND_HASH_BYTES]) {
  return s->ops->revoke(s, domain, id, now, by, revoked_at, already, hash);
}

int store_touch(store_t *s, const store_touch_t *items, size_t n) {
  return s->ops->touch(s, items, n);
}

int store_list(store_t *s, const char *domain, int include_revoked,
               int64_t before_seq, store_token_t *rows, size_t max_rows,
               size_t *n_rows) {
  return s->ops->list(s, domain, include_revoked, before_seq, rows, max_rows,
                      n_rows);
}

int store_admin_grant(store_t *s, const char *domain, const char *user,
                      int64_t now, const char *by, int64_t *granted_at,
                      int *already) {
  return s->ops->admin_grant(s, domain, user, now, by, granted_at, already);
}

int store_admin_remove(store_t *s, const char *domain, const char *user,
                       int revoke_tokens, int64_t now, const char *by,
                       uint8_t (**hashes)[TOKEND_HASH_BYTES],
                       size_t *n_hashes) {
  return s->ops->admin_remove(s, domain, user, revoke_tokens, now, by, hashes,
                              n_hashes);
}

int store_admin_load(store_t *s, store_admin_cb cb, void *arg) {
  return s->ops->admin_load(s, cb, arg);
}

int store_token_get(store_t *s, const char *domain, const char *id,
                    store_token_t *row) {
  return s->ops->token_get(s, domain, id, row);
}

int store_admin_get(store_t *s, const char *domain, const char *user,
                    int64_t *granted_at) {
  return s->ops->admin_get(s, domain, user, granted_at);
}

int store_revoked_with(store_t *s, const char *domain, const char *created_by,
                       int64_t revoked_at, const char *revoked_by,
                       uint8_t (**hashes)[TOKEND_HASH_BYTES],
                       size_t *n_hashes) {
  return s->ops->revoked_with(s, domain, created_by, revoked_at, revoked_by,
                              hashes, n_hashes);
}

int store_audit_key_set(store_t *s, const uint8_t key[STORE_AUDIT_KEY_BYTES]) {
  return s->ops->audit_key_set(s, key);
}

int store_audit_append(store_t *s, store_audit_t *ev) {
  return s->ops->audit_append(s, ev);
}

int store_audit_list(store_t *s, const char *domain, int64_t since,
                     int64_t before_id, store_audit_t *rows, size_t max_rows,
                     size_t *n_rows) {
  return s->ops->audit_list(s, domain, since, before_id, rows, max_rows,
                            n_rows);
}

int store_audit_head(store_t *s, int64_t *id,
                     uint8_t hash[STORE_AUDIT_HASH_BYTES]) {
  return s->ops->audit_head(s, id, hash);
}

int store_audit_verify(store_t *s, int64_t anchor_id,
                       const uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES],
                       store_audit_check_t *out) {
  return s->ops->audit_verify(s, anchor_id, anchor_hash, out);
}

int store_verify_counts_add(store_t *s, const char *domain, uint64_t valid,
                            uint64_t invalid, int64_t now) {
  return s->ops->verify_counts_add(s, domain, valid, invalid, now);
}

int64_t store_change_rev(const store_t *s) { return s->ops->change_rev(s); }

int store_snapshot_begin(store_t *s, int64_t *rev) {
  return s->ops->snapshot_begin(s, rev);
}

void store_snapshot_end(store_t *s) { s->ops->snapshot_end(s); }
int store_audit_load(store_t *s, store_audit_cb cb, void *arg) {
  return s->ops->audit_load(s, cb, arg);
}

int store_counts_load(store_t *s, store_counts_cb cb, void *arg) {
  return s->ops->counts_load(s, cb, arg);
}

int store_token_import(store_t *s, const store_token_t *row) {
  return s->ops->token_import(s, row);
}

int store_audit_import(store_t *s, const store_audit_t *ev,
                       const uint8_t *hash) {
  return s->ops->audit_import(s, ev, hash);
}

int store_counts_import(store_t *s, const store_counts_t *counts) {
  return s->ops->counts_import(s, counts);
}

int store_backup(store_t *s, const char *path, int64_t *bytes) {
  if (s->ops->backup == NULL)
    return TOKEND_EUNIMPL;
  return s->ops->backup(s, path, bytes);
}

int store_audit_prune(store_t *s, int64_t keep_ms, int64_t now_ms,
                      int64_t *removed, int64_t *upto) {
  if (s->ops->audit_prune == NULL)
    return TOKEND_EUNIMPL;
  return s->ops->audit_prune(s, keep_ms, now_ms, removed, upto);
}

int store_has_audit_prune(const store_t *s) {
  return s->ops->audit_prune != NULL;
}

int store_token_update(store_t *s, const store_token_t *row) {
  return s->ops->token_update(s, row);
}

int store_list_expiring(store_t *s, const char *domain, int64_t now,
                        int64_t until, int64_t before_seq, store_token_t *rows,
                        size_t max_rows, size_t *n_rows) {
  return s->ops->list_expiring(s, domain, now, until, before_seq, rows,
                               max_rows, n_rows);
}

int store_bulk_revoke(store_t *s, const char *domain,
                      const store_bulk_select_t *sel, int64_t now,
                      const char *by, store_revoked_t **revoked,
                      size_t *n_revoked, size_t *n_already, char *missing) {
  return s->ops->bulk_revoke(s, domain, sel, now, by, revoked, n_revoked,
                             n_already, missing);
}

int store_revoked_at_by(store_t *s, const char *domain, int64_t revoked_at,
                        const char *revoked_by, store_revoked_t **revoked,
                        size_t *n_revoked) {
  return s->ops->revoked_at_by(s, domain, revoked_at, revoked_by, revoked,
                               n_revoked);
}

int store_policy_get(store_t *s, const char *domain, store_policy_t *out) {
  int err;

  if (s->policy_memo.valid && strcmp(s->policy_memo.domain, domain) == 0) {
    if (!s->policy_memo.found)
      return TOKEND_ENOTFOUND;
    *out = s->policy_memo.policy;
    return 0;
  }
  err = s->ops->policy_get(s, domain, out);
  if (s->policy_memo.in_tx && (err == 0 || err == TOKEND_ENOTFOUND) &&
      strlen(domain) < sizeof(s->policy_memo.domain)) {
    s->policy_memo.valid = 1;
    s->policy_memo.found = err == 0;
    snprintf(s->policy_memo.domain, sizeof(s->policy_memo.domain), "%s",
             domain);
    if (err == 0)
      s->policy_memo.policy = *out;
  }
  return err;
}

int store_policy_set(store_t *s, const store_policy_t *p) {
  /* Read again after: the row as stored (updated_at, ...). */
  s->policy_memo.valid = 0;
  return s->ops->policy_set(s, p);
}

int store_policy_load(store_t *s, store_policy_cb cb, void *arg) {
  return s->ops->policy_load(s, cb, arg);
}

int store_active_count(store_t *s, const char *domain, int64_t now,
                       int64_t limit, int64_t *n) {
  return s->ops->active_count(s, domain, now, limit, n);
}

int store_revoke_by_hash(store_t *s, store_hash_token_t *items, size_t n,
                         int64_t now, const char *by, int revoke) {
  return s->ops->revoke_by_hash(s, items, n, now, by, revoke);
}

int store_meta_get(store_t *s, const char *key, uint8_t *buf, size_t cap,
                   size_t *len) {
  return s->ops->meta_get(s, key, buf, cap, len);
}

int store_meta_set(store_t *s, const char *key, const uint8_t *val,
                   size_t len) {
  return s->ops->meta_set(s, key, val, len);
}

int store_token_rekey(store_t *s, const uint8_t old_hash[TOKEND_HASH_BYTES],
                      const uint8_t new_hash[TOKEND_HASH_BYTES], int32_t gen,
                      int64_t now) {
  return s->ops->token_rekey(s, old_hash, new_hash, gen, now);
}
