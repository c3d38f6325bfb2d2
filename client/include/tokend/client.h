/* libtokend-client: a small blocking C client for tokend.
 *
 *   #include <tokend/client.h>      link with -ltokend-client
 *
 * One tokend_client_t is one connection to tokend's Unix socket.
 *
 * Threads: a tokend_client_t is not thread-safe: one thread at a time may
 * use it (calls on different clients may run in parallel). A
 * multi-threaded service uses a tokend_pool_t (below), whose functions any
 * thread may call at any time; or one client per thread; or a lock around
 * one client. Nothing in the library is global, except the reading of
 * $TOKEND_SOCKET at open.
 *
 * Reconnects: when tokend closes the connection (it restarted, or closed it
 * as idle after --idle-timeout-ms), the next call connects again by
 * itself, waiting for tokend to come back (see tokend_client_set_reconnect)
 * with a backoff of 5 ms doubling to at most 250 ms between attempts.
 *   - A request tokend cannot have read is sent on the new connection,
 *     whatever the method: none of its bytes were written, or tokend's end
 *     closed with them still unread (it stopped reading to shut down, or
 *     was killed first; the kernel reports that as a reset).
 *   - A request tokend read whose answer never came (the connection died
 *     in between) is sent again once, on a new connection, if its method
 *     is idempotent: Verify, List, WhoAmI, ListDomainAdmins, ListAuditEvents,
 *     VerifyAuditLog, ServerStatus, Lookup, GetDomainPolicy. The writes
 *     (Issue, Revoke, GrantDomainAdmin, RevokeDomainAdmin, Edit, Roll,
 *     BulkRevoke, SetDomainPolicy, RevokeLeaked) are never sent twice:
 *     they return TOKEND_EINDOUBT ("outcome unknown": tokend may or may
 *     not have done it; look, e.g. with List, before trying again).
 *   - TOKEND_ETIMEDOUT (no answer within timeout_ms) is not retried
 *     either; for a write it too leaves the outcome unknown.
 *
 * Every function returns
 * 0 on success or a negative TOKEND_E* code (see tokend_strerror()). When
 * tokend answers a call with a non-OK status, the function returns the code
 * that status maps to and tokend_client_errmsg() gives tokend's message and
 * tokend_client_grpc_status() its gRPC status code.
 *
 * Output structs are filled by the library; their strings are fixed-size
 * arrays sized by the TOKEND_*_BYTES constants, always NUL-terminated. */
#ifndef TOKEND_CLIENT_H
#define TOKEND_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <tokend/error.h>
#include <tokend/limits.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tokend_client_s tokend_client_t;

typedef enum {
  TOKEND_TOKEN_ACTIVE = 1,
  TOKEND_TOKEN_REVOKED = 2,
  TOKEND_TOKEN_EXPIRED = 3
} tokend_token_status_t;

typedef enum {
  TOKEND_VERIFY_VALID = 0,
  TOKEND_VERIFY_MALFORMED = 1,
  TOKEND_VERIFY_UNKNOWN = 2,
  TOKEND_VERIFY_REVOKED = 3,
  TOKEND_VERIFY_EXPIRED = 4
} tokend_verify_reason_t;

typedef struct {
  char id[TOKEND_TOKEN_ID_BYTES];
  char domain[TOKEND_DOMAIN_BYTES];
  char label[TOKEND_LABEL_BYTES];
  char hint[TOKEND_HINT_BYTES];
  size_t n_scopes;
  char scopes[TOKEND_MAX_SCOPES][TOKEND_SCOPE_BYTES];
  int64_t created_at;   /* Unix ms */
  int64_t expires_at;   /* Unix ms; 0: never */
  int64_t last_used_at; /* Unix ms; 0: never used */
  int64_t revoked_at;   /* Unix ms; 0: not revoked */
  tokend_token_status_t status;
  char created_by[TOKEND_USER_BYTES]; /* acting user at issue; "" unknown */
  char revoked_by[TOKEND_USER_BYTES]; /* acting user at revoke */
  /* issue 17 */
  char metadata[TOKEND_METADATA_BYTES];    /* a JSON object; "" none */
  char rolled_from[TOKEND_TOKEN_ID_BYTES]; /* the token Roll replaced */
  char rolled_to[TOKEND_TOKEN_ID_BYTES];   /* the token that replaced it */
} tokend_token_info_t;

