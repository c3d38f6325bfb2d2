/* Unit tests for server/store: the SQLite token store, on a real database
 * file in a fresh temporary directory per test. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/sqlite/store_sqlite.h"
#include "store/store.h"

/* The SQLite backend by URL, as tokend opens it: sqlite:PATH. */
static int sqlite_open_flags(const char *path, int flags, store_t **out,
                             char *why, size_t why_len) {
  char url[4200];

  snprintf(url, sizeof(url), "sqlite:%s", path);
  return store_open_url(url, flags, out, why, why_len);
}

static int sqlite_open(const char *path, store_t **out, char *why,
                       size_t why_len) {
  return sqlite_open_flags(path, STORE_OPEN_CREATE, out, why, why_len);
}

/* Any 32 bytes: the chain key of the audit log under test. */
static const uint8_t test_audit_key[STORE_AUDIT_KEY_BYTES] = {7, 1, 2, 3};

typedef struct {
  char dir[64];
  char path[128];
  store_t *store;
} fixture_t;

/* Removes every file in dir, then dir itself. */
static void remove_tree(const char *dir) {
  char p[512];
  struct dirent *de;
  DIR *d = opendir(dir);

  if (d == NULL)
    return;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

/* A temporary directory and a database path in it; no store yet. */
static int setup_dir(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));

  if (fx == NULL || sodium_init() < 0)
    return -1;
  snprintf(fx->dir, sizeof(fx->dir), "/tmp/tokend_store_XXXXXX");
  if (mkdtemp(fx->dir) == NULL)
    return -1;
  snprintf(fx->path, sizeof(fx->path), "%s/tokend.db", fx->dir);
  *state = fx;
  return 0;
}

/* As setup_dir, with a store open on the path. */
static int setup_store(void **state) {
  fixture_t *fx;
  char why[256];

  if (setup_dir(state) != 0)
    return -1;
  fx = *state;
  if (sqlite_open(fx->path, &fx->store, why, sizeof(why)) != 0) {
    fprintf(stderr, "store_open: %s\n", why);
    return -1;
  }
  if (store_audit_key_set(fx->store, test_audit_key) != 0) {
    fprintf(stderr, "store_audit_key_set: %s\n", store_errmsg(fx->store));
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  fixture_t *fx = *state;

  store_close(fx->store);
  remove_tree(fx->dir);
  free(fx);
  return 0;
}

/* A second, independent connection to the database file. */
static sqlite3 *db_open(const char *path) {
  sqlite3 *db = NULL;

  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL),
                   SQLITE_OK);
  return db;
}

static int64_t db_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  int64_t v;

  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static void db_exec(sqlite3 *db, const char *sql) {
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}

static void make_row(store_token_t *row, int n, const char *domain) {
  memset(row, 0, sizeof(*row));
  snprintf(row->id, sizeof(row->id), "tok_%020u", (unsigned)n);
  snprintf(row->domain, sizeof(row->domain), "%s", domain);
  snprintf(row->label, sizeof(row->label), "label %d", n);
  snprintf(row->hint, sizeof(row->hint), "tkd_...%04d", n);
  snprintf(row->scopes, sizeof(row->scopes), "read write");
  crypto_generichash(row->hash, TOKEND_HASH_BYTES, (const unsigned char *)&n,
                     sizeof(n), NULL, 0);
  row->created_at = 1000 + n;
  row->expires_at = n % 2 ? 0 : 9000 + n;
}

static void insert_n(store_t *s, store_token_t *row, int n,
                     const char *domain) {
  make_row(row, n, domain);
  assert_int_equal(store_insert(s, row), 0);
}

/* store_load callback: copies rows into an array, optionally stopping. */
typedef struct {
  store_token_t rows[16];
  size_t n;
  size_t stop_after; /* 0: never */
  int stop_value;
} collect_t;

static int collect_cb(void *arg, const store_token_t *row) {
  collect_t *c = arg;

  if (c->n < 16)
    c->rows[c->n] = *row;
  c->n++;
  if (c->stop_after != 0 && c->n == c->stop_after)
    return c->stop_value;
  return 0;
}

static size_t count_rows(store_t *s) {
  collect_t *c = calloc(1, sizeof(*c));
  size_t n;

  assert_non_null(c);
  assert_int_equal(store_load(s, collect_cb, c), 0);
  n = c->n;
  free(c);
  return n;
}

static void test_store_open_creates_schema(void **state) {
  fixture_t *fx = *state;
  sqlite3 *db = db_open(fx->path);

  assert_int_equal(db_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
  assert_int_equal(db_int(db, "PRAGMA application_id"), 0x746b6e64);
  assert_int_equal(db_int(db, "SELECT count(*) FROM sqlite_master"
                              " WHERE type = 'table' AND name = 'tokens'"),
                   1);
  assert_int_equal(db_int(db, "SELECT count(*) FROM tokens"), 0);
  sqlite3_close(db);
  assert_string_equal(store_errmsg(fx->store), "");
}

static void test_store_open_sets_wal_mode(void **state) {
  fixture_t *fx = *state;
  sqlite3 *db = db_open(fx->path);
  sqlite3_stmt *st = NULL;

  /* WAL is a property of the file: a second connection sees it too. */
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

/* An existing empty file is a new database, not a foreign one. */
static void test_store_open_empty_file_initialised(void **state) {
  fixture_t *fx = *state;
  char why[256] = "";
  FILE *f = fopen(fx->path, "w");
  sqlite3 *db;

  assert_non_null(f);
  fclose(f);
  assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)), 0);
  db = db_open(fx->path);
  assert_int_equal(db_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
  sqlite3_close(db);
}

static void test_store_insert_assigns_increasing_seq(void **state) {
  fixture_t *fx = *state;
  store_token_t a, b, c;

  insert_n(fx->store, &a, 1, "d");
  insert_n(fx->store, &b, 2, "d");
  insert_n(fx->store, &c, 3, "other");
  assert_true(a.seq > 0);
  assert_true(b.seq > a.seq);
  assert_true(c.seq > b.seq);
}

static void test_store_insert_duplicate_id_eexist(void **state) {
  fixture_t *fx = *state;
  store_token_t a, dup;

  insert_n(fx->store, &a, 1, "d");
  make_row(&dup, 2, "d");
  memcpy(dup.id, a.id, sizeof(dup.id));
  assert_int_equal(store_insert(fx->store, &dup), TOKEND_EEXIST);
  assert_true(strlen(store_errmsg(fx->store)) > 0);
  assert_int_equal(count_rows(fx->store), 1);
}

