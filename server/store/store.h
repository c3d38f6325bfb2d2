/* store: durable storage of tokens, domain admins and the audit log, behind
 * one table of operations (struct store_ops) that each backend implements,
 * as SQLite's sqlite3_io_methods and nng's transport ops do. A store is
 * opened by URL ("sqlite:/var/lib/tokend/tokend.db"); the scheme picks the
 * backend (store_open_url). The rest of the server calls only the thin
 * wrappers below (store_insert(s, ...) is s->ops->insert(s, ...)), so it
 * never knows which backend it talks to.
 *
 * Threading: a store_t is used by one thread at a time (the writer thread,
 * store/worker.h, once the server runs). Nothing here is re-entrant.
 *
 * Results: every call returns 0 or a negative TOKEND_E* code. The codes a
 * backend may return, for every member unless its contract says more:
 *   TOKEND_EUNAVAIL  the backend cannot reach its storage now (disk full,
 *                    I/O error, locked, connection lost); trying again later
 *                    may succeed
 *   TOKEND_ENOMEM    out of memory
 *   TOKEND_ESTORE    anything else the backend could not do (a damaged
 *                    row, an unexpected result)
 * and on failure store_errmsg() describes the cause in one line.
 *
 * Connections: a backend that loses its connection (or, for SQLite, must
 * drop it after a commit in doubt) recovers it by itself, on the next call:
 * no caller ever reopens a store. Until it can, calls fail with
 * TOKEND_EUNAVAIL (begin with the cause of the failed reconnection).
 *
 * Transactions: begin, then writes, then commit (or rollback). A write
 * outside a transaction commits by itself. commit has three outcomes: 0
 * (durable), a definite failure (nothing of the transaction is stored) or
 * TOKEND_EINDOUBT: the backend cannot know whether the transaction is stored
 * (SQLite: the commit was written but its fsync failed, so a restart may
 * find it; a server backend: the connection was lost during COMMIT). The
 * caller then reads the store back to find out (the writer's reconcile,
 * store/jobs.h), which sees what a restart would. */
#ifndef TOKEND_STORE_H
#define TOKEND_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/records.h"
#include "tokend_error.h"
#include "tokend_limits.h"

/* store_open_url() flags; backend-neutral. */
#define STORE_OPEN_CREATE 1    /* create the store if it is missing */
#define STORE_OPEN_READ_ONLY 2 /* never write; storage may be read-only */

typedef struct store_s store_t;
struct store_ops;
/* store/feed.h: a backend's change feed follower (the type a backend's
 * feed_open member has; declared there). */
struct store_feed_open_args;
typedef struct store_feed_s store_feed_t;
typedef int (*store_feed_open_fn)(const char *location,
                                  const struct store_feed_open_args *args,
                                  store_feed_t **out);

/* The part of every store the interface sees. A backend's own struct
 * starts with (or embeds) it and finds itself back with container_of. */
struct store_s {
  const struct store_ops *ops; /* never NULL; static, owned by the backend */
  int flags;                   /* the STORE_OPEN_* it was opened with */
  /* store.c's own (backends leave it zeroed): the last policy_get inside
   * the current write transaction, from store_begin to its commit or
   * rollback. A group commit's Issues of one domain read its policy once:
   * with PostgreSQL each read is a round trip, and sends the group's
   * queued INSERTs ahead of it, one token at a time. Nothing else changes
   * a policy inside the transaction but store_policy_set, which updates
   * it. */
  struct {
    int in_tx; /* between store_begin and its end */
    int valid; /* domain's answer is below */
    int found; /* domain has a policy (else: TOKEND_ENOTFOUND) */
    char domain[TOKEND_DOMAIN_BYTES];
    store_policy_t policy;
  } policy_memo;
};

/* Recovers a struct from a pointer to one of its members (libuv's idiom:
 * no cast that relies on the member coming first). */
#define store_container_of(ptr, type, member)                                  \
  ((type *)((char *)(ptr)-offsetof(type, member)))

/* Calls cb for every token, oldest first. cb returning non-zero stops the
 * walk and that value is returned. row is valid only during the call. */
typedef int (*store_load_cb)(void *arg, const store_token_t *row);

/* Calls cb for every domain admin; as store_load_cb. */
typedef int (*store_admin_cb)(void *arg, const store_admin_t *admin);

