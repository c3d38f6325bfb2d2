/* jobs.c: what each store job runs, and how a write in a commit in doubt is
 * found again (store/jobs.h). Backend-neutral: only store.h calls. */
#include "store/jobs.h"

#include "store/policy.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_job_fail(store_job_t *job, int err, const char *msg) {
  job->result = err;
  snprintf(job->errmsg, sizeof(job->errmsg), "%s", msg);
}

int store_job_writes(const store_job_t *job) {
  switch (job->kind) {
#define X(KIND, name, writes, reconcile)                                       \
  case STORE_JOB_##KIND:                                                       \
    return writes;
    STORE_JOBS(X)
#undef X
  }
  return 0;
}

void store_job_clear_outputs(store_job_t *job) {
  if (job->kind == STORE_JOB_BULK_REVOKE) {
    free(job->u.bulk_revoke.revoked);
    job->u.bulk_revoke.revoked = NULL;
    job->u.bulk_revoke.n_revoked = 0;
    job->u.bulk_revoke.n_already = 0;
    return;
  }
  if (job->kind != STORE_JOB_ADMIN_REMOVE)
    return;
  free(job->u.admin_remove.hashes);
  job->u.admin_remove.hashes = NULL;
  job->u.admin_remove.n_hashes = 0;
}

int store_job_run_issue(store_t *store, store_job_t *job) {
  store_token_t *row = &job->u.issue.row;
  char why[sizeof(job->errmsg)]; /* the answer's message */
  /* The domain's policy (issue 17), in this transaction: every host
   * agrees on it, and Issues of one group commit count each other. */
  int err =
      store_policy_enforce(store, row->domain, row->created_at, row->expires_at,
                           row->scopes, 1, why, sizeof(why));

  if (err == TOKEND_EINVAL || err == TOKEND_EQUOTA) {
    store_job_fail(job, err, why);
    if (job->audit != NULL)
      snprintf(job->audit->detail, sizeof(job->audit->detail), "%s", why);
    return 0;
  }
  if (err != 0)
    return err;
  return store_insert(store, row);
}

int store_job_run_revoke(store_t *store, store_job_t *job) {
  int err = store_revoke(store, job->u.revoke.domain, job->u.revoke.id,
                         job->u.revoke.now, job->u.revoke.by,
                         &job->u.revoke.revoked_at, &job->u.revoke.already,
                         job->u.revoke.hash);

  if (err != TOKEND_ENOTFOUND)
    return err;
  store_job_fail(job, err, "no such token in this domain");
  return 0;
}

int store_job_run_touch(store_t *store, store_job_t *job) {
  size_t i;
  int err = store_touch(store, job->u.touch.items, job->u.touch.n);

  for (i = 0; err == 0 && i < job->u.touch.n_counts; i++)
    err = store_verify_counts_add(
        store, job->u.touch.counts[i].domain, job->u.touch.counts[i].valid,
        job->u.touch.counts[i].invalid, job->u.touch.now);
  return err;
}

int store_job_run_grant(store_t *store, store_job_t *job) {
  return store_admin_grant(store, job->u.grant.domain, job->u.grant.user,
                           job->u.grant.now, job->u.grant.by,
                           &job->u.grant.granted_at, &job->u.grant.already);
}

int store_job_run_admin_remove(store_t *store, store_job_t *job) {
  int err = store_admin_remove(
      store, job->u.admin_remove.domain, job->u.admin_remove.user,
      job->u.admin_remove.revoke_tokens, job->u.admin_remove.now,
      job->u.admin_remove.by, &job->u.admin_remove.hashes,
      &job->u.admin_remove.n_hashes);

  if (err != TOKEND_ENOTFOUND)
    return err;
  store_job_fail(job, err, "this user is not an admin of this domain");
  return 0;
}

/* Every token revoked gets its own audit row, in the same transaction;
 * the job's own record (appended by store_job_run) sums the call up. */
