/* pg_util: reading libpq's binary results, shared by the PostgreSQL store
 * (store_postgresql.c) and its change feed follower (feed_postgresql.c).
 * Internal to store/postgresql/. */
#ifndef TOKEND_STORE_PG_UTIL_H
#define TOKEND_STORE_PG_UTIL_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "core/records.h"

/* The columns pg_token_read reads, in its order. */
#define TOKEN_COLUMNS                                                          \
  "seq, id, domain, label, hint, scopes, hash, created_at, expires_at,"        \
  " last_used_at, revoked_at, created_by, revoked_by, metadata, rolled_from,"  \
  " rolled_to, pepper_gen"
#define TOKEN_N_COLUMNS 17

/* Binary results: int8, int4 and boolean are big-endian integers; NULL
 * reads as 0. */
int64_t pg_get_i64(const PGresult *r, int row, int col);

/* A text column into dst (cap bytes, NUL-terminated, cut if longer). */
void pg_get_text(const PGresult *r, int row, int col, char *dst, size_t cap);

/* 0 and the bytes if the column holds exactly len bytes, else -1. */
int pg_get_blob(const PGresult *r, int row, int col, uint8_t *dst, size_t len);

/* Fills row from row i of r, whose columns col .. col + 16 are
 * TOKEN_COLUMNS. TOKEND_ESTORE if its hash is not 32 bytes. */
int pg_token_read(const PGresult *r, int i, int col, store_token_t *row);

/* Replaces the newlines and tabs of a libpq message by spaces, and drops a
 * trailing one, in place: one log line. */
void pg_one_line(char *msg);

struct store_feed_open_args;
typedef struct store_feed_s store_feed_t;

/* feed_postgresql.c: the backend's feed_open (store/feed.h). location is
 * the URL after "scheme:". */
int store_pg_feed_open(const char *location,
                       const struct store_feed_open_args *args,
                       store_feed_t **out);

#endif
