/* Unit tests for server/rpc: the method table driven through rpc_frame with
 * a fake sink (a byte buffer, counting holds and flushes) and a fake store
 * (submitted jobs are kept until the test completes them): no loop, no
 * socket, no database. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/sink.h"
#include "frame.h"
#include "rpc/rpc.h"
#include "token.h"
#include "tokend.pb-c.h"

#define DOMAIN "example.com"
#define OTHER_DOMAIN "other.org"
#define ADMIN_UID 1000 /* an admin of DOMAIN */
#define NOBODY_UID 2000
#define MAX_JOBS 16

/* ---- the fake sink ---- */

typedef struct {
  sink_t k;
  uint8_t out[1 << 16];
  size_t len;
  unsigned holds;   /* hold minus release */
  unsigned flushes; /* flush calls */
} fake_sink_t;

static uint8_t *fake_frame_begin(sink_t *k, size_t body_len) {
  fake_sink_t *f = container_of(k, fake_sink_t, k);

  assert_true(f->len + TOKEND_FRAME_HEADER_BYTES + body_len <= sizeof(f->out));
  frame_encode_header(f->out + f->len, (uint32_t)body_len);
  return f->out + f->len + TOKEND_FRAME_HEADER_BYTES;
}

static int fake_frame_end(sink_t *k, size_t body_len, int secret) {
  fake_sink_t *f = container_of(k, fake_sink_t, k);

  (void)secret;
  f->len += TOKEND_FRAME_HEADER_BYTES + body_len;
  return 0;
}

static void fake_flush(sink_t *k) {
  container_of(k, fake_sink_t, k)->flushes++;
}

static void fake_hold(sink_t *k) { container_of(k, fake_sink_t, k)->holds++; }

static void fake_release(sink_t *k) {
  fake_sink_t *f = container_of(k, fake_sink_t, k);

  assert_true(f->holds > 0);
  f->holds--;
}

static int fake_answer_later(sink_t *k, store_job_t *job) {
  (void)k;
  (void)job;
  return 0;
}

static const sink_ops_t fake_ops = {
    .frame_begin = fake_frame_begin,
    .frame_end = fake_frame_end,
    .flush = fake_flush,
    .hold = fake_hold,
    .release = fake_release,
    .answer_later = fake_answer_later,
};

/* ---- the fixture: rpc on a fake store ---- */

typedef struct {
  config_t cfg;
  index_t *index;
  verify_cache_t *vcache;
  domains_t domains;
  uint8_t pepper[TOKEND_PEPPER_BYTES];
  rpc_t *rpc;
  store_job_t *jobs[MAX_JOBS]; /* submitted, not yet completed */
  size_t n_jobs;
  size_t in_flight;               /* submitted minus job_end */
  char token[TOKEND_TOKEN_BYTES]; /* an active token of DOMAIN */
} fixture_t;

static void fake_submit(void *ctx, store_job_t *job) {
  fixture_t *fx = ctx;

  assert_true(fx->n_jobs < MAX_JOBS);
  fx->jobs[fx->n_jobs++] = job;
  fx->in_flight++;
}

static void fake_job_end(void *ctx) {
  fixture_t *fx = ctx;

  assert_true(fx->in_flight > 0);
  fx->in_flight--;
}

/* Completes the oldest job still held, with result. */
static store_job_t *complete_first(fixture_t *fx, int result) {
  store_job_t *job;

  assert_true(fx->n_jobs > 0);
  job = fx->jobs[0];
  memmove(fx->jobs, fx->jobs + 1, --fx->n_jobs * sizeof(fx->jobs[0]));
  job->result = result;
  job->done(job);
  return job;
}

/* Completes every audit record job (refusals), and checks their method. */
static size_t complete_audits(fixture_t *fx, const char *method) {
  size_t n = 0;

  while (fx->n_jobs > 0 && fx->jobs[0]->kind == STORE_JOB_AUDIT) {
    assert_string_equal(fx->jobs[0]->audit->method, method);
    complete_first(fx, 0);
    n++;
  }
  return n;
}

static void peer_init(fake_sink_t *f, uint32_t uid, int op, int verifier) {
  memset(f, 0, sizeof(*f));
  f->k.ops = &fake_ops;
  f->k.id = uid + 1;
  f->k.peer.uid = f->k.peer.gid = uid;
  f->k.peer.pid = 42;
  f->k.peer.is_operator = op;
  f->k.peer.is_verifier = verifier;
  snprintf(f->k.peer.user, sizeof(f->k.peer.user), "uid:%u", (unsigned)uid);
}

