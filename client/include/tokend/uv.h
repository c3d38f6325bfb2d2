/* <tokend/uv.h>: tokend calls on a libuv loop, for event-loop services.
 *
 *   #include <tokend/uv.h>      link with -ltokend-client -luv
 *
 * A tokend_uv_t is one connection to tokend, driven by the caller's
 * uv_loop_t. Calls return at once; each one's callback runs later on the
 * loop's thread, exactly once (also when the call fails or the client is
 * closed). Calls are pipelined: every call made during one turn of the loop
 * is written in one write just before the loop next waits, and tokend
 * answers them in any order. Like libuv's handles, a tokend_uv_t belongs to
 * its loop's thread: use it from there only.
 *
 * The rules of <tokend/client.h> for a connection that dies hold here too:
 * the next call (or a call still waiting) connects again, with the same
 * backoff, waiting at most the reconnect bound; a call not yet written is
 * sent on the new connection, whatever its method; an idempotent call
 * (Verify) that was written and not answered is sent again once (up to 3
 * times while the new connections are reset before answering anything,
 * as those made to a tokend being killed are); a write
 * (Issue, Revoke) that was written and not answered fails with
 * TOKEND_EINDOUBT and is never sent twice. (With calls pipelined, the
 * kernel's "closed with bytes unread" cannot say which were read, so a
 * written write is always in doubt here.)
 *
 * SIGPIPE: as in every libuv program that writes to sockets, the process
 * must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN) at start; libuv writes
 * with write(2), and the library does not change the process's signal
 * dispositions behind its back), or a write to a connection tokend just
 * closed kills it instead of being retried.
 *
 * The calls here are the ones a service makes per request: Verify, and
 * Issue, Revoke and Lookup (by id: a read that changes nothing, sent again
 * after a reconnect as Verify is). List and the admin calls are not
 * (operator calls, made rarely); a libuv program makes them with the
 * blocking client of <tokend/client.h> from uv_queue_work().
 *
 * By default no call has a deadline of its own: a call waits while tokend
 * is connected and has not answered (tokend_uv_set_timeout gives each call
 * one). The loop is kept alive by calls waiting for an answer, not by an
 * idle connection. */
#ifndef TOKEND_UV_H
#define TOKEND_UV_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <tokend/client.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tokend_uv_s tokend_uv_t;

/* Every callback gets: status, 0 or a negative TOKEND_E* code; msg,
 * tokend's status message or a local sentence on failure, "" on success;
 * result, NULL unless status is 0. msg and result are valid only during
 * the callback (copy what you keep). data is the call's data. */
typedef void (*tokend_uv_verify_cb)(tokend_uv_t *client, int status,
                                    const char *msg,
                                    const tokend_verify_result_t *result,
                                    void *data);
/* result->token is the secret, shown this once: the library wipes it after
 * the callback returns. */
typedef void (*tokend_uv_issue_cb)(tokend_uv_t *client, int status,
                                   const char *msg,
                                   const tokend_issued_t *result, void *data);
/* revoked_at (Unix ms) and already_revoked as tokend_client_revoke() gives
 * them; 0 unless status is 0. */
typedef void (*tokend_uv_revoke_cb)(tokend_uv_t *client, int status,
                                    const char *msg, int64_t revoked_at,
                                    int already_revoked, void *data);
/* info as tokend_client_lookup() gives it; NULL unless status is 0. */
typedef void (*tokend_uv_lookup_cb)(tokend_uv_t *client, int status,
                                    const char *msg,
                                    const tokend_token_info_t *info,
                                    void *data);
typedef void (*tokend_uv_close_cb)(void *data);

/* Makes a client of loop for tokend at socket_path (NULL: the default, as
 * tokend_client_open() resolves it, once, now). It connects when the first
 * call is made; a connect failure is reported to the calls waiting for it.
 * On success *out is the caller's until tokend_uv_close(). Returns 0,
 * TOKEND_EINVAL (path too long, loop or out NULL) or TOKEND_ENOMEM; why
 * (why_len bytes; may be NULL if why_len is 0) says why. */
int tokend_uv_open(uv_loop_t *loop, const char *socket_path, tokend_uv_t **out,
                   char *why, size_t why_len) TOKEND_MUST_CHECK;

/* As tokend_client_set_reconnect(): how long calls may wait for tokend to
 * come back (default TOKEND_RECONNECT_WAIT_MS_DEFAULT); 0: a dead
 * connection stays dead and every later call fails with TOKEND_ECLOSED.
 * A call still waiting when the bound passes fails with the connect
 * error (TOKEND_ENOSOCKET, TOKEND_ECONNECT, ...) and its sentence. */
int tokend_uv_set_reconnect(tokend_uv_t *client,
                            int max_wait_ms) TOKEND_MUST_CHECK;

/* Verifies token (copied: the caller may reuse it at once). cb must not be
 * NULL. Returns 0 (cb will run), or TOKEND_EINVAL, TOKEND_EMSGSIZE,
 * TOKEND_ENOMEM, TOKEND_ECLOSED (closing, or reconnecting is off and the
 * connection died); then cb will not run. */
int tokend_uv_verify(tokend_uv_t *client, const char *token,
                     tokend_uv_verify_cb cb, void *data) TOKEND_MUST_CHECK;

/* Issues a token (params and its strings are copied). Returns as
 * tokend_uv_verify(). */
int tokend_uv_issue(tokend_uv_t *client, const tokend_issue_params_t *params,
                    tokend_uv_issue_cb cb, void *data) TOKEND_MUST_CHECK;

/* Revokes token_id of domain (copied). Returns as tokend_uv_verify(). */
int tokend_uv_revoke(tokend_uv_t *client, const char *domain,
                     const char *token_id, tokend_uv_revoke_cb cb,
                     void *data) TOKEND_MUST_CHECK;

/* As tokend_client_lookup(): token_id of domain's info without using it
 * (last_used_at and the counters do not move); domain and token_id are
 * copied. The caller must be the domain's admin or an operator: another
 * domain's token is TOKEND_ENOTFOUND, as none is. Returns as
 * tokend_uv_verify(). */
int tokend_uv_lookup(tokend_uv_t *client, const char *domain,
                     const char *token_id, tokend_uv_lookup_cb cb,
                     void *data) TOKEND_MUST_CHECK;

/* Gives every call made from now on a deadline: timeout_ms after it is
 * made (by the loop's clock, uv_now()), wherever it is then (waiting for a
 * connection, written, resent). Past it, the call's callback runs with
 * TOKEND_ETIMEDOUT: a call not yet written is never sent; one written is
 * forgotten (its late answer is read and dropped; the connection and the
 * other calls on it go on), so a write (Issue, Revoke) that timed out may
 * or may not have taken effect, as with TOKEND_EINDOUBT. 0 (the default):
 * no deadline. Returns 0 or TOKEND_EINVAL (client NULL, timeout_ms
 * negative). */
int tokend_uv_set_timeout(tokend_uv_t *client,
                          int timeout_ms) TOKEND_MUST_CHECK;

/* Calls made whose callbacks have not run yet. */
size_t tokend_uv_pending(const tokend_uv_t *client);

/* Closes the connection: every pending call's callback runs now with
 * TOKEND_ECLOSED, then cb (may be NULL) runs on a later turn of the loop,
 * once the client's handles are closed and it is freed. May be called from
 * a callback. NULL or a second close is a no-op. */
void tokend_uv_close(tokend_uv_t *client, tokend_uv_close_cb cb, void *data);

#ifdef __cplusplus
}
#endif

#endif
