/* fuzz_fixtures: tokens that fuzz_server stores before the first input and
 * that gen_corpus writes into the seeds, so that mutated seeds reach the
 * paths a random token never could: Verify of a valid, an expired and a
 * revoked token, and Revoke of an id that exists. Secrets are fixed here on
 * purpose; they exist only inside the fuzzer's in-memory store. */
#ifndef TOKEND_FUZZ_FIXTURES_H
#define TOKEND_FUZZ_FIXTURES_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "token.h"
#include "tokend_limits.h"

typedef struct {
  const char *body; /* TOKEND_TOKEN_BODY_CHARS base62 characters */
  const char *id;
  const char *domain;
  const char *label;
  const char *scopes; /* space separated, as the store keeps them */
  const char *created_by;
  int64_t expires_at;
  int64_t revoked_at;
} fuzz_fixture_t;

enum {
  FUZZ_TOKEN_VALID = 0,
  FUZZ_TOKEN_EXPIRED,
  FUZZ_TOKEN_REVOKED,
  FUZZ_TOKEN_REVOCABLE, /* the one the Revoke seed revokes */
  FUZZ_TOKEN_COUNT
};

/* A domain admin (not an operator) of FUZZ_ADMIN_DOMAIN, who issued the
 * fixtures of that domain; fuzz_server serves some inputs as this peer. */
#define FUZZ_ADMIN_UID 1000u
#define FUZZ_ADMIN_USER "uid:1000"
#define FUZZ_ADMIN_DOMAIN "example.com"
/* A peer with no role but the default verifier one. */
#define FUZZ_NOBODY_UID 2000u

static const fuzz_fixture_t fuzz_fixtures[FUZZ_TOKEN_COUNT] = {
    {"FuzzValid0000000000000000000000A", "tok_FuzzValid00000000000",
     FUZZ_ADMIN_DOMAIN, "fuzz: valid", "deploy read", FUZZ_ADMIN_USER, 0, 0},
    {"FuzzExpired00000000000000000000B", "tok_FuzzExpired000000000",
     FUZZ_ADMIN_DOMAIN, "fuzz: expired", "", FUZZ_ADMIN_USER, 1, 0},
    {"FuzzRevoked00000000000000000000C", "tok_FuzzRevoked000000000",
     "other.org", "fuzz: revoked", "read", "uid:0", 0, 1000},
    {"FuzzRevocable000000000000000000D", "tok_FuzzRevocable0000000",
     FUZZ_ADMIN_DOMAIN, "fuzz: revocable", "admin:tokens", "alice@example.com",
     0, 0},
};

/* A well-formed token that no store holds. */
#define FUZZ_UNKNOWN_BODY "FuzzUnknown00000000000000000000E"

/* Writes the token "tkd_<body><checksum>" into out, computing the checksum
 * as token_generate() does. */
static inline void fuzz_token_string(const char *body,
                                     char out[TOKEND_TOKEN_BYTES]) {
  static const char base62[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  size_t n = (size_t)snprintf(out, TOKEND_TOKEN_BYTES, "tkd_%s", body);
  uint32_t crc = token_crc32((const uint8_t *)out, n);
  int i;

  for (i = TOKEND_TOKEN_CHECKSUM_CHARS - 1; i >= 0; i--) {
    out[n + (size_t)i] = base62[crc % 62];
    crc /= 62;
  }
  out[n + TOKEND_TOKEN_CHECKSUM_CHARS] = '\0';
}

#endif
