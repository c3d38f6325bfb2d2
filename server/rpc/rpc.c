#include "rpc/rpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "token.h"
#include "tokend_time.h"
#include "validate.h"
#include "verify_wire.h"

int rpc_new(const rpc_env_t *env, rpc_t **out) {
  rpc_t *r = calloc(1, sizeof(*r));
  int err;

  if (r == NULL)
    return TOKEND_ENOMEM;
  r->env = *env;
  if ((err = pb_arena_init(&r->arena, 16384, env->cfg->max_request_memory)) !=
      0)
    goto err_free_rpc;
  if (env->cfg->refusal_audit_interval_ms > 0 &&
      (err = refusals_new(env->cfg->refusal_audit_max_keys, &r->refusals)) != 0)
    goto err_free_arena;
  log_limit_init(&r->flush_log, env->cfg->log_repeat_interval_ms);
  log_limit_init(&r->rekey_log, env->cfg->log_repeat_interval_ms);
  if ((err = rpc_verify_init(r)) != 0)
    goto err_free_refusals;
  r->now_ms = tokend_now_ms();
  rpc_epoch_init(r);
  *out = r;
  return 0;

err_free_refusals:
  refusals_free(r->refusals);
err_free_arena:
  pb_arena_free(&r->arena);
err_free_rpc:
  free(r);
  return err;
}

void rpc_free(rpc_t *r) {
  if (r == NULL)
    return;
  rpc_verify_fini(r);
  epoch_close(&r->epoch);
  refusals_free(r->refusals);
  pb_arena_free(&r->arena);
  free(r);
}

void rpc_burst(rpc_t *r) {
  r->now_ms = tokend_now_ms();
  r->burst_ns = uv_hrtime();
}

int rpc_send(rpc_t *r, sink_t *k, const Tokend__V1__Response *resp,
             int secret) {
  size_t n;
  uint8_t *body;

  if (k->closed)
    return 0;
  /* This sink's queued Verifies are answered first: order is kept. */
  if (k->queued > 0) {
    rpc_verify_drain(r);
    if (k->closed)
      return 0;
  }
  n = tokend__v1__response__get_packed_size(resp);
  if ((body = k->ops->frame_begin(k, n)) == NULL)
    return TOKEND_ENOMEM;
  tokend__v1__response__pack(resp, body);
  return k->ops->frame_end(k, n, secret);
}

static void send_status(rpc_t *r, sink_t *k, uint64_t call_id, int grpc_code,
                        const char *message) {
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;

  status.code = grpc_code;
  status.message = (char *)message;
  resp.call_id = call_id;
  resp.status = &status;
  (void)rpc_send(r, k, &resp, 0);
}

void rpc_status(rpc_t *r, sink_t *k, int grpc_code, const char *message) {
  send_status(r, k, 0, grpc_code, message);
}

void rpc_send_error(rpc_t *r, sink_t *k, uint64_t call_id, int err,
                    const char *msg) {
  send_status(r, k, call_id, tokend_err_grpc(err), msg);
}

/* protobuf-c NUL-terminates each decoded string without keeping its length,
 * so a string with a NUL inside would silently lose its tail. The arena
 * remembers how many bytes were decoded; they must all be before the NUL. */
size_t rpc_decoded_len(const char *s) {
  return s == protobuf_c_empty_string ? 0 : pb_arena_alloc_size(s) - 1;
}

static int string_intact(const char *s) {
  return strlen(s) == rpc_decoded_len(s);
}

int rpc_reject_nul(rpc_t *r, sink_t *k, uint64_t call_id, const char *s,
                   const char *field) {
  char msg[TOKEND_STATUS_MESSAGE_BYTES];

  if (string_intact(s))
    return 0;
  snprintf(msg, sizeof(msg), "%s contains a NUL byte", field);
  rpc_send_error(r, k, call_id, TOKEND_EINVAL, msg);
  return 1;
}

/* ---- The method table, expanded ---- */

