/* The revocation epoch region (issue 15, section 2): the layout tokend
 * writes and clients map read-only. Pure: a layout and its constants, no
 * code; server/core/epoch.c makes the region, client/lib/cache.c reads it.
 *
 * tokend keeps it in a memfd sealed against resizing and against new
 * writable mappings (F_SEAL_FUTURE_WRITE), and hands it to a client that
 * asks (GetCacheRegion) with SCM_RIGHTS. Every change that takes validity
 * away bumps epoch before its answer is sent; heartbeat_ms is refreshed
 * while tokend is current. A client trusts a cached Verify answer only if
 * the epoch it was stored under is the current one and heartbeat_ms is
 * younger than heartbeat_bound_ms by its own CLOCK_MONOTONIC (the same
 * clock on one host). */
#ifndef TOKEND_EPOCH_REGION_H
#define TOKEND_EPOCH_REGION_H

#include <stdatomic.h>
#include <stdint.h>

#define EPOCH_REGION_MAGIC UINT64_C(0x31454843444b4f54) /* "TOKDCHE1" */
#define EPOCH_REGION_VERSION 1
/* One page: the region's size, fixed by the seals. */
#define EPOCH_REGION_BYTES 4096

typedef struct {
  uint64_t magic;   /* EPOCH_REGION_MAGIC */
  uint32_t version; /* EPOCH_REGION_VERSION */
  uint32_t size;    /* EPOCH_REGION_BYTES */
  /* Random, new at each tokend start: a client that sees another one
   * drops its cache. */
  uint64_t generation;
  /* A cached answer is used only while now - heartbeat_ms is below this. */
  uint64_t heartbeat_bound_ms;
  /* tokend's --last-used-granularity-ms: a client reports a token's
   * cached hits at most this often (VerifyRequest.cached_hits). */
  uint64_t last_used_granularity_ms;
  /* Each on its own cache line: written by tokend, read by every client. */
  _Alignas(64) _Atomic uint64_t epoch;
  _Alignas(64) _Atomic int64_t heartbeat_ms; /* CLOCK_MONOTONIC, ms */
} epoch_region_t;

_Static_assert(sizeof(epoch_region_t) <= EPOCH_REGION_BYTES,
               "the epoch region fits its page");

#endif
