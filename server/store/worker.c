#include "store/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct store_worker_s {
  store_t *store;
  uv_thread_t thread;
  uv_mutex_t lock;
  uv_cond_t cond;
  uv_async_t async; /* wakes the loop when jobs are done */
  /* Guarded by lock: */
  store_job_t *todo_head, *todo_tail;
  store_job_t *done_head, *done_tail;
  int stopping;
  /* Writer thread only: a disk that stays full fails every batch. */
  log_limit_t fail_log;
};

static void job_fail(store_job_t *job, int err, const char *msg) {
  job->result = err;
  snprintf(job->errmsg, sizeof(job->errmsg), "%s", msg);
}

static int is_write(const store_job_t *job) {
  return job->kind < STORE_JOB_LIST;
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
  job_fail(job, TOKEND_EPERM,
           "no longer an admin of this domain (an operator removed the "
           "grant)");
  if (job->audit != NULL)
    snprintf(job->audit->detail, sizeof(job->audit->detail), "%s", job->errmsg);
  return 1;
}

/* Runs one job inside the current transaction (writes) or alone (reads).
 * Returns 0 unless the failure is the store's (the transaction is then
 * doomed); a job's own "not found" is its result, not a store failure. */
static int job_run(store_t *store, store_job_t *job) {
  size_t i;
  int err = job_authz(store, job);

  if (err == 1) {
    err = 0;
    goto audit;
  }
  if (err != 0)
    goto out;
  switch (job->kind) {
  case STORE_JOB_ISSUE:
    err = store_insert(store, &job->u.issue.row);
    break;
  case STORE_JOB_REVOKE:
    err = store_revoke(store, job->u.revoke.domain, job->u.revoke.id,
                       job->u.revoke.now, job->u.revoke.by,
                       &job->u.revoke.revoked_at, &job->u.revoke.already,
                       job->u.revoke.hash);
    if (err == TOKEND_ENOTFOUND) {
      job_fail(job, err, "no such token in this domain");
      err = 0;
    }
    break;
  case STORE_JOB_TOUCH:
    err = store_touch(store, job->u.touch.items, job->u.touch.n);
    for (i = 0; err == 0 && i < job->u.touch.n_counts; i++)
      err = store_verify_counts_add(
          store, job->u.touch.counts[i].domain, job->u.touch.counts[i].valid,
          job->u.touch.counts[i].invalid, job->u.touch.now);
    break;
  case STORE_JOB_GRANT:
    err = store_admin_grant(store, job->u.grant.domain, job->u.grant.user,
                            job->u.grant.now, job->u.grant.by,
                            &job->u.grant.granted_at, &job->u.grant.already);
    break;
  case STORE_JOB_ADMIN_REMOVE:
    err = store_admin_remove(
        store, job->u.admin_remove.domain, job->u.admin_remove.user,
        job->u.admin_remove.revoke_tokens, job->u.admin_remove.now,
        job->u.admin_remove.by, &job->u.admin_remove.hashes,
        &job->u.admin_remove.n_hashes);
    if (err == TOKEND_ENOTFOUND) {
      job_fail(job, err, "this user is not an admin of this domain");
      err = 0;
    }
    break;
  case STORE_JOB_AUDIT:
    break;
  case STORE_JOB_AUDIT_LIST:
    err = store_audit_list(store, job->u.audit_list.domain,
                           job->u.audit_list.since, job->u.audit_list.before_id,
                           job->u.audit_list.rows, job->u.audit_list.max_rows,
                           &job->u.audit_list.n_rows);
    break;
  case STORE_JOB_AUDIT_VERIFY:
    err = store_audit_verify(store, job->u.audit_verify.anchor_id,
                             job->u.audit_verify.anchor_hash,
                             &job->u.audit_verify.check);
    break;
  case STORE_JOB_LIST:
    err = store_list(store, job->u.list.domain, job->u.list.include_revoked,
                     job->u.list.before_seq, job->u.list.rows,
                     job->u.list.max_rows, &job->u.list.n_rows);
    break;
  }
audit:
  if (err == 0 && job->audit != NULL && is_write(job)) {
    if (job->audit->code == 0 && job->result != 0)
      job->audit->code = tokend_err_grpc(job->result);
    err = store_audit_append(store, job->audit);
  }
out:
  if (err != 0)
    job_fail(job, err, store_errmsg(store));
  return err;
}

/* After a failed commit: reopens the store and finds out, for each write of
 * the group, whether it reached the file after all. */
