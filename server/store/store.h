/* store: durable storage of tokens. The narrow interface the rest of the
 * server uses; SQLite (store.c) is the embedded implementation. Another
 * backend (a database server shared by several hosts) implements the same
 * functions.
 *
 * A store_t is used by one thread at a time. All functions return 0 or a
 * negative TOKEND_E* code; on failure store_errmsg() describes the cause. */
#ifndef TOKEND_STORE_H
#define TOKEND_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tokend_error.h"
#include "tokend_limits.h"

/* Scopes travel as one string, separated by single spaces (scopes cannot
 * contain spaces). */
#define STORE_SCOPES_BYTES (TOKEND_MAX_SCOPES * TOKEND_SCOPE_BYTES)

/* Schema version this build writes (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 4

/* What the database records about its pepper: a keyed hash of a fixed
 * string (pepper_fingerprint()), never the pepper. */
#define STORE_FINGERPRINT_BYTES 32

/* store_open_flags() flags. */
#define STORE_OPEN_CREATE 1    /* create the file if it is missing */
#define STORE_OPEN_READ_ONLY 2 /* never write; the file may be read-only */

typedef struct store_s store_t;

/* One token row. The token itself is never part of it: only its keyed hash. */
typedef struct {
  int64_t seq; /* assigned by the store on insert; orders tokens by age */
  char id[TOKEND_TOKEN_ID_BYTES];
  char domain[TOKEND_DOMAIN_BYTES];
  char label[TOKEND_LABEL_BYTES];
  char hint[TOKEND_HINT_BYTES];
  char scopes[STORE_SCOPES_BYTES];
  uint8_t hash[TOKEND_HASH_BYTES];
  int64_t created_at;
  int64_t expires_at;   /* 0: never */
  int64_t last_used_at; /* 0: never */
  int64_t revoked_at;   /* 0: not revoked */
  char created_by[TOKEND_USER_BYTES];
  char revoked_by[TOKEND_USER_BYTES];
} store_token_t;

typedef struct {
  char domain[TOKEND_DOMAIN_BYTES];
  char user[TOKEND_USER_BYTES];
  char granted_by[TOKEND_USER_BYTES];
  int64_t granted_at;
} store_admin_t;

/* One audit log row. Never holds a secret. */
typedef struct {
  int64_t id; /* assigned by the store */
  int64_t at;
  uint32_t peer_uid;
  int32_t peer_pid;
  char actor[TOKEND_USER_BYTES];
  int break_glass;
  char domain[TOKEND_DOMAIN_BYTES];
  char token_id[TOKEND_TOKEN_ID_BYTES];
  char method[TOKEND_AUDIT_METHOD_BYTES];
  int code; /* gRPC status */
  char detail[TOKEND_STATUS_MESSAGE_BYTES];
  int64_t count; /* calls the row stands for (refusals aggregate); 0 is 1 */
} store_audit_t;

/* The audit log's chain key (derived from the pepper, never the pepper
 * itself) and each row's keyed hash. */
#define STORE_AUDIT_KEY_BYTES 32
#define STORE_AUDIT_HASH_BYTES 32

/* What store_audit_verify found. */
typedef struct {
  int64_t rows_checked;
  int64_t first_bad_id; /* 0: the chain holds */
  int anchor_mismatch;  /* the chain holds but the anchor given does not */
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  int64_t head_id; /* the last row that checked out, and its hash */
  uint8_t head_hash[STORE_AUDIT_HASH_BYTES];
} store_audit_check_t;

typedef struct {
  uint8_t hash[TOKEND_HASH_BYTES];
  int64_t last_used_at;
} store_touch_t;

/* Opens (creating if missing) the store at path, checks that it is a tokend
 * store of a version this build knows, and migrates it forward. On failure
 * returns TOKEND_ESTORE (cannot open), TOKEND_ECONFIG (not a tokend database,
 * or from a newer version) and writes a one-line reason into why. */
int store_open(const char *path, store_t **out, char *why,
               size_t why_len) TOKEND_MUST_CHECK;

