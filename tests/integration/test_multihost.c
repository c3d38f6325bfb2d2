/* Many hosts, one truth (issue 13): three tokend processes ("hosts" A, B
 * and C) on one PostgreSQL database of a throwaway cluster the test starts
 * itself (tests/lib/pg_cluster.h), sharing one pepper file, each with its
 * own --host-id. One new database per test.
 *
 * What is proved, each by its own test:
 *   - a token issued on A verifies on B and C as soon as Issue returns, and
 *     revoked on B answers REVOKED on A and C as soon as Revoke returns (no
 *     sleep, 200 times), the answers saying every host applied the write;
 *   - B's change-feed listener connection killed (pg_terminate_backend)
 *     while A writes: B catches up and loses nothing;
 *   - PostgreSQL stopped: Verify answers from memory until the lease, then
 *     UNAVAILABLE; writes UNAVAILABLE; PostgreSQL back: all resumes, with
 *     the same tokend processes;
 *   - C stopped (SIGSTOP) past its lease: Revoke stops waiting for it, and
 *     C resumed never answers VALID for what was revoked meanwhile;
 *   - the feed pruned past a host stopped beyond its lease: resumed, it
 *     reloads every token and answers each as the others do;
 *   - kill -9 of a host during a stream of Issues loses no acknowledged one;
 *   - a host with another pepper refuses to start, naming the pepper;
 *   - concurrent writers on every host leave the three indexes identical.
 *
 * Never a duration is asserted: a condition that takes time (catching up,
 * a lease running out) is waited for by polling it, with a generous bound
 * that only turns a hang into a failure. Host state is read with
 * `tokenctl status --json` (applied_revision, fresh, index_digest, ...). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pg_cluster.h"
#include "tokend_client.h"
/* TOKEND_PEPPER_BYTES: the daemon's limits, not the client's. */
#include "tokend_limits.h"

#define DOMAIN "multi.example"
#define N_HOSTS 3
/* Bounds on conditions waited for; far above what they take, so that only
 * a host that never gets there fails. */
#define MH_CONVERGE_TIMEOUT_MS (30000 * th_timeout_scale())
#define MH_POLL_MS 20
/* Test a's repetitions (the issue says 200). */
#define MH_REPETITIONS 200

static pg_cluster_t cluster;
static int n_databases;
static uint64_t next_call_id = 1;

typedef struct {
  th_tokend_t t;
  char id[8];       /* --host-id: "A", "B", "C" */
  int fd;           /* a raw connection for the test's calls; -1: none */
  int stopped;      /* SIGSTOPped: teardown continues it first */
  char lease[24];   /* --lease-ms value; "" for the default */
  char timeout[24]; /* --propagation-timeout-ms value; "" for the default */
} mh_host_t;

typedef struct {
  char db[32];
  char url[512];
  int prune; /* hosts run --feed-keep 1 --feed-keep-minutes 0 */
  mh_host_t h[N_HOSTS];
} mh_fixture_t;

/* What a write's answer says of its spread through the hosts. */
typedef struct {
  int present; /* the answer carried a Propagation */
  int64_t revision;
  uint32_t applied;
  uint32_t pending;
} mh_prop_t;

/* What `tokenctl status --json` says of a host. */
typedef struct {
  int64_t applied_revision;
  int fresh;
  int64_t lease_left_ms;
  int64_t tokens;
  char digest[160];
} mh_status_t;

/* A Verify's outcome, in the few words these tests need. */
typedef enum {
  MH_VALID = 0,
  MH_REVOKED,
  MH_UNKNOWN,
  MH_UNAVAILABLE,
  MH_OTHER /* any other reason or status, or no answer */
} mh_answer_t;

static const char *answer_name(mh_answer_t a) {
  static const char *const names[] = {"VALID", "REVOKED", "UNKNOWN",
                                      "UNAVAILABLE", "something else"};
  return names[a];
}

/* ---- fixture ---- */

static int setup(void **state) {
  mh_fixture_t *f = calloc(1, sizeof(*f));
  char sql[64];
  int i;

  *state = f;
  if (f == NULL)
    return -1;
  snprintf(f->db, sizeof(f->db), "mh_%d", ++n_databases);
  snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
  if (pg_cluster_sql(&cluster, "postgres", sql) != 0 ||
      pg_cluster_uri(&cluster, f->db, f->url, sizeof(f->url)) != 0)
    return -1;
  for (i = 0; i < N_HOSTS; i++) {
    f->h[i].fd = -1;
    snprintf(f->h[i].id, sizeof(f->h[i].id), "%c", 'A' + i);
    if (th_tokend_init(&f->h[i].t) != 0)
      return -1;
  }
  return 0;
}

static int teardown(void **state) {
  mh_fixture_t *f = *state;
  int i, rc = 0;

  if (f == NULL)
    return 0;
  /* A test that failed with the cluster stopped leaves it running for the
   * next. */
  if (!cluster.running)
    pg_cluster_restart(&cluster);
  for (i = 0; i < N_HOSTS; i++) {
    mh_host_t *h = &f->h[i];

    if (h->stopped && h->t.pid != 0)
      kill(h->t.pid, SIGCONT);
    if (h->fd >= 0)
      close(h->fd);
    if (h->t.pid != 0 && th_tokend_stop_clean(&h->t) != 0) {
      fprintf(stderr, "host %s did not stop cleanly\n", h->id);
      rc = -1;
    }
    if (h->t.dir[0] != '\0')
      th_tokend_destroy(&h->t);
  }
  free(f);
  return rc;
}

/* Starts host i on the fixture's database with its host id and the
 * lease and timeout set in it. Every host hashes with host A's pepper:
 * A's first start creates the pepper file, the others get a copy. */
static void host_start(mh_fixture_t *f, int i) {
  mh_host_t *h = &f->h[i];
  const char *args[16];
  size_t n = 0, len;
  char *pepper;

  if (i > 0 && !th_path_exists(h->t.pepper_path)) {
    pepper = th_read_file(f->h[0].t.pepper_path, &len);
    if (pepper == NULL)
      fail_msg("host A's pepper file %s cannot be read (start A first)",
               f->h[0].t.pepper_path);
    th_write_file_ok(h->t.pepper_path, pepper, len, 0600);
    free(pepper);
  }
  args[n++] = "--store";
  args[n++] = f->url;
  args[n++] = "--host-id";
  args[n++] = h->id;
  if (h->lease[0] != '\0') {
    args[n++] = "--lease-ms";
    args[n++] = h->lease;
  }
  if (h->timeout[0] != '\0') {
    args[n++] = "--propagation-timeout-ms";
    args[n++] = h->timeout;
  }
  if (f->prune) {
    args[n++] = "--feed-keep";
    args[n++] = "1";
    args[n++] = "--feed-keep-minutes";
    args[n++] = "0";
  }
  args[n] = NULL;
  if (th_tokend_start(&h->t, args) != 0)
    fail_msg("host %s did not start (its log is above)", h->id);
  if (h->fd >= 0)
    close(h->fd);
  h->fd = th_connect(h->t.socket_path);
  if (h->fd < 0)
    fail_msg("cannot connect to host %s", h->id);
}

static void wait_counted(mh_fixture_t *f, int via, int n);

/* Sets every host's lease and propagation timeout (0: tokend's default),
 * starts hosts 0 .. n-1, in order, and waits until writes count all n
 * (wait_counted). */
