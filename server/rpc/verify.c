/* Verify: answered from memory, never touches the store, in batches.
 *
 * rpc_verify_token queues each one (with its cache tag computed and the
 * tag's slot prefetched), and every turn of the loop, after the poll phase
 * has read from every connection that had input, rpc_verify_drain answers
 * them all, in order. The memory misses of one (its cache slot, its entry)
 * then overlap the others' instead of adding up: with a million tokens in
 * use they were most of what a Verify cost beyond the 10,000-token case.
 * Any other answer drains the queue first (rpc_send), so answers leave in
 * the order requests came. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "nodump.h"
#include "rpc/internal.h"
#include "rpc/rpc.h"
#include "token.h"
#include "tokend_time.h"
#include "verify_wire.h"

#define VERIFY_BATCH_MAX 64

_Static_assert(TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID <
                   RPC_VERIFY_REASONS,
               "rpc_verify_counts has a slot for every InvalidReason");

typedef struct {
  sink_t *k;
  uint64_t call_id;
  index_entry_t *e; /* from the cache; NULL: full check needed */
  verify_tag_t tag;
  size_t len;
  char token[TOKEND_TOKEN_MAX_CHARS]; /* a secret: wiped when answered */
} pending_verify_t;

struct verify_batch_s {
  pending_verify_t v[VERIFY_BATCH_MAX];
  size_t n;
  int draining;
};

/* The entry of the token with this tag, or NULL with *reason saying why
 * not. A token not found by its tag gets the full check (shape and
 * checksum, keyed BLAKE2b, index); one the index knows is then remembered
 * under its tag. */
static index_entry_t *verify_lookup(rpc_t *r, const char *tok, size_t len,
                                    const verify_tag_t *tag, int *reason) {
  uint8_t hash[TOKEND_HASH_BYTES];
  index_entry_t *e;

  if ((e = verify_cache_find(r->env.vcache, tag)) != NULL)
    return e;
  if (token_check(tok, len) != 0) {
    *reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED;
    return NULL;
  }
  token_hash(tok, len, r->env.pepper, hash);
  e = index_find(r->env.index, hash);
  /* During a pepper rotation only: a second hash, on a miss. */
  if (e == NULL && r->env.previous_pepper != NULL)
    e = rpc_verify_previous_pepper(r, tok, len, hash);
  sodium_memzero(hash, sizeof(hash));
  if (e == NULL) {
    *reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN;
    return NULL;
  }
  verify_cache_add(r->env.vcache, tag, e);
  return e;
}

/* The verdict on entry e (NULL: invalid for reason), counted where the
 * socket's and HTTP's Verifies are both counted: the domain's counters and
 * rpc_verify_counts. A valid one records its use. Returns the reason
 * (INVALID_REASON_VALID when valid). */
static int verify_judge(rpc_t *r, index_entry_t *e, int reason) {
  if (e == NULL) {
    r->env.domains->unknown->invalid_verifies++;
  } else if (e->revoked_at != 0) {
    reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED;
  } else if (e->expires_at != 0 && r->now_ms >= e->expires_at) {
    reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_EXPIRED;
  } else {
    reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID;
    index_touch(r->env.index, e, r->now_ms,
                r->env.cfg->last_used_granularity_ms);
  }
  if (e != NULL) {
    if (reason == TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID)
      e->domain->valid_verifies++;
    else
      e->domain->invalid_verifies++;
  }
  /* One add on the loop thread: the reasons are the enum's values. */
  if ((unsigned)reason < RPC_VERIFY_REASONS)
    r->verify_counts[reason]++;
  return reason;
}

/* Answers a Verify with entry e (NULL: invalid for reason), encoded by hand
 * (verify_wire), not by protobuf-c: this is the path of nearly every call. */
static void verify_answer(rpc_t *r, sink_t *k, uint64_t call_id,
                          index_entry_t *e, int reason) {
  vw_response_t resp; /* fields set one by one: scopes[] stays unwritten */
  const char *scopes[TOKEND_MAX_SCOPES];
  uint8_t *body;
  size_t i, n;

  resp.call_id = call_id;
  resp.reason = verify_judge(r, e, reason);
  /* One word for the outcome on the wire too, as the client library and
   * tokenctl name it (2 more bytes than leaving it absent). */
  resp.valid = resp.reason == TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID;
  resp.token_id = resp.domain = resp.label = vw_cstr("");
  resp.n_scopes = 0;
  resp.expires_at = 0;
  resp.metadata = vw_cstr("");
  if (e != NULL) {
    resp.token_id = vw_cstr(e->id);
    resp.domain = vw_cstr(index_entry_domain(e));
    resp.label = vw_cstr(index_entry_label(e));
    resp.n_scopes = index_entry_scopes(e, scopes);
    for (i = 0; i < resp.n_scopes; i++)
      resp.scopes[i] = vw_cstr(scopes[i]);
    resp.expires_at = e->expires_at;
    resp.metadata = vw_cstr(index_entry_metadata(e));
  }
  n = vw_response_size(&resp);
  if ((body = k->ops->frame_begin(k, n)) != NULL) {
    vw_response_encode(body, &resp);
    (void)k->ops->frame_end(k, n, 0);
  }
}