static void test_store_insert_duplicate_hash_eexist(void **state) {
  fixture_t *fx = *state;
  store_token_t a, dup;

  insert_n(fx->store, &a, 1, "d");
  make_row(&dup, 2, "other");
  memcpy(dup.hash, a.hash, TOKEND_HASH_BYTES);
  assert_int_equal(store_insert(fx->store, &dup), TOKEND_EEXIST);
  assert_int_equal(count_rows(fx->store), 1);
  /* The statement is reusable after the failure. */
  insert_n(fx->store, &dup, 2, "other");
  assert_int_equal(count_rows(fx->store), 2);
}

static void test_store_revoke_sets_revoked_at_and_returns_hash(void **state) {
  fixture_t *fx = *state;
  store_token_t a, b;
  uint8_t hash[TOKEND_HASH_BYTES] = {0};
  int64_t revoked_at = 0;
  int already = -1;
  collect_t *c = calloc(1, sizeof(*c));

  assert_non_null(c);
  insert_n(fx->store, &a, 1, "d");
  insert_n(fx->store, &b, 2, "d");
  assert_int_equal(store_revoke(fx->store, "d", a.id, 5000, "tester",
                                &revoked_at, &already, hash),
                   0);
  assert_int_equal(revoked_at, 5000);
  assert_int_equal(already, 0);
  assert_memory_equal(hash, a.hash, TOKEND_HASH_BYTES);

  assert_int_equal(store_load(fx->store, collect_cb, c), 0);
  assert_int_equal(c->n, 2);
  assert_int_equal(c->rows[0].revoked_at, 5000);
  assert_int_equal(c->rows[1].revoked_at, 0); /* the other one untouched */
  free(c);
}

static void test_store_revoke_twice_keeps_first_time(void **state) {
  fixture_t *fx = *state;
  store_token_t a;
  uint8_t hash[TOKEND_HASH_BYTES] = {0};
  int64_t revoked_at = 0;
  int already = -1;

  insert_n(fx->store, &a, 1, "d");
  assert_int_equal(store_revoke(fx->store, "d", a.id, 5000, "tester",
                                &revoked_at, &already, hash),
                   0);
  memset(hash, 0, sizeof(hash));
  assert_int_equal(store_revoke(fx->store, "d", a.id, 7000, "tester",
                                &revoked_at, &already, hash),
                   0);
  assert_int_equal(revoked_at, 5000);
  assert_int_equal(already, 1);
  assert_memory_equal(hash, a.hash, TOKEND_HASH_BYTES);
}

static void test_store_revoke_other_domain_not_found(void **state) {
  fixture_t *fx = *state;
  store_token_t a;
  uint8_t hash[TOKEND_HASH_BYTES] = {0};
  int64_t revoked_at = -1;
  int already = -1;
  collect_t *c = calloc(1, sizeof(*c));

  assert_non_null(c);
  insert_n(fx->store, &a, 1, "owner.example");
  assert_int_equal(store_revoke(fx->store, "intruder.example", a.id, 5000,
                                "tester", &revoked_at, &already, hash),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_revoke(fx->store, "owner.example",
                                "tok_doesnotexist0000000", 5000, "tester",
                                &revoked_at, &already, hash),
                   TOKEND_ENOTFOUND);
  assert_int_equal(store_load(fx->store, collect_cb, c), 0);
  assert_int_equal(c->n, 1);
  assert_int_equal(c->rows[0].revoked_at, 0);
  free(c);

  /* The rightful domain can still revoke it, for the first time. */
  assert_int_equal(store_revoke(fx->store, "owner.example", a.id, 6000,
                                "tester", &revoked_at, &already, hash),
                   0);
  assert_int_equal(revoked_at, 6000);
  assert_int_equal(already, 0);
}

static int64_t last_used_of(store_t *s, size_t i) {
  collect_t *c = calloc(1, sizeof(*c));
  int64_t v;

  assert_non_null(c);
  assert_int_equal(store_load(s, collect_cb, c), 0);
  assert_true(i < c->n);
  v = c->rows[i].last_used_at;
  free(c);
  return v;
}

static void test_store_touch_raises_never_lowers(void **state) {
  fixture_t *fx = *state;
  store_token_t a, b;
  store_touch_t t[3];

  insert_n(fx->store, &a, 1, "d");
  insert_n(fx->store, &b, 2, "d");
  memcpy(t[0].hash, a.hash, TOKEND_HASH_BYTES);
  t[0].last_used_at = 500;
  memcpy(t[1].hash, b.hash, TOKEND_HASH_BYTES);
  t[1].last_used_at = 800;
  /* An unknown hash is not an error: its token may not be stored yet. */
  memset(t[2].hash, 0xAB, TOKEND_HASH_BYTES);
  t[2].last_used_at = 900;
  assert_int_equal(store_touch(fx->store, t, 3), 0);
  assert_int_equal(last_used_of(fx->store, 0), 500);
  assert_int_equal(last_used_of(fx->store, 1), 800);

  t[0].last_used_at = 300;
  assert_int_equal(store_touch(fx->store, t, 1), 0);
  assert_int_equal(last_used_of(fx->store, 0), 500);
  t[0].last_used_at = 700;
  assert_int_equal(store_touch(fx->store, t, 1), 0);
  assert_int_equal(last_used_of(fx->store, 0), 700);
  assert_int_equal(last_used_of(fx->store, 1), 800);
}

/* a1..a5 in domain "a" (a3 revoked), b1 in domain "b" between them. */
static void fill_list_fixture(store_t *s, store_token_t a[5]) {
  store_token_t b;
  uint8_t hash[TOKEND_HASH_BYTES];
  int64_t revoked_at;
  int already, i;

  for (i = 0; i < 5; i++) {
    insert_n(s, &a[i], i + 1, "a");
    if (i == 1)
      insert_n(s, &b, 100, "b");
  }
  assert_int_equal(store_revoke(s, "a", a[2].id, 5000, "tester", &revoked_at,
                                &already, hash),
                   0);
}