/* Puts tok, a fresh token of domain, in the index, as a committed Issue
 * would. */
static void index_token(fixture_t *fx, const char *domain, char *tok) {
  store_token_t row;

  memset(&row, 0, sizeof(row));
  assert_int_equal(token_generate(fx->cfg.token_prefix, tok), 0);
  token_hash(tok, strlen(tok), fx->pepper, row.hash);
  token_id_generate(row.id);
  snprintf(row.domain, sizeof(row.domain), "%s", domain);
  snprintf(row.label, sizeof(row.label), "ci");
  row.created_at = 1;
  assert_int_equal(
      index_insert(fx->index, &row, domains_get(&fx->domains, domain)), 0);
}

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));
  rpc_env_t env;

  if (fx == NULL || sodium_init() < 0)
    return -1;
  config_defaults(&fx->cfg);
  randombytes_buf(fx->pepper, sizeof(fx->pepper));
  if (index_new(&fx->index) != 0 || verify_cache_new(&fx->vcache) != 0 ||
      domains_init(&fx->domains) != 0 ||
      domains_admin_add(&fx->domains, DOMAIN, "uid:1000", 1, "uid:0") != 0)
    return -1;
  memset(&env, 0, sizeof(env));
  env.cfg = &fx->cfg;
  env.index = fx->index;
  env.vcache = fx->vcache;
  env.domains = &fx->domains;
  env.pepper = fx->pepper;
  env.loop = NULL;
  env.submit = fake_submit;
  env.job_end = fake_job_end;
  env.ctx = fx;
  if (rpc_new(&env, &fx->rpc) != 0)
    return -1;
  index_token(fx, DOMAIN, fx->token);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture_t *fx = *state;

  /* Every job the rpc layer submitted was completed and ended. */
  assert_int_equal(fx->n_jobs, 0);
  assert_int_equal(fx->in_flight, 0);
  rpc_free(fx->rpc);
  verify_cache_free(fx->vcache);
  index_free(fx->index);
  domains_free(&fx->domains);
  free(fx);
  return 0;
}

/* ---- requests and answers ---- */

static void send_req(fixture_t *fx, fake_sink_t *f,
                     const Tokend__V1__Request *req) {
  uint8_t buf[4096];
  size_t n = tokend__v1__request__get_packed_size(req);

  assert_true(n <= sizeof(buf));
  tokend__v1__request__pack(req, buf);
  assert_int_equal(rpc_frame(fx->rpc, &f->k, buf, n), 0);
}

/* The index-th answer in f's output (0 first), unpacked: free it with
 * tokend__v1__response__free_unpacked. NULL if there are fewer. */
static Tokend__V1__Response *answer(fake_sink_t *f, size_t index) {
  size_t off = 0, consumed;
  const uint8_t *body;
  uint32_t body_len;

  for (;;) {
    if (frame_decode(f->out + off, f->len - off, 1u << 24, &body, &body_len,
                     &consumed) != FRAME_OK)
      return NULL;
    if (index-- == 0)
      return tokend__v1__response__unpack(NULL, body_len, body);
    off += consumed;
  }
}

static size_t n_answers(fake_sink_t *f) {
  size_t n = 0;
  Tokend__V1__Response *r;

  while ((r = answer(f, n)) != NULL) {
    tokend__v1__response__free_unpacked(r, NULL);
    n++;
  }
  return n;
}

/* Asserts that f's index-th answer is for call_id with status code. */
static void expect_status(fake_sink_t *f, size_t index, uint64_t call_id,
                          int code) {
  Tokend__V1__Response *r = answer(f, index);

  assert_non_null(r);
  assert_int_equal(r->call_id, call_id);
  assert_non_null(r->status);
  if ((int)r->status->code != code)
    fail_msg("call %llu: status %d (%s), expected %d",
             (unsigned long long)call_id, (int)r->status->code,
             r->status->message, code);
  tokend__v1__response__free_unpacked(r, NULL);
}

/* One request of each method, for DOMAIN (or domain), with call_id and
 * actor ("" for none). */
