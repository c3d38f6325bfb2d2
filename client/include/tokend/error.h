/* <tokend/error.h>: tokend's error codes, as the client library returns
 * them. Every function of <tokend/client.h> returns 0 or one of these
 * negative codes; each code has a name, a message and the gRPC status a
 * peer sees. The values are stable: programs may compare against them.
 *
 * This is the one table: tokend itself uses it too (common/tokend_error.h
 * includes this header), so the codes a client sees and the codes the
 * server returns cannot drift apart. */
#ifndef TOKEND_ERROR_H
#define TOKEND_ERROR_H

/* Marks the functions whose result must be checked (the compiler warns when
 * it is ignored). */
#if defined(__GNUC__)
#define TOKEND_MUST_CHECK __attribute__((warn_unused_result))
#else
#define TOKEND_MUST_CHECK
#endif

/* gRPC canonical status codes, with their wire numbers. */
#define TOKEND_GRPC_STATUS_MAP(XX)                                             \
  XX(OK, 0)                                                                    \
  XX(CANCELLED, 1)                                                             \
  XX(UNKNOWN, 2)                                                               \
  XX(INVALID_ARGUMENT, 3)                                                      \
  XX(DEADLINE_EXCEEDED, 4)                                                     \
  XX(NOT_FOUND, 5)                                                             \
  XX(ALREADY_EXISTS, 6)                                                        \
  XX(PERMISSION_DENIED, 7)                                                     \
  XX(RESOURCE_EXHAUSTED, 8)                                                    \
  XX(FAILED_PRECONDITION, 9)                                                   \
  XX(ABORTED, 10)                                                              \
  XX(OUT_OF_RANGE, 11)                                                         \
  XX(UNIMPLEMENTED, 12)                                                        \
  XX(INTERNAL, 13)                                                             \
  XX(UNAVAILABLE, 14)                                                          \
  XX(DATA_LOSS, 15)                                                            \
  XX(UNAUTHENTICATED, 16)

typedef enum {
#define XX(name, num) TOKEND_GRPC_##name = num,
  TOKEND_GRPC_STATUS_MAP(XX)
#undef XX
} tokend_grpc_code_t;

/* XX(name, value, grpc status, message). Values are stable: clients may
 * compare against them.
 *
 * TOKEND_EINDOUBT ("outcome unknown") is what the client library returns
 * for a write (Issue, Revoke, GrantDomainAdmin, RevokeDomainAdmin) whose
 * connection died after tokend read it and before it answered: it may or
 * may not have taken effect, and the library never sends it twice. Inside
 * tokend it says the same of a store commit. TOKEND_ENOSOCKET,
 * TOKEND_ESOCKPERM and TOKEND_ENOTTOKEND tell connect failures apart
 * (tokend_client_open). TOKEND_EQUOTA: a domain policy's limit (its
 * max_active_tokens) is reached. */
#define TOKEND_ERRNO_MAP(XX)                                                   \
  XX(EINVAL, -1, INVALID_ARGUMENT, "invalid argument")                         \
  XX(ENOTFOUND, -2, NOT_FOUND, "not found")                                    \
  XX(EMSGSIZE, -3, RESOURCE_EXHAUSTED, "message too large")                    \
  XX(ENOMEM, -4, RESOURCE_EXHAUSTED, "out of memory")                          \
  XX(EPROTO, -5, INVALID_ARGUMENT, "protocol violation")                       \
  XX(EUNIMPL, -6, UNIMPLEMENTED, "method not implemented")                     \
  XX(EINTERNAL, -7, INTERNAL, "internal error")                                \
  XX(EUNAVAIL, -8, UNAVAILABLE, "service unavailable")                         \
  XX(ETIMEDOUT, -9, DEADLINE_EXCEEDED, "timed out")                            \
  XX(EPERM, -10, PERMISSION_DENIED, "permission denied")                       \
  XX(ECLOSED, -11, UNAVAILABLE, "connection closed")                           \
  XX(EIO, -12, UNAVAILABLE, "i/o error")                                       \
  XX(EEXIST, -13, ALREADY_EXISTS, "already exists")                            \
  XX(ECONNECT, -14, UNAVAILABLE, "cannot connect to tokend")                   \
  XX(ECONFIG, -15, FAILED_PRECONDITION, "bad configuration")                   \
  XX(ESTORE, -16, INTERNAL, "storage error")                                   \
  XX(EUNAUTH, -17, UNAUTHENTICATED, "unauthenticated")                         \
  XX(ESTATUS, -18, UNKNOWN, "unexpected status from tokend")                   \
  XX(EINDOUBT, -19, UNAVAILABLE, "outcome unknown")                            \
  XX(EQUOTA, -20, RESOURCE_EXHAUSTED, "limit reached")                         \
  XX(ENOSOCKET, -30, UNAVAILABLE, "no tokend socket at that path")             \
  XX(ESOCKPERM, -31, PERMISSION_DENIED, "permission denied on the socket")     \
  XX(ENOTTOKEND, -32, UNAVAILABLE, "not a tokend")

typedef enum {
  TOKEND_OK = 0,
#define XX(name, value, grpc, msg) TOKEND_##name = value,
  TOKEND_ERRNO_MAP(XX)
#undef XX
} tokend_error_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Static strings; never NULL. Unknown codes give "unknown error". */
const char *tokend_strerror(int err);
const char *tokend_err_name(int err);
/* The gRPC status a peer sees for err (TOKEND_GRPC_OK for 0). */
int tokend_err_grpc(int err);
/* The tokend error for a gRPC status received from a peer (0 for OK). */
int tokend_err_from_grpc(int grpc_code);
/* Static name of a gRPC status code ("NOT_FOUND"); "UNKNOWN" if out of range.
 */
const char *tokend_grpc_name(int grpc_code);

#ifdef __cplusplus
}
#endif

#endif