static void hosts_start(mh_fixture_t *f, int n, int lease_ms, int timeout_ms) {
  int i;

  for (i = 0; i < N_HOSTS; i++) {
    f->h[i].lease[0] = f->h[i].timeout[0] = '\0';
    if (lease_ms > 0)
      snprintf(f->h[i].lease, sizeof(f->h[i].lease), "%d", lease_ms);
    if (timeout_ms > 0)
      snprintf(f->h[i].timeout, sizeof(f->h[i].timeout), "%d", timeout_ms);
  }
  for (i = 0; i < n; i++)
    host_start(f, i);
  wait_counted(f, 0, n);
}

static void host_signal(mh_host_t *h, int sig) {
  assert_true(h->t.pid != 0);
  assert_int_equal(kill(h->t.pid, sig), 0);
  h->stopped = sig == SIGSTOP;
}

/* ---- calls over a host's raw connection ---- */

/* Sends req with a new call id on h's connection and reads its answer into
 * *out (freed with tokend__v1__response__free_unpacked). 0, or -1 after
 * saying why (no answer, or one for another call). */
static int host_call(mh_host_t *h, Tokend__V1__Request *req,
                     Tokend__V1__Response **out) {
  int rc;

  req->call_id = next_call_id++;
  if (th_send_request(h->fd, req) != 0) {
    fprintf(stderr, "host %s: cannot send call %" PRIu64 "\n", h->id,
            req->call_id);
    return -1;
  }
  rc = th_recv_response(h->fd, TH_IO_TIMEOUT_MS, out);
  if (rc != 0) {
    fprintf(stderr, "host %s: call %" PRIu64 ": got %s\n", h->id, req->call_id,
            th_recv_name(rc));
    return -1;
  }
  if ((*out)->call_id != req->call_id) {
    fprintf(stderr, "host %s: call %" PRIu64 " answered as call %" PRIu64 "\n",
            h->id, req->call_id, (*out)->call_id);
    tokend__v1__response__free_unpacked(*out, NULL);
    *out = NULL;
    return -1;
  }
  return 0;
}

static void prop_from(mh_prop_t *out, const Tokend__V1__Propagation *p) {
  memset(out, 0, sizeof(*out));
  if (p == NULL)
    return;
  out->present = 1;
  out->revision = p->revision;
  out->applied = p->hosts_applied;
  out->pending = p->hosts_pending;
}

/* Issues a token labelled label on h. 0 with token, id (TOKEND_TOKEN_ID_BYTES;
 * may be NULL) and *prop filled in; else the answer's gRPC status, or -1
 * if there was no usable answer. */
static int host_issue(mh_host_t *h, const char *label,
                      char token[TOKEND_TOKEN_BYTES], char *id,
                      mh_prop_t *prop) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest is = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  int rc;

  is.domain = DOMAIN;
  is.label = (char *)label;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &is;
  if (host_call(h, &req, &r) != 0)
    return -1;
  rc = th_response_code(r);
  if (rc == 0 && (r->result_case != TOKEND__V1__RESPONSE__RESULT_ISSUE ||
                  strlen(r->issue->token) >= TOKEND_TOKEN_BYTES ||
                  r->issue->info == NULL ||
                  strlen(r->issue->info->id) >= TOKEND_TOKEN_ID_BYTES)) {
    fprintf(stderr, "host %s: Issue answered without a usable result\n", h->id);
    rc = -1;
  }
  if (rc == 0) {
    strcpy(token, r->issue->token);
    if (id != NULL)
      strcpy(id, r->issue->info->id);
    if (prop != NULL)
      prop_from(prop, r->issue->propagation);
  } else if (rc > 0) {
    fprintf(stderr, "host %s: Issue: status %d %s\n", h->id, rc,
            r->status->message);
  }
  tokend__v1__response__free_unpacked(r, NULL);
  return rc;
}

/* host_issue(). Fails the test unless it succeeds. */
static void host_issue_ok(mh_host_t *h, const char *label,
                          char token[TOKEND_TOKEN_BYTES], char *id,
                          mh_prop_t *prop) {
  int rc = host_issue(h, label, token, id, prop);

  if (rc != 0)
    fail_msg("Issue on host %s: %d", h->id, rc);
}

/* Revokes token id on h: 0 with *prop filled in (may be NULL), the
 * answer's gRPC status, or -1. */
static int host_revoke(mh_host_t *h, const char *id, mh_prop_t *prop) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RevokeRequest rv = TOKEND__V1__REVOKE_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  int rc;

  rv.domain = DOMAIN;
  rv.token_id = (char *)id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE;
  req.revoke = &rv;
  if (host_call(h, &req, &r) != 0)
    return -1;
  rc = th_response_code(r);
  if (rc == 0 && r->result_case != TOKEND__V1__RESPONSE__RESULT_REVOKE) {
    fprintf(stderr, "host %s: Revoke answered without a result\n", h->id);
    rc = -1;
  }
  if (rc == 0 && prop != NULL)
    prop_from(prop, r->revoke->propagation);
  else if (rc > 0)
    fprintf(stderr, "host %s: Revoke: status %d %s\n", h->id, rc,
            r->status->message);
  tokend__v1__response__free_unpacked(r, NULL);
  return rc;
}

static void host_revoke_ok(mh_host_t *h, const char *id, mh_prop_t *prop) {
  int rc = host_revoke(h, id, prop);

  if (rc != 0)
    fail_msg("Revoke on host %s: %d", h->id, rc);
}

static mh_answer_t host_verify(mh_host_t *h, const char *token) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest v = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  mh_answer_t a = MH_OTHER;

  v.token = (char *)token;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &v;
  if (host_call(h, &req, &r) != 0)
    return MH_OTHER;
  if (th_response_code(r) == TOKEND_GRPC_UNAVAILABLE)
    a = MH_UNAVAILABLE;
  else if (th_response_code(r) != 0 ||
           r->result_case != TOKEND__V1__RESPONSE__RESULT_VERIFY)
    fprintf(stderr, "host %s: Verify: status %d %s\n", h->id,
            th_response_code(r), r->status ? r->status->message : "");
  else if (r->verify->valid)
    a = MH_VALID;
  else if (r->verify->reason ==
           TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED)
    a = MH_REVOKED;
  else if (r->verify->reason ==
           TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN)
    a = MH_UNKNOWN;
  tokend__v1__response__free_unpacked(r, NULL);
  return a;
}

/* Fails the test unless h answers want for token. */
static void expect_answer(mh_host_t *h, const char *token, mh_answer_t want,
                          const char *when) {
  mh_answer_t got = host_verify(h, token);

  if (got != want)
    fail_msg("host %s, %s: Verify answered %s, want %s", h->id, when,
             answer_name(got), answer_name(want));
}

static void expect_prop(const mh_prop_t *p, uint32_t applied, uint32_t pending,
                        const char *what) {
  if (!p->present)
    fail_msg("%s: the answer has no propagation", what);
  if (p->applied != applied || p->pending != pending)
    fail_msg("%s (revision %" PRId64 "): hosts_applied %u, hosts_pending %u; "
             "want %u and %u",
             what, p->revision, p->applied, p->pending, applied, pending);
}

/* Waits until a write on host via says it was applied by n hosts and
 * pending on none: every host started has joined the store's hosts (or,
 * after one died, that it no longer counts as live). The
 * writes are grants of domain admins in a domain of their own, so that
 * tests count tokens and admins without them. (test_host_counted_by_
 * writes_as_soon_as_it_answers is about the time before this.) */
