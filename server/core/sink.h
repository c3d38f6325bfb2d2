/* sink: where the rpc layer writes its answers, and how it keeps their
 * receiver alive while store jobs owe it answers. The transport (net/conn)
 * implements it; the rpc unit tests implement a fake one. rpc never names a
 * connection (dqlite's gateway never names its conn), and the transport
 * never sees protobuf: it carries frames whose bodies rpc encoded.
 *
 * An interface only (no code), in core/ so that both rpc/ and net/ may
 * include it without including each other. Loop thread only. */
#ifndef TOKEND_SINK_H
#define TOKEND_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "core/peer.h"

typedef struct sink_s sink_t;
typedef struct store_job_s store_job_t;

typedef struct {
  /* Room for one frame of body_len bytes at the end of the sink's output:
   * returns where the body goes (the frame header is written), or NULL if
   * the sink is closed or out of memory (it then closes itself). The
   * pointer is valid until the next call on the sink. */
  uint8_t *(*frame_begin)(sink_t *k, size_t body_len);
  /* Counts in the body_len bytes just written. secret marks a body that
   * carries a token secret (the buffer is wiped when done). Returns 0, or
   * TOKEND_EMSGSIZE when the peer does not read its answers (the sink then
   * closes). */
  int (*frame_end)(sink_t *k, size_t body_len, int secret);
  /* rpc has produced what it had to say for now: hand it to the peer. Also
   * called when the last Verify queued for the sink is answered
   * (sink.queued fell to 0). May free the sink's owner if it is closed and
   * nothing holds it: the caller must not touch k afterwards. */
  void (*flush)(sink_t *k);
  /* A store job that will answer on k begins: k stays allocated (and counts
   * it against --max-pending-calls) until the matching release. release may
   * free the owner (then k must not be touched again); it also flushes. */
  void (*hold)(sink_t *k);
  void (*release)(sink_t *k);
  /* Called first by the done callback of a job whose answer may be large:
   * 1 if the answer must wait for the peer to read what it was sent; the
   * owner then calls job->done(job) again later (or once it is closed, when
   * sink.closed says so). 0: answer now. */
  int (*answer_later)(sink_t *k, store_job_t *job);
  /* Optional (NULL: the transport cannot pass descriptors). The next
   * bytes handed to the peer carry a duplicate of fd (SCM_RIGHTS); the
   * caller keeps fd. If they go out in a way that cannot carry it, the
   * duplicate is closed and the peer gets the bytes alone. Returns 0 or
   * TOKEND_EUNAVAIL. */
  int (*pass_fd)(sink_t *k, int fd);
} sink_ops_t;

/* Embedded in its owner, which recovers itself with container_of. */
struct sink_s {
  const sink_ops_t *ops;
  peer_t peer;
  uint64_t id; /* for log lines */
  /* Set by the owner once nothing more can be written to it; answers owed
   * are then dropped, but holds still must be released. */
  int closed;
  /* Written by rpc only: Verifies queued for this sink and not yet answered.
   * The owner must not be freed (nor close for being done) while any are. */
  unsigned queued;
};

/* The struct that holds member ptr (libuv's container_of). */
#define container_of(ptr, type, member)                                        \
  ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
