/* store_worker: runs store.h calls on a dedicated thread so that no disk
 * write (an fsync on commit) ever delays the event loop.
 *
 * The loop thread submits jobs; the worker takes every queued job at once
 * and runs consecutive writes in one transaction (group commit: many
 * acknowledged writes share one fsync). A job's done callback runs on the
 * loop thread only after its transaction committed (or failed), in
 * submission order. The jobs themselves (what each runs, how a commit in
 * doubt is settled) are listed in store/jobs.h; the worker knows nothing of
 * any one kind, nor of any backend. */
#ifndef TOKEND_STORE_WORKER_H
#define TOKEND_STORE_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "prom.h"
#include "store/jobs.h"
#include "store/store.h"

typedef struct store_worker_s store_worker_t;

/* What the writer thread has done, for /metrics. */
typedef struct {
  uint64_t audit_rows; /* audit rows committed */
  prom_hist_t commit;  /* each write group's COMMIT (the disk's flush) */
} store_worker_stats_t;

/* A copy of the worker's counts as of its last batch. Loop thread only. */
void store_worker_stats(store_worker_t *w, store_worker_stats_t *out);

/* Starts the worker thread on store (which it then uses exclusively until
 * store_worker_stop returns). */
int store_worker_start(uv_loop_t *loop, store_t *store,
                       store_worker_t **out) TOKEND_MUST_CHECK;

/* Queues job. Loop thread only. */
void store_worker_submit(store_worker_t *w, store_job_t *job);

/* Runs every queued job, calls their done callbacks, joins the thread and
 * frees the worker. Loop thread only; the loop must then run once more so
 * that the worker's async handle closes. */
void store_worker_stop(store_worker_t *w);

#endif
