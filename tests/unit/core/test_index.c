/* Unit tests for server/index: the in-memory hash table Verify reads. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/index.h"

/* Derives a uniform 32-byte hash from n, like the server's keyed BLAKE2b. */
static void hash_of(uint64_t n, uint8_t hash[TOKEND_HASH_BYTES]) {
  crypto_generichash(hash, TOKEND_HASH_BYTES, (const unsigned char *)&n,
                     sizeof(n), NULL, 0);
}

static void make_row(store_token_t *row, uint64_t n, const char *domain,
                     const char *label, const char *scopes) {
  memset(row, 0, sizeof(*row));
  hash_of(n, row->hash);
  snprintf(row->id, sizeof(row->id), "tok_%020llu", (unsigned long long)n);
  snprintf(row->domain, sizeof(row->domain), "%s", domain);
  snprintf(row->label, sizeof(row->label), "%s", label);
  snprintf(row->scopes, sizeof(row->scopes), "%s", scopes);
  row->created_at = 1000;
}

/* The registry that interns the entries' domains. */
static domains_t doms;

static int setup(void **state) {
  index_t *ix = NULL;

  if (sodium_init() < 0 || domains_init(&doms) != 0 || index_new(&ix) != 0)
    return -1;
  *state = ix;
  return 0;
}

static int teardown(void **state) {
  index_free(*state);
  domains_free(&doms);
  return 0;
}

static int insert(index_t *ix, const store_token_t *row) {
  domain_t *d = domains_get(&doms, row->domain);

  assert_non_null(d);
  return index_insert(ix, row, d);
}

/* Inserts row n with default strings and returns its entry. */
static index_entry_t *insert_n(index_t *ix, uint64_t n) {
  store_token_t row;

  make_row(&row, n, "example.com", "ci", "read");
  assert_int_equal(insert(ix, &row), 0);
  return index_find(ix, row.hash);
}

static void test_index_insert_then_find(void **state) {
  index_t *ix = *state;
  store_token_t row;
  index_entry_t *e;

  make_row(&row, 7, "example.com", "deploy key", "read write");
  row.expires_at = 5000;
  row.revoked_at = 4000;
  row.last_used_at = 3000;
  assert_int_equal(insert(ix, &row), 0);
  assert_int_equal(index_count(ix), 1);

  e = index_find(ix, row.hash);
  assert_non_null(e);
  assert_memory_equal(e->hash, row.hash, TOKEND_HASH_BYTES);
  assert_string_equal(e->id, row.id);
  assert_int_equal(e->expires_at, 5000);
  assert_int_equal(e->revoked_at, 4000);
  assert_int_equal(e->last_used_at, 3000);
  assert_int_equal(e->dirty, 0);
  assert_int_equal(index_dirty_count(ix), 0);
}

static void test_index_find_absent_hash_null(void **state) {
  index_t *ix = *state;
  uint8_t absent[TOKEND_HASH_BYTES];

  hash_of(999, absent);
  assert_null(index_find(ix, absent));
  insert_n(ix, 1);
  insert_n(ix, 2);
  assert_null(index_find(ix, absent));
}

static void test_index_duplicate_hash_eexist(void **state) {
  index_t *ix = *state;
  store_token_t row;

  make_row(&row, 42, "a.example", "first", "read");
  assert_int_equal(insert(ix, &row), 0);
  /* Same hash, everything else different: still a duplicate. */
  snprintf(row.id, sizeof(row.id), "tok_other");
  snprintf(row.label, sizeof(row.label), "second");
  assert_int_equal(insert(ix, &row), TOKEND_EEXIST);
  assert_int_equal(index_count(ix), 1);
  assert_string_equal(index_entry_label(index_find(ix, row.hash)), "first");
}

/* Hashes sharing their first 8 bytes land in the same bucket; probing must
 * still tell them apart by the full 32 bytes. */