static void test_store_list_newest_first_skips_revoked(void **state) {
  fixture_t *fx = *state;
  store_token_t a[5], rows[10];
  size_t n = 99;

  fill_list_fixture(fx->store, a);
  assert_int_equal(store_list(fx->store, "a", 0, 0, rows, 10, &n), 0);
  assert_int_equal(n, 4);
  assert_int_equal(rows[0].seq, a[4].seq);
  assert_int_equal(rows[1].seq, a[3].seq);
  assert_int_equal(rows[2].seq, a[1].seq);
  assert_int_equal(rows[3].seq, a[0].seq);
  /* Every field round-trips. */
  assert_string_equal(rows[0].id, a[4].id);
  assert_string_equal(rows[0].domain, "a");
  assert_string_equal(rows[0].label, a[4].label);
  assert_string_equal(rows[0].hint, a[4].hint);
  assert_string_equal(rows[0].scopes, "read write");
  assert_memory_equal(rows[0].hash, a[4].hash, TOKEND_HASH_BYTES);
  assert_int_equal(rows[0].created_at, a[4].created_at);
  assert_int_equal(rows[0].expires_at, a[4].expires_at);
  assert_int_equal(rows[0].revoked_at, 0);

  assert_int_equal(store_list(fx->store, "b", 0, 0, rows, 10, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].domain, "b");
  assert_int_equal(store_list(fx->store, "nobody", 1, 0, rows, 10, &n), 0);
  assert_int_equal(n, 0);
}

static void test_store_list_include_revoked(void **state) {
  fixture_t *fx = *state;
  store_token_t a[5], rows[10];
  size_t n = 0, i;

  fill_list_fixture(fx->store, a);
  assert_int_equal(store_list(fx->store, "a", 1, 0, rows, 10, &n), 0);
  assert_int_equal(n, 5);
  for (i = 0; i < 5; i++)
    assert_int_equal(rows[i].seq, a[4 - i].seq);
  assert_int_equal(rows[2].revoked_at, 5000);
}

static void test_store_list_pages_with_before_seq(void **state) {
  fixture_t *fx = *state;
  store_token_t a[5], rows[2];
  size_t n = 0;

  fill_list_fixture(fx->store, a);
  assert_int_equal(store_list(fx->store, "a", 0, 0, rows, 2, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(rows[0].seq, a[4].seq);
  assert_int_equal(rows[1].seq, a[3].seq);

  assert_int_equal(store_list(fx->store, "a", 0, rows[1].seq, rows, 2, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(rows[0].seq, a[1].seq); /* a3 revoked: skipped */
  assert_int_equal(rows[1].seq, a[0].seq);

  assert_int_equal(store_list(fx->store, "a", 0, rows[1].seq, rows, 2, &n), 0);
  assert_int_equal(n, 0);

  /* With revoked rows, the second page starts at a3. */
  assert_int_equal(store_list(fx->store, "a", 1, a[3].seq, rows, 2, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(rows[0].seq, a[2].seq);
  assert_int_equal(rows[1].seq, a[1].seq);
}

static void test_store_load_walks_oldest_first(void **state) {
  fixture_t *fx = *state;
  store_token_t rows[4];
  collect_t *c = calloc(1, sizeof(*c));
  size_t i;

  assert_non_null(c);
  for (i = 0; i < 4; i++)
    insert_n(fx->store, &rows[i], (int)i + 1, i % 2 ? "x" : "y");
  assert_int_equal(store_load(fx->store, collect_cb, c), 0);
  assert_int_equal(c->n, 4);
  for (i = 0; i < 4; i++) {
    assert_int_equal(c->rows[i].seq, rows[i].seq);
    assert_string_equal(c->rows[i].id, rows[i].id);
    assert_string_equal(c->rows[i].domain, rows[i].domain);
    assert_string_equal(c->rows[i].label, rows[i].label);
    assert_string_equal(c->rows[i].hint, rows[i].hint);
    assert_string_equal(c->rows[i].scopes, rows[i].scopes);
    assert_memory_equal(c->rows[i].hash, rows[i].hash, TOKEND_HASH_BYTES);
    assert_int_equal(c->rows[i].created_at, rows[i].created_at);
    assert_int_equal(c->rows[i].expires_at, rows[i].expires_at);
    assert_int_equal(c->rows[i].last_used_at, 0);
    assert_int_equal(c->rows[i].revoked_at, 0);
  }
  free(c);
}

static void test_store_load_stops_on_callback_value(void **state) {
  fixture_t *fx = *state;
  store_token_t row;
  collect_t *c = calloc(1, sizeof(*c));
  int i;

  assert_non_null(c);
  for (i = 1; i <= 4; i++)
    insert_n(fx->store, &row, i, "d");
  c->stop_after = 2;
  c->stop_value = 7;
  assert_int_equal(store_load(fx->store, collect_cb, c), 7);
  assert_int_equal(c->n, 2);

  /* The walk restarts from the beginning next time. */
  memset(c, 0, sizeof(*c));
  assert_int_equal(store_load(fx->store, collect_cb, c), 0);
  assert_int_equal(c->n, 4);
  free(c);
}

static void test_store_rollback_discards_insert(void **state) {
  fixture_t *fx = *state;
  store_token_t a, b;
  sqlite3 *db;

  assert_int_equal(store_begin(fx->store), 0);
  insert_n(fx->store, &a, 1, "d");
  store_rollback(fx->store);
  assert_int_equal(count_rows(fx->store), 0);

  /* The same row commits once the transaction does. */
  assert_int_equal(store_begin(fx->store), 0);
  insert_n(fx->store, &a, 1, "d");
  insert_n(fx->store, &b, 2, "d");
  assert_int_equal(store_commit(fx->store), 0);
  db = db_open(fx->path);
  assert_int_equal(db_int(db, "SELECT count(*) FROM tokens"), 2);
  sqlite3_close(db);
}

static void test_store_reopen_keeps_data(void **state) {
  fixture_t *fx = *state;
  store_token_t a, b;
  store_touch_t t;
  uint8_t hash[TOKEND_HASH_BYTES];
  int64_t revoked_at;
  int already;
  char why[256] = "";
  collect_t *c = calloc(1, sizeof(*c));

  assert_non_null(c);
  insert_n(fx->store, &a, 1, "d");
  insert_n(fx->store, &b, 2, "d");
  assert_int_equal(store_revoke(fx->store, "d", b.id, 5000, "tester",
                                &revoked_at, &already, hash),
                   0);
  memcpy(t.hash, a.hash, TOKEND_HASH_BYTES);
  t.last_used_at = 4000;
  assert_int_equal(store_touch(fx->store, &t, 1), 0);
  store_close(fx->store);
  fx->store = NULL;

  assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)), 0);
  assert_int_equal(store_load(fx->store, collect_cb, c), 0);
  assert_int_equal(c->n, 2);
  assert_string_equal(c->rows[0].id, a.id);
  assert_int_equal(c->rows[0].last_used_at, 4000);
  assert_int_equal(c->rows[0].revoked_at, 0);
  assert_string_equal(c->rows[1].id, b.id);
  assert_int_equal(c->rows[1].revoked_at, 5000);
  free(c);

  /* Seq keeps growing after a reopen. */
  insert_n(fx->store, &a, 3, "d");
  assert_true(a.seq > b.seq);
}

static void test_store_refuses_garbage_file(void **state) {
  fixture_t *fx = *state;
  char junk[4096], back[4096], why[256] = "";
  FILE *f;
  size_t i;

  for (i = 0; i < sizeof(junk); i++)
    junk[i] = (char)('a' + i % 26);
  f = fopen(fx->path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
  fclose(f);

  assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)),
                   TOKEND_ECONFIG);
  assert_null(fx->store);
  assert_non_null(strstr(why, "not a tokend database"));
  /* Refused, and left as it was. */
  f = fopen(fx->path, "rb");
  assert_non_null(f);
  assert_int_equal(fread(back, 1, sizeof(back), f), sizeof(back));
  assert_int_equal(fgetc(f), EOF);
  fclose(f);
  assert_memory_equal(back, junk, sizeof(junk));
}

static void test_store_refuses_foreign_sqlite_db(void **state) {
  fixture_t *fx = *state;
  char why[256] = "";
  sqlite3 *db = NULL;

  assert_int_equal(sqlite3_open_v2(fx->path, &db,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                   NULL),
                   SQLITE_OK);
  db_exec(db, "CREATE TABLE recipes (name TEXT)");
  sqlite3_close(db);

  assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)),
                   TOKEND_ECONFIG);
  assert_null(fx->store);
  assert_non_null(strstr(why, "not a tokend database"));
  db = db_open(fx->path);
  assert_int_equal(db_int(db, "SELECT count(*) FROM sqlite_master"
                              " WHERE name = 'tokens'"),
                   0);
  assert_int_equal(db_int(db, "PRAGMA user_version"), 0);
  sqlite3_close(db);
}