static void wait_counted(mh_fixture_t *f, int via, int n) {
  int64_t deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  tokend_client_t *c = th_client_connect_ok(&f->h[via].t);
  tokend_propagation_t p = {0, 0, 0};
  static int n_probes;
  char user[32];

  for (;;) {
    snprintf(user, sizeof(user), "probe-%d", ++n_probes);
    if (tokend_client_grant_admin(c, "probe.example", user, NULL, NULL) != 0)
      fail_msg("host %s: GrantDomainAdmin: %s", f->h[via].id,
               tokend_client_errmsg(c));
    if (tokend_client_last_propagation(c, &p) &&
        p.hosts_applied == (uint32_t)n && p.hosts_pending == 0)
      break;
    if (th_mono_ms() >= deadline)
      fail_msg("writes on %s still count %u hosts (%u pending), want %d",
               f->h[via].id, p.hosts_applied, p.hosts_pending, n);
    th_sleep_ms(MH_POLL_MS);
  }
  tokend_client_close(c);
}

/* ---- status ---- */

/* h's ServerStatus, through the client library. Fails the test if the
 * call fails. */
static void host_status(const mh_host_t *h, mh_status_t *out) {
  tokend_server_status_t st;
  tokend_client_t *c = th_client_connect_ok(&h->t);

  if (tokend_client_server_status(c, &st) != 0)
    fail_msg("host %s: ServerStatus: %s", h->id, tokend_client_errmsg(c));
  tokend_client_close(c);
  memset(out, 0, sizeof(*out));
  out->applied_revision = st.applied_revision;
  out->fresh = st.fresh;
  out->lease_left_ms = st.lease_left_ms;
  out->tokens = (int64_t)st.tokens;
  snprintf(out->digest, sizeof(out->digest), "%s", st.index_digest);
  if (out->digest[0] == '\0')
    fail_msg("host %s: ServerStatus without an index digest", h->id);
}

/* `tokenctl status --json` on h: its exit status (0 current, 1 not) and
 * its fields. Fails the test unless the output is the JSON object. */
static int host_status_cli(const mh_host_t *h, mh_status_t *out) {
  json_int_t applied = 0, lease_left = 0, tokens = 0;
  th_run_result_t r;
  json_error_t err;
  json_t *o;
  int status;

  th_tokenctl(&h->t, NULL, &r, "status", "--json", NULL);
  o = json_loads(r.out, 0, &err);
  if (o == NULL)
    fail_msg("host %s: tokenctl status --json (exit %d): not JSON (%s):\n%s%s",
             h->id, r.status, err.text, r.out, r.err);
  memset(out, 0, sizeof(*out));
  if (json_unpack(o, "{s:I, s:b, s:I, s:I}", "applied_revision", &applied,
                  "fresh", &out->fresh, "lease_left_ms", &lease_left, "tokens",
                  &tokens) != 0 ||
      !json_is_string(json_object_get(o, "index_digest")) ||
      strcmp(json_string_value(json_object_get(o, "host_id")), h->id) != 0)
    fail_msg("host %s: tokenctl status --json lacks a field:\n%s", h->id,
             r.out);
  out->applied_revision = applied;
  out->lease_left_ms = lease_left;
  out->tokens = tokens;
  snprintf(out->digest, sizeof(out->digest), "%s",
           json_string_value(json_object_get(o, "index_digest")));
  json_decref(o);
  status = r.status;
  th_run_result_free(&r);
  return status;
}

/* Waits until hosts 0 .. n-1 are all fresh, have applied the same revision
 * and hold indexes with the same digest; *st (n entries) gets their last
 * status. Fails the test, showing each host's status, after
 * MH_CONVERGE_TIMEOUT_MS. */
static void wait_converged(mh_fixture_t *f, int n, mh_status_t *st) {
  int64_t deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  int i, same;

  for (;;) {
    for (i = 0; i < n; i++)
      host_status(&f->h[i], &st[i]);
    same = 1;
    for (i = 0; i < n; i++)
      if (!st[i].fresh || st[i].applied_revision != st[0].applied_revision ||
          strcmp(st[i].digest, st[0].digest) != 0)
        same = 0;
    if (same)
      return;
    if (th_mono_ms() >= deadline)
      break;
    th_sleep_ms(MH_POLL_MS);
  }
  for (i = 0; i < n; i++)
    fprintf(stderr,
            "host %s: fresh %d, applied_revision %" PRId64 ", tokens %" PRId64
            ", index_digest %s\n",
            f->h[i].id, st[i].fresh, st[i].applied_revision, st[i].tokens,
            st[i].digest);
  fail_msg("the hosts did not converge within %d ms", MH_CONVERGE_TIMEOUT_MS);
}

/* ---- a: in effect everywhere when the call returns ---- */

static void test_issue_and_revoke_in_effect_everywhere_on_return(void **state) {
  mh_fixture_t *f = *state;
  char token[TOKEND_TOKEN_BYTES], id[TOKEND_TOKEN_ID_BYTES], what[64];
  mh_prop_t p;
  int rep;

  hosts_start(f, N_HOSTS, 0, 0);
  for (rep = 0; rep < MH_REPETITIONS; rep++) {
    snprintf(what, sizeof(what), "repetition %d", rep);
    host_issue_ok(&f->h[0], "everywhere", token, id, &p);
    expect_prop(&p, N_HOSTS, 0, "Issue on A");
    /* No sleep: Issue returned, so B and C must already know the token. */
    expect_answer(&f->h[1], token, MH_VALID, what);
    expect_answer(&f->h[2], token, MH_VALID, what);
    host_revoke_ok(&f->h[1], id, &p);
    expect_prop(&p, N_HOSTS, 0, "Revoke on B");
    expect_answer(&f->h[0], token, MH_REVOKED, what);
    expect_answer(&f->h[2], token, MH_REVOKED, what);
    expect_answer(&f->h[1], token, MH_REVOKED, what);
  }
}

/* ---- issue 17: BulkRevoke in effect everywhere on return ---- */

/* BulkRevoke on h: every token of DOMAIN, or the n ids given. Returns
 * the gRPC status (0: OK, then *revoked and *prop are set) or -1. */
static int host_bulk_revoke(mh_host_t *h, char **ids, size_t n,
                            uint32_t *revoked, mh_prop_t *prop) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__BulkRevokeRequest br = TOKEND__V1__BULK_REVOKE_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  int rc;

  br.domain = DOMAIN;
  br.token_ids = ids;
  br.n_token_ids = n;
  br.all = n == 0;
  req.method_case = TOKEND__V1__REQUEST__METHOD_BULK_REVOKE;
  req.bulk_revoke = &br;
  if (host_call(h, &req, &r) != 0)
    return -1;
  rc = th_response_code(r);
  if (rc == 0 && r->result_case != TOKEND__V1__RESPONSE__RESULT_BULK_REVOKE) {
    fprintf(stderr, "host %s: BulkRevoke answered without a result\n", h->id);
    rc = -1;
  }
  if (rc == 0) {
    *revoked = r->bulk_revoke->revoked;
    prop_from(prop, r->bulk_revoke->propagation);
  } else if (rc > 0) {
    fprintf(stderr, "host %s: BulkRevoke: status %d %s\n", h->id, rc,
            r->status->message);
  }
  tokend__v1__response__free_unpacked(r, NULL);
  return rc;
}