/* Calls cb for every audit row, oldest first; hash is the row's stored
 * chain hash (STORE_AUDIT_HASH_BYTES), NULL if it has none. As
 * store_load_cb. */
typedef int (*store_audit_cb)(void *arg, const store_audit_t *ev,
                              const uint8_t *hash);

/* Calls cb for every domain's Verify counters; as store_load_cb. */
typedef int (*store_counts_cb)(void *arg, const store_counts_t *counts);

/* Calls cb for every domain's policy; as store_load_cb (issue 17). */
typedef int (*store_policy_cb)(void *arg, const store_policy_t *policy);

/* ---- issue 17: revocation in bulk ---- */

/* Which of a domain's tokens a bulk revocation takes: one selector. */
typedef enum {
  STORE_BULK_IDS,     /* ids[0..n_ids): each must be a token of the domain */
  STORE_BULK_CREATOR, /* every token created_by made */
  STORE_BULK_ALL,     /* every token of the domain */
  STORE_BULK_BEFORE   /* every token created before created_before (ms) */
} store_bulk_by_t;

typedef struct {
  store_bulk_by_t by;
  const char (*ids)[TOKEND_TOKEN_ID_BYTES]; /* STORE_BULK_IDS; distinct */
  size_t n_ids;
  const char *created_by; /* STORE_BULK_CREATOR */
  int64_t created_before; /* STORE_BULK_BEFORE */
} store_bulk_select_t;

/* One token a bulk revocation took. */
typedef struct {
  char id[TOKEND_TOKEN_ID_BYTES];
  uint8_t hash[TOKEND_HASH_BYTES];
} store_revoked_t;

/* ---- issue 17: leaked tokens, by their keyed hash ---- */

/* One secret RevokeLeaked was given, by its hash (in), and what the store
 * holds of it (out). */
typedef struct {
  uint8_t hash[TOKEND_HASH_BYTES]; /* in */
  int found;                       /* a token has this hash */
  int revoked_now;                 /* this call revoked it */
  char id[TOKEND_TOKEN_ID_BYTES];
  char domain[TOKEND_DOMAIN_BYTES];
  int64_t revoked_at; /* after the call; 0: active */
  char revoked_by[TOKEND_USER_BYTES];
} store_hash_token_t;

/* The operations of one backend. Every member is set (none may be NULL,
 * but backup and audit_prune, whose contracts say so);
 * each takes the store it was opened as. Strings are NUL-terminated and
 * only read during the call; row and output buffers belong to the caller
 * and are written only during the call. Results as in the header comment,
 * plus those listed. */
struct store_ops {
  /* Frees everything the store holds, wiping the audit key; never fails.
   * The store must not be used after. */
  void (*close)(store_t *s);

  /* The last failure's one-line message ("" if none), owned by the store
   * and valid until its next call. */
  const char *(*errmsg)(const store_t *s);

  /* Checks that the storage the store writes to is still the one a
   * restart would open (SQLite: the file at the path is the one opened,
   * same device and inode). 0 when it is, or when it cannot tell.
   * TOKEND_EUNAVAIL once it is not: from then on file_lost returns 1 and
   * every write is refused for the rest of the run. A backend without such
   * a notion returns 0. */
  int (*file_check)(store_t *s);
  /* 1 once file_check found the storage gone; 0 otherwise. */
  int (*file_lost)(const store_t *s);

  /* The pepper fingerprint the store records: *present 0 if none. A
   * recorded value of the wrong size is TOKEND_ESTORE. */
  int (*fingerprint_get)(store_t *s, uint8_t out[STORE_FINGERPRINT_BYTES],
                         int *present);
  /* Records (or replaces) the pepper fingerprint: by itself outside a
   * transaction, or as part of the one in progress (a copy records the
   * fingerprint with the rows its pepper made). TOKEND_ECONFIG on a
   * read-only store. */
  int (*fingerprint_set)(store_t *s, const uint8_t fp[STORE_FINGERPRINT_BYTES]);

  /* *n gets the number of tokens, domain admins and audit rows together. */
  int (*count_rows)(store_t *s, int64_t *n);

  /* Calls cb for every token, oldest first (see store_load_cb). A stored
   * row that cannot be read whole is TOKEND_ESTORE. */
  int (*load)(store_t *s, store_load_cb cb, void *arg);

