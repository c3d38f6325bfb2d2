/* Limits shared by the server, the client library and the CLI. Output
 * buffers are sized with the *_BYTES constants (each includes the NUL).
 *
 * The sizes a client sees are public API, so they live in the installed
 * header client/include/tokend/limits.h, which this includes: one copy.
 * Here are only the limits the daemon and the tools keep to themselves. */
#ifndef TOKEND_LIMITS_H
#define TOKEND_LIMITS_H

#include "tokend/limits.h"

/* Default socket path, and the variable that overrides it. tokend, tokenctl
 * and the client library share both. Built with -DTOKEND_FHS=ON (the
 * packages) it is the FHS one; else relative to the working directory,
 * for development. */
#ifdef TOKEND_FHS
#define TOKEND_SOCKET_DEFAULT "/run/tokend/tokend.sock"
#else
#define TOKEND_SOCKET_DEFAULT "var/tokend.sock"
#endif
#define TOKEND_SOCKET_ENV "TOKEND_SOCKET"

/* Frames: 1 flag byte + 4-byte big-endian length. */
#define TOKEND_FRAME_HEADER_BYTES 5
#define TOKEND_MAX_FRAME_BYTES_DEFAULT (1024u * 1024u)
/* The largest --max-frame-bytes accepted: far below UINT32_MAX so that
 * header + body never wraps a size_t or uint32 computation. */
#define TOKEND_MAX_FRAME_BYTES_LIMIT (64u * 1024u * 1024u)

/* The prefix of new tokens unless --token-prefix says otherwise. */
#define TOKEND_PREFIX_DEFAULT "tkd"

/* A token's metadata: a JSON object of at most TOKEND_MAX_METADATA bytes
 * ('' for none), set at Issue or by Edit and returned by Verify. */
#define TOKEND_MAX_METADATA 1024
#define TOKEND_METADATA_BYTES (TOKEND_MAX_METADATA + 1)

/* Keyed BLAKE2b of the token, and the pepper that keys it. */
#define TOKEND_HASH_BYTES 32
#define TOKEND_PEPPER_BYTES 32

#endif