#define MH_BULK_TOKENS 12

/* A BulkRevoke by ids on B, then of all on A: when each returns, every
 * host answers REVOKED for each of its tokens (the feed carried one change
 * per token), and tokens it did not select stay VALID. */
static void test_bulk_revoke_in_effect_everywhere_on_return(void **state) {
  mh_fixture_t *f = *state;
  char tokens[MH_BULK_TOKENS][TOKEND_TOKEN_BYTES];
  char ids[MH_BULK_TOKENS][TOKEND_TOKEN_ID_BYTES], *some[3];
  uint32_t revoked = 0;
  mh_prop_t p;
  int i, k;

  hosts_start(f, N_HOSTS, 0, 0);
  for (i = 0; i < MH_BULK_TOKENS; i++)
    host_issue_ok(&f->h[i % N_HOSTS], "bulk", tokens[i], ids[i], &p);
  for (i = 0; i < 3; i++)
    some[i] = ids[i];
  assert_int_equal(host_bulk_revoke(&f->h[1], some, 3, &revoked, &p), 0);
  assert_int_equal(revoked, 3);
  expect_prop(&p, N_HOSTS, 0, "BulkRevoke by ids on B");
  for (k = 0; k < N_HOSTS; k++)
    for (i = 0; i < MH_BULK_TOKENS; i++)
      expect_answer(&f->h[k], tokens[i], i < 3 ? MH_REVOKED : MH_VALID,
                    "after BulkRevoke by ids");

  assert_int_equal(host_bulk_revoke(&f->h[0], NULL, 0, &revoked, &p), 0);
  assert_int_equal(revoked, MH_BULK_TOKENS - 3);
  expect_prop(&p, N_HOSTS, 0, "BulkRevoke of all on A");
  /* No sleep: it returned, so C and B must already say REVOKED. */
  for (k = N_HOSTS - 1; k >= 0; k--)
    for (i = 0; i < MH_BULK_TOKENS; i++)
      expect_answer(&f->h[k], tokens[i], MH_REVOKED, "after BulkRevoke all");
}

/* ---- a2: a host that answers is counted ---- */

/* How often C joins in test_host_counted_by_writes_as_soon_as_it_answers:
 * the gap it looks for is a race, so it is given several chances. */
#define MH_JOINS 10

/* A host is bound by the promise from its first VALID: C, started while A
 * and B run, answers a Verify VALID (after UNAVAILABLE, if it says so
 * while it joins); a Revoke on A right after must count C and be in effect
 * there when it returns. A host that served Verify before it joined the
 * store's hosts would answer VALID after such a Revoke whenever the Revoke
 * came first, so C joins MH_JOINS times. */
static void test_host_counted_by_writes_as_soon_as_it_answers(void **state) {
  mh_fixture_t *f = *state;
  char token[TOKEND_TOKEN_BYTES], id[TOKEND_TOKEN_ID_BYTES], what[64];
  mh_host_t *c = &f->h[2];
  int64_t deadline;
  mh_answer_t a;
  mh_prop_t p;
  int join;

  hosts_start(f, 2, 0, 0);
  for (join = 0; join < MH_JOINS; join++) {
    if (join > 0) {
      close(c->fd);
      c->fd = -1;
      th_tokend_stop_ok(&c->t);
    }
    host_issue_ok(&f->h[0], "before C joins", token, id, NULL);
    host_start(f, 2);
    deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
    while ((a = host_verify(c, token)) == MH_UNAVAILABLE &&
           th_mono_ms() < deadline)
      th_sleep_ms(MH_POLL_MS);
    if (a != MH_VALID)
      fail_msg("host C, started (join %d): Verify answered %s, want VALID",
               join, answer_name(a));
    host_revoke_ok(&f->h[0], id, &p);
    snprintf(what, sizeof(what), "join %d, right after a Revoke on A returned",
             join);
    expect_answer(c, token, MH_REVOKED, what);
    expect_prop(&p, N_HOSTS, 0, "Revoke on A once C answered");
  }
}

/* ---- b: the listener killed ---- */

#define MH_KILL_ROUNDS 5
#define MH_WRITES_PER_ROUND 20

/* Waits until B's listener session is there, then ends it: the count of
 * sessions pg_terminate_backend ended must be 1. */
static void kill_listener(mh_fixture_t *f, const char *host_id) {
  char sql[256];
  int64_t deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  long n = 0;

  snprintf(sql, sizeof(sql),
           "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
           "'tokend-listen:%s'",
           host_id);
  for (;;) {
    assert_int_equal(pg_cluster_sql_long(&cluster, f->db, sql, &n), 0);
    if (n == 1)
      break;
    if (th_mono_ms() >= deadline)
      fail_msg("host %s has %ld listener sessions (application_name "
               "tokend-listen:%s), want 1",
               host_id, n, host_id);
    th_sleep_ms(MH_POLL_MS);
  }
  snprintf(sql, sizeof(sql),
           "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
           "WHERE application_name = 'tokend-listen:%s'",
           host_id);
  assert_int_equal(pg_cluster_sql_long(&cluster, f->db, sql, &n), 0);
  assert_int_equal(n, 1);
}

static void test_listener_killed_catches_up_losing_nothing(void **state) {
  mh_fixture_t *f = *state;
  enum { N = MH_KILL_ROUNDS * MH_WRITES_PER_ROUND };
  static char tokens[N][TOKEND_TOKEN_BYTES];
  static int revoked[N];
  char id[TOKEND_TOKEN_ID_BYTES], what[64];
  mh_status_t st[N_HOSTS];
  int round, k, n = 0, i;

  hosts_start(f, N_HOSTS, 0, 0);
  for (round = 0; round < MH_KILL_ROUNDS; round++) {
    kill_listener(f, "B");
    /* Writes on A while B's listener is gone or coming back: whatever the
     * answers say of their spread, B must end up with every one. */
    for (k = 0; k < MH_WRITES_PER_ROUND; k++, n++) {
      host_issue_ok(&f->h[0], "listener", tokens[n], id, NULL);
      revoked[n] = n % 3 == 0;
      if (revoked[n])
        host_revoke_ok(&f->h[0], id, NULL);
    }
  }
  wait_converged(f, N_HOSTS, st);
  assert_int_equal(st[1].tokens, N);
  for (i = 0; i < N; i++)
    for (k = 0; k < N_HOSTS; k++) {
      snprintf(what, sizeof(what), "token %d after catching up", i);
      expect_answer(&f->h[k], tokens[i], revoked[i] ? MH_REVOKED : MH_VALID,
                    what);
    }
}

/* ---- c: PostgreSQL stopped ---- */

#define MH_SHORT_LEASE_MS (1500 * th_timeout_scale())