static void test_index_same_bucket_hashes_both_found(void **state) {
  index_t *ix = *state;
  store_token_t a, b;
  index_entry_t *ea, *eb;

  make_row(&a, 1, "d", "a", "");
  make_row(&b, 2, "d", "b", "");
  memcpy(b.hash, a.hash, 8);
  b.hash[TOKEND_HASH_BYTES - 1] ^= 0x01;
  assert_int_equal(insert(ix, &a), 0);
  assert_int_equal(insert(ix, &b), 0);
  ea = index_find(ix, a.hash);
  eb = index_find(ix, b.hash);
  assert_non_null(ea);
  assert_non_null(eb);
  assert_ptr_not_equal(ea, eb);
  assert_string_equal(index_entry_label(ea), "a");
  assert_string_equal(index_entry_label(eb), "b");
}

/* 100k inserts force many doublings; every entry stays findable and an
 * entry pointer taken before growth stays the same entry. */
static void test_index_growth_keeps_all_entries(void **state) {
  index_t *ix = *state;
  const uint64_t n = 100000;
  uint8_t hash[TOKEND_HASH_BYTES];
  index_entry_t *first;
  uint64_t i;

  first = insert_n(ix, 0);
  assert_non_null(first);
  for (i = 1; i < n; i++) {
    store_token_t row;
    make_row(&row, i, "example.com", "ci", "read");
    assert_int_equal(insert(ix, &row), 0);
  }
  assert_int_equal(index_count(ix), n);
  for (i = 0; i < n; i++) {
    index_entry_t *e;
    char id[TOKEND_TOKEN_ID_BYTES];
    hash_of(i, hash);
    e = index_find(ix, hash);
    assert_non_null(e);
    snprintf(id, sizeof(id), "tok_%020llu", (unsigned long long)i);
    assert_string_equal(e->id, id);
  }
  hash_of(0, hash);
  assert_ptr_equal(index_find(ix, hash), first);
  hash_of(n, hash);
  assert_null(index_find(ix, hash));
}

static void test_index_entry_accessors_split_scopes(void **state) {
  index_t *ix = *state;
  const char *scopes[TOKEND_MAX_SCOPES];
  store_token_t row;
  index_entry_t *e;

  /* Only scopes are split at spaces; a label keeps its spaces. */
  make_row(&row, 3, "api.example.com", "my deploy key", "a b c");
  assert_int_equal(insert(ix, &row), 0);
  e = index_find(ix, row.hash);
  assert_non_null(e);
  assert_string_equal(index_entry_domain(e), "api.example.com");
  assert_string_equal(index_entry_label(e), "my deploy key");
  assert_int_equal(index_entry_scopes(e, scopes), 3);
  assert_string_equal(scopes[0], "a");
  assert_string_equal(scopes[1], "b");
  assert_string_equal(scopes[2], "c");
}

static void test_index_entry_zero_scopes(void **state) {
  index_t *ix = *state;
  const char *scopes[TOKEND_MAX_SCOPES] = {NULL};
  store_token_t row;
  index_entry_t *e;

  make_row(&row, 4, "d.example", "", "");
  assert_int_equal(insert(ix, &row), 0);
  e = index_find(ix, row.hash);
  assert_non_null(e);
  assert_string_equal(index_entry_domain(e), "d.example");
  assert_string_equal(index_entry_label(e), "");
  assert_int_equal(index_entry_scopes(e, scopes), 0);
  assert_null(scopes[0]);
}

static void test_index_entry_max_scopes(void **state) {
  index_t *ix = *state;
  const char *scopes[TOKEND_MAX_SCOPES];
  char list[STORE_SCOPES_BYTES] = "", name[32];
  store_token_t row;
  index_entry_t *e;
  size_t i;

  for (i = 0; i < TOKEND_MAX_SCOPES; i++) {
    snprintf(name, sizeof(name), "%ss%zu", i ? " " : "", i);
    strcat(list, name);
  }
  make_row(&row, 5, "d", "l", list);
  assert_int_equal(insert(ix, &row), 0);
  e = index_find(ix, row.hash);
  assert_int_equal(index_entry_scopes(e, scopes), TOKEND_MAX_SCOPES);
  for (i = 0; i < TOKEND_MAX_SCOPES; i++) {
    snprintf(name, sizeof(name), "s%zu", i);
    assert_string_equal(scopes[i], name);
  }
}