typedef struct {
  const char *domain;        /* required */
  const char *label;         /* required */
  int64_t expires_at;        /* Unix ms; 0: never expires */
  const char *const *scopes; /* n_scopes strings; may be NULL if n_scopes 0 */
  size_t n_scopes;
  /* issue 17: a JSON object of at most TOKEND_MAX_METADATA bytes that
   * Verify returns with the token; NULL or "": none. */
  const char *metadata;
} tokend_issue_params_t;

typedef struct {
  /* The secret, shown this once. Wipe it (sodium_memzero or
   * tokend_client_wipe) when done. */
  char token[TOKEND_TOKEN_BYTES];
  tokend_token_info_t info;
} tokend_issued_t;

typedef struct {
  int valid;                     /* 1 valid, 0 not */
  tokend_verify_reason_t reason; /* TOKEND_VERIFY_VALID when valid */
  /* Filled when tokend knows the token (valid, revoked or expired). */
  char token_id[TOKEND_TOKEN_ID_BYTES];
  char domain[TOKEND_DOMAIN_BYTES];
  char label[TOKEND_LABEL_BYTES];
  size_t n_scopes;
  char scopes[TOKEND_MAX_SCOPES][TOKEND_SCOPE_BYTES];
  int64_t expires_at;
  char metadata[TOKEND_METADATA_BYTES]; /* issue 17: a JSON object; "" */
} tokend_verify_result_t;

typedef struct {
  size_t n_tokens;
  tokend_token_info_t *tokens; /* newest first */
  /* Pass to the next tokend_client_list() call; "" on the last page. */
  char next_page_token[TOKEND_PAGE_TOKEN_BYTES];
} tokend_token_list_t;

/* Connects to tokend at socket_path. NULL means tokend's default socket:
 * the path in the environment variable TOKEND_SOCKET when set and not
 * empty, else the default tokend was built with; the library resolves it
 * at each call. timeout_ms bounds the connect and, later, each
 * call's wait for its response (0: wait forever). On success *out is a new
 * client the caller frees with tokend_client_close().
 * Returns 0, TOKEND_ECONNECT (no tokend there; tokend_client_open() tells
 * the reasons apart), TOKEND_ETIMEDOUT, TOKEND_EINVAL (path too long) or
 * TOKEND_ENOMEM. */
int tokend_client_connect(const char *socket_path, int timeout_ms,
                          tokend_client_t **out) TOKEND_MUST_CHECK;

/* Room for the reason tokend_client_open() gives, NUL included. */
#define TOKEND_CONNECT_ERRMSG_BYTES 512

/* tokend_client_open() flags. */
/* Ask the peer WhoAmI before returning, so that a socket some other program
 * listens on gives TOKEND_ENOTTOKEND now rather than a puzzling failure of
 * the first call. Costs one round trip. */
#define TOKEND_CONNECT_CHECK_PEER 1u

/* tokend_client_connect(), saying why it failed. On failure why (why_len
 * bytes; may be NULL if why_len is 0) receives one sentence naming the path
 * and what to do, also when no client was made; "" on success. Returns 0
 * or, besides tokend_client_connect()'s codes:
 *   TOKEND_ENOSOCKET   nothing at the path, or its directory is missing
 *   TOKEND_ESOCKPERM   the socket (or a directory above it) is not ours to
 *                      open; why names the socket's group
 *   TOKEND_ENOTTOKEND  the path is not a socket, or (with
 *                      TOKEND_CONNECT_CHECK_PEER) the peer did not answer
 *                      tokend's protocol
 *   TOKEND_ECONNECT    a socket no one listens on (tokend not running)
 * With TOKEND_CONNECT_CHECK_PEER, a tokend that refuses the connection (at
 * its connection limits) gives that refusal's code and message. */
int tokend_client_open(const char *socket_path, int timeout_ms, unsigned flags,
                       tokend_client_t **out, char *why,
                       size_t why_len) TOKEND_MUST_CHECK;

/* How long, by default, a call waits for tokend to come back when its
 * connection broke (a restart takes tokend well under this). */
#define TOKEND_RECONNECT_WAIT_MS_DEFAULT 2000

