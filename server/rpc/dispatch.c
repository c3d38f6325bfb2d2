#include "rpc/dispatch.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/authz.h"
#include "core/verify_cache.h"
#include "log.h"
#include "nodump.h"
#include "server.h"
#include "token.h"
#include "tokend_error.h"
#include "tokend_time.h"
#include "validate.h"
#include "verify_wire.h"

/* One call answered by the store worker. The job is the first member so the
 * done callback can recover the call. */
typedef struct {
  store_job_t job;
  conn_t *conn;
  uint64_t call_id;
  store_audit_t audit;            /* writes: recorded with the write */
  char token[TOKEND_TOKEN_BYTES]; /* Issue only: the secret, wiped at end */
  uint32_t page_size;             /* List and ListAuditEvents */
  size_t list_bytes;              /* their rows, in server_t.list_bytes */
} call_t;

typedef struct {
  store_job_t job;
  server_t *server;
  store_touch_t *items;
  domain_counts_t *counts;
} flush_t;

static void send_error(conn_t *c, uint64_t call_id, int err, const char *msg) {
  conn_send_status(c, call_id, tokend_err_grpc(err), msg);
}

/* protobuf-c NUL-terminates each decoded string without keeping its length,
 * so a string with a NUL inside would silently lose its tail. The arena
 * remembers how many bytes were decoded; they must all be before the NUL. */
/* How many bytes protobuf-c decoded into s, NULs included. */
static size_t decoded_len(const char *s) {
  return s == protobuf_c_empty_string ? 0 : pb_arena_alloc_size(s) - 1;
}

static int string_intact(const char *s) { return strlen(s) == decoded_len(s); }

/* Answers INVALID_ARGUMENT and returns 1 if field s holds a NUL byte. */
static int reject_nul(conn_t *c, uint64_t call_id, const char *s,
                      const char *field) {
  char msg[TOKEND_STATUS_MESSAGE_BYTES];

  if (string_intact(s))
    return 0;
  snprintf(msg, sizeof(msg), "%s contains a NUL byte", field);
  send_error(c, call_id, TOKEND_EINVAL, msg);
  return 1;
}

/* A write whose commit failed and whose outcome could not be established
 * leaves memory and the database possibly disagreeing; only a restart,
 * which loads what is really on disk, can make them agree again. */
static void exit_if_outcome_unknown(const store_job_t *job) {
  if (!job->unknown)
    return;
  log_error("a failed commit left the database in an unknown state and it "
            "cannot be read back; exiting so that a restart loads what is "
            "really on disk");
  _exit(70);
}

/* The message for a write that failed; if it was found applied after all,
 * the caller is told that too. */
static void write_error_message(const store_job_t *job, const char *what,
                                char *msg, size_t len) {
  snprintf(msg, len, "could not %s: %s%s", what,
           job->errmsg[0] != '\0' ? job->errmsg : tokend_strerror(job->result),
           job->applied ? " (the change reached the database before the "
                          "error: it is in effect)"
                        : "");
}