typedef struct {
  Tokend__V1__Request req;
  Tokend__V1__IssueRequest issue;
  Tokend__V1__VerifyRequest verify;
  Tokend__V1__RevokeRequest revoke;
  Tokend__V1__ListRequest list;
  Tokend__V1__GrantDomainAdminRequest grant;
  Tokend__V1__RevokeDomainAdminRequest remove;
  Tokend__V1__ListDomainAdminsRequest list_admins;
  Tokend__V1__ListAuditEventsRequest audit;
  Tokend__V1__WhoAmIRequest whoami;
  Tokend__V1__VerifyAuditLogRequest verify_audit;
  /* issue 17 */
  Tokend__V1__BulkRevokeRequest bulk;
  Tokend__V1__SetDomainPolicyRequest set_policy;
  Tokend__V1__GetDomainPolicyRequest get_policy;
  Tokend__V1__RevokeLeakedRequest leaked;
  char *leaked_tokens[1];
  char domain[TOKEND_DOMAIN_BYTES];
  char actor[TOKEND_USER_BYTES];
  char token[TOKEND_TOKEN_BYTES];
} request_t;

static const Tokend__V1__Request *make_req(request_t *q,
                                           Tokend__V1__Request__MethodCase m,
                                           uint64_t call_id, const char *domain,
                                           const char *actor) {
  static char tok_id[] = "tok_aaaaaaaaaaaaaaaaaaaa";
  static char user[] = "uid:3000";

  memset(q, 0, sizeof(*q));
  tokend__v1__request__init(&q->req);
  snprintf(q->domain, sizeof(q->domain), "%s", domain);
  snprintf(q->actor, sizeof(q->actor), "%s", actor);
  q->req.call_id = call_id;
  q->req.actor = q->actor;
  q->req.method_case = m;
  switch (m) {
  case TOKEND__V1__REQUEST__METHOD_ISSUE:
    tokend__v1__issue_request__init(&q->issue);
    q->issue.domain = q->domain;
    q->issue.label = (char *)"ci";
    q->req.issue = &q->issue;
    break;
  case TOKEND__V1__REQUEST__METHOD_VERIFY:
    tokend__v1__verify_request__init(&q->verify);
    q->verify.token = q->token;
    q->req.verify = &q->verify;
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE:
    tokend__v1__revoke_request__init(&q->revoke);
    q->revoke.domain = q->domain;
    q->revoke.token_id = tok_id;
    q->req.revoke = &q->revoke;
    break;
  case TOKEND__V1__REQUEST__METHOD_LIST:
    tokend__v1__list_request__init(&q->list);
    q->list.domain = q->domain;
    q->req.list = &q->list;
    break;
  case TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN:
    tokend__v1__grant_domain_admin_request__init(&q->grant);
    q->grant.domain = q->domain;
    q->grant.user = user;
    q->req.grant_domain_admin = &q->grant;
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN:
    tokend__v1__revoke_domain_admin_request__init(&q->remove);
    q->remove.domain = q->domain;
    q->remove.user = user;
    q->req.revoke_domain_admin = &q->remove;
    break;
  case TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS:
    tokend__v1__list_domain_admins_request__init(&q->list_admins);
    q->list_admins.domain = q->domain;
    q->req.list_domain_admins = &q->list_admins;
    break;
  case TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS:
    tokend__v1__list_audit_events_request__init(&q->audit);
    q->audit.domain = q->domain;
    q->req.list_audit_events = &q->audit;
    break;
  case TOKEND__V1__REQUEST__METHOD_WHO_AM_I:
    tokend__v1__who_am_irequest__init(&q->whoami);
    q->req.who_am_i = &q->whoami;
    break;
  case TOKEND__V1__REQUEST__METHOD_VERIFY_AUDIT_LOG:
    tokend__v1__verify_audit_log_request__init(&q->verify_audit);
    q->req.verify_audit_log = &q->verify_audit;
    break;
  case TOKEND__V1__REQUEST__METHOD_BULK_REVOKE:
    tokend__v1__bulk_revoke_request__init(&q->bulk);
    q->bulk.domain = q->domain;
    q->bulk.all = 1;
    q->req.bulk_revoke = &q->bulk;
    break;
  case TOKEND__V1__REQUEST__METHOD_SET_DOMAIN_POLICY:
    tokend__v1__set_domain_policy_request__init(&q->set_policy);
    q->set_policy.domain = q->domain;
    q->req.set_domain_policy = &q->set_policy;
    break;
  case TOKEND__V1__REQUEST__METHOD_GET_DOMAIN_POLICY:
    tokend__v1__get_domain_policy_request__init(&q->get_policy);
    q->get_policy.domain = q->domain;
    q->req.get_domain_policy = &q->get_policy;
    break;
  case TOKEND__V1__REQUEST__METHOD_REVOKE_LEAKED:
    tokend__v1__revoke_leaked_request__init(&q->leaked);
    q->leaked_tokens[0] = q->token;
    q->leaked.tokens = q->leaked_tokens;
    q->leaked.n_tokens = 1;
    q->req.revoke_leaked = &q->leaked;
    break;
  default:
    fail_msg("no such method %d", (int)m);
  }
  return &q->req;
}

