/* gen_corpus: writes the fuzzers' seed corpus, valid framed Requests that
 * reach every method and its main branches, into the directory given. Each
 * seed is one byte naming the peer that sends it (see fuzz_server.c), then
 * the frames.
 * Output is deterministic. The corpus is committed; regenerate it after a
 * protocol change (after `make fuzz` has built build-fuzz/) with:
 *   build-fuzz/tests/fuzz/gen_corpus tests/fuzz/corpus
 * which overwrites the seeds it writes. The verify_wire_* seeds are made by
 * hand (Verify messages in non-canonical encodings, for fuzz_verify_wire):
 * keep them, and delete any seed this program no longer writes by name. */
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "fuzz_fixtures.h"
#include "token.h"
#include "tokend.pb-c.h"

/* Far in the future (2100-01-01), so an Issue seed stays valid. */
#define FUTURE_MS 4102444800000LL

typedef struct {
  uint8_t buf[8192];
  size_t len;
} seed_t;

static const char *g_dir;
static int g_failed;

static void seed_add(seed_t *s, const Tokend__V1__Request *req) {
  size_t n = tokend__v1__request__get_packed_size(req);

  if (s->len + TOKEND_FRAME_HEADER_BYTES + n > sizeof(s->buf)) {
    fprintf(stderr, "gen_corpus: seed too big\n");
    exit(1);
  }
  frame_encode_header(s->buf + s->len, (uint32_t)n);
  tokend__v1__request__pack(req, s->buf + s->len + TOKEND_FRAME_HEADER_BYTES);
  s->len += TOKEND_FRAME_HEADER_BYTES + n;
}

static void seed_raw(seed_t *s, const void *bytes, size_t n) {
  memcpy(s->buf + s->len, bytes, n);
  s->len += n;
}

static void seed_write(const char *name, const seed_t *s) {
  char path[4096];
  FILE *f;

  snprintf(path, sizeof(path), "%s/%s", g_dir, name);
  f = fopen(path, "wb");
  if (f == NULL || fwrite(s->buf, 1, s->len, f) != s->len || fclose(f) != 0) {
    fprintf(stderr, "gen_corpus: %s: %s\n", path, strerror(errno));
    g_failed = 1;
  }
}

/* ---- requests ---- */

static void req_issue(seed_t *s, uint64_t call_id, const char *domain,
                      const char *label, int64_t expires_at,
                      const char **scopes, size_t n_scopes) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;

  ir.domain = (char *)domain;
  ir.label = (char *)label;
  ir.expires_at = expires_at;
  ir.scopes = (char **)scopes;
  ir.n_scopes = n_scopes;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &ir;
  seed_add(s, &req);
}

static void req_verify(seed_t *s, uint64_t call_id, const char *token) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;

  vr.token = (char *)token;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  seed_add(s, &req);
}

static void req_verify_fixture(seed_t *s, uint64_t call_id, const char *body) {
  char tok[TOKEND_TOKEN_BYTES];

  fuzz_token_string(body, tok);
  if (token_check(tok, strlen(tok)) != 0) {
    fprintf(stderr, "gen_corpus: fixture token %s is malformed\n", tok);
    exit(1);
  }
  req_verify(s, call_id, tok);
}

static void req_revoke(seed_t *s, uint64_t call_id, const char *domain,
                       const char *id) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RevokeRequest rr = TOKEND__V1__REVOKE_REQUEST__INIT;

  rr.domain = (char *)domain;
  rr.token_id = (char *)id;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE;
  req.revoke = &rr;
  seed_add(s, &req);
}

/* issue 17 */
static void req_issue_metadata(seed_t *s, uint64_t call_id,
                               const char *metadata) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;

  ir.domain = FUZZ_ADMIN_DOMAIN;
  ir.label = "with metadata";
  ir.metadata = (char *)metadata;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &ir;
  seed_add(s, &req);
}

static void req_lookup(seed_t *s, uint64_t call_id, const char *domain,
                       const char *id, const char *token) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__LookupRequest lr = TOKEND__V1__LOOKUP_REQUEST__INIT;

  lr.domain = (char *)domain;
  if (id != NULL)
    lr.token_id = (char *)id;
  if (token != NULL)
    lr.token = (char *)token;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LOOKUP;
  req.lookup = &lr;
  seed_add(s, &req);
}