static Tokend__V1__TokenStatus token_status(int64_t revoked_at,
                                            int64_t expires_at, int64_t now) {
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
static void info_from_row(Tokend__V1__TokenInfo *info, store_token_t *row,
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
  info->status = token_status(row->revoked_at, row->expires_at, now);
  info->created_by = row->created_by;
  info->revoked_by = row->revoked_by;
}

static call_t *call_new(conn_t *c, uint64_t call_id, store_job_kind_t kind,
                        store_job_done_cb done) {
  call_t *call = calloc(1, sizeof(*call));

  if (call == NULL)
    return NULL;
  call->job.kind = kind;
  call->job.done = done;
  call->conn = c;
  call->call_id = call_id;
  return call;
}

static void call_submit(call_t *call) {
  conn_job_submit(call->conn, &call->job);
}

/* Room for the n rows of size bytes a List-like call reads its answer into,
 * counted against --max-list-memory across all connections, so that many
 * Lists queued behind a slow disk cannot take the memory tokend needs to
 * keep answering Verify. The first call is always let through (a page of
 * big rows may exceed a small limit on its own). On refusal answers
 * RESOURCE_EXHAUSTED (or out of memory) and returns NULL; the caller then
 * frees the call, which holds nothing. */
static void *call_rows(call_t *call, size_t n, size_t size) {
  server_t *s = call->conn->server;
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  size_t bytes = n * size;
  void *rows;

  if (s->list_bytes > 0 && (s->list_bytes >= s->cfg.max_list_memory ||
                            bytes > s->cfg.max_list_memory - s->list_bytes)) {
    snprintf(msg, sizeof(msg),
             "List calls in flight already hold %zu bytes and this one needs "
             "%zu more, past --max-list-memory %u; try again shortly",
             s->list_bytes, bytes, (unsigned)s->cfg.max_list_memory);
    send_error(call->conn, call->call_id, TOKEND_ENOMEM, msg);
    return NULL;
  }
  rows = calloc(n, size);
  if (rows == NULL) {
    send_error(call->conn, call->call_id, TOKEND_ENOMEM, "out of memory");
    return NULL;
  }
  call->list_bytes = bytes;
  s->list_bytes += bytes;
  return rows;
}

/* Ends a call: releases the conn (which flushes what was sent), the
 * server's counts, and frees the call. */
static void call_end(call_t *call) {
  conn_t *c = call->conn;

  c->server->list_bytes -= call->list_bytes;
  /* An Issue's answer copied its token: through registers and stack. */
  if (call->token[0] != '\0')
    token_stack_wipe();
  sodium_memzero(call->token, sizeof(call->token));
  free(call);
  conn_job_end(c);
}

/* 1 if the store worker refused the call because its actor's admin grant
 * was gone when it ran (store_job_t.authz), after answering it
 * PERMISSION_DENIED. A write's refusal is already in the audit log (its
 * record was written in the same transaction); a read's is recorded now. */
static int refused_by_worker(call_t *call, const char *method) {
  store_job_t *job = &call->job;
  char why[TOKEND_USER_BYTES + sizeof(job->errmsg) + 2];
  authz_actor_t actor = {.break_glass = 0};

  if (job->result != TOKEND_EPERM || !job->authz.required)
    return 0;
  snprintf(why, sizeof(why), "%s: %s", job->authz.user, job->errmsg);
  if (!conn_is_open(call->conn)) {
    log_info("refused: %s by uid %u: %s", method,
             (unsigned)call->conn->peer.uid, why);
  } else if (job->audit != NULL) {
    send_error(call->conn, call->call_id, TOKEND_EPERM, why);
    log_info("refused: %s by uid %u: %s", method,
             (unsigned)call->conn->peer.uid, why);
  } else {
    snprintf(actor.user, sizeof(actor.user), "%s", job->authz.user);
    authz_refuse(call->conn, call->call_id, &actor, method, "grant-removed",
                 job->authz.domain, TOKEND_EPERM, why);
  }
  return 1;
}

/* ---- Verify: answered from memory, never touches the store ---- */

/* The largest request the hand decoder takes: a Verify of the longest token
 * with the longest call_id (70 bytes) and some room. Far below the smallest
 * --max-request-memory, so limits apply as they would through protobuf-c. */
#define VERIFY_FAST_MAX_BODY (TOKEND_TOKEN_MAX_CHARS + 32)

/* Verifies are answered in batches: handle_verify queues each one (with
 * its cache tag computed and the tag's slot prefetched), and every turn of
 * the loop, after the poll phase has read from every connection that had
 * input, dispatch_verify_drain answers them all, in order. The memory
 * misses of one (its cache slot, its entry) then overlap the others'
 * instead of adding up: with a million tokens in use they were most of what
 * a Verify cost beyond the 10,000-token case. Any other answer drains the
 * queue first (conn_send), so answers leave in the order requests came. */
#define VERIFY_BATCH_MAX 64

typedef struct {
  conn_t *c;
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
static index_entry_t *verify_lookup(server_t *s, const char *tok, size_t len,
                                    const verify_tag_t *tag, int *reason) {
  uint8_t hash[TOKEND_HASH_BYTES];
  index_entry_t *e;

  if ((e = verify_cache_find(s->vcache, tag)) != NULL)
    return e;
  if (token_check(tok, len) != 0) {
    *reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED;
    return NULL;
  }
  token_hash(tok, len, s->pepper, hash);
  e = index_find(s->index, hash);
  sodium_memzero(hash, sizeof(hash));
  if (e == NULL) {
    *reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN;
    return NULL;
  }
  verify_cache_add(s->vcache, tag, e);
  return e;
}

/* Answers a Verify with entry e (NULL: invalid for reason), encoded by hand
 * (verify_wire), not by protobuf-c: this is the path of nearly every call. */
static void verify_answer(conn_t *c, uint64_t call_id, index_entry_t *e,
                          int reason) {
  server_t *s = c->server;
  vw_response_t r; /* fields set one by one: scopes[] stays unwritten */
  const char *scopes[TOKEND_MAX_SCOPES];
  uint8_t *body;
  size_t i, n;

  r.call_id = call_id;
  r.valid = 0;
  r.reason = reason;
  r.token_id = r.domain = r.label = vw_cstr("");
  r.n_scopes = 0;
  r.expires_at = 0;
  if (e == NULL) {
    s->domains.unknown->invalid_verifies++;
  } else {
    r.token_id = vw_cstr(e->id);
    r.domain = vw_cstr(index_entry_domain(e));
    r.label = vw_cstr(index_entry_label(e));
    r.n_scopes = index_entry_scopes(e, scopes);
    for (i = 0; i < r.n_scopes; i++)
      r.scopes[i] = vw_cstr(scopes[i]);
    r.expires_at = e->expires_at;
    if (e->revoked_at != 0) {
      r.reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED;
    } else if (e->expires_at != 0 && s->now_ms >= e->expires_at) {
      r.reason = TOKEND__V1__INVALID_REASON__INVALID_REASON_EXPIRED;
    } else {
      r.valid = 1;
      index_touch(s->index, e, s->now_ms, s->cfg.last_used_granularity_ms);
    }
    if (r.valid)
      e->domain->valid_verifies++;
    else
      e->domain->invalid_verifies++;
  }
  n = vw_response_size(&r);
  if ((body = conn_frame_begin(c, n)) != NULL) {
    vw_response_encode(body, &r);
    (void)conn_frame_end(c, n, 0);
  }
}

void dispatch_verify_drain(server_t *s) {
  verify_batch_t *b = s->vbatch;
  conn_t *conns[VERIFY_BATCH_MAX];
  pending_verify_t *v;
  size_t n = b->n, i;
  int reason;

  if (n == 0 || b->draining)
    return;
  b->draining = 1;
  /* Each tag's slot was prefetched when queued; now each entry. */
  for (i = 0; i < n; i++) {
    v = &b->v[i];
    v->e = verify_cache_find(s->vcache, &v->tag);
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
      v->e = verify_lookup(s, v->token, v->len, &v->tag, &reason);
    verify_answer(v->c, v->call_id, v->e, reason);
    sodium_memzero(v->token, v->len);
    conns[i] = v->c;
  }
  b->n = 0;
  b->draining = 0;
  /* Hashing the batch's tokens here (a full check), and their cache tags
   * when read, left copies in dead stack frames: clear them once a batch
   * (8 KiB, about 0.1 us, shared by up to 64 Verifies). */
  token_stack_wipe();
  uv_idle_stop(&s->vbatch_idle);
  /* Each connection writes once, when its last queued Verify is answered
   * (and may close or be freed then: nothing below touches it again). */
  for (i = 0; i < n; i++)
    conn_deferred_end(conns[i]);
}

static void on_vbatch_idle(uv_idle_t *h) { dispatch_verify_drain(h->data); }
static void on_vbatch_check(uv_check_t *h) { dispatch_verify_drain(h->data); }

int dispatch_init(server_t *s) {
  /* Queued Verifies hold their tokens: left out of core dumps, like the
   * connection buffers they came from (one mapping, for the server's
   * life). */
  s->vbatch = nodump_alloc(sizeof(*s->vbatch));
  if (s->vbatch == NULL)
    return TOKEND_ENOMEM;
  uv_check_init(&s->loop, &s->vbatch_check);
  uv_idle_init(&s->loop, &s->vbatch_idle);
  s->vbatch_check.data = s->vbatch_idle.data = s;
  uv_check_start(&s->vbatch_check, on_vbatch_check);
  /* Runs every turn, but keeps no loop alive. Verifies are queued in the
   * poll phase, so this turn's check answers them; the idle handle, active
   * while any wait, is a safety net: poll never blocks with some queued,
   * and the loop does not end before they are answered. */
  uv_unref((uv_handle_t *)&s->vbatch_check);
  return 0;
}

void dispatch_cleanup(server_t *s) {
  if (s->vbatch == NULL)
    return;
  sodium_memzero(s->vbatch, sizeof(*s->vbatch));
  nodump_free(s->vbatch, sizeof(*s->vbatch));
  s->vbatch = NULL;
}

/* tok[0..len) may hold any bytes (a NUL fails the shape check). */
static void handle_verify(conn_t *c, uint64_t call_id, const char *tok,
                          size_t len) {
  server_t *s = c->server;
  verify_batch_t *b = s->vbatch;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  pending_verify_t *v;

  if (!c->peer.is_verifier && !c->peer.is_operator) {
    authz_actor_t self = {.break_glass = 0};
    snprintf(self.user, sizeof(self.user), "%s", c->peer.user);
    snprintf(why, sizeof(why), "%s may not call Verify (not a verifier)",
             c->peer.user);
    authz_refuse(c, call_id, &self, "Verify", "not-verifier", "", TOKEND_EPERM,
                 why);
    return;
  }
  /* Bounds first: nothing longer can be a token, cached or not. */
  if (len > TOKEND_TOKEN_MAX_CHARS) {
    dispatch_verify_drain(s);
    verify_answer(c, call_id, NULL,
                  TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED);
    return;
  }
  if (b->n == VERIFY_BATCH_MAX)
    dispatch_verify_drain(s);
  if (b->n == VERIFY_BATCH_MAX) {
    /* Still full: only possible from within a drain, which nothing does
     * today; answer at once rather than overflow. */
    verify_tag_t tag;
    int reason = 0;
    index_entry_t *e;

    verify_cache_tag(s->vcache, tok, len, &tag);
    e = verify_lookup(s, tok, len, &tag, &reason);
    verify_answer(c, call_id, e, reason);
    return;
  }
  v = &b->v[b->n++];
  v->c = c;
  v->call_id = call_id;
  v->len = len;
  memcpy(v->token, tok, len);
  verify_cache_tag(s->vcache, tok, len, &v->tag);
  verify_cache_prefetch(s->vcache, &v->tag);
  conn_deferred_begin(c);
  if (b->n == 1)
    uv_idle_start(&s->vbatch_idle, on_vbatch_idle);
}

/* ---- Issue ---- */

static void issue_done(store_job_t *job) {
  call_t *call = (call_t *)job;
  server_t *s = call->conn->server;
  store_token_t *row = &job->u.issue.row;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__IssueResponse ir = TOKEND__V1__ISSUE_RESPONSE__INIT;
  Tokend__V1__TokenInfo info;
  char *scopes[TOKEND_MAX_SCOPES];
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  domain_t *d;
  int err = job->result;

  exit_if_outcome_unknown(job);
  if (refused_by_worker(call, "Issue"))
    goto out;
  /* Stored (or found stored after a failed commit): index it, so memory
   * holds what a restart would load. */
  if (err == 0 || job->applied) {
    d = domains_get(&s->domains, row->domain);
    if (d == NULL || index_insert(s->index, row, d) != 0) {
      /* Committed but not indexed: it would verify only after a restart. */
      log_error("issue: token %s stored but not indexed", row->id);
      if (err == 0)
        err = TOKEND_EINTERNAL;
    } else if (verify_cache_reserve(s->vcache, index_count(s->index)) != 0) {
      /* Every Issue would say it again while memory stays short. */
      static log_limit_t vcache_oom_log = LOG_LIMIT_DEFAULT;

      log_limited(&vcache_oom_log, LOG_WARN,
                  "out of memory for the verify cache; it grows on demand");
    }
  }
  if (err != 0) {
    write_error_message(job, "store the new token", msg, sizeof(msg));
    if (conn_is_open(call->conn))
      send_error(call->conn, call->call_id, err, msg);
    goto out;
  }
  log_info("issue: domain=%s id=%s by=%s", row->domain, row->id,
           row->created_by);
  if (conn_is_open(call->conn)) {
    resp.call_id = call->call_id;
    resp.status = &status;
    resp.result_case = TOKEND__V1__RESPONSE__RESULT_ISSUE;
    resp.issue = &ir;
    ir.token = call->token;
    info_from_row(&info, row, scopes, tokend_now_ms());
    ir.info = &info;
    (void)conn_send(call->conn, &resp, 1);
  }
out:
  call_end(call);
}

static void handle_issue(conn_t *c, uint64_t call_id,
                         const authz_actor_t *actor,
                         const Tokend__V1__IssueRequest *req) {
  server_t *s = c->server;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  store_token_t *row;
  call_t *call;
  size_t i, off = 0, len;
  int64_t now = tokend_now_ms();

  if (reject_nul(c, call_id, req->domain, "domain") ||
      reject_nul(c, call_id, req->label, "label"))
    return;
  for (i = 0; i < req->n_scopes; i++)
    if (reject_nul(c, call_id, req->scopes[i], "scope"))
      return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0 ||
      validate_label(req->label, why, sizeof(why)) != 0)
    goto err_invalid;
  if (req->n_scopes > TOKEND_MAX_SCOPES) {
    snprintf(why, sizeof(why), "too many scopes: at most %d",
             TOKEND_MAX_SCOPES);
    goto err_invalid;
  }
  for (i = 0; i < req->n_scopes; i++)
    if (validate_scope(req->scopes[i], why, sizeof(why)) != 0)
      goto err_invalid;
  if (authz_domain_admin(c, actor, req->domain, why, sizeof(why)) != 0) {
    authz_refuse(c, call_id, actor, "Issue", "not-domain-admin", req->domain,
                 TOKEND_EPERM, why);
    return;
  }
  if (req->expires_at < 0 || (req->expires_at != 0 && req->expires_at <= now)) {
    snprintf(why, sizeof(why),
             "expires_at must be a future time in Unix milliseconds, or 0 "
             "for no expiry");
    goto err_invalid;
  }

  call = call_new(c, call_id, STORE_JOB_ISSUE, issue_done);
  if (call == NULL) {
    send_error(c, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  row = &call->job.u.issue.row;
  if (token_generate(s->cfg.token_prefix, call->token) != 0) {
    free(call);
    send_error(c, call_id, TOKEND_EINTERNAL, "bad token prefix");
    return;
  }
  len = strlen(call->token);
  token_hash(call->token, len, s->pepper, row->hash);
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
           authz_doer(c, actor));
  authz_audit_fill(&call->audit, c, actor, "Issue", row->domain, row->id, 0,
                   row->label);
  call->job.audit = &call->audit;
  authz_job_require_admin(&call->job, c, actor, row->domain);
  call_submit(call);
  return;

err_invalid:
  send_error(c, call_id, TOKEND_EINVAL, why);
}

/* ---- Revoke ---- */

static void revoke_done(store_job_t *job) {
  call_t *call = (call_t *)job;
  server_t *s = call->conn->server;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__RevokeResponse rr = TOKEND__V1__REVOKE_RESPONSE__INIT;
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  index_entry_t *e;

  exit_if_outcome_unknown(job);
  if (refused_by_worker(call, "Revoke"))
    goto out;
  if (job->result == TOKEND_ENOTFOUND) {
    if (conn_is_open(call->conn))
      send_error(call->conn, call->call_id, TOKEND_ENOTFOUND,
                 "no token with this id in this domain");
    goto out;
  }
  /* Committed (or found committed after a failed commit): from now on every
   * connection's Verify answers REVOKED. */
  if (job->result == 0 || job->applied) {
    e = index_find(s->index, job->u.revoke.hash);
    if (e != NULL && e->revoked_at == 0)
      e->revoked_at = job->u.revoke.revoked_at;
    else if (e == NULL)
      log_error("revoke: token %s is in the store but not in the index",
                job->u.revoke.id);
  }
  if (job->result != 0) {
    write_error_message(job, "revoke the token", msg, sizeof(msg));
    if (conn_is_open(call->conn))
      send_error(call->conn, call->call_id, job->result, msg);
    goto out;
  }
  if (!job->u.revoke.already)
    log_info("revoke: domain=%s id=%s by=%s", job->u.revoke.domain,
             job->u.revoke.id, job->u.revoke.by);
  if (conn_is_open(call->conn)) {
    resp.call_id = call->call_id;
    resp.status = &status;
    resp.result_case = TOKEND__V1__RESPONSE__RESULT_REVOKE;
    resp.revoke = &rr;
    rr.revoked_at = job->u.revoke.revoked_at;
    rr.already_revoked = job->u.revoke.already != 0;
    (void)conn_send(call->conn, &resp, 0);
  }
out:
  call_end(call);
}

static void handle_revoke(conn_t *c, uint64_t call_id,
                          const authz_actor_t *actor,
                          const Tokend__V1__RevokeRequest *req) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  call_t *call;

  if (reject_nul(c, call_id, req->domain, "domain") ||
      reject_nul(c, call_id, req->token_id, "token_id"))
    return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    send_error(c, call_id, TOKEND_EINVAL, why);
    return;
  }
  if (token_id_check(req->token_id, strlen(req->token_id)) != 0) {
    send_error(c, call_id, TOKEND_EINVAL,
               "token_id is not a token id (tok_ followed by 20 letters and "
               "digits)");
    return;
  }
  if (authz_domain_admin(c, actor, req->domain, why, sizeof(why)) != 0) {
    authz_refuse(c, call_id, actor, "Revoke", "not-domain-admin", req->domain,
                 TOKEND_EPERM, why);
    return;
  }
  call = call_new(c, call_id, STORE_JOB_REVOKE, revoke_done);
  if (call == NULL) {
    send_error(c, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  snprintf(call->job.u.revoke.domain, sizeof(call->job.u.revoke.domain), "%s",
           req->domain);
  snprintf(call->job.u.revoke.id, sizeof(call->job.u.revoke.id), "%s",
           req->token_id);
  call->job.u.revoke.now = tokend_now_ms();
  snprintf(call->job.u.revoke.by, sizeof(call->job.u.revoke.by), "%s",
           authz_doer(c, actor));
  authz_audit_fill(&call->audit, c, actor, "Revoke", req->domain, req->token_id,
                   0, "");
  call->job.audit = &call->audit;
  authz_job_require_admin(&call->job, c, actor, req->domain);
  call_submit(call);
}

/* ---- List ---- */

/* Page tokens are opaque to clients: base64url of "<tag><position>", the
 * tag naming what is paged ("p1." tokens, "a1." audit events). */
static void page_token_encode(const char *tag, int64_t pos,
                              char out[TOKEND_PAGE_TOKEN_BYTES]) {
  char raw[32];
  int n = snprintf(raw, sizeof(raw), "%s%" PRId64, tag, pos);

  sodium_bin2base64(out, TOKEND_PAGE_TOKEN_BYTES, (const unsigned char *)raw,
                    (size_t)n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static int page_token_decode(const char *tag, const char *tok, int64_t *seq) {
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
  *seq = v;
  return 0;
}

static void list_done(store_job_t *job) {
  call_t *call = (call_t *)job;
  server_t *s = call->conn->server;
  store_token_t *rows = job->u.list.rows;
  size_t n = job->u.list.n_rows, i;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__ListResponse lr = TOKEND__V1__LIST_RESPONSE__INIT;
  Tokend__V1__TokenInfo *infos = NULL, **info_ptrs = NULL;
  char **scope_ptrs = NULL;
  char next[TOKEND_PAGE_TOKEN_BYTES] = "";
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  index_entry_t *e;
  int64_t now = tokend_now_ms();

  /* A page may be megabytes: made when the peer is ready to read it. */
  if (conn_answer_later(call->conn, job))
    return;
  if (!conn_is_open(call->conn) || refused_by_worker(call, "List"))
    goto out;
  if (job->result != 0) {
    snprintf(msg, sizeof(msg), "could not list tokens: %s", job->errmsg);
    send_error(call->conn, call->call_id, job->result, msg);
    goto out;
  }
  /* The store was asked for one row more than a page: its presence says
   * whether there is a next page. */
  if (n > call->page_size) {
    n = call->page_size;
    page_token_encode("p1.", rows[n - 1].seq, next);
  }
  if (n > 0) {
    infos = calloc(n, sizeof(*infos));
    info_ptrs = calloc(n, sizeof(*info_ptrs));
    scope_ptrs = calloc(n * TOKEND_MAX_SCOPES, sizeof(*scope_ptrs));
    if (infos == NULL || info_ptrs == NULL || scope_ptrs == NULL) {
      send_error(call->conn, call->call_id, TOKEND_ENOMEM, "out of memory");
      goto out;
    }
  }
  for (i = 0; i < n; i++) {
    /* last_used_at in memory may be ahead of the store's. */
    e = index_find(s->index, rows[i].hash);
    if (e != NULL && e->last_used_at > rows[i].last_used_at)
      rows[i].last_used_at = e->last_used_at;
    info_from_row(&infos[i], &rows[i], scope_ptrs + i * TOKEND_MAX_SCOPES, now);
    info_ptrs[i] = &infos[i];
  }
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_LIST;
  resp.list = &lr;
  lr.n_tokens = n;
  lr.tokens = info_ptrs;
  lr.next_page_token = next;
  (void)conn_send(call->conn, &resp, 0);
out:
  free(scope_ptrs);
  free(infos);
  free(info_ptrs);
  free(rows);
  call_end(call);
}

static void handle_list(conn_t *c, uint64_t call_id, const authz_actor_t *actor,
                        const Tokend__V1__ListRequest *req) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  uint32_t page_size = req->page_size;
  int64_t before = 0;
  call_t *call;
  const domain_t *dom;
  size_t max_rows;

  if (reject_nul(c, call_id, req->domain, "domain") ||
      reject_nul(c, call_id, req->page_token, "page_token"))
    return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    send_error(c, call_id, TOKEND_EINVAL, why);
    return;
  }
  if (authz_domain_admin(c, actor, req->domain, why, sizeof(why)) != 0) {
    authz_refuse(c, call_id, actor, "List", "not-domain-admin", req->domain,
                 TOKEND_EPERM, why);
    return;
  }
  if (req->page_token[0] != '\0' &&
      page_token_decode("p1.", req->page_token, &before) != 0) {
    send_error(c, call_id, TOKEND_EINVAL,
               "page_token is not one this server handed out");
    return;
  }
  if (page_size == 0)
    page_size = TOKEND_LIST_PAGE_DEFAULT;
  if (page_size > TOKEND_LIST_PAGE_MAX)
    page_size = TOKEND_LIST_PAGE_MAX;
  call = call_new(c, call_id, STORE_JOB_LIST, list_done);
  if (call == NULL) {
    send_error(c, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  /* A page is no longer than the domain has tokens now, so a small domain
   * takes little memory; one row more says whether a next page exists.
   * Issues that commit before this List runs may add rows: the extra row
   * then says so, and the caller finds them on the next page (a page may
   * be shorter than page_size). */
  dom = domains_find(&c->server->domains, req->domain);
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
  authz_job_require_admin(&call->job, c, actor, req->domain);
  call_submit(call);
}

/* ---- Domain admins (operators only) ---- */

/* Answers PERMISSION_DENIED (audited) and returns 1 unless c is an
 * operator. */
static int refuse_non_operator(conn_t *c, uint64_t call_id,
                               const authz_actor_t *actor, const char *method,
                               const char *domain) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];

  if (c->peer.is_operator)
    return 0;
  snprintf(why, sizeof(why), "%s may not call %s: operators only", c->peer.user,
           method);
  authz_refuse(c, call_id, actor, method, "operators-only", domain,
               TOKEND_EPERM, why);
  return 1;
}

/* Validates a domain and a user; answers INVALID_ARGUMENT and returns 1 if
 * either is bad. */
static int reject_domain_user(conn_t *c, uint64_t call_id, const char *domain,
                              const char *user) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];

  if (reject_nul(c, call_id, domain, "domain") ||
      reject_nul(c, call_id, user, "user"))
    return 1;
  if (validate_domain(domain, why, sizeof(why)) != 0 ||
      validate_user(user, why, sizeof(why)) != 0) {
    send_error(c, call_id, TOKEND_EINVAL, why);
    return 1;
  }
  return 0;
}