/* Sets how long one call may wait for a new connection when the last one
 * broke: max_wait_ms (also bounded by the client's timeout_ms); 0 turns
 * reconnecting and retrying off, so that after a broken connection every
 * call returns TOKEND_ECLOSED (the library's behaviour before it
 * reconnected). While waiting, a
 * missing socket, nothing listening and a full backlog are waited out; a
 * socket we may not open (TOKEND_ESOCKPERM) or one that is not a socket
 * (TOKEND_ENOTTOKEND) fails the call at once. A failed reconnect returns
 * tokend_client_open()'s code and its sentence in tokend_client_errmsg().
 * Returns 0 or TOKEND_EINVAL (client NULL, max_wait_ms negative). */
int tokend_client_set_reconnect(tokend_client_t *client,
                                int max_wait_ms) TOKEND_MUST_CHECK;

/* Closes the connection and frees the client. NULL is a no-op. */
void tokend_client_close(tokend_client_t *client);

/* tokend's status message for the last failed call, or a local description
 * of the last local failure; "" if none. Valid until the next call. */
const char *tokend_client_errmsg(const tokend_client_t *client);

/* The gRPC status code of the last call (0 OK; a local failure gives the
 * status its error code maps to). */
int tokend_client_grpc_status(const tokend_client_t *client);

/* Issues a token. On success *out holds the secret and its metadata. */
int tokend_client_issue(tokend_client_t *client,
                        const tokend_issue_params_t *params,
                        tokend_issued_t *out) TOKEND_MUST_CHECK;

/* Verifies token (NUL-terminated). An invalid token is not an error: it
 * returns 0 with out->valid == 0 and out->reason saying why. */
int tokend_client_verify(tokend_client_t *client, const char *token,
                         tokend_verify_result_t *out) TOKEND_MUST_CHECK;

/* Revokes token_id of domain. *revoked_at (may be NULL) receives the time of
 * the first revocation; *already_revoked (may be NULL) is set to 1 if an
 * earlier call revoked it. TOKEND_ENOTFOUND if domain has no such token. */
int tokend_client_revoke(tokend_client_t *client, const char *domain,
                         const char *token_id, int64_t *revoked_at,
                         int *already_revoked) TOKEND_MUST_CHECK;

/* How far a write had spread when it was answered, with a store several
 * hosts share (PostgreSQL): tokend answers Issue, Revoke and the admin
 * writes once every live host has applied them, or after its
 * --propagation-timeout-ms. */
typedef struct {
  int64_t revision;       /* the write's revision in the store's change feed */
  uint32_t hosts_applied; /* live hosts that had applied it */
  uint32_t
      hosts_pending; /* live hosts that had not (0: in effect everywhere) */
} tokend_propagation_t;

/* 1, with *out (may be NULL) set, if the last call on client was a write
 * whose answer said how far it had spread; 0 otherwise (a store of one
 * host, tokend --no-issue-wait, a failed call). */
int tokend_client_last_propagation(const tokend_client_t *client,
                                   tokend_propagation_t *out);

/* Lists one page of domain's tokens, newest first. page_size 0 means the
 * server default; page_token NULL or "" starts at the newest. On success
 * *out is a new list the caller frees with tokend_token_list_free(). */
int tokend_client_list(tokend_client_t *client, const char *domain,
                       uint32_t page_size, const char *page_token,
                       int include_revoked,
                       tokend_token_list_t **out) TOKEND_MUST_CHECK;

void tokend_token_list_free(tokend_token_list_t *list);

/* ---- Identity, domain admins and the audit log ----
 *
 * tokend knows the caller from the kernel (SO_PEERCRED), never from the
 * request. A non-operator acts as itself ("uid:<n>"); an operator (for
 * example the platform's web backend) may say which user it acts for with
 * tokend_client_set_actor(), or act with no actor (break-glass, audited). */

typedef struct {
  uint32_t uid, gid;
  int32_t pid;
  char user[TOKEND_USER_BYTES]; /* how tokend names the caller */
  int is_operator;
  int is_verifier;
} tokend_whoami_t;

typedef struct {
  char user[TOKEND_USER_BYTES];
  int64_t granted_at;
  char granted_by[TOKEND_USER_BYTES];
} tokend_admin_t;

