/* Unit tests for server/pepper: creating, loading and refusing the pepper
 * file, in a fresh temporary directory per test. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/pepper.h"

typedef struct {
  char dir[64];
  char path[128];
} fixture_t;

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));

  if (fx == NULL || sodium_init() < 0)
    return -1;
  snprintf(fx->dir, sizeof(fx->dir), "/tmp/tokend_pepper_XXXXXX");
  if (mkdtemp(fx->dir) == NULL)
    return -1;
  snprintf(fx->path, sizeof(fx->path), "%s/pepper", fx->dir);
  *state = fx;
  return 0;
}

/* Removes the directory's entries (files, symlinks, one level of empty
 * subdirectories), then the directory. */
static int teardown(void **state) {
  fixture_t *fx = *state;
  char p[512];
  struct dirent *de;
  DIR *d = opendir(fx->dir);

  if (d != NULL) {
    while ((de = readdir(d)) != NULL) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
        continue;
      snprintf(p, sizeof(p), "%s/%s", fx->dir, de->d_name);
      if (unlink(p) != 0)
        rmdir(p);
    }
    closedir(d);
  }
  rmdir(fx->dir);
  free(fx);
  return 0;
}

/* Writes len bytes of value into path with mode. */
static void write_file(const char *path, uint8_t value, size_t len,
                       mode_t mode) {
  uint8_t buf[64];
  int fd;

  assert_true(len <= sizeof(buf));
  memset(buf, value, sizeof(buf));
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, buf, len), (ssize_t)len);
  assert_int_equal(fchmod(fd, mode), 0);
  close(fd);
}

static void test_pepper_created_when_missing(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES], zero[TOKEND_PEPPER_BYTES] = {0};
  uint8_t disk[TOKEND_PEPPER_BYTES + 1];
  char why[256] = "";
  struct stat st;
  ssize_t n;
  int fd;

  assert_int_equal(pepper_load(fx->path, key, why, sizeof(why)), 0);
  assert_int_equal(lstat(fx->path, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(st.st_size, TOKEND_PEPPER_BYTES);
  assert_memory_not_equal(key, zero, TOKEND_PEPPER_BYTES);

  fd = open(fx->path, O_RDONLY);
  assert_true(fd >= 0);
  n = read(fd, disk, sizeof(disk));
  close(fd);
  assert_int_equal(n, TOKEND_PEPPER_BYTES);
  assert_memory_equal(disk, key, TOKEND_PEPPER_BYTES);
}

static void test_pepper_loads_same_bytes_back(void **state) {
  fixture_t *fx = *state;
  uint8_t first[TOKEND_PEPPER_BYTES], again[TOKEND_PEPPER_BYTES];
  char why[256] = "";

  assert_int_equal(pepper_load(fx->path, first, why, sizeof(why)), 0);
  memset(again, 0, sizeof(again));
  assert_int_equal(pepper_load(fx->path, again, why, sizeof(why)), 0);
  assert_memory_equal(first, again, TOKEND_PEPPER_BYTES);
}

/* An existing file is read as it is, not replaced. */
static void test_pepper_existing_file_used_as_is(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES], want[TOKEND_PEPPER_BYTES];
  char why[256] = "";

  write_file(fx->path, 0x5C, TOKEND_PEPPER_BYTES, 0600);
  memset(want, 0x5C, sizeof(want));
  assert_int_equal(pepper_load(fx->path, key, why, sizeof(why)), 0);
  assert_memory_equal(key, want, TOKEND_PEPPER_BYTES);

  /* Owner read-only is fine too. */
  assert_int_equal(chmod(fx->path, 0400), 0);
  memset(key, 0, sizeof(key));
  assert_int_equal(pepper_load(fx->path, key, why, sizeof(why)), 0);
  assert_memory_equal(key, want, TOKEND_PEPPER_BYTES);
}