int store_job_run_bulk_revoke(store_t *store, store_job_t *job) {
  store_audit_t *ev;
  size_t i;
  int err = store_bulk_revoke(
      store, job->u.bulk_revoke.domain, &job->u.bulk_revoke.sel,
      job->u.bulk_revoke.now, job->u.bulk_revoke.by,
      &job->u.bulk_revoke.revoked, &job->u.bulk_revoke.n_revoked,
      &job->u.bulk_revoke.n_already, job->u.bulk_revoke.missing);

  if (err == TOKEND_ENOTFOUND) {
    store_job_fail(job, err, "no such token in this domain");
    if (job->audit != NULL)
      snprintf(job->audit->detail, sizeof(job->audit->detail),
               "token_ids: no token %s in this domain; nothing revoked",
               job->u.bulk_revoke.missing);
    return 0;
  }
  if (err != 0 || job->audit == NULL)
    return err;
  if ((ev = malloc(sizeof(*ev))) == NULL)
    return TOKEND_ENOMEM;
  for (i = 0; err == 0 && i < job->u.bulk_revoke.n_revoked; i++) {
    *ev = *job->audit;
    snprintf(ev->token_id, sizeof(ev->token_id), "%s",
             job->u.bulk_revoke.revoked[i].id);
    err = store_audit_append(store, ev);
  }
  free(ev);
  if (err == 0) {
    char what[sizeof(job->audit->detail)];

    memcpy(what, job->audit->detail, sizeof(what));
    snprintf(job->audit->detail, sizeof(job->audit->detail),
             "%.180s: %zu revoked, %zu already revoked", what,
             job->u.bulk_revoke.n_revoked, job->u.bulk_revoke.n_already);
  }
  return err;
}

/* The policy before (for the audit row's before/after) and after. */
int store_job_run_policy_set(store_t *store, store_job_t *job) {
  int err = store_policy_get(store, job->u.policy_set.policy.domain,
                             &job->u.policy_set.before);

  if (err != 0 && err != TOKEND_ENOTFOUND)
    return err;
  job->u.policy_set.had = err == 0;
  if (job->audit != NULL) {
    char before[120], after[120];

    store_policy_describe(job->u.policy_set.had ? &job->u.policy_set.before
                                                : NULL,
                          before, sizeof(before));
    store_policy_describe(&job->u.policy_set.policy, after, sizeof(after));
    snprintf(job->audit->detail, sizeof(job->audit->detail),
             "before: %s; after: %s", before, after);
  }
  return store_policy_set(store, &job->u.policy_set.policy);
}

int store_job_run_policy_get(store_t *store, store_job_t *job) {
  int err = store_policy_get(store, job->u.policy_get.domain,
                             &job->u.policy_get.policy);

  job->u.policy_get.found = err == 0;
  return err == TOKEND_ENOTFOUND ? 0 : err;
}

/* Each token revoked is audited as leaked, in its own domain, with where it
 * was found (never the secret); the job's own record sums the call up. */
int store_job_run_leaked(store_t *store, store_job_t *job) {
  store_hash_token_t *it;
  store_audit_t *ev;
  size_t i;
  int err = store_revoke_by_hash(store, job->u.leaked.items, job->u.leaked.n,
                                 job->u.leaked.now, job->u.leaked.by, 1);

  job->u.leaked.n_revoked = 0;
  if (err != 0 || job->audit == NULL)
    return err;
  if ((ev = malloc(sizeof(*ev))) == NULL)
    return TOKEND_ENOMEM;
  for (i = 0; err == 0 && i < job->u.leaked.n; i++) {
    it = &job->u.leaked.items[i];
    if (!it->revoked_now)
      continue;
    job->u.leaked.n_revoked++;
    *ev = *job->audit;
    snprintf(ev->domain, sizeof(ev->domain), "%s", it->domain);
    snprintf(ev->token_id, sizeof(ev->token_id), "%s", it->id);
    snprintf(ev->detail, sizeof(ev->detail), "leaked: found at %.200s",
             job->u.leaked.source[0] != '\0' ? job->u.leaked.source
                                             : "(no source given)");
    err = store_audit_append(store, ev);
  }
  free(ev);
  if (err == 0)
    snprintf(job->audit->detail, sizeof(job->audit->detail),
             "%zu given, %zu revoked as leaked; source %.160s", job->u.leaked.n,
             job->u.leaked.n_revoked,
             job->u.leaked.source[0] != '\0' ? job->u.leaked.source : "-");
  return err;
}