/* Answers the whole batch UNAVAILABLE: this host is past its lease. */
static void verify_drain_stale(rpc_t *r, verify_batch_t *b, sink_t **sinks) {
  pending_verify_t *v;
  size_t i;

  for (i = 0; i < b->n; i++) {
    v = &b->v[i];
    sodium_memzero(v->token, v->len);
    r->env.domains->unknown->invalid_verifies++;
    rpc_send_error(r, v->k, v->call_id, TOKEND_EUNAVAIL,
                   "this tokend has not caught up with the store within its "
                   "lease (--lease-ms): it cannot tell whether the token was "
                   "revoked; try another host or again shortly");
    sinks[i] = v->k;
  }
}

void rpc_verify_drain(rpc_t *r) {
  verify_batch_t *b = r->vbatch;
  sink_t *sinks[VERIFY_BATCH_MAX];
  pending_verify_t *v;
  size_t n = b->n, i;
  int reason;

  if (n == 0 || b->draining)
    return;
  b->draining = 1;
  /* Past the lease, memory may miss a revocation: no answer from it. */
  if (rpc_stale(r)) {
    verify_drain_stale(r, b, sinks);
    goto flush;
  }
  /* Each tag's slot was prefetched when queued; now each entry. */
  for (i = 0; i < n; i++) {
    v = &b->v[i];
    v->e = verify_cache_find(r->env.vcache, &v->tag);
    if (v->e != NULL) {
      __builtin_prefetch(v->e);
      __builtin_prefetch((const char *)v->e + 64);
    }
  }
  for (i = 0; i < n; i++) {
    v = &b->v[i];
    reason = 0;
    /* Looked up again if missing: the same token twice in a batch is
     * checked in full once, and remembered for the second. */
    if (v->e == NULL)
      v->e = verify_lookup(r, v->token, v->len, &v->tag, &reason);
    verify_answer(r, v->k, v->call_id, v->e, reason);
    sodium_memzero(v->token, v->len);
    sinks[i] = v->k;
  }
flush:
  if (r->burst_ns != 0)
    prom_hist_observe_n(&r->verify_latency, uv_hrtime() - r->burst_ns, n);
  b->n = 0;
  b->draining = 0;
  /* Hashing the batch's tokens here (a full check), and their cache tags
   * when read, left copies in dead stack frames: clear them once a batch
   * (8 KiB, about 0.1 us, shared by up to 64 Verifies). */
  token_stack_wipe();
  if (r->handles)
    uv_idle_stop(&r->vbatch_idle);
  /* Each sink is flushed once, when its last queued Verify is answered (and
   * its owner may close or be freed then: nothing below touches it
   * again). */
  for (i = 0; i < n; i++)
    if (--sinks[i]->queued == 0)
      sinks[i]->ops->flush(sinks[i]);
}

static void on_vbatch_idle(uv_idle_t *h) {
  rpc_verify_drain(container_of(h, rpc_t, vbatch_idle));
}

static void on_vbatch_check(uv_check_t *h) {
  rpc_verify_drain(container_of(h, rpc_t, vbatch_check));
}

int rpc_verify_init(rpc_t *r) {
  /* Queued Verifies hold their tokens: left out of core dumps, like the
   * connection buffers they came from (one mapping, for tokend's life). */
  r->vbatch = nodump_alloc(sizeof(*r->vbatch));
  if (r->vbatch == NULL)
    return TOKEND_ENOMEM;
  if (r->env.loop == NULL)
    return 0;
  uv_check_init(r->env.loop, &r->vbatch_check);
  uv_idle_init(r->env.loop, &r->vbatch_idle);
  uv_check_start(&r->vbatch_check, on_vbatch_check);
  /* Runs every turn, but keeps no loop alive. Verifies are queued in the
   * poll phase, so this turn's check answers them; the idle handle, active
   * while any wait, is a safety net: poll never blocks with some queued,
   * and the loop does not end before they are answered. */
  uv_unref((uv_handle_t *)&r->vbatch_check);
  r->handles = 1;
  return 0;
}