static void reconcile_group(store_t *store, store_job_t *first,
                            store_job_t *last) {
  store_token_t *row = NULL;
  store_job_t *j;
  int err = store_reopen(store);

  if (err == 0 && (row = malloc(sizeof(*row))) == NULL)
    err = TOKEND_ENOMEM;
  for (j = first;; j = j->next) {
    if (err != 0) {
      j->unknown = 1;
    } else if (j->kind == STORE_JOB_ISSUE) {
      err =
          store_token_get(store, j->u.issue.row.domain, j->u.issue.row.id, row);
      if (err == 0) {
        j->applied = 1;
        j->u.issue.row.seq = row->seq;
      }
    } else if (j->kind == STORE_JOB_REVOKE) {
      err = store_token_get(store, j->u.revoke.domain, j->u.revoke.id, row);
      if (err == 0 && row->revoked_at != 0) {
        j->applied = 1;
        j->u.revoke.revoked_at = row->revoked_at;
        j->u.revoke.already = row->revoked_at != j->u.revoke.now;
        memcpy(j->u.revoke.hash, row->hash, TOKEND_HASH_BYTES);
      }
    } else if (j->kind == STORE_JOB_GRANT) {
      err = store_admin_get(store, j->u.grant.domain, j->u.grant.user,
                            &j->u.grant.granted_at);
      if (err == 0)
        j->applied = 1;
    } else if (j->kind == STORE_JOB_ADMIN_REMOVE) {
      int64_t at;
      err = store_admin_get(store, j->u.admin_remove.domain,
                            j->u.admin_remove.user, &at);
      if (err == TOKEND_ENOTFOUND) {
        j->applied = 1;
        err = j->u.admin_remove.revoke_tokens
                  ? store_revoked_with(
                        store, j->u.admin_remove.domain, j->u.admin_remove.user,
                        j->u.admin_remove.now, j->u.admin_remove.by,
                        &j->u.admin_remove.hashes, &j->u.admin_remove.n_hashes)
                  : 0;
      }
    }
    /* "Not there" is an answer, not a failure of the look. */
    if (err == TOKEND_ENOTFOUND)
      err = 0;
    if (err != 0)
      j->unknown = 1;
    if (j == last)
      break;
  }
  free(row);
  if (err != 0)
    log_error("store: cannot tell whether a failed commit reached the "
              "database: %s",
              store_errmsg(store));
}

/* Runs the writes first..last (inclusive) in one transaction. If any fails
 * in a way that dooms the transaction, all are rolled back and every one
 * fails: none was acknowledged, so none is lost. */
static void run_write_group(store_t *store, log_limit_t *fail_log,
                            store_job_t *first, store_job_t *last) {
  store_job_t *j;
  int err, in_doubt = 0, refused, quiet;

  /* Once the store refuses writes for good, say why once, not per write. */
  quiet = store_is_read_only(store) || store_file_lost(store);
  if (quiet) {
    err = store_is_read_only(store) ? store_begin(store)
                                    : store_file_check(store);
    goto err_fail_all;
  }
  /* A write to a file that was deleted or replaced would be acknowledged
   * and then lost: check before writing (and after committing, below). */
  if ((err = store_file_check(store)) != 0)
    goto err_fail_all;
  /* A reopen that failed earlier is retried before anything else. */
  if (!store_is_open(store) && (err = store_reopen(store)) != 0)
    goto err_fail_all;
  if ((err = store_begin(store)) != 0)
    goto err_fail_all;
  for (j = first;; j = j->next) {
    if ((err = job_run(store, j)) != 0) {
      store_rollback(store);
      goto err_fail_all;
    }
    if (j == last)
      break;
  }
  if ((err = store_commit(store)) != 0) {
    in_doubt = store_failure_in_doubt(store);
    goto err_fail_all;
  }
  /* Committed into a file no longer at the path: a restart would not find
   * it, so it is not acknowledged. */
  if ((err = store_file_check(store)) != 0)
    goto err_fail_all;
  return;

err_fail_all:
  if (!quiet)
    log_limited(fail_log, LOG_ERROR, "store: write batch failed: %s",
                store_errmsg(store));
  refused = store_is_read_only(store) || store_file_lost(store);
  for (j = first;; j = j->next) {
    job_fail(j, err, store_errmsg(store));
    j->refused = refused;
    if (j->kind == STORE_JOB_ADMIN_REMOVE) {
      free(j->u.admin_remove.hashes);
      j->u.admin_remove.hashes = NULL;
      j->u.admin_remove.n_hashes = 0;
    }
    if (j == last)
      break;
  }
  /* A failed COMMIT may have written the transaction before its fsync
   * failed; a restart would then find it. Look, so memory can agree. */
  if (in_doubt)
    reconcile_group(store, first, last);
}