static void test_index_touch_raises_and_marks_dirty_once(void **state) {
  index_t *ix = *state;
  index_entry_t *e = insert_n(ix, 10);
  store_touch_t out[4];

  assert_int_equal(e->last_used_at, 0);
  index_touch(ix, e, 2000, 0);
  assert_int_equal(e->last_used_at, 2000);
  assert_int_equal(e->dirty, 1);
  assert_int_equal(index_dirty_count(ix), 1);

  /* A second touch (even an older one) does not queue it twice, and an
   * older time never lowers last_used_at. */
  index_touch(ix, e, 1500, 0);
  assert_int_equal(e->last_used_at, 2000);
  index_touch(ix, e, 2500, 0);
  assert_int_equal(e->last_used_at, 2500);
  assert_int_equal(index_dirty_count(ix), 1);
  assert_int_equal(index_take_dirty(ix, out, 4), 1);
  assert_int_equal(out[0].last_used_at, 2500);
}

/* With a granularity, a token in constant use is written back once per
 * granularity; index_mark_unsaved then catches what was held back. */
static void test_index_touch_granularity_and_mark_unsaved(void **state) {
  index_t *ix = *state;
  index_entry_t *e = insert_n(ix, 11), *idle = insert_n(ix, 12);
  store_touch_t out[4];

  index_touch(ix, e, 100000, 60000); /* never saved: written back */
  assert_int_equal(index_take_dirty(ix, out, 4), 1);
  assert_int_equal(out[0].last_used_at, 100000);
  index_touch(ix, e, 159999, 60000); /* saved 59.999 s ago: held back */
  assert_int_equal(e->last_used_at, 159999);
  assert_int_equal(index_dirty_count(ix), 0);
  index_touch(ix, e, 160000, 60000); /* 60 s: due */
  assert_int_equal(index_take_dirty(ix, out, 4), 1);
  assert_int_equal(out[0].last_used_at, 160000);
  index_touch(ix, e, 170000, 60000);
  assert_int_equal(index_dirty_count(ix), 0);

  /* Shutdown: only the entry whose last use is unsaved is queued. */
  assert_int_equal(idle->last_used_at, 0);
  assert_int_equal(index_mark_unsaved(ix), 1);
  assert_int_equal(index_mark_unsaved(ix), 0); /* already queued */
  assert_int_equal(index_take_dirty(ix, out, 4), 1);
  assert_int_equal(out[0].last_used_at, 170000);
  assert_int_equal(index_mark_unsaved(ix), 0);
}

static void test_index_take_dirty_returns_items_and_clears(void **state) {
  index_t *ix = *state;
  index_entry_t *e[3];
  store_touch_t out[8];
  size_t i, j, n;

  for (i = 0; i < 3; i++) {
    e[i] = insert_n(ix, 100 + i);
    index_touch(ix, e[i], (int64_t)(1000 + i), 0);
  }
  insert_n(ix, 200); /* never touched: never taken */
  assert_int_equal(index_dirty_count(ix), 3);

  n = index_take_dirty(ix, out, 8);
  assert_int_equal(n, 3);
  assert_int_equal(index_dirty_count(ix), 0);
  for (i = 0; i < 3; i++) {
    int seen = 0;
    assert_int_equal(e[i]->dirty, 0);
    for (j = 0; j < n; j++) {
      if (memcmp(out[j].hash, e[i]->hash, TOKEND_HASH_BYTES) == 0) {
        seen++;
        assert_int_equal(out[j].last_used_at, 1000 + (int64_t)i);
      }
    }
    assert_int_equal(seen, 1);
  }
  assert_int_equal(index_take_dirty(ix, out, 8), 0);

  /* Touched again after the take: dirty again. */
  index_touch(ix, e[1], 3000, 0);
  assert_int_equal(index_dirty_count(ix), 1);
  assert_int_equal(index_take_dirty(ix, out, 8), 1);
  assert_memory_equal(out[0].hash, e[1]->hash, TOKEND_HASH_BYTES);
  assert_int_equal(out[0].last_used_at, 3000);
}