#define RPC_DOMAIN_OF_DOMAIN(member) return req->member->domain;
#define RPC_DOMAIN_OF_NO_DOMAIN(member) break;
#define RPC_DOMAIN_CASE(name, member, CASE, domain, who, handler)              \
  case TOKEND__V1__REQUEST__METHOD_##CASE:                                     \
    RPC_DOMAIN_OF_##domain(member)

/* The domain a request names, or "" (static: never written to). */
static char *request_domain(const Tokend__V1__Request *req) {
  static char none[1];

  switch (req->method_case) {
    RPC_METHODS(RPC_DOMAIN_CASE)
  default:
    break;
  }
  return none;
}

#define RPC_NAME_CASE(name, member, CASE, domain, who, handler)                \
  case TOKEND__V1__REQUEST__METHOD_##CASE:                                     \
    return #name;

static const char *method_name(Tokend__V1__Request__MethodCase m) {
  switch (m) {
    RPC_METHODS(RPC_NAME_CASE)
  default:
    return "Unknown";
  }
}

/* 1 if the decoded string s holds a token secret, whole or inside it. */
static int holds_token(const char *s) {
  return token_find_embedded(s, rpc_decoded_len(s));
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
    if (holds_token(req->issue->metadata))
      return "metadata";
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
  /* issue 17. Lookup's token is the one field besides Verify's that may
   * hold a secret (looked up by it, never logged). */
  case TOKEND__V1__REQUEST__METHOD_LOOKUP:
    return holds_token(req->lookup->domain)     ? "domain"
           : holds_token(req->lookup->token_id) ? "token_id"
                                                : NULL;
  case TOKEND__V1__REQUEST__METHOD_EDIT:
    if (holds_token(req->edit->domain))
      return "domain";
    if (holds_token(req->edit->token_id))
      return "token_id";
    if (holds_token(req->edit->label))
      return "label";
    if (holds_token(req->edit->metadata))
      return "metadata";
    for (i = 0; i < req->edit->n_scopes; i++)
      if (holds_token(req->edit->scopes[i]))
        return "scopes";
    return NULL;
  case TOKEND__V1__REQUEST__METHOD_ROLL:
    return holds_token(req->roll->domain)     ? "domain"
           : holds_token(req->roll->token_id) ? "token_id"
                                              : NULL;
  case TOKEND__V1__REQUEST__METHOD_BULK_REVOKE:
    if (holds_token(req->bulk_revoke->domain))
      return "domain";
    if (holds_token(req->bulk_revoke->created_by))
      return "created_by";
    for (i = 0; i < req->bulk_revoke->n_token_ids; i++)
      if (holds_token(req->bulk_revoke->token_ids[i]))
        return "token_ids";
    return NULL;
  case TOKEND__V1__REQUEST__METHOD_SET_DOMAIN_POLICY:
    if (holds_token(req->set_domain_policy->domain))
      return "domain";
    if (req->set_domain_policy->policy == NULL)
      return NULL;
    if (holds_token(req->set_domain_policy->policy->updated_by))
      return "policy.updated_by";
    for (i = 0; i < req->set_domain_policy->policy->n_allowed_scopes; i++)
      if (holds_token(req->set_domain_policy->policy->allowed_scopes[i]))
        return "policy.allowed_scopes";
    return NULL;
  case TOKEND__V1__REQUEST__METHOD_GET_DOMAIN_POLICY:
    return holds_token(req->get_domain_policy->domain) ? "domain" : NULL;
  /* Its tokens are secrets by design (wiped with the arena, never logged
   * nor stored); only its source must not hold one. */
  case TOKEND__V1__REQUEST__METHOD_REVOKE_LEAKED:
    return holds_token(req->revoke_leaked->source) ? "source" : NULL;
  default:
    return NULL;
  }
}

/* The rules the table states that apply before a handler runs: verifiers
 * and operators (a domain admin's rule needs the domain validated first,
 * and its handler applies it). */
