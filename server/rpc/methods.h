/* The method table: every RPC in one line, in the manner of dqlite's
 * REQUEST__TYPES(X). From it rpc.c generates the dispatch switch,
 * method_name(), the domain a request names, and the generic part of
 * the refusal rules. Adding a method is one line here plus its handler (and
 * a store job if it writes).
 *
 * X(name, member, CASE, domain, who, handler):
 *   name     the method's name in logs and the audit table
 *   member   the request's oneof member (req->member)
 *   CASE     TOKEND__V1__REQUEST__METHOD_<CASE>
 *   domain   DOMAIN if req->member->domain names the domain it acts on,
 *            NO_DOMAIN if it names none
 *   who      who may call it (rpc_who_t): RPC_WHO_VERIFIER, RPC_WHO_OPERATOR
 *            (checked before the handler runs), RPC_WHO_DOMAIN_ADMIN (the
 *            handler checks it with rpc_refuse_not_domain_admin once the
 *            domain is known valid), RPC_WHO_ANYONE
 *   handler  void handler(rpc_t *, sink_t *, uint64_t call_id,
 *                         const authz_actor_t *, const Tokend__V1__Request *)
 *
 * Adding a method (say Lookup):
 *   1. proto/tokend.proto: its request and response in the oneofs;
 *   2. one line here: X(Lookup, lookup, LOOKUP, DOMAIN,
 *      RPC_WHO_DOMAIN_ADMIN, rpc_lookup);
 *   3. its handler in the file of its family (rpc/tokens.c): validate, then
 *      rpc_refuse_not_domain_admin if the table says so, then answer with
 *      rpc_send, or for a store call: a call_kind_t {apply, ok, ...} and
 *      call_new + call_submit (call.c runs the one done path);
 *   4. if it writes: its store job (store/worker.h).
 * request_token_field() in rpc.c lists the fields that must never hold a
 * token secret: add the new request's string fields there. */
#ifndef TOKEND_RPC_METHODS_H
#define TOKEND_RPC_METHODS_H

#define RPC_METHODS(X)                                                         \
  X(Issue, issue, ISSUE, DOMAIN, RPC_WHO_DOMAIN_ADMIN, rpc_issue)              \
  X(Verify, verify, VERIFY, NO_DOMAIN, RPC_WHO_VERIFIER, rpc_verify)           \
  X(Revoke, revoke, REVOKE, DOMAIN, RPC_WHO_DOMAIN_ADMIN, rpc_revoke)          \
  X(List, list, LIST, DOMAIN, RPC_WHO_DOMAIN_ADMIN, rpc_list)                  \
  X(GrantDomainAdmin, grant_domain_admin, GRANT_DOMAIN_ADMIN, DOMAIN,          \
    RPC_WHO_OPERATOR, rpc_grant_admin)                                         \
  X(RevokeDomainAdmin, revoke_domain_admin, REVOKE_DOMAIN_ADMIN, DOMAIN,       \
    RPC_WHO_OPERATOR, rpc_revoke_admin)                                        \
  X(ListDomainAdmins, list_domain_admins, LIST_DOMAIN_ADMINS, DOMAIN,          \
    RPC_WHO_OPERATOR, rpc_list_admins)                                         \
  X(ListAuditEvents, list_audit_events, LIST_AUDIT_EVENTS, DOMAIN,             \
    RPC_WHO_DOMAIN_ADMIN, rpc_list_audit)                                      \
  X(WhoAmI, who_am_i, WHO_AM_I, NO_DOMAIN, RPC_WHO_ANYONE, rpc_whoami)         \
  X(VerifyAuditLog, verify_audit_log, VERIFY_AUDIT_LOG, NO_DOMAIN,             \
    RPC_WHO_OPERATOR, rpc_verify_audit)                                        \
  X(ServerStatus, server_status, SERVER_STATUS, NO_DOMAIN, RPC_WHO_VERIFIER,   \
    rpc_server_status)                                                         \
  X(Backup, backup, BACKUP, NO_DOMAIN, RPC_WHO_OPERATOR, rpc_backup)           \
  X(GetCacheRegion, get_cache_region, GET_CACHE_REGION, NO_DOMAIN,             \
    RPC_WHO_VERIFIER, rpc_get_cache_region)                                    \
  X(Lookup, lookup, LOOKUP, DOMAIN, RPC_WHO_DOMAIN_ADMIN, rpc_lookup)          \
  X(Edit, edit, EDIT, DOMAIN, RPC_WHO_DOMAIN_ADMIN, rpc_edit)                  \
  X(Roll, roll, ROLL, DOMAIN, RPC_WHO_DOMAIN_ADMIN, rpc_roll)                  \
  X(BulkRevoke, bulk_revoke, BULK_REVOKE, DOMAIN, RPC_WHO_DOMAIN_ADMIN,        \
    rpc_bulk_revoke)                                                           \
  X(SetDomainPolicy, set_domain_policy, SET_DOMAIN_POLICY, DOMAIN,             \
    RPC_WHO_OPERATOR, rpc_set_domain_policy)                                   \
  X(GetDomainPolicy, get_domain_policy, GET_DOMAIN_POLICY, DOMAIN,             \
    RPC_WHO_DOMAIN_ADMIN, rpc_get_domain_policy)                               \
  X(RevokeLeaked, revoke_leaked, REVOKE_LEAKED, NO_DOMAIN,                     \
    RPC_WHO_LEAK_REPORTER, rpc_revoke_leaked)

/* Who may call a method. */
typedef enum {
  RPC_WHO_ANYONE,
  RPC_WHO_VERIFIER,     /* a verifier or an operator */
  RPC_WHO_DOMAIN_ADMIN, /* an admin of the domain, or break-glass */
  RPC_WHO_OPERATOR,
  RPC_WHO_LEAK_REPORTER /* --leak-reporter, or an operator (issue 17) */
} rpc_who_t;

#endif