static void test_index_take_dirty_partial(void **state) {
  index_t *ix = *state;
  index_entry_t *e[5];
  store_touch_t out[5];
  int seen[5] = {0};
  size_t i, j, n1, n2;

  for (i = 0; i < 5; i++) {
    e[i] = insert_n(ix, 300 + i);
    index_touch(ix, e[i], 100, 0);
  }
  n1 = index_take_dirty(ix, out, 2);
  assert_int_equal(n1, 2);
  assert_int_equal(index_dirty_count(ix), 3);
  n2 = index_take_dirty(ix, out + n1, 5);
  assert_int_equal(n2, 3);
  assert_int_equal(index_dirty_count(ix), 0);
  /* The two takes together hold every entry exactly once. */
  for (j = 0; j < 5; j++)
    for (i = 0; i < 5; i++)
      if (memcmp(out[j].hash, e[i]->hash, TOKEND_HASH_BYTES) == 0)
        seen[i]++;
  for (i = 0; i < 5; i++) {
    assert_int_equal(seen[i], 1);
    assert_int_equal(e[i]->dirty, 0);
  }
}

static void test_index_mark_dirty_requeues_failed_writeback(void **state) {
  index_t *ix = *state;
  index_entry_t *a = insert_n(ix, 400), *b = insert_n(ix, 401);
  store_touch_t out[4], again[4];

  index_touch(ix, a, 10, 0);
  index_touch(ix, b, 20, 0);
  assert_int_equal(index_take_dirty(ix, out, 4), 2);
  assert_int_equal(index_dirty_count(ix), 0);

  /* The write-back failed: both are dirty again. An unknown hash is
   * ignored, and an entry already dirty is not queued twice. */
  memcpy(&out[2], &out[0], sizeof(out[0]));
  hash_of(12345, out[3].hash);
  out[3].last_used_at = 1;
  index_mark_dirty(ix, out, 4);
  assert_int_equal(index_dirty_count(ix), 2);
  assert_int_equal(a->dirty, 1);
  assert_int_equal(b->dirty, 1);
  assert_int_equal(index_take_dirty(ix, again, 4), 2);
  assert_int_equal(index_dirty_count(ix), 0);
}

/* Tokens by status (/metrics): a revocation counted once, whatever
 * path marks it; expiry judged at the time asked; a revoked token that
 * also expired counts as revoked; an expiry set later counts too. */
static void test_index_status_counts(void **state) {
  index_t *ix = *state;
  index_entry_t *plain, *revoked, *expiring, *later;
  store_token_t row;
  size_t active, nrev, expired;

  plain = insert_n(ix, 1);
  revoked = insert_n(ix, 2);
  make_row(&row, 3, "example.com", "ci", "read");
  row.expires_at = 5000;
  assert_int_equal(insert(ix, &row), 0);
  expiring = index_find(ix, row.hash);
  make_row(&row, 4, "example.com", "ci", "read");
  row.revoked_at = 900;
  assert_int_equal(insert(ix, &row), 0);
  later = insert_n(ix, 5);
  assert_non_null(plain);
  assert_non_null(expiring);

  index_revoke(ix, revoked, 2000);
  index_revoke(ix, revoked, 3000); /* not moved, not counted again */
  assert_int_equal(revoked->revoked_at, 2000);
  index_status_counts(ix, 4000, &active, &nrev, &expired);
  assert_int_equal(active, 3);
  assert_int_equal(nrev, 2);
  assert_int_equal(expired, 0);
  index_status_counts(ix, 6000, &active, &nrev, &expired);
  assert_int_equal(active, 2);
  assert_int_equal(expired, 1);
  assert_int_equal(index_set_expiry(ix, later, 5500), 0);
  index_status_counts(ix, 6000, &active, &nrev, &expired);
  assert_int_equal(active, 1);
  assert_int_equal(expired, 2);
  index_revoke(ix, expiring, 7000);
  index_status_counts(ix, 8000, &active, &nrev, &expired);
  assert_int_equal(nrev, 3);
  assert_int_equal(expired, 1);
  assert_int_equal(active, 1);
}