static void
test_postgresql_down_valid_until_lease_then_unavailable(void **state) {
  mh_fixture_t *f = *state;
  char token[TOKEND_TOKEN_BYTES], id[TOKEND_TOKEN_ID_BYTES];
  char later[TOKEND_TOKEN_BYTES], later_id[TOKEND_TOKEN_ID_BYTES];
  int64_t deadline;
  mh_status_t st;
  mh_answer_t a;
  int n_valid = 0, i, rc;

  hosts_start(f, 2, MH_SHORT_LEASE_MS, 0);
  host_issue_ok(&f->h[0], "before", token, id, NULL);

  assert_int_equal(pg_cluster_pause(&cluster), 0);
  /* From memory until the lease: VALID, then (never VALID again while the
   * store is away) UNAVAILABLE. */
  deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  while ((a = host_verify(&f->h[0], token)) == MH_VALID) {
    n_valid++;
    if (th_mono_ms() >= deadline)
      fail_msg("host A still answers VALID %d ms after PostgreSQL stopped "
               "(--lease-ms %d)",
               MH_CONVERGE_TIMEOUT_MS, MH_SHORT_LEASE_MS);
    th_sleep_ms(MH_POLL_MS);
  }
  if (n_valid == 0)
    fail_msg("host A answered %s at once when PostgreSQL stopped; want VALID "
             "from memory until its lease (%d ms) ran out",
             answer_name(a), MH_SHORT_LEASE_MS);
  if (a != MH_UNAVAILABLE)
    fail_msg("host A answered %s after its lease; want UNAVAILABLE",
             answer_name(a));
  for (i = 0; i < 5; i++)
    expect_answer(&f->h[0], token, MH_UNAVAILABLE, "store still down");
  /* tokenctl status says so, and exits 1. */
  assert_int_equal(host_status_cli(&f->h[0], &st), 1);
  assert_int_equal(st.fresh, 0);
  assert_int_equal(st.lease_left_ms, 0);

  /* Writes fail UNAVAILABLE. */
  rc = host_issue(&f->h[0], "while down", later, later_id, NULL);
  assert_int_equal(rc, TOKEND_GRPC_UNAVAILABLE);
  rc = host_revoke(&f->h[1], id, NULL);
  assert_int_equal(rc, TOKEND_GRPC_UNAVAILABLE);

  /* Back, with the same processes: Verify resumes once caught up (never
   * anything but UNAVAILABLE before), and writes work. */
  assert_int_equal(pg_cluster_restart(&cluster), 0);
  deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  while ((a = host_verify(&f->h[0], token)) == MH_UNAVAILABLE) {
    if (th_mono_ms() >= deadline)
      fail_msg("host A still answers UNAVAILABLE %d ms after PostgreSQL "
               "came back",
               MH_CONVERGE_TIMEOUT_MS);
    th_sleep_ms(MH_POLL_MS);
  }
  if (a != MH_VALID)
    fail_msg("host A answered %s after PostgreSQL came back; want VALID",
             answer_name(a));
  deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  while ((a = host_verify(&f->h[1], token)) == MH_UNAVAILABLE &&
         th_mono_ms() < deadline)
    th_sleep_ms(MH_POLL_MS);
  if (a != MH_VALID)
    fail_msg("host B answered %s after PostgreSQL came back; want VALID",
             answer_name(a));
  assert_int_equal(host_status_cli(&f->h[0], &st), 0);
  assert_int_equal(st.fresh, 1);
  host_issue_ok(&f->h[0], "after", later, later_id, NULL);
  expect_answer(&f->h[1], later, MH_VALID, "issued on A after the restart");
  host_revoke_ok(&f->h[1], id, NULL);
  expect_answer(&f->h[0], token, MH_REVOKED, "revoked on B after the restart");
}

/* ---- d: a host stopped past its lease ---- */

/* The lease is long next to the propagation timeout, so that a host
 * stopped just now is surely still live when the first Revoke answers; the
 * timeout is long enough that a running host applies a write within it on
 * a busy machine (ctest -j). */
#define MH_D_LEASE_MS (6000 * th_timeout_scale())
#define MH_D_TIMEOUT_MS (1500 * th_timeout_scale())
#define MH_D_MAX_REVOKES 64

static void
test_stopped_host_stops_holding_up_revoke_and_fails_closed(void **state) {
  mh_fixture_t *f = *state;
  static char later[MH_D_MAX_REVOKES][TOKEND_TOKEN_BYTES];
  char token[TOKEND_TOKEN_BYTES], id[TOKEND_TOKEN_ID_BYTES],
      lid[TOKEND_TOKEN_ID_BYTES];
  mh_host_t *a = &f->h[0], *c = &f->h[2];
  int64_t deadline;
  mh_answer_t ans;
  mh_prop_t p;
  int n = 0, i, n_unavailable = 0;

  hosts_start(f, N_HOSTS, MH_D_LEASE_MS, MH_D_TIMEOUT_MS);
  host_issue_ok(a, "stopped", token, id, &p);
  expect_prop(&p, N_HOSTS, 0, "Issue on A, all hosts running");
  expect_answer(c, token, MH_VALID, "before SIGSTOP");

  host_signal(c, SIGSTOP);
  /* C is still live (its heartbeat is young) but cannot apply: Revoke
   * answers after the timeout, saying so. */
  host_revoke_ok(a, id, &p);
  expect_prop(&p, N_HOSTS - 1, 1, "Revoke on A, C stopped but live");

  /* Once C's lease has run out it is not live: Revoke no longer waits for
   * it. */
  deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  for (;;) {
    if (n == MH_D_MAX_REVOKES || th_mono_ms() >= deadline)
      fail_msg("after %d Revokes, C stopped for more than its lease still "
               "counts as a live host (last: hosts_applied %u, pending %u)",
               n, p.applied, p.pending);
    host_issue_ok(a, "while C is stopped", later[n], lid, NULL);
    host_revoke_ok(a, lid, &p);
    n++;
    if (p.present && p.pending == 0)
      break;
  }
  expect_prop(&p, N_HOSTS - 1, 0, "Revoke on A, C stopped past its lease");

  /* C resumed: it never answers VALID for the revoked token; UNAVAILABLE
   * until it has caught up, then REVOKED. */
  host_signal(c, SIGCONT);
  deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  for (;;) {
    ans = host_verify(c, token);
    if (ans == MH_REVOKED)
      break;
    if (ans != MH_UNAVAILABLE)
      fail_msg("host C, resumed after %d revokes elsewhere, answered %s for "
               "a revoked token (after %d UNAVAILABLE); want UNAVAILABLE "
               "until caught up, then REVOKED",
               n + 1, answer_name(ans), n_unavailable);
    n_unavailable++;
    if (th_mono_ms() >= deadline)
      fail_msg("host C still answers UNAVAILABLE %d ms after SIGCONT",
               MH_CONVERGE_TIMEOUT_MS);
    th_sleep_ms(MH_POLL_MS);
  }
  /* Caught up: every Revoke made while it was stopped is in effect. */
  for (i = 0; i < n; i++)
    expect_answer(c, later[i], MH_REVOKED, "resumed and caught up");
}

/* ---- h: the feed pruned past a stopped host ---- */

#define MH_H_LEASE_MS (1500 * th_timeout_scale())
#define MH_H_TIMEOUT_MS (1000 * th_timeout_scale())
#define MH_H_MAX_WAITS 64
#define MH_H_WRITES 40

/* C is stopped (SIGSTOP) until its lease runs out; meanwhile A issues and
 * revokes, and the feed is pruned (every host runs --feed-keep 1
 * --feed-keep-minutes 0) past the revision C had applied. Resumed, C must
 * notice that the revisions it needs are gone, reload every token, and
 * then answer every one of them as A does (the same index digest, and each
 * token's answer). */
