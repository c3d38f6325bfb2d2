/* dispatch: turns one decoded request into its response. Verify is answered
 * at once from the index; Issue, Revoke and List go through the store worker
 * and are answered when their job is done. */
#ifndef TOKEND_DISPATCH_H
#define TOKEND_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"

/* Handles one frame body from c. Returns 0 to go on reading, or a negative
 * TOKEND_E* code if the frame did not decode (an INVALID_ARGUMENT response
 * has then been queued and c should be closed once it is sent). */
int dispatch_frame(conn_t *c, const uint8_t *body, size_t len);

/* The Verify batch (dispatch.c): set up by server_init after the loop, freed
 * by server_cleanup. */
int dispatch_init(server_t *s) TOKEND_MUST_CHECK;
void dispatch_cleanup(server_t *s);
/* Answers every queued Verify now. Runs after each poll phase; conn_send
 * calls it first, so that no answer overtakes a queued one. */
void dispatch_verify_drain(server_t *s);

/* Starts a write-back of last_used_at if any is pending and none is running.
 * Returns 1 if a job was submitted. */
int dispatch_flush_last_used(server_t *s);

/* How long to wait after s->flush_failures failed write-backs in a row:
 * 0 after none, then CONFIG_FLUSH_BACKOFF_MIN_MS doubling up to
 * --flush-backoff-max-ms. */
uint64_t dispatch_flush_backoff_ms(const server_t *s);

/* Ends a refusal interval: writes the repeated refusals counted since the
 * last (authz_refusals_flush). Returns how many rows it submitted. */
size_t dispatch_flush_refusals(server_t *s);

#endif