static void grant_done(store_job_t *job) {
  call_t *call = (call_t *)job;
  server_t *s = call->conn->server;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__GrantDomainAdminResponse gr =
      TOKEND__V1__GRANT_DOMAIN_ADMIN_RESPONSE__INIT;
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  int err = job->result;

  exit_if_outcome_unknown(job);
  if ((err == 0 || job->applied) &&
      domains_admin_add(&s->domains, job->u.grant.domain, job->u.grant.user,
                        job->u.grant.granted_at, job->u.grant.by) != 0) {
    log_error("grant: %s of %s stored but not in memory", job->u.grant.user,
              job->u.grant.domain);
    if (err == 0)
      err = TOKEND_ENOMEM;
  }
  if (err != 0) {
    write_error_message(job, "grant", msg, sizeof(msg));
    if (conn_is_open(call->conn))
      send_error(call->conn, call->call_id, err, msg);
    goto out;
  }
  if (!job->u.grant.already)
    log_info("grant: %s is now an admin of %s (by %s)", job->u.grant.user,
             job->u.grant.domain, job->u.grant.by);
  if (conn_is_open(call->conn)) {
    resp.call_id = call->call_id;
    resp.status = &status;
    resp.result_case = TOKEND__V1__RESPONSE__RESULT_GRANT_DOMAIN_ADMIN;
    resp.grant_domain_admin = &gr;
    gr.granted_at = job->u.grant.granted_at;
    gr.already_admin = job->u.grant.already != 0;
    (void)conn_send(call->conn, &resp, 0);
  }
out:
  call_end(call);
}