static void test_pepper_new_files_differ(void **state) {
  fixture_t *fx = *state;
  uint8_t a[TOKEND_PEPPER_BYTES], b[TOKEND_PEPPER_BYTES];
  char why[256] = "";

  assert_int_equal(pepper_load(fx->path, a, why, sizeof(why)), 0);
  assert_int_equal(unlink(fx->path), 0);
  assert_int_equal(pepper_load(fx->path, b, why, sizeof(why)), 0);
  assert_memory_not_equal(a, b, TOKEND_PEPPER_BYTES);
}

static void test_pepper_mode_0644_refused(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256] = "";

  write_file(fx->path, 0x11, TOKEND_PEPPER_BYTES, 0644);
  assert_int_equal(pepper_load(fx->path, key, why, sizeof(why)),
                   TOKEND_ECONFIG);
  assert_non_null(strstr(why, "mode"));
  assert_non_null(strstr(why, "644"));
}

static void test_pepper_group_readable_refused(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256] = "";

  write_file(fx->path, 0x11, TOKEND_PEPPER_BYTES, 0640);
  assert_int_equal(pepper_load(fx->path, key, why, sizeof(why)),
                   TOKEND_ECONFIG);
  assert_non_null(strstr(why, "mode"));
}

static void test_pepper_short_file_refused(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256] = "";

  write_file(fx->path, 0x22, TOKEND_PEPPER_BYTES - 1, 0600);
  assert_int_equal(pepper_load(fx->path, key, why, sizeof(why)),
                   TOKEND_ECONFIG);
  assert_non_null(strstr(why, "31 bytes"));
}

static void test_pepper_long_file_refused(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256] = "";

  write_file(fx->path, 0x22, TOKEND_PEPPER_BYTES + 1, 0600);
  assert_int_equal(pepper_load(fx->path, key, why, sizeof(why)),
                   TOKEND_ECONFIG);
  assert_non_null(strstr(why, "33 bytes"));
}

/* An empty file is a damaged pepper, not a missing one: it is refused, not
 * silently replaced by a new key (which would orphan every token). */
static void test_pepper_empty_file_refused_not_replaced(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256] = "";
  struct stat st;

  write_file(fx->path, 0, 0, 0600);
  assert_int_equal(pepper_load(fx->path, key, why, sizeof(why)),
                   TOKEND_ECONFIG);
  assert_non_null(strstr(why, "0 bytes"));
  assert_int_equal(stat(fx->path, &st), 0);
  assert_int_equal(st.st_size, 0);
}

static void test_pepper_directory_refused(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256] = "";

  assert_int_equal(mkdir(fx->path, 0700), 0);
  assert_int_equal(pepper_load(fx->path, key, why, sizeof(why)),
                   TOKEND_ECONFIG);
  assert_non_null(strstr(why, "not a regular file"));
}

static void test_pepper_symlink_refused(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256] = "", target[192];

  snprintf(target, sizeof(target), "%s/real", fx->dir);
  write_file(target, 0x33, TOKEND_PEPPER_BYTES, 0600);
  assert_int_equal(symlink(target, fx->path), 0);
  assert_int_equal(pepper_load(fx->path, key, why, sizeof(why)),
                   TOKEND_ECONFIG);
  assert_non_null(strstr(why, fx->path));
}

typedef struct {
  const char *path;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256];
  int rc;
  volatile int finished;
} load_thread_t;

