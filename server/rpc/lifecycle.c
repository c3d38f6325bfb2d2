/* The whole life of a token (issue 17): its metadata (set at Issue or by
 * Edit, returned by Verify), Lookup (a token's info without using it),
 * Edit (label, metadata, expiry; scopes only narrowed) and Roll (a new
 * token for an old one that expires after a grace period).
 *
 * Edit and Roll write through store jobs (store/jobs.h: EDIT, ROLL) that
 * read the stored row in the write transaction, so a refusal that needs it
 * (scopes not held, an expiry the domain's policy forbids, a revoked
 * token) changes nothing; both apply the row's new state to the index
 * (which Verify answers from), bump the revocation epoch before answering
 * (caching clients drop what they hold: a narrower token, or new metadata)
 * and answer once every live host applied the write. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "token.h"
#include "tokend_time.h"
#include "validate.h"

/* The longest grace a Roll may give the old token: 30 days. */
#define ROLL_GRACE_MAX_MS ((int64_t)30 * 24 * 3600 * 1000)

/* ---- metadata ---- */

/* Copies the JSON text in[0..len) into out without the whitespace between
 * its tokens: numbers, strings and the keys' order stay byte for byte as
 * sent (a parser's re-serialization would not: 0.1 may come back as
 * 0.10000000000000001). in is valid JSON, so outside strings whitespace is
 * only ever between tokens, and inside them there is no raw control
 * character. */
static size_t json_compact(const char *in, size_t len, char *out) {
  size_t i, n = 0;
  int in_string = 0, escaped = 0;

  for (i = 0; i < len; i++) {
    char ch = in[i];

    if (in_string) {
      if (escaped)
        escaped = 0;
      else if (ch == '\\')
        escaped = 1;
      else if (ch == '"')
        in_string = 0;
    } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
      continue;
    } else if (ch == '"') {
      in_string = 1;
    }
    out[n++] = ch;
  }
  out[n] = '\0';
  return n;
}

int rpc_metadata_normalize(const char *in, char out[TOKEND_METADATA_BYTES],
                           char *why, size_t why_len) {
  size_t len = rpc_decoded_len(in);
  json_error_t jerr;
  json_t *v;
  int err = 0;

  out[0] = '\0';
  if (len == 0)
    return 0;
  /* Bound before the parse: the parser allocates per value. */
  if (len > TOKEND_MAX_METADATA) {
    snprintf(why, why_len, "metadata: %zu bytes, at most %d", len,
             TOKEND_MAX_METADATA);
    return TOKEND_EINVAL;
  }
  /* jansson validates (UTF-8, no NUL, no duplicate keys; integers read as
   * reals, so that one past 64 bits is still JSON) ... */
  v = json_loadb(in, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL,
                 &jerr);
  if (v == NULL) {
    snprintf(why, why_len, "metadata: not JSON (%s at byte %d)", jerr.text,
             jerr.position);
    return TOKEND_EINVAL;
  }
  if (!json_is_object(v)) {
    snprintf(why, why_len, "metadata: must be a JSON object ({...})");
    err = TOKEND_EINVAL;
  }
  json_decref(v);
  /* ... and what is kept is the text as sent, compact: no whitespace and
   * no raw control characters (an HTTP header can carry it). It can only
   * shrink, so it fits. */
  if (err == 0)
    json_compact(in, len, out);
  return err;
}

/* Answers INVALID_ARGUMENT and returns 1 unless id is a token id. */
static int reject_token_id(rpc_t *r, sink_t *k, uint64_t call_id,
                           const char *id) {
  if (token_id_check(id, strlen(id)) == 0)
    return 0;
  rpc_send_error(r, k, call_id, TOKEND_EINVAL,
                 "token_id is not a token id (tok_ followed by 20 letters "
                 "and digits)");
  return 1;
}

/* last_used_at in memory may be ahead of the store's. */
static void row_last_used(const rpc_t *r, store_token_t *row) {
  const index_entry_t *e = index_find(r->env.index, row->hash);

  if (e != NULL && e->last_used_at > row->last_used_at)
    row->last_used_at = e->last_used_at;
}

/* ---- Lookup ---- */

