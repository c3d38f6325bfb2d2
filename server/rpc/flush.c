/* The last_used write-back: the index's dirty last_used_at times and the
 * domains' Verify counters go to the store in one job at a time, backing
 * off after failures. */
#include <stdio.h>
#include <stdlib.h>

#include "rpc/internal.h"
#include "rpc/rpc.h"
#include "tokend_time.h"

typedef struct {
  store_job_t job;
  rpc_t *rpc;
  store_touch_t *items;
  domain_counts_t *counts;
} flush_t;

uint64_t rpc_flush_backoff_ms(uint32_t failures, uint32_t max_ms) {
  uint64_t ms = CONFIG_FLUSH_BACKOFF_MIN_MS;
  uint32_t i;

  if (failures == 0)
    return 0;
  /* Doubling stops at the cap, so this never overflows. */
  for (i = 1; i < failures && ms < max_ms; i++)
    ms *= 2;
  return ms < max_ms ? ms : max_ms;
}

static void flush_done(store_job_t *job) {
  flush_t *f = container_of(job, flush_t, job);
  rpc_t *r = f->rpc;
  uint64_t backoff;

  /* last_used_at and the counters are loss-tolerant: when the store
   * refuses writes for good (--read-only, or its file is gone), they are
   * dropped rather than retried. */
  if (job->result != 0 && job->refused) {
    log_limited(&r->flush_log, LOG_WARN,
                "last_used write-back of %zu tokens dropped: %s",
                job->u.touch.n, job->errmsg);
  } else if (job->result != 0) {
    index_mark_dirty(r->env.index, f->items, job->u.touch.n);
    domains_put_back_counts(r->env.domains, f->counts, job->u.touch.n_counts);
    /* Retrying at once would spin while the disk stays full or read-only:
     * wait, twice as long after each failure in a row, and say so once per
     * --log-repeat-interval-ms however often it fails. */
    r->flush_failures++;
    backoff = rpc_flush_backoff_ms(r->flush_failures,
                                   r->env.cfg->flush_backoff_max_ms);
    r->flush_not_before = uv_now(r->env.loop) + backoff;
    snprintf(r->flush_errmsg, sizeof(r->flush_errmsg), "%s",
             job->errmsg[0] != '\0' ? job->errmsg
                                    : tokend_strerror(job->result));
    log_limited(&r->flush_log, LOG_WARN,
                "last_used write-back of %zu tokens failed (%s); retrying in "
                "%llu ms (%u failures in a row)",
                job->u.touch.n, r->flush_errmsg, (unsigned long long)backoff,
                (unsigned)r->flush_failures);
  } else if (r->flush_failures > 0) {
    log_info("last_used write-back works again after %u failures",
             (unsigned)r->flush_failures);
    r->flush_failures = 0;
    r->flush_not_before = 0;
  }
  free(f->items);
  free(f->counts);
  free(f);
  r->flush_in_flight = 0;
  r->env.job_end(r->env.ctx);
}

int rpc_flush_last_used(rpc_t *r) {
  size_t n = index_dirty_count(r->env.index), n_counts = 0;
  flush_t *f;

  if (r->flush_in_flight)
    return 0;
  f = calloc(1, sizeof(*f));
  if (f == NULL)
    return 0;
  if (domains_take_counts(r->env.domains, &f->counts, &n_counts) != 0 ||
      (n == 0 && n_counts == 0)) {
    free(f);
    return 0;
  }
  f->items = malloc((n > 0 ? n : 1) * sizeof(*f->items));
  if (f->items == NULL) {
    domains_put_back_counts(r->env.domains, f->counts, n_counts);
    free(f->counts);
    free(f);
    return 0;
  }
  f->job.u.touch.counts = f->counts;
  f->job.u.touch.n_counts = n_counts;
  f->job.u.touch.now = tokend_now_ms();
  f->rpc = r;
  f->job.kind = STORE_JOB_TOUCH;
  f->job.done = flush_done;
  f->job.u.touch.items = f->items;
  f->job.u.touch.n = index_take_dirty(r->env.index, f->items, n);
  r->flush_in_flight = 1;
  r->env.submit(r->env.ctx, &f->job);
  return 1;
}

uint64_t rpc_flush_not_before(const rpc_t *r) { return r->flush_not_before; }

uint32_t rpc_flush_failures(const rpc_t *r) { return r->flush_failures; }

const char *rpc_flush_errmsg(const rpc_t *r) { return r->flush_errmsg; }