static void test_store_refuses_newer_schema(void **state) {
  fixture_t *fx = *state;
  char why[256] = "";
  sqlite3 *db;

  assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)), 0);
  store_close(fx->store);
  fx->store = NULL;
  db = db_open(fx->path);
  db_exec(db, "PRAGMA user_version = 99");
  sqlite3_close(db);

  assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)),
                   TOKEND_ECONFIG);
  assert_null(fx->store);
  assert_non_null(strstr(why, "newer"));
  assert_non_null(strstr(why, "99"));
  db = db_open(fx->path);
  assert_int_equal(db_int(db, "PRAGMA user_version"), 99);
  sqlite3_close(db);
}

static void test_store_missing_directory_fails_with_reason(void **state) {
  fixture_t *fx = *state;
  char path[256], why[256] = "";
  int err;

  snprintf(path, sizeof(path), "%s/missing/tokend.db", fx->dir);
  err = sqlite_open(path, &fx->store, why, sizeof(why));
  assert_int_equal(err, TOKEND_ESTORE);
  assert_null(fx->store);
  assert_non_null(strstr(why, path));
  assert_int_equal(access(path, F_OK), -1);
}

#define STORE_TEST(fn)                                                         \
  cmocka_unit_test_setup_teardown(fn, setup_store, teardown)
#define DIR_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup_dir, teardown)

/* ---- Domain admins, audit log, Verify counts (schema 2) ---- */

static void test_store_revoke_records_revoked_by(void **state) {
  fixture_t *fx = *state;
  store_token_t a;
  uint8_t hash[TOKEND_HASH_BYTES];
  int64_t revoked_at;
  int already;
  collect_t *c = calloc(1, sizeof(*c));

  assert_non_null(c);
  make_row(&a, 1, "d");
  snprintf(a.created_by, sizeof(a.created_by), "alice@example.com");
  assert_int_equal(store_insert(fx->store, &a), 0);
  assert_int_equal(store_revoke(fx->store, "d", a.id, 5000, "uid:1000",
                                &revoked_at, &already, hash),
                   0);
  assert_int_equal(store_load(fx->store, collect_cb, c), 0);
  assert_string_equal(c->rows[0].created_by, "alice@example.com");
  assert_string_equal(c->rows[0].revoked_by, "uid:1000");
  free(c);
}

static void test_store_admin_grant_twice_keeps_first(void **state) {
  fixture_t *fx = *state;
  int64_t at = 0;
  int already = -1;

  assert_int_equal(store_admin_grant(fx->store, "d", "uid:1000", 100, "uid:0",
                                     &at, &already),
                   0);
  assert_int_equal(at, 100);
  assert_int_equal(already, 0);
  assert_int_equal(store_admin_grant(fx->store, "d", "uid:1000", 200, "uid:0",
                                     &at, &already),
                   0);
  assert_int_equal(at, 100);
  assert_int_equal(already, 1);
}

typedef struct {
  store_admin_t rows[8];
  size_t n;
} admins_t;

static int admin_cb(void *arg, const store_admin_t *a) {
  admins_t *x = arg;

  if (x->n < 8)
    x->rows[x->n] = *a;
  x->n++;
  return 0;
}

/* Removing an admin with revoke_tokens revokes exactly their unrevoked
 * tokens in that domain and names their hashes. */
