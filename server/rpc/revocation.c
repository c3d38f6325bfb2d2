/* Revocation of many tokens at once (issue 17): RevokeLeaked (below), and
 * BulkRevoke, a domain
 * admin's revocation by a list of ids, by creator, of every token, or of
 * every token created before a time. One store job, one transaction: an
 * unknown id revokes nothing. Like Revoke (tokens.c), validity is taken
 * away in memory and the revocation epoch bumped before the answer, which
 * waits for the other hosts (call_propagation). */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "token.h"
#include "tokend_time.h"
#include "validate.h"

/* ---- BulkRevoke ---- */

/* How many index entries one turn of the loop revokes: about 0.1 to 0.6 us
 * each (a lookup and the digest's update, more on a loaded machine), so a
 * part holds Verify up for a millisecond or two, where 100,000 at once
 * held it for 10 to 65 ms (docs/PERFORMANCE.md, "Bulk revoke"). */
#define BULK_APPLY_PART 4096

/* Committed (or found committed): every revoked token verifies REVOKED
 * once apply_more has taken them all, before the answer. */
static int bulk_revoke_apply(call_t *call) {
  store_job_t *job = &call->job;

  if (job->result != 0 && !job->applied)
    return job->result;
  call->applied = 0;
  return job->result;
}

/* One part of the index's revocations; after the last, the epoch. */
static int bulk_revoke_apply_more(call_t *call) {
  store_job_t *job = &call->job;
  const store_revoked_t *v = job->u.bulk_revoke.revoked;
  size_t i = call->applied, n = job->u.bulk_revoke.n_revoked, lost = 0;
  size_t end = n - i > BULK_APPLY_PART ? i + BULK_APPLY_PART : n;
  uint64_t t0 = uv_hrtime();
  index_entry_t *e;

  for (; i < end; i++) {
    e = index_find(call->rpc->env.index, v[i].hash);
    if (e != NULL)
      index_revoke(call->rpc->env.index, e, job->u.bulk_revoke.now);
    else
      lost++;
  }
  if (lost > 0)
    log_error("bulk revoke: %zu token(s) of %s are in the store but not in "
              "the index",
              lost, job->u.bulk_revoke.domain);
  call->applied = end;
  if (uv_hrtime() - t0 > call->applied_max_ns)
    call->applied_max_ns = uv_hrtime() - t0;
  if (end < n)
    return 1;
  /* Before the answer: caching clients see the revocations first. */
  if (n > 0)
    epoch_bump(&call->rpc->epoch);
  /* What each turn of the loop (and so a Verify) waited at most. */
  log_info("bulk revoke: %zu tokens of %s revoked in memory, in parts of at "
           "most %d taking up to %.2f ms each",
           n, job->u.bulk_revoke.domain, BULK_APPLY_PART,
           (double)call->applied_max_ns / 1e6);
  return 0;
}

static void bulk_revoke_not_found(const call_t *call, char *msg, size_t len) {
  snprintf(msg, len,
           "token_ids: no token %s in this domain; nothing was revoked",
           call->job.u.bulk_revoke.missing);
}

