/* records: the rows tokend keeps (tokens, domain admins, audit events) as
 * the rest of the server sees them, whatever stores them. Plain values with
 * fixed-size fields: a record owns nothing, so copying one copies it all.
 * The store (store/store.h) reads and writes these; the index, authz and
 * the rpc layer build them. No functions: this header is the model only. */
#ifndef TOKEND_RECORDS_H
#define TOKEND_RECORDS_H

#include <stdint.h>

#include "tokend_limits.h"

/* Scopes travel as one string, separated by single spaces (scopes cannot
 * contain spaces). */
#define STORE_SCOPES_BYTES (TOKEND_MAX_SCOPES * TOKEND_SCOPE_BYTES)

/* What a store records about its pepper: a keyed hash of a fixed string
 * (pepper_fingerprint()), never the pepper. */
#define STORE_FINGERPRINT_BYTES 32

/* The audit log's chain key (derived from the pepper, never the pepper
 * itself) and each row's keyed hash. */
#define STORE_AUDIT_KEY_BYTES 32
#define STORE_AUDIT_HASH_BYTES 32

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
  char metadata[TOKEND_METADATA_BYTES];    /* a JSON object; "": none */
  char rolled_from[TOKEND_TOKEN_ID_BYTES]; /* the token Roll replaced; "" */
  char rolled_to[TOKEND_TOKEN_ID_BYTES];   /* the token that replaced it; "" */
  int32_t pepper_gen; /* the pepper generation that keyed hash */
} store_token_t;

/* One domain's policy (domain_policies), set by operators. A limit of 0
 * (or "" for allowed_scopes) is no limit. */
typedef struct {
  char domain[TOKEND_DOMAIN_BYTES];
  int64_t max_lifetime_ms; /* longest expires_at - now a token may get */
  int require_expiry;      /* tokens without an expiry are refused */
  char allowed_scopes[STORE_SCOPES_BYTES]; /* space-separated */
  int32_t max_active_tokens;
  int64_t updated_at;
  char updated_by[TOKEND_USER_BYTES];
} store_policy_t;

/* One domain admin grant. */
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

/* What a walk of the audit log's chain found (store_audit_verify). */
typedef struct {
  int64_t rows_checked;
  int64_t first_bad_id; /* 0: the chain holds */
  int anchor_mismatch;  /* the chain holds but the anchor given does not */
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  int64_t head_id; /* the last row that checked out, and its hash */
  uint8_t head_hash[STORE_AUDIT_HASH_BYTES];
} store_audit_check_t;

/* One domain's Verify counters ("" for unknown tokens), as
 * store_verify_counts_add accumulates them. */
typedef struct {
  char domain[TOKEND_DOMAIN_BYTES];
  uint64_t valid;
  uint64_t invalid;
  int64_t updated_at;
} store_counts_t;

/* A token's new last-use time, by its keyed hash (Verify's write-back). */
typedef struct {
  uint8_t hash[TOKEND_HASH_BYTES];
  int64_t last_used_at;
} store_touch_t;

#endif
