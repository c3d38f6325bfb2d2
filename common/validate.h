/* Validation of the fields a peer sends. Each function returns 0 or
 * TOKEND_EINVAL and, on failure, writes a short reason meant for the peer into
 * why (why_len bytes, NUL-terminated; may be NULL). Reasons never quote the
 * input. */
#ifndef TOKEND_VALIDATE_H
#define TOKEND_VALIDATE_H

#include <stddef.h>

#include "tokend_error.h"

/* 1-128 chars of [A-Za-z0-9._:-], not ending in a dot ("example.com." is
 * refused rather than made a tenant apart from "example.com"). */
int validate_domain(const char *s, char *why, size_t why_len) TOKEND_MUST_CHECK;

/* Lower-cases the ASCII letters of domain in place: domains, like DNS names,
 * are case-insensitive, and every domain a peer sends is normalised so
 * before it is checked, stored, compared or logged. */
void validate_domain_normalize(char *domain);

/* 1-100 characters of valid UTF-8 (no overlong forms, no surrogates), with no
 * control characters (C0, DEL, C1). */
int validate_label(const char *s, char *why, size_t why_len) TOKEND_MUST_CHECK;

/* 1-64 chars of [A-Za-z0-9._:/-]. */
int validate_scope(const char *s, char *why, size_t why_len) TOKEND_MUST_CHECK;

/* A user: 1-128 chars of [A-Za-z0-9._@:+-] ("uid:1000", "alice@example.com").
 */
int validate_user(const char *s, char *why, size_t why_len) TOKEND_MUST_CHECK;

/* Copies src into dst (cap bytes, NUL-terminated), cutting a string that
 * does not fit at a UTF-8 character boundary, never inside a character. */
void validate_copy_utf8(char *dst, size_t cap, const char *src);

/* Writes into out (out_len bytes) at most max_in bytes of in, with every byte
 * outside printable ASCII, and backslash and double quote, escaped as \xNN,
 * and "..." appended if in was longer. For log lines about bad input. */
void validate_escape_excerpt(const char *in, size_t in_len, size_t max_in,
                             char *out, size_t out_len);

#endif
