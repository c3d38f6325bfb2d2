/* pg_util.c: see pg_util.h. */
#include "store/postgresql/pg_util.h"

#include <string.h>

#include "tokend_error.h"

int64_t pg_get_i64(const PGresult *r, int row, int col) {
  const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
  uint64_t u = 0;
  int i, n = PQgetlength(r, row, col);

  for (i = 0; i < n && i < 8; i++)
    u = (u << 8) | v[i];
  /* Sign-extend an int4 (4 bytes) or a boolean (1 byte). */
  if (n > 0 && n < 8 && (v[0] & 0x80))
    u |= ~(uint64_t)0 << (8 * n);
  return (int64_t)u;
}

void pg_get_text(const PGresult *r, int row, int col, char *dst, size_t cap) {
  size_t n = (size_t)PQgetlength(r, row, col);

  if (n >= cap)
    n = cap - 1;
  memcpy(dst, PQgetvalue(r, row, col), n);
  dst[n] = '\0';
}

int pg_get_blob(const PGresult *r, int row, int col, uint8_t *dst, size_t len) {
  if (PQgetisnull(r, row, col) || (size_t)PQgetlength(r, row, col) != len)
    return -1;
  memcpy(dst, PQgetvalue(r, row, col), len);
  return 0;
}

int pg_token_read(const PGresult *r, int i, int col, store_token_t *row) {
  if (pg_get_blob(r, i, col + 6, row->hash, TOKEND_HASH_BYTES) != 0)
    return TOKEND_ESTORE;
  row->seq = pg_get_i64(r, i, col + 0);
  pg_get_text(r, i, col + 1, row->id, sizeof(row->id));
  pg_get_text(r, i, col + 2, row->domain, sizeof(row->domain));
  pg_get_text(r, i, col + 3, row->label, sizeof(row->label));
  pg_get_text(r, i, col + 4, row->hint, sizeof(row->hint));
  pg_get_text(r, i, col + 5, row->scopes, sizeof(row->scopes));
  row->created_at = pg_get_i64(r, i, col + 7);
  row->expires_at = pg_get_i64(r, i, col + 8);
  row->last_used_at = pg_get_i64(r, i, col + 9);
  row->revoked_at = pg_get_i64(r, i, col + 10);
  pg_get_text(r, i, col + 11, row->created_by, sizeof(row->created_by));
  pg_get_text(r, i, col + 12, row->revoked_by, sizeof(row->revoked_by));
  pg_get_text(r, i, col + 13, row->metadata, sizeof(row->metadata));
  pg_get_text(r, i, col + 14, row->rolled_from, sizeof(row->rolled_from));
  pg_get_text(r, i, col + 15, row->rolled_to, sizeof(row->rolled_to));
  row->pepper_gen = (int32_t)pg_get_i64(r, i, col + 16);
  return 0;
}

void pg_one_line(char *msg) {
  char *p;

  for (p = msg; *p != '\0'; p++)
    if (*p == '\n' || *p == '\r' || *p == '\t')
      *p = *(p + 1) == '\0' ? '\0' : ' ';
}