typedef struct {
  size_t n_admins;
  tokend_admin_t *admins;
} tokend_admin_list_t;

typedef struct {
  int64_t id;
  int64_t time; /* Unix ms */
  uint32_t peer_uid;
  int32_t peer_pid;
  char actor[TOKEND_USER_BYTES];
  int break_glass;
  char domain[TOKEND_DOMAIN_BYTES];
  char token_id[TOKEND_TOKEN_ID_BYTES];
  char method[TOKEND_AUDIT_METHOD_BYTES];
  int code; /* gRPC status of the outcome */
  char detail[TOKEND_STATUS_MESSAGE_BYTES];
  uint64_t count; /* calls the row stands for: 1, or refusals aggregated */
} tokend_audit_event_t;

/* What tokend_client_verify_audit found. */
#define TOKEND_AUDIT_HASH_HEX_BYTES 65 /* 64 hex digits and a NUL */
typedef struct {
  int64_t rows_checked;
  int64_t first_bad_id; /* 0: every row checks out */
  char problem[TOKEND_STATUS_MESSAGE_BYTES];
  int64_t head_id; /* the newest row that checks out, and its hash */
  char head_hash[TOKEND_AUDIT_HASH_HEX_BYTES];
} tokend_audit_check_t;

typedef struct {
  size_t n_events;
  tokend_audit_event_t *events; /* newest first */
  char next_page_token[TOKEND_PAGE_TOKEN_BYTES];
} tokend_audit_list_t;

/* Sets the user every later call on this client acts for (operators only;
 * tokend refuses a non-operator that names one). NULL or "" clears it.
 * TOKEND_EINVAL if actor is too long. The string is copied. */
int tokend_client_set_actor(tokend_client_t *client,
                            const char *actor) TOKEND_MUST_CHECK;

/* How tokend sees this connection's peer. */
int tokend_client_whoami(tokend_client_t *client,
                         tokend_whoami_t *out) TOKEND_MUST_CHECK;

/* Operators only. Makes user an admin of domain; *granted_at (may be NULL)
 * gets the first grant's time, *already (may be NULL) 1 if it was one. */
int tokend_client_grant_admin(tokend_client_t *client, const char *domain,
                              const char *user, int64_t *granted_at,
                              int *already) TOKEND_MUST_CHECK;

/* Operators only. Removes user from domain's admins, and with revoke_tokens
 * also revokes, in the same transaction, every token user issued there;
 * *tokens_revoked (may be NULL) gets how many. TOKEND_ENOTFOUND if user was
 * not an admin of domain. */
int tokend_client_revoke_admin(tokend_client_t *client, const char *domain,
                               const char *user, int revoke_tokens,
                               uint32_t *tokens_revoked) TOKEND_MUST_CHECK;

/* Operators only. On success *out is a new list the caller frees with
 * tokend_admin_list_free(). */
int tokend_client_list_admins(tokend_client_t *client, const char *domain,
                              tokend_admin_list_t **out) TOKEND_MUST_CHECK;
void tokend_admin_list_free(tokend_admin_list_t *list);

/* One page of the audit log, newest first: domain's events (its admins and
 * operators), or every domain's with domain "" (operators). since (Unix ms,
 * 0: all) bounds it below. On success *out is a new list the caller frees
 * with tokend_audit_list_free(). */
int tokend_client_list_audit(tokend_client_t *client, const char *domain,
                             int64_t since, uint32_t page_size,
                             const char *page_token,
                             tokend_audit_list_t **out) TOKEND_MUST_CHECK;
void tokend_audit_list_free(tokend_audit_list_t *list);

/* Operators only. Has tokend recompute the audit log's hash chain, oldest
 * row first. With anchor_id > 0, the row anchor_id must also still be
 * there with hash anchor_hash (64 hex digits: a head_hash recorded earlier),
 * which is what shows the newest rows cut off. Returns 0 when the check
 * ran: out->first_bad_id then says whether the log holds. */
int tokend_client_verify_audit(tokend_client_t *client, int64_t anchor_id,
                               const char *anchor_hash,
                               tokend_audit_check_t *out) TOKEND_MUST_CHECK;

