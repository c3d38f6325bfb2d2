/* store jobs: what the writer thread (store/worker.h) runs, as one list.
 *
 * STORE_JOBS(X) has one line per kind: X(KIND, name, writes, reconcile).
 *   KIND       the job's STORE_JOB_<KIND>
 *   name       its run function is store_job_run_<name> (jobs.c): runs the
 *              job's own calls on the store, inside the group's
 *              transaction for a write
 *   writes     1: runs in a write group (one transaction, group commit),
 *              may carry an audit record; 0: a read, run alone
 *   reconcile  after a commit in doubt (TOKEND_EINDOUBT), how the worker
 *              finds out whether this write reached the store: a function
 *              that reads it back and sets applied and the outputs, or
 *              store_job_reconcile_none for a write that needs no answer
 *              (a touch, an audit record alone) and a read
 * The list drives the kind enum and the worker's run and reconcile
 * switches. Adding a job is one line here, its member of store_job_t's
 * union (its inputs and outputs) and its run function (and reconcile
 * function if it writes something the loop must know landed).
 *
 * Writes come first, reads after: the enum's order is kept stable for the
 * callers that name its values. */
#ifndef TOKEND_STORE_JOBS_H
#define TOKEND_STORE_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "core/domains.h"
#include "store/store.h"

#define STORE_JOBS(X)                                                          \
  X(ISSUE, issue, 1, store_job_reconcile_issue)                                \
  X(REVOKE, revoke, 1, store_job_reconcile_revoke)                             \
  X(TOUCH, touch, 1, store_job_reconcile_none)                                 \
  X(GRANT, grant, 1, store_job_reconcile_grant)                                \
  X(ADMIN_REMOVE, admin_remove, 1, store_job_reconcile_admin_remove)           \
  /* only the audit record */                                                  \
  X(AUDIT, audit, 1, store_job_reconcile_none)                                 \
  X(LIST, list, 0, store_job_reconcile_none)                                   \
  X(AUDIT_LIST, audit_list, 0, store_job_reconcile_none)                       \
  X(AUDIT_VERIFY, audit_verify, 0, store_job_reconcile_none)                   \
  X(BACKUP, backup, 0, store_job_reconcile_none)                               \
  /* a write, after the reads: the values above stay as they were */           \
  X(AUDIT_PRUNE, audit_prune, 1, store_job_reconcile_none)                     \
  /* issue 17: the token record */                                             \
  X(LOOKUP, lookup, 0, store_job_reconcile_none)                               \
  X(EDIT, edit, 1, store_job_reconcile_edit)                                   \
  X(ROLL, roll, 1, store_job_reconcile_roll)                                   \
  /* issue 17 */                                                               \
  X(BULK_REVOKE, bulk_revoke, 1, store_job_reconcile_bulk_revoke)              \
  X(POLICY_SET, policy_set, 1, store_job_reconcile_policy_set)                 \
  X(POLICY_GET, policy_get, 0, store_job_reconcile_none)                       \
  X(LEAKED, leaked, 1, store_job_reconcile_leaked)                             \
  /* a pepper rotation's re-key of one token (issue 16) */                     \
  X(REKEY, rekey, 1, store_job_reconcile_rekey)