/* The audit record alone: store_job_run appends it. */
int store_job_run_audit(store_t *store, store_job_t *job) {
  (void)store;
  (void)job;
  return 0;
}

int store_job_run_list(store_t *store, store_job_t *job) {
  if (job->u.list.expiring_until > 0)
    return store_list_expiring(store, job->u.list.domain, job->u.list.now,
                               job->u.list.expiring_until,
                               job->u.list.before_seq, job->u.list.rows,
                               job->u.list.max_rows, &job->u.list.n_rows);
  return store_list(store, job->u.list.domain, job->u.list.include_revoked,
                    job->u.list.before_seq, job->u.list.rows,
                    job->u.list.max_rows, &job->u.list.n_rows);
}

int store_job_run_audit_list(store_t *store, store_job_t *job) {
  return store_audit_list(store, job->u.audit_list.domain,
                          job->u.audit_list.since, job->u.audit_list.before_id,
                          job->u.audit_list.rows, job->u.audit_list.max_rows,
                          &job->u.audit_list.n_rows);
}

/* A backend without a backup of its own answers so, naming the tool. */
int store_job_run_backup(store_t *store, store_job_t *job) {
  int err = store_backup(store, job->u.backup.path, &job->u.backup.bytes);

  if (err == TOKEND_EUNIMPL) {
    store_job_fail(job, TOKEND_ECONFIG,
                   "this store has no backup through tokend; back up "
                   "PostgreSQL with its own tools (pg_dump, pg_basebackup)");
    return 0;
  }
  /* The file's problems are the caller's answer, not the store's. */
  if (err == TOKEND_EEXIST || err == TOKEND_EIO) {
    store_job_fail(job, err, store_errmsg(store));
    return 0;
  }
  return err;
}

/* The removal is recorded in the audit log itself (the job's audit record,
 * whose detail says what went), unless nothing went. */
int store_job_run_audit_prune(store_t *store, store_job_t *job) {
  int err = store_audit_prune(
      store, job->u.audit_prune.keep_ms, job->u.audit_prune.now_ms,
      &job->u.audit_prune.removed, &job->u.audit_prune.upto);

  if (err == 0 && job->audit != NULL)
    snprintf(job->audit->detail, sizeof(job->audit->detail),
             "removed %lld audit rows older than %lld days, up to row %lld "
             "(--audit-retention-days); the chain goes on from that row's "
             "hash",
             (long long)job->u.audit_prune.removed,
             (long long)(job->u.audit_prune.keep_ms / 86400000),
             (long long)job->u.audit_prune.upto);
  return err;
}

/* Re-keyed already (by another host, or an earlier job) is the job's
 * answer, not the store's failure. */
int store_job_run_rekey(store_t *store, store_job_t *job) {
  int err =
      store_token_rekey(store, job->u.rekey.old_hash, job->u.rekey.new_hash,
                        job->u.rekey.gen, job->u.rekey.now);

  if (err != TOKEND_ENOTFOUND)
    return err;
  store_job_fail(job, err, "no token on the previous pepper with this hash");
  return 0;
}

int store_job_run_audit_verify(store_t *store, store_job_t *job) {
  return store_audit_verify(store, job->u.audit_verify.anchor_id,
                            job->u.audit_verify.anchor_hash,
                            &job->u.audit_verify.check);
}

/* The admin check of job->authz, against the store as this transaction sees
 * it: a removal that committed before (or earlier in this transaction) is
 * seen, so no call of a removed admin can write after the removal. Returns
 * 0 (the job may run), 1 (refused: the job failed with TOKEND_EPERM) or a
 * store failure. */
