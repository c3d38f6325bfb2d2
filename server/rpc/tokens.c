/* Tokens: Issue, Revoke, List, and the page tokens List hands out. */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "token.h"
#include "tokend_time.h"
#include "validate.h"

Tokend__V1__TokenStatus rpc_token_status(int64_t revoked_at, int64_t expires_at,
                                         int64_t now) {
  if (revoked_at != 0)
    return TOKEND__V1__TOKEN_STATUS__TOKEN_STATUS_REVOKED;
  if (expires_at != 0 && now >= expires_at)
    return TOKEND__V1__TOKEN_STATUS__TOKEN_STATUS_EXPIRED;
  return TOKEND__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE;
}

/* Splits a space-separated scope string in place. */
static size_t split_scopes(char *s, char **out, size_t max) {
  size_t n = 0;
  char *p = s;

  if (*s == '\0')
    return 0;
  while (n < max) {
    out[n++] = p;
    p = strchr(p, ' ');
    if (p == NULL)
      break;
    *p++ = '\0';
  }
  return n;
}

/* Points info's fields into row (whose scopes it splits in place). */
void rpc_info_from_row(Tokend__V1__TokenInfo *info, store_token_t *row,
                       char **scopes, int64_t now) {
  tokend__v1__token_info__init(info);
  info->id = row->id;
  info->domain = row->domain;
  info->label = row->label;
  info->hint = row->hint;
  info->n_scopes = split_scopes(row->scopes, scopes, TOKEND_MAX_SCOPES);
  info->scopes = scopes;
  info->created_at = row->created_at;
  info->expires_at = row->expires_at;
  info->last_used_at = row->last_used_at;
  info->revoked_at = row->revoked_at;
  info->status = rpc_token_status(row->revoked_at, row->expires_at, now);
  info->created_by = row->created_by;
  info->revoked_by = row->revoked_by;
  info->metadata = row->metadata;
  info->rolled_from = row->rolled_from;
  info->rolled_to = row->rolled_to;
}

/* ---- Issue ---- */

/* Stored (or found stored after a failed commit): index it, so memory
 * holds what a restart would load. */
static int issue_apply(call_t *call) {
  rpc_t *r = call->rpc;
  store_job_t *job = &call->job;
  store_token_t *row = &job->u.issue.row;
  int err = job->result;
  domain_t *d;

  if (err != 0 && !job->applied)
    return err;
  /* With a store several hosts share, the change feed may have brought
   * this very token into memory before its own answer came back. */
  if (index_find(r->env.index, row->hash) != NULL)
    return err;
  d = domains_get(r->env.domains, row->domain);
  if (d == NULL || index_insert(r->env.index, row, d) != 0) {
    /* Committed but not indexed: it would verify only after a restart. */
    log_error("issue: token %s stored but not indexed", row->id);
    if (err == 0)
      err = TOKEND_EINTERNAL;
  } else if (verify_cache_reserve(r->env.vcache, index_count(r->env.index)) !=
             0) {
    /* Every Issue would say it again while memory stays short. */
    static log_limit_t vcache_oom_log = LOG_LIMIT_DEFAULT;

    log_limited(&vcache_oom_log, LOG_WARN,
                "out of memory for the verify cache; it grows on demand");
  }
  return err;
}

static void issue_ok(call_t *call) {
  store_token_t *row = &call->job.u.issue.row;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__IssueResponse ir = TOKEND__V1__ISSUE_RESPONSE__INIT;
  Tokend__V1__Propagation prop;
  Tokend__V1__TokenInfo info;
  char *scopes[TOKEND_MAX_SCOPES];

  log_info("issue: domain=%s id=%s by=%s", row->domain, row->id,
           row->created_by);
  if (!rpc_sink_open(call->sink))
    return;
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_ISSUE;
  resp.issue = &ir;
  ir.token = call->token;
  rpc_info_from_row(&info, row, scopes, tokend_now_ms());
  ir.info = &info;
  ir.propagation = call_propagation(call, &prop);
  (void)rpc_send(call->rpc, call->sink, &resp, 1);
}

static const call_kind_t issue_kind = {
    .method = "Issue",
    .flags = CALL_WRITE | CALL_PROPAGATE_GIVES,
    .what = "store the new token",
    .apply = issue_apply,
    .ok = issue_ok,
};