/* What tokend_client_backup made. */
#define TOKEND_BACKUP_PATH_BYTES 4096 /* a path and its NUL */
typedef struct {
  int64_t bytes; /* the copy's size */
  /* The pepper file to keep with the copy (it is not in it, and without
   * it no token in the copy verifies). */
  char pepper_file[TOKEND_BACKUP_PATH_BYTES];
} tokend_backup_t;

/* Operators only. Has tokend write a consistent online copy of its store
 * into a new file at path: absolute, created by tokend's user with mode
 * 0600; an existing file is never replaced (TOKEND_EEXIST). Writes wait
 * for the copy; Verify does not. A store tokend cannot copy (PostgreSQL:
 * use pg_dump) answers TOKEND_ECONFIG. */
int tokend_client_backup(tokend_client_t *client, const char *path,
                         tokend_backup_t *out) TOKEND_MUST_CHECK;

/* Overwrites an issued token's secret with zeros. */
void tokend_client_wipe(tokend_issued_t *issued);

/* Static names: "VALID", "MALFORMED", ...; "ACTIVE", "REVOKED", "EXPIRED". */
const char *tokend_verify_reason_name(tokend_verify_reason_t reason);
const char *tokend_token_status_name(tokend_token_status_t status);

/* ---- How tokend is doing ---- */

typedef struct {
  char version[32];
  char store[32];    /* the store's scheme: "sqlite", "postgresql" */
  char host_id[128]; /* "" with a store of one host */
  int64_t applied_revision;
  int fresh; /* 1 while it answers Verify (not past its lease) */
  int64_t lease_left_ms;
  uint64_t tokens;       /* in memory */
  char index_digest[65]; /* 64 hex digits: equal on hosts that agree */
  char problem[256];     /* why not fresh, or "" */
} tokend_server_status_t;

/* Verifiers and operators: how this tokend is doing (it answers from
 * memory, never the store). */
int tokend_client_server_status(tokend_client_t *client,
                                tokend_server_status_t *out) TOKEND_MUST_CHECK;

/* Verifiers and operators (issue 16): *out gets how many tokens are still
 * hashed with the previous pepper during a pepper rotation (0 when none
 * is: the old pepper may then go). Its own call, from ServerStatus, so
 * that tokend_server_status_t, which callers allocate, keeps its size. */
int tokend_client_tokens_previous_pepper(tokend_client_t *client,
                                         uint64_t *out) TOKEND_MUST_CHECK;

/* ---- The Verify cache (issue 15, section 2) ----
 *
 * Off unless asked. A client with the cache on keeps up to max_entries
 * valid Verify answers, keyed by a keyed hash of the token (a random key
 * per client; the token itself is never kept), and answers a Verify from
 * it without a round trip when all of these hold:
 *   - tokend gave this client its revocation epoch region (a sealed memfd
 *     passed over the socket, mapped read-only);
 *   - the region's heartbeat, which tokend refreshes only while it is
 *     current (running, and within its lease with a shared store), is
 *     younger than the bound written in the region (1 s), by this host's
 *     CLOCK_MONOTONIC: a stopped, hung or partitioned tokend is not
 *     trusted. The library reads the coarse clock (the last tick's time)
 *     and adds its resolution, so the heartbeat is trusted only while the
 *     precise clock is below heartbeat + bound, never a tick past it;
 *   - this client's connection to tokend is still open (looked at once per
 *     clock tick, 1-4 ms: a killed tokend's page looks alive until the
 *     bound, but its socket closes at once);
 *   - the epoch tokend bumps before answering every change that takes
 *     validity away (a revoke here or on another host, an admin removed
 *     with their tokens) is the one read before the answer was asked for;
 *   - the answer has not expired by this host's clock (the coarse wall
 *     clock plus its resolution: an answer stops being used up to a tick,
 *     1-4 ms, before its expires_at, never after).
 * Otherwise the Verify goes to tokend as usual. So once Revoke has
 * returned, no client on the host answers the token from its cache. A
 * reconnect (a restarted tokend has a new region) drops the cache and asks
 * for the new region. Invalid answers are never cached.
 *
 * Hits are reported back: at most once per tokend's
 * --last-used-granularity-ms (written in the region) per token, the next
 * Verify of a token whose cached answer was used goes to tokend carrying
 * how many times it was, so tokend's per-domain Verify counters count them
 * and last_used_at moves as it would have. Hits not yet reported when an
 * answer is evicted, invalidated by a moved epoch or dropped at a
 * reconnect, or when the reporting call fails, are not counted. */