static int job_authz(store_t *store, store_job_t *job) {
  int64_t granted_at;
  int err;

  if (!job->authz.required)
    return 0;
  err = store_admin_get(store, job->authz.domain, job->authz.user, &granted_at);
  if (err != TOKEND_ENOTFOUND)
    return err;
  /* The audit row already names the actor and the domain. */
  store_job_fail(job, TOKEND_EPERM,
                 "no longer an admin of this domain (an operator removed the "
                 "grant)");
  if (job->audit != NULL)
    snprintf(job->audit->detail, sizeof(job->audit->detail), "%s", job->errmsg);
  return 1;
}

int store_job_run(store_t *store, store_job_t *job) {
  int err = job_authz(store, job);

  if (err == 1) {
    err = 0;
    goto audit;
  }
  if (err != 0)
    goto out;
  switch (job->kind) {
#define X(KIND, name, writes, reconcile)                                       \
  case STORE_JOB_##KIND:                                                       \
    err = store_job_run_##name(store, job);                                    \
    break;
    STORE_JOBS(X)
#undef X
  }
audit:
  /* A retention pass that removed nothing leaves no row. */
  if (err == 0 && job->audit != NULL && store_job_writes(job) &&
      !(job->kind == STORE_JOB_AUDIT_PRUNE &&
        job->u.audit_prune.removed == 0)) {
    if (job->audit->code == 0 && job->result != 0)
      job->audit->code = tokend_err_grpc(job->result);
    err = store_audit_append(store, job->audit);
  }
out:
  if (err != 0)
    store_job_fail(job, err, store_errmsg(store));
  return err;
}

int store_job_reconcile_none(store_t *store, store_job_t *job) {
  (void)store;
  (void)job;
  return 0;
}

int store_job_reconcile_issue(store_t *store, store_job_t *job) {
  store_token_t *row = malloc(sizeof(*row));
  int err;

  if (row == NULL)
    return TOKEND_ENOMEM;
  err =
      store_token_get(store, job->u.issue.row.domain, job->u.issue.row.id, row);
  if (err == 0) {
    job->applied = 1;
    job->u.issue.row.seq = row->seq;
  }
  free(row);
  /* "Not there" is an answer, not a failure of the look. */
  return err == TOKEND_ENOTFOUND ? 0 : err;
}

int store_job_reconcile_revoke(store_t *store, store_job_t *job) {
  store_token_t *row = malloc(sizeof(*row));
  int err;

  if (row == NULL)
    return TOKEND_ENOMEM;
  err = store_token_get(store, job->u.revoke.domain, job->u.revoke.id, row);
  if (err == 0 && row->revoked_at != 0) {
    job->applied = 1;
    job->u.revoke.revoked_at = row->revoked_at;
    job->u.revoke.already = row->revoked_at != job->u.revoke.now;
    memcpy(job->u.revoke.hash, row->hash, TOKEND_HASH_BYTES);
  }
  free(row);
  return err == TOKEND_ENOTFOUND ? 0 : err;
}

int store_job_reconcile_rekey(store_t *store, store_job_t *job) {
  store_token_t *row = malloc(sizeof(*row));
  int err;

  if (row == NULL)
    return TOKEND_ENOMEM;
  err = store_token_get(store, job->u.rekey.domain, job->u.rekey.id, row);
  if (err == 0 &&
      sodium_memcmp(row->hash, job->u.rekey.new_hash, TOKEND_HASH_BYTES) == 0)
    job->applied = 1;
  free(row);
  return err == TOKEND_ENOTFOUND ? 0 : err;
}

int store_job_reconcile_grant(store_t *store, store_job_t *job) {
  int err = store_admin_get(store, job->u.grant.domain, job->u.grant.user,
                            &job->u.grant.granted_at);

  if (err == 0)
    job->applied = 1;
  return err == TOKEND_ENOTFOUND ? 0 : err;
}