static void
test_host_behind_pruned_feed_reloads_and_misses_nothing(void **state) {
  mh_fixture_t *f = *state;
  static char tokens[MH_H_MAX_WAITS + MH_H_WRITES][TOKEND_TOKEN_BYTES];
  static int revoked[MH_H_MAX_WAITS + MH_H_WRITES];
  char id[TOKEND_TOKEN_ID_BYTES], what[64], *log;
  mh_host_t *a = &f->h[0], *c = &f->h[2];
  mh_status_t st[N_HOSTS];
  mh_prop_t p;
  int64_t deadline;
  long c_rev, gone;
  size_t len;
  int n = 0, i, k;

  f->prune = 1;
  hosts_start(f, N_HOSTS, MH_H_LEASE_MS, MH_H_TIMEOUT_MS);
  host_issue_ok(a, "before", tokens[n++], id, NULL);
  host_revoke_ok(a, id, &p);
  revoked[0] = 1;
  expect_answer(c, tokens[0], MH_REVOKED, "before SIGSTOP");
  assert_int_equal(pg_cluster_sql_long(&cluster, f->db,
                                       "SELECT applied_rev FROM hosts"
                                       " WHERE host_id = 'C'",
                                       &c_rev),
                   0);

  host_signal(c, SIGSTOP);
  /* Until C's lease has run out, writes wait for it (and pruning keeps
   * what it has not applied). */
  deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  do {
    if (n == MH_H_MAX_WAITS || th_mono_ms() >= deadline)
      fail_msg("C stopped still counts as live after %d Issues", n);
    host_issue_ok(a, "while C is stopped", tokens[n++], id, &p);
  } while (!p.present || p.pending != 0);
  for (i = 0; i < MH_H_WRITES; i++) {
    host_issue_ok(a, "after C's lease", tokens[n], id, NULL);
    if (i % 2 == 0) {
      host_revoke_ok(a, id, NULL);
      revoked[n] = 1;
    }
    n++;
  }
  /* Pruned past C: no token change left at or just after the revision
   * C applied (A or B prunes once a lease). */
  deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  for (;;) {
    char sql[160];

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM changes WHERE token_seq IS NOT NULL"
             " AND rev <= %ld",
             c_rev + 2);
    assert_int_equal(pg_cluster_sql_long(&cluster, f->db, sql, &gone), 0);
    if (gone == 0)
      break;
    if (th_mono_ms() >= deadline)
      fail_msg("the feed was not pruned within %d ms", MH_CONVERGE_TIMEOUT_MS);
    th_sleep_ms(MH_POLL_MS);
  }

  host_signal(c, SIGCONT);
  wait_converged(f, N_HOSTS, st);
  for (i = 0; i < n; i++)
    for (k = 0; k < N_HOSTS; k++) {
      snprintf(what, sizeof(what), "token %d after C reloaded", i);
      expect_answer(&f->h[k], tokens[i], revoked[i] ? MH_REVOKED : MH_VALID,
                    what);
    }
  /* It got there by reloading, not by a feed it could still read. */
  log = th_read_file(c->t.log_path, &len);
  assert_non_null(log);
  if (strstr(log, "reloading every token") == NULL)
    fail_msg("host C's log does not say it reloaded: %s", log);
  free(log);
}

/* ---- e: kill -9 during Issues ---- */

#define MH_E_WINDOW 16
#define MH_E_ACKED 150
/* Short, so that the killed run's lease runs out well within the start
 * timeout (see below). */
#define MH_E_LEASE_MS (1500 * th_timeout_scale())

static void test_kill9_during_issues_loses_no_acknowledged_issue(void **state) {
  mh_fixture_t *f = *state;
  static char acked[MH_E_ACKED][TOKEND_TOKEN_BYTES];
  mh_host_t *a = &f->h[0];
  Tokend__V1__Response *r = NULL;
  uint64_t call_id = 1;
  int n = 0, i, k, rc;
  char what[64];

  hosts_start(f, N_HOSTS, MH_E_LEASE_MS, 0);
  /* MH_E_WINDOW Issues in flight on A, each answered one refilled, until
   * MH_E_ACKED are acknowledged; then A dies with the window still full. */
  for (i = 0; i < MH_E_WINDOW; i++)
    assert_int_equal(th_send_issue(a->fd, call_id++, DOMAIN, "kill9"), 0);
  while (n < MH_E_ACKED) {
    rc = th_recv_response(a->fd, TH_IO_TIMEOUT_MS, &r);
    if (rc != 0)
      fail_msg("host A: Issue answer %d: got %s", n, th_recv_name(rc));
    if (th_response_code(r) != 0 ||
        r->result_case != TOKEND__V1__RESPONSE__RESULT_ISSUE ||
        strlen(r->issue->token) >= TOKEND_TOKEN_BYTES)
      fail_msg("host A: Issue failed: status %d", th_response_code(r));
    strcpy(acked[n++], r->issue->token);
    tokend__v1__response__free_unpacked(r, NULL);
    assert_int_equal(th_send_issue(a->fd, call_id++, DOMAIN, "kill9"), 0);
  }
  assert_int_equal(th_tokend_kill(&a->t), 128 + SIGKILL);
  close(a->fd);
  a->fd = -1;

  for (i = 0; i < n; i++)
    for (k = 1; k < N_HOSTS; k++) {
      snprintf(what, sizeof(what), "acknowledged Issue %d, A killed", i);
      expect_answer(&f->h[k], acked[i], MH_VALID, what);
    }
  /* Restarted at once, as a supervisor would: the killed run's row holds
   * host id A until its lease runs out (a new run cannot tell it from
   * another host), and the new one answers once it holds it. */
  host_start(f, 0);
  wait_counted(f, 0, N_HOSTS);
  for (i = 0; i < n; i++) {
    snprintf(what, sizeof(what), "acknowledged Issue %d, A restarted", i);
    expect_answer(a, acked[i], MH_VALID, what);
  }
}

/* ---- f: another pepper ---- */

static void test_host_with_another_pepper_refuses_to_start(void **state) {
  mh_fixture_t *f = *state;
  const char *args[] = {"--store", f->url, "--host-id", "B", NULL};
  uint8_t other[TOKEND_PEPPER_BYTES];
  char token[TOKEND_TOKEN_BYTES];
  mh_prop_t p;
  int status;
  char *log;

  hosts_start(f, 1, 0, 0);
  memset(other, 0x5a, sizeof(other));
  th_write_file_ok(f->h[1].t.pepper_path, other, sizeof(other), 0600);
  assert_int_equal(th_tokend_spawn(&f->h[1].t, args), 0);
  status = th_tokend_wait_exit(&f->h[1].t, TH_START_TIMEOUT_MS);
  log = th_read_file(f->h[1].t.log_path, NULL);
  assert_non_null(log);
  if (status <= 0 || status >= 128 || strstr(log, "pepper") == NULL)
    fail_msg("host B with another pepper: exit status %d, want a refusal "
             "naming the pepper; log:\n%s",
             status, log);
  free(log);

  /* The refused host never counted as live: A's writes do not wait for
   * it. */
  host_issue_ok(&f->h[0], "after the refusal", token, NULL, &p);
  expect_prop(&p, 1, 0, "Issue on A after B refused to start");
  expect_answer(&f->h[0], token, MH_VALID, "A after B refused");
}

/* ---- g: concurrent writers ---- */

#define MH_G_CONNS_PER_HOST 3
#define MH_G_ISSUES 30
#define MH_G_WRITERS (N_HOSTS * MH_G_CONNS_PER_HOST)