static void test_store_admin_remove_revokes_their_tokens(void **state) {
  fixture_t *fx = *state;
  store_token_t mine1, mine2, theirs, other_domain;
  uint8_t(*hashes)[TOKEND_HASH_BYTES] = NULL;
  size_t n = 99;
  int64_t at;
  int already;
  admins_t admins = {0};
  collect_t *c = calloc(1, sizeof(*c));

  assert_non_null(c);
  assert_int_equal(
      store_admin_grant(fx->store, "d", "bob", 1, "uid:0", &at, &already), 0);
  make_row(&mine1, 1, "d");
  make_row(&mine2, 2, "d");
  make_row(&theirs, 3, "d");
  make_row(&other_domain, 4, "e");
  snprintf(mine1.created_by, sizeof(mine1.created_by), "bob");
  snprintf(mine2.created_by, sizeof(mine2.created_by), "bob");
  snprintf(theirs.created_by, sizeof(theirs.created_by), "carol");
  snprintf(other_domain.created_by, sizeof(other_domain.created_by), "bob");
  assert_int_equal(store_insert(fx->store, &mine1), 0);
  assert_int_equal(store_insert(fx->store, &mine2), 0);
  assert_int_equal(store_insert(fx->store, &theirs), 0);
  assert_int_equal(store_insert(fx->store, &other_domain), 0);

  assert_int_equal(
      store_admin_remove(fx->store, "d", "bob", 1, 7000, "uid:0", &hashes, &n),
      0);
  assert_int_equal(n, 2);
  assert_true((memcmp(hashes[0], mine1.hash, TOKEND_HASH_BYTES) == 0 &&
               memcmp(hashes[1], mine2.hash, TOKEND_HASH_BYTES) == 0) ||
              (memcmp(hashes[1], mine1.hash, TOKEND_HASH_BYTES) == 0 &&
               memcmp(hashes[0], mine2.hash, TOKEND_HASH_BYTES) == 0));
  free(hashes);
  assert_int_equal(store_load(fx->store, collect_cb, c), 0);
  assert_int_equal(c->rows[0].revoked_at, 7000);
  assert_string_equal(c->rows[0].revoked_by, "uid:0");
  assert_int_equal(c->rows[1].revoked_at, 7000);
  assert_int_equal(c->rows[2].revoked_at, 0); /* carol's */
  assert_int_equal(c->rows[3].revoked_at, 0); /* another domain */
  assert_int_equal(store_admin_load(fx->store, admin_cb, &admins), 0);
  assert_int_equal(admins.n, 0);
  /* Not an admin any more. */
  assert_int_equal(
      store_admin_remove(fx->store, "d", "bob", 1, 8000, "uid:0", &hashes, &n),
      TOKEND_ENOTFOUND);
  free(c);
}

static void test_store_admin_load_returns_grants(void **state) {
  fixture_t *fx = *state;
  admins_t admins = {0};
  int64_t at;
  int already;

  assert_int_equal(
      store_admin_grant(fx->store, "d", "bob", 5, "uid:0", &at, &already), 0);
  assert_int_equal(
      store_admin_grant(fx->store, "e", "uid:12", 6, "ops", &at, &already), 0);
  assert_int_equal(store_admin_load(fx->store, admin_cb, &admins), 0);
  assert_int_equal(admins.n, 2);
  assert_true(strcmp(admins.rows[0].user, "bob") == 0 ||
              strcmp(admins.rows[1].user, "bob") == 0);
}

static void audit_row(store_audit_t *ev, int64_t at, const char *domain,
                      const char *method, int code) {
  memset(ev, 0, sizeof(*ev));
  ev->at = at;
  ev->peer_uid = 1000;
  ev->peer_pid = 42;
  snprintf(ev->actor, sizeof(ev->actor), "uid:1000");
  snprintf(ev->domain, sizeof(ev->domain), "%s", domain);
  snprintf(ev->method, sizeof(ev->method), "%s", method);
  ev->code = code;
}