#define M(x) TOKEND__V1__REQUEST__METHOD_##x

/* What a call did: refused (PERMISSION_DENIED, audited), answered at once
 * with status (no store job), or submitted the store job kind. */
typedef enum { REFUSED, ANSWERED, SUBMITTED } outcome_t;

typedef struct {
  const char *what;
  Tokend__V1__Request__MethodCase method;
  const char *method_name;
  uint32_t uid;
  int op;
  int verifier;
  const char *domain;
  const char *actor;
  outcome_t outcome;
  int code; /* ANSWERED: the status; SUBMITTED: the job kind */
} rule_case_t;

/* Every method's rules from the table: who may call it, in which domain,
 * acting for whom. */
static const rule_case_t rule_cases[] = {
    /* Domain admins' methods: the admin of DOMAIN, not of another one, and
     * not someone who is no admin at all. */
    {"Issue by its domain's admin", M(ISSUE), "Issue", ADMIN_UID, 0, 1, DOMAIN,
     "", SUBMITTED, STORE_JOB_ISSUE},
    {"Issue by a non-admin", M(ISSUE), "Issue", NOBODY_UID, 0, 1, DOMAIN, "",
     REFUSED, 0},
    {"Issue in another domain", M(ISSUE), "Issue", ADMIN_UID, 0, 1,
     OTHER_DOMAIN, "", REFUSED, 0},
    {"Revoke by a non-admin", M(REVOKE), "Revoke", NOBODY_UID, 0, 1, DOMAIN, "",
     REFUSED, 0},
    {"Revoke in another domain", M(REVOKE), "Revoke", ADMIN_UID, 0, 1,
     OTHER_DOMAIN, "", REFUSED, 0},
    {"Revoke by its domain's admin", M(REVOKE), "Revoke", ADMIN_UID, 0, 1,
     DOMAIN, "", SUBMITTED, STORE_JOB_REVOKE},
    {"List by a non-admin", M(LIST), "List", NOBODY_UID, 0, 1, DOMAIN, "",
     REFUSED, 0},
    {"List in another domain", M(LIST), "List", ADMIN_UID, 0, 1, OTHER_DOMAIN,
     "", REFUSED, 0},
    {"List by its domain's admin", M(LIST), "List", ADMIN_UID, 0, 1, DOMAIN, "",
     SUBMITTED, STORE_JOB_LIST},
    {"ListAuditEvents of a domain by a non-admin", M(LIST_AUDIT_EVENTS),
     "ListAuditEvents", NOBODY_UID, 0, 1, DOMAIN, "", REFUSED, 0},
    {"ListAuditEvents of its domain by its admin", M(LIST_AUDIT_EVENTS),
     "ListAuditEvents", ADMIN_UID, 0, 1, DOMAIN, "", SUBMITTED,
     STORE_JOB_AUDIT_LIST},
    {"ListAuditEvents of every domain by an admin (operators only)",
     M(LIST_AUDIT_EVENTS), "ListAuditEvents", ADMIN_UID, 0, 1, "", "", REFUSED,
     0},
    {"ListAuditEvents of every domain by an operator", M(LIST_AUDIT_EVENTS),
     "ListAuditEvents", 0, 1, 0, "", "", SUBMITTED, STORE_JOB_AUDIT_LIST},
    /* Operators' methods: a domain admin may not. */
    {"GrantDomainAdmin by an admin", M(GRANT_DOMAIN_ADMIN), "GrantDomainAdmin",
     ADMIN_UID, 0, 1, DOMAIN, "", REFUSED, 0},
    {"GrantDomainAdmin by an operator", M(GRANT_DOMAIN_ADMIN),
     "GrantDomainAdmin", 0, 1, 0, DOMAIN, "", SUBMITTED, STORE_JOB_GRANT},
    {"RevokeDomainAdmin by an admin", M(REVOKE_DOMAIN_ADMIN),
     "RevokeDomainAdmin", ADMIN_UID, 0, 1, DOMAIN, "", REFUSED, 0},
    {"RevokeDomainAdmin by an operator", M(REVOKE_DOMAIN_ADMIN),
     "RevokeDomainAdmin", 0, 1, 0, DOMAIN, "", SUBMITTED,
     STORE_JOB_ADMIN_REMOVE},
    {"ListDomainAdmins by an admin", M(LIST_DOMAIN_ADMINS), "ListDomainAdmins",
     ADMIN_UID, 0, 1, DOMAIN, "", REFUSED, 0},
    {"ListDomainAdmins by an operator", M(LIST_DOMAIN_ADMINS),
     "ListDomainAdmins", 0, 1, 0, DOMAIN, "", ANSWERED, TOKEND_GRPC_OK},
    {"VerifyAuditLog by an admin", M(VERIFY_AUDIT_LOG), "VerifyAuditLog",
     ADMIN_UID, 0, 1, "", "", REFUSED, 0},
    {"VerifyAuditLog by an operator", M(VERIFY_AUDIT_LOG), "VerifyAuditLog", 0,
     1, 0, "", "", SUBMITTED, STORE_JOB_AUDIT_VERIFY},
    /* Verifiers' method. */
    {"Verify by a peer that is not a verifier", M(VERIFY), "Verify", NOBODY_UID,
     0, 0, "", "", REFUSED, 0},
    {"Verify with an actor by a non-verifier", M(VERIFY), "Verify", NOBODY_UID,
     0, 0, "", "uid:5", REFUSED, 0},
    /* Anyone's. */
    {"WhoAmI by a peer with no role", M(WHO_AM_I), "WhoAmI", NOBODY_UID, 0, 0,
     "", "", ANSWERED, TOKEND_GRPC_OK},
    /* Actor rules: only operators act for someone else, as a valid user;
     * an operator acting for a user has that user's rights, no more. */
    {"a non-operator naming an actor", M(WHO_AM_I), "WhoAmI", ADMIN_UID, 0, 1,
     "", "uid:1000", REFUSED, 0},
    {"a non-operator naming an actor on Issue", M(ISSUE), "Issue", ADMIN_UID, 0,
     1, DOMAIN, "uid:1000", REFUSED, 0},
    {"an operator naming an invalid actor", M(ISSUE), "Issue", 0, 1, 0, DOMAIN,
     "not a user!", ANSWERED, TOKEND_GRPC_INVALID_ARGUMENT},
    {"an operator acting for a non-admin", M(ISSUE), "Issue", 0, 1, 0, DOMAIN,
     "uid:3000", REFUSED, 0},
    {"an operator acting for the domain's admin", M(ISSUE), "Issue", 0, 1, 0,
     DOMAIN, "uid:1000", SUBMITTED, STORE_JOB_ISSUE},
    {"an operator acting for nobody (break-glass)", M(ISSUE), "Issue", 0, 1, 0,
     OTHER_DOMAIN, "", SUBMITTED, STORE_JOB_ISSUE},
    /* issue 17 */
    {"BulkRevoke by a non-admin", M(BULK_REVOKE), "BulkRevoke", NOBODY_UID, 0,
     1, DOMAIN, "", REFUSED, 0},
    {"BulkRevoke in another domain", M(BULK_REVOKE), "BulkRevoke", ADMIN_UID, 0,
     1, OTHER_DOMAIN, "", REFUSED, 0},
    {"BulkRevoke by its domain's admin", M(BULK_REVOKE), "BulkRevoke",
     ADMIN_UID, 0, 1, DOMAIN, "", SUBMITTED, STORE_JOB_BULK_REVOKE},
    {"SetDomainPolicy by an admin", M(SET_DOMAIN_POLICY), "SetDomainPolicy",
     ADMIN_UID, 0, 1, DOMAIN, "", REFUSED, 0},
    {"SetDomainPolicy by an operator", M(SET_DOMAIN_POLICY), "SetDomainPolicy",
     0, 1, 0, DOMAIN, "", SUBMITTED, STORE_JOB_POLICY_SET},
    {"GetDomainPolicy by a non-admin", M(GET_DOMAIN_POLICY), "GetDomainPolicy",
     NOBODY_UID, 0, 1, DOMAIN, "", REFUSED, 0},
    {"GetDomainPolicy in another domain", M(GET_DOMAIN_POLICY),
     "GetDomainPolicy", ADMIN_UID, 0, 1, OTHER_DOMAIN, "", REFUSED, 0},
    {"GetDomainPolicy by its domain's admin", M(GET_DOMAIN_POLICY),
     "GetDomainPolicy", ADMIN_UID, 0, 1, DOMAIN, "", SUBMITTED,
     STORE_JOB_POLICY_GET},
    {"RevokeLeaked by an admin (no --leak-reporter)", M(REVOKE_LEAKED),
     "RevokeLeaked", ADMIN_UID, 0, 1, "", "", REFUSED, 0},
    {"RevokeLeaked by an operator", M(REVOKE_LEAKED), "RevokeLeaked", 0, 1, 0,
     "", "", SUBMITTED, STORE_JOB_LEAKED},
};