/* store_open() with flags (STORE_OPEN_*). Without STORE_OPEN_CREATE a
 * missing file is TOKEND_ENOTFOUND. Without STORE_OPEN_READ_ONLY a file,
 * or a directory (where the WAL lives), that tokend cannot write is
 * TOKEND_ECONFIG. Every open runs PRAGMA quick_check and refuses a damaged
 * file (TOKEND_ECONFIG). A read-only store refuses a file that still needs
 * migrating, and every write (TOKEND_ECONFIG, "tokend runs --read-only"). */
int store_open_flags(const char *path, int flags, store_t **out, char *why,
                     size_t why_len) TOKEND_MUST_CHECK;

/* Full PRAGMA integrity_check of the file at path, opened read-only: 0 if it
 * says "ok"; otherwise TOKEND_ESTORE (damage) or TOKEND_ECONFIG (cannot
 * open). Every line it reports is written to out. */
int store_check_integrity(const char *path, FILE *out) TOKEND_MUST_CHECK;

/* 1 if the store was opened with STORE_OPEN_READ_ONLY. */
int store_is_read_only(const store_t *store);

/* Compares the file at the store's path with the one it opened (device and
 * inode). TOKEND_EUNAVAIL (with store_errmsg() saying so) once the file was
 * deleted or replaced: from then on store_file_lost() is 1 and stays 1, as
 * writes would go to a file that a restart would not find. */
int store_file_check(store_t *store) TOKEND_MUST_CHECK;
int store_file_lost(const store_t *store);

/* The pepper fingerprint the database records: *present 0 if none. */
int store_fingerprint_get(store_t *store, uint8_t out[STORE_FINGERPRINT_BYTES],
                          int *present) TOKEND_MUST_CHECK;

/* Records (or replaces) the pepper fingerprint. */
int store_fingerprint_set(store_t *store,
                          const uint8_t fp[STORE_FINGERPRINT_BYTES])
    TOKEND_MUST_CHECK;

/* *n gets the number of tokens, domain admins and audit rows together. */
int store_count_rows(store_t *store, int64_t *n) TOKEND_MUST_CHECK;

/* Closes and opens the store's connection again. After a failed commit the
 * connection's view may differ from the file's (SQLite may have written a
 * transaction whose fsync then failed): a fresh connection sees what a
 * restart would. Until it succeeds, every other call fails. */
int store_reopen(store_t *store) TOKEND_MUST_CHECK;

/* 1 if the last failure may have left its transaction in the file (a failed
 * fsync after the commit was written), so that a restart would find it. */
int store_failure_in_doubt(const store_t *store);

/* 1 if the store has a working connection. */
int store_is_open(const store_t *store);

/* Closes the store; NULL is a no-op. */
void store_close(store_t *store);

/* Last error's message; "" if none. */
const char *store_errmsg(const store_t *store);

/* Calls cb for every token, oldest first. cb returning non-zero stops the
 * walk and that value is returned. row is valid only during the call. */
typedef int (*store_load_cb)(void *arg, const store_token_t *row);
int store_load(store_t *store, store_load_cb cb, void *arg) TOKEND_MUST_CHECK;

/* Transactions group writes: a write outside one commits by itself. */
int store_begin(store_t *store) TOKEND_MUST_CHECK;
int store_commit(store_t *store) TOKEND_MUST_CHECK;
void store_rollback(store_t *store);

/* Inserts row (seq is ignored) and sets row->seq. TOKEND_EEXIST if its id
 * or hash is already stored. */
int store_insert(store_t *store, store_token_t *row) TOKEND_MUST_CHECK;

/* Revokes token id of domain at now, by user by. *revoked_at gets the first
 * revocation's time, *already 1 if it was revoked before, hash the token's
 * hash. TOKEND_ENOTFOUND if domain has no token with that id. */
int store_revoke(store_t *store, const char *domain, const char *id,
                 int64_t now, const char *by, int64_t *revoked_at, int *already,
                 uint8_t hash[TOKEND_HASH_BYTES]) TOKEND_MUST_CHECK;

/* Raises last_used_at of each token to the given time (never lowers it). */
int store_touch(store_t *store, const store_touch_t *items,
                size_t n) TOKEND_MUST_CHECK;

/* Writes into rows (room for max_rows) up to max_rows tokens of domain with
 * seq < before_seq (0: no bound), newest first, skipping revoked tokens
 * unless include_revoked. *n_rows gets the count. */