  /* Starts a transaction that takes the store's write lock (no other
   * writer until it ends). TOKEND_ECONFIG on a read-only store ("tokend
   * runs --read-only"). After a lost connection, the reconnection happens
   * here and its failure is returned as is. */
  int (*begin)(store_t *s);
  /* Ends the transaction: 0 (durable), a definite failure (nothing of it
   * is stored; the transaction is over) or TOKEND_EINDOUBT (see the header
   * comment; the transaction is over and the next call reconnects). */
  int (*commit)(store_t *s);
  /* Ends the transaction, storing nothing of it; a no-op outside one. */
  void (*rollback)(store_t *s);

  /* Inserts row (its seq is ignored) and sets row->seq, greater than any
   * seq before. TOKEND_EEXIST if its id or hash is already stored. Inside
   * a transaction a backend may send the row with others, before the
   * transaction's next statement or its commit: row must then stay valid
   * until commit (or rollback), row->seq is set by then, and a duplicate
   * fails that statement or the commit (either way the transaction, which
   * any failed statement dooms). */
  int (*insert)(store_t *s, store_token_t *row);

  /* Revokes token id of domain at now, by user by. *revoked_at gets the
   * first revocation's time, *already 1 if it was revoked before (nothing
   * then changes), hash the token's hash. TOKEND_ENOTFOUND if domain has no
   * token with that id. */
  int (*revoke)(store_t *s, const char *domain, const char *id, int64_t now,
                const char *by, int64_t *revoked_at, int *already,
                uint8_t hash[TOKEND_HASH_BYTES]);

  /* Raises last_used_at of each of the n tokens to the given time (never
   * lowers it); hashes that match no token are skipped. */
  int (*touch)(store_t *s, const store_touch_t *items, size_t n);

  /* Writes into rows (room for max_rows) up to max_rows tokens of domain
   * with seq < before_seq (0: no bound), newest first, skipping revoked
   * tokens unless include_revoked. *n_rows gets the count. */
  int (*list)(store_t *s, const char *domain, int include_revoked,
              int64_t before_seq, store_token_t *rows, size_t max_rows,
              size_t *n_rows);

  /* Makes user an admin of domain at now, by by. *granted_at gets the
   * first grant's time, *already 1 if user was one (nothing changes). */
  int (*admin_grant)(store_t *s, const char *domain, const char *user,
                     int64_t now, const char *by, int64_t *granted_at,
                     int *already);

  /* Removes user from domain's admins; TOKEND_ENOTFOUND if not one. With
   * revoke_tokens, also revokes (at now, by by) every unrevoked token user
   * issued in domain, and sets *hashes (malloc'd, NULL when none; the
   * caller frees it) to their *n_hashes hashes. On failure *hashes is NULL
   * and *n_hashes 0. */
  int (*admin_remove)(store_t *s, const char *domain, const char *user,
                      int revoke_tokens, int64_t now, const char *by,
                      uint8_t (**hashes)[TOKEND_HASH_BYTES], size_t *n_hashes);

  /* Calls cb for every domain admin (see store_admin_cb). */
  int (*admin_load)(store_t *s, store_admin_cb cb, void *arg);

  /* Reads token id of domain into row; TOKEND_ENOTFOUND if there is none. */
  int (*token_get)(store_t *s, const char *domain, const char *id,
                   store_token_t *row);

  /* *granted_at of user's admin grant in domain; TOKEND_ENOTFOUND if none. */
  int (*admin_get)(store_t *s, const char *domain, const char *user,
                   int64_t *granted_at);

  /* The hashes of created_by's tokens in domain revoked at revoked_at by
   * revoked_by (what one admin_remove revoked), as admin_remove returns
   * them (*hashes malloc'd or NULL, freed by the caller). */
  int (*revoked_with)(store_t *s, const char *domain, const char *created_by,
                      int64_t revoked_at, const char *revoked_by,
                      uint8_t (**hashes)[TOKEND_HASH_BYTES], size_t *n_hashes);

  /* Sets the key that chains the audit log (copied; wiped at close) and,
   * the first time a store that has audit rows from before the chain
   * existed gets it, chains them, oldest first, in its own transaction.
   * Must precede audit_append and audit_verify (which otherwise fail with
   * TOKEND_EINTERNAL). Must be called outside a transaction. */
  int (*audit_key_set)(store_t *s, const uint8_t key[STORE_AUDIT_KEY_BYTES]);