/* The index's digest is kept as entries change: two indexes holding the
 * same tokens, revocations and expiries agree whatever order they were
 * made in, and differ when one revocation or expiry differs. */
static void test_index_digest_follows_changes(void **state) {
  index_t *a = *state, *b = NULL;
  uint64_t da[4] = {0}, db[4] = {0};
  index_entry_t *ea, *eb;
  store_token_t row;
  uint64_t n;

  assert_int_equal(index_new(&b), 0);
  for (n = 1; n <= 3; n++)
    insert_n(a, n);
  for (n = 3; n >= 1; n--)
    insert_n(b, n);
  index_digest(a, da);
  index_digest(b, db);
  assert_memory_equal(da, db, sizeof(da));

  make_row(&row, 2, "example.com", "ci", "read");
  ea = index_find(a, row.hash);
  eb = index_find(b, row.hash);
  index_revoke(a, ea, 500);
  memset(da, 0, sizeof(da));
  index_digest(a, da);
  assert_memory_not_equal(da, db, sizeof(da));
  index_revoke(b, eb, 500);
  memset(db, 0, sizeof(db));
  index_digest(b, db);
  assert_memory_equal(da, db, sizeof(da));

  assert_int_equal(index_set_expiry(a, ea, 9000), 0);
  memset(da, 0, sizeof(da));
  index_digest(a, da);
  assert_memory_not_equal(da, db, sizeof(da));
  assert_int_equal(index_set_expiry(b, eb, 9000), 0);
  memset(db, 0, sizeof(db));
  index_digest(b, db);
  assert_memory_equal(da, db, sizeof(da));
  index_free(b);
}

/* issue 17: an edit gives an entry new strings; nothing else moves, and
 * the same strings again change nothing. */
static void
test_index_set_strings_replaces_label_scopes_metadata(void **state) {
  index_t *ix = *state;
  store_token_t row;
  index_entry_t *e;
  const char *scopes[TOKEND_MAX_SCOPES];
  const char *before;

  make_row(&row, 5, "example.com", "old", "read write admin");
  snprintf(row.metadata, sizeof(row.metadata), "{\"a\":1}");
  assert_int_equal(insert(ix, &row), 0);
  e = index_find(ix, row.hash);
  assert_string_equal(index_entry_metadata(e), "{\"a\":1}");
  assert_int_equal(index_entry_scopes(e, scopes), 3);

  before = e->strings;
  assert_int_equal(
      index_set_strings(ix, e, "old", "read write admin", "{\"a\":1}"), 0);
  assert_ptr_equal(e->strings, before);

  assert_int_equal(index_set_strings(ix, e, "new label", "read", ""), 0);
  assert_ptr_not_equal(e->strings, before);
  assert_ptr_equal(index_find(ix, row.hash), e);
  assert_string_equal(index_entry_label(e), "new label");
  assert_string_equal(index_entry_metadata(e), "");
  assert_int_equal(index_entry_scopes(e, scopes), 1);
  assert_string_equal(scopes[0], "read");
  /* A second edit frees the first's block (ASan would see a leak). */
  assert_int_equal(index_set_strings(ix, e, "again", "", "{\"b\":2}"), 0);
  assert_int_equal(index_entry_scopes(e, scopes), 0);
  assert_string_equal(index_entry_metadata(e), "{\"b\":2}");
  assert_string_equal(index_entry_label(e), "again");
}

/* issue 17: /metrics' tokens expiring soon, per domain, from the list of
 * entries with an expiry. */
