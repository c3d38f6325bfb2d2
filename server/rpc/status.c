/* ServerStatus: how this tokend is doing, from memory (never the store):
 * what a health check, an operator or a multi-host test asks. */
#include <sodium.h>
#include <string.h>

#include "rpc/internal.h"

void rpc_server_status(rpc_t *r, sink_t *k, uint64_t call_id,
                       const authz_actor_t *actor,
                       const Tokend__V1__Request *request) {
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__ServerStatusResponse sr =
      TOKEND__V1__SERVER_STATUS_RESPONSE__INIT;
  rpc_server_status_t st = {.store = "", .host_id = ""};
  uint64_t acc[2][4] = {{0}};
  uint8_t digest[32];
  char hex[2 * sizeof(digest) + 1];

  (void)actor;
  (void)request;
  if (r->env.status != NULL)
    r->env.status(r->env.ctx, &st);
  /* Tokens and admins summed apart, then hashed together: equal on two
   * hosts exactly when both sums are. */
  index_digest(r->env.index, acc[0]);
  domains_digest(r->env.domains, acc[1]);
  crypto_generichash(digest, sizeof(digest), (const unsigned char *)acc,
                     sizeof(acc), NULL, 0);
  sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
  resp.call_id = call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_SERVER_STATUS;
  resp.server_status = &sr;
  sr.version = (char *)TOKEND_VERSION;
  sr.store = (char *)st.store;
  sr.host_id = (char *)st.host_id;
  sr.applied_revision = st.applied_revision;
  sr.fresh = st.fresh != 0;
  sr.lease_left_ms = st.lease_left_ms;
  sr.tokens = index_count(r->env.index);
  sr.index_digest = hex;
  sr.problem = st.problem;
  sr.tokens_previous_pepper = index_pepper_old_count(r->env.index);
  (void)rpc_send(r, k, &resp, 0);
}

/* The revocation epoch region (issue 15), its descriptor riding on the
 * answer. Without a region, or a transport that can pass descriptors, the
 * caller is told so and does not cache. */
void rpc_get_cache_region(rpc_t *r, sink_t *k, uint64_t call_id,
                          const authz_actor_t *actor,
                          const Tokend__V1__Request *request) {
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__GetCacheRegionResponse cr =
      TOKEND__V1__GET_CACHE_REGION_RESPONSE__INIT;

  (void)actor;
  (void)request;
  if (r->epoch.map == NULL || k->ops->pass_fd == NULL ||
      k->ops->pass_fd(k, r->epoch.fd) != 0) {
    rpc_send_error(r, k, call_id, TOKEND_EUNAVAIL,
                   "this tokend has no revocation epoch region to share");
    return;
  }
  resp.call_id = call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_GET_CACHE_REGION;
  resp.get_cache_region = &cr;
  cr.generation = r->epoch.map->generation;
  cr.size = r->epoch.map->size;
  cr.heartbeat_bound_ms = (uint32_t)r->epoch.map->heartbeat_bound_ms;
  (void)rpc_send(r, k, &resp, 0);
}