  /* Appends ev to the audit log: sets ev->id (the newest id + 1) and
   * ev->count (at least 1), and stores the row's chain hash over ev and
   * the newest row's hash. The log is append-only: no member changes or
   * removes a row, and the backend refuses to (TOKEND_EEXIST or
   * TOKEND_ESTORE) where its storage lets it. */
  int (*audit_append)(store_t *s, store_audit_t *ev);

  /* Up to max_rows events, newest first, of domain ("" for every domain),
   * at or after since, with id < before_id (0: no bound); *n_rows gets the
   * count. */
  int (*audit_list)(store_t *s, const char *domain, int64_t since,
                    int64_t before_id, store_audit_t *rows, size_t max_rows,
                    size_t *n_rows);

  /* The newest audit row's id and stored hash (0 and zeros: an empty log,
   * or a newest row with no hash). */
  int (*audit_head)(store_t *s, int64_t *id,
                    uint8_t hash[STORE_AUDIT_HASH_BYTES]);

  /* Walks the whole audit log, oldest first, recomputing each row's hash
   * from its content and the previous row's. out->first_bad_id gets the
   * first row that does not check out (0: none) and out->why says how.
   * With anchor_id > 0 (a row id and hash recorded earlier, outside the
   * store), that row must still be there with that hash: otherwise the
   * newest rows were cut off (out->anchor_mismatch). Returns 0 whatever
   * the chain holds, or a store failure. */
  int (*audit_verify)(store_t *s, int64_t anchor_id,
                      const uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES],
                      store_audit_check_t *out);

  /* Adds Verify counts to domain's totals ("" for unknown tokens), and
   * records now as their last update. */
  int (*verify_counts_add)(store_t *s, const char *domain, uint64_t valid,
                           uint64_t invalid, int64_t now);

  /* ---- the change feed (a store several tokend share; store/feed.h) ---- */

  /* The newest change revision the current (or, after commit, the last)
   * transaction appended or read: what every host must have applied for
   * the transaction's writes to be in effect there. Complete after
   * commit (a backend that sends inserts with others numbers them then). For a
   * write that changed nothing (revoking a revoked token) the feed's head as it
   * read it, which holds the earlier change. 0 for a backend without a
   * change feed (SQLite), or before any write. Never fails. */
  int64_t (*change_rev)(const store_t *s);

  /* Starts a read-only transaction over one consistent snapshot, and sets
   * *rev to the change feed's revision that snapshot includes (0 without
   * a feed): a host that loads everything inside it, then follows the
   * feed from *rev, misses nothing and applies nothing twice. Every read
   * until snapshot_end sees the store as it was at this call, whatever
   * other processes commit meanwhile. Allowed on a read-only store; takes
   * no write lock (a running tokend keeps writing). Must be called outside
   * begin .. commit; ended by snapshot_end. */
  int (*snapshot_begin)(store_t *s, int64_t *rev);
  /* Ends the snapshot's transaction; a no-op outside one; never fails. */
  void (*snapshot_end)(store_t *s);
  /* ---- Copying a whole store into another (tokend-admin copy) ----
   * Reads every record of one store as it is, in one snapshot, and writes
   * each into another as it was: seq, ids, times and chain hashes kept, so
   * that the copy answers as the original did. The import members write
   * inside the caller's transaction (begin .. commit) and never need the
   * audit key. */

  /* (snapshot_begin and snapshot_end, above, give the copy its one
   * snapshot of the source.) */

  /* Calls cb for every audit row, oldest first (see store_audit_cb). */
  int (*audit_load)(store_t *s, store_audit_cb cb, void *arg);

  /* Calls cb for every domain's Verify counters (see store_counts_cb). */
  int (*counts_load)(store_t *s, store_counts_cb cb, void *arg);

  /* Inserts row keeping every field, seq, last_used_at, revoked_at,
   * created_by and revoked_by included; a later insert gets a seq greater
   * than row->seq. TOKEND_EEXIST if its seq, id or hash is already stored. */
  int (*token_import)(store_t *s, const store_token_t *row);

  /* Appends ev keeping its id, its count and its stored chain hash (hash:
   * STORE_AUDIT_HASH_BYTES, or NULL for a row that has none), not
   * recomputed. The log stays append-only: TOKEND_EEXIST unless ev->id is
   * greater than every id stored. */
  int (*audit_import)(store_t *s, const store_audit_t *ev, const uint8_t *hash);

  /* Stores counts as they are (set, not added); TOKEND_EEXIST if its
   * domain has counters already. */
  int (*counts_import)(store_t *s, const store_counts_t *counts);
  /* ---- end of the copy members ---- */

  /* ---- operations (issue 16) ---- */

  /* Writes a consistent copy of the whole store, as it is at one moment,
   * into a new file at path (created with mode 0600; an existing file is
   * never replaced: TOKEND_EEXIST). Runs on the writer thread, which writes
   * nothing meanwhile; Verify, answered from memory, is not held up.
   * *bytes gets the copy's size. Returns 0, TOKEND_EEXIST or TOKEND_EIO
   * (the file), or TOKEND_ESTORE, with errmsg saying why; a copy that
   * failed is removed. NULL for a backend copied with its own tools
   * (PostgreSQL: pg_dump). */
  int (*backup)(store_t *s, const char *path, int64_t *bytes);

  /* Audit retention (--audit-retention-days), inside a write transaction:
   * removes the oldest audit rows, those before the first row at or after
   * now_ms - keep_ms, never the newest row, through the one path the
   * append-only schema allows (rows older than keep_ms); records the
   * newest removed row's id and hash, from which the chain is verified on.
   * *removed gets how many went, *upto the newest removed id (0: none).
   * NULL for a backend without it (PostgreSQL). */
  int (*audit_prune)(store_t *s, int64_t keep_ms, int64_t now_ms,
                     int64_t *removed, int64_t *upto);

  /* ---- the token record (issue 17) ---- */

  /* Writes row's label, scopes, metadata, expires_at, rolled_from and
   * rolled_to over token row->id of row->domain (nothing else of it
   * changes), inside the caller's transaction, with a change on a store
   * with a feed (other hosts take the row's new state). TOKEND_ENOTFOUND
   * if domain has no token with that id. */
  int (*token_update)(store_t *s, const store_token_t *row);

  /* As list, but only domain's active tokens (not revoked) whose expiry
   * is in (now, until]: List's expiring_within_ms. */
  int (*list_expiring)(store_t *s, const char *domain, int64_t now,
                       int64_t until, int64_t before_seq, store_token_t *rows,
                       size_t max_rows, size_t *n_rows);

  /* ---- revocation in bulk (issue 17) ---- */

  /* Revokes, at now by by, every unrevoked token of domain that sel
   * selects, inside the caller's transaction, with a change for each on
   * a store with a feed. *revoked (malloc'd, NULL when none; the caller
   * frees it) gets the *n_revoked tokens it revoked; *n_already how many
   * selected tokens were revoked before (unchanged). With STORE_BULK_IDS
   * an id that is no token of domain is TOKEND_ENOTFOUND, missing
   * (TOKEND_TOKEN_ID_BYTES) gets it and nothing is changed. On failure
   * *revoked is NULL and *n_revoked 0. */
  int (*bulk_revoke)(store_t *s, const char *domain,
                     const store_bulk_select_t *sel, int64_t now,
                     const char *by, store_revoked_t **revoked,
                     size_t *n_revoked, size_t *n_already, char *missing);

  /* The tokens of domain revoked at revoked_at by revoked_by (what one
   * bulk_revoke took), as bulk_revoke returns them: after a commit in
   * doubt. */
  int (*revoked_at_by)(store_t *s, const char *domain, int64_t revoked_at,
                       const char *revoked_by, store_revoked_t **revoked,
                       size_t *n_revoked);

  /* ---- domain policies (issue 17) ---- */

  /* Reads domain's policy into out; TOKEND_ENOTFOUND if it has none.
   * Read inside the caller's transaction by the writes it limits. */
  int (*policy_get)(store_t *s, const char *domain, store_policy_t *out);
  /* Sets (inserts or replaces) p->domain's policy. */
  int (*policy_set)(store_t *s, const store_policy_t *p);
  /* Calls cb for every domain's policy, in no given order (what
   * `tokend-admin copy` walks); as store_load_cb. */
  int (*policy_load)(store_t *s, store_policy_cb cb, void *arg);
  /* *n gets how many tokens of domain are active at now (not revoked,
   * no expiry or one after now), counting no further than limit (> 0) in
   * each of two index ranges (no expiry; expiry after now): *n may reach
   * 2 * limit, and the cost is at most that many index entries, never the
   * domain's revoked or expired tokens. */
  int (*active_count)(store_t *s, const char *domain, int64_t now,
                      int64_t limit, int64_t *n);

  /* ---- leaked tokens (issue 17) ---- */

  /* For each of the n items, by its hash: fills found, id, domain,
   * revoked_at and revoked_by from the token that has it; with revoke,
   * first revokes (at now, by by) each found one that is active, setting
   * revoked_now, with a change for each on a store with a feed. Without
   * revoke it only reads (a commit in doubt's look). */
  int (*revoke_by_hash)(store_t *s, store_hash_token_t *items, size_t n,
                        int64_t now, const char *by, int revoke);

  /* ---- a pepper rotation (issue 16) ---- */

  /* The store's facts about itself (its meta table: the pepper
   * generation, the previous pepper's fingerprint, the sealed audit key;
   * STORE_META_*), by key. meta_get reads key's value into buf (room for
   * cap bytes) and its size into *len; TOKEND_ENOTFOUND if key has none,
   * TOKEND_ESTORE if it is longer than cap. */
  int (*meta_get)(store_t *s, const char *key, uint8_t *buf, size_t cap,
                  size_t *len);
  /* Records key = val (len bytes), replacing any value: by itself outside
   * a transaction, or inside one. TOKEND_ECONFIG on a read-only store. */
  int (*meta_set)(store_t *s, const char *key, const uint8_t *val, size_t len);
  /* Inside a write transaction: the token whose hash is old_hash and whose
   * pepper_gen is below gen gets new_hash and gen (re-keyed to the current
   * pepper). With a change feed, appends the token's change at now, so
   * every host re-keys it too. TOKEND_ENOTFOUND if there is no such token
   * (re-keyed already, or never there). */
  int (*token_rekey)(store_t *s, const uint8_t old_hash[TOKEND_HASH_BYTES],
                     const uint8_t new_hash[TOKEND_HASH_BYTES], int32_t gen,
                     int64_t now);
};