typedef struct {
  uint64_t hits;       /* Verifies answered from the cache */
  uint64_t misses;     /* Verifies asked of tokend with the cache usable */
  uint64_t flushes;    /* epoch moves seen: every cached answer dropped */
  uint64_t stale;      /* Verifies asked of tokend: the heartbeat too old */
  uint64_t reported;   /* hits reported back to tokend */
  size_t entries;      /* answers held (some may be of an older epoch) */
  size_t capacity;     /* the most it holds: <= max_entries */
  uint64_t generation; /* the region's; 0 when none is mapped */
  int fresh;           /* 1 if the region's heartbeat is young enough now */
} tokend_cache_stats_t;

/* Turns the cache on with room for max_entries (>= 1) answers, and asks
 * tokend for its region (one round trip). Returns 0, TOKEND_EUNAVAIL (this
 * tokend has no region to give, or it could not be passed: nothing is
 * cached, ever, on this client until it is enabled again), TOKEND_EINVAL,
 * TOKEND_ENOMEM, or the call's errors. A second call resizes (and
 * empties) the cache. Memory: 15-25 bytes per answer allowed, taken at
 * once, and 128 bytes per answer held (the most ever held at once), plus
 * the strings of an answer whose id, domain, label and scopes take more
 * than 72 bytes. A cached Verify takes no lock and
 * allocates nothing; its only system call is the look at the socket, once
 * per clock tick. */
int tokend_client_cache_enable(tokend_client_t *client,
                               size_t max_entries) TOKEND_MUST_CHECK;

/* The cache's counters (all 0 when it is off). */
void tokend_client_cache_stats(const tokend_client_t *client,
                               tokend_cache_stats_t *out);

/* ---- A pool of connections, for multi-threaded services ----
 *
 * n clients to one tokend; a call borrows one for its duration, so up to n
 * calls run in parallel and more wait for a free one. Every function below
 * may be called from any thread at any time (except tokend_pool_close,
 * which ends the pool). Each client reconnects by itself as above. */

typedef struct tokend_pool_s tokend_pool_t;

/* Opens n (>= 1) clients to socket_path as tokend_client_open() would (with
 * flags), each with timeout_ms. timeout_ms also bounds how long
 * tokend_pool_acquire() waits for a free client (0: forever). On success
 * *out is a new pool the caller frees with tokend_pool_close(). On failure
 * no client stays open, and why (why_len bytes; may be NULL if why_len is
 * 0) says why, as tokend_client_open() does. Returns 0,
 * tokend_client_open()'s codes, or TOKEND_EINVAL (n 0). */
int tokend_pool_open(const char *socket_path, int timeout_ms, unsigned flags,
                     size_t n, tokend_pool_t **out, char *why,
                     size_t why_len) TOKEND_MUST_CHECK;

/* Borrows a client, waiting while all n are borrowed. On success *out is
 * the caller's alone until it hands it back with tokend_pool_release();
 * tokend_client_errmsg() on it stays readable until then. Returns 0,
 * TOKEND_ETIMEDOUT (none came free within the pool's timeout_ms) or
 * TOKEND_EINVAL. */
int tokend_pool_acquire(tokend_pool_t *pool,
                        tokend_client_t **out) TOKEND_MUST_CHECK;

/* Hands back a client tokend_pool_acquire() gave. Its actor is cleared
 * (tokend_client_set_actor), so the next borrower never acts for someone
 * it did not name; its reconnect setting stays as the borrower left it. */
void tokend_pool_release(tokend_pool_t *pool, tokend_client_t *client);

/* tokend_client_verify() on a borrowed client. On failure, when why_len >
 * 0, why receives tokend_client_errmsg() of that call (the client is back in
 * the pool by the time this returns). */
int tokend_pool_verify(tokend_pool_t *pool, const char *token,
                       tokend_verify_result_t *out, char *why,
                       size_t why_len) TOKEND_MUST_CHECK;