int store_job_reconcile_admin_remove(store_t *store, store_job_t *job) {
  int64_t at;
  int err = store_admin_get(store, job->u.admin_remove.domain,
                            job->u.admin_remove.user, &at);

  if (err != TOKEND_ENOTFOUND)
    return err; /* still an admin (0): not applied; or a failure */
  job->applied = 1;
  if (!job->u.admin_remove.revoke_tokens)
    return 0;
  err = store_revoked_with(store, job->u.admin_remove.domain,
                           job->u.admin_remove.user, job->u.admin_remove.now,
                           job->u.admin_remove.by, &job->u.admin_remove.hashes,
                           &job->u.admin_remove.n_hashes);
  return err == TOKEND_ENOTFOUND ? 0 : err;
}

int store_job_reconcile(store_t *store, store_job_t *job) {
  switch (job->kind) {
#define X(KIND, name, writes, reconcile)                                       \
  case STORE_JOB_##KIND:                                                       \
    return reconcile(store, job);
    STORE_JOBS(X)
#undef X
  }
  return 0;
}

/* ---- the token record (issue 17) ---- */

int store_job_run_lookup(store_t *store, store_job_t *job) {
  int err = store_token_get(store, job->u.lookup.domain, job->u.lookup.id,
                            &job->u.lookup.row);

  if (err != TOKEND_ENOTFOUND)
    return err;
  store_job_fail(job, err, "no such token in this domain");
  return 0;
}

/* 1 if scope is one of the space-separated scopes. */
static int scope_held(const char *scopes, const char *scope, size_t len) {
  const char *p = scopes;

  while (*p != '\0') {
    size_t n = strcspn(p, " ");

    if (n == len && memcmp(p, scope, len) == 0)
      return 1;
    p += n;
    if (*p == ' ')
      p++;
  }
  return 0;
}

/* The first of want's space-separated scopes that have does not hold into
 * missing, or "" when want is a subset. */
static void scopes_missing(const char *have, const char *want, char *missing,
                           size_t cap) {
  const char *p = want;

  missing[0] = '\0';
  while (*p != '\0') {
    size_t n = strcspn(p, " ");

    if (!scope_held(have, p, n)) {
      snprintf(missing, cap, "%.*s", (int)n, p);
      return;
    }
    p += n;
    if (*p == ' ')
      p++;
  }
}

/* 1 if every scope of have is in want too (want narrows nothing). */
static int scopes_all_kept(const char *have, const char *want) {
  char missing[TOKEND_SCOPE_BYTES];

  scopes_missing(want, have, missing, sizeof(missing));
  return missing[0] == '\0';
}

/* What an Edit changed, for its audit row: each field's before and after
 * (metadata by size: it may be a kilobyte). */
static void edit_detail(const store_job_t *job, char *out, size_t cap) {
  const store_token_t *b = job->u.edit.before, *a = job->u.edit.after;
  size_t off = 0;

#define EDIT_APPEND(...)                                                       \
  do {                                                                         \
    if (off < cap)                                                             \
      off += (size_t)snprintf(out + off, cap - off, __VA_ARGS__);              \
  } while (0)
  out[0] = '\0';
  if (job->u.edit.set_expires_at)
    EDIT_APPEND("expires_at %lld -> %lld; ", (long long)b->expires_at,
                (long long)a->expires_at);
  if (job->u.edit.set_scopes)
    EDIT_APPEND("scopes '%.80s' -> '%.80s'; ", b->scopes, a->scopes);
  if (job->u.edit.set_metadata)
    EDIT_APPEND("metadata %zu -> %zu bytes; ", strlen(b->metadata),
                strlen(a->metadata));
  if (job->u.edit.set_label)
    EDIT_APPEND("label '%.60s' -> '%.60s'; ", b->label, a->label);
#undef EDIT_APPEND
  /* No trailing separator. */
  off = strlen(out);
  if (off >= 2 && strcmp(out + off - 2, "; ") == 0)
    out[off - 2] = '\0';
}