typedef enum {
#define X(KIND, name, writes, reconcile) STORE_JOB_##KIND,
  STORE_JOBS(X)
#undef X
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
  /* Set when result != 0 because the commit's outcome was unknown
   * (TOKEND_EINDOUBT: the write may still have reached the store). The
   * worker then reads the store back (the kind's reconcile, below): applied
   * says the write is there (its outputs are filled as on success), so the
   * loop applies it to memory too and memory matches what a restart would
   * load. unknown says even that look failed. */
  int applied;
  int unknown;
  /* Set when a write failed because the store refuses every write for the
   * rest of this run (--read-only, or its file was deleted or replaced):
   * trying again cannot succeed. */
  int refused;
  /* Writes that committed: the store's change revision after this one ran
   * (store_change_rev), what every host must have applied for it to be in
   * effect there; 0 with a store without a change feed. */
  int64_t rev;
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
      char *path;    /* malloc'd by the submitter, who frees it */
      int64_t bytes; /* out: the copy's size */
    } backup;
    struct {
      int64_t keep_ms; /* --audit-retention-days, in ms */
      int64_t now_ms;  /* wall clock when submitted */
      int64_t removed; /* out: rows removed (0: no audit record is made) */
      int64_t upto;    /* out: the newest id removed */
    } audit_prune;
    /* Lookup (issue 17): token id of domain, as the store has it. */
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      char id[TOKEND_TOKEN_ID_BYTES];
      store_token_t row; /* out */
    } lookup;
    /* Edit (issue 17): the members whose set_ flag is set change; the rest
     * of want is ignored. Refusals that need the stored row (scopes not a
     * subset, an expiry the domain's policy forbids, a revoked token) fail
     * the job with TOKEND_EINVAL or TOKEND_ECONFIG and change nothing. */
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      char id[TOKEND_TOKEN_ID_BYTES];
      int set_label, set_metadata, set_expires_at, set_scopes;
      int64_t now;
      /* Three rows, owned by the submitter (kept out of every job's
       * union): want (label, metadata, expires_at, scopes), then out the
       * row as it was (before) and as it is (after). */
      store_token_t *want, *before, *after;
      int taken; /* out: validity taken (expiry, scopes) */
    } edit;
    /* Roll (issue 17): fresh holds the new token's id, hash and hint (made
     * on the loop, which keeps the secret); the run fills the rest from
     * the old token, inserts it and sets the old one's expiry to
     * min(its own, now + grace_ms) and its rolled_to. */
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      char id[TOKEND_TOKEN_ID_BYTES];
      int64_t grace_ms;
      int64_t now;
      /* Two rows, owned by the submitter: fresh (in: id, hash, hint,
       * created_by; out: the whole new row) and old (out: the old token as
       * it is now). */
      store_token_t *fresh, *old;
    } roll;
    /* BulkRevoke: the selection, and what it took. Each token revoked
     * gets an audit row of its own (the job's audit record as a template,
     * its token_id set); the job's own record sums the call up. */
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      char by[TOKEND_USER_BYTES];
      int64_t now;
      store_bulk_select_t sel;             /* sel.ids owned by the submitter */
      char created_by[TOKEND_USER_BYTES];  /* sel.created_by points here */
      store_revoked_t *revoked;            /* out: malloc'd, submitter frees */
      size_t n_revoked;                    /* out */
      size_t n_already;                    /* out */
      char missing[TOKEND_TOKEN_ID_BYTES]; /* out: the id not found */
    } bulk_revoke;
    /* SetDomainPolicy: policy in; before out (found: it had one). */
    struct {
      store_policy_t policy;
      store_policy_t before; /* out */
      int had;               /* out */
    } policy_set;
    /* RevokeLeaked: the secrets' hashes in, what the store holds out. Each
     * token revoked gets an audit row of its own (the job's record as a
     * template: its domain, token_id and detail set). */
    struct {
      store_hash_token_t *items; /* n, owned by the submitter */
      size_t n;
      char by[TOKEND_USER_BYTES];
      char source[TOKEND_STATUS_MESSAGE_BYTES]; /* where they were found */
      int64_t now;
      size_t n_revoked; /* out */
    } leaked;
    /* GetDomainPolicy. */
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      store_policy_t policy; /* out */
      int found;             /* out */
    } policy_get;
    struct {
      /* the token (for the reconcile), its hash under the previous
       * pepper and under the current one (generation gen) */
      char domain[TOKEND_DOMAIN_BYTES];
      char id[TOKEND_TOKEN_ID_BYTES];
      uint8_t old_hash[TOKEND_HASH_BYTES];
      uint8_t new_hash[TOKEND_HASH_BYTES];
      int32_t gen;
      int64_t now;
    } rekey;
    struct {
      char domain[TOKEND_DOMAIN_BYTES];
      int include_revoked;
      /* issue 17: > 0: only active tokens expiring in (now, until] */
      int64_t expiring_until;
      int64_t now;
      int64_t before_seq;
      store_token_t *rows; /* room for max_rows, owned by the submitter */
      size_t max_rows;
      size_t n_rows; /* out */
    } list;
  } u;
  store_job_t *next; /* worker's queue link */
};

/* Each kind's run function: the job's own store calls (not its admin check
 * nor its audit record, which store_job_run adds). Returns 0 unless the
 * store failed (the transaction is then doomed); a job's own answer (no
 * such token) is its result, set with store_job_fail, and 0 returned. */
#define X(KIND, name, writes, reconcile)                                       \
  int store_job_run_##name(store_t *store, store_job_t *job);
STORE_JOBS(X)
#undef X

/* Reconcile functions: after a commit in doubt, read the store back and
 * set job->applied (and the job's outputs, as on success) if the write is
 * there. 0 when the look answered (applied or not); a store failure when
 * it could not (the worker then sets job->unknown). */
int store_job_reconcile_none(store_t *store, store_job_t *job);
int store_job_reconcile_issue(store_t *store, store_job_t *job);
int store_job_reconcile_revoke(store_t *store, store_job_t *job);
int store_job_reconcile_grant(store_t *store, store_job_t *job);
int store_job_reconcile_admin_remove(store_t *store, store_job_t *job);
int store_job_reconcile_edit(store_t *store, store_job_t *job);
int store_job_reconcile_roll(store_t *store, store_job_t *job);

int store_job_reconcile_bulk_revoke(store_t *store, store_job_t *job);
int store_job_reconcile_policy_set(store_t *store, store_job_t *job);
int store_job_reconcile_leaked(store_t *store, store_job_t *job);
int store_job_reconcile_rekey(store_t *store, store_job_t *job);

/* 1 if job's kind writes (STORE_JOBS' writes column). */
int store_job_writes(const store_job_t *job);

/* Sets job's result to err and its errmsg to msg (truncated). */
void store_job_fail(store_job_t *job, int err, const char *msg);

/* Frees and clears what a run allocated into job's outputs (an
 * admin_remove's hashes, a bulk_revoke's tokens), for a job whose
 * transaction was rolled back:
 * outputs of a write that did not happen must not reach the loop. */
void store_job_clear_outputs(store_job_t *job);

/* Runs job on store: the admin check of job->authz, the kind's run
 * function and, for a write, its audit record, all in the current
 * transaction. Returns 0 unless the store failed (the job then failed with
 * the store's message; a write's transaction is doomed). */
int store_job_run(store_t *store, store_job_t *job);

/* The kind's reconcile function (see above), for a job whose write was in
 * a commit in doubt. */
int store_job_reconcile(store_t *store, store_job_t *job);

#endif