/* The meta keys of a pepper rotation (docs/OPERATIONS.md). Values: the
 * generation as decimal text; a fingerprint's STORE_FINGERPRINT_BYTES; the
 * audit chain key sealed under the current pepper (core/pepper.h). */
#define STORE_META_PEPPER_GEN "pepper_gen"
#define STORE_META_PEPPER_PREVIOUS "pepper_previous_fingerprint"
#define STORE_META_AUDIT_KEY_SEALED "audit_key_sealed"
#define STORE_META_VALUE_MAX 128

/* One backend: its URL scheme and how to open and check a store of it.
 * location is the URL after "scheme:" (for sqlite:PATH, the path). */
struct store_backend {
  const char *scheme;
  /* Opens the store at location, checks that it is a tokend store of a
   * version this build knows and migrates it forward (never with
   * STORE_OPEN_READ_ONLY, which then refuses one that needs it), and
   * checks it for damage. *out gets the store (closed with store_close).
   * Without STORE_OPEN_CREATE a missing store is TOKEND_ENOTFOUND. Other
   * failures: TOKEND_ECONFIG (not a tokend store, from a newer version,
   * damaged, not writable without STORE_OPEN_READ_ONLY), TOKEND_ESTORE or
   * TOKEND_EUNAVAIL (cannot open); why gets a one-line reason. */
  int (*open)(const char *location, int flags, store_t **out, char *why,
              size_t why_len);
  /* 1 if a store exists at location, 0 if none does (what decides whether
   * STORE_OPEN_CREATE is needed), or a negative code if it cannot tell. */
  int (*exists)(const char *location);
  /* A full integrity check of the store at location, opened read-only
   * (tokend --check-db): 0 if it finds nothing; otherwise TOKEND_ESTORE
   * (damage) or TOKEND_ECONFIG (cannot open). Writes what it finds, one
   * finding a line, to out. */
  int (*check)(const char *location, FILE *out);
  /* Follows the change feed of the store at location from the loop
   * (store/feed.h: store_feed_open_url); NULL for a backend whose store
   * serves one host (SQLite), which has no feed. */
  store_feed_open_fn feed_open;
};