static void test_store_audit_list_filters_and_pages(void **state) {
  fixture_t *fx = *state;
  store_audit_t ev, rows[8];
  size_t n = 0;
  int i;

  for (i = 1; i <= 5; i++) {
    audit_row(&ev, 1000 * i, i % 2 ? "d" : "e", "Issue", i == 5 ? 7 : 0);
    assert_int_equal(store_audit_append(fx->store, &ev), 0);
    assert_int_equal(ev.id, i);
  }
  /* All domains, newest first. */
  assert_int_equal(store_audit_list(fx->store, "", 0, 0, rows, 8, &n), 0);
  assert_int_equal(n, 5);
  assert_int_equal(rows[0].id, 5);
  assert_int_equal(rows[0].code, 7);
  assert_int_equal(rows[0].peer_uid, 1000);
  assert_int_equal(rows[0].peer_pid, 42);
  /* One domain: ids 5, 3, 1. */
  assert_int_equal(store_audit_list(fx->store, "d", 0, 0, rows, 8, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(rows[2].id, 1);
  /* since: at >= 3000 in d: ids 5, 3. before_id 5: only 3. */
  assert_int_equal(store_audit_list(fx->store, "d", 3000, 0, rows, 8, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(store_audit_list(fx->store, "d", 3000, 5, rows, 8, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(rows[0].id, 3);
}

/* The schema itself refuses to rewrite history. */
static void test_store_audit_log_is_append_only(void **state) {
  fixture_t *fx = *state;
  store_audit_t ev;
  sqlite3 *db;

  audit_row(&ev, 1000, "d", "Revoke", 0);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  db = db_open(fx->path);
  assert_int_not_equal(
      sqlite3_exec(db, "UPDATE audit_events SET code = 0", NULL, NULL, NULL),
      SQLITE_OK);
  assert_int_not_equal(
      sqlite3_exec(db, "DELETE FROM audit_events", NULL, NULL, NULL),
      SQLITE_OK);
  assert_int_equal(db_int(db, "SELECT count(*) FROM audit_events"), 1);
  sqlite3_close(db);
}

static void test_store_verify_counts_accumulate(void **state) {
  fixture_t *fx = *state;
  sqlite3 *db;

  assert_int_equal(store_verify_counts_add(fx->store, "d", 3, 1, 100), 0);
  assert_int_equal(store_verify_counts_add(fx->store, "d", 2, 0, 200), 0);
  assert_int_equal(store_verify_counts_add(fx->store, "", 0, 4, 200), 0);
  db = db_open(fx->path);
  assert_int_equal(
      db_int(db, "SELECT valid FROM verify_counts WHERE domain = 'd'"), 5);
  assert_int_equal(
      db_int(db, "SELECT invalid FROM verify_counts WHERE domain = 'd'"), 1);
  assert_int_equal(
      db_int(db, "SELECT invalid FROM verify_counts WHERE domain = ''"), 4);
  sqlite3_close(db);
}

/* A version 1 database (before admins and the audit log) is migrated
 * forward with its tokens intact. */
static void test_store_migrates_version_1(void **state) {
  fixture_t *fx = *state;
  collect_t *c = calloc(1, sizeof(*c));
  char why[256];
  sqlite3 *db = NULL;

  assert_non_null(c);
  store_close(fx->store);
  fx->store = NULL;
  unlink(fx->path);
  assert_int_equal(sqlite3_open_v2(fx->path, &db,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                   NULL),
                   SQLITE_OK);
  db_exec(db, "CREATE TABLE tokens (seq INTEGER PRIMARY KEY, id TEXT NOT NULL "
              "UNIQUE, domain TEXT NOT NULL, label TEXT NOT NULL, hash BLOB "
              "NOT NULL UNIQUE CHECK (length(hash) = 32), hint TEXT NOT NULL, "
              "scopes TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, "
              "expires_at INTEGER NOT NULL DEFAULT 0, last_used_at INTEGER NOT "
              "NULL DEFAULT 0, revoked_at INTEGER NOT NULL DEFAULT 0);"
              "CREATE INDEX tokens_domain_seq ON tokens (domain, seq);"
              "INSERT INTO tokens (id, domain, label, hash, hint, created_at) "
              "VALUES ('tok_00000000000000000001', 'd', 'old', "
              "zeroblob(32), 'tkd_...abcd', 77);"
              "PRAGMA application_id = 1953197668; PRAGMA user_version = 1;");
  sqlite3_close(db);
  assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)), 0);
  assert_int_equal(store_load(fx->store, collect_cb, c), 0);
  assert_int_equal(c->n, 1);
  assert_string_equal(c->rows[0].label, "old");
  assert_string_equal(c->rows[0].created_by, "");
  db = db_open(fx->path);
  assert_int_equal(db_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
  assert_int_equal(db_int(db, "SELECT count(*) FROM domain_admins"), 0);
  sqlite3_close(db);
  free(c);
}

/* ---- issue 11: no silent new database, the pepper's fingerprint, a file
 * deleted under the store, read-only ---- */

static void test_store_open_without_create_missing_file(void **state) {
  fixture_t *fx = *state;
  char why[256] = "";

  assert_int_equal(sqlite_open_flags(fx->path, 0, &fx->store, why, sizeof(why)),
                   TOKEND_ENOTFOUND);
  assert_null(fx->store);
  assert_non_null(strstr(why, "--create-db"));
  assert_int_equal(access(fx->path, F_OK), -1);
}

static void test_store_fingerprint_round_trip(void **state) {
  fixture_t *fx = *state;
  uint8_t fp[STORE_FINGERPRINT_BYTES], got[STORE_FINGERPRINT_BYTES];
  int present = -1;

  assert_int_equal(store_fingerprint_get(fx->store, got, &present), 0);
  assert_int_equal(present, 0);
  memset(fp, 0xa5, sizeof(fp));
  assert_int_equal(store_fingerprint_set(fx->store, fp), 0);
  fp[0] = 1;
  assert_int_equal(store_fingerprint_set(fx->store, fp), 0);
  assert_int_equal(store_fingerprint_get(fx->store, got, &present), 0);
  assert_int_equal(present, 1);
  assert_memory_equal(got, fp, sizeof(fp));
}

static void test_store_file_deleted_is_lost(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(store_file_check(fx->store), 0);
  assert_int_equal(store_file_lost(fx->store), 0);
  assert_int_equal(unlink(fx->path), 0);
  assert_int_equal(store_file_check(fx->store), TOKEND_EUNAVAIL);
  assert_int_equal(store_file_lost(fx->store), 1);
  assert_non_null(strstr(store_errmsg(fx->store), "deleted or replaced"));
  /* A reopen never makes a new, empty file in its place. */
  assert_int_not_equal(store_sqlite_reopen(fx->store), 0);
  assert_int_equal(access(fx->path, F_OK), -1);
}

static void test_store_read_only_refuses_writes(void **state) {
  fixture_t *fx = *state;
  store_token_t row;
  char why[256];
  int64_t n = -1;

  store_close(fx->store);
  fx->store = NULL;
  assert_int_equal(sqlite_open_flags(fx->path, STORE_OPEN_READ_ONLY, &fx->store,
                                     why, sizeof(why)),
                   0);
  assert_int_equal(store_begin(fx->store), TOKEND_ECONFIG);
  assert_non_null(strstr(store_errmsg(fx->store), "--read-only"));
  assert_int_equal(store_count_rows(fx->store, &n), 0);
  assert_int_equal(n, 0);
  make_row(&row, 1, "ro.example");
  assert_int_not_equal(store_insert(fx->store, &row), 0);
}

/* ---- The audit log's hash chain (schema 4) ---- */

#define CHAIN_ROWS 5

/* Appends CHAIN_ROWS rows (ids 1..5), then closes the store so that a second
 * connection can edit the file as an attacker with write access would. */
static void chain_fill_and_close(fixture_t *fx) {
  store_audit_t ev;
  int i;

  for (i = 1; i <= CHAIN_ROWS; i++) {
    audit_row(&ev, 1000 * i, "d", "Issue", 0);
    assert_int_equal(store_audit_append(fx->store, &ev), 0);
  }
  store_close(fx->store);
  fx->store = NULL;
}

/* Reopens the store and verifies its chain (anchor_id 0: no anchor). */
static void chain_check(fixture_t *fx, int64_t anchor_id,
                        const uint8_t *anchor_hash, store_audit_check_t *chk) {
  char why[256];

  if (fx->store == NULL) {
    assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)), 0);
    assert_int_equal(store_audit_key_set(fx->store, test_audit_key), 0);
  }
  assert_int_equal(store_audit_verify(fx->store, anchor_id, anchor_hash, chk),
                   0);
}

/* Runs sql on a second connection (the attacker's). */
static void chain_edit(fixture_t *fx, const char *sql) {
  sqlite3 *db = db_open(fx->path);

  db_exec(db, sql);
  sqlite3_close(db);
}

static void test_store_audit_chain_untouched_verifies(void **state) {
  fixture_t *fx = *state;
  store_audit_check_t chk;
  store_audit_t ev;

  chain_fill_and_close(fx);
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 0);
  assert_int_equal(chk.rows_checked, CHAIN_ROWS);
  assert_int_equal(chk.head_id, CHAIN_ROWS);
  /* Appending after a reopen continues the chain. */
  audit_row(&ev, 9000, "d", "Revoke", 0);
  ev.count = 42;
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  assert_int_equal(ev.id, CHAIN_ROWS + 1);
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 0);
  assert_int_equal(chk.rows_checked, CHAIN_ROWS + 1);
}

static void test_store_audit_chain_changed_row_found(void **state) {
  fixture_t *fx = *state;
  store_audit_check_t chk;

  chain_fill_and_close(fx);
  chain_edit(fx, "DROP TRIGGER audit_events_no_update;"
                 "UPDATE audit_events SET code = 7 WHERE id = 3;");
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 3);
  assert_int_equal(chk.head_id, 2);
}