typedef struct {
  const char *issue_socket;  /* where it issues */
  const char *revoke_socket; /* where it revokes: the next host */
  int index;
  char tokens[MH_G_ISSUES][TOKEND_TOKEN_BYTES];
  int revoked[MH_G_ISSUES];
  char error[256]; /* "" unless a call failed */
} mh_writer_t;

/* Issues MH_G_ISSUES tokens on one host and revokes every other one, each
 * right after issuing the next, on another host: issues and revokes of
 * every host interleave. Midway it grants two domain admins on the first
 * host and later removes one on the other (the digest covers admins too).
 * Records the first failure in w->error. */
static void *writer_main(void *arg) {
  mh_writer_t *w = arg;
  tokend_client_t *in = NULL, *out = NULL;
  tokend_issue_params_t p = {DOMAIN, "concurrent", 0, NULL, 0, NULL};
  tokend_issued_t is;
  char pending_id[TOKEND_TOKEN_ID_BYTES] = "";
  char kept[32], removed[32];
  int i;

  snprintf(kept, sizeof(kept), "mh-w%d-kept", w->index);
  snprintf(removed, sizeof(removed), "mh-w%d-removed", w->index);
  if (tokend_client_connect(w->issue_socket, TH_IO_TIMEOUT_MS, &in) != 0 ||
      tokend_client_connect(w->revoke_socket, TH_IO_TIMEOUT_MS, &out) != 0) {
    snprintf(w->error, sizeof(w->error), "writer %d cannot connect", w->index);
    goto out_close;
  }
  for (i = 0; i < MH_G_ISSUES; i++) {
    if (tokend_client_issue(in, &p, &is) != 0) {
      snprintf(w->error, sizeof(w->error), "writer %d: Issue %d: %s", w->index,
               i, tokend_client_errmsg(in));
      goto out_close;
    }
    snprintf(w->tokens[i], sizeof(w->tokens[i]), "%s", is.token);
    if (pending_id[0] != '\0') {
      if (tokend_client_revoke(out, DOMAIN, pending_id, NULL, NULL) != 0) {
        snprintf(w->error, sizeof(w->error), "writer %d: Revoke %s: %s",
                 w->index, pending_id, tokend_client_errmsg(out));
        tokend_client_wipe(&is);
        goto out_close;
      }
      w->revoked[i - 1] = 1;
      pending_id[0] = '\0';
    }
    if (i % 2 == 0)
      snprintf(pending_id, sizeof(pending_id), "%s", is.info.id);
    tokend_client_wipe(&is);
    if (i == MH_G_ISSUES / 3 &&
        (tokend_client_grant_admin(in, DOMAIN, kept, NULL, NULL) != 0 ||
         tokend_client_grant_admin(in, DOMAIN, removed, NULL, NULL) != 0)) {
      snprintf(w->error, sizeof(w->error), "writer %d: GrantDomainAdmin: %s",
               w->index, tokend_client_errmsg(in));
      goto out_close;
    }
    if (i == 2 * MH_G_ISSUES / 3 &&
        tokend_client_revoke_admin(out, DOMAIN, removed, 0, NULL) != 0) {
      snprintf(w->error, sizeof(w->error), "writer %d: RevokeDomainAdmin: %s",
               w->index, tokend_client_errmsg(out));
      goto out_close;
    }
  }
out_close:
  tokend_client_close(in);
  tokend_client_close(out);
  return NULL;
}

static void test_concurrent_writers_leave_identical_indexes(void **state) {
  mh_fixture_t *f = *state;
  static mh_writer_t w[MH_G_WRITERS];
  pthread_t th[MH_G_WRITERS];
  mh_status_t st[N_HOSTS];
  char what[64];
  int i, k, h, n_revoked = 0;

  hosts_start(f, N_HOSTS, 0, 0);
  memset(w, 0, sizeof(w));
  for (i = 0; i < MH_G_WRITERS; i++) {
    h = i % N_HOSTS;
    w[i].index = i;
    w[i].issue_socket = f->h[h].t.socket_path;
    w[i].revoke_socket = f->h[(h + 1) % N_HOSTS].t.socket_path;
    assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
  }
  for (i = 0; i < MH_G_WRITERS; i++)
    pthread_join(th[i], NULL);
  for (i = 0; i < MH_G_WRITERS; i++)
    if (w[i].error[0] != '\0')
      fail_msg("%s", w[i].error);

  wait_converged(f, N_HOSTS, st);
  for (h = 0; h < N_HOSTS; h++)
    assert_int_equal(st[h].tokens, MH_G_WRITERS * MH_G_ISSUES);
  /* The digests agree; so does what each host answers. */
  for (i = 0; i < MH_G_WRITERS; i++)
    for (k = 0; k < MH_G_ISSUES; k++) {
      n_revoked += w[i].revoked[k];
      for (h = 0; h < N_HOSTS; h++) {
        snprintf(what, sizeof(what), "writer %d token %d", i, k);
        expect_answer(&f->h[h], w[i].tokens[k],
                      w[i].revoked[k] ? MH_REVOKED : MH_VALID, what);
      }
    }
  assert_int_equal(n_revoked, MH_G_WRITERS * (MH_G_ISSUES / 2));
  /* Each writer left one admin, and every host lists them all. */
  for (h = 0; h < N_HOSTS; h++) {
    tokend_client_t *c = th_client_connect_ok(&f->h[h].t);
    tokend_admin_list_t *admins = NULL;

    assert_int_equal(tokend_client_list_admins(c, DOMAIN, &admins), 0);
    assert_int_equal(admins->n_admins, MH_G_WRITERS);
    tokend_admin_list_free(admins);
    tokend_client_close(c);
  }
}

/* ---- issue 17: Edit and Roll in effect everywhere on return ---- */

static void test_edit_and_roll_in_effect_everywhere_on_return(void **state) {
  mh_fixture_t *f = *state;
  static const char *const scopes[] = {"read", "write"};
  tokend_issue_params_t ip = {DOMAIN, "before", 0,
                              scopes, 2,        "{\"plan\":\"free\"}"};
  tokend_client_t *c[N_HOSTS];
  tokend_edit_params_t ep;
  tokend_issued_t is;
  tokend_rolled_t rolled;
  tokend_verify_result_t v;
  tokend_token_info_t info;
  mh_status_t st[N_HOSTS];
  int i;

  hosts_start(f, N_HOSTS, 0, 0);
  for (i = 0; i < N_HOSTS; i++)
    c[i] = th_client_connect_ok(&f->h[i].t);
  assert_int_equal(tokend_client_issue(c[0], &ip, &is), 0);

  /* Edit on A: B and C answer the new label, metadata and scopes. */
  memset(&ep, 0, sizeof(ep));
  ep.label = "after";
  ep.metadata = "{\"plan\":\"pro\"}";
  ep.set_scopes = 1;
  ep.scopes = scopes;
  ep.n_scopes = 1;
  assert_int_equal(tokend_client_edit(c[0], DOMAIN, is.info.id, &ep, &info), 0);
  for (i = 1; i < N_HOSTS; i++) {
    assert_int_equal(tokend_client_verify(c[i], is.token, &v), 0);
    assert_true(v.valid);
    assert_string_equal(v.label, "after");
    assert_string_equal(v.metadata, "{\"plan\":\"pro\"}");
    assert_int_equal(v.n_scopes, 1);
  }

  /* Roll on B without grace: on A and C the new token is valid and the
   * old one expired, at once. */
  assert_int_equal(tokend_client_roll(c[1], DOMAIN, is.info.id, 0, &rolled), 0);
  for (i = 0; i < N_HOSTS; i += 2) {
    assert_int_equal(tokend_client_verify(c[i], rolled.token, &v), 0);
    assert_true(v.valid);
    assert_string_equal(v.metadata, "{\"plan\":\"pro\"}");
    assert_int_equal(tokend_client_verify(c[i], is.token, &v), 0);
    assert_false(v.valid);
    assert_int_equal(v.reason, TOKEND_VERIFY_EXPIRED);
  }
  /* And the hosts' indexes agree. */
  wait_converged(f, N_HOSTS, st);
  for (i = 0; i < N_HOSTS; i++)
    tokend_client_close(c[i]);
  sodium_memzero(rolled.token, sizeof(rolled.token));
  tokend_client_wipe(&is);
}