static void lookup_not_found(const call_t *call, char *msg, size_t len) {
  (void)call;
  snprintf(msg, len, "no such token in this domain");
}

static void lookup_ok(call_t *call) {
  store_token_t *row = &call->job.u.lookup.row;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__LookupResponse lr = TOKEND__V1__LOOKUP_RESPONSE__INIT;
  Tokend__V1__TokenInfo info;
  char *scopes[TOKEND_MAX_SCOPES];

  if (!rpc_sink_open(call->sink))
    return;
  row_last_used(call->rpc, row);
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_LOOKUP;
  resp.lookup = &lr;
  rpc_info_from_row(&info, row, scopes, tokend_now_ms());
  lr.info = &info;
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static const call_kind_t lookup_kind = {
    .method = "Lookup",
    .flags = 0,
    .what = "look the token up",
    .not_found = lookup_not_found,
    .ok = lookup_ok,
};

void rpc_lookup(rpc_t *r, sink_t *k, uint64_t call_id,
                const authz_actor_t *actor,
                const Tokend__V1__Request *request) {
  const Tokend__V1__LookupRequest *req = request->lookup;
  char why[TOKEND_STATUS_MESSAGE_BYTES], id[TOKEND_TOKEN_ID_BYTES];
  size_t tok_len = rpc_decoded_len(req->token);
  uint8_t hash[TOKEND_HASH_BYTES];
  const index_entry_t *e;
  call_t *call;

  if (rpc_reject_nul(r, k, call_id, req->domain, "domain") ||
      rpc_reject_nul(r, k, call_id, req->token_id, "token_id"))
    return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if ((req->token_id[0] != '\0') == (tok_len != 0)) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL,
                   "token_id, token: give exactly one");
    return;
  }
  if (req->token_id[0] != '\0' && reject_token_id(r, k, call_id, req->token_id))
    return;
  if (tok_len != 0 && (tok_len > TOKEND_TOKEN_MAX_CHARS ||
                       token_check(req->token, tok_len) != 0)) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL,
                   "token: not a token (wrong shape or checksum)");
    return;
  }
  if (rpc_refuse_not_domain_admin(r, k, call_id, actor, "Lookup", req->domain))
    return;
  if (tok_len != 0) {
    /* By the secret: the index names the token (as Verify would find it,
     * but nothing is counted and last_used_at does not move). Another
     * domain's token is as unknown as none. */
    token_hash(req->token, tok_len, r->env.pepper, hash);
    e = index_find(r->env.index, hash);
    sodium_memzero(hash, sizeof(hash));
    /* During a pepper rotation, a token not yet re-keyed (and not
     * re-keyed by this: a Lookup is not a use). */
    if (e == NULL)
      e = rpc_previous_pepper_find(r, req->token, tok_len);
    token_stack_wipe();
    if (e == NULL || strcmp(index_entry_domain(e), req->domain) != 0) {
      rpc_send_error(r, k, call_id, TOKEND_ENOTFOUND,
                     "no such token in this domain");
      return;
    }
    memcpy(id, e->id, sizeof(id));
  } else {
    snprintf(id, sizeof(id), "%s", req->token_id);
  }
  if ((call = call_new(r, k, call_id, &lookup_kind, STORE_JOB_LOOKUP)) == NULL)
    return;
  snprintf(call->job.u.lookup.domain, sizeof(call->job.u.lookup.domain), "%s",
           req->domain);
  memcpy(call->job.u.lookup.id, id, sizeof(call->job.u.lookup.id));
  authz_job_require_admin(&call->job, &k->peer, actor, req->domain);
  call_submit(call);
}

/* ---- Edit ---- */

/* The row's new state into the index: what Verify answers. */
static int index_apply_row(rpc_t *r, const store_token_t *row) {
  index_entry_t *e = index_find(r->env.index, row->hash);
  int err;

  if (e == NULL) {
    log_error("token %s is in the store but not in the index", row->id);
    return TOKEND_EINTERNAL;
  }
  if ((err = index_set_strings(r->env.index, e, row->label, row->scopes,
                               row->metadata)) != 0 ||
      (err = index_set_expiry(r->env.index, e, row->expires_at)) != 0)
    log_error("token %s: changed in the store, not in memory (out of memory)",
              row->id);
  return err;
}