void rpc_verify_fini(rpc_t *r) {
  if (r->vbatch == NULL)
    return;
  sodium_memzero(r->vbatch, sizeof(*r->vbatch));
  nodump_free(r->vbatch, sizeof(*r->vbatch));
  r->vbatch = NULL;
}

void rpc_verify_token(rpc_t *r, sink_t *k, uint64_t call_id, const char *tok,
                      size_t len) {
  verify_batch_t *b = r->vbatch;
  pending_verify_t *v;

  /* Bounds first: nothing longer can be a token, cached or not. */
  if (len > TOKEND_TOKEN_MAX_CHARS) {
    rpc_verify_drain(r);
    verify_answer(r, k, call_id, NULL,
                  TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED);
    return;
  }
  if (b->n == VERIFY_BATCH_MAX)
    rpc_verify_drain(r);
  if (b->n == VERIFY_BATCH_MAX) {
    /* Still full: only possible from within a drain, which nothing does
     * today; answer at once rather than overflow. */
    verify_tag_t tag;
    int reason = 0;
    index_entry_t *e;

    verify_cache_tag(r->env.vcache, tok, len, &tag);
    e = verify_lookup(r, tok, len, &tag, &reason);
    verify_answer(r, k, call_id, e, reason);
    return;
  }
  v = &b->v[b->n++];
  v->k = k;
  v->call_id = call_id;
  v->len = len;
  memcpy(v->token, tok, len);
  verify_cache_tag(r->env.vcache, tok, len, &v->tag);
  verify_cache_prefetch(r->env.vcache, &v->tag);
  k->queued++;
  if (b->n == 1 && r->handles)
    uv_idle_start(&r->vbatch_idle, on_vbatch_idle);
}

void rpc_verify(rpc_t *r, sink_t *k, uint64_t call_id,
                const authz_actor_t *actor, const Tokend__V1__Request *req) {
  (void)actor;
  rpc_verify_token(r, k, call_id, req->verify->token,
                   rpc_decoded_len(req->verify->token));
  rpc_verify_cached_hits(r, req->verify->token,
                         rpc_decoded_len(req->verify->token),
                         req->verify->cached_hits);
}

int rpc_verify_now(rpc_t *r, const char *tok, size_t len,
                   rpc_verify_result_t *out) {
  index_entry_t *e = NULL;
  verify_tag_t tag;
  int reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED;

  memset(out, 0, sizeof(*out));
  out->token_id = out->domain = out->label = out->metadata = "";
  /* Past the lease (a store several hosts share), as on the socket: no
   * answer from memory that may miss a revocation. */
  if (rpc_stale(r))
    return TOKEND_EUNAVAIL;
  r->now_ms = tokend_now_ms();
  /* Bounds first, as for the socket's: nothing longer can be a token. */
  if (len <= TOKEND_TOKEN_MAX_CHARS) {
    verify_cache_tag(r->env.vcache, tok, len, &tag);
    e = verify_lookup(r, tok, len, &tag, &reason);
    sodium_memzero(&tag, sizeof(tag));
  }
  out->reason = verify_judge(r, e, reason);
  out->valid = out->reason == TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID;
  if (e != NULL) {
    out->token_id = e->id;
    out->domain = index_entry_domain(e);
    out->label = index_entry_label(e);
    out->n_scopes = index_entry_scopes(e, out->scopes);
    out->expires_at = e->expires_at;
    out->metadata = index_entry_metadata(e);
  }
  /* The hash and tag of the token left copies in dead stack frames. */
  token_stack_wipe();
  return 0;
}

const prom_hist_t *rpc_verify_latency(const rpc_t *r) {
  return &r->verify_latency;
}

void rpc_verify_counts(const rpc_t *r, uint64_t counts[RPC_VERIFY_REASONS]) {
  memcpy(counts, r->verify_counts, sizeof(r->verify_counts));
}

const char *rpc_verify_reason_name(int reason) {
  switch (reason) {
  case TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID:
    return "valid";
  case TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED:
    return "malformed";
  case TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN:
    return "unknown";
  case TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED:
    return "revoked";
  case TOKEND__V1__INVALID_REASON__INVALID_REASON_EXPIRED:
    return "expired";
  default:
    return "unspecified";
  }
}