/* Finds url's backend: "scheme:location" with a scheme of this build, or
 * a bare path (no "scheme:" prefix: a letter, then letters, digits, '+',
 * '-' or '.', then ':') taken as sqlite. *location points into url.
 * TOKEND_ECONFIG for a scheme this build does not have, with a one-line
 * reason in why naming the schemes it has. */
int store_url_parse(const char *url, const struct store_backend **backend,
                    const char **location, char *why,
                    size_t why_len) TOKEND_MUST_CHECK;

/* Writes into buf (len bytes, truncated) url as it may be logged: without
 * the password of a "scheme://user:password@host/..." URL, and with the
 * value of any "password=" query parameter replaced by "xxx"
 * ("postgresql://user@host/db"). Other URLs are copied as they are.
 * Returns buf. */
const char *store_url_redact(const char *url, char *buf, size_t len);

/* The schemes this build has, separated by ", " (static). */
const char *store_schemes(void);

/* Opens the store named by url (store_url_parse), as its backend's open. */
int store_open_url(const char *url, int flags, store_t **out, char *why,
                   size_t why_len) TOKEND_MUST_CHECK;

/* 1 if a store exists at url, 0 if not, or a negative code (an unknown
 * scheme: TOKEND_ECONFIG; cannot tell). */
int store_exists_url(const char *url);