static int edit_apply(call_t *call) {
  store_job_t *job = &call->job;
  int err = job->result;

  if (err != 0 && !job->applied)
    return err;
  if (index_apply_row(call->rpc, job->u.edit.after) != 0 && err == 0)
    err = TOKEND_EINTERNAL;
  /* Before the answer: caching clients drop what they hold of it (a
   * narrower token; or a label or metadata they would hand out). */
  epoch_bump(&call->rpc->epoch);
  return err;
}

static void edit_not_found(const call_t *call, char *msg, size_t len) {
  (void)call;
  snprintf(msg, len, "no token with this id in this domain");
}

/* Who made call, for its log line: the acting user, or a break-glass
 * operator's uid (whose audit row has no actor), as authz_doer says. */
static const char *call_doer(const call_t *call, char *buf, size_t len) {
  if (call->audit.actor[0] != '\0')
    return call->audit.actor;
  snprintf(buf, len, "uid:%u", (unsigned)call->audit.peer_uid);
  return buf;
}

static void edit_ok(call_t *call) {
  store_job_t *job = &call->job;
  store_token_t *row = job->u.edit.after;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__EditResponse er = TOKEND__V1__EDIT_RESPONSE__INIT;
  Tokend__V1__Propagation prop;
  Tokend__V1__TokenInfo info;
  char *scopes[TOKEND_MAX_SCOPES], by[TOKEND_USER_BYTES];

  log_info("edit: domain=%s id=%s by=%s: %s", row->domain, row->id,
           call_doer(call, by, sizeof(by)), call->audit.detail);
  if (!rpc_sink_open(call->sink))
    return;
  row_last_used(call->rpc, row);
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_EDIT;
  resp.edit = &er;
  rpc_info_from_row(&info, row, scopes, tokend_now_ms());
  er.info = &info;
  er.propagation = call_propagation(call, &prop);
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static void edit_fini(call_t *call) { free(call->job.u.edit.want); }

/* Every edit waits to spread: whatever it changed, another host's Verify
 * answers it once the call returns. */
static const call_kind_t edit_kind = {
    .method = "Edit",
    .flags = CALL_WRITE | CALL_PROPAGATE,
    .what = "edit the token",
    .apply = edit_apply,
    .not_found = edit_not_found,
    .ok = edit_ok,
    .fini = edit_fini,
};

/* Validates an Edit's fields into want; 0, or TOKEND_EINVAL with why. */
static int edit_want(const Tokend__V1__EditRequest *req, store_token_t *want,
                     int64_t now, char *why, size_t why_len) {
  size_t i, j, off = 0, len;

  if (!req->set_label && !req->set_metadata && !req->set_expires_at &&
      !req->set_scopes) {
    snprintf(why, why_len,
             "set_label, set_metadata, set_expires_at, set_scopes: nothing "
             "to change");
    return TOKEND_EINVAL;
  }
  if (req->set_label) {
    if (validate_label(req->label, why, why_len) != 0)
      return TOKEND_EINVAL;
    snprintf(want->label, sizeof(want->label), "%s", req->label);
  }
  if (req->set_metadata &&
      rpc_metadata_normalize(req->metadata, want->metadata, why, why_len) != 0)
    return TOKEND_EINVAL;
  if (req->set_expires_at) {
    if (req->expires_at < 0 ||
        (req->expires_at != 0 && req->expires_at <= now)) {
      snprintf(why, why_len,
               "expires_at must be a future time in Unix milliseconds, or 0 "
               "for no expiry");
      return TOKEND_EINVAL;
    }
    want->expires_at = req->expires_at;
  }
  if (req->set_scopes) {
    if (req->n_scopes > TOKEND_MAX_SCOPES) {
      snprintf(why, why_len, "too many scopes: at most %d", TOKEND_MAX_SCOPES);
      return TOKEND_EINVAL;
    }
    /* Validated one by one: each fits, so the joined string fits. */
    for (i = 0; i < req->n_scopes; i++) {
      if (validate_scope(req->scopes[i], why, why_len) != 0)
        return TOKEND_EINVAL;
      for (j = 0; j < i; j++)
        if (strcmp(req->scopes[i], req->scopes[j]) == 0) {
          snprintf(why, why_len, "scopes: %s is given twice", req->scopes[i]);
          return TOKEND_EINVAL;
        }
      len = strlen(req->scopes[i]);
      if (i > 0)
        want->scopes[off++] = ' ';
      memcpy(want->scopes + off, req->scopes[i], len);
      off += len;
    }
    want->scopes[off] = '\0';
  }
  return 0;
}

void rpc_edit(rpc_t *r, sink_t *k, uint64_t call_id, const authz_actor_t *actor,
              const Tokend__V1__Request *request) {
  const Tokend__V1__EditRequest *req = request->edit;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  int64_t now = tokend_now_ms();
  store_token_t *rows;
  call_t *call;
  size_t i;

  if (rpc_reject_nul(r, k, call_id, req->domain, "domain") ||
      rpc_reject_nul(r, k, call_id, req->token_id, "token_id") ||
      rpc_reject_nul(r, k, call_id, req->label, "label") ||
      rpc_reject_nul(r, k, call_id, req->metadata, "metadata"))
    return;
  for (i = 0; i < req->n_scopes; i++)
    if (rpc_reject_nul(r, k, call_id, req->scopes[i], "scope"))
      return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if (reject_token_id(r, k, call_id, req->token_id))
    return;
  /* want, before, after: one block, freed by edit_fini. */
  if ((rows = calloc(3, sizeof(*rows))) == NULL) {
    rpc_send_error(r, k, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  if (edit_want(req, &rows[0], now, why, sizeof(why)) != 0) {
    free(rows);
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if (rpc_refuse_not_domain_admin(r, k, call_id, actor, "Edit", req->domain) ||
      (call = call_new(r, k, call_id, &edit_kind, STORE_JOB_EDIT)) == NULL) {
    free(rows);
    return;
  }
  call->job.u.edit.want = &rows[0];
  call->job.u.edit.before = &rows[1];
  call->job.u.edit.after = &rows[2];
  snprintf(call->job.u.edit.domain, sizeof(call->job.u.edit.domain), "%s",
           req->domain);
  snprintf(call->job.u.edit.id, sizeof(call->job.u.edit.id), "%s",
           req->token_id);
  call->job.u.edit.set_label = req->set_label;
  call->job.u.edit.set_metadata = req->set_metadata;
  call->job.u.edit.set_expires_at = req->set_expires_at;
  call->job.u.edit.set_scopes = req->set_scopes;
  call->job.u.edit.now = now;
  /* The detail (before -> after) is written in the transaction. */
  authz_audit_fill(&call->audit, &k->peer, actor, "Edit", req->domain,
                   req->token_id, 0, "");
  call->job.audit = &call->audit;
  authz_job_require_admin(&call->job, &k->peer, actor, req->domain);
  call_submit(call);
}

/* ---- Roll ---- */

static int roll_apply(call_t *call) {
  rpc_t *r = call->rpc;
  store_job_t *job = &call->job;
  store_token_t *fresh = job->u.roll.fresh;
  int err = job->result;
  domain_t *d;

  if (err != 0 && !job->applied)
    return err;
  /* The new token, as an Issue's (the feed may have brought it first). */
  if (index_find(r->env.index, fresh->hash) == NULL) {
    d = domains_get(r->env.domains, fresh->domain);
    if (d == NULL || index_insert(r->env.index, fresh, d) != 0) {
      log_error("roll: token %s stored but not indexed", fresh->id);
      if (err == 0)
        err = TOKEND_EINTERNAL;
    } else if (verify_cache_reserve(r->env.vcache, index_count(r->env.index)) !=
               0) {
      log_warn("out of memory for the verify cache; it grows on demand");
    }
  }
  /* The old one's expiry moved closer: validity taken. */
  if (index_apply_row(r, job->u.roll.old) != 0 && err == 0)
    err = TOKEND_EINTERNAL;
  epoch_bump(&r->epoch);
  return err;
}

static void roll_not_found(const call_t *call, char *msg, size_t len) {
  (void)call;
  snprintf(msg, len, "no token with this id in this domain");
}

static void roll_ok(call_t *call) {
  store_job_t *job = &call->job;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__RollResponse rr = TOKEND__V1__ROLL_RESPONSE__INIT;
  Tokend__V1__Propagation prop;
  Tokend__V1__TokenInfo info, prev;
  char *scopes[TOKEND_MAX_SCOPES], *prev_scopes[TOKEND_MAX_SCOPES];
  char by[TOKEND_USER_BYTES];
  int64_t now = tokend_now_ms();

  log_info("roll: domain=%s id=%s -> %s by=%s", job->u.roll.domain,
           job->u.roll.id, job->u.roll.fresh->id,
           call_doer(call, by, sizeof(by)));
  if (!rpc_sink_open(call->sink))
    return;
  row_last_used(call->rpc, job->u.roll.old);
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_ROLL;
  resp.roll = &rr;
  rr.token = call->token;
  rpc_info_from_row(&info, job->u.roll.fresh, scopes, now);
  rpc_info_from_row(&prev, job->u.roll.old, prev_scopes, now);
  rr.info = &info;
  rr.previous = &prev;
  rr.propagation = call_propagation(call, &prop);
  (void)rpc_send(call->rpc, call->sink, &resp, 1);
}

static void roll_fini(call_t *call) { free(call->job.u.roll.fresh); }

static const call_kind_t roll_kind = {
    .method = "Roll",
    .flags = CALL_WRITE | CALL_PROPAGATE,
    .what = "roll the token",
    .apply = roll_apply,
    .not_found = roll_not_found,
    .ok = roll_ok,
    .fini = roll_fini,
};

void rpc_roll(rpc_t *r, sink_t *k, uint64_t call_id, const authz_actor_t *actor,
              const Tokend__V1__Request *request) {
  const Tokend__V1__RollRequest *req = request->roll;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  store_token_t *rows;
  call_t *call;
  size_t len;

  if (rpc_reject_nul(r, k, call_id, req->domain, "domain") ||
      rpc_reject_nul(r, k, call_id, req->token_id, "token_id"))
    return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if (reject_token_id(r, k, call_id, req->token_id))
    return;
  if (req->grace_ms < 0 || req->grace_ms > ROLL_GRACE_MAX_MS) {
    snprintf(why, sizeof(why),
             "grace_ms: from 0 (the old token expires now) to %lld (30 days)",
             (long long)ROLL_GRACE_MAX_MS);
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if (rpc_refuse_not_domain_admin(r, k, call_id, actor, "Roll", req->domain))
    return;
  /* fresh, old: one block, freed by roll_fini. */
  if ((rows = calloc(2, sizeof(*rows))) == NULL) {
    rpc_send_error(r, k, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  if ((call = call_new(r, k, call_id, &roll_kind, STORE_JOB_ROLL)) == NULL) {
    free(rows);
    return;
  }
  if (token_generate(r->env.cfg->token_prefix, call->token) != 0) {
    free(rows);
    free(call);
    rpc_send_error(r, k, call_id, TOKEND_EINTERNAL, "bad token prefix");
    return;
  }
  call->job.u.roll.fresh = &rows[0];
  call->job.u.roll.old = &rows[1];
  len = strlen(call->token);
  token_hash(call->token, len, r->env.pepper, rows[0].hash);
  rows[0].pepper_gen = r->env.pepper_gen; /* issue 16: as Issue's */
  token_stack_wipe();
  token_hint(call->token, len, rows[0].hint);
  token_id_generate(rows[0].id);
  snprintf(rows[0].created_by, sizeof(rows[0].created_by), "%s",
           authz_doer(&k->peer, actor));
  snprintf(call->job.u.roll.domain, sizeof(call->job.u.roll.domain), "%s",
           req->domain);
  snprintf(call->job.u.roll.id, sizeof(call->job.u.roll.id), "%s",
           req->token_id);
  call->job.u.roll.grace_ms = req->grace_ms;
  call->job.u.roll.now = tokend_now_ms();
  authz_audit_fill(&call->audit, &k->peer, actor, "Roll", req->domain,
                   req->token_id, 0, "");
  call->job.audit = &call->audit;
  authz_job_require_admin(&call->job, &k->peer, actor, req->domain);
  call_submit(call);
}
