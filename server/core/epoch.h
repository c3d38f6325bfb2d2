/* epoch: tokend's side of the revocation epoch region (common/
 * epoch_region.h): a sealed memfd mapped read-write here, handed to
 * clients that cache Verify answers. Loop thread only. */
#ifndef TOKEND_EPOCH_H
#define TOKEND_EPOCH_H

#include <stdint.h>

#include "epoch_region.h"

typedef struct {
  int fd; /* the memfd; -1 when none */
  epoch_region_t *map;
  int retired; /* epoch_retire() was called */
} epoch_t;

/* Makes the region: a memfd of EPOCH_REGION_BYTES, a fresh random
 * generation, epoch 1, the bound and granularity as given, heartbeat now;
 * sealed against growing, shrinking and new writable mappings. Returns 0, or
 * TOKEND_EUNAVAIL (memfd or sealing not supported: tokend then runs
 * without one, and clients do not cache) or TOKEND_ENOMEM. */
int epoch_open(epoch_t *e, uint32_t heartbeat_bound_ms,
               uint32_t last_used_granularity_ms)
    __attribute__((warn_unused_result));

/* Unmaps and closes; safe on a region that failed to open. */
void epoch_close(epoch_t *e);

/* Takes validity away: bumps the epoch. Must run before the answer of the
 * change that needed it is handed to the peer. No-op without a region. */
void epoch_bump(epoch_t *e);

/* tokend is current: the heartbeat becomes now (CLOCK_MONOTONIC, ms). */
void epoch_heartbeat(epoch_t *e);

/* tokend is going away (shutdown began): the heartbeat becomes 0, older
 * than any bound, so clients stop trusting their caches at once rather
 * than one bound later (a new tokend may already take Revokes). Later
 * heartbeats are ignored. */
void epoch_retire(epoch_t *e);

/* CLOCK_MONOTONIC in ms, as heartbeat_ms counts it. */
int64_t epoch_now_ms(void);

#endif