/* Turns the Verify cache on for every client of the pool, each with its
 * own table of max_entries answers (so tokend_pool_verify answers from
 * the cache of whichever client it borrows; memory: n times
 * tokend_client_cache_enable's). Waits until every client is free (within
 * the pool's timeout_ms). Returns 0, TOKEND_EINVAL, TOKEND_ENOMEM,
 * TOKEND_ETIMEDOUT, or tokend_client_cache_enable()'s error of the first
 * client that failed (then the clients before it cache and the rest do
 * not; each keeps the cache's rules on its own); why (why_len bytes, may
 * be NULL if 0) says why. A borrowed client's counters are
 * tokend_client_cache_stats() on it. */
int tokend_pool_cache_enable(tokend_pool_t *pool, size_t max_entries, char *why,
                             size_t why_len) TOKEND_MUST_CHECK;

/* Closes every client and frees the pool. Every borrowed client must have
 * been released, and no other thread may be using the pool. NULL is a
 * no-op. */
void tokend_pool_close(tokend_pool_t *pool);

/* ---- The whole life of a token (issue 17) ---- */

/* A domain admin (or operator): token_id of domain's info, as List gives
 * it, without using the token (last_used_at and the Verify counters do
 * not move). Idempotent (sent again after a reconnect). TOKEND_ENOTFOUND
 * for a token of another domain or none, TOKEND_EPERM for a caller who
 * is not an admin of domain, TOKEND_EINVAL for a bad domain or id. */
int tokend_client_lookup(tokend_client_t *client, const char *domain,
                         const char *token_id,
                         tokend_token_info_t *out) TOKEND_MUST_CHECK;

/* As tokend_client_lookup(), by the secret itself (e.g. one a user
 * pasted): tokend never logs it; the library wipes its copy of the
 * request. */
int tokend_client_lookup_secret(tokend_client_t *client, const char *domain,
                                const char *token,
                                tokend_token_info_t *out) TOKEND_MUST_CHECK;

/* What tokend_client_edit() changes: each member that says so. */
typedef struct {
  const char *label;    /* NULL: unchanged */
  const char *metadata; /* NULL: unchanged; "": removed; else a JSON object */
  int set_expires_at;   /* 1: expires_at is the new expiry */
  int64_t expires_at;   /* Unix ms; 0: never (within the domain's policy) */
  int set_scopes;       /* 1: scopes become these (a subset of the token's) */
  const char *const *scopes; /* n_scopes strings */
  size_t n_scopes;
} tokend_edit_params_t;

/* A domain admin: changes token_id of domain. The expiry can be shortened
 * or set; lengthened or removed only within the domain's policy (its
 * max_lifetime_ms counts from the token's creation); scopes only
 * narrowed. *out (may be NULL) gets the token as it is now. Not
 * idempotent: a broken connection after sending is TOKEND_EINDOUBT (look
 * with tokend_client_lookup() before trying again). TOKEND_ENOTFOUND,
 * TOKEND_EPERM, TOKEND_EINVAL (the message names the field: e.g. a scope
 * the token does not hold), TOKEND_ECONFIG (a revoked token; a new expiry
 * for an expired token). */
int tokend_client_edit(tokend_client_t *client, const char *domain,
                       const char *token_id, const tokend_edit_params_t *params,
                       tokend_token_info_t *out) TOKEND_MUST_CHECK;

/* What tokend_client_roll() gives: the new token and the old one. */
typedef struct {
  /* The new secret, shown this once: wipe it (sodium_memzero) when done. */
  char token[TOKEND_TOKEN_BYTES];
  tokend_token_info_t info;     /* the new token (rolled_from set) */
  tokend_token_info_t previous; /* the old one as it is now (rolled_to set) */
} tokend_rolled_t;

/* A domain admin: rotates token_id of domain. A new token (new id and
 * secret; the same label, scopes and metadata; an expiry as long from now
 * as the old one's lifetime, 0 staying 0) replaces it, and the old one
 * expires at now + grace_ms (0: now), never later than it would have.
 * grace_ms from 0 to 30 days. Not idempotent (TOKEND_EINDOUBT as Edit).
 * TOKEND_ECONFIG for a revoked, expired or already rolled token. */
int tokend_client_roll(tokend_client_t *client, const char *domain,
                       const char *token_id, int64_t grace_ms,
                       tokend_rolled_t *out) TOKEND_MUST_CHECK;

/* tokend_client_list() of only the active tokens that expire within
 * within_ms from now (> 0). */