void rpc_issue(rpc_t *r, sink_t *k, uint64_t call_id,
               const authz_actor_t *actor, const Tokend__V1__Request *request) {
  const Tokend__V1__IssueRequest *req = request->issue;
  char why[TOKEND_STATUS_MESSAGE_BYTES], metadata[TOKEND_METADATA_BYTES];
  store_token_t *row;
  call_t *call;
  size_t i, j, off = 0, len;
  int64_t now = tokend_now_ms();

  if (rpc_reject_nul(r, k, call_id, req->domain, "domain") ||
      rpc_reject_nul(r, k, call_id, req->label, "label") ||
      rpc_reject_nul(r, k, call_id, req->metadata, "metadata"))
    return;
  for (i = 0; i < req->n_scopes; i++)
    if (rpc_reject_nul(r, k, call_id, req->scopes[i], "scope"))
      return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0 ||
      validate_label(req->label, why, sizeof(why)) != 0)
    goto err_invalid;
  if (req->n_scopes > TOKEND_MAX_SCOPES) {
    snprintf(why, sizeof(why), "too many scopes: at most %d",
             TOKEND_MAX_SCOPES);
    goto err_invalid;
  }
  for (i = 0; i < req->n_scopes; i++) {
    if (validate_scope(req->scopes[i], why, sizeof(why)) != 0)
      goto err_invalid;
    /* As Edit and SetDomainPolicy: a scope held twice is a caller's
     * mistake, and Verify would hand it out twice. */
    for (j = 0; j < i; j++)
      if (strcmp(req->scopes[i], req->scopes[j]) == 0) {
        snprintf(why, sizeof(why), "scopes: %.64s is given twice",
                 req->scopes[i]);
        goto err_invalid;
      }
  }
  /* issue 17: kept as compact JSON (what Verify hands out). */
  if (rpc_metadata_normalize(req->metadata, metadata, why, sizeof(why)) != 0)
    goto err_invalid;
  if (rpc_refuse_not_domain_admin(r, k, call_id, actor, "Issue", req->domain))
    return;
  if (req->expires_at < 0 || (req->expires_at != 0 && req->expires_at <= now)) {
    snprintf(why, sizeof(why),
             "expires_at must be a future time in Unix milliseconds, or 0 "
             "for no expiry");
    goto err_invalid;
  }

  if ((call = call_new(r, k, call_id, &issue_kind, STORE_JOB_ISSUE)) == NULL)
    return;
  row = &call->job.u.issue.row;
  memcpy(row->metadata, metadata, sizeof(row->metadata));
  if (token_generate(r->env.cfg->token_prefix, call->token) != 0) {
    free(call);
    rpc_send_error(r, k, call_id, TOKEND_EINTERNAL, "bad token prefix");
    return;
  }
  len = strlen(call->token);
  token_hash(call->token, len, r->env.pepper, row->hash);
  row->pepper_gen = r->env.pepper_gen; /* issue 16: the pepper that keyed it */
  token_stack_wipe();
  token_hint(call->token, len, row->hint);
  token_id_generate(row->id);
  snprintf(row->domain, sizeof(row->domain), "%s", req->domain);
  snprintf(row->label, sizeof(row->label), "%s", req->label);
  /* Validated above: each scope fits, so the joined string fits. */
  for (i = 0; i < req->n_scopes; i++) {
    len = strlen(req->scopes[i]);
    if (i > 0)
      row->scopes[off++] = ' ';
    memcpy(row->scopes + off, req->scopes[i], len);
    off += len;
  }
  row->scopes[off] = '\0';
  row->created_at = now;
  row->expires_at = req->expires_at;
  snprintf(row->created_by, sizeof(row->created_by), "%s",
           authz_doer(&k->peer, actor));
  authz_audit_fill(&call->audit, &k->peer, actor, "Issue", row->domain, row->id,
                   0, row->label);
  call->job.audit = &call->audit;
  authz_job_require_admin(&call->job, &k->peer, actor, row->domain);
  call_submit(call);
  return;

err_invalid:
  rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
}

/* ---- Revoke ---- */

/* Committed (or found committed after a failed commit): from now on every
 * connection's Verify answers REVOKED. */
static int revoke_apply(call_t *call) {
  store_job_t *job = &call->job;
  index_entry_t *e;

  if (job->result == 0 || job->applied) {
    e = index_find(call->rpc->env.index, job->u.revoke.hash);
    if (e != NULL)
      index_revoke(call->rpc->env.index, e, job->u.revoke.revoked_at);
    else if (e == NULL)
      log_error("revoke: token %s is in the store but not in the index",
                job->u.revoke.id);
    /* Before the answer: caching clients see the revocation first. */
    epoch_bump(&call->rpc->epoch);
  }
  return job->result;
}

static void revoke_not_found(const call_t *call, char *msg, size_t len) {
  (void)call;
  snprintf(msg, len, "no token with this id in this domain");
}