/* ---- h: a pepper rotation across hosts (issue 16) ---- */

/* Host i's count of tokens on the previous pepper (ServerStatus). */
static uint64_t host_previous_pepper(const mh_host_t *h) {
  tokend_client_t *c = th_client_connect_ok(&h->t);
  uint64_t n = 0;

  if (tokend_client_tokens_previous_pepper(c, &n) != 0)
    fail_msg("host %s: ServerStatus: %s", h->id, tokend_client_errmsg(c));
  tokend_client_close(c);
  return n;
}

static void wait_previous_pepper(const mh_host_t *h, uint64_t want) {
  int64_t deadline = th_mono_ms() + MH_CONVERGE_TIMEOUT_MS;
  uint64_t n;

  while ((n = host_previous_pepper(h)) != want && th_mono_ms() < deadline)
    th_sleep_ms(MH_POLL_MS);
  if (n != want)
    fail_msg("host %s: %llu tokens on the previous pepper, want %llu", h->id,
             (unsigned long long)n, (unsigned long long)want);
}

/* Restarts host i with pepper (its --pepper-file) and previous (its
 * --previous-pepper-file). */
static void host_start_rotating(mh_fixture_t *f, int i, const char *pepper,
                                const char *previous) {
  mh_host_t *h = &f->h[i];
  const char *args[] = {
      "--store", f->url, "--host-id", h->id, "--previous-pepper-file",
      previous,  NULL};

  snprintf(h->t.pepper_path, sizeof(h->t.pepper_path), "%s", pepper);
  h->t.no_create_db = 1;
  if (th_tokend_start(&h->t, args) != 0)
    fail_msg("host %s did not start rotating (its log is above)", h->id);
  if (h->fd >= 0)
    close(h->fd);
  h->fd = th_connect(h->t.socket_path);
  if (h->fd < 0)
    fail_msg("cannot connect to host %s", h->id);
}

/* A begins a rotation while B still runs on the old pepper alone: B stops
 * at the first token re-keyed (it could not verify it any more), saying
 * how to restart. Restarted with both peppers, B learns each re-key of A
 * through the feed (found by id: the row names only the new hash) and A
 * each of B's; the indexes stay identical, and a revocation of a re-keyed
 * token reaches the other host. */
static void test_pepper_rotation_reaches_every_host(void **state) {
  mh_fixture_t *f = *state;
  char token[3][TOKEND_TOKEN_BYTES], id[3][TOKEND_TOKEN_ID_BYTES];
  char old_pepper[TH_PATH_BYTES], new_pepper[TH_PATH_BYTES];
  uint8_t fresh[TOKEND_PEPPER_BYTES];
  mh_status_t st[2];
  mh_prop_t p;
  char *log;
  int i, status;

  hosts_start(f, 2, 0, 0);
  for (i = 0; i < 3; i++)
    host_issue_ok(&f->h[0], "before the rotation", token[i], id[i], NULL);
  snprintf(old_pepper, sizeof(old_pepper), "%s", f->h[0].t.pepper_path);
  snprintf(new_pepper, sizeof(new_pepper), "%s/pepper.new", f->h[0].t.dir);
  memset(fresh, 0x3c, sizeof(fresh));
  th_write_file_ok(new_pepper, fresh, sizeof(fresh), 0600);

  /* A restarts rotating; B runs on, with the old pepper only. */
  assert_int_equal(th_tokend_stop_clean(&f->h[0].t), 0);
  host_start_rotating(f, 0, new_pepper, old_pepper);
  assert_int_equal(host_previous_pepper(&f->h[0]), 3);
  expect_answer(&f->h[0], token[0], MH_VALID, "A, rotating, old token");
  wait_previous_pepper(&f->h[0], 2);
  status = th_tokend_wait_exit(&f->h[1].t, MH_CONVERGE_TIMEOUT_MS);
  log = th_read_file(f->h[1].t.log_path, NULL);
  assert_non_null(log);
  if (status != 1 || strstr(log, "another host re-keyed token") == NULL)
    fail_msg("host B on the old pepper: exit status %d, want 1 naming the "
             "re-key; log:\n%s",
             status, log);
  free(log);

  /* B restarts with both: it loads token 0 re-keyed, 1 and 2 not yet. */
  host_start_rotating(f, 1, new_pepper, old_pepper);
  wait_counted(f, 0, 2);
  assert_int_equal(host_previous_pepper(&f->h[1]), 2);
  expect_answer(&f->h[1], token[0], MH_VALID, "B, token re-keyed by A");
  /* A re-key on A moves B's entry, and one on B moves A's. */
  expect_answer(&f->h[0], token[1], MH_VALID, "A, old token 1");
  wait_previous_pepper(&f->h[1], 1);
  expect_answer(&f->h[1], token[2], MH_VALID, "B, old token 2");
  wait_previous_pepper(&f->h[0], 0);
  wait_previous_pepper(&f->h[1], 0);
  wait_converged(f, 2, st);
  /* A revocation on B of a token A re-keyed is in effect on A. */
  host_revoke_ok(&f->h[1], id[1], &p);
  expect_prop(&p, 2, 0, "Revoke on B of a re-keyed token");
  expect_answer(&f->h[0], token[1], MH_REVOKED, "A, after B revoked it");
  for (i = 0; i < 3; i++)
    if (i != 1)
      expect_answer(&f->h[1], token[i], MH_VALID, "B, after the rotation");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_issue_and_revoke_in_effect_everywhere_on_return, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_bulk_revoke_in_effect_everywhere_on_return, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_host_counted_by_writes_as_soon_as_it_answers, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_listener_killed_catches_up_losing_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_postgresql_down_valid_until_lease_then_unavailable, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_stopped_host_stops_holding_up_revoke_and_fails_closed, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_host_behind_pruned_feed_reloads_and_misses_nothing, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_kill9_during_issues_loses_no_acknowledged_issue, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_host_with_another_pepper_refuses_to_start, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_concurrent_writers_leave_identical_indexes, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_edit_and_roll_in_effect_everywhere_on_return, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pepper_rotation_reaches_every_host,
                                      setup, teardown),
  };
  int rc;

  if (!pg_cluster_available()) {
    printf("skipped: no PostgreSQL server binaries in %s "
           "(scripts/install-deps.sh installs postgresql-15)\n",
           PG_CLUSTER_BINDIR);
    return 77;
  }
  if (pg_cluster_start(&cluster) != 0)
    return 1;
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  pg_cluster_stop(&cluster);
  return rc;
}