static void req_edit(seed_t *s, uint64_t call_id, const char *domain,
                     const char *id, const char *label, const char *metadata,
                     int64_t expires_at, const char **scopes, size_t n_scopes) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__EditRequest er = TOKEND__V1__EDIT_REQUEST__INIT;

  er.domain = (char *)domain;
  er.token_id = (char *)id;
  if (label != NULL) {
    er.set_label = 1;
    er.label = (char *)label;
  }
  if (metadata != NULL) {
    er.set_metadata = 1;
    er.metadata = (char *)metadata;
  }
  if (expires_at >= 0) {
    er.set_expires_at = 1;
    er.expires_at = expires_at;
  }
  if (scopes != NULL) {
    er.set_scopes = 1;
    er.scopes = (char **)scopes;
    er.n_scopes = n_scopes;
  }
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_EDIT;
  req.edit = &er;
  seed_add(s, &req);
}

static void req_roll(seed_t *s, uint64_t call_id, const char *domain,
                     const char *id, int64_t grace_ms) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RollRequest rr = TOKEND__V1__ROLL_REQUEST__INIT;

  rr.domain = (char *)domain;
  rr.token_id = (char *)id;
  rr.grace_ms = grace_ms;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ROLL;
  req.roll = &rr;
  seed_add(s, &req);
}

static void req_list_expiring(seed_t *s, uint64_t call_id, int64_t within) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListRequest lr = TOKEND__V1__LIST_REQUEST__INIT;

  lr.domain = FUZZ_ADMIN_DOMAIN;
  lr.expiring_within_ms = within;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST;
  req.list = &lr;
  seed_add(s, &req);
}

static void req_list(seed_t *s, uint64_t call_id, const char *domain,
                     uint32_t page_size, const char *page_token,
                     int include_revoked) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListRequest lr = TOKEND__V1__LIST_REQUEST__INIT;

  lr.domain = (char *)domain;
  lr.page_size = page_size;
  lr.page_token = (char *)page_token;
  lr.include_revoked = include_revoked;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST;
  req.list = &lr;
  seed_add(s, &req);
}

static void req_grant(seed_t *s, uint64_t call_id, const char *domain,
                      const char *user) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__GrantDomainAdminRequest gr =
      TOKEND__V1__GRANT_DOMAIN_ADMIN_REQUEST__INIT;

  gr.domain = (char *)domain;
  gr.user = (char *)user;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN;
  req.grant_domain_admin = &gr;
  seed_add(s, &req);
}

static void req_revoke_admin(seed_t *s, uint64_t call_id, const char *domain,
                             const char *user, int revoke_tokens) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RevokeDomainAdminRequest rr =
      TOKEND__V1__REVOKE_DOMAIN_ADMIN_REQUEST__INIT;

  rr.domain = (char *)domain;
  rr.user = (char *)user;
  rr.revoke_their_tokens = revoke_tokens;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN;
  req.revoke_domain_admin = &rr;
  seed_add(s, &req);
}

static void req_list_admins(seed_t *s, uint64_t call_id, const char *domain) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListDomainAdminsRequest lr =
      TOKEND__V1__LIST_DOMAIN_ADMINS_REQUEST__INIT;

  lr.domain = (char *)domain;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS;
  req.list_domain_admins = &lr;
  seed_add(s, &req);
}

static void req_list_audit(seed_t *s, uint64_t call_id, const char *domain,
                           int64_t since, uint32_t page_size,
                           const char *page_token) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListAuditEventsRequest lr =
      TOKEND__V1__LIST_AUDIT_EVENTS_REQUEST__INIT;

  lr.domain = (char *)domain;
  lr.since = since;
  lr.page_size = page_size;
  lr.page_token = (char *)page_token;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS;
  req.list_audit_events = &lr;
  seed_add(s, &req);
}

static void req_whoami(seed_t *s, uint64_t call_id, const char *actor) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__WhoAmIRequest wr = TOKEND__V1__WHO_AM_IREQUEST__INIT;

  req.call_id = call_id;
  req.actor = (char *)actor;
  req.method_case = TOKEND__V1__REQUEST__METHOD_WHO_AM_I;
  req.who_am_i = &wr;
  seed_add(s, &req);
}