/* A count is part of the row too: an aggregated refusal cannot shrink. */
static void test_store_audit_chain_changed_count_found(void **state) {
  fixture_t *fx = *state;
  store_audit_check_t chk;

  chain_fill_and_close(fx);
  chain_edit(fx, "DROP TRIGGER audit_events_no_update;"
                 "UPDATE audit_events SET count = 2 WHERE id = 4;");
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 4);
}

static void test_store_audit_chain_deleted_row_found(void **state) {
  fixture_t *fx = *state;
  store_audit_check_t chk;

  chain_fill_and_close(fx);
  /* The schema refuses it... */
  {
    sqlite3 *db = db_open(fx->path);
    assert_int_not_equal(sqlite3_exec(db,
                                      "DELETE FROM audit_events WHERE id "
                                      "= 2",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    sqlite3_close(db);
  }
  /* ...until its trigger is dropped; then the chain shows it. */
  chain_edit(fx, "DROP TRIGGER audit_events_no_delete;"
                 "DELETE FROM audit_events WHERE id = 2;");
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 3);
}

static void test_store_audit_chain_replaced_row_found(void **state) {
  fixture_t *fx = *state;
  static const char replace[] =
      "INSERT OR REPLACE INTO audit_events (id, at, peer_uid, peer_pid, actor,"
      " break_glass, domain, token_id, method, code, detail, count, hash)"
      " SELECT id, at, peer_uid, peer_pid, actor, break_glass, domain,"
      " token_id, method, 0, 'nothing happened', count, hash"
      " FROM audit_events WHERE id = 2;";
  store_audit_check_t chk;
  sqlite3 *db;

  chain_fill_and_close(fx);
  /* REPLACE deletes without the delete trigger: the schema refuses it... */
  db = db_open(fx->path);
  assert_int_not_equal(sqlite3_exec(db, replace, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  /* ...until that trigger is dropped too; the chain still shows it. */
  chain_edit(fx, "DROP TRIGGER audit_events_no_replace;");
  chain_edit(fx, replace);
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 2);
}

static void test_store_audit_chain_inserted_row_found(void **state) {
  fixture_t *fx = *state;
  store_audit_check_t chk;

  chain_fill_and_close(fx);
  /* A row slipped in at the end, with a made-up hash. */
  chain_edit(fx, "INSERT INTO audit_events (id, at, peer_uid, peer_pid, actor,"
                 " break_glass, domain, token_id, method, code, detail, count,"
                 " hash) VALUES (6, 1, 0, 0, '', 0, 'd', '', 'Issue', 0, '',"
                 " 1, zeroblob(32));");
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 6);
}

/* Cutting off the newest rows leaves a chain that holds: only an anchor
 * recorded earlier shows it. */
static void test_store_audit_chain_truncation_needs_anchor(void **state) {
  fixture_t *fx = *state;
  store_audit_check_t chk;
  uint8_t head[STORE_AUDIT_HASH_BYTES];

  chain_fill_and_close(fx);
  chain_check(fx, 0, NULL, &chk);
  memcpy(head, chk.head_hash, sizeof(head));
  chain_check(fx, CHAIN_ROWS, head, &chk);
  assert_int_equal(chk.first_bad_id, 0);
  store_close(fx->store);
  fx->store = NULL;
  chain_edit(fx, "DROP TRIGGER audit_events_no_delete;"
                 "DELETE FROM audit_events WHERE id >= 4;");
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 0);
  chain_check(fx, CHAIN_ROWS, head, &chk);
  assert_int_equal(chk.first_bad_id, CHAIN_ROWS);
  assert_non_null(strstr(chk.why, "gone"));
}

/* Rows written before schema 4 are chained, in order, at the first start
 * with the key; rows slipped in later without a hash are not. */
static void test_store_audit_chain_links_rows_from_before(void **state) {
  fixture_t *fx = *state;
  store_audit_check_t chk;
  char why[256];

  store_close(fx->store);
  fx->store = NULL;
  assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)), 0);
  store_close(fx->store);
  fx->store = NULL;
  /* Back to schema 2 with three rows, as an older tokend left it. */
  chain_edit(fx, "DROP TABLE meta;"
                 "DROP TABLE audit_chain;"
                 "DROP TRIGGER audit_events_no_delete;"
                 "DROP TABLE audit_retention;"
                 "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON"
                 " audit_events BEGIN SELECT RAISE(ABORT, 'append-only'); END;"
                 "DROP TRIGGER audit_events_no_replace;"
                 "ALTER TABLE audit_events DROP COLUMN hash;"
                 "ALTER TABLE audit_events DROP COLUMN count;"
                 "INSERT INTO audit_events (at, peer_uid, peer_pid, actor,"
                 " break_glass, domain, token_id, method, code, detail)"
                 " VALUES (1, 0, 1, 'a', 0, 'd', '', 'Issue', 0, 'x'),"
                 " (2, 0, 1, 'a', 0, 'd', '', 'Revoke', 0, 'y'),"
                 " (3, 0, 1, 'a', 0, 'd', '', 'Issue', 7, 'z');"
                 "DROP TABLE domain_policies;"
                 "ALTER TABLE tokens DROP COLUMN metadata;"
                 "ALTER TABLE tokens DROP COLUMN rolled_from;"
                 "ALTER TABLE tokens DROP COLUMN rolled_to;"
                 "ALTER TABLE tokens DROP COLUMN pepper_gen;"
                 "PRAGMA user_version = 2;");
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 0);
  assert_int_equal(chk.rows_checked, 3);
  store_close(fx->store);
  fx->store = NULL;
  chain_edit(fx, "INSERT INTO audit_events (at, peer_uid, peer_pid, actor,"
                 " break_glass, domain, token_id, method, code, detail)"
                 " VALUES (4, 0, 1, 'a', 0, 'd', '', 'Issue', 0, 'forged');");
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 4);
}

/* A store without its chain key writes no audit row it cannot chain. */
static void test_store_audit_append_needs_key(void **state) {
  fixture_t *fx = *state;
  store_audit_t ev;
  char why[256];

  store_close(fx->store);
  assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)), 0);
  audit_row(&ev, 1000, "d", "Issue", 0);
  assert_int_equal(store_audit_append(fx->store, &ev), TOKEND_EINTERNAL);
}

/* ---- audit retention (--audit-retention-days, schema 5) ---- */

#define DAY_MS 86400000LL

