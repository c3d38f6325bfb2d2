/* store_worker: runs store.h calls on a dedicated thread so that no disk
 * write (an fsync on commit) ever delays the event loop.
 *
 * The loop thread submits jobs; the worker takes every queued job at once
 * and runs consecutive writes in one transaction (group commit: many
 * acknowledged writes share one fsync). A job's done callback runs on the
 * loop thread only after its transaction committed (or failed), in
 * submission order. */
#ifndef TOKEND_STORE_WORKER_H
#define TOKEND_STORE_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/domains.h"
#include "store/store.h"

typedef enum {
  STORE_JOB_ISSUE,
  STORE_JOB_REVOKE,
  STORE_JOB_TOUCH,
  STORE_JOB_GRANT,
  STORE_JOB_ADMIN_REMOVE,
  STORE_JOB_AUDIT, /* only the audit record */
  STORE_JOB_LIST,  /* reads from here on */
  STORE_JOB_AUDIT_LIST,
  STORE_JOB_AUDIT_VERIFY
} store_job_kind_t;

typedef struct store_job_s store_job_t;
typedef void (*store_job_done_cb)(store_job_t *job);

/* Allocated and owned by the submitter, who must keep it alive until done
 * is called. The worker writes only result, errmsg and the kind's outputs. */
struct store_job_s {
  store_job_kind_t kind;
  store_job_done_cb done;
  int result; /* 0 or a TOKEND_E* code */
  char errmsg[128];
  /* Set when result != 0 because a commit failed: the write may still have
   * reached the file. The worker then reopens the store and looks: applied
   * says the write is there (its outputs are filled as on success), so the
   * loop applies it to memory too and memory matches what a restart would
   * load. unknown says even that look failed. */
  int applied;
  int unknown;
  /* Set when a write failed because the store refuses every write for the
   * rest of this run (--read-only, or its file was deleted or replaced):
   * trying again cannot succeed. */
  int refused;
  /* Writes only, may be NULL: appended to the audit log in the same
   * transaction, its code set from the job's outcome if it had none. */
  store_audit_t *audit;
  /* Issue, Revoke, List, ListAuditEvents of a domain by one of its admins:
   * the worker checks that authz.user still is an admin of authz.domain in
   * the store, before (and, for writes, in the same transaction as) the
   * call's own statements. The loop's check against its in-memory admin
   * table is only the fast early refusal: that table changes after a
   * removal commits, so calls checked against it may be queued behind the
   * removal. A grant that is gone fails the job with TOKEND_EPERM (a
   * write's audit record then says so). Not set for operators' break-glass
   * calls. */
  struct {
    int required;
    char user[TOKEND_USER_BYTES];
    char domain[TOKEND_DOMAIN_BYTES];
  } authz;
  union {
    struct {
      store_token_t row; /* in: the row; out: row.seq */
    } issue;
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      char id[TOKEND_TOKEN_ID_BYTES];
      char by[TOKEND_USER_BYTES];
      int64_t now;
      int64_t revoked_at;              /* out */
      int already;                     /* out */
      uint8_t hash[TOKEND_HASH_BYTES]; /* out */
    } revoke;
    struct {
      const store_touch_t *items; /* owned by the submitter */
      size_t n;
      const domain_counts_t *counts; /* owned by the submitter */
      size_t n_counts;
      int64_t now;
    } touch;
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      char user[TOKEND_USER_BYTES];
      char by[TOKEND_USER_BYTES];
      int64_t now;
      int64_t granted_at; /* out */
      int already;        /* out */
    } grant;
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      char user[TOKEND_USER_BYTES];
      char by[TOKEND_USER_BYTES];
      int revoke_tokens;
      int64_t now;
      uint8_t (*hashes)[TOKEND_HASH_BYTES]; /* out: malloc'd, submitter frees */
      size_t n_hashes;                      /* out */
    } admin_remove;
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      int64_t since;
      int64_t before_id;
      store_audit_t *rows; /* room for max_rows, owned by the submitter */
      size_t max_rows;
      size_t n_rows; /* out */
    } audit_list;
    struct {
      int64_t anchor_id;
      uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES];
      store_audit_check_t check; /* out */
    } audit_verify;
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      int include_revoked;
      int64_t before_seq;
      store_token_t *rows; /* room for max_rows, owned by the submitter */
      size_t max_rows;
      size_t n_rows; /* out */
    } list;
  } u;
  store_job_t *next; /* worker's queue link */
};

typedef struct store_worker_s store_worker_t;

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