int tokend_client_list_expiring(tokend_client_t *client, const char *domain,
                                uint32_t page_size, const char *page_token,
                                int64_t within_ms,
                                tokend_token_list_t **out) TOKEND_MUST_CHECK;
/* ---- issue 17: revocation in bulk ---- */

/* Which tokens of a domain tokend_client_bulk_revoke() revokes: set exactly
 * one of the four (a non-NULL, non-empty token_ids; a non-NULL created_by;
 * all; a created_before > 0). */
typedef struct {
  const char *const *token_ids; /* these (at most TOKEND_BULK_IDS_MAX) */
  size_t n_token_ids;
  const char *created_by; /* every token this user created */
  int all;                /* every token of the domain */
  int64_t created_before; /* every token created before (Unix ms) */
} tokend_bulk_select_t;

/* Revokes the tokens of domain that sel selects, in one transaction, each
 * audited; in effect (here and, with a shared store, on every live host)
 * when it returns. *revoked (may be NULL) gets how many it revoked,
 * *already_revoked (may be NULL) how many selected tokens were revoked
 * before. TOKEND_EINVAL for a selector that is not exactly one, or a bad
 * one (the message names the field); TOKEND_ENOTFOUND (nothing revoked)
 * when a token id is no token of domain. Not idempotent as a call: a lost
 * answer is TOKEND_EINDOUBT (sending it again revokes nothing new and
 * answers already_revoked). Domain admins and operators. */
int tokend_client_bulk_revoke(tokend_client_t *client, const char *domain,
                              const tokend_bulk_select_t *sel,
                              uint32_t *revoked,
                              uint32_t *already_revoked) TOKEND_MUST_CHECK;

/* ---- issue 17: leaked tokens ---- */

/* For a --leak-reporter identity (a secret-scanning webhook receiver) or
 * an operator: tokens[0..n) (n 1 to TOKEND_LEAKED_MAX, NUL-terminated
 * strings) are secrets found in public at source (a URL, may be NULL).
 * Each that is an active token of this tokend is revoked and audited as
 * leaked (in its own domain, with source; never the secret). found (room
 * for n; may be NULL) gets 1 for each that is one of this tokend's
 * tokens, active or not, 0 otherwise (malformed ones included); *revoked
 * (may be NULL) how many this call revoked. Nothing else is told. A
 * write: a lost answer is TOKEND_EINDOUBT (sending it again is safe: what
 * is revoked stays revoked). The secrets are wiped from the library's
 * buffers; the caller wipes its own. */
int tokend_client_revoke_leaked(tokend_client_t *client,
                                const char *const *tokens, size_t n,
                                const char *source, int *found,
                                uint32_t *revoked) TOKEND_MUST_CHECK;

/* ---- issue 17: domain policies ---- */

/* What a domain's tokens may be; every limit 0 (or no scopes): none. */
typedef struct {
  int64_t max_lifetime_ms; /* Issue refuses an expiry later than now + it */
  int require_expiry;      /* Issue refuses a token that never expires */
  size_t n_allowed_scopes; /* 0: any scope */
  char allowed_scopes[TOKEND_MAX_SCOPES][TOKEND_SCOPE_BYTES];
  uint32_t max_active_tokens; /* Issue refuses past it (TOKEND_EQUOTA) */
  int64_t updated_at;         /* out only: Unix ms of the last Set */
  char updated_by[TOKEND_USER_BYTES]; /* out only */
} tokend_domain_policy_t;

/* Operators only. Sets domain's policy (updated_at and updated_by are
 * ignored); later Issues are held to it, tokens already issued are not
 * changed. Audited with the policy before and after. TOKEND_EINVAL names
 * the field it refuses. A write: a lost answer is TOKEND_EINDOUBT. */
int tokend_client_set_domain_policy(tokend_client_t *client, const char *domain,
                                    const tokend_domain_policy_t *policy)
    TOKEND_MUST_CHECK;

/* A domain's admins and operators. *out gets domain's policy (all zero:
 * none set). */
int tokend_client_get_domain_policy(tokend_client_t *client, const char *domain,
                                    tokend_domain_policy_t *out)
    TOKEND_MUST_CHECK;

#ifdef __cplusplus
}
#endif

#endif