/* The backend's check of the store at url (see struct store_backend);
 * an unknown scheme is TOKEND_ECONFIG, said on out. */
int store_check_url(const char *url, FILE *out) TOKEND_MUST_CHECK;

/* 1 if the store was opened with STORE_OPEN_READ_ONLY. */
int store_is_read_only(const store_t *store);

/* The wrappers: each calls the member of the same name (see its contract
 * in struct store_ops). store_close(NULL) is a no-op. */
void store_close(store_t *store);
const char *store_errmsg(const store_t *store);
int store_file_check(store_t *store) TOKEND_MUST_CHECK;
int store_file_lost(const store_t *store);
int store_fingerprint_get(store_t *store, uint8_t out[STORE_FINGERPRINT_BYTES],
                          int *present) TOKEND_MUST_CHECK;
int store_fingerprint_set(store_t *store,
                          const uint8_t fp[STORE_FINGERPRINT_BYTES])
    TOKEND_MUST_CHECK;
int store_count_rows(store_t *store, int64_t *n) TOKEND_MUST_CHECK;
int store_load(store_t *store, store_load_cb cb, void *arg) TOKEND_MUST_CHECK;
int store_begin(store_t *store) TOKEND_MUST_CHECK;
int store_commit(store_t *store) TOKEND_MUST_CHECK;
void store_rollback(store_t *store);
int store_insert(store_t *store, store_token_t *row) TOKEND_MUST_CHECK;
int store_revoke(store_t *store, const char *domain, const char *id,
                 int64_t now, const char *by, int64_t *revoked_at, int *already,
                 uint8_t hash[TOKEND_HASH_BYTES]) TOKEND_MUST_CHECK;
int store_touch(store_t *store, const store_touch_t *items,
                size_t n) TOKEND_MUST_CHECK;
int store_list(store_t *store, const char *domain, int include_revoked,
               int64_t before_seq, store_token_t *rows, size_t max_rows,
               size_t *n_rows) TOKEND_MUST_CHECK;
int store_admin_grant(store_t *store, const char *domain, const char *user,
                      int64_t now, const char *by, int64_t *granted_at,
                      int *already) TOKEND_MUST_CHECK;
int store_admin_remove(store_t *store, const char *domain, const char *user,
                       int revoke_tokens, int64_t now, const char *by,
                       uint8_t (**hashes)[TOKEND_HASH_BYTES],
                       size_t *n_hashes) TOKEND_MUST_CHECK;
int store_admin_load(store_t *store, store_admin_cb cb,
                     void *arg) TOKEND_MUST_CHECK;
int store_token_get(store_t *store, const char *domain, const char *id,
                    store_token_t *row) TOKEND_MUST_CHECK;
int store_admin_get(store_t *store, const char *domain, const char *user,
                    int64_t *granted_at) TOKEND_MUST_CHECK;
int store_revoked_with(store_t *store, const char *domain,
                       const char *created_by, int64_t revoked_at,
                       const char *revoked_by,
                       uint8_t (**hashes)[TOKEND_HASH_BYTES],
                       size_t *n_hashes) TOKEND_MUST_CHECK;
int store_audit_key_set(
    store_t *store, const uint8_t key[STORE_AUDIT_KEY_BYTES]) TOKEND_MUST_CHECK;