static void *load_thread(void *arg) {
  load_thread_t *t = arg;

  t->rc = pepper_load(t->path, t->key, t->why, sizeof(t->why));
  __atomic_store_n(&t->finished, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

/* A FIFO is not a regular file: refused at once, without waiting for a
 * writer (which would hang start-up forever). If pepper_load does block,
 * the test opens the FIFO's write end itself to release it, and fails. */
static void test_pepper_fifo_refused_without_blocking(void **state) {
  fixture_t *fx = *state;
  load_thread_t t;
  pthread_t thread;
  struct timespec tick = {0, 10 * 1000 * 1000};
  int i, hung = 0, wfd;

  memset(&t, 0, sizeof(t));
  t.path = fx->path;
  assert_int_equal(mkfifo(fx->path, 0600), 0);
  assert_int_equal(pthread_create(&thread, NULL, load_thread, &t), 0);
  for (i = 0; i < 100 && !__atomic_load_n(&t.finished, __ATOMIC_SEQ_CST); i++)
    nanosleep(&tick, NULL);
  if (!__atomic_load_n(&t.finished, __ATOMIC_SEQ_CST)) {
    hung = 1;
    for (i = 0; i < 100; i++) {
      wfd = open(fx->path, O_WRONLY | O_NONBLOCK);
      if (wfd >= 0) {
        close(wfd);
        break;
      }
      nanosleep(&tick, NULL);
    }
  }
  assert_int_equal(pthread_join(thread, NULL), 0);
  assert_false(hung);
  assert_int_equal(t.rc, TOKEND_ECONFIG);
  assert_non_null(strstr(t.why, "not a regular file"));
}

/* A dangling symlink is not followed to create the pepper at its target. */
static void test_pepper_dangling_symlink_not_followed(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256] = "", target[192];

  snprintf(target, sizeof(target), "%s/elsewhere", fx->dir);
  assert_int_equal(symlink(target, fx->path), 0);
  assert_int_not_equal(pepper_load(fx->path, key, why, sizeof(why)), 0);
  assert_true(strlen(why) > 0);
  assert_int_equal(access(target, F_OK), -1);
}

static void test_pepper_missing_directory_fails_with_reason(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256] = "", path[192];

  snprintf(path, sizeof(path), "%s/missing/pepper", fx->dir);
  assert_int_equal(pepper_load(path, key, why, sizeof(why)), TOKEND_EIO);
  assert_non_null(strstr(why, path));
}

/* tokend reads without creating: a missing pepper is the caller's to
 * judge (with the database it belongs to). */
static void test_pepper_read_missing_creates_nothing(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES];
  char why[256] = "";

  assert_int_equal(pepper_read(fx->path, key, why, sizeof(why)),
                   TOKEND_ENOTFOUND);
  assert_non_null(strstr(why, fx->path));
  assert_int_equal(access(fx->path, F_OK), -1);
}

static void test_pepper_create_never_replaces(void **state) {
  fixture_t *fx = *state;
  uint8_t key[TOKEND_PEPPER_BYTES], again[TOKEND_PEPPER_BYTES];
  char why[256] = "";

  assert_int_equal(pepper_create(fx->path, key, why, sizeof(why)), 0);
  assert_int_not_equal(pepper_create(fx->path, again, why, sizeof(why)), 0);
  assert_int_equal(pepper_read(fx->path, again, why, sizeof(why)), 0);
  assert_memory_equal(key, again, TOKEND_PEPPER_BYTES);
}

/* The same pepper always gives the same fingerprint, another pepper (one
 * bit apart) another one, and the fingerprint holds no run of the
 * pepper's bytes. */
static void test_pepper_fingerprint_identifies_without_revealing(void **state) {
  uint8_t pepper[TOKEND_PEPPER_BYTES], fp1[PEPPER_FINGERPRINT_BYTES];
  uint8_t fp2[PEPPER_FINGERPRINT_BYTES];
  size_t i, j;

  (void)state;
  for (i = 0; i < sizeof(pepper); i++)
    pepper[i] = (uint8_t)(i * 7 + 1);
  pepper_fingerprint(pepper, fp1);
  pepper_fingerprint(pepper, fp2);
  assert_memory_equal(fp1, fp2, sizeof(fp1));
  for (i = 0; i + 4 <= sizeof(pepper); i++)
    for (j = 0; j + 4 <= sizeof(fp1); j++)
      assert_memory_not_equal(fp1 + j, pepper + i, 4);
  pepper[31] ^= 1;
  pepper_fingerprint(pepper, fp2);
  assert_memory_not_equal(fp1, fp2, sizeof(fp1));
}

/* The audit chain key is what tokend has always derived (BLAKE2b-256 of
 * "tokend audit-chain key v1" keyed with the pepper; this vector computed
 * apart, with Python's hashlib): every stored chain, and every copy of one
 * made by tokend-admin, is keyed with it. It is not the fingerprint. */
