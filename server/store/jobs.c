/* jobs.c: what each store job runs, and how a write in a commit in doubt is
 * found again (store/jobs.h). Backend-neutral: only store.h calls. */
#include "store/jobs.h"

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
  if (job->kind != STORE_JOB_ADMIN_REMOVE)
    return;
  free(job->u.admin_remove.hashes);
  job->u.admin_remove.hashes = NULL;
  job->u.admin_remove.n_hashes = 0;
}

int store_job_run_issue(store_t *store, store_job_t *job) {
  return store_insert(store, &job->u.issue.row);
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

/* The audit record alone: store_job_run appends it. */
int store_job_run_audit(store_t *store, store_job_t *job) {
  (void)store;
  (void)job;
  return 0;
}

int store_job_run_list(store_t *store, store_job_t *job) {
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