static void test_rpc_every_method_refusal_rules(void **state) {
  fixture_t *fx = *state;
  const rule_case_t *c;
  request_t q;
  fake_sink_t *f = calloc(1, sizeof(*f));
  Tokend__V1__Response *r;
  size_t i;

  assert_non_null(f);
  for (i = 0; i < sizeof(rule_cases) / sizeof(rule_cases[0]); i++) {
    c = &rule_cases[i];
    peer_init(f, c->uid, c->op, c->verifier);
    make_req(&q, c->method, 100 + i, c->domain, c->actor);
    snprintf(q.token, sizeof(q.token), "%s", fx->token);
    send_req(fx, f, &q.req);
    rpc_verify_drain(fx->rpc);
    switch (c->outcome) {
    case REFUSED:
      /* Answered at once, and its audit record submitted (and the sink
       * held until it is written). */
      if (n_answers(f) != 1)
        fail_msg("%s: %zu answers, expected 1", c->what, n_answers(f));
      expect_status(f, 0, 100 + i, TOKEND_GRPC_PERMISSION_DENIED);
      assert_int_equal(f->holds, 1);
      if (complete_audits(fx, c->method_name) != 1)
        fail_msg("%s: no audit record of the refusal", c->what);
      break;
    case ANSWERED:
      if (n_answers(f) != 1)
        fail_msg("%s: %zu answers, expected 1", c->what, n_answers(f));
      expect_status(f, 0, 100 + i, c->code);
      if (fx->n_jobs != 0)
        fail_msg("%s: submitted a store job", c->what);
      break;
    case SUBMITTED:
      if (fx->n_jobs != 1 || (int)fx->jobs[0]->kind != c->code)
        fail_msg("%s: %zu jobs submitted (kind %d), expected one of kind %d",
                 c->what, fx->n_jobs,
                 fx->n_jobs > 0 ? (int)fx->jobs[0]->kind : -1, c->code);
      if (n_answers(f) != 0)
        fail_msg("%s: answered before its store job completed", c->what);
      assert_int_equal(f->holds, 1);
      /* A write's audit record names the actor it acted for. */
      if (c->method == M(ISSUE) && c->actor[0] != '\0')
        assert_string_equal(fx->jobs[0]->audit->actor, c->actor);
      complete_first(fx, TOKEND_EIO);
      r = answer(f, 0);
      assert_non_null(r);
      assert_int_not_equal(r->status->code, TOKEND_GRPC_OK);
      tokend__v1__response__free_unpacked(r, NULL);
      break;
    }
    assert_int_equal(f->holds, 0);
    assert_int_equal(fx->in_flight, 0);
  }
  free(f);
}