int store_list(store_t *store, const char *domain, int include_revoked,
               int64_t before_seq, store_token_t *rows, size_t max_rows,
               size_t *n_rows) TOKEND_MUST_CHECK;

/* Makes user an admin of domain. *granted_at gets the first grant's time,
 * *already 1 if user was one. */
int store_admin_grant(store_t *store, const char *domain, const char *user,
                      int64_t now, const char *by, int64_t *granted_at,
                      int *already) TOKEND_MUST_CHECK;

/* Removes user from domain's admins; TOKEND_ENOTFOUND if not one. With
 * revoke_tokens, also revokes (at now, by by) every unrevoked token user
 * issued in domain, and sets *hashes (malloc'd, freed by the caller) to
 * their *n_hashes hashes. */
int store_admin_remove(store_t *store, const char *domain, const char *user,
                       int revoke_tokens, int64_t now, const char *by,
                       uint8_t (**hashes)[TOKEND_HASH_BYTES],
                       size_t *n_hashes) TOKEND_MUST_CHECK;

/* Calls cb for every domain admin. */
typedef int (*store_admin_cb)(void *arg, const store_admin_t *admin);
int store_admin_load(store_t *store, store_admin_cb cb,
                     void *arg) TOKEND_MUST_CHECK;

/* Reads token id of domain into row; TOKEND_ENOTFOUND if there is none. */
int store_token_get(store_t *store, const char *domain, const char *id,
                    store_token_t *row) TOKEND_MUST_CHECK;

/* *granted_at of user's admin grant in domain; TOKEND_ENOTFOUND if none. */
int store_admin_get(store_t *store, const char *domain, const char *user,
                    int64_t *granted_at) TOKEND_MUST_CHECK;

/* The hashes of created_by's tokens in domain revoked at revoked_at by
 * revoked_by (what one store_admin_remove revoked); *hashes is malloc'd. */
int store_revoked_with(store_t *store, const char *domain,
                       const char *created_by, int64_t revoked_at,
                       const char *revoked_by,
                       uint8_t (**hashes)[TOKEND_HASH_BYTES],
                       size_t *n_hashes) TOKEND_MUST_CHECK;

/* Sets the key that chains the audit log (copied; wiped at close) and, the
 * first time after the schema 4 migration, chains the rows that were there
 * before, oldest first. Must precede store_audit_append. */
int store_audit_key_set(
    store_t *store, const uint8_t key[STORE_AUDIT_KEY_BYTES]) TOKEND_MUST_CHECK;

/* Appends ev to the audit log (sets ev->id, the newest id + 1, and its chain
 * hash over ev and the newest row's hash). The log is append-only: the
 * schema refuses updates, deletes and replacing inserts; the chain makes
 * what bypasses the schema (a writer of the file) detectable. */
int store_audit_append(store_t *store, store_audit_t *ev) TOKEND_MUST_CHECK;

/* Up to max_rows events, newest first, of domain ("" for every domain), at
 * or after since, with id < before_id (0: no bound). */
int store_audit_list(store_t *store, const char *domain, int64_t since,
                     int64_t before_id, store_audit_t *rows, size_t max_rows,
                     size_t *n_rows) TOKEND_MUST_CHECK;

/* The newest audit row's id and stored hash (0 and zeros: an empty log). */
int store_audit_head(store_t *store, int64_t *id,
                     uint8_t hash[STORE_AUDIT_HASH_BYTES]) TOKEND_MUST_CHECK;

/* Walks the whole audit log, oldest first, recomputing each row's hash from
 * its content and the previous row's. out->first_bad_id gets the first row
 * that does not check out (0: none) and out->why says how. With anchor_id >
 * 0 (a row id and hash recorded earlier, outside the database), that row
 * must still be there with that hash: otherwise the newest rows were cut
 * off, which the chain alone cannot show. Returns 0 or a store failure. */
int store_audit_verify(store_t *store, int64_t anchor_id,
                       const uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES],
                       store_audit_check_t *out) TOKEND_MUST_CHECK;

/* Adds Verify counts to domain's totals ("" for unknown tokens). */
int store_verify_counts_add(store_t *store, const char *domain, uint64_t valid,
                            uint64_t invalid, int64_t now) TOKEND_MUST_CHECK;

#endif