int store_job_run_edit(store_t *store, store_job_t *job) {
  store_token_t *b = job->u.edit.before, *a = job->u.edit.after;
  const store_token_t *w = job->u.edit.want;
  char why[sizeof(job->errmsg)], missing[TOKEND_SCOPE_BYTES];
  store_policy_t pol;
  int64_t now = job->u.edit.now;
  int err = store_token_get(store, job->u.edit.domain, job->u.edit.id, b);

  if (err == TOKEND_ENOTFOUND) {
    store_job_fail(job, err, "no such token in this domain");
    return 0;
  }
  if (err != 0)
    return err;
  if (b->revoked_at != 0) {
    store_job_fail(job, TOKEND_ECONFIG,
                   "the token is revoked: a revoked token cannot be edited");
    return 0;
  }
  /* Moving an expired token's expiry would bring it back to life, past
   * the domain's active-token cap, which counts only active tokens. */
  if (job->u.edit.set_expires_at && b->expires_at != 0 &&
      b->expires_at <= now) {
    store_job_fail(job, TOKEND_ECONFIG,
                   "the token has expired: its expiry cannot be moved "
                   "(issue a new token)");
    return 0;
  }
  /* A token Roll replaced expires at the end of its grace: lengthening
   * (or removing) that expiry would keep the replaced secret working,
   * which is what the Roll was for. Shortening stays allowed. */
  if (job->u.edit.set_expires_at && b->rolled_to[0] != '\0' &&
      (w->expires_at == 0 ||
       (b->expires_at != 0 && w->expires_at > b->expires_at))) {
    snprintf(why, sizeof(why),
             "the token was rolled (to %s): its expiry can only be "
             "shortened",
             b->rolled_to);
    store_job_fail(job, TOKEND_ECONFIG, why);
    return 0;
  }
  *a = *b;
  if (job->u.edit.set_label)
    memcpy(a->label, w->label, sizeof(a->label));
  if (job->u.edit.set_metadata)
    memcpy(a->metadata, w->metadata, sizeof(a->metadata));
  if (job->u.edit.set_scopes) {
    scopes_missing(b->scopes, w->scopes, missing, sizeof(missing));
    if (missing[0] != '\0') {
      snprintf(why, sizeof(why),
               "scopes can only be narrowed: the token does not hold '%s'",
               missing);
      store_job_fail(job, TOKEND_EINVAL, why);
      return 0;
    }
    memcpy(a->scopes, w->scopes, sizeof(a->scopes));
  }
  if (job->u.edit.set_expires_at) {
    a->expires_at = w->expires_at;
    /* Lengthening (or removing) the expiry gives validity: only within
     * the domain's policy. Shortening needs no permission. */
    if (b->expires_at != 0 &&
        (a->expires_at == 0 || a->expires_at > b->expires_at)) {
      /* The lifetime counts from the token's creation, not from this
       * Edit: else Edits one after another, each within max_lifetime_ms
       * of its own time, keep a token alive past the policy for ever. */
      err = store_policy_get(store, a->domain, &pol);
      if (err == 0 && pol.max_lifetime_ms > 0 && a->expires_at != 0 &&
          a->expires_at - b->created_at > pol.max_lifetime_ms) {
        snprintf(why, sizeof(why),
                 "expires_at is beyond the domain's policy: at most "
                 "max_lifetime_ms %" PRId64 " after the token's creation",
                 pol.max_lifetime_ms);
        store_job_fail(job, TOKEND_EINVAL, why);
        return 0;
      }
      if (err != 0 && err != TOKEND_ENOTFOUND)
        return err;
      /* The expiry only: scopes only narrow, and narrowing a token
       * that holds a scope the policy no longer allows must stay
       * possible. */
      err = store_policy_enforce(store, a->domain, now, a->expires_at, "", 0,
                                 why, sizeof(why));
      if (err == TOKEND_EINVAL) {
        store_job_fail(job, err, why);
        return 0;
      }
      if (err != 0)
        return err;
    }
  }
  job->u.edit.taken = (a->expires_at != 0 &&
                       (b->expires_at == 0 || a->expires_at < b->expires_at)) ||
                      !scopes_all_kept(b->scopes, a->scopes);
  if ((err = store_token_update(store, a)) != 0)
    return err;
  if (job->audit != NULL)
    edit_detail(job, job->audit->detail, sizeof(job->audit->detail));
  return 0;
}