static int refused_by_table(rpc_t *r, sink_t *k, uint64_t call_id,
                            const authz_actor_t *actor, rpc_who_t who,
                            const char *method, const char *domain) {
  switch (who) {
  case RPC_WHO_VERIFIER:
    return rpc_refuse_not_verifier(r, k, call_id);
  case RPC_WHO_OPERATOR:
    return rpc_refuse_not_operator(r, k, call_id, actor, method, domain);
  case RPC_WHO_LEAK_REPORTER:
    return rpc_refuse_not_leak_reporter(r, k, call_id, actor, method);
  case RPC_WHO_DOMAIN_ADMIN:
  case RPC_WHO_ANYONE:
    break;
  }
  return 0;
}

#define RPC_DISPATCH_CASE(name, member, CASE, domain, who, handler)            \
  case TOKEND__V1__REQUEST__METHOD_##CASE:                                     \
    if (!refused_by_table(r, k, req->call_id, &actor, who, #name,              \
                          request_domain(req)))                                \
      handler(r, k, req->call_id, &actor, req);                                \
    break;

/* The hot path's bound: a Verify of the longest token with the longest
 * call_id (70 bytes) and some room. Far below the smallest
 * --max-request-memory, so limits apply as they would through protobuf-c. */
#define VERIFY_FAST_MAX_BODY (TOKEND_TOKEN_MAX_CHARS + 32)

/* call_id 0 is reserved: an answer on it is a connection-level error, after
 * which tokend closes the connection. A request on it could not be told
 * apart from one, so it is refused the same way: answered on call_id 0 and
 * closed (docs/PROTOCOL.md). Returns TOKEND_EPROTO for rpc_frame to return
 * (net closes the connection once the answer is written). */
static int refuse_call_id_zero(rpc_t *r, sink_t *k) {
  log_warn("conn %llu: request with call_id 0; closing",
           (unsigned long long)k->id);
  send_status(r, k, 0, TOKEND_GRPC_INVALID_ARGUMENT,
              "call_id 0 is reserved for connection-level errors: number "
              "calls from 1; closing the connection");
  return TOKEND_EPROTO;
}

int rpc_frame(rpc_t *r, sink_t *k, const uint8_t *body, size_t len) {
  static log_limit_t token_field_log = LOG_LIMIT_DEFAULT;
  const char *field;
  pb_arena_t *arena = &r->arena;
  char msg[TOKEND_STATUS_MESSAGE_BYTES], why[TOKEND_STATUS_MESSAGE_BYTES];
  Tokend__V1__Request *req;
  vw_request_t vreq;
  authz_actor_t actor;
  int err, rc = 0;

  /* The hot path: a plain Verify is decoded by hand, without protobuf-c.
   * Anything else, a Verify in any other shape, or one too big to carry a
   * token (which protobuf-c decodes within --max-request-memory) goes the
   * general way. */
  if (len <= VERIFY_FAST_MAX_BODY &&
      vw_request_decode(body, len, &vreq) == VW_VERIFY) {
    if (vreq.call_id == 0)
      return refuse_call_id_zero(r, k);
    if (!rpc_refuse_not_verifier(r, k, vreq.call_id))
      rpc_verify_token(r, k, vreq.call_id, vreq.token, vreq.token_len);
    return 0;
  }
  req = tokend__v1__request__unpack(&arena->allocator, len, body);
  if (req == NULL) {
    if (arena->exhausted) {
      snprintf(msg, sizeof(msg),
               "request of %zu bytes needs more than %u bytes of memory to "
               "decode",
               len, (unsigned)r->env.cfg->max_request_memory);
      log_warn("conn %llu: %s; closing", (unsigned long long)k->id, msg);
      send_status(r, k, 0, TOKEND_GRPC_RESOURCE_EXHAUSTED, msg);
    } else {
      log_warn("conn %llu: request of %zu bytes does not decode; closing",
               (unsigned long long)k->id, len);
      send_status(r, k, 0, TOKEND_GRPC_INVALID_ARGUMENT,
                  "request is not a valid tokend.v1.Request message");
    }
    pb_arena_reset(arena);
    return TOKEND_EPROTO;
  }
  if (req->call_id == 0) {
    rc = refuse_call_id_zero(r, k);
    goto out;
  }
  /* Verify, the hot path, needs no actor. */
  if (req->method_case == TOKEND__V1__REQUEST__METHOD_VERIFY &&
      req->actor[0] == '\0') {
    if (!rpc_refuse_not_verifier(r, k, req->call_id)) {
      rpc_verify_token(r, k, req->call_id, req->verify->token,
                       rpc_decoded_len(req->verify->token));
      rpc_verify_cached_hits(r, req->verify->token,
                             rpc_decoded_len(req->verify->token),
                             req->verify->cached_hits);
    }
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
                (unsigned long long)k->id, (unsigned)k->peer.uid, field,
                method_name(req->method_case));
    rpc_send_error(r, k, req->call_id, TOKEND_EINVAL, msg);
    goto out;
  }
  /* One place where every domain enters: from here on (authorization,
   * store, log, audit) a domain is in lower case. After the token check:
   * lower case would break a pasted token's checksum. */
  validate_domain_normalize(request_domain(req));
  if (rpc_reject_nul(r, k, req->call_id, req->actor, "actor"))
    goto out;
  if ((err = authz_actor(&k->peer, req->actor, &actor, why, sizeof(why))) !=
      0) {
    if (err == TOKEND_EPERM) {
      /* A forgery attempt: recorded under the peer's own identity, in the
       * domain it targeted, so that domain's admins see it. */
      snprintf(actor.user, sizeof(actor.user), "%s", k->peer.user);
      actor.break_glass = 0;
      rpc_refuse(r, k, req->call_id, &actor, method_name(req->method_case),
                 "actor-not-allowed", request_domain(req), err, why);
    } else {
      rpc_send_error(r, k, req->call_id, err, why);
    }
    goto out;
  }
  switch (req->method_case) {
    RPC_METHODS(RPC_DISPATCH_CASE)
  default:
    send_status(r, k, req->call_id, TOKEND_GRPC_UNIMPLEMENTED,
                "request names no method this server implements");
    break;
  }