static int64_t now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Rows older than the retention go, through the schema's one allowed
 * path; the chain verifies from the newest removed row on; a young row
 * still cannot be deleted, and removing one more old row by hand shows. */
static void test_store_audit_retention_prunes_and_chain_holds(void **state) {
  fixture_t *fx = *state;
  uint8_t any_hash[STORE_AUDIT_HASH_BYTES] = {1};
  store_audit_check_t chk;
  store_audit_t ev;
  int64_t removed, upto, now = now_ms();
  sqlite3 *db;

  chain_fill_and_close(fx); /* rows 1..5, from 1970 */
  chain_check(fx, 0, NULL, &chk);
  audit_row(&ev, now, "d", "Issue", 0);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  assert_int_equal(
      store_audit_prune(fx->store, 30 * DAY_MS, now, &removed, &upto), 0);
  assert_int_equal(removed, CHAIN_ROWS);
  assert_int_equal(upto, CHAIN_ROWS);
  assert_int_equal(store_audit_verify(fx->store, 0, NULL, &chk), 0);
  assert_int_equal(chk.first_bad_id, 0);
  assert_int_equal(chk.rows_checked, 1);
  assert_int_equal(chk.head_id, CHAIN_ROWS + 1);
  /* An anchor among the removed rows can no longer be checked. */
  assert_int_equal(store_audit_verify(fx->store, 3, any_hash, &chk), 0);
  assert_int_equal(chk.first_bad_id, 0);
  /* Nothing more to remove; appends chain on. */
  assert_int_equal(
      store_audit_prune(fx->store, 30 * DAY_MS, now, &removed, &upto), 0);
  assert_int_equal(removed, 0);
  audit_row(&ev, now, "d", "Revoke", 0);
  assert_int_equal(store_audit_append(fx->store, &ev), 0);
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 0);
  assert_int_equal(chk.rows_checked, 2);
  store_close(fx->store);
  fx->store = NULL;

  /* A row younger than the retention cannot be deleted. */
  db = db_open(fx->path);
  assert_int_not_equal(sqlite3_exec(db, "DELETE FROM audit_events WHERE id = 6",
                                    NULL, NULL, NULL),
                       SQLITE_OK);
  sqlite3_close(db);
  /* Forced, it breaks the chain. */
  chain_edit(fx, "DROP TRIGGER audit_events_no_delete;"
                 "DELETE FROM audit_events WHERE id = 6;");
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, CHAIN_ROWS + 2);
}

/* However old, the newest row stays (the next append chains from it); a
 * changed base hash breaks the chain at the first row kept. */
static void test_store_audit_retention_keeps_newest_row(void **state) {
  fixture_t *fx = *state;
  store_audit_check_t chk;
  int64_t removed, upto;
  char why[256];

  chain_fill_and_close(fx);
  assert_int_equal(sqlite_open(fx->path, &fx->store, why, sizeof(why)), 0);
  assert_int_equal(store_audit_key_set(fx->store, test_audit_key), 0);
  assert_int_equal(
      store_audit_prune(fx->store, DAY_MS, now_ms(), &removed, &upto), 0);
  assert_int_equal(removed, CHAIN_ROWS - 1);
  assert_int_equal(upto, CHAIN_ROWS - 1);
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, 0);
  assert_int_equal(chk.rows_checked, 1);
  store_close(fx->store);
  fx->store = NULL;
  chain_edit(fx, "UPDATE audit_retention SET removed_hash = zeroblob(32);");
  chain_check(fx, 0, NULL, &chk);
  assert_int_equal(chk.first_bad_id, CHAIN_ROWS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      DIR_TEST(test_store_open_without_create_missing_file),
      STORE_TEST(test_store_fingerprint_round_trip),
      STORE_TEST(test_store_file_deleted_is_lost),
      STORE_TEST(test_store_read_only_refuses_writes),
      STORE_TEST(test_store_open_creates_schema),
      STORE_TEST(test_store_open_sets_wal_mode),
      DIR_TEST(test_store_open_empty_file_initialised),
      STORE_TEST(test_store_insert_assigns_increasing_seq),
      STORE_TEST(test_store_insert_duplicate_id_eexist),
      STORE_TEST(test_store_insert_duplicate_hash_eexist),
      STORE_TEST(test_store_revoke_sets_revoked_at_and_returns_hash),
      STORE_TEST(test_store_revoke_twice_keeps_first_time),
      STORE_TEST(test_store_revoke_other_domain_not_found),
      STORE_TEST(test_store_revoke_records_revoked_by),
      STORE_TEST(test_store_admin_grant_twice_keeps_first),
      STORE_TEST(test_store_admin_remove_revokes_their_tokens),
      STORE_TEST(test_store_admin_load_returns_grants),
      STORE_TEST(test_store_audit_list_filters_and_pages),
      STORE_TEST(test_store_audit_log_is_append_only),
      STORE_TEST(test_store_verify_counts_accumulate),
      STORE_TEST(test_store_migrates_version_1),
      STORE_TEST(test_store_audit_chain_untouched_verifies),
      STORE_TEST(test_store_audit_chain_changed_row_found),
      STORE_TEST(test_store_audit_chain_changed_count_found),
      STORE_TEST(test_store_audit_chain_deleted_row_found),
      STORE_TEST(test_store_audit_retention_prunes_and_chain_holds),
      STORE_TEST(test_store_audit_retention_keeps_newest_row),
      STORE_TEST(test_store_audit_chain_replaced_row_found),
      STORE_TEST(test_store_audit_chain_inserted_row_found),
      STORE_TEST(test_store_audit_chain_truncation_needs_anchor),
      STORE_TEST(test_store_audit_chain_links_rows_from_before),
      STORE_TEST(test_store_audit_append_needs_key),
      STORE_TEST(test_store_touch_raises_never_lowers),
      STORE_TEST(test_store_list_newest_first_skips_revoked),
      STORE_TEST(test_store_list_include_revoked),
      STORE_TEST(test_store_list_pages_with_before_seq),
      STORE_TEST(test_store_load_walks_oldest_first),
      STORE_TEST(test_store_load_stops_on_callback_value),
      STORE_TEST(test_store_rollback_discards_insert),
      STORE_TEST(test_store_reopen_keeps_data),
      DIR_TEST(test_store_refuses_garbage_file),
      DIR_TEST(test_store_refuses_foreign_sqlite_db),
      DIR_TEST(test_store_refuses_newer_schema),
      DIR_TEST(test_store_missing_directory_fails_with_reason),
  };

  return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
