/* The revocation epoch region (see epoch.h and common/epoch_region.h). */
#define _GNU_SOURCE /* memfd_create, F_ADD_SEALS */
#include "core/epoch.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "tokend_error.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010 /* Linux 5.1 */
#endif

int64_t epoch_now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int epoch_open(epoch_t *e, uint32_t heartbeat_bound_ms,
               uint32_t last_used_granularity_ms) {
  void *p;
  int err;

  e->fd = -1;
  e->map = NULL;
  e->retired = 0;
  e->fd = memfd_create("tokend-epoch", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (e->fd < 0)
    return errno == ENOMEM ? TOKEND_ENOMEM : TOKEND_EUNAVAIL;
  if (ftruncate(e->fd, EPOCH_REGION_BYTES) != 0) {
    err = TOKEND_ENOMEM;
    goto err_close;
  }
  p = mmap(NULL, EPOCH_REGION_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, e->fd,
           0);
  if (p == MAP_FAILED) {
    err = TOKEND_ENOMEM;
    goto err_close;
  }
  e->map = p;
  memset(p, 0, EPOCH_REGION_BYTES);
  e->map->magic = EPOCH_REGION_MAGIC;
  e->map->version = EPOCH_REGION_VERSION;
  e->map->size = EPOCH_REGION_BYTES;
  randombytes_buf(&e->map->generation, sizeof(e->map->generation));
  e->map->heartbeat_bound_ms = heartbeat_bound_ms;
  e->map->last_used_granularity_ms = last_used_granularity_ms;
  atomic_store(&e->map->epoch, 1);
  atomic_store(&e->map->heartbeat_ms, epoch_now_ms());
  /* Our mapping stays writable; nobody the fd is handed to can map it for
   * writing, resize it, or undo the seals. */
  if (fcntl(e->fd, F_ADD_SEALS,
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) !=
      0) {
    err = TOKEND_EUNAVAIL;
    goto err_unmap;
  }
  return 0;

err_unmap:
  munmap(e->map, EPOCH_REGION_BYTES);
  e->map = NULL;
err_close:
  close(e->fd);
  e->fd = -1;
  return err;
}

void epoch_close(epoch_t *e) {
  if (e->map != NULL)
    munmap(e->map, EPOCH_REGION_BYTES);
  if (e->fd >= 0)
    close(e->fd);
  e->map = NULL;
  e->fd = -1;
}

void epoch_bump(epoch_t *e) {
  /* seq_cst: ordered before the write(2) of the answer that follows. */
  if (e != NULL && e->map != NULL)
    atomic_fetch_add(&e->map->epoch, 1);
}

void epoch_heartbeat(epoch_t *e) {
  if (e != NULL && e->map != NULL && !e->retired)
    atomic_store(&e->map->heartbeat_ms, epoch_now_ms());
}

void epoch_retire(epoch_t *e) {
  if (e == NULL || e->map == NULL)
    return;
  e->retired = 1;
  atomic_store(&e->map->heartbeat_ms, 0);
}