static void revoke_ok(call_t *call) {
  store_job_t *job = &call->job;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__RevokeResponse rr = TOKEND__V1__REVOKE_RESPONSE__INIT;
  Tokend__V1__Propagation prop;

  if (!job->u.revoke.already)
    log_info("revoke: domain=%s id=%s by=%s", job->u.revoke.domain,
             job->u.revoke.id, job->u.revoke.by);
  if (!rpc_sink_open(call->sink))
    return;
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_REVOKE;
  resp.revoke = &rr;
  rr.revoked_at = job->u.revoke.revoked_at;
  rr.already_revoked = job->u.revoke.already != 0;
  rr.propagation = call_propagation(call, &prop);
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static const call_kind_t revoke_kind = {
    .method = "Revoke",
    .flags = CALL_WRITE | CALL_PROPAGATE,
    .what = "revoke the token",
    .apply = revoke_apply,
    .not_found = revoke_not_found,
    .ok = revoke_ok,
};

void rpc_revoke(rpc_t *r, sink_t *k, uint64_t call_id,
                const authz_actor_t *actor,
                const Tokend__V1__Request *request) {
  const Tokend__V1__RevokeRequest *req = request->revoke;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  call_t *call;

  if (rpc_reject_nul(r, k, call_id, req->domain, "domain") ||
      rpc_reject_nul(r, k, call_id, req->token_id, "token_id"))
    return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if (token_id_check(req->token_id, strlen(req->token_id)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL,
                   "token_id is not a token id (tok_ followed by 20 letters "
                   "and digits)");
    return;
  }
  if (rpc_refuse_not_domain_admin(r, k, call_id, actor, "Revoke", req->domain))
    return;
  if ((call = call_new(r, k, call_id, &revoke_kind, STORE_JOB_REVOKE)) == NULL)
    return;
  snprintf(call->job.u.revoke.domain, sizeof(call->job.u.revoke.domain), "%s",
           req->domain);
  snprintf(call->job.u.revoke.id, sizeof(call->job.u.revoke.id), "%s",
           req->token_id);
  call->job.u.revoke.now = tokend_now_ms();
  snprintf(call->job.u.revoke.by, sizeof(call->job.u.revoke.by), "%s",
           authz_doer(&k->peer, actor));
  authz_audit_fill(&call->audit, &k->peer, actor, "Revoke", req->domain,
                   req->token_id, 0, "");
  call->job.audit = &call->audit;
  authz_job_require_admin(&call->job, &k->peer, actor, req->domain);
  call_submit(call);
}

/* ---- Page tokens ---- */

/* Page tokens are opaque to clients: base64url of "<tag><position>", the
 * tag naming what is paged ("p1." tokens, "a1." audit events). */
void rpc_page_token_encode(const char *tag, int64_t pos,
                           char out[TOKEND_PAGE_TOKEN_BYTES]) {
  char raw[32];
  int n = snprintf(raw, sizeof(raw), "%s%" PRId64, tag, pos);

  sodium_bin2base64(out, TOKEND_PAGE_TOKEN_BYTES, (const unsigned char *)raw,
                    (size_t)n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int rpc_page_token_decode(const char *tag, const char *tok, int64_t *pos) {
  unsigned char raw[32];
  size_t n, i;
  int64_t v = 0;

  if (sodium_base642bin(raw, sizeof(raw) - 1, tok, strlen(tok), NULL, &n, NULL,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return TOKEND_EINVAL;
  if (n < 4 || n > 22 || memcmp(raw, tag, 3) != 0)
    return TOKEND_EINVAL;
  for (i = 3; i < n; i++) {
    if (raw[i] < '0' || raw[i] > '9')
      return TOKEND_EINVAL;
    /* At most 19 digits; stop before int64 overflow. */
    if (v > (INT64_MAX - 9) / 10)
      return TOKEND_EINVAL;
    v = v * 10 + (raw[i] - '0');
  }
  if (v <= 0)
    return TOKEND_EINVAL;
  *pos = v;
  return 0;
}

/* ---- List ---- */

static void list_ok(call_t *call) {
  rpc_t *r = call->rpc;
  store_job_t *job = &call->job;
  store_token_t *rows = job->u.list.rows;
  size_t n = job->u.list.n_rows, i;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__ListResponse lr = TOKEND__V1__LIST_RESPONSE__INIT;
  Tokend__V1__TokenInfo *infos = NULL, **info_ptrs = NULL;
  char **scope_ptrs = NULL;
  char next[TOKEND_PAGE_TOKEN_BYTES] = "";
  index_entry_t *e;
  int64_t now = tokend_now_ms();

  /* The store was asked for one row more than a page: its presence says
   * whether there is a next page. */
  if (n > call->page_size) {
    n = call->page_size;
    rpc_page_token_encode("p1.", rows[n - 1].seq, next);
  }
  if (n > 0) {
    infos = calloc(n, sizeof(*infos));
    info_ptrs = calloc(n, sizeof(*info_ptrs));
    scope_ptrs = calloc(n * TOKEND_MAX_SCOPES, sizeof(*scope_ptrs));
    if (infos == NULL || info_ptrs == NULL || scope_ptrs == NULL) {
      rpc_send_error(r, call->sink, call->call_id, TOKEND_ENOMEM,
                     "out of memory");
      goto out;
    }
  }
  for (i = 0; i < n; i++) {
    /* last_used_at in memory may be ahead of the store's. */
    e = index_find(r->env.index, rows[i].hash);
    if (e != NULL && e->last_used_at > rows[i].last_used_at)
      rows[i].last_used_at = e->last_used_at;
    rpc_info_from_row(&infos[i], &rows[i], scope_ptrs + i * TOKEND_MAX_SCOPES,
                      now);
    info_ptrs[i] = &infos[i];
  }
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_LIST;
  resp.list = &lr;
  lr.n_tokens = n;
  lr.tokens = info_ptrs;
  lr.next_page_token = next;
  (void)rpc_send(r, call->sink, &resp, 0);
out:
  free(scope_ptrs);
  free(infos);
  free(info_ptrs);
}

static void list_fini(call_t *call) { free(call->job.u.list.rows); }

static const call_kind_t list_kind = {
    .method = "List",
    .flags = CALL_PAGED,
    .what = "list tokens",
    .ok = list_ok,
    .fini = list_fini,
};

void rpc_list(rpc_t *r, sink_t *k, uint64_t call_id, const authz_actor_t *actor,
              const Tokend__V1__Request *request) {
  const Tokend__V1__ListRequest *req = request->list;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  uint32_t page_size = req->page_size;
  int64_t before = 0;
  call_t *call;
  const domain_t *dom;
  size_t max_rows;

  if (rpc_reject_nul(r, k, call_id, req->domain, "domain") ||
      rpc_reject_nul(r, k, call_id, req->page_token, "page_token"))
    return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL, why);
    return;
  }
  if (rpc_refuse_not_domain_admin(r, k, call_id, actor, "List", req->domain))
    return;
  if (req->expiring_within_ms < 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL,
                   "expiring_within_ms: a duration in ms, > 0 (0: no filter)");
    return;
  }
  if (req->page_token[0] != '\0' &&
      rpc_page_token_decode("p1.", req->page_token, &before) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL,
                   "page_token is not one this server handed out");
    return;
  }
  if (page_size == 0)
    page_size = TOKEND_LIST_PAGE_DEFAULT;
  if (page_size > TOKEND_LIST_PAGE_MAX)
    page_size = TOKEND_LIST_PAGE_MAX;
  if ((call = call_new(r, k, call_id, &list_kind, STORE_JOB_LIST)) == NULL)
    return;
  /* A page is no longer than the domain has tokens now, so a small domain
   * takes little memory; one row more says whether a next page exists.
   * Issues that commit before this List runs may add rows: the extra row
   * then says so, and the caller finds them on the next page (a page may
   * be shorter than page_size). */
  dom = domains_find(r->env.domains, req->domain);
  if (dom == NULL || dom->n_tokens < page_size)
    page_size = dom != NULL && dom->n_tokens > 0 ? (uint32_t)dom->n_tokens : 1;
  call->page_size = page_size;
  max_rows = (size_t)page_size + 1;
  call->job.u.list.rows = call_rows(call, max_rows, sizeof(store_token_t));
  if (call->job.u.list.rows == NULL) {
    free(call);
    return;
  }
  call->job.u.list.max_rows = max_rows;
  snprintf(call->job.u.list.domain, sizeof(call->job.u.list.domain), "%s",
           req->domain);
  call->job.u.list.include_revoked = req->include_revoked;
  call->job.u.list.before_seq = before;
  /* issue 17: only active tokens expiring within the window. */
  if (req->expiring_within_ms > 0) {
    call->job.u.list.now = tokend_now_ms();
    call->job.u.list.expiring_until =
        req->expiring_within_ms > INT64_MAX - call->job.u.list.now
            ? INT64_MAX
            : call->job.u.list.now + req->expiring_within_ms;
  }
  authz_job_require_admin(&call->job, &k->peer, actor, req->domain);
  call_submit(call);
}
