/* pepper: the server secret that keys the token hash. A file of exactly
 * TOKEND_PEPPER_BYTES random bytes, mode 0600, created on first start. */
#ifndef TOKEND_PEPPER_H
#define TOKEND_PEPPER_H

#include <stddef.h>
#include <stdint.h>

#include "tokend_error.h"
#include "tokend_limits.h"

/* The pepper's fingerprint, which the database records to recognise the
 * pepper that made its hashes: BLAKE2b keyed with the pepper over a fixed
 * string. It reveals nothing about the pepper. */
#define PEPPER_FINGERPRINT_BYTES 32
#define PEPPER_FINGERPRINT_INPUT "tokend pepper fingerprint v1"
void pepper_fingerprint(const uint8_t pepper[TOKEND_PEPPER_BYTES],
                        uint8_t out[PEPPER_FINGERPRINT_BYTES]);

/* The audit log's chain key: a keyed hash (BLAKE2b) of a fixed string
 * under the pepper, so that the pepper itself is never used for two things
 * and nothing stored reveals it. tokend and tokend-admin both derive it
 * here, so a log copied between stores verifies with the same pepper. out
 * is the caller's to wipe. */
#define PEPPER_AUDIT_KEY_BYTES 32
#define PEPPER_AUDIT_KEY_INPUT "tokend audit-chain key v1"
void pepper_audit_key(const uint8_t pepper[TOKEND_PEPPER_BYTES],
                      uint8_t out[PEPPER_AUDIT_KEY_BYTES]);

/* The audit chain key outlives a pepper rotation: the log was chained
 * with the key of the pepper the database started with, and must verify
 * whole after that pepper is destroyed. So at a rotation the key is
 * stored sealed (XSalsa20-Poly1305, crypto_secretbox) under a key derived
 * from the new pepper, and read back with it from then on. */
#define PEPPER_AUDIT_KEY_SEALED_BYTES                                          \
  (24 + 16 + PEPPER_AUDIT_KEY_BYTES) /* nonce, MAC, key */
#define PEPPER_SEAL_KEY_INPUT "tokend audit-key seal v1"
/* Seals key under pepper into out (a fresh random nonce each time). */
void pepper_audit_key_seal(const uint8_t pepper[TOKEND_PEPPER_BYTES],
                           const uint8_t key[PEPPER_AUDIT_KEY_BYTES],
                           uint8_t out[PEPPER_AUDIT_KEY_SEALED_BYTES]);
/* Opens sealed with pepper into key: 0, or TOKEND_ECONFIG if it was not
 * sealed under this pepper (or was changed). key is the caller's to wipe. */
int pepper_audit_key_open(const uint8_t pepper[TOKEND_PEPPER_BYTES],
                          const uint8_t sealed[PEPPER_AUDIT_KEY_SEALED_BYTES],
                          uint8_t key[PEPPER_AUDIT_KEY_BYTES])
    TOKEND_MUST_CHECK;

/* Reads the pepper at path into out. TOKEND_ENOTFOUND if there is no file
 * (nothing is created); otherwise as pepper_load(). */
int pepper_read(const char *path, uint8_t out[TOKEND_PEPPER_BYTES], char *why,
                size_t why_len) TOKEND_MUST_CHECK;

/* Creates a new pepper at path (0600, from the CSPRNG, fsync-ed; refuses to
 * replace an existing file) and puts it in out. */
int pepper_create(const char *path, uint8_t out[TOKEND_PEPPER_BYTES], char *why,
                  size_t why_len) TOKEND_MUST_CHECK;

/* pepper_read(), or pepper_create() if there is no file: for tests and
 * tools. tokend itself creates a pepper only together with a new (or empty)
 * database (server.c).
 * Reads the pepper at path into out, or creates it (0600, from the CSPRNG,
 * fsync-ed) if path does not exist. Refuses a file that is not a regular
 * file, is readable or writable by group or others, or has the wrong size:
 * returns TOKEND_ECONFIG (or TOKEND_EIO) and writes the reason into why. */
int pepper_load(const char *path, uint8_t out[TOKEND_PEPPER_BYTES], char *why,
                size_t why_len) TOKEND_MUST_CHECK;

#endif
