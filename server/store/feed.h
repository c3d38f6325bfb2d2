/* feed: following the change feed of a store that several tokend share (a
 * PostgreSQL database serving many hosts), from the event loop.
 *
 * Each host keeps every token in memory and answers Verify from there; a
 * write made through any host must reach every host's memory. The store
 * numbers every change (store.h: change_rev); a follower applies them in
 * that order, through the handler below, from the revision its start-up
 * load included (snapshot_begin). Notifications only wake it: it also
 * reads on a timer and after every reconnection, so a lost notification
 * delays a change and never loses it.
 *
 * Each host reports the revision it has applied and a heartbeat (its
 * lease). A write is answered once every live host has applied it
 * (store_feed_wait), and a host that cannot show it is current fails
 * closed: fresh_until, past which Verify answers UNAVAILABLE, moves on
 * only with each read of the feed that finds nothing left to apply.
 *
 * A backend whose store serves one host (SQLite) has no feed: its
 * store_backend.feed_open is NULL and store_feed_open_url gives NULL.
 *
 * Loop thread only; no call blocks on the store (the follower drives its
 * own connection through the loop). */
#ifndef TOKEND_STORE_FEED_H
#define TOKEND_STORE_FEED_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/records.h"
#include "store/store.h"

/* How far a write had spread when its wait ended. */
typedef struct {
  int64_t revision; /* the write's (store_change_rev after its commit) */
  uint32_t applied; /* live hosts (this one included) that applied it */
  uint32_t pending; /* live hosts that had not */
} store_propagation_t;

typedef struct store_feed_wait_s store_feed_wait_t;
typedef void (*store_feed_wait_cb)(store_feed_wait_t *w,
                                   const store_propagation_t *p);

/* A write waiting to have spread; owned by the caller (embedded in its
 * call), who must keep it alive until cb has run. cb runs exactly once, on
 * the loop thread, never from within store_feed_wait itself. */
struct store_feed_wait_s {
  store_feed_wait_cb cb;
  /* The follower's: */
  int64_t rev;
  uint64_t deadline; /* uv_now() */
  store_feed_wait_t *prev, *next;
};

/* What a follower applies changes to (the server's memory). Each member
 * returns 0, or a TOKEND_E* code that the follower logs (the change then
 * counts as applied: reading it again would fail the same way). */
typedef struct {
  /* A token changed (issued, revoked): row is its current state. */
  int (*token)(void *ctx, const store_token_t *row);
  /* user's admin grant in domain changed: a is the grant now, or NULL if
   * user is no longer an admin of domain. */
  int (*admin)(void *ctx, const char *domain, const char *user,
               const store_admin_t *a);
  /* This host is current for the first time (reported in hosts, then
   * caught up): every write from now on counts it, so it may answer. */
  void (*ready)(void *ctx);
  void *ctx;
} store_feed_handler_t;

/* What store_feed_open_url needs. */
struct store_feed_open_args {
  uv_loop_t *loop;
  const char *host_id; /* this host's stable id (--host-id) */
  uint32_t lease_ms;   /* --lease-ms */
  int64_t rev;         /* the revision the start-up load included */
  /* Pruning the feed (docs/STORE.md): changes below every live host are
   * deleted once older than both the newest keep_revisions revisions and
   * keep_ms (0 keep_revisions: never). A host that finds the revisions it
   * needs pruned reloads every token (handler.token for each) and goes
   * on. */
  uint32_t keep_revisions; /* --feed-keep */
  uint64_t keep_ms;        /* --feed-keep-minutes, in ms */
  const char *version;     /* reported with the heartbeat */
  store_feed_handler_t handler;
};

/* What store_feed_status reports. */
typedef struct {
  int64_t applied_rev;
  char problem[256]; /* why it is not (or was last not) current */
} store_feed_status_t;

struct store_feed_ops {
  /* Queues w (w->cb set by the caller; not after close) until every live
   * host has applied rev, or timeout_ms has passed, then calls w->cb. */
  void (*wait)(store_feed_t *f, store_feed_wait_t *w, int64_t rev,
               uint32_t timeout_ms);
  void (*status)(const store_feed_t *f, store_feed_status_t *out);
  /* Ends every wait (as timed out), tells the store this host is gone (a
   * best effort: a host that dies unannounced stays live for its lease),
   * and closes the follower's handles; the loop must run once more, and
   * the follower frees itself when they are closed. */
  void (*close)(store_feed_t *f);
};

struct store_feed_s {
  const struct store_feed_ops *ops;
  /* uv_now() until which this host may answer Verify from memory: it has
   * applied every write committed before its last read of the feed, and
   * every later write waits for it while its last report (before that
   * read) is younger than the lease: that report's send time plus the
   * lease. 0 until the first (handler.ready). Verify answers UNAVAILABLE
   * from then on (read it; never written outside the follower). */
  uint64_t fresh_until;
};

/* Opens the follower of url's store (its backend's feed_open) and starts
 * it: it connects, listens and catches up from args->rev through the loop.
 * *out gets NULL, with 0, for a backend without a feed. Errors:
 * TOKEND_ECONFIG (unknown scheme), TOKEND_ENOMEM. */
int store_feed_open_url(const char *url,
                        const struct store_feed_open_args *args,
                        store_feed_t **out) TOKEND_MUST_CHECK;

/* The wrappers (see struct store_feed_ops). store_feed_close(NULL) is a
 * no-op. */
void store_feed_wait(store_feed_t *f, store_feed_wait_t *w, int64_t rev,
                     uint32_t timeout_ms);
void store_feed_status(const store_feed_t *f, store_feed_status_t *out);
void store_feed_close(store_feed_t *f);

#endif
