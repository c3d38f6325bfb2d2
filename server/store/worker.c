#include "store/worker.h"

#include <stdio.h>
#include <stdlib.h>

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
  store_worker_stats_t stats;     /* writer thread only */
  store_worker_stats_t stats_pub; /* guarded by lock: as of the last batch */
};

/* After a commit in doubt: asks the store, for each write of the group,
 * whether it landed after all (store/jobs.h). The store reconnects by
 * itself; once a look fails, the rest of the group stays unknown. */
static void reconcile_group(store_t *store, store_job_t *first,
                            store_job_t *last) {
  store_job_t *j;
  int err = 0;

  for (j = first;; j = j->next) {
    if (err == 0)
      err = store_job_reconcile(store, j);
    if (err != 0)
      j->unknown = 1;
    if (j == last)
      break;
  }
  if (err != 0)
    log_error("store: cannot tell whether a failed commit reached the "
              "database: %s",
              store_errmsg(store));
}

/* Runs the writes first..last (inclusive) in one transaction. If any fails
 * in a way that dooms the transaction, all are rolled back and every one
 * fails: none was acknowledged, so none is lost. */
static void run_write_group(store_t *store, log_limit_t *fail_log,
                            store_worker_stats_t *stats, store_job_t *first,
                            store_job_t *last) {
  store_job_t *j;
  uint64_t t0;
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
  if ((err = store_begin(store)) != 0)
    goto err_fail_all;
  for (j = first;; j = j->next) {
    if ((err = store_job_run(store, j)) != 0) {
      store_rollback(store);
      goto err_fail_all;
    }
    if (j == last)
      break;
  }
  t0 = uv_hrtime();
  err = store_commit(store);
  prom_hist_observe(&stats->commit, uv_hrtime() - t0);
  if (err != 0) {
    /* Not acknowledged either way; the jobs fail as the store being
     * unavailable, and the reconcile below says whether they landed. */
    if ((in_doubt = err == TOKEND_EINDOUBT))
      err = TOKEND_EUNAVAIL;
    goto err_fail_all;
  }
  /* Committed into a file no longer at the path: a restart would not find
   * it, so it is not acknowledged. */
  if ((err = store_file_check(store)) != 0)
    goto err_fail_all;
  /* The group's revision: what every host must have applied for any of
   * its writes to be in effect there (a backend may number a group's
   * changes only when it sends them, by commit at the latest). */
  for (j = first;; j = j->next) {
    j->rev = store_change_rev(store);
    if (j->audit != NULL)
      stats->audit_rows++;
    if (j == last)
      break;
  }
  return;

err_fail_all:
  if (!quiet)
    log_limited(fail_log, LOG_ERROR, "store: write batch failed: %s",
                store_errmsg(store));
  refused = store_is_read_only(store) || store_file_lost(store);
  for (j = first;; j = j->next) {
    store_job_fail(j, err, store_errmsg(store));
    j->rev = 0;
    j->refused = refused;
    store_job_clear_outputs(j);
    if (j == last)
      break;
  }
  /* The commit may have landed (SQLite: written, then its fsync failed); a
   * restart would then find it. Look, so memory can agree. */
  if (in_doubt)
    reconcile_group(store, first, last);
}

static void run_batch(store_t *store, log_limit_t *fail_log,
                      store_worker_stats_t *stats, store_job_t *head) {
  store_job_t *j = head, *first, *last;

  while (j != NULL) {
    if (!store_job_writes(j)) {
      /* A read's failure is its own result (a store that cannot reconnect
       * answers TOKEND_EUNAVAIL). */
      (void)store_job_run(store, j);
      j = j->next;
      continue;
    }
    first = last = j;
    while (last->next != NULL && store_job_writes(last->next))
      last = last->next;
    run_write_group(store, fail_log, stats, first, last);
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
    run_batch(w->store, &w->fail_log, &w->stats, batch);

    uv_mutex_lock(&w->lock);
    w->stats_pub = w->stats;
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

void store_worker_stats(store_worker_t *w, store_worker_stats_t *out) {
  uv_mutex_lock(&w->lock);
  *out = w->stats_pub;
  uv_mutex_unlock(&w->lock);
}

void store_worker_submit(store_worker_t *w, store_job_t *job) {
  job->next = NULL;
  job->result = 0;
  job->errmsg[0] = '\0';
  job->applied = job->unknown = job->refused = 0;
  job->rev = 0;
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
