/* <tokend/limits.h>: the sizes of what the client library hands back.
 * Output strings are fixed-size arrays sized by the *_BYTES constants (each
 * includes the NUL), so callers can size their own copies the same way.
 *
 * This is the one copy: tokend itself uses it too (common/tokend_limits.h
 * includes this header and adds the limits only the daemon knows about). */
#ifndef TOKEND_PUBLIC_LIMITS_H
#define TOKEND_PUBLIC_LIMITS_H

#define TOKEND_DOMAIN_MAX_CHARS 128
#define TOKEND_DOMAIN_BYTES (TOKEND_DOMAIN_MAX_CHARS + 1)
#define TOKEND_LABEL_MAX_CHARS 100
/* A UTF-8 character takes at most 4 bytes. */
#define TOKEND_LABEL_BYTES (TOKEND_LABEL_MAX_CHARS * 4 + 1)
#define TOKEND_SCOPE_MAX_CHARS 64
#define TOKEND_SCOPE_BYTES (TOKEND_SCOPE_MAX_CHARS + 1)
#define TOKEND_MAX_SCOPES 32

/* Token: <prefix>_<body><checksum>. */
#define TOKEND_PREFIX_MAX_CHARS 16
#define TOKEND_TOKEN_BODY_CHARS 32    /* base62: 32 * log2(62) = 190 bits */
#define TOKEND_TOKEN_CHECKSUM_CHARS 6 /* CRC32 in base62 (62^6 > 2^32) */
#define TOKEND_TOKEN_MAX_CHARS                                                 \
  (TOKEND_PREFIX_MAX_CHARS + 1 + TOKEND_TOKEN_BODY_CHARS +                     \
   TOKEND_TOKEN_CHECKSUM_CHARS)
#define TOKEND_TOKEN_BYTES (TOKEND_TOKEN_MAX_CHARS + 1)
/* Hint: "<prefix>_..." + last 4 characters. */
#define TOKEND_HINT_BYTES (TOKEND_PREFIX_MAX_CHARS + 4 + 4 + 1)
/* Token ids: "tok_" + 20 base62 characters (119 random bits, not secret). */
#define TOKEND_TOKEN_ID_RANDOM_CHARS 20
#define TOKEND_TOKEN_ID_CHARS (4 + TOKEND_TOKEN_ID_RANDOM_CHARS)
#define TOKEND_TOKEN_ID_BYTES (TOKEND_TOKEN_ID_CHARS + 1)

/* Users (domain admins, actors): "uid:<n>" or a platform identity of 1-128
 * chars of [A-Za-z0-9._@:+-]. */
#define TOKEND_USER_MAX_CHARS 128
#define TOKEND_USER_BYTES (TOKEND_USER_MAX_CHARS + 1)

/* Audit log paging, and the longest method name an event carries. */
#define TOKEND_AUDIT_PAGE_DEFAULT 100
#define TOKEND_AUDIT_METHOD_BYTES 32

/* List paging. */
#define TOKEND_LIST_PAGE_DEFAULT 50
#define TOKEND_LIST_PAGE_MAX 1000
#define TOKEND_PAGE_TOKEN_BYTES 64

/* tokend's status messages (tokend_client_errmsg()) are cut to this
 * length. */
#define TOKEND_STATUS_MESSAGE_BYTES 256

/* A token's metadata (issue 17): a JSON object of at most
 * TOKEND_MAX_METADATA bytes ("" for none), set at Issue or by Edit and
 * returned by Verify. */
#define TOKEND_MAX_METADATA 1024
#define TOKEND_METADATA_BYTES (TOKEND_MAX_METADATA + 1)
/* BulkRevoke by a list of ids, and RevokeLeaked: the most one call takes
 * (issue 17). */
#define TOKEND_BULK_IDS_MAX 1000
#define TOKEND_LEAKED_MAX 100

#endif