/* ---- issue 17 ---- */

static void req_bulk_revoke(seed_t *s, uint64_t call_id, const char *domain,
                            const char *id, const char *created_by, int all,
                            int64_t created_before) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__BulkRevokeRequest br = TOKEND__V1__BULK_REVOKE_REQUEST__INIT;
  char *ids[1] = {(char *)id};

  br.domain = (char *)domain;
  br.n_token_ids = id != NULL ? 1 : 0;
  br.token_ids = ids;
  br.created_by = (char *)created_by;
  br.all = all;
  br.created_before = created_before;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_BULK_REVOKE;
  req.bulk_revoke = &br;
  seed_add(s, &req);
}

static void req_set_policy(seed_t *s, uint64_t call_id, const char *domain,
                           int64_t max_lifetime_ms, const char *scope,
                           uint32_t max_active) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__SetDomainPolicyRequest sr =
      TOKEND__V1__SET_DOMAIN_POLICY_REQUEST__INIT;
  Tokend__V1__DomainPolicy p = TOKEND__V1__DOMAIN_POLICY__INIT;
  char *scopes[1] = {(char *)scope};

  p.max_lifetime_ms = max_lifetime_ms;
  p.require_expiry = max_lifetime_ms > 0;
  p.n_allowed_scopes = scope != NULL ? 1 : 0;
  p.allowed_scopes = scopes;
  p.max_active_tokens = max_active;
  sr.domain = (char *)domain;
  sr.policy = &p;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_SET_DOMAIN_POLICY;
  req.set_domain_policy = &sr;
  seed_add(s, &req);
}

static void req_get_policy(seed_t *s, uint64_t call_id, const char *domain) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__GetDomainPolicyRequest gr =
      TOKEND__V1__GET_DOMAIN_POLICY_REQUEST__INIT;

  gr.domain = (char *)domain;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_GET_DOMAIN_POLICY;
  req.get_domain_policy = &gr;
  seed_add(s, &req);
}

/* A fixture's secret and a malformed one, found at source. */
static void req_leaked(seed_t *s, uint64_t call_id, const char *body,
                       const char *source) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RevokeLeakedRequest lr = TOKEND__V1__REVOKE_LEAKED_REQUEST__INIT;
  char tok[TOKEND_TOKEN_BYTES], *tokens[2] = {tok, (char *)"tkd_nope"};

  fuzz_token_string(body, tok);
  lr.n_tokens = 2;
  lr.tokens = tokens;
  lr.source = (char *)source;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE_LEAKED;
  req.revoke_leaked = &lr;
  seed_add(s, &req);
}

static void req_verify_audit(seed_t *s, uint64_t call_id, int64_t anchor_id,
                             const char *anchor_hash) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyAuditLogRequest vr =
      TOKEND__V1__VERIFY_AUDIT_LOG_REQUEST__INIT;

  vr.anchor_id = anchor_id;
  vr.anchor_hash = (char *)anchor_hash;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY_AUDIT_LOG;
  req.verify_audit_log = &vr;
  seed_add(s, &req);
}

/* An Issue made by an operator for another user. */
static void req_issue_for(seed_t *s, uint64_t call_id, const char *actor) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;

  ir.domain = FUZZ_ADMIN_DOMAIN;
  ir.label = "for an admin";
  req.call_id = call_id;
  req.actor = (char *)actor;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &ir;
  seed_add(s, &req);
}

static void req_empty(seed_t *s, uint64_t call_id) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;

  req.call_id = call_id;
  seed_add(s, &req);
}

/* A page token as rpc/tokens.c makes them: base64url("<tag><position>"),
 * tag "p1." for List, "a1." for ListAuditEvents. */