static void run_batch(store_t *store, log_limit_t *fail_log,
                      store_job_t *head) {
  store_job_t *j = head, *first, *last;

  while (j != NULL) {
    if (!is_write(j)) {
      if (!store_is_open(store) && store_reopen(store) != 0)
        job_fail(j, TOKEND_EUNAVAIL, store_errmsg(store));
      else
        job_run(store, j);
      j = j->next;
      continue;
    }
    first = last = j;
    while (last->next != NULL && is_write(last->next))
      last = last->next;
    run_write_group(store, fail_log, first, last);
    j = last->next;
  }
}

static void worker_main(void *arg) {
  store_worker_t *w = arg;
  store_job_t *batch, *tail;
  int stopping;

  for (;;) {
    uv_mutex_lock(&w->lock);
    while (w->todo_head == NULL && !w->stopping)
      uv_cond_wait(&w->cond, &w->lock);
    batch = w->todo_head;
    tail = w->todo_tail;
    w->todo_head = w->todo_tail = NULL;
    stopping = w->stopping;
    uv_mutex_unlock(&w->lock);

    if (batch == NULL && stopping)
      break;
    run_batch(w->store, &w->fail_log, batch);

    uv_mutex_lock(&w->lock);
    if (w->done_tail != NULL)
      w->done_tail->next = batch;
    else
      w->done_head = batch;
    w->done_tail = tail;
    uv_mutex_unlock(&w->lock);
    uv_async_send(&w->async);
  }
}

/* Loop thread: calls done for every finished job, in order. */
static void worker_drain(store_worker_t *w) {
  store_job_t *j, *next;

  uv_mutex_lock(&w->lock);
  j = w->done_head;
  w->done_head = w->done_tail = NULL;
  uv_mutex_unlock(&w->lock);
  for (; j != NULL; j = next) {
    next = j->next;
    j->next = NULL;
    j->done(j);
  }
}

static void on_async(uv_async_t *handle) { worker_drain(handle->data); }

static void on_async_close(uv_handle_t *handle) { free(handle->data); }

int store_worker_start(uv_loop_t *loop, store_t *store, store_worker_t **out) {
  store_worker_t *w;
  int err;

  w = calloc(1, sizeof(*w));
  if (w == NULL)
    return TOKEND_ENOMEM;
  w->store = store;
  log_limit_init(&w->fail_log, LOG_LIMIT_USE_DEFAULT);
  if (uv_mutex_init(&w->lock) != 0)
    goto err_free;
  if (uv_cond_init(&w->cond) != 0)
    goto err_mutex;
  if (uv_async_init(loop, &w->async, on_async) != 0)
    goto err_cond;
  w->async.data = w;
  if ((err = uv_thread_create(&w->thread, worker_main, w)) != 0) {
    log_error("store: cannot start writer thread: %s", uv_strerror(err));
    /* The async handle now frees w in its close callback. */
    uv_close((uv_handle_t *)&w->async, on_async_close);
    uv_cond_destroy(&w->cond);
    uv_mutex_destroy(&w->lock);
    return TOKEND_EINTERNAL;
  }
  *out = w;
  return 0;

err_cond:
  uv_cond_destroy(&w->cond);
err_mutex:
  uv_mutex_destroy(&w->lock);
err_free:
  free(w);
  return TOKEND_EINTERNAL;
}

void store_worker_submit(store_worker_t *w, store_job_t *job) {
  job->next = NULL;
  job->result = 0;
  job->errmsg[0] = '\0';
  job->applied = job->unknown = job->refused = 0;
  uv_mutex_lock(&w->lock);
  if (w->todo_tail != NULL)
    w->todo_tail->next = job;
  else
    w->todo_head = job;
  w->todo_tail = job;
  uv_cond_signal(&w->cond);
  uv_mutex_unlock(&w->lock);
}

void store_worker_stop(store_worker_t *w) {
  uv_mutex_lock(&w->lock);
  w->stopping = 1;
  uv_cond_signal(&w->cond);
  uv_mutex_unlock(&w->lock);
  uv_thread_join(&w->thread);
  worker_drain(w);
  uv_cond_destroy(&w->cond);
  uv_mutex_destroy(&w->lock);
  uv_close((uv_handle_t *)&w->async, on_async_close);
}
