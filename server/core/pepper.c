#include "core/pepper.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pepper_create(const char *path, uint8_t out[TOKEND_PEPPER_BYTES], char *why,
                  size_t why_len) {
  char dir[4096];
  ssize_t n;
  int fd, dfd, err = 0;

  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(why, why_len, "cannot create pepper file %s: %s", path,
             strerror(errno));
    return TOKEND_EIO;
  }
  randombytes_buf(out, TOKEND_PEPPER_BYTES);
  n = write(fd, out, TOKEND_PEPPER_BYTES);
  if (n != TOKEND_PEPPER_BYTES || fsync(fd) != 0) {
    snprintf(why, why_len, "cannot write pepper file %s: %s", path,
             n < 0 ? strerror(errno) : "short write");
    err = TOKEND_EIO;
  }
  close(fd);
  if (err != 0) {
    unlink(path);
    sodium_memzero(out, TOKEND_PEPPER_BYTES);
    return err;
  }
  /* Make the new directory entry durable too. */
  snprintf(dir, sizeof(dir), "%s", path);
  dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

int pepper_load(const char *path, uint8_t out[TOKEND_PEPPER_BYTES], char *why,
                size_t why_len) {
  int err = pepper_read(path, out, why, why_len);

  return err == TOKEND_ENOTFOUND ? pepper_create(path, out, why, why_len) : err;
}

void pepper_fingerprint(const uint8_t pepper[TOKEND_PEPPER_BYTES],
                        uint8_t out[PEPPER_FINGERPRINT_BYTES]) {
  static const char what[] = PEPPER_FINGERPRINT_INPUT;

  crypto_generichash(out, PEPPER_FINGERPRINT_BYTES, (const uint8_t *)what,
                     sizeof(what) - 1, pepper, TOKEND_PEPPER_BYTES);
}

void pepper_audit_key(const uint8_t pepper[TOKEND_PEPPER_BYTES],
                      uint8_t out[PEPPER_AUDIT_KEY_BYTES]) {
  static const char what[] = PEPPER_AUDIT_KEY_INPUT;

  crypto_generichash(out, PEPPER_AUDIT_KEY_BYTES, (const uint8_t *)what,
                     sizeof(what) - 1, pepper, TOKEND_PEPPER_BYTES);
}

_Static_assert(PEPPER_AUDIT_KEY_SEALED_BYTES == crypto_secretbox_NONCEBYTES +
                                                    crypto_secretbox_MACBYTES +
                                                    PEPPER_AUDIT_KEY_BYTES,
               "the sealed audit key is nonce, MAC and key");

/* The sealing key: its own derivation, so the pepper is never a key twice. */
static void seal_key(const uint8_t pepper[TOKEND_PEPPER_BYTES],
                     uint8_t out[crypto_secretbox_KEYBYTES]) {
  static const char what[] = PEPPER_SEAL_KEY_INPUT;

  crypto_generichash(out, crypto_secretbox_KEYBYTES, (const uint8_t *)what,
                     sizeof(what) - 1, pepper, TOKEND_PEPPER_BYTES);
}

void pepper_audit_key_seal(const uint8_t pepper[TOKEND_PEPPER_BYTES],
                           const uint8_t key[PEPPER_AUDIT_KEY_BYTES],
                           uint8_t out[PEPPER_AUDIT_KEY_SEALED_BYTES]) {
  uint8_t k[crypto_secretbox_KEYBYTES];

  seal_key(pepper, k);
  randombytes_buf(out, crypto_secretbox_NONCEBYTES);
  crypto_secretbox_easy(out + crypto_secretbox_NONCEBYTES, key,
                        PEPPER_AUDIT_KEY_BYTES, out, k);
  sodium_memzero(k, sizeof(k));
}

int pepper_audit_key_open(const uint8_t pepper[TOKEND_PEPPER_BYTES],
                          const uint8_t sealed[PEPPER_AUDIT_KEY_SEALED_BYTES],
                          uint8_t key[PEPPER_AUDIT_KEY_BYTES]) {
  uint8_t k[crypto_secretbox_KEYBYTES];
  int rc;

  seal_key(pepper, k);
  rc = crypto_secretbox_open_easy(
      key, sealed + crypto_secretbox_NONCEBYTES,
      PEPPER_AUDIT_KEY_SEALED_BYTES - crypto_secretbox_NONCEBYTES, sealed, k);
  sodium_memzero(k, sizeof(k));
  if (rc != 0) {
    sodium_memzero(key, PEPPER_AUDIT_KEY_BYTES);
    return TOKEND_ECONFIG;
  }
  return 0;
}

int pepper_read(const char *path, uint8_t out[TOKEND_PEPPER_BYTES], char *why,
                size_t why_len) {
  struct stat st;
  ssize_t n;
  int fd, err = 0;

  /* O_NONBLOCK: a FIFO planted at the path must not hang start-up; it is
   * refused below as not a regular file. */
  fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 && errno == ENOENT) {
    snprintf(why, why_len, "no pepper file at %s", path);
    return TOKEND_ENOTFOUND;
  }
  if (fd < 0) {
    snprintf(why, why_len, "cannot open pepper file %s: %s", path,
             strerror(errno));
    return TOKEND_ECONFIG;
  }
  if (fstat(fd, &st) != 0) {
    snprintf(why, why_len, "cannot stat pepper file %s: %s", path,
             strerror(errno));
    err = TOKEND_EIO;
    goto out_close;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(why, why_len, "pepper file %s is not a regular file", path);
    err = TOKEND_ECONFIG;
    goto out_close;
  }
  if ((st.st_mode & 077) != 0) {
    snprintf(why, why_len,
             "pepper file %s has mode %03o: it must not be accessible to "
             "group or others (chmod 600 it)",
             path, (unsigned)(st.st_mode & 0777));
    err = TOKEND_ECONFIG;
    goto out_close;
  }
  if (st.st_size != TOKEND_PEPPER_BYTES) {
    snprintf(why, why_len, "pepper file %s has %lld bytes, expected %d", path,
             (long long)st.st_size, TOKEND_PEPPER_BYTES);
    err = TOKEND_ECONFIG;
    goto out_close;
  }
  n = read(fd, out, TOKEND_PEPPER_BYTES);
  if (n != TOKEND_PEPPER_BYTES) {
    snprintf(why, why_len, "cannot read pepper file %s", path);
    sodium_memzero(out, TOKEND_PEPPER_BYTES);
    err = TOKEND_EIO;
  }
out_close:
  close(fd);
  return err;
}