static void test_index_expiring_tally_counts_active_within(void **state) {
  index_t *ix = *state;
  store_token_t row;
  domain_t *a, *b;
  index_entry_t *e;

  make_row(&row, 1, "a.example", "soon", "");
  row.expires_at = 10000 + 500;
  assert_int_equal(insert(ix, &row), 0);
  make_row(&row, 2, "a.example", "later", "");
  row.expires_at = 10000 + 5000;
  assert_int_equal(insert(ix, &row), 0);
  make_row(&row, 3, "a.example", "expired", "");
  row.expires_at = 9000;
  assert_int_equal(insert(ix, &row), 0);
  make_row(&row, 4, "b.example", "revoked", "");
  row.expires_at = 10000 + 100;
  row.revoked_at = 1;
  assert_int_equal(insert(ix, &row), 0);
  make_row(&row, 5, "b.example", "never, then soon", "");
  assert_int_equal(insert(ix, &row), 0);
  e = index_find(ix, row.hash);
  assert_int_equal(index_set_expiry(ix, e, 10000 + 1000), 0);

  a = domains_get(&doms, "a.example");
  b = domains_get(&doms, "b.example");
  a->expiring_soon = b->expiring_soon = 0;
  index_expiring_tally(ix, 10000, 1000);
  assert_int_equal(a->expiring_soon, 1);
  assert_int_equal(b->expiring_soon, 1);
}

/* ---- a pepper rotation: entries re-keyed in place ---- */

/* Re-keying entries in the middle of a probe cluster (hashes sharing their
 * first 8 bytes, and so their home slot) leaves every other entry
 * findable: the removal shifts the cluster back instead of cutting it. */
static void test_index_rekey_in_cluster_keeps_others(void **state) {
  index_t *ix = *state;
  store_token_t rows[8];
  uint8_t fresh[TOKEND_HASH_BYTES];
  index_entry_t *e;
  int i, j;

  for (i = 0; i < 8; i++) {
    make_row(&rows[i], (uint64_t)i + 1, "d", "x", "");
    if (i > 0)
      memcpy(rows[i].hash, rows[0].hash, 8);
    rows[i].hash[TOKEND_HASH_BYTES - 1] = (uint8_t)i;
    assert_int_equal(insert(ix, &rows[i]), 0);
  }
  for (i = 1; i < 8; i += 2) {
    e = index_find(ix, rows[i].hash);
    assert_non_null(e);
    hash_of(1000 + (uint64_t)i, fresh);
    assert_int_equal(index_rekey(ix, e, fresh), 0);
    assert_ptr_equal(index_find(ix, fresh), e);
    assert_null(index_find(ix, rows[i].hash));
    memcpy(rows[i].hash, fresh, TOKEND_HASH_BYTES);
    for (j = 0; j < 8; j++)
      assert_non_null(index_find(ix, rows[j].hash));
  }
  assert_int_equal(index_count(ix), 8);
}

/* Many random entries, half re-keyed: each found by its new hash, never
 * by its old one, and the digest is that of an index built with the new
 * hashes from the start. */
static void test_index_rekey_many_and_digest(void **state) {
  index_t *ix = *state, *other = NULL;
  store_token_t row;
  uint8_t fresh[TOKEND_HASH_BYTES];
  uint64_t da[4] = {0}, db[4] = {0};
  index_entry_t *e;
  uint64_t n;

  assert_int_equal(index_new(&other), 0);
  for (n = 0; n < 5000; n++) {
    make_row(&row, n, "example.com", "l", "read");
    assert_int_equal(insert(ix, &row), 0);
    if (n % 2 == 1)
      hash_of(n + 1000000, row.hash);
    assert_int_equal(index_insert(other, &row, domains_get(&doms, row.domain)),
                     0);
  }
  for (n = 1; n < 5000; n += 2) {
    hash_of(n, row.hash);
    assert_non_null(e = index_find(ix, row.hash));
    hash_of(n + 1000000, fresh);
    assert_int_equal(index_rekey(ix, e, fresh), 0);
  }
  for (n = 0; n < 5000; n++) {
    hash_of(n, row.hash);
    hash_of(n + 1000000, fresh);
    if (n % 2 == 1) {
      assert_null(index_find(ix, row.hash));
      assert_non_null(e = index_find(ix, fresh));
    } else {
      assert_non_null(e = index_find(ix, row.hash));
      assert_null(index_find(ix, fresh));
    }
    snprintf(row.id, sizeof(row.id), "tok_%020llu", (unsigned long long)n);
    assert_string_equal(e->id, row.id);
  }
  index_digest(ix, da);
  index_digest(other, db);
  assert_memory_equal(da, db, sizeof(da));
  index_free(other);
}