int store_job_run_roll(store_t *store, store_job_t *job) {
  store_token_t *old = job->u.roll.old, *fresh = job->u.roll.fresh;
  int64_t now = job->u.roll.now, until = now + job->u.roll.grace_ms, lifetime;
  char why[sizeof(job->errmsg)];
  store_policy_t pol;
  int err = store_token_get(store, job->u.roll.domain, job->u.roll.id, old);

  if (err == TOKEND_ENOTFOUND) {
    store_job_fail(job, err, "no such token in this domain");
    return 0;
  }
  if (err != 0)
    return err;
  if (old->revoked_at != 0 ||
      (old->expires_at != 0 && old->expires_at <= now)) {
    store_job_fail(job, TOKEND_ECONFIG,
                   old->revoked_at != 0
                       ? "the token is revoked: only an active token rolls"
                       : "the token has expired: only an active token rolls");
    return 0;
  }
  if (old->rolled_to[0] != '\0') {
    snprintf(why, sizeof(why), "the token was already rolled (to %s)",
             old->rolled_to);
    store_job_fail(job, TOKEND_ECONFIG, why);
    return 0;
  }
  /* The new token: the old one's label, scopes and metadata, and a
   * lifetime as long from now as the old one's from its creation. */
  memcpy(fresh->domain, old->domain, sizeof(fresh->domain));
  memcpy(fresh->label, old->label, sizeof(fresh->label));
  memcpy(fresh->scopes, old->scopes, sizeof(fresh->scopes));
  memcpy(fresh->metadata, old->metadata, sizeof(fresh->metadata));
  memcpy(fresh->rolled_from, old->id, sizeof(fresh->rolled_from));
  fresh->rolled_to[0] = '\0';
  /* pepper_gen: as the loop set it (the hash is under today's pepper). */
  fresh->created_at = now;
  fresh->expires_at = 0;
  if (old->expires_at != 0) {
    /* Bounds before the sum: an expiry near INT64_MAX (Issue takes any
     * future one) would overflow it into the past; the farthest instead. */
    lifetime = old->expires_at - old->created_at;
    fresh->expires_at = lifetime > INT64_MAX - now ? INT64_MAX : now + lifetime;
  }
  /* Under the domain's policy as an Issue is, with two differences: a
   * lifetime longer than the policy allows is cut to it (a Roll, often of
   * a leaked token, is not refused for what the policy came to forbid
   * after the old one was issued), and the active-token cap is not
   * counted (the new token replaces the old one). */
  if ((err = store_policy_get(store, fresh->domain, &pol)) == 0) {
    if (pol.max_lifetime_ms > 0 &&
        (fresh->expires_at == 0 ||
         fresh->expires_at - now > pol.max_lifetime_ms))
      fresh->expires_at = now + pol.max_lifetime_ms;
  } else if (err != TOKEND_ENOTFOUND) {
    return err;
  }
  err = store_policy_enforce(store, fresh->domain, now, fresh->expires_at,
                             fresh->scopes, 0, why, sizeof(why));
  if (err == TOKEND_EINVAL) {
    store_job_fail(job, err, why);
    return 0;
  }
  if (err != 0)
    return err;
  if ((err = store_insert(store, fresh)) != 0)
    return err;
  /* The old one: never later than it would have expired anyway. */
  if (old->expires_at == 0 || until < old->expires_at)
    old->expires_at = until;
  memcpy(old->rolled_to, fresh->id, sizeof(old->rolled_to));
  if ((err = store_token_update(store, old)) != 0)
    return err;
  if (job->audit != NULL)
    snprintf(job->audit->detail, sizeof(job->audit->detail),
             "rolled to %s; the old token expires at %lld (grace %lld ms)",
             fresh->id, (long long)old->expires_at,
             (long long)job->u.roll.grace_ms);
  return 0;
}