static void bulk_revoke_ok(call_t *call) {
  store_job_t *job = &call->job;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__BulkRevokeResponse br = TOKEND__V1__BULK_REVOKE_RESPONSE__INIT;
  Tokend__V1__Propagation prop;

  log_info("bulk revoke: domain=%s by=%s: %zu revoked, %zu already",
           job->u.bulk_revoke.domain, job->u.bulk_revoke.by,
           job->u.bulk_revoke.n_revoked, job->u.bulk_revoke.n_already);
  if (!rpc_sink_open(call->sink))
    return;
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_BULK_REVOKE;
  resp.bulk_revoke = &br;
  br.revoked = (uint32_t)job->u.bulk_revoke.n_revoked;
  br.already_revoked = (uint32_t)job->u.bulk_revoke.n_already;
  br.propagation = call_propagation(call, &prop);
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static void bulk_revoke_fini(call_t *call) {
  free(call->job.u.bulk_revoke.revoked);
  free((void *)call->job.u.bulk_revoke.sel.ids);
}

static const call_kind_t bulk_revoke_kind = {
    .method = "BulkRevoke",
    .flags = CALL_WRITE | CALL_PROPAGATE,
    .what = "revoke the tokens",
    .apply = bulk_revoke_apply,
    .not_found = bulk_revoke_not_found,
    .ok = bulk_revoke_ok,
    .fini = bulk_revoke_fini,
    .apply_more = bulk_revoke_apply_more,
};

/* Checks the selector of req (exactly one; each valid) and fills sel; ids
 * (malloc'd, the caller's) gets a copy of the token ids. 0, or
 * TOKEND_EINVAL with why naming the field. */
static int bulk_select(const Tokend__V1__BulkRevokeRequest *req,
                       store_bulk_select_t *sel,
                       char (**ids)[TOKEND_TOKEN_ID_BYTES], char *why,
                       size_t why_len) {
  const char *names[4];
  size_t n = 0, i, j;

  if (req->n_token_ids > 0)
    names[n++] = "token_ids";
  if (req->created_by[0] != '\0')
    names[n++] = "created_by";
  if (req->all)
    names[n++] = "all";
  if (req->created_before != 0)
    names[n++] = "created_before";
  if (n == 0) {
    snprintf(why, why_len,
             "set one of token_ids, created_by, all, created_before: which "
             "tokens to revoke");
    return TOKEND_EINVAL;
  }
  if (n > 1) {
    snprintf(why, why_len,
             "%s and %s: set only one of token_ids, created_by, all, "
             "created_before",
             names[0], names[1]);
    return TOKEND_EINVAL;
  }
  memset(sel, 0, sizeof(*sel));
  if (req->all) {
    sel->by = STORE_BULK_ALL;
    return 0;
  }
  if (req->created_by[0] != '\0') {
    sel->by = STORE_BULK_CREATOR;
    if (validate_user(req->created_by, why, why_len) != 0)
      return TOKEND_EINVAL;
    return 0;
  }
  if (req->created_before != 0) {
    sel->by = STORE_BULK_BEFORE;
    if (req->created_before < 0) {
      snprintf(why, why_len,
               "created_before must be a time in Unix milliseconds");
      return TOKEND_EINVAL;
    }
    sel->created_before = req->created_before;
    return 0;
  }
  sel->by = STORE_BULK_IDS;
  if (req->n_token_ids > TOKEND_BULK_IDS_MAX) {
    snprintf(why, why_len, "token_ids: at most %d ids in one call (%zu given)",
             TOKEND_BULK_IDS_MAX, req->n_token_ids);
    return TOKEND_EINVAL;
  }
  for (i = 0; i < req->n_token_ids; i++) {
    if (token_id_check(req->token_ids[i], strlen(req->token_ids[i])) != 0) {
      snprintf(why, why_len,
               "token_ids[%zu] is not a token id (tok_ followed by 20 "
               "letters and digits)",
               i);
      return TOKEND_EINVAL;
    }
    /* At most 1000: the quadratic look is a few microseconds. */
    for (j = 0; j < i; j++)
      if (strcmp(req->token_ids[i], req->token_ids[j]) == 0) {
        snprintf(why, why_len, "token_ids: %s is given twice",
                 req->token_ids[i]);
        return TOKEND_EINVAL;
      }
  }
  if ((*ids = calloc(req->n_token_ids, sizeof(**ids))) == NULL) {
    snprintf(why, why_len, "out of memory");
    return TOKEND_ENOMEM;
  }
  for (i = 0; i < req->n_token_ids; i++)
    snprintf((*ids)[i], sizeof((*ids)[i]), "%s", req->token_ids[i]);
  sel->ids = (const char(*)[TOKEND_TOKEN_ID_BYTES]) * ids;
  sel->n_ids = req->n_token_ids;
  return 0;
}

void rpc_bulk_revoke(rpc_t *r, sink_t *k, uint64_t call_id,
                     const authz_actor_t *actor,
                     const Tokend__V1__Request *request) {
  const Tokend__V1__BulkRevokeRequest *req = request->bulk_revoke;
  char why[TOKEND_STATUS_MESSAGE_BYTES], what[96];
  char(*ids)[TOKEND_TOKEN_ID_BYTES] = NULL;
  store_bulk_select_t sel;
  call_t *call;
  size_t i;
  int err;

  if (rpc_reject_nul(r, k, call_id, req->domain, "domain") ||
      rpc_reject_nul(r, k, call_id, req->created_by, "created_by"))
    return;
  for (i = 0; i < req->n_token_ids; i++)
    if (rpc_reject_nul(r, k, call_id, req->token_ids[i], "token_ids"))
      return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if ((err = bulk_select(req, &sel, &ids, why, sizeof(why))) != 0) {
    rpc_send_error(r, k, call_id, err, why);
    return;
  }
  if (rpc_refuse_not_domain_admin(r, k, call_id, actor, "BulkRevoke",
                                  req->domain) ||
      (call = call_new(r, k, call_id, &bulk_revoke_kind,
                       STORE_JOB_BULK_REVOKE)) == NULL) {
    free(ids);
    return;
  }
  snprintf(call->job.u.bulk_revoke.domain,
           sizeof(call->job.u.bulk_revoke.domain), "%s", req->domain);
  snprintf(call->job.u.bulk_revoke.by, sizeof(call->job.u.bulk_revoke.by), "%s",
           authz_doer(&k->peer, actor));
  call->job.u.bulk_revoke.now = tokend_now_ms();
  call->job.u.bulk_revoke.sel = sel;
  if (sel.by == STORE_BULK_CREATOR) {
    snprintf(call->job.u.bulk_revoke.created_by,
             sizeof(call->job.u.bulk_revoke.created_by), "%s", req->created_by);
    call->job.u.bulk_revoke.sel.created_by = call->job.u.bulk_revoke.created_by;
  }
  switch (sel.by) {
  case STORE_BULK_IDS:
    snprintf(what, sizeof(what), "by id (%zu given)", sel.n_ids);
    break;
  case STORE_BULK_CREATOR:
    snprintf(what, sizeof(what), "created by %s", req->created_by);
    break;
  case STORE_BULK_BEFORE:
    snprintf(what, sizeof(what), "created before %" PRId64, sel.created_before);
    break;
  case STORE_BULK_ALL:
  default:
    snprintf(what, sizeof(what), "every token of the domain");
    break;
  }
  authz_audit_fill(&call->audit, &k->peer, actor, "BulkRevoke", req->domain, "",
                   0, what);
  call->job.audit = &call->audit;
  authz_job_require_admin(&call->job, &k->peer, actor, req->domain);
  call_submit(call);
}

/* ---- RevokeLeaked ---- */

/* The longest source (a URL) recorded in the audit log. */
#define LEAKED_SOURCE_MAX 200

/* A call's secrets as the store job sees them (items: the well-formed
 * ones, by hash) and, for the answer, where each of the request's tokens
 * went (slot[i]: its item, or -1 for a malformed one). Never a secret. */
typedef struct {
  size_t n_tokens;
  int slot[TOKEND_LEAKED_MAX];
  store_hash_token_t items[TOKEND_LEAKED_MAX];
} leaked_block_t;

static leaked_block_t *leaked_block(call_t *call) {
  return container_of(call->job.u.leaked.items, leaked_block_t, items);
}

/* Committed (or found committed): the tokens it revoked verify REVOKED
 * here; at most TOKEND_LEAKED_MAX, so in one go. */
static int leaked_apply(call_t *call) {
  store_job_t *job = &call->job;
  index_entry_t *e;
  size_t i;

  if (job->result != 0 && !job->applied)
    return job->result;
  for (i = 0; i < job->u.leaked.n; i++) {
    if (!job->u.leaked.items[i].revoked_now)
      continue;
    e = index_find(call->rpc->env.index, job->u.leaked.items[i].hash);
    if (e != NULL)
      index_revoke(call->rpc->env.index, e, job->u.leaked.now);
  }
  /* Before the answer: caching clients see the revocations first. */
  if (job->u.leaked.n_revoked > 0)
    epoch_bump(&call->rpc->epoch);
  return job->result;
}

static void leaked_ok(call_t *call) {
  store_job_t *job = &call->job;
  leaked_block_t *b = leaked_block(call);
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__RevokeLeakedResponse lr =
      TOKEND__V1__REVOKE_LEAKED_RESPONSE__INIT;
  Tokend__V1__Propagation prop;
  protobuf_c_boolean found[TOKEND_LEAKED_MAX];
  size_t i, n_found = 0;

  for (i = 0; i < b->n_tokens; i++) {
    found[i] = b->slot[i] >= 0 && b->items[b->slot[i]].found;
    n_found += found[i] != 0;
  }
  /* The source, never a secret; which domains is in the audit log. */
  log_info("revoke leaked: %zu given, %zu known, %zu revoked, by %s, source "
           "%s",
           b->n_tokens, n_found, job->u.leaked.n_revoked, job->u.leaked.by,
           job->u.leaked.source[0] != '\0' ? job->u.leaked.source : "-");
  if (!rpc_sink_open(call->sink))
    return;
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_REVOKE_LEAKED;
  resp.revoke_leaked = &lr;
  lr.n_found = b->n_tokens;
  lr.found = found;
  lr.revoked = (uint32_t)job->u.leaked.n_revoked;
  lr.propagation = call_propagation(call, &prop);
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static void leaked_fini(call_t *call) {
  leaked_block_t *b = leaked_block(call);

  /* Hashes only, but keyed hashes of secrets: wiped all the same. */
  sodium_memzero(b, sizeof(*b));
  free(b);
}

static const call_kind_t leaked_kind = {
    .method = "RevokeLeaked",
    .flags = CALL_WRITE | CALL_PROPAGATE,
    .what = "revoke the leaked tokens",
    .apply = leaked_apply,
    .ok = leaked_ok,
    .fini = leaked_fini,
};

/* 0 if source is a printable one-line string of at most LEAKED_SOURCE_MAX
 * bytes (a URL), else TOKEND_EINVAL with why. */
static int leaked_source_check(const char *source, char *why, size_t why_len) {
  const unsigned char *p;

  if (strlen(source) > LEAKED_SOURCE_MAX) {
    snprintf(why, why_len, "source: at most %d bytes (a URL)",
             LEAKED_SOURCE_MAX);
    return TOKEND_EINVAL;
  }
  for (p = (const unsigned char *)source; *p != '\0'; p++)
    if (*p < 0x20 || *p == 0x7f) {
      snprintf(why, why_len, "source: no control characters (a URL)");
      return TOKEND_EINVAL;
    }
  return 0;
}

void rpc_revoke_leaked(rpc_t *r, sink_t *k, uint64_t call_id,
                       const authz_actor_t *actor,
                       const Tokend__V1__Request *request) {
  const Tokend__V1__RevokeLeakedRequest *req = request->revoke_leaked;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  const index_entry_t *e;
  leaked_block_t *b;
  call_t *call;
  size_t i, len, n = 0;

  if (rpc_reject_nul(r, k, call_id, req->source, "source"))
    return;
  if (req->n_tokens == 0 || req->n_tokens > TOKEND_LEAKED_MAX) {
    snprintf(why, sizeof(why), "tokens: give 1 to %d secrets (%zu given)",
             TOKEND_LEAKED_MAX, req->n_tokens);
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if (leaked_source_check(req->source, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if ((b = calloc(1, sizeof(*b))) == NULL) {
    rpc_send_error(r, k, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  /* A malformed secret (or one with a NUL) is nobody's token: not found,
   * and never looked up. */
  b->n_tokens = req->n_tokens;
  for (i = 0; i < req->n_tokens; i++) {
    len = rpc_decoded_len(req->tokens[i]);
    b->slot[i] = -1;
    if (len != strlen(req->tokens[i]) || token_check(req->tokens[i], len) != 0)
      continue;
    token_hash(req->tokens[i], len, r->env.pepper, b->items[n].hash);
    /* During a pepper rotation, a token not yet re-keyed is in the store
     * under its previous pepper's hash. */
    if (index_find(r->env.index, b->items[n].hash) == NULL &&
        (e = rpc_previous_pepper_find(r, req->tokens[i], len)) != NULL)
      memcpy(b->items[n].hash, e->hash, sizeof(b->items[n].hash));
    b->slot[i] = (int)n++;
  }
  token_stack_wipe();
  if ((call = call_new(r, k, call_id, &leaked_kind, STORE_JOB_LEAKED)) ==
      NULL) {
    sodium_memzero(b, sizeof(*b));
    free(b);
    return;
  }
  call->job.u.leaked.items = b->items;
  call->job.u.leaked.n = n;
  call->job.u.leaked.now = tokend_now_ms();
  snprintf(call->job.u.leaked.by, sizeof(call->job.u.leaked.by), "leaked:%s",
           authz_doer(&k->peer, actor));
  snprintf(call->job.u.leaked.source, sizeof(call->job.u.leaked.source), "%s",
           req->source);
  authz_audit_fill(&call->audit, &k->peer, actor, "RevokeLeaked", "", "", 0,
                   "");
  call->job.audit = &call->audit;
  call_submit(call);
}