/* Entries on the previous pepper are counted and found by id until they
 * are re-keyed; a re-key onto another entry's hash is refused. */
static void test_index_pepper_old_find_count_rekey(void **state) {
  index_t *ix = *state;
  index_entry_t *a = insert_n(ix, 1), *b = insert_n(ix, 2),
                *c = insert_n(ix, 3);
  uint8_t fresh[TOKEND_HASH_BYTES];

  assert_int_equal(index_pepper_old_count(ix), 0);
  assert_null(index_pepper_old_find(ix, a->id));
  assert_int_equal(index_pepper_old_add(ix, a), 0);
  assert_int_equal(index_pepper_old_add(ix, b), 0);
  assert_int_equal(index_pepper_old_add(ix, b), 0); /* once */
  assert_int_equal(index_pepper_old_count(ix), 2);
  assert_ptr_equal(index_pepper_old_find(ix, a->id), a);
  assert_ptr_equal(index_pepper_old_find(ix, b->id), b);
  assert_null(index_pepper_old_find(ix, c->id));
  assert_null(index_pepper_old_find(ix, "tok_nope"));

  assert_int_equal(index_rekey(ix, a, c->hash), TOKEND_EEXIST);
  assert_int_equal(a->pepper_old, 1);
  a->last_used_at = 77;
  hash_of(500, fresh);
  assert_int_equal(index_rekey(ix, a, fresh), 0);
  assert_int_equal(a->pepper_old, 0);
  assert_int_equal(index_pepper_old_count(ix), 1);
  assert_null(index_pepper_old_find(ix, a->id));
  assert_ptr_equal(index_pepper_old_find(ix, b->id), b);
  /* Its last use is written back again, under the new hash. */
  assert_int_equal(a->dirty, 1);
  hash_of(501, fresh);
  assert_int_equal(index_rekey(ix, b, fresh), 0);
  assert_int_equal(index_pepper_old_count(ix), 0);
  assert_null(index_pepper_old_find(ix, b->id));
  /* Marked again after the table was freed: found again. */
  assert_int_equal(index_pepper_old_add(ix, c), 0);
  assert_ptr_equal(index_pepper_old_find(ix, c->id), c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_index_insert_then_find, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_index_set_strings_replaces_label_scopes_metadata, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_index_expiring_tally_counts_active_within, setup, teardown),
      cmocka_unit_test_setup_teardown(test_index_find_absent_hash_null, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_index_duplicate_hash_eexist, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_index_same_bucket_hashes_both_found,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_index_growth_keeps_all_entries,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_index_entry_accessors_split_scopes,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_index_entry_zero_scopes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_index_entry_max_scopes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_index_touch_raises_and_marks_dirty_once, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_index_touch_granularity_and_mark_unsaved, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_index_take_dirty_returns_items_and_clears, setup, teardown),
      cmocka_unit_test_setup_teardown(test_index_take_dirty_partial, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_index_mark_dirty_requeues_failed_writeback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_index_status_counts, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_index_digest_follows_changes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_index_rekey_in_cluster_keeps_others,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_index_rekey_many_and_digest, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_index_pepper_old_find_count_rekey,
                                      setup, teardown),
  };

  return cmocka_run_group_tests_name("index", tests, NULL, NULL);
}