int store_job_reconcile_edit(store_t *store, store_job_t *job) {
  store_token_t *row = malloc(sizeof(*row));
  const store_token_t *w = job->u.edit.want;
  int err;

  if (row == NULL)
    return TOKEND_ENOMEM;
  err = store_token_get(store, job->u.edit.domain, job->u.edit.id, row);
  /* Applied if the row holds every value asked for (an edit that changed
   * nothing is as good as applied). before is then unknown: the after
   * state stands for both. */
  if (err == 0 &&
      (!job->u.edit.set_label || strcmp(row->label, w->label) == 0) &&
      (!job->u.edit.set_metadata || strcmp(row->metadata, w->metadata) == 0) &&
      (!job->u.edit.set_scopes || strcmp(row->scopes, w->scopes) == 0) &&
      (!job->u.edit.set_expires_at || row->expires_at == w->expires_at)) {
    job->applied = 1;
    *job->u.edit.after = *row;
    *job->u.edit.before = *row;
    /* Unknown whether it narrowed anything: assume it did, so caches are
     * told. */
    job->u.edit.taken = 1;
  }
  free(row);
  return err == TOKEND_ENOTFOUND ? 0 : err;
}

int store_job_reconcile_roll(store_t *store, store_job_t *job) {
  store_token_t *row = malloc(sizeof(*row));
  int err;

  if (row == NULL)
    return TOKEND_ENOMEM;
  err = store_token_get(store, job->u.roll.domain, job->u.roll.fresh->id, row);
  if (err == 0) {
    job->applied = 1;
    *job->u.roll.fresh = *row;
    err = store_token_get(store, job->u.roll.domain, job->u.roll.id,
                          job->u.roll.old);
  }
  free(row);
  return err == TOKEND_ENOTFOUND ? 0 : err;
}

int store_job_reconcile_bulk_revoke(store_t *store, store_job_t *job) {
  int err = store_revoked_at_by(store, job->u.bulk_revoke.domain,
                                job->u.bulk_revoke.now, job->u.bulk_revoke.by,
                                &job->u.bulk_revoke.revoked,
                                &job->u.bulk_revoke.n_revoked);

  /* A revocation that took nothing cannot be told from one that did not
   * run: it changed nothing either way, so it is not applied. */
  if (err == 0 && job->u.bulk_revoke.n_revoked > 0)
    job->applied = 1;
  return err;
}

int store_job_reconcile_policy_set(store_t *store, store_job_t *job) {
  store_policy_t now;
  int err = store_policy_get(store, job->u.policy_set.policy.domain, &now);

  /* This call's write is there if the row carries its time and author. */
  if (err == 0 && now.updated_at == job->u.policy_set.policy.updated_at &&
      strcmp(now.updated_by, job->u.policy_set.policy.updated_by) == 0)
    job->applied = 1;
  return err == TOKEND_ENOTFOUND ? 0 : err;
}

/* Read back: each token this call would have revoked carries its time and
 * author if the write is there. */
int store_job_reconcile_leaked(store_t *store, store_job_t *job) {
  store_hash_token_t *it;
  size_t i;
  int err = store_revoke_by_hash(store, job->u.leaked.items, job->u.leaked.n,
                                 job->u.leaked.now, job->u.leaked.by, 0);

  if (err != 0)
    return err;
  job->u.leaked.n_revoked = 0;
  for (i = 0; i < job->u.leaked.n; i++) {
    it = &job->u.leaked.items[i];
    it->revoked_now = it->found && it->revoked_at == job->u.leaked.now &&
                      strcmp(it->revoked_by, job->u.leaked.by) == 0;
    job->u.leaked.n_revoked += it->revoked_now != 0;
  }
  if (job->u.leaked.n_revoked > 0)
    job->applied = 1;
  return 0;
}