/* Verifies are answered in batches, but every answer leaves in the order
 * its request came, also when another method's answer follows them on the
 * same sink. */
static void test_rpc_verify_batch_answers_in_request_order(void **state) {
  fixture_t *fx = *state;
  fake_sink_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
  request_t q;
  Tokend__V1__Response *r;
  char unknown[TOKEND_TOKEN_BYTES];
  size_t i;

  assert_non_null(a);
  assert_non_null(b);
  peer_init(a, NOBODY_UID, 0, 1);
  peer_init(b, NOBODY_UID + 1, 0, 1);
  assert_int_equal(token_generate(fx->cfg.token_prefix, unknown), 0);
  /* a: valid, unknown, malformed, then a WhoAmI; b: valid in between. */
  make_req(&q, M(VERIFY), 1, "", "");
  snprintf(q.token, sizeof(q.token), "%s", fx->token);
  send_req(fx, a, &q.req);
  make_req(&q, M(VERIFY), 2, "", "");
  snprintf(q.token, sizeof(q.token), "%s", unknown);
  send_req(fx, a, &q.req);
  make_req(&q, M(VERIFY), 10, "", "");
  snprintf(q.token, sizeof(q.token), "%s", fx->token);
  send_req(fx, b, &q.req);
  make_req(&q, M(VERIFY), 3, "", "");
  snprintf(q.token, sizeof(q.token), "not a token");
  send_req(fx, a, &q.req);
  /* Queued: nothing written yet, both sinks kept. */
  assert_int_equal(a->len, 0);
  assert_int_equal(b->len, 0);
  assert_int_equal(a->k.queued, 3);
  assert_int_equal(b->k.queued, 1);
  make_req(&q, M(WHO_AM_I), 4, "", "");
  send_req(fx, a, &q.req);
  /* The WhoAmI's answer drained the batch before it: all of a's in order,
   * and b's too (each sink flushed once, when its last was answered). */
  assert_int_equal(n_answers(a), 4);
  for (i = 0; i < 4; i++) {
    r = answer(a, i);
    assert_non_null(r);
    assert_int_equal(r->call_id, i + 1);
    if (i < 3)
      assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_VERIFY);
    tokend__v1__response__free_unpacked(r, NULL);
  }
  r = answer(a, 0);
  assert_true(r->verify->valid);
  tokend__v1__response__free_unpacked(r, NULL);
  r = answer(a, 1);
  assert_false(r->verify->valid);
  assert_int_equal(r->verify->reason,
                   TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN);
  tokend__v1__response__free_unpacked(r, NULL);
  r = answer(a, 2);
  assert_int_equal(r->verify->reason,
                   TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED);
  tokend__v1__response__free_unpacked(r, NULL);
  assert_int_equal(n_answers(b), 1);
  expect_status(b, 0, 10, TOKEND_GRPC_OK);
  assert_int_equal(a->k.queued, 0);
  assert_int_equal(b->k.queued, 0);
  assert_int_equal(a->flushes, 1);
  assert_int_equal(b->flushes, 1);
  free(a);
  free(b);
}

