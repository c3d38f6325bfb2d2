/* A pepper rotation's re-keys (docs/OPERATIONS.md, "Rotating the pepper").
 *
 * Tokens hashed with the previous pepper (--previous-pepper-file) keep
 * verifying: a Verify that misses under the current pepper's hash, while a
 * previous pepper is configured, hashes the token again with it. Found
 * there, the token is answered as usual, and a store job gives its row the
 * current pepper's hash and generation. Only then, in the job's done
 * callback, is the index entry moved to the new hash: store jobs are done
 * in the order they were submitted, so every write queued before the
 * re-key (a Revoke, an admin removal) reads back the hash the entry still
 * has, and every one queued after it the new one. Until then the entry
 * stays marked (rekey_pending), so one token is re-keyed by one job; its
 * later Verifies hit the verify cache, which points at the entry and so
 * does not care which hash it is under.
 *
 * With a store several hosts share, the re-key is a change in the feed:
 * the other hosts find the entry by its id (the row only names the new
 * hash) and move it too (server.c, on_feed_token). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "token.h"
#include "tokend_time.h"

typedef struct {
  store_job_t job;
  rpc_t *rpc;
  index_entry_t *e; /* entries never move nor go while tokend runs */
} rekey_t;

static void rekey_done(store_job_t *job) {
  rekey_t *k = container_of(job, rekey_t, job);
  rpc_t *r = k->rpc;
  index_entry_t *e = k->e;
  int err;

  e->rekey_pending = 0;
  if (job->result == 0 || job->applied) {
    /* Moved already if the feed brought this host its own change first. */
    if (e->pepper_old &&
        (err = index_rekey(r->env.index, e, job->u.rekey.new_hash)) != 0)
      log_error("token %s: re-keyed in the store, but not in memory (%s); "
                "a restart loads it under the new hash",
                e->id, tokend_strerror(err));
  } else if (job->result != TOKEND_ENOTFOUND) {
    /* TOKEND_ENOTFOUND: another host re-keyed it first; its change in the
     * feed moves the entry. Anything else: it stays on the previous
     * pepper, verifies with it, and is tried again by a later Verify that
     * misses the verify cache (or after a restart). */
    log_limited(&r->rekey_log, LOG_WARN,
                "re-keying token %s to the current pepper failed: %s; it "
                "verifies with the previous pepper meanwhile",
                e->id,
                job->errmsg[0] != '\0' ? job->errmsg
                                       : tokend_strerror(job->result));
  }
  free(k);
  r->env.job_end(r->env.ctx);
}

/* Queues the re-key of e from old_hash to new_hash. Out of memory, or a
 * read-only store (which refuses every write): e stays on the previous
 * pepper, and verifies with it. */
static void rekey_submit(rpc_t *r, index_entry_t *e,
                         const uint8_t old_hash[TOKEND_HASH_BYTES],
                         const uint8_t new_hash[TOKEND_HASH_BYTES]) {
  rekey_t *k;

  if (e->rekey_pending || r->env.cfg->read_only || r->env.submit == NULL)
    return;
  if ((k = calloc(1, sizeof(*k))) == NULL)
    return;
  k->rpc = r;
  k->e = e;
  k->job.kind = STORE_JOB_REKEY;
  k->job.done = rekey_done;
  snprintf(k->job.u.rekey.domain, sizeof(k->job.u.rekey.domain), "%s",
           index_entry_domain(e));
  memcpy(k->job.u.rekey.id, e->id, sizeof(k->job.u.rekey.id));
  memcpy(k->job.u.rekey.old_hash, old_hash, TOKEND_HASH_BYTES);
  memcpy(k->job.u.rekey.new_hash, new_hash, TOKEND_HASH_BYTES);
  k->job.u.rekey.gen = r->env.pepper_gen;
  k->job.u.rekey.now = tokend_now_ms();
  e->rekey_pending = 1;
  r->env.submit(r->env.ctx, &k->job);
}

index_entry_t *rpc_previous_pepper_find(rpc_t *r, const char *tok, size_t len) {
  uint8_t old_hash[TOKEND_HASH_BYTES];
  index_entry_t *e;

  if (r->env.previous_pepper == NULL)
    return NULL;
  token_hash(tok, len, r->env.previous_pepper, old_hash);
  e = index_find(r->env.index, old_hash);
  sodium_memzero(old_hash, sizeof(old_hash));
  return e != NULL && e->pepper_old ? e : NULL;
}

index_entry_t *
rpc_verify_previous_pepper(rpc_t *r, const char *tok, size_t len,
                           const uint8_t new_hash[TOKEND_HASH_BYTES]) {
  uint8_t old_hash[TOKEND_HASH_BYTES];
  index_entry_t *e;

  if (r->env.previous_pepper == NULL)
    return NULL;
  token_hash(tok, len, r->env.previous_pepper, old_hash);
  e = index_find(r->env.index, old_hash);
  /* Only an entry still on the previous pepper: any other under this hash
   * would be a BLAKE2b collision across keys. */
  if (e != NULL && !e->pepper_old)
    e = NULL;
  if (e != NULL)
    rekey_submit(r, e, old_hash, new_hash);
  sodium_memzero(old_hash, sizeof(old_hash));
  return e;
}
