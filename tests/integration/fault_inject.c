/* fault_inject: an LD_PRELOAD shim that makes a process's writes to the files
 * of one directory fail on demand, as a disk that went read-only or bad
 * would. test_faults runs tokend with it.
 *
 *   TOKEND_FAULT_DIR  only files under this directory are affected
 *   TOKEND_FAULT_CTL  a file naming the fault in force, read at every call:
 *                     missing or empty  none
 *                     "EROFS", "EIO"    writes and truncations fail so
 *                     "EIO-SYNC"        fsync and fdatasync fail with EIO
 *                     "STALL-SYNC"      fsync and fdatasync wait until the
 *                                       fault changes, as on a disk that
 *                                       has stopped answering
 *
 * A kernel remounts a file system read-only after errors even while files
 * on it are open for writing (ext4 errors=remount-ro); a test cannot (mount
 * says EBUSY), so this shim plays that part. Only the write-side calls that
 * SQLite makes are wrapped (see `nm -D libsqlite3.so`). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef enum {
  FAULT_NONE,
  FAULT_WRITE,
  FAULT_SYNC,
  FAULT_STALL_SYNC
} fault_kind_t;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

__attribute__((constructor)) static void fault_init(void) {
  real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
  real_pwrite =
      (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
  real_pwrite64 = (ssize_t(*)(int, const void *, size_t, off64_t))dlsym(
      RTLD_NEXT, "pwrite64");
  real_writev =
      (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
  real_ftruncate = (int (*)(int, off_t))dlsym(RTLD_NEXT, "ftruncate");
  real_ftruncate64 = (int (*)(int, off64_t))dlsym(RTLD_NEXT, "ftruncate64");
  real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
}

/* 1 if fd is a regular file under $TOKEND_FAULT_DIR. */
static int fault_fd_in_scope(int fd) {
  const char *dir = getenv("TOKEND_FAULT_DIR");
  char link[64], path[4096];
  struct stat st;
  size_t dlen;
  ssize_t n;

  if (dir == NULL || dir[0] == '\0' || fstat(fd, &st) != 0 ||
      !S_ISREG(st.st_mode))
    return 0;
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  n = readlink(link, path, sizeof(path) - 1);
  if (n <= 0)
    return 0;
  path[n] = '\0';
  dlen = strlen(dir);
  return strncmp(path, dir, dlen) == 0 && path[dlen] == '/';
}

/* The fault in force for fd, and the errno it fails with. */
static fault_kind_t fault_for(int fd, int *err) {
  const char *ctl = getenv("TOKEND_FAULT_CTL");
  char buf[32];
  ssize_t n;
  int cfd, saved = errno;
  fault_kind_t kind = FAULT_NONE;

  if (ctl == NULL || !fault_fd_in_scope(fd))
    goto out;
  cfd = open(ctl, O_RDONLY | O_CLOEXEC);
  if (cfd < 0)
    goto out;
  n = read(cfd, buf, sizeof(buf) - 1);
  close(cfd);
  if (n <= 0)
    goto out;
  buf[n] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
  if (strcmp(buf, "EROFS") == 0) {
    kind = FAULT_WRITE;
    *err = EROFS;
  } else if (strcmp(buf, "EIO") == 0) {
    kind = FAULT_WRITE;
    *err = EIO;
  } else if (strcmp(buf, "EIO-SYNC") == 0) {
    kind = FAULT_SYNC;
    *err = EIO;
  } else if (strcmp(buf, "STALL-SYNC") == 0) {
    kind = FAULT_STALL_SYNC;
  }
out:
  errno = saved;
  return kind;
}

#define FAIL_IF(fd, want)                                                      \
  do {                                                                         \
    int fault_errno_;                                                          \
    if (fault_for((fd), &fault_errno_) == (want)) {                            \
      errno = fault_errno_;                                                    \
      return -1;                                                               \
    }                                                                          \
  } while (0)

ssize_t write(int fd, const void *buf, size_t len) {
  FAIL_IF(fd, FAULT_WRITE);
  return real_write(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) {
  FAIL_IF(fd, FAULT_WRITE);
  return real_pwrite(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off) {
  FAIL_IF(fd, FAULT_WRITE);
  return real_pwrite64(fd, buf, len, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n) {
  FAIL_IF(fd, FAULT_WRITE);
  return real_writev(fd, iov, n);
}

int ftruncate(int fd, off_t len) {
  FAIL_IF(fd, FAULT_WRITE);
  return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len) {
  FAIL_IF(fd, FAULT_WRITE);
  return real_ftruncate64(fd, len);
}

/* While the fault is STALL-SYNC, a sync call does not return. */
static void stall_while_stalled(int fd) {
  int err;

  while (fault_for(fd, &err) == FAULT_STALL_SYNC)
    usleep(5000);
}

int fsync(int fd) {
  FAIL_IF(fd, FAULT_SYNC);
  stall_while_stalled(fd);
  return real_fsync(fd);
}

int fdatasync(int fd) {
  FAIL_IF(fd, FAULT_SYNC);
  stall_while_stalled(fd);
  return real_fdatasync(fd);
}