/* An Issue is answered only once its store job has completed (committed):
 * the fake store holds it, and nothing reaches the sink meanwhile. The new
 * token then verifies: memory follows what was committed. */
static void test_rpc_issue_answered_only_after_commit(void **state) {
  fixture_t *fx = *state;
  fake_sink_t *f = calloc(1, sizeof(*f));
  request_t q;
  Tokend__V1__Response *r;
  store_job_t *job;
  char token[TOKEND_TOKEN_BYTES];

  assert_non_null(f);
  peer_init(f, ADMIN_UID, 0, 1);
  send_req(fx, f, make_req(&q, M(ISSUE), 7, DOMAIN, ""));
  assert_int_equal(fx->n_jobs, 1);
  job = fx->jobs[0];
  assert_int_equal(job->kind, STORE_JOB_ISSUE);
  assert_string_equal(job->u.issue.row.domain, DOMAIN);
  assert_string_equal(job->u.issue.row.created_by, "uid:1000");
  assert_true(job->authz.required);
  /* Other calls go on meanwhile; the Issue's answer does not come. */
  send_req(fx, f, make_req(&q, M(WHO_AM_I), 8, "", ""));
  assert_int_equal(n_answers(f), 1);
  expect_status(f, 0, 8, TOKEND_GRPC_OK);
  assert_int_equal(f->holds, 1);

  complete_first(fx, 0);
  assert_int_equal(f->holds, 0);
  assert_int_equal(n_answers(f), 2);
  r = answer(f, 1);
  assert_int_equal(r->call_id, 7);
  assert_int_equal(r->status->code, TOKEND_GRPC_OK);
  assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_ISSUE);
  assert_string_equal(r->issue->info->domain, DOMAIN);
  snprintf(token, sizeof(token), "%s", r->issue->token);
  tokend__v1__response__free_unpacked(r, NULL);

  /* The committed token verifies. */
  make_req(&q, M(VERIFY), 9, "", "");
  snprintf(q.token, sizeof(q.token), "%s", token);
  send_req(fx, f, &q.req);
  rpc_verify_drain(fx->rpc);
  r = answer(f, 2);
  assert_non_null(r);
  assert_true(r->verify->valid);
  tokend__v1__response__free_unpacked(r, NULL);
  free(f);
}

/* A failed commit is answered with the store's error, and nothing is
 * indexed. */
