/* The revocation epoch region, tokend's side (server/core/epoch.c): what a
 * client handed its descriptor can and cannot do with it, and how the
 * epoch and heartbeat move. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/epoch.h"

static void test_region_header_and_first_epoch(void **state) {
  epoch_t e;

  (void)state;
  assert_int_equal(epoch_open(&e, 1000, 60000), 0);
  assert_true(e.map->magic == EPOCH_REGION_MAGIC);
  assert_int_equal(e.map->version, EPOCH_REGION_VERSION);
  assert_int_equal(e.map->size, EPOCH_REGION_BYTES);
  assert_int_equal(e.map->heartbeat_bound_ms, 1000);
  assert_int_equal(e.map->last_used_granularity_ms, 60000);
  assert_int_equal(atomic_load(&e.map->epoch), 1);
  assert_true(e.map->generation != 0);
  epoch_bump(&e);
  epoch_bump(&e);
  assert_int_equal(atomic_load(&e.map->epoch), 3);
  epoch_close(&e);
}

/* A client gets the fd: it may map it to read, never to write, nor resize
 * it (whose shrinking would fault every mapping), nor undo the seals. */
static void test_clients_cannot_write_or_resize(void **state) {
  epoch_t e;
  void *p;
  int fd;

  (void)state;
  assert_int_equal(epoch_open(&e, 1000, 60000), 0);
  fd = fcntl(e.fd, F_DUPFD_CLOEXEC, 0);
  assert_true(fd >= 0);
  p = mmap(NULL, EPOCH_REGION_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  assert_true(p == MAP_FAILED);
  assert_int_equal(errno, EPERM);
  p = mmap(NULL, EPOCH_REGION_BYTES, PROT_READ, MAP_SHARED, fd, 0);
  assert_true(p != MAP_FAILED);
  assert_int_not_equal(mprotect(p, EPOCH_REGION_BYTES, PROT_WRITE), 0);
  assert_int_not_equal(ftruncate(fd, 0), 0);
  assert_int_not_equal(ftruncate(fd, 2 * EPOCH_REGION_BYTES), 0);
  assert_int_not_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), 0);
  assert_int_not_equal(write(fd, "x", 1), 1);
  /* tokend's own mapping still writes, and the client sees it. */
  epoch_bump(&e);
  assert_int_equal(atomic_load(&((epoch_region_t *)p)->epoch), 2);
  munmap(p, EPOCH_REGION_BYTES);
  close(fd);
  epoch_close(&e);
}

/* Retiring zeroes the heartbeat for good: later beats do not revive it. */
static void test_retired_heartbeat_stays_zero(void **state) {
  epoch_t e;

  (void)state;
  assert_int_equal(epoch_open(&e, 1000, 60000), 0);
  assert_true(atomic_load(&e.map->heartbeat_ms) > 0);
  epoch_retire(&e);
  assert_int_equal(atomic_load(&e.map->heartbeat_ms), 0);
  epoch_heartbeat(&e);
  assert_int_equal(atomic_load(&e.map->heartbeat_ms), 0);
  epoch_close(&e);
  /* Without a region (it failed to open) every call is a no-op. */
  epoch_bump(&e);
  epoch_heartbeat(&e);
  epoch_retire(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_region_header_and_first_epoch),
      cmocka_unit_test(test_clients_cannot_write_or_resize),
      cmocka_unit_test(test_retired_heartbeat_stays_zero),
  };

  return cmocka_run_group_tests_name("epoch", tests, NULL, NULL);
}