static const char *page_token(const char *tag, int64_t pos) {
  static char out[TOKEND_PAGE_TOKEN_BYTES];
  char raw[32];
  int n = snprintf(raw, sizeof(raw), "%s%lld", tag, (long long)pos);

  sodium_bin2base64(out, sizeof(out), (const unsigned char *)raw, (size_t)n,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return out;
}

int main(int argc, char **argv) {
  static const char *scopes[] = {"deploy", "read", "admin:tokens",
                                 "repo/write"};
  static const char *bad_scopes[] = {"read", "has space"};
  const fuzz_fixture_t *fx = fuzz_fixtures;
  char unknown[TOKEND_TOKEN_BYTES];
  seed_t s;

  if (argc != 2) {
    fprintf(stderr, "usage: gen_corpus DIR\n");
    return 2;
  }
  g_dir = argv[1];
  fuzz_token_string(FUZZ_UNKNOWN_BODY, unknown);

  /* The peer byte: operator, domain admin, or no role. */
  enum { OPERATOR = 0, ADMIN = 1, NOBODY = 2 };
#define SEED(name, peer, ...)                                                  \
  do {                                                                         \
    memset(&s, 0, sizeof(s));                                                  \
    s.buf[s.len++] = (peer);                                                   \
    __VA_ARGS__;                                                               \
    seed_write(name, &s);                                                      \
  } while (0)

  SEED("issue", ADMIN,
       req_issue(&s, 1, "example.com", "CI deploy", 0, scopes, 4));
  SEED("issue_expiring", OPERATOR,
       req_issue(&s, 2, "tenant-7.example:eu",
                 "d\xc3\xa9ploiement \xe2\x9c\x93", FUTURE_MS, scopes, 1));
  SEED("issue_bad_scope", ADMIN,
       req_issue(&s, 3, "example.com", "x", 0, bad_scopes, 2));
  SEED("issue_expired", OPERATOR,
       req_issue(&s, 4, "example.com", "late", 1, NULL, 0));
  SEED("verify_valid", NOBODY,
       req_verify_fixture(&s, 10, fx[FUZZ_TOKEN_VALID].body));
  SEED("verify_expired", NOBODY,
       req_verify_fixture(&s, 11, fx[FUZZ_TOKEN_EXPIRED].body));
  SEED("verify_revoked", ADMIN,
       req_verify_fixture(&s, 12, fx[FUZZ_TOKEN_REVOKED].body));
  SEED("verify_unknown", NOBODY, req_verify(&s, 13, unknown));
  SEED("verify_malformed", OPERATOR, req_verify(&s, 14, "tkd_notatoken"));
  SEED("revoke", ADMIN,
       req_revoke(&s, 20, fx[FUZZ_TOKEN_REVOCABLE].domain,
                  fx[FUZZ_TOKEN_REVOCABLE].id));
  SEED("revoke_already", OPERATOR,
       req_revoke(&s, 21, fx[FUZZ_TOKEN_REVOKED].domain,
                  fx[FUZZ_TOKEN_REVOKED].id));
  SEED("revoke_other_domain", OPERATOR,
       req_revoke(&s, 22, "other.org", fx[FUZZ_TOKEN_VALID].id));
  SEED("revoke_bad_id", ADMIN, req_revoke(&s, 23, "example.com", "tok_short"));
  SEED("list", ADMIN, req_list(&s, 30, "example.com", 0, "", 0));
  SEED("list_paged", OPERATOR,
       req_list(&s, 31, "example.com", 1, page_token("p1.", 3), 1));
  SEED("list_bad_page_token", ADMIN,
       req_list(&s, 32, "example.com", 5000, "cDEuLTE", 0));
  SEED("grant_admin", OPERATOR,
       req_grant(&s, 70, "other.org", "alice@example.com"));
  SEED("grant_admin_bad_user", OPERATOR, req_grant(&s, 71, "other.org", "a b"));
  SEED("revoke_admin_and_tokens", OPERATOR,
       req_revoke_admin(&s, 72, FUZZ_ADMIN_DOMAIN, FUZZ_ADMIN_USER, 1));
  SEED("revoke_admin_unknown", OPERATOR,
       req_revoke_admin(&s, 73, "other.org", "nobody", 0));
  SEED("list_admins", OPERATOR, req_list_admins(&s, 74, FUZZ_ADMIN_DOMAIN));
  SEED("list_audit", OPERATOR, req_list_audit(&s, 75, "", 0, 0, ""));
  SEED("list_audit_domain_paged", ADMIN,
       req_list_audit(&s, 76, FUZZ_ADMIN_DOMAIN, 1, 1, page_token("a1.", 2)));
  SEED("whoami", NOBODY, req_whoami(&s, 77, ""));
  SEED("whoami_as_actor", OPERATOR, req_whoami(&s, 78, FUZZ_ADMIN_USER));
  SEED("issue_for_actor", OPERATOR, req_issue_for(&s, 79, FUZZ_ADMIN_USER));
  SEED("admin_lifecycle", OPERATOR, {
    req_grant(&s, 80, "other.org", "bob+ci@example.com");
    req_list_admins(&s, 81, "other.org");
    req_revoke_admin(&s, 82, "other.org", "bob+ci@example.com", 1);
    req_list_audit(&s, 83, "other.org", 0, 10, "");
  });
  /* Refusals: a peer with no role, and a non-operator naming an actor. */
  SEED("refused_nobody", NOBODY, {
    req_issue(&s, 90, FUZZ_ADMIN_DOMAIN, "not mine", 0, NULL, 0);
    req_list(&s, 91, FUZZ_ADMIN_DOMAIN, 0, "", 1);
    req_grant(&s, 92, FUZZ_ADMIN_DOMAIN, "uid:2000");
    req_list_audit(&s, 93, "", 0, 0, "");
  });
  SEED("refused_actor", ADMIN, req_whoami(&s, 94, "root"));
  /* issue 17: metadata, Lookup, Edit, Roll, List's expiring filter. */
  {
    char valid[TOKEND_TOKEN_BYTES];
    static const char *narrower[] = {"read"};
    static const char *wider[] = {"read", "admin"};

    fuzz_token_string(fx[FUZZ_TOKEN_VALID].body, valid);
    SEED("issue_metadata", ADMIN, {
      req_issue_metadata(&s, 110, "{\"plan\": \"pro\", \"n\": [1, 2.5]}");
      req_issue_metadata(&s, 111, "[\"not an object\"]");
      req_issue_metadata(&s, 112, "{\"a\": 1, \"a\": 2}");
    });
    SEED("lookup", ADMIN, {
      req_lookup(&s, 113, FUZZ_ADMIN_DOMAIN, fx[FUZZ_TOKEN_VALID].id, NULL);
      req_lookup(&s, 114, FUZZ_ADMIN_DOMAIN, NULL, valid);
      req_lookup(&s, 115, "other.org", fx[FUZZ_TOKEN_REVOKED].id, NULL);
      req_lookup(&s, 116, FUZZ_ADMIN_DOMAIN, fx[FUZZ_TOKEN_VALID].id, valid);
    });
    SEED("edit", ADMIN, {
      req_edit(&s, 117, FUZZ_ADMIN_DOMAIN, fx[FUZZ_TOKEN_VALID].id, "edited",
               "{\"k\":\"v\"}", FUTURE_MS, narrower, 1);
      req_edit(&s, 118, FUZZ_ADMIN_DOMAIN, fx[FUZZ_TOKEN_VALID].id, NULL, NULL,
               -1, wider, 2);
      req_edit(&s, 119, FUZZ_ADMIN_DOMAIN, fx[FUZZ_TOKEN_VALID].id, NULL, NULL,
               0, NULL, 0);
      req_edit(&s, 120, "other.org", fx[FUZZ_TOKEN_REVOKED].id, "x", NULL, -1,
               NULL, 0);
    });
    SEED("roll", ADMIN, {
      req_roll(&s, 121, FUZZ_ADMIN_DOMAIN, fx[FUZZ_TOKEN_REVOCABLE].id, 60000);
      req_roll(&s, 122, FUZZ_ADMIN_DOMAIN, fx[FUZZ_TOKEN_VALID].id, -1);
      req_roll(&s, 123, FUZZ_ADMIN_DOMAIN, fx[FUZZ_TOKEN_EXPIRED].id, 0);
      req_list_expiring(&s, 124, 7LL * 24 * 3600 * 1000);
    });
    SEED("roll_operator", OPERATOR,
         req_roll(&s, 125, "other.org", fx[FUZZ_TOKEN_REVOKED].id, 0));
  }
  /* The audit log's chain check (issue 11): plain, anchored, refused. */
  SEED("verify_audit_log", OPERATOR, {
    req_issue(&s, 100, "example.com", "audited", 0, NULL, 0);
    req_verify_audit(&s, 101, 0, "");
    req_verify_audit(&s, 102, 1,
                     "00112233445566778899aabbccddeeff"
                     "00112233445566778899aabbccddeeff");
    req_verify_audit(&s, 103, 1, "not hex");
  });
  SEED("verify_audit_log_refused", ADMIN, req_verify_audit(&s, 104, 0, ""));
  /* Issue 17: bulk revocation, domain policies, leaked tokens. */
  SEED("bulk_revoke", ADMIN, {
    req_bulk_revoke(&s, 110, FUZZ_ADMIN_DOMAIN, fx[FUZZ_TOKEN_REVOCABLE].id, "",
                    0, 0);
    req_bulk_revoke(&s, 111, FUZZ_ADMIN_DOMAIN, NULL, FUZZ_ADMIN_USER, 0, 0);
    req_bulk_revoke(&s, 112, FUZZ_ADMIN_DOMAIN, NULL, "", 0, 1000);
    req_bulk_revoke(&s, 113, FUZZ_ADMIN_DOMAIN, NULL, "", 1, 0);
  });
  SEED("bulk_revoke_refused", ADMIN, {
    req_bulk_revoke(&s, 114, FUZZ_ADMIN_DOMAIN, "tok_short", "", 1, 0);
    req_bulk_revoke(&s, 115, "other.org", NULL, "", 1, 0);
    req_bulk_revoke(&s, 116, FUZZ_ADMIN_DOMAIN, "tok_aaaaaaaaaaaaaaaaaaaa", "",
                    0, 0);
  });
  SEED("domain_policy", OPERATOR, {
    req_set_policy(&s, 120, FUZZ_ADMIN_DOMAIN, 86400000, "read", 2);
    req_get_policy(&s, 121, FUZZ_ADMIN_DOMAIN);
    req_issue(&s, 122, FUZZ_ADMIN_DOMAIN, "too long", FUTURE_MS, NULL, 0);
    req_issue(&s, 123, FUZZ_ADMIN_DOMAIN, "never", 0, scopes, 1);
    req_set_policy(&s, 124, FUZZ_ADMIN_DOMAIN, -1, "a b", 0);
  });
  SEED("domain_policy_admin", ADMIN, {
    req_get_policy(&s, 125, FUZZ_ADMIN_DOMAIN);
    req_set_policy(&s, 126, FUZZ_ADMIN_DOMAIN, 0, NULL, 1);
  });
  SEED("revoke_leaked", OPERATOR,
       req_leaked(&s, 130, fx[FUZZ_TOKEN_VALID].body,
                  "https://example.org/leak"));
  SEED("revoke_leaked_refused", ADMIN,
       req_leaked(&s, 131, fx[FUZZ_TOKEN_VALID].body, ""));
  SEED("empty_method", NOBODY, req_empty(&s, 40));
  SEED("empty_frame", ADMIN, seed_raw(&s, "\0\0\0\0\0", 5));
  SEED("pipeline", OPERATOR, {
    req_verify_fixture(&s, 50, fx[FUZZ_TOKEN_VALID].body);
    req_issue(&s, 51, "example.com", "pipelined", 0, scopes + 1, 2);
    req_list(&s, 52, "example.com", 2, "", 1);
    req_revoke(&s, 53, "example.com", fx[FUZZ_TOKEN_REVOCABLE].id);
    req_verify_fixture(&s, 54, fx[FUZZ_TOKEN_REVOCABLE].body);
    req_empty(&s, 55);
    req_verify(&s, 56, unknown);
  });
  /* A whole frame, then one cut inside its header, then EOF. */
  SEED("cut_in_header", NOBODY, {
    req_verify(&s, 60, unknown);
    seed_raw(&s, "\0\0\0", 3);
  });
  /* A frame whose body the peer never finishes. */
  SEED("cut_in_body", ADMIN, {
    req_list(&s, 61, "example.com", 0, "", 0);
    s.len -= 4;
  });
  SEED("bad_flag", OPERATOR, {
    req_empty(&s, 62);
    seed_raw(&s, "\1\0\0\0\0", 5);
  });
  SEED("too_large", NOBODY, seed_raw(&s, "\0\x7f\xff\xff\xff", 5));
  SEED("not_protobuf", ADMIN, seed_raw(&s, "\0\0\0\0\3\xff\xff\xff", 8));
  return g_failed;
}