static void test_rpc_issue_failed_commit_answers_error(void **state) {
  fixture_t *fx = *state;
  fake_sink_t *f = calloc(1, sizeof(*f));
  request_t q;
  Tokend__V1__Response *r;
  size_t before = index_count(fx->index);

  assert_non_null(f);
  peer_init(f, ADMIN_UID, 0, 1);
  send_req(fx, f, make_req(&q, M(ISSUE), 5, DOMAIN, ""));
  assert_int_equal(n_answers(f), 0);
  snprintf(fx->jobs[0]->errmsg, sizeof(fx->jobs[0]->errmsg), "disk full");
  complete_first(fx, TOKEND_EIO);
  r = answer(f, 0);
  assert_non_null(r);
  assert_int_equal(r->call_id, 5);
  assert_int_not_equal(r->status->code, TOKEND_GRPC_OK);
  assert_string_equal(r->status->message,
                      "could not store the new token: disk full");
  tokend__v1__response__free_unpacked(r, NULL);
  assert_int_equal(index_count(fx->index), before);
  free(f);
}

/* rpc_verify_now (the HTTP face's Verify) answers from the same index as
 * the socket's and counts in the same counters: per reason, and the
 * domain's. A revoked entry is revoked for both at once. */
static void test_rpc_verify_now_shares_index_and_counters(void **state) {
  fixture_t *fx = *state;
  fake_sink_t *a = calloc(1, sizeof(*a));
  domain_t *d = domains_get(&fx->domains, DOMAIN);
  uint64_t counts[RPC_VERIFY_REASONS];
  rpc_verify_result_t v;
  request_t q;
  char unknown[TOKEND_TOKEN_BYTES], huge[TOKEND_TOKEN_MAX_CHARS + 2];
  index_entry_t *e;
  uint8_t hash[TOKEND_HASH_BYTES];

  assert_non_null(a);
  assert_non_null(d);
  peer_init(a, NOBODY_UID, 0, 1);
  /* Over the socket, once. */
  make_req(&q, M(VERIFY), 1, "", "");
  snprintf(q.token, sizeof(q.token), "%s", fx->token);
  send_req(fx, a, &q.req);
  rpc_verify_drain(fx->rpc);
  /* Synchronously, valid: who it is, from the index. */
  assert_int_equal(rpc_verify_now(fx->rpc, fx->token, strlen(fx->token), &v),
                   0);
  assert_true(v.valid);
  assert_int_equal(v.reason, TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID);
  assert_string_equal(v.domain, DOMAIN);
  assert_string_equal(v.label, "ci");
  assert_int_equal(strlen(v.token_id), TOKEND_TOKEN_ID_BYTES - 1);
  /* Unknown, malformed, too long to be a token. */
  assert_int_equal(token_generate(fx->cfg.token_prefix, unknown), 0);
  assert_int_equal(rpc_verify_now(fx->rpc, unknown, strlen(unknown), &v), 0);
  assert_false(v.valid);
  assert_int_equal(v.reason,
                   TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN);
  assert_string_equal(v.token_id, "");
  assert_int_equal(rpc_verify_now(fx->rpc, "nope", 4, &v), 0);
  assert_int_equal(v.reason,
                   TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED);
  memset(huge, 'a', sizeof(huge));
  assert_int_equal(rpc_verify_now(fx->rpc, huge, sizeof(huge), &v), 0);
  assert_int_equal(v.reason,
                   TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED);
  /* Revoked in the index (as a committed Revoke applies it). */
  token_hash(fx->token, strlen(fx->token), fx->pepper, hash);
  e = index_find(fx->index, hash);
  assert_non_null(e);
  e->revoked_at = 2;
  assert_int_equal(rpc_verify_now(fx->rpc, fx->token, strlen(fx->token), &v),
                   0);
  assert_false(v.valid);
  assert_int_equal(v.reason,
                   TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED);
  /* Both paths in one set of counters: 2 valid (socket, HTTP), 1 each. */
  rpc_verify_counts(fx->rpc, counts);
  assert_int_equal(counts[TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID], 2);
  assert_int_equal(counts[TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN],
                   1);
  assert_int_equal(counts[TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED],
                   2);
  assert_int_equal(counts[TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED],
                   1);
  assert_int_equal(d->valid_verifies, 2);
  assert_int_equal(d->invalid_verifies, 1);
  assert_string_equal(
      rpc_verify_reason_name(TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID),
      "valid");
  assert_string_equal(rpc_verify_reason_name(
                          TOKEND__V1__INVALID_REASON__INVALID_REASON_EXPIRED),
                      "expired");
  free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_rpc_every_method_refusal_rules,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_rpc_verify_batch_answers_in_request_order, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_rpc_verify_now_shares_index_and_counters, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rpc_issue_answered_only_after_commit,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_rpc_issue_failed_commit_answers_error, setup, teardown),
  };

  return cmocka_run_group_tests_name("rpc", tests, NULL, NULL);
}