static void handle_grant_admin(conn_t *c, uint64_t call_id,
                               const authz_actor_t *actor,
                               const Tokend__V1__GrantDomainAdminRequest *req) {
  call_t *call;

  if (refuse_non_operator(c, call_id, actor, "GrantDomainAdmin", req->domain) ||
      reject_domain_user(c, call_id, req->domain, req->user))
    return;
  call = call_new(c, call_id, STORE_JOB_GRANT, grant_done);
  if (call == NULL) {
    send_error(c, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  snprintf(call->job.u.grant.domain, sizeof(call->job.u.grant.domain), "%s",
           req->domain);
  snprintf(call->job.u.grant.user, sizeof(call->job.u.grant.user), "%s",
           req->user);
  snprintf(call->job.u.grant.by, sizeof(call->job.u.grant.by), "%s",
           authz_doer(c, actor));
  call->job.u.grant.now = tokend_now_ms();
  authz_audit_fill(&call->audit, c, actor, "GrantDomainAdmin", req->domain, "",
                   0, req->user);
  call->job.audit = &call->audit;
  call_submit(call);
}

static void admin_remove_done(store_job_t *job) {
  call_t *call = (call_t *)job;
  server_t *s = call->conn->server;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__RevokeDomainAdminResponse rr =
      TOKEND__V1__REVOKE_DOMAIN_ADMIN_RESPONSE__INIT;
  char msg[TOKEND_USER_BYTES + TOKEND_DOMAIN_BYTES + 64];
  index_entry_t *e;
  size_t i;

  exit_if_outcome_unknown(job);
  if (job->result == TOKEND_ENOTFOUND) {
    snprintf(msg, sizeof(msg), "%s is not an admin of domain %s",
             job->u.admin_remove.user, job->u.admin_remove.domain);
    if (conn_is_open(call->conn))
      send_error(call->conn, call->call_id, job->result, msg);
    goto out;
  }
  /* Committed (or found committed): the user is no admin and their tokens
   * verify REVOKED. */
  if (job->result == 0 || job->applied) {
    domains_admin_remove(&s->domains, job->u.admin_remove.domain,
                         job->u.admin_remove.user);
    for (i = 0; i < job->u.admin_remove.n_hashes; i++) {
      e = index_find(s->index, job->u.admin_remove.hashes[i]);
      if (e != NULL && e->revoked_at == 0)
        e->revoked_at = job->u.admin_remove.now;
    }
  }
  if (job->result != 0) {
    write_error_message(job, "remove the admin", msg, sizeof(msg));
    if (conn_is_open(call->conn))
      send_error(call->conn, call->call_id, job->result, msg);
    goto out;
  }
  log_info("admin removed: %s of %s (by %s), %zu tokens revoked",
           job->u.admin_remove.user, job->u.admin_remove.domain,
           job->u.admin_remove.by, job->u.admin_remove.n_hashes);
  if (conn_is_open(call->conn)) {
    resp.call_id = call->call_id;
    resp.status = &status;
    resp.result_case = TOKEND__V1__RESPONSE__RESULT_REVOKE_DOMAIN_ADMIN;
    resp.revoke_domain_admin = &rr;
    rr.tokens_revoked = (uint32_t)job->u.admin_remove.n_hashes;
    (void)conn_send(call->conn, &resp, 0);
  }
out:
  free(job->u.admin_remove.hashes);
  call_end(call);
}

static void
handle_revoke_admin(conn_t *c, uint64_t call_id, const authz_actor_t *actor,
                    const Tokend__V1__RevokeDomainAdminRequest *req) {
  call_t *call;

  if (refuse_non_operator(c, call_id, actor, "RevokeDomainAdmin",
                          req->domain) ||
      reject_domain_user(c, call_id, req->domain, req->user))
    return;
  call = call_new(c, call_id, STORE_JOB_ADMIN_REMOVE, admin_remove_done);
  if (call == NULL) {
    send_error(c, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  snprintf(call->job.u.admin_remove.domain,
           sizeof(call->job.u.admin_remove.domain), "%s", req->domain);
  snprintf(call->job.u.admin_remove.user, sizeof(call->job.u.admin_remove.user),
           "%s", req->user);
  snprintf(call->job.u.admin_remove.by, sizeof(call->job.u.admin_remove.by),
           "%s", authz_doer(c, actor));
  call->job.u.admin_remove.revoke_tokens = req->revoke_their_tokens;
  call->job.u.admin_remove.now = tokend_now_ms();
  authz_audit_fill(&call->audit, c, actor, "RevokeDomainAdmin", req->domain, "",
                   0,
                   req->revoke_their_tokens ? "and revoke their tokens" : "");
  snprintf(call->audit.detail, sizeof(call->audit.detail), "%s%s", req->user,
           req->revoke_their_tokens ? " (and their tokens)" : "");
  call->job.audit = &call->audit;
  call_submit(call);
}

/* Answered from memory: the admin table is kept in step with the store. */
static void handle_list_admins(conn_t *c, uint64_t call_id,
                               const authz_actor_t *actor,
                               const Tokend__V1__ListDomainAdminsRequest *req) {
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__ListDomainAdminsResponse lr =
      TOKEND__V1__LIST_DOMAIN_ADMINS_RESPONSE__INIT;
  Tokend__V1__DomainAdmin *admins = NULL, **ptrs = NULL;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  const domain_t *dom;
  size_t i, n = 0;

  if (refuse_non_operator(c, call_id, actor, "ListDomainAdmins", req->domain) ||
      reject_nul(c, call_id, req->domain, "domain"))
    return;
  if (validate_domain(req->domain, why, sizeof(why)) != 0) {
    send_error(c, call_id, TOKEND_EINVAL, why);
    return;
  }
  dom = domains_find(&c->server->domains, req->domain);
  if (dom != NULL && dom->n_admins > 0) {
    n = dom->n_admins;
    admins = calloc(n, sizeof(*admins));
    ptrs = calloc(n, sizeof(*ptrs));
    if (admins == NULL || ptrs == NULL) {
      send_error(c, call_id, TOKEND_ENOMEM, "out of memory");
      goto out;
    }
    for (i = 0; i < n; i++) {
      tokend__v1__domain_admin__init(&admins[i]);
      admins[i].user = (char *)dom->admins[i].user;
      admins[i].granted_at = dom->admins[i].granted_at;
      admins[i].granted_by = (char *)dom->admins[i].granted_by;
      ptrs[i] = &admins[i];
    }
  }
  resp.call_id = call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_LIST_DOMAIN_ADMINS;
  resp.list_domain_admins = &lr;
  lr.n_admins = n;
  lr.admins = ptrs;
  (void)conn_send(c, &resp, 0);
out:
  free(admins);
  free(ptrs);
}

/* ---- Audit log ---- */

static void audit_list_done(store_job_t *job) {
  call_t *call = (call_t *)job;
  store_audit_t *rows = job->u.audit_list.rows;
  size_t n = job->u.audit_list.n_rows, i;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__ListAuditEventsResponse lr =
      TOKEND__V1__LIST_AUDIT_EVENTS_RESPONSE__INIT;
  Tokend__V1__AuditEvent *evs = NULL, **ptrs = NULL;
  char next[TOKEND_PAGE_TOKEN_BYTES] = "";
  char msg[TOKEND_STATUS_MESSAGE_BYTES];

  if (conn_answer_later(call->conn, job))
    return;
  if (!conn_is_open(call->conn) || refused_by_worker(call, "ListAuditEvents"))
    goto out;
  if (job->result != 0) {
    snprintf(msg, sizeof(msg), "could not read the audit log: %s", job->errmsg);
    send_error(call->conn, call->call_id, job->result, msg);
    goto out;
  }
  if (n > call->page_size) {
    n = call->page_size;
    page_token_encode("a1.", rows[n - 1].id, next);
  }
  if (n > 0) {
    evs = calloc(n, sizeof(*evs));
    ptrs = calloc(n, sizeof(*ptrs));
    if (evs == NULL || ptrs == NULL) {
      send_error(call->conn, call->call_id, TOKEND_ENOMEM, "out of memory");
      goto out;
    }
  }
  for (i = 0; i < n; i++) {
    tokend__v1__audit_event__init(&evs[i]);
    evs[i].id = rows[i].id;
    evs[i].time = rows[i].at;
    evs[i].peer_uid = rows[i].peer_uid;
    evs[i].peer_pid = rows[i].peer_pid;
    evs[i].actor = rows[i].actor;
    evs[i].break_glass = rows[i].break_glass != 0;
    evs[i].domain = rows[i].domain;
    evs[i].token_id = rows[i].token_id;
    evs[i].method = rows[i].method;
    evs[i].code = rows[i].code;
    evs[i].detail = rows[i].detail;
    evs[i].count = rows[i].count > 0 ? (uint64_t)rows[i].count : 1;
    ptrs[i] = &evs[i];
  }
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_LIST_AUDIT_EVENTS;
  resp.list_audit_events = &lr;
  lr.n_events = n;
  lr.events = ptrs;
  lr.next_page_token = next;
  (void)conn_send(call->conn, &resp, 0);
out:
  free(evs);
  free(ptrs);
  free(rows);
  call_end(call);
}

static void handle_list_audit(conn_t *c, uint64_t call_id,
                              const authz_actor_t *actor,
                              const Tokend__V1__ListAuditEventsRequest *req) {
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  uint32_t page_size = req->page_size;
  int64_t before = 0;
  call_t *call;

  if (reject_nul(c, call_id, req->domain, "domain") ||
      reject_nul(c, call_id, req->page_token, "page_token"))
    return;
  if (req->domain[0] == '\0') {
    if (refuse_non_operator(c, call_id, actor, "ListAuditEvents", ""))
      return;
  } else {
    if (validate_domain(req->domain, why, sizeof(why)) != 0) {
      send_error(c, call_id, TOKEND_EINVAL, why);
      return;
    }
    if (authz_domain_admin(c, actor, req->domain, why, sizeof(why)) != 0) {
      authz_refuse(c, call_id, actor, "ListAuditEvents", "not-domain-admin",
                   req->domain, TOKEND_EPERM, why);
      return;
    }
  }
  if (req->page_token[0] != '\0' &&
      page_token_decode("a1.", req->page_token, &before) != 0) {
    send_error(c, call_id, TOKEND_EINVAL,
               "page_token is not one this server handed out");
    return;
  }
  if (page_size == 0)
    page_size = TOKEND_AUDIT_PAGE_DEFAULT;
  if (page_size > TOKEND_LIST_PAGE_MAX)
    page_size = TOKEND_LIST_PAGE_MAX;
  call = call_new(c, call_id, STORE_JOB_AUDIT_LIST, audit_list_done);
  if (call == NULL) {
    send_error(c, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  call->page_size = page_size;
  call->job.u.audit_list.rows =
      call_rows(call, (size_t)page_size + 1, sizeof(store_audit_t));
  if (call->job.u.audit_list.rows == NULL) {
    free(call);
    return;
  }
  call->job.u.audit_list.max_rows = (size_t)page_size + 1;
  snprintf(call->job.u.audit_list.domain, sizeof(call->job.u.audit_list.domain),
           "%s", req->domain);
  call->job.u.audit_list.since = req->since;
  call->job.u.audit_list.before_id = before;
  /* Every domain's log ("") is the operators' alone, checked above. */
  if (req->domain[0] != '\0')
    authz_job_require_admin(&call->job, c, actor, req->domain);
  call_submit(call);
}

static void audit_verify_done(store_job_t *job) {
  call_t *call = (call_t *)job;
  const store_audit_check_t *chk = &job->u.audit_verify.check;
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__VerifyAuditLogResponse vr =
      TOKEND__V1__VERIFY_AUDIT_LOG_RESPONSE__INIT;
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  char hex[2 * STORE_AUDIT_HASH_BYTES + 1];
  char problem[sizeof(chk->why)];

  if (job->result != 0) {
    snprintf(msg, sizeof(msg), "could not read the audit log: %s", job->errmsg);
    if (conn_is_open(call->conn))
      send_error(call->conn, call->call_id, job->result, msg);
    goto out;
  }
  /* A chain that does not hold is tampering; an anchor that does not match
   * may be tampering (rows cut off) or a wrong anchor: the caller says. */
  if (chk->first_bad_id != 0 && !chk->anchor_mismatch)
    log_error("audit log: %s", chk->why);
  else if (chk->first_bad_id != 0)
    log_warn("audit log: %s", chk->why);
  else
    log_info("audit log verified: %lld rows", (long long)chk->rows_checked);
  if (!conn_is_open(call->conn))
    goto out;
  sodium_bin2hex(hex, sizeof(hex), chk->head_hash, sizeof(chk->head_hash));
  snprintf(problem, sizeof(problem), "%s", chk->why);
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_VERIFY_AUDIT_LOG;
  resp.verify_audit_log = &vr;
  vr.rows_checked = chk->rows_checked;
  vr.first_bad_id = chk->first_bad_id;
  vr.problem = problem;
  vr.head_id = chk->head_id;
  vr.head_hash = hex;
  (void)conn_send(call->conn, &resp, 0);
out:
  call_end(call);
}

/* Operators only. Runs on the store worker, which it keeps from writing
 * while it walks the log: one pass of a keyed hash per row. */
static void handle_verify_audit(conn_t *c, uint64_t call_id,
                                const authz_actor_t *actor,
                                const Tokend__V1__VerifyAuditLogRequest *req) {
  uint8_t anchor[STORE_AUDIT_HASH_BYTES];
  size_t n = 0;
  call_t *call;

  if (refuse_non_operator(c, call_id, actor, "VerifyAuditLog", "") ||
      reject_nul(c, call_id, req->anchor_hash, "anchor_hash"))
    return;
  if (req->anchor_id < 0 ||
      (req->anchor_id > 0 &&
       (strlen(req->anchor_hash) != 2 * sizeof(anchor) ||
        sodium_hex2bin(anchor, sizeof(anchor), req->anchor_hash,
                       strlen(req->anchor_hash), NULL, &n, NULL) != 0 ||
        n != sizeof(anchor)))) {
    send_error(c, call_id, TOKEND_EINVAL,
               "an anchor is a row id > 0 and its hash in 64 hex digits");
    return;
  }
  call = call_new(c, call_id, STORE_JOB_AUDIT_VERIFY, audit_verify_done);
  if (call == NULL) {
    send_error(c, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  call->job.u.audit_verify.anchor_id = req->anchor_id;
  if (req->anchor_id > 0)
    memcpy(call->job.u.audit_verify.anchor_hash, anchor, sizeof(anchor));
  call_submit(call);
}

/* ---- WhoAmI ---- */

static void handle_whoami(conn_t *c, uint64_t call_id,
                          const authz_actor_t *actor) {
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__WhoAmIResponse wr = TOKEND__V1__WHO_AM_IRESPONSE__INIT;

  resp.call_id = call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_WHO_AM_I;
  resp.who_am_i = &wr;
  wr.uid = c->peer.uid;
  wr.gid = c->peer.gid;
  wr.pid = c->peer.pid;
  wr.user = (char *)authz_doer(c, actor);
  wr.operator_ = c->peer.is_operator != 0;
  wr.verifier = c->peer.is_verifier || c->peer.is_operator;
  (void)conn_send(c, &resp, 0);
}

/* ---- Frames ---- */

/* The domain a request names, or "" (static: never written to). */
static char *request_domain(const Tokend__V1__Request *req) {
  static char none[1];

  switch (req->method_case) {
  case TOKEND__V1__REQUEST__METHOD_ISSUE:
    return req->issue->domain;
  case TOKEND__V1__REQUEST__METHOD_REVOKE:
    return req->revoke->domain;
  case TOKEND__V1__REQUEST__METHOD_LIST:
    return req->list->domain;
  case TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN:
    return req->grant_domain_admin->domain;
  case TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN:
    return req->revoke_domain_admin->domain;
  case TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS:
    return req->list_domain_admins->domain;
  case TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS:
    return req->list_audit_events->domain;
  default:
    return none;
  }
}

static const char *method_name(Tokend__V1__Request__MethodCase m) {
  switch (m) {
  case TOKEND__V1__REQUEST__METHOD_ISSUE:
    return "Issue";
  case TOKEND__V1__REQUEST__METHOD_VERIFY:
    return "Verify";
  case TOKEND__V1__REQUEST__METHOD_REVOKE:
    return "Revoke";
  case TOKEND__V1__REQUEST__METHOD_LIST:
    return "List";
  case TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN:
    return "GrantDomainAdmin";
  case TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN:
    return "RevokeDomainAdmin";
  case TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS:
    return "ListDomainAdmins";
  case TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS:
    return "ListAuditEvents";
  case TOKEND__V1__REQUEST__METHOD_WHO_AM_I:
    return "WhoAmI";
  case TOKEND__V1__REQUEST__METHOD_VERIFY_AUDIT_LOG:
    return "VerifyAuditLog";
  default:
    return "Unknown";
  }
}

/* 1 if the decoded string s holds a token secret, whole or inside it. */
static int holds_token(const char *s) {
  return token_find_embedded(s, decoded_len(s));
}

/* The name of the first field of req other than Verify's token that holds a
 * token secret (pasted into the wrong field: a domain may contain '_', an
 * identity may be "<token>@x"), or NULL. Such a request is refused before
 * anything logs or audits its fields. */
static const char *request_token_field(const Tokend__V1__Request *req) {
  size_t i;

  if (holds_token(req->actor))
    return "actor";
  switch (req->method_case) {
  case TOKEND__V1__REQUEST__METHOD_ISSUE:
    if (holds_token(req->issue->domain))
      return "domain";
    if (holds_token(req->issue->label))
      return "label";
    for (i = 0; i < req->issue->n_scopes; i++)
      if (holds_token(req->issue->scopes[i]))
        return "scopes";
    return NULL;
  case TOKEND__V1__REQUEST__METHOD_REVOKE:
    return holds_token(req->revoke->domain)     ? "domain"
           : holds_token(req->revoke->token_id) ? "token_id"
                                                : NULL;
  case TOKEND__V1__REQUEST__METHOD_LIST:
    return holds_token(req->list->domain)       ? "domain"
           : holds_token(req->list->page_token) ? "page_token"
                                                : NULL;
  case TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN:
    return holds_token(req->grant_domain_admin->domain) ? "domain"
           : holds_token(req->grant_domain_admin->user) ? "user"
                                                        : NULL;
  case TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN:
    return holds_token(req->revoke_domain_admin->domain) ? "domain"
           : holds_token(req->revoke_domain_admin->user) ? "user"
                                                         : NULL;
  case TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS:
    return holds_token(req->list_domain_admins->domain) ? "domain" : NULL;
  case TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS:
    return holds_token(req->list_audit_events->domain)       ? "domain"
           : holds_token(req->list_audit_events->page_token) ? "page_token"
                                                             : NULL;
  default:
    return NULL;
  }
}

int dispatch_frame(conn_t *c, const uint8_t *body, size_t len) {
  static log_limit_t token_field_log = LOG_LIMIT_DEFAULT;
  const char *field;
  pb_arena_t *arena = &c->server->arena;
  char msg[TOKEND_STATUS_MESSAGE_BYTES], why[TOKEND_STATUS_MESSAGE_BYTES];
  Tokend__V1__Request *req;
  vw_request_t vreq;
  authz_actor_t actor;
  int err;

  /* The hot path: a plain Verify is decoded by hand, without protobuf-c.
   * Anything else, a Verify in any other shape, or one too big to carry a
   * token (which protobuf-c decodes within --max-request-memory) goes the
   * general way. */
  if (len <= VERIFY_FAST_MAX_BODY &&
      vw_request_decode(body, len, &vreq) == VW_VERIFY) {
    handle_verify(c, vreq.call_id, vreq.token, vreq.token_len);
    return 0;
  }
  req = tokend__v1__request__unpack(&arena->allocator, len, body);
  if (req == NULL) {
    if (arena->exhausted) {
      snprintf(msg, sizeof(msg),
               "request of %zu bytes needs more than %u bytes of memory to "
               "decode",
               len, (unsigned)c->server->cfg.max_request_memory);
      log_warn("conn %llu: %s; closing", (unsigned long long)c->id, msg);
      conn_send_status(c, 0, TOKEND_GRPC_RESOURCE_EXHAUSTED, msg);
    } else {
      log_warn("conn %llu: request of %zu bytes does not decode; closing",
               (unsigned long long)c->id, len);
      conn_send_status(c, 0, TOKEND_GRPC_INVALID_ARGUMENT,
                       "request is not a valid tokend.v1.Request message");
    }
    pb_arena_reset(arena);
    return TOKEND_EPROTO;
  }
  /* Verify, the hot path, needs no actor. */
  if (req->method_case == TOKEND__V1__REQUEST__METHOD_VERIFY &&
      req->actor[0] == '\0') {
    handle_verify(c, req->call_id, req->verify->token,
                  decoded_len(req->verify->token));
    goto out;
  }
  /* Before anything can log, audit or quote a field: the value is named by
   * its field only, and the arena wipes it below. */
  if ((field = request_token_field(req)) != NULL) {
    snprintf(msg, sizeof(msg),
             "%s: this looks like a token secret; it was not recorded", field);
    log_limited(&token_field_log, LOG_WARN,
                "conn %llu: uid %u sent a token secret in %s of a %s call; "
                "refused, not recorded",
                (unsigned long long)c->id, (unsigned)c->peer.uid, field,
                method_name(req->method_case));
    send_error(c, req->call_id, TOKEND_EINVAL, msg);
    goto out;
  }
  /* One place where every domain enters: from here on (authorization,
   * store, log, audit) a domain is in lower case. After the token check:
   * lower case would break a pasted token's checksum. */
  validate_domain_normalize(request_domain(req));
  if (reject_nul(c, req->call_id, req->actor, "actor"))
    goto out;
  if ((err = authz_actor(c, req->actor, &actor, why, sizeof(why))) != 0) {
    if (err == TOKEND_EPERM) {
      /* A forgery attempt: recorded under the peer's own identity, in the
       * domain it targeted, so that domain's admins see it. */
      snprintf(actor.user, sizeof(actor.user), "%s", c->peer.user);
      actor.break_glass = 0;
      authz_refuse(c, req->call_id, &actor, method_name(req->method_case),
                   "actor-not-allowed", request_domain(req), err, why);
    } else {
      send_error(c, req->call_id, err, why);
    }
    goto out;
  }
  switch (req->method_case) {
  case TOKEND__V1__REQUEST__METHOD_VERIFY:
    handle_verify(c, req->call_id, req->verify->token,
                  decoded_len(req->verify->token));
    break;
  case TOKEND__V1__REQUEST__METHOD_ISSUE:
    handle_issue(c, req->call_id, &actor, req->issue);
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE:
    handle_revoke(c, req->call_id, &actor, req->revoke);
    break;
  case TOKEND__V1__REQUEST__METHOD_LIST:
    handle_list(c, req->call_id, &actor, req->list);
    break;
  case TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN:
    handle_grant_admin(c, req->call_id, &actor, req->grant_domain_admin);
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN:
    handle_revoke_admin(c, req->call_id, &actor, req->revoke_domain_admin);
    break;
  case TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS:
    handle_list_admins(c, req->call_id, &actor, req->list_domain_admins);
    break;
  case TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS:
    handle_list_audit(c, req->call_id, &actor, req->list_audit_events);
    break;
  case TOKEND__V1__REQUEST__METHOD_WHO_AM_I:
    handle_whoami(c, req->call_id, &actor);
    break;
  case TOKEND__V1__REQUEST__METHOD_VERIFY_AUDIT_LOG:
    handle_verify_audit(c, req->call_id, &actor, req->verify_audit_log);
    break;
  default:
    conn_send_status(c, req->call_id, TOKEND_GRPC_UNIMPLEMENTED,
                     "request names no method this server implements");
    break;
  }
out:
  /* Every handler copied what it keeps; the arena wipes the request
   * (a Verify carries a secret) and takes it back. */
  tokend__v1__request__free_unpacked(req, &arena->allocator);
  pb_arena_reset(arena);
  return 0;
}

/* ---- Refusals counted, written once per interval ---- */

/* The server's timer and shutdown reach authz through here, as they reach
 * the other store writes, so server.c does not include authz.h. */
size_t dispatch_flush_refusals(server_t *s) { return authz_refusals_flush(s); }

/* ---- last_used write-back ---- */

static void flush_done(store_job_t *job) {
  flush_t *f = (flush_t *)job;
  server_t *s = f->server;

  /* last_used_at and the counters are loss-tolerant: when the store
   * refuses writes for good (--read-only, or its file is gone), they are
   * dropped rather than retried. */
  if (job->result != 0 && job->refused) {
    log_limited(&s->flush_log, LOG_WARN,
                "last_used write-back of %zu tokens dropped: %s",
                job->u.touch.n, job->errmsg);
  } else if (job->result != 0) {
    index_mark_dirty(s->index, f->items, job->u.touch.n);
    domains_put_back_counts(&s->domains, f->counts, job->u.touch.n_counts);
    /* Retrying at once would spin while the disk stays full or read-only:
     * wait, twice as long after each failure in a row, and say so once per
     * --log-repeat-interval-ms however often it fails. */
    s->flush_failures++;
    s->flush_not_before = uv_now(&s->loop) + dispatch_flush_backoff_ms(s);
    snprintf(s->flush_errmsg, sizeof(s->flush_errmsg), "%s",
             job->errmsg[0] != '\0' ? job->errmsg
                                    : tokend_strerror(job->result));
    log_limited(&s->flush_log, LOG_WARN,
                "last_used write-back of %zu tokens failed (%s); retrying in "
                "%llu ms (%u failures in a row)",
                job->u.touch.n, s->flush_errmsg,
                (unsigned long long)dispatch_flush_backoff_ms(s),
                (unsigned)s->flush_failures);
  } else if (s->flush_failures > 0) {
    log_info("last_used write-back works again after %u failures",
             (unsigned)s->flush_failures);
    s->flush_failures = 0;
    s->flush_not_before = 0;
  }
  free(f->items);
  free(f->counts);
  free(f);
  s->flush_in_flight = 0;
  server_job_end(s);
}

uint64_t dispatch_flush_backoff_ms(const server_t *s) {
  uint64_t ms = CONFIG_FLUSH_BACKOFF_MIN_MS;
  uint32_t i;

  if (s->flush_failures == 0)
    return 0;
  /* Doubling stops at the cap, so this never overflows. */
  for (i = 1; i < s->flush_failures && ms < s->cfg.flush_backoff_max_ms; i++)
    ms *= 2;
  return ms < s->cfg.flush_backoff_max_ms ? ms : s->cfg.flush_backoff_max_ms;
}

int dispatch_flush_last_used(server_t *s) {
  size_t n = index_dirty_count(s->index), n_counts = 0;
  flush_t *f;

  if (s->flush_in_flight)
    return 0;
  f = calloc(1, sizeof(*f));
  if (f == NULL)
    return 0;
  if (domains_take_counts(&s->domains, &f->counts, &n_counts) != 0 ||
      (n == 0 && n_counts == 0)) {
    free(f);
    return 0;
  }
  f->items = malloc((n > 0 ? n : 1) * sizeof(*f->items));
  if (f->items == NULL) {
    domains_put_back_counts(&s->domains, f->counts, n_counts);
    free(f->counts);
    free(f);
    return 0;
  }
  f->job.u.touch.counts = f->counts;
  f->job.u.touch.n_counts = n_counts;
  f->job.u.touch.now = tokend_now_ms();
  f->server = s;
  f->job.kind = STORE_JOB_TOUCH;
  f->job.done = flush_done;
  f->job.u.touch.items = f->items;
  f->job.u.touch.n = index_take_dirty(s->index, f->items, n);
  s->flush_in_flight = 1;
  server_job_begin(s);
  store_worker_submit(s->worker, &f->job);
  return 1;
}
