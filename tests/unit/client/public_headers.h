/* What test_public_headers compares: the error table and the limits as the
 * installed headers (<tokend/...>) spell them, gathered by
 * public_headers_api.c, which is compiled with client/include/ alone on its
 * include path, as a program using the installed library would be. */
#ifndef TEST_PUBLIC_HEADERS_H
#define TEST_PUBLIC_HEADERS_H

#include <stddef.h>

/* Every constant <tokend/limits.h> defines. */
#define PUBLIC_LIMITS(X)                                                       \
  X(DOMAIN_MAX_CHARS)                                                          \
  X(DOMAIN_BYTES)                                                              \
  X(LABEL_MAX_CHARS)                                                           \
  X(LABEL_BYTES)                                                               \
  X(SCOPE_MAX_CHARS)                                                           \
  X(SCOPE_BYTES)                                                               \
  X(MAX_SCOPES)                                                                \
  X(PREFIX_MAX_CHARS)                                                          \
  X(TOKEN_BODY_CHARS)                                                          \
  X(TOKEN_CHECKSUM_CHARS)                                                      \
  X(TOKEN_MAX_CHARS)                                                           \
  X(TOKEN_BYTES)                                                               \
  X(HINT_BYTES)                                                                \
  X(TOKEN_ID_RANDOM_CHARS)                                                     \
  X(TOKEN_ID_CHARS)                                                            \
  X(TOKEN_ID_BYTES)                                                            \
  X(USER_MAX_CHARS)                                                            \
  X(USER_BYTES)                                                                \
  X(AUDIT_PAGE_DEFAULT)                                                        \
  X(AUDIT_METHOD_BYTES)                                                        \
  X(LIST_PAGE_DEFAULT)                                                         \
  X(LIST_PAGE_MAX)                                                             \
  X(PAGE_TOKEN_BYTES)                                                          \
  X(STATUS_MESSAGE_BYTES)

typedef struct {
  const char *name;
  long value;
  long grpc; /* error codes: the gRPC status; limits: 0 */
  const char *message;
} public_entry_t;

/* The public headers' error codes, gRPC statuses and limits, each array
 * ending with a NULL name. */
extern const public_entry_t public_errors[];
extern const public_entry_t public_grpc[];
extern const public_entry_t public_limits[];

/* Internal names the public headers must not define, each 1 if they do:
 * ends with a NULL name. */
extern const public_entry_t public_leaks[];

#endif
