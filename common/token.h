/* Token format: <prefix>_<body><checksum>, in the style of GitHub's ghp_
 * tokens. The prefix (1-16 chars of [a-z0-9]) lets secret scanners find
 * leaked tokens; the body is TOKEND_TOKEN_BODY_CHARS base62 characters drawn
 * from libsodium's CSPRNG; the checksum is the CRC32 of "<prefix>_<body>" as
 * TOKEND_TOKEN_CHECKSUM_CHARS base62 digits, so a mistyped or truncated token
 * is rejected without touching the index.
 *
 * Only token_hash() of a token is ever stored. Callers that hold a token in
 * a buffer wipe it with sodium_memzero() when done. */
#ifndef TOKEND_TOKEN_H
#define TOKEND_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "tokend_error.h"
#include "tokend_limits.h"

/* 0 if prefix is 1..TOKEND_PREFIX_MAX_CHARS chars of [a-z0-9], else
 * TOKEND_EINVAL. */
int token_prefix_check(const char *prefix) TOKEND_MUST_CHECK;

/* Generates a new token into out (TOKEND_TOKEN_BYTES, NUL-terminated).
 * Returns 0 or TOKEND_EINVAL for a bad prefix. */
int token_generate(const char *prefix,
                   char out[TOKEND_TOKEN_BYTES]) TOKEND_MUST_CHECK;

/* Checks the shape and checksum of tok[0..len). 0 if well formed, else
 * TOKEND_EINVAL. Does not need tok to be NUL-terminated. */
int token_check(const char *tok, size_t len) TOKEND_MUST_CHECK;

/* 1 if s[0..len) holds a well-formed token anywhere in it (shape and
 * checksum, as token_check), alone or inside a longer string such as
 * "<token>@example.com"; else 0. For refusing secrets pasted into fields
 * that get logged or stored. Reads every byte, NULs included. */
int token_find_embedded(const char *s, size_t len);

/* Bytes of stack token_stack_wipe() clears: more than the deepest chain of
 * calls below a caller that hashes a token (libsodium's BLAKE2b and SipHash
 * load message blocks into locals they do not wipe). */
#define TOKEND_STACK_WIPE_BYTES 8192

/* Zeroes TOKEND_STACK_WIPE_BYTES of the stack below the caller's frame, where
 * the frames of functions it called (hashing a token) left copies of it, and
 * on x86-64 the vector registers (memcpy's and strlen's), so that no core
 * dump or later stack read finds them. */
void token_stack_wipe(void);

/* Keyed BLAKE2b-256 of tok[0..len) with the pepper. */
void token_hash(const char *tok, size_t len,
                const uint8_t pepper[TOKEND_PEPPER_BYTES],
                uint8_t out[TOKEND_HASH_BYTES]);

/* The non-secret hint of a well-formed token: "<prefix>_..." + its last 4
 * characters. */
void token_hint(const char *tok, size_t len, char out[TOKEND_HINT_BYTES]);

/* A new public token id: "tok_" + base62 characters. */
void token_id_generate(char out[TOKEND_TOKEN_ID_BYTES]);

/* 0 if id has the shape token_id_generate() produces, else TOKEND_EINVAL. */
int token_id_check(const char *id, size_t len) TOKEND_MUST_CHECK;

/* CRC-32 (IEEE 802.3, as zlib's crc32) of buf[0..len). */
uint32_t token_crc32(const uint8_t *buf, size_t len);

#endif