out:
  /* Every handler copied what it keeps; the arena wipes the request
   * (a Verify carries a secret) and takes it back. */
  tokend__v1__request__free_unpacked(req, &arena->allocator);
  pb_arena_reset(arena);
  return rc;
}

/* ---- the revocation epoch region (issue 15) ---- */

/* Refreshes the heartbeat while this host is current: always with a store
 * of one host, and while within its lease (fresh_until) with a shared one.
 * A stopped, hung or partitioned tokend stops refreshing it, and its
 * clients stop trusting their caches within RPC_HEARTBEAT_BOUND_MS. */
static void on_heartbeat(uv_timer_t *t) {
  rpc_t *r = container_of(t, rpc_t, heartbeat);

  if (r->env.fresh_until == NULL || uv_now(t->loop) < *r->env.fresh_until)
    epoch_heartbeat(&r->epoch);
}

void rpc_epoch_init(rpc_t *r) {
  int err = epoch_open(&r->epoch, RPC_HEARTBEAT_BOUND_MS,
                       r->env.cfg->last_used_granularity_ms);

  if (err != 0) {
    /* Clients then do not cache: never a weaker guarantee. */
    log_warn("no revocation epoch region (%s): clients will not cache "
             "Verify answers",
             tokend_strerror(err));
    return;
  }
  if (r->env.loop == NULL)
    return;
  uv_timer_init(r->env.loop, &r->heartbeat);
  uv_timer_start(&r->heartbeat, on_heartbeat, RPC_HEARTBEAT_BOUND_MS / 4,
                 RPC_HEARTBEAT_BOUND_MS / 4);
  /* Keeps no loop alive; the server's shutdown walk closes it. */
  uv_unref((uv_handle_t *)&r->heartbeat);
}

void rpc_validity_taken(rpc_t *r) {
  if (r != NULL)
    epoch_bump(&r->epoch);
}

void rpc_epoch_retire(rpc_t *r) {
  if (r != NULL)
    epoch_retire(&r->epoch);
}

void rpc_feed_closed(rpc_t *r) {
  /* Past it from the start of time: never current again. */
  static const uint64_t never = 0;

  if (r != NULL && r->env.fresh_until != NULL)
    r->env.fresh_until = &never;
}
