/* Built with client/include/ alone on the include path (and as C99 with
 * -pedantic-errors): it proves the installed headers stand on their own,
 * and records what they define for test_public_headers.c to compare. */
#include <tokend/client.h>

#include "public_headers.h"

const public_entry_t public_errors[] = {
#define XX(name, value, grpc, msg)                                             \
  {#name, TOKEND_##name, TOKEND_GRPC_##grpc, msg},
    TOKEND_ERRNO_MAP(XX)
#undef XX
        {NULL, 0, 0, NULL}};

const public_entry_t public_grpc[] = {
#define XX(name, num) {#name, TOKEND_GRPC_##name, num, NULL},
    TOKEND_GRPC_STATUS_MAP(XX)
#undef XX
        {NULL, 0, 0, NULL}};

const public_entry_t public_limits[] = {
#define X(name) {#name, (long)(TOKEND_##name), 0, NULL},
    PUBLIC_LIMITS(X)
#undef X
        {NULL, 0, 0, NULL}};

/* The daemon's own limits and the relative default socket path are not
 * part of the API. */
#define LEAKED(name)                                                           \
  { #name, 1, 0, NULL }
#define KEPT(name)                                                             \
  { #name, 0, 0, NULL }
const public_entry_t public_leaks[] = {
#ifdef TOKEND_SOCKET_DEFAULT
    LEAKED(SOCKET_DEFAULT),
#else
    KEPT(SOCKET_DEFAULT),
#endif
#ifdef TOKEND_SOCKET_ENV
    LEAKED(SOCKET_ENV),
#else
    KEPT(SOCKET_ENV),
#endif
#ifdef TOKEND_MAX_FRAME_BYTES_DEFAULT
    LEAKED(MAX_FRAME_BYTES_DEFAULT),
#else
    KEPT(MAX_FRAME_BYTES_DEFAULT),
#endif
#ifdef TOKEND_FRAME_HEADER_BYTES
    LEAKED(FRAME_HEADER_BYTES),
#else
    KEPT(FRAME_HEADER_BYTES),
#endif
#ifdef TOKEND_PEPPER_BYTES
    LEAKED(PEPPER_BYTES),
#else
    KEPT(PEPPER_BYTES),
#endif
#ifdef TOKEND_HASH_BYTES
    LEAKED(HASH_BYTES),
#else
    KEPT(HASH_BYTES),
#endif
    {NULL, 0, 0, NULL}};