int store_audit_append(store_t *store, store_audit_t *ev) TOKEND_MUST_CHECK;
int store_audit_list(store_t *store, const char *domain, int64_t since,
                     int64_t before_id, store_audit_t *rows, size_t max_rows,
                     size_t *n_rows) TOKEND_MUST_CHECK;
int store_audit_head(store_t *store, int64_t *id,
                     uint8_t hash[STORE_AUDIT_HASH_BYTES]) TOKEND_MUST_CHECK;
int store_audit_verify(store_t *store, int64_t anchor_id,
                       const uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES],
                       store_audit_check_t *out) TOKEND_MUST_CHECK;
int store_verify_counts_add(store_t *store, const char *domain, uint64_t valid,
                            uint64_t invalid, int64_t now) TOKEND_MUST_CHECK;
int64_t store_change_rev(const store_t *store);
int store_snapshot_begin(store_t *store, int64_t *rev) TOKEND_MUST_CHECK;
void store_snapshot_end(store_t *store);
/* The copy members' wrappers (tokend-admin copy). */
int store_audit_load(store_t *store, store_audit_cb cb,
                     void *arg) TOKEND_MUST_CHECK;
int store_counts_load(store_t *store, store_counts_cb cb,
                      void *arg) TOKEND_MUST_CHECK;
int store_token_import(store_t *store,
                       const store_token_t *row) TOKEND_MUST_CHECK;
int store_audit_import(store_t *store, const store_audit_t *ev,
                       const uint8_t *hash) TOKEND_MUST_CHECK;
int store_counts_import(store_t *store,
                        const store_counts_t *counts) TOKEND_MUST_CHECK;

/* The audit_prune op (above), or TOKEND_EUNIMPL for a backend without
 * one. */
int store_audit_prune(store_t *store, int64_t keep_ms, int64_t now_ms,
                      int64_t *removed, int64_t *upto) TOKEND_MUST_CHECK;
/* 1 if store has audit_prune. */
int store_has_audit_prune(const store_t *store);

/* The token record's wrappers (issue 17; see their members above). */
int store_token_update(store_t *store,
                       const store_token_t *row) TOKEND_MUST_CHECK;
int store_list_expiring(store_t *store, const char *domain, int64_t now,
                        int64_t until, int64_t before_seq, store_token_t *rows,
                        size_t max_rows, size_t *n_rows) TOKEND_MUST_CHECK;
/* Issue 17's wrappers (see their members above). */
int store_bulk_revoke(store_t *store, const char *domain,
                      const store_bulk_select_t *sel, int64_t now,
                      const char *by, store_revoked_t **revoked,
                      size_t *n_revoked, size_t *n_already,
                      char *missing) TOKEND_MUST_CHECK;
int store_revoked_at_by(store_t *store, const char *domain, int64_t revoked_at,
                        const char *revoked_by, store_revoked_t **revoked,
                        size_t *n_revoked) TOKEND_MUST_CHECK;
int store_policy_get(store_t *store, const char *domain,
                     store_policy_t *out) TOKEND_MUST_CHECK;
int store_policy_set(store_t *store, const store_policy_t *p) TOKEND_MUST_CHECK;
int store_policy_load(store_t *store, store_policy_cb cb,
                      void *arg) TOKEND_MUST_CHECK;
int store_active_count(store_t *store, const char *domain, int64_t now,
                       int64_t limit, int64_t *n) TOKEND_MUST_CHECK;
int store_revoke_by_hash(store_t *store, store_hash_token_t *items, size_t n,
                         int64_t now, const char *by,
                         int revoke) TOKEND_MUST_CHECK;

/* The pepper rotation members' wrappers. */
int store_meta_get(store_t *store, const char *key, uint8_t *buf, size_t cap,
                   size_t *len) TOKEND_MUST_CHECK;
int store_meta_set(store_t *store, const char *key, const uint8_t *val,
                   size_t len) TOKEND_MUST_CHECK;
int store_token_rekey(store_t *store, const uint8_t old_hash[TOKEND_HASH_BYTES],
                      const uint8_t new_hash[TOKEND_HASH_BYTES], int32_t gen,
                      int64_t now) TOKEND_MUST_CHECK;

/* The backup op (above), or TOKEND_EUNIMPL for a backend without one. */
int store_backup(store_t *store, const char *path,
                 int64_t *bytes) TOKEND_MUST_CHECK;

#endif