static void test_pepper_audit_key_is_the_stored_chains_key(void **state) {
  static const uint8_t want[PEPPER_AUDIT_KEY_BYTES] = {
      0xb3, 0xea, 0x41, 0x94, 0x3e, 0x91, 0x85, 0x83, 0xfb, 0xb0, 0x8a,
      0x8f, 0xb0, 0xe2, 0x6e, 0x90, 0xcd, 0xe3, 0xf5, 0x7e, 0x79, 0xa1,
      0x42, 0x9f, 0x52, 0xac, 0x87, 0x7f, 0xad, 0xfb, 0x4d, 0xff};
  uint8_t pepper[TOKEND_PEPPER_BYTES], key[PEPPER_AUDIT_KEY_BYTES];
  uint8_t fp[PEPPER_FINGERPRINT_BYTES];
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(pepper); i++)
    pepper[i] = (uint8_t)(i * 7 + 1);
  pepper_audit_key(pepper, key);
  assert_memory_equal(key, want, sizeof(want));
  pepper_fingerprint(pepper, fp);
  assert_memory_not_equal(key, fp, sizeof(key));
}

#define PEPPER_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* The audit key sealed under one pepper opens with that pepper only, to
 * the same key; a changed byte does not open; two seals differ (a fresh
 * nonce each time). */
static void
test_pepper_audit_key_seal_opens_with_its_pepper_only(void **state) {
  uint8_t a[TOKEND_PEPPER_BYTES], b[TOKEND_PEPPER_BYTES];
  uint8_t key[PEPPER_AUDIT_KEY_BYTES], out[PEPPER_AUDIT_KEY_BYTES];
  uint8_t s1[PEPPER_AUDIT_KEY_SEALED_BYTES], s2[PEPPER_AUDIT_KEY_SEALED_BYTES];

  (void)state;
  randombytes_buf(a, sizeof(a));
  memcpy(b, a, sizeof(b));
  b[0] ^= 1;
  pepper_audit_key(a, key);
  pepper_audit_key_seal(a, key, s1);
  pepper_audit_key_seal(a, key, s2);
  assert_memory_not_equal(s1, s2, sizeof(s1));
  assert_int_equal(pepper_audit_key_open(a, s1, out), 0);
  assert_memory_equal(out, key, sizeof(key));
  assert_int_equal(pepper_audit_key_open(b, s1, out), TOKEND_ECONFIG);
  s2[sizeof(s2) - 1] ^= 1;
  assert_int_equal(pepper_audit_key_open(a, s2, out), TOKEND_ECONFIG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      PEPPER_TEST(test_pepper_created_when_missing),
      PEPPER_TEST(test_pepper_read_missing_creates_nothing),
      PEPPER_TEST(test_pepper_create_never_replaces),
      PEPPER_TEST(test_pepper_fingerprint_identifies_without_revealing),
      PEPPER_TEST(test_pepper_audit_key_is_the_stored_chains_key),
      PEPPER_TEST(test_pepper_audit_key_seal_opens_with_its_pepper_only),
      PEPPER_TEST(test_pepper_loads_same_bytes_back),
      PEPPER_TEST(test_pepper_existing_file_used_as_is),
      PEPPER_TEST(test_pepper_new_files_differ),
      PEPPER_TEST(test_pepper_mode_0644_refused),
      PEPPER_TEST(test_pepper_group_readable_refused),
      PEPPER_TEST(test_pepper_short_file_refused),
      PEPPER_TEST(test_pepper_long_file_refused),
      PEPPER_TEST(test_pepper_empty_file_refused_not_replaced),
      PEPPER_TEST(test_pepper_directory_refused),
      PEPPER_TEST(test_pepper_fifo_refused_without_blocking),
      PEPPER_TEST(test_pepper_symlink_refused),
      PEPPER_TEST(test_pepper_dangling_symlink_not_followed),
      PEPPER_TEST(test_pepper_missing_directory_fails_with_reason),
  };

  return cmocka_run_group_tests_name("pepper", tests, NULL, NULL);
}
