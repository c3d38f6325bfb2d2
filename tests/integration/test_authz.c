/* Who may do what, against a real tokend with real peers of different uids:
 * the test runs as root (an operator) and forks children that drop to
 * unprivileged uids before they connect, so tokend sees them through
 * SO_PEERCRED exactly as it would see another service. */
#define _GNU_SOURCE /* setgroups */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "tokend_client.h"

#ifndef TOKENCTL_BIN
#error "TOKENCTL_BIN must name the tokenctl executable"
#endif

/* ctest's SKIP_RETURN_CODE: only root can make peers of other uids. */
#define SKIP_NOT_ROOT 77

#define DOMAIN "authz.example"
#define OTHER_DOMAIN "other.example"
/* The one peer tokend lets verify (besides operators), with no passwd entry:
 * tokend must not need one. */
#define VERIFIER_UID 12345
#define VERIFIER_USER "uid:12345"
/* nobody/nogroup: neither operator nor verifier. */
#define NOBODY_UID 65534
#define NOGROUP_GID 65534
#define ALICE "alice@example.com" /* a platform identity operators act for */
#define BOB "bob@example.com"     /* never made an admin */

#define CLIENT_TIMEOUT_MS 5000
#define CHILD_TIMEOUT_MS 20000
#define MAX_OPS 16

/* ---- fixture ---- */

/* tokend as an installation that lets other users in: a world-connectable
 * socket in a traversable directory, and one named verifier. */
static int start_tokend(th_tokend_t *t, const char *const *args) {
  if (th_tokend_init(t) != 0)
    return -1;
  /* Peers must reach the socket; the db and pepper stay 0600 inside. */
  if (chmod(t->dir, 0711) != 0) {
    fprintf(stderr, "chmod %s: %s\n", t->dir, strerror(errno));
    th_tokend_destroy(t);
    return -1;
  }
  if (th_tokend_start(t, args) != 0) {
    th_tokend_destroy(t);
    return -1;
  }
  return 0;
}

/* f->client is the test itself: uid 0, an operator. These tests look for
 * each refused call's own audit row (its pid), so refusals are not
 * aggregated here (test_audit tests the aggregation). */
static int setup(void **state) {
  static const char *const args[] = {"--socket-mode",
                                     "0666",
                                     "--socket-group",
                                     "65534",
                                     "--verifier-uid",
                                     "12345",
                                     "--refusal-audit-interval-ms",
                                     "0",
                                     NULL};
  th_fixture_t *f = calloc(1, sizeof(*f));

  if (f == NULL)
    return -1;
  *state = f;
  if (start_tokend(&f->tokend, args) != 0 ||
      tokend_client_connect(f->tokend.socket_path, CLIENT_TIMEOUT_MS,
                            &f->client) != 0) {
    th_fixture_teardown(state);
    return -1;
  }
  return 0;
}

/* ---- peers of other uids ----
 *
 * A child runs a short script of calls and sends every result back through
 * a pipe; the parent asserts on them (cmocka must not run in the child). */

typedef enum {
  OP_ISSUE,        /* domain, arg: label */
  OP_VERIFY,       /* arg: token, or ref: the token op ref issued */
  OP_REVOKE,       /* domain, arg: token id, or ref */
  OP_LIST,         /* domain (include revoked) */
  OP_WHOAMI,       /* */
  OP_SET_ACTOR,    /* arg: actor */
  OP_GRANT,        /* domain, arg: user */
  OP_REVOKE_ADMIN, /* domain, arg: user */
  OP_LIST_ADMINS,  /* domain */
  OP_LIST_AUDIT    /* domain */
} op_kind_t;

typedef struct {
  op_kind_t kind;
  const char *domain;
  const char *arg;
  int ref; /* 1-based index of an earlier OP_ISSUE; 0: use arg */
} op_t;

typedef struct {
  int rc;
  int grpc;
  char errmsg[TOKEND_STATUS_MESSAGE_BYTES];
  tokend_issued_t issued;        /* OP_ISSUE */
  tokend_verify_result_t verify; /* OP_VERIFY */
  size_t count;                  /* tokens, admins or audit events listed */
  tokend_token_info_t newest;    /* OP_LIST: the first token */
  tokend_audit_event_t event;    /* OP_LIST_AUDIT: the newest event */
  char domains_seen[TOKEND_DOMAIN_BYTES]; /* OP_LIST_AUDIT: a foreign one */
  tokend_whoami_t who;                    /* OP_WHOAMI */
} op_result_t;

static void child_run_op(tokend_client_t *c, const op_t *op, op_result_t *res,
                         op_result_t *all) {
  tokend_issue_params_t params;
  tokend_token_list_t *tokens = NULL;
  tokend_admin_list_t *admins = NULL;
  tokend_audit_list_t *events = NULL;
  const char *arg = op->arg;
  size_t i;

  memset(res, 0, sizeof(*res));
  if (op->ref > 0)
    arg = op->kind == OP_VERIFY ? all[op->ref - 1].issued.token
                                : all[op->ref - 1].issued.info.id;
  switch (op->kind) {
  case OP_ISSUE:
    memset(&params, 0, sizeof(params));
    params.domain = op->domain;
    params.label = arg;
    res->rc = tokend_client_issue(c, &params, &res->issued);
    break;
  case OP_VERIFY:
    res->rc = tokend_client_verify(c, arg, &res->verify);
    break;
  case OP_REVOKE:
    res->rc = tokend_client_revoke(c, op->domain, arg, NULL, NULL);
    break;
  case OP_LIST:
    res->rc = tokend_client_list(c, op->domain, 0, NULL, 1, &tokens);
    if (res->rc == 0) {
      res->count = tokens->n_tokens;
      if (tokens->n_tokens > 0)
        res->newest = tokens->tokens[0];
    }
    tokend_token_list_free(tokens);
    break;
  case OP_WHOAMI:
    res->rc = tokend_client_whoami(c, &res->who);
    break;
  case OP_SET_ACTOR:
    res->rc = tokend_client_set_actor(c, arg);
    break;
  case OP_GRANT:
    res->rc = tokend_client_grant_admin(c, op->domain, arg, NULL, NULL);
    break;
  case OP_REVOKE_ADMIN:
    res->rc = tokend_client_revoke_admin(c, op->domain, arg, 1, NULL);
    break;
  case OP_LIST_ADMINS:
    res->rc = tokend_client_list_admins(c, op->domain, &admins);
    if (res->rc == 0)
      res->count = admins->n_admins;
    tokend_admin_list_free(admins);
    break;
  case OP_LIST_AUDIT:
    res->rc = tokend_client_list_audit(c, op->domain, 0, 1000, NULL, &events);
    if (res->rc == 0) {
      res->count = events->n_events;
      if (events->n_events > 0)
        res->event = events->events[0];
      for (i = 0; i < events->n_events; i++)
        if (strcmp(events->events[i].domain, op->domain) != 0)
          snprintf(res->domains_seen, sizeof(res->domains_seen), "%s",
                   events->events[i].domain);
    }
    tokend_audit_list_free(events);
    break;
  }
  res->grpc = tokend_client_grpc_status(c);
  if (res->rc != 0)
    snprintf(res->errmsg, sizeof(res->errmsg), "%s", tokend_client_errmsg(c));
}

/* In a child: becomes uid/gid with no supplementary groups, and checks that
 * root cannot be had back. */
static int drop_privileges(uid_t uid, gid_t gid) {
  if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
    return -1;
  if (getuid() != uid || geteuid() != uid || getgid() != gid ||
      getegid() != gid || setuid(0) == 0)
    return -1;
  return 0;
}

/* Runs ops (n of them) in a child of uid/gid connected to socket_path; res
 * gets one result per op. Returns the child's connect result (ops run only
 * when it is 0); *pid gets the child's pid, as tokend saw it. */
static int run_as(const char *socket_path, uid_t uid, gid_t gid,
                  const op_t *ops, size_t n, op_result_t *res, pid_t *pid) {
  op_result_t *all;
  tokend_client_t *c;
  int fds[2], rc = 0, wstatus;
  pid_t child;
  size_t i;

  assert_true(n <= MAX_OPS);
  assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
  child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (drop_privileges(uid, gid) != 0)
      _exit(3);
    all = calloc(MAX_OPS, sizeof(*all));
    if (all == NULL)
      _exit(4);
    rc = tokend_client_connect(socket_path, CLIENT_TIMEOUT_MS, &c);
    if (rc == 0) {
      for (i = 0; i < n; i++)
        child_run_op(c, &ops[i], &all[i], all);
      tokend_client_close(c);
    }
    if (th_write_all(fds[1], &rc, sizeof(rc)) != 0 ||
        th_write_all(fds[1], all, n * sizeof(*all)) != 0)
      _exit(5);
    _exit(0);
  }
  close(fds[1]);
  memset(res, 0, n * sizeof(*res));
  if (th_read_all(fds[0], &rc, sizeof(rc), CHILD_TIMEOUT_MS) != 0 ||
      th_read_all(fds[0], res, n * sizeof(*res), CHILD_TIMEOUT_MS) != 0)
    rc = INT32_MIN;
  close(fds[0]);
  while (waitpid(child, &wstatus, 0) < 0)
    assert_int_equal(errno, EINTR);
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
    fail_msg("child as uid %u exited with status 0x%x (3: could not drop "
             "privileges)",
             (unsigned)uid, (unsigned)wstatus);
  assert_int_not_equal(rc, INT32_MIN);
  if (pid != NULL)
    *pid = child;
  return rc;
}

/* run_as, for a peer that must get in. */
static pid_t run_ops(const th_fixture_t *f, uid_t uid, const op_t *ops,
                     size_t n, op_result_t *res) {
  pid_t pid;
  int rc = run_as(f->tokend.socket_path, uid, (gid_t)uid, ops, n, res, &pid);

  if (rc != 0)
    fail_msg("uid %u could not connect: %s", (unsigned)uid,
             tokend_strerror(rc));
  return pid;
}

static void expect_ok(const op_result_t *r, const char *what) {
  if (r->rc != 0)
    fail_msg("%s: %s (%s): %s", what, tokend_err_name(r->rc),
             tokend_grpc_name(r->grpc), r->errmsg);
}

static void expect_denied(const op_result_t *r, const char *what) {
  if (r->rc != TOKEND_EPERM || r->grpc != TOKEND_GRPC_PERMISSION_DENIED)
    fail_msg("%s: want PERMISSION_DENIED, got %s (%s): %s", what,
             r->rc == 0 ? "OK" : tokend_err_name(r->rc),
             tokend_grpc_name(r->grpc), r->errmsg);
  /* The message says which rule refused the call. */
  if (r->errmsg[0] == '\0')
    fail_msg("%s: PERMISSION_DENIED without a message", what);
}

/* ---- the root client's view ---- */

static void root_issue(const th_fixture_t *f, const char *domain,
                       const char *label, tokend_issued_t *out) {
  tokend_issue_params_t params;
  int rc;

  memset(&params, 0, sizeof(params));
  params.domain = domain;
  params.label = label;
  rc = tokend_client_issue(f->client, &params, out);
  if (rc != 0)
    fail_msg("root issue in %s: %s: %s", domain, tokend_err_name(rc),
             tokend_client_errmsg(f->client));
}

static void root_grant(const th_fixture_t *f, const char *domain,
                       const char *user) {
  int rc = tokend_client_grant_admin(f->client, domain, user, NULL, NULL);

  if (rc != 0)
    fail_msg("grant %s admin of %s: %s: %s", user, domain, tokend_err_name(rc),
             tokend_client_errmsg(f->client));
}

static tokend_verify_reason_t root_verify(const th_fixture_t *f,
                                          const char *token) {
  tokend_verify_result_t v;

  assert_int_equal(tokend_client_verify(f->client, token, &v), 0);
  return v.reason;
}

/* Every token of domain, revoked ones too (the caller frees). */
static tokend_token_list_t *root_list(const th_fixture_t *f,
                                      const char *domain) {
  tokend_token_list_t *list = NULL;
  int rc = tokend_client_list(f->client, domain, 1000, NULL, 1, &list);

  if (rc != 0)
    fail_msg("root list %s: %s: %s", domain, tokend_err_name(rc),
             tokend_client_errmsg(f->client));
  return list;
}

static const tokend_token_info_t *find_token(const tokend_token_list_t *list,
                                             const char *id) {
  size_t i;

  for (i = 0; i < list->n_tokens; i++)
    if (strcmp(list->tokens[i].id, id) == 0)
      return &list->tokens[i];
  return NULL;
}

/* Every audit event of domain ("" all), newest first, fetched page by page
 * (small pages, so that paging itself is exercised). */
static tokend_audit_event_t *root_audit(const th_fixture_t *f,
                                        const char *domain, int64_t since,
                                        size_t *n) {
  char page_token[TOKEND_PAGE_TOKEN_BYTES] = "";
  tokend_audit_event_t *all = NULL;
  tokend_audit_list_t *page;
  int rc;

  *n = 0;
  for (;;) {
    rc = tokend_client_list_audit(f->client, domain, since, 3, page_token,
                                  &page);
    if (rc != 0)
      fail_msg("root audit %s: %s: %s", domain, tokend_err_name(rc),
               tokend_client_errmsg(f->client));
    assert_true(page->n_events <= 3);
    all = reallocarray(all, *n + page->n_events + 1, sizeof(*all));
    assert_non_null(all);
    if (page->n_events > 0)
      memcpy(all + *n, page->events, page->n_events * sizeof(*all));
    *n += page->n_events;
    snprintf(page_token, sizeof(page_token), "%s", page->next_page_token);
    tokend_audit_list_free(page);
    if (page_token[0] == '\0')
      return all;
    assert_true(*n < 100000);
  }
}

/* How many events match: peer uid, method and code always; pid and token id
 * unless -1 / NULL. *match (may be NULL) gets the newest match. */
static size_t count_events(const tokend_audit_event_t *ev, size_t n,
                           uint32_t peer_uid, int32_t pid, const char *method,
                           int code, const char *token_id,
                           tokend_audit_event_t *match) {
  size_t i, count = 0;

  for (i = 0; i < n; i++) {
    if (ev[i].peer_uid != peer_uid || strcmp(ev[i].method, method) != 0 ||
        ev[i].code != code || (pid != -1 && ev[i].peer_pid != pid) ||
        (token_id != NULL && strcmp(ev[i].token_id, token_id) != 0))
      continue;
    if (count == 0 && match != NULL)
      *match = ev[i];
    count++;
  }
  return count;
}

static void dump_events(const tokend_audit_event_t *ev, size_t n) {
  size_t i;

  for (i = 0; i < n; i++)
    fprintf(stderr,
            "  #%lld uid %u pid %d actor '%s'%s domain '%s' token '%s' %s "
            "code %d: %s\n",
            (long long)ev[i].id, ev[i].peer_uid, ev[i].peer_pid, ev[i].actor,
            ev[i].break_glass ? " (break-glass)" : "", ev[i].domain,
            ev[i].token_id, ev[i].method, ev[i].code, ev[i].detail);
}

/* Asserts that the audit log holds at least one refusal (code 7) of method
 * by peer_uid (and pid, unless -1). */
static void expect_refusal_audited(const th_fixture_t *f, uint32_t peer_uid,
                                   int32_t pid, const char *method) {
  tokend_audit_event_t *ev, match;
  size_t n;

  ev = root_audit(f, "", 0, &n);
  if (count_events(ev, n, peer_uid, pid, method, TOKEND_GRPC_PERMISSION_DENIED,
                   NULL, &match) == 0) {
    fprintf(stderr, "audit log (%zu events):\n", n);
    dump_events(ev, n);
    free(ev);
    fail_msg("no audited refusal of %s by uid %u pid %d", method, peer_uid,
             (int)pid);
  }
  free(ev);
}

/* ---- tests ---- */

static void test_verifier_only_peer_may_verify_and_nothing_else(void **state) {
  th_fixture_t *f = *state;
  tokend_token_list_t *list;
  tokend_issued_t t;
  op_result_t res[4];
  pid_t pid;

  root_issue(f, DOMAIN, "checked by a sibling", &t);
  {
    const op_t ops[] = {
        {OP_VERIFY, NULL, t.token, 0},
        {OP_ISSUE, DOMAIN, "sneaky", 0},
        {OP_LIST, DOMAIN, NULL, 0},
        {OP_REVOKE, DOMAIN, t.info.id, 0},
    };

    pid = run_ops(f, VERIFIER_UID, ops, 4, res);
  }
  expect_ok(&res[0], "verifier: Verify");
  assert_true(res[0].verify.valid);
  assert_string_equal(res[0].verify.token_id, t.info.id);
  expect_denied(&res[1], "verifier: Issue");
  expect_denied(&res[2], "verifier: List");
  expect_denied(&res[3], "verifier: Revoke");

  /* Nothing changed: one token, still valid. */
  assert_int_equal(root_verify(f, t.token), TOKEND_VERIFY_VALID);
  list = root_list(f, DOMAIN);
  assert_int_equal(list->n_tokens, 1);
  tokend_token_list_free(list);

  expect_refusal_audited(f, VERIFIER_UID, pid, "Issue");
  expect_refusal_audited(f, VERIFIER_UID, pid, "List");
  expect_refusal_audited(f, VERIFIER_UID, pid, "Revoke");
  tokend_client_wipe(&t);
}

static void test_peer_not_in_verifier_list_cannot_verify(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t t;
  op_result_t res[2];
  pid_t pid;

  root_issue(f, DOMAIN, "not for nobody", &t);
  {
    const op_t ops[] = {
        {OP_VERIFY, NULL, t.token, 0},
        {OP_WHOAMI, NULL, NULL, 0},
    };

    pid = run_ops(f, NOBODY_UID, ops, 2, res);
  }
  expect_denied(&res[0], "nobody: Verify");
  /* The refusal tells nothing about the token. */
  assert_false(res[0].verify.valid);
  assert_string_equal(res[0].verify.token_id, "");
  /* WhoAmI is for anyone. */
  expect_ok(&res[1], "nobody: WhoAmI");
  assert_false(res[1].who.is_verifier);
  expect_refusal_audited(f, NOBODY_UID, pid, "Verify");

  /* An operator may verify although it is not in --verifier-uid. */
  assert_int_equal(root_verify(f, t.token), TOKEND_VERIFY_VALID);
  tokend_client_wipe(&t);
}

static void test_whoami_for_root_and_unprivileged_peers(void **state) {
  th_fixture_t *f = *state;
  char too_long[TOKEND_USER_MAX_CHARS + 2];
  tokend_whoami_t who;
  op_result_t res[2];
  const op_t ops[] = {{OP_WHOAMI, NULL, NULL, 0}};
  pid_t pid;

  assert_int_equal(tokend_client_whoami(f->client, &who), 0);
  assert_int_equal(who.uid, 0);
  assert_int_equal(who.gid, 0);
  assert_int_equal(who.pid, getpid());
  assert_string_equal(who.user, "uid:0");
  assert_true(who.is_operator);
  assert_true(who.is_verifier);

  /* An operator acting for someone is named after them. */
  assert_int_equal(tokend_client_set_actor(f->client, ALICE), 0);
  assert_int_equal(tokend_client_whoami(f->client, &who), 0);
  assert_string_equal(who.user, ALICE);
  assert_true(who.is_operator);
  /* An actor too long to be a user is refused locally, and the previous one
   * stays (clearing it would make the next calls break-glass). */
  memset(too_long, 'a', TOKEND_USER_MAX_CHARS + 1);
  too_long[TOKEND_USER_MAX_CHARS + 1] = '\0';
  assert_int_equal(tokend_client_set_actor(f->client, too_long), TOKEND_EINVAL);
  assert_int_equal(tokend_client_whoami(f->client, &who), 0);
  assert_string_equal(who.user, ALICE);
  assert_int_equal(tokend_client_set_actor(f->client, NULL), 0);
  assert_int_equal(tokend_client_whoami(f->client, &who), 0);
  assert_string_equal(who.user, "uid:0");

  pid = run_ops(f, VERIFIER_UID, ops, 1, res);
  expect_ok(&res[0], "verifier: WhoAmI");
  assert_int_equal(res[0].who.uid, VERIFIER_UID);
  assert_int_equal(res[0].who.gid, VERIFIER_UID);
  assert_int_equal(res[0].who.pid, pid);
  assert_string_equal(res[0].who.user, VERIFIER_USER);
  assert_false(res[0].who.is_operator);
  assert_true(res[0].who.is_verifier);

  pid = run_ops(f, NOBODY_UID, ops, 1, res);
  expect_ok(&res[0], "nobody: WhoAmI");
  assert_int_equal(res[0].who.uid, NOBODY_UID);
  assert_int_equal(res[0].who.pid, pid);
  assert_string_equal(res[0].who.user, "uid:65534");
  assert_false(res[0].who.is_operator);
  assert_false(res[0].who.is_verifier);
}

static void test_admin_manages_own_domain_only(void **state) {
  th_fixture_t *f = *state;
  tokend_token_list_t *list;
  tokend_admin_list_t *admins;
  tokend_issued_t other;
  const tokend_token_info_t *info;
  op_result_t before[1], res[8];
  int64_t granted_at = 0, again_at = 0;
  int already = -1;
  pid_t pid;

  /* Not an admin yet: refused. */
  {
    const op_t ops[] = {{OP_ISSUE, DOMAIN, "too early", 0}};

    pid = run_ops(f, VERIFIER_UID, ops, 1, before);
  }
  expect_denied(&before[0], "non-admin: Issue");
  expect_refusal_audited(f, VERIFIER_UID, pid, "Issue");

  assert_int_equal(tokend_client_grant_admin(f->client, DOMAIN, VERIFIER_USER,
                                             &granted_at, &already),
                   0);
  assert_true(granted_at > 0);
  assert_int_equal(already, 0);
  /* Granting again changes nothing and says so. */
  assert_int_equal(tokend_client_grant_admin(f->client, DOMAIN, VERIFIER_USER,
                                             &again_at, &already),
                   0);
  assert_int_equal(already, 1);
  assert_int_equal(again_at, granted_at);
  assert_int_equal(tokend_client_list_admins(f->client, DOMAIN, &admins), 0);
  assert_int_equal(admins->n_admins, 1);
  assert_string_equal(admins->admins[0].user, VERIFIER_USER);
  assert_int_equal(admins->admins[0].granted_at, granted_at);
  tokend_admin_list_free(admins);

  root_issue(f, OTHER_DOMAIN, "someone else's", &other);
  {
    const op_t ops[] = {
        {OP_ISSUE, DOMAIN, "mine", 0},
        {OP_LIST, DOMAIN, NULL, 0},
        {OP_REVOKE, DOMAIN, NULL, 1},
        {OP_ISSUE, OTHER_DOMAIN, "not mine", 0},
        {OP_LIST, OTHER_DOMAIN, NULL, 0},
        {OP_REVOKE, OTHER_DOMAIN, other.info.id, 0},
        {OP_LIST_ADMINS, DOMAIN, NULL, 0},
        {OP_GRANT, OTHER_DOMAIN, VERIFIER_USER, 0},
    };

    pid = run_ops(f, VERIFIER_UID, ops, 8, res);
  }
  expect_ok(&res[0], "admin: Issue");
  assert_string_equal(res[0].issued.info.created_by, VERIFIER_USER);
  assert_string_equal(res[0].issued.info.revoked_by, "");
  expect_ok(&res[1], "admin: List");
  assert_int_equal(res[1].count, 1);
  assert_string_equal(res[1].newest.id, res[0].issued.info.id);
  assert_string_equal(res[1].newest.created_by, VERIFIER_USER);
  expect_ok(&res[2], "admin: Revoke");
  expect_denied(&res[3], "admin of another domain: Issue");
  expect_denied(&res[4], "admin of another domain: List");
  expect_denied(&res[5], "admin of another domain: Revoke");
  expect_denied(&res[6], "admin: ListDomainAdmins");
  expect_denied(&res[7], "admin: GrantDomainAdmin to itself");

  /* List shows who created and who revoked. */
  list = root_list(f, DOMAIN);
  info = find_token(list, res[0].issued.info.id);
  assert_non_null(info);
  assert_int_equal(info->status, TOKEND_TOKEN_REVOKED);
  assert_string_equal(info->created_by, VERIFIER_USER);
  assert_string_equal(info->revoked_by, VERIFIER_USER);
  tokend_token_list_free(list);

  /* Nothing changed in the other domain. */
  assert_int_equal(root_verify(f, other.token), TOKEND_VERIFY_VALID);
  list = root_list(f, OTHER_DOMAIN);
  assert_int_equal(list->n_tokens, 1);
  tokend_token_list_free(list);
  assert_int_equal(tokend_client_list_admins(f->client, OTHER_DOMAIN, &admins),
                   0);
  assert_int_equal(admins->n_admins, 0);
  tokend_admin_list_free(admins);

  expect_refusal_audited(f, VERIFIER_UID, pid, "Issue");
  expect_refusal_audited(f, VERIFIER_UID, pid, "List");
  expect_refusal_audited(f, VERIFIER_UID, pid, "Revoke");
  expect_refusal_audited(f, VERIFIER_UID, pid, "ListDomainAdmins");
  expect_refusal_audited(f, VERIFIER_UID, pid, "GrantDomainAdmin");
  tokend_client_wipe(&other);
}

static void test_revoke_admin_revokes_only_their_tokens(void **state) {
  th_fixture_t *f = *state;
  tokend_token_list_t *list;
  tokend_admin_list_t *admins;
  tokend_issued_t by_alice;
  const tokend_token_info_t *info;
  op_result_t res[5], after[1];
  uint32_t revoked = 99;
  size_t i;

  root_grant(f, DOMAIN, VERIFIER_USER);
  root_grant(f, OTHER_DOMAIN, VERIFIER_USER);
  root_grant(f, DOMAIN, ALICE);
  {
    const op_t ops[] = {
        {OP_ISSUE, DOMAIN, "first", 0},
        {OP_ISSUE, DOMAIN, "second", 0},
        {OP_ISSUE, DOMAIN, "revoked by its owner", 0},
        {OP_REVOKE, DOMAIN, NULL, 3},
        {OP_ISSUE, OTHER_DOMAIN, "elsewhere", 0},
    };

    run_ops(f, VERIFIER_UID, ops, 5, res);
  }
  for (i = 0; i < 5; i++)
    expect_ok(&res[i], "admin's calls before removal");
  assert_int_equal(tokend_client_set_actor(f->client, ALICE), 0);
  root_issue(f, DOMAIN, "alice's", &by_alice);
  assert_int_equal(tokend_client_set_actor(f->client, NULL), 0);

  assert_int_equal(
      tokend_client_revoke_admin(f->client, DOMAIN, VERIFIER_USER, 1, &revoked),
      0);
  /* The two that were still active; the one its owner revoked was not
   * revoked again. */
  assert_int_equal(revoked, 2);
  assert_int_equal(root_verify(f, res[0].issued.token), TOKEND_VERIFY_REVOKED);
  assert_int_equal(root_verify(f, res[1].issued.token), TOKEND_VERIFY_REVOKED);
  assert_int_equal(root_verify(f, res[2].issued.token), TOKEND_VERIFY_REVOKED);
  /* Another admin's tokens, and the user's tokens elsewhere, stay valid. */
  assert_int_equal(root_verify(f, by_alice.token), TOKEND_VERIFY_VALID);
  assert_int_equal(root_verify(f, res[4].issued.token), TOKEND_VERIFY_VALID);

  list = root_list(f, DOMAIN);
  info = find_token(list, res[2].issued.info.id);
  assert_non_null(info);
  /* The first revocation stands. */
  assert_string_equal(info->revoked_by, VERIFIER_USER);
  info = find_token(list, by_alice.info.id);
  assert_non_null(info);
  assert_string_equal(info->created_by, ALICE);
  assert_int_equal(info->status, TOKEND_TOKEN_ACTIVE);
  tokend_token_list_free(list);

  assert_int_equal(tokend_client_list_admins(f->client, DOMAIN, &admins), 0);
  assert_int_equal(admins->n_admins, 1);
  assert_string_equal(admins->admins[0].user, ALICE);
  tokend_admin_list_free(admins);

  /* No longer an admin; removing again is NOT_FOUND. */
  {
    const op_t ops[] = {{OP_ISSUE, DOMAIN, "after removal", 0}};

    run_ops(f, VERIFIER_UID, ops, 1, after);
  }
  expect_denied(&after[0], "removed admin: Issue");
  assert_int_equal(
      tokend_client_revoke_admin(f->client, DOMAIN, VERIFIER_USER, 1, &revoked),
      TOKEND_ENOTFOUND);
  for (i = 0; i < 5; i++)
    tokend_client_wipe(&res[i].issued);
  tokend_client_wipe(&by_alice);
}

static void test_revoke_admin_without_tokens_keeps_them(void **state) {
  th_fixture_t *f = *state;
  op_result_t res[1];
  uint32_t revoked = 99;
  const op_t ops[] = {{OP_ISSUE, DOMAIN, "kept", 0}};

  root_grant(f, DOMAIN, VERIFIER_USER);
  run_ops(f, VERIFIER_UID, ops, 1, res);
  expect_ok(&res[0], "admin: Issue");
  assert_int_equal(
      tokend_client_revoke_admin(f->client, DOMAIN, VERIFIER_USER, 0, &revoked),
      0);
  assert_int_equal(revoked, 0);
  assert_int_equal(root_verify(f, res[0].issued.token), TOKEND_VERIFY_VALID);
  tokend_client_wipe(&res[0].issued);
}

static void test_operator_acts_for_admins_or_as_break_glass(void **state) {
  th_fixture_t *f = *state;
  tokend_token_list_t *list = NULL;
  tokend_audit_event_t *ev, match;
  tokend_issue_params_t params;
  tokend_issued_t issued, glass;
  int64_t revoked_at = 0;
  size_t n;
  int rc;

  root_grant(f, DOMAIN, ALICE);
  memset(&params, 0, sizeof(params));
  params.domain = DOMAIN;
  params.label = "for bob";

  /* For a user who is not an admin: refused, nothing created. */
  assert_int_equal(tokend_client_set_actor(f->client, BOB), 0);
  rc = tokend_client_issue(f->client, &params, &issued);
  assert_int_equal(rc, TOKEND_EPERM);
  assert_int_equal(tokend_client_grpc_status(f->client),
                   TOKEND_GRPC_PERMISSION_DENIED);
  assert_int_equal(tokend_client_list(f->client, DOMAIN, 0, NULL, 1, &list),
                   TOKEND_EPERM);
  assert_null(list);

  /* For an admin: allowed, and recorded as theirs. */
  assert_int_equal(tokend_client_set_actor(f->client, ALICE), 0);
  params.label = "for alice";
  assert_int_equal(tokend_client_issue(f->client, &params, &issued), 0);
  assert_string_equal(issued.info.created_by, ALICE);
  assert_int_equal(tokend_client_list(f->client, DOMAIN, 0, NULL, 1, &list), 0);
  assert_int_equal(list->n_tokens, 1);
  tokend_token_list_free(list);
  assert_int_equal(tokend_client_revoke(f->client, DOMAIN, issued.info.id,
                                        &revoked_at, NULL),
                   0);

  /* With no actor: break-glass, allowed and audited as such. */
  assert_int_equal(tokend_client_set_actor(f->client, ""), 0);
  params.label = "break glass";
  assert_int_equal(tokend_client_issue(f->client, &params, &glass), 0);

  list = root_list(f, DOMAIN);
  assert_int_equal(list->n_tokens, 2); /* bob's was never created */
  assert_non_null(find_token(list, issued.info.id));
  assert_string_equal(find_token(list, issued.info.id)->revoked_by, ALICE);
  tokend_token_list_free(list);

  ev = root_audit(f, DOMAIN, 0, &n);
  if (count_events(ev, n, 0, getpid(), "Issue", TOKEND_GRPC_OK, glass.info.id,
                   &match) != 1) {
    dump_events(ev, n);
    fail_msg("no single audit row for the break-glass Issue");
  }
  assert_true(match.break_glass);
  assert_string_equal(match.actor, "");
  assert_string_equal(match.domain, DOMAIN);
  assert_int_equal(count_events(ev, n, 0, getpid(), "Issue", TOKEND_GRPC_OK,
                                issued.info.id, &match),
                   1);
  assert_false(match.break_glass);
  assert_string_equal(match.actor, ALICE);
  assert_int_equal(count_events(ev, n, 0, getpid(), "Revoke", TOKEND_GRPC_OK,
                                issued.info.id, &match),
                   1);
  assert_string_equal(match.actor, ALICE);
  /* The refusals, with the actor the operator named. */
  assert_true(count_events(ev, n, 0, getpid(), "Issue",
                           TOKEND_GRPC_PERMISSION_DENIED, NULL, &match) >= 1);
  assert_string_equal(match.actor, BOB);
  assert_false(match.break_glass);
  assert_true(count_events(ev, n, 0, getpid(), "List",
                           TOKEND_GRPC_PERMISSION_DENIED, NULL, NULL) >= 1);
  free(ev);
  tokend_client_wipe(&issued);
  tokend_client_wipe(&glass);
}

static void test_non_operator_cannot_name_an_actor(void **state) {
  th_fixture_t *f = *state;
  tokend_token_list_t *list;
  tokend_audit_event_t *ev;
  op_result_t res[6];
  size_t i, n;
  pid_t pid;
  /* Claims to be alice, an admin; then claims to be itself. */
  const op_t ops[] = {
      {OP_SET_ACTOR, NULL, ALICE, 0},
      {OP_ISSUE, DOMAIN, "forged", 0},
      {OP_LIST, DOMAIN, NULL, 0},
      {OP_WHOAMI, NULL, NULL, 0},
      {OP_SET_ACTOR, NULL, VERIFIER_USER, 0},
      {OP_ISSUE, DOMAIN, "forged as itself", 0},
  };

  root_grant(f, DOMAIN, ALICE);
  root_grant(f, DOMAIN, VERIFIER_USER);
  pid = run_ops(f, VERIFIER_UID, ops, 6, res);
  expect_ok(&res[0], "set_actor is local");
  expect_denied(&res[1], "non-operator with actor: Issue");
  expect_denied(&res[2], "non-operator with actor: List");
  /* WhoAmI answers anyone, but must not take the claim for the truth. */
  if (res[3].rc == 0)
    assert_string_equal(res[3].who.user, VERIFIER_USER);
  else
    expect_denied(&res[3], "non-operator with actor: WhoAmI");
  expect_ok(&res[4], "set_actor is local");
  expect_denied(&res[5], "non-operator naming itself as actor: Issue");

  list = root_list(f, DOMAIN);
  for (i = 0; i < list->n_tokens; i++)
    fail_msg("a forged call created token %s", list->tokens[i].id);
  tokend_token_list_free(list);
  expect_refusal_audited(f, VERIFIER_UID, pid, "Issue");
  expect_refusal_audited(f, VERIFIER_UID, pid, "List");

  /* The forgery is on the domain's record, where its admins look. */
  ev = root_audit(f, DOMAIN, 0, &n);
  if (count_events(ev, n, VERIFIER_UID, pid, "Issue",
                   TOKEND_GRPC_PERMISSION_DENIED, NULL, NULL) != 2 ||
      count_events(ev, n, VERIFIER_UID, pid, "List",
                   TOKEND_GRPC_PERMISSION_DENIED, NULL, NULL) != 1) {
    dump_events(ev, n);
    fail_msg("the refused calls with a forged actor are not in domain %s's "
             "audit log",
             DOMAIN);
  }
  free(ev);
}

static void test_audit_readable_by_domain_admins_only(void **state) {
  th_fixture_t *f = *state;
  tokend_audit_event_t *ev, *later;
  tokend_issued_t t;
  op_result_t res[4], nob[1];
  size_t n, n_later, i;
  pid_t pid;

  root_grant(f, DOMAIN, VERIFIER_USER);
  root_issue(f, OTHER_DOMAIN, "someone else's", &t);
  {
    const op_t ops[] = {
        {OP_ISSUE, DOMAIN, "audited", 0},
        {OP_LIST_AUDIT, DOMAIN, NULL, 0},
        {OP_LIST_AUDIT, OTHER_DOMAIN, NULL, 0},
        {OP_LIST_AUDIT, "", NULL, 0},
    };

    pid = run_ops(f, VERIFIER_UID, ops, 4, res);
  }
  expect_ok(&res[0], "admin: Issue");
  expect_ok(&res[1], "admin: ListAuditEvents of its domain");
  assert_true(res[1].count >= 1);
  /* Newest first: its own Issue is the newest event of the domain. */
  assert_string_equal(res[1].event.method, "Issue");
  assert_string_equal(res[1].event.token_id, res[0].issued.info.id);
  assert_int_equal(res[1].event.peer_uid, VERIFIER_UID);
  assert_int_equal(res[1].event.peer_pid, pid);
  assert_string_equal(res[1].event.actor, VERIFIER_USER);
  assert_int_equal(res[1].event.code, TOKEND_GRPC_OK);
  if (res[1].domains_seen[0] != '\0')
    fail_msg("an admin of %s was shown events of %s", DOMAIN,
             res[1].domains_seen);
  expect_denied(&res[2], "admin: ListAuditEvents of another domain");
  expect_denied(&res[3], "admin: ListAuditEvents of every domain");
  {
    const op_t ops[] = {{OP_LIST_AUDIT, DOMAIN, NULL, 0}};

    run_ops(f, NOBODY_UID, ops, 1, nob);
  }
  expect_denied(&nob[0], "non-admin: ListAuditEvents");
  expect_refusal_audited(f, VERIFIER_UID, pid, "ListAuditEvents");
  expect_refusal_audited(f, NOBODY_UID, -1, "ListAuditEvents");

  /* Operators see every domain, in pages, newest first, each event once. */
  ev = root_audit(f, "", 0, &n);
  assert_true(n >= 6);
  for (i = 1; i < n; i++) {
    assert_true(ev[i - 1].time >= ev[i].time);
    assert_true(ev[i - 1].id != ev[i].id);
  }
  assert_int_equal(count_events(ev, n, 0, getpid(), "Issue", TOKEND_GRPC_OK,
                                t.info.id, NULL),
                   1);
  /* since bounds it below. */
  later = root_audit(f, "", ev[0].time, &n_later);
  assert_true(n_later >= 1 && n_later < n);
  for (i = 0; i < n_later; i++)
    assert_true(later[i].time >= ev[0].time);
  free(later);
  later = root_audit(f, "", th_now_ms() + 3600 * 1000, &n_later);
  assert_int_equal(n_later, 0);
  free(later);
  free(ev);
  tokend_client_wipe(&res[0].issued);
  tokend_client_wipe(&t);
}

static void test_every_refusal_is_audited_with_code_7(void **state) {
  th_fixture_t *f = *state;
  tokend_audit_event_t *ev;
  op_result_t res[5];
  size_t n, i, refusals = 0;
  pid_t pid;
  const op_t ops[] = {
      {OP_ISSUE, DOMAIN, "no", 0},
      {OP_LIST, DOMAIN, NULL, 0},
      {OP_REVOKE, DOMAIN, "tok_00000000000000000000", 0},
      {OP_GRANT, DOMAIN, "uid:65534", 0},
      {OP_REVOKE_ADMIN, DOMAIN, "uid:65534", 0},
  };

  pid = run_ops(f, NOBODY_UID, ops, 5, res);
  for (i = 0; i < 5; i++)
    expect_denied(&res[i], "nobody");
  ev = root_audit(f, "", 0, &n);
  for (i = 0; i < n; i++) {
    if (ev[i].peer_uid != NOBODY_UID)
      continue;
    assert_int_equal(ev[i].code, TOKEND_GRPC_PERMISSION_DENIED);
    assert_int_equal(ev[i].peer_pid, pid);
    assert_false(ev[i].break_glass);
    assert_string_equal(ev[i].domain, DOMAIN);
    assert_true(ev[i].detail[0] != '\0');
    refusals++;
  }
  if (refusals != 5) {
    dump_events(ev, n);
    fail_msg("%zu audited refusals by uid %d, want 5", refusals, NOBODY_UID);
  }
  assert_int_equal(count_events(ev, n, NOBODY_UID, pid, "Issue", 7, NULL, NULL),
                   1);
  assert_int_equal(count_events(ev, n, NOBODY_UID, pid, "List", 7, NULL, NULL),
                   1);
  assert_int_equal(
      count_events(ev, n, NOBODY_UID, pid, "Revoke", 7, NULL, NULL), 1);
  assert_int_equal(
      count_events(ev, n, NOBODY_UID, pid, "GrantDomainAdmin", 7, NULL, NULL),
      1);
  assert_int_equal(
      count_events(ev, n, NOBODY_UID, pid, "RevokeDomainAdmin", 7, NULL, NULL),
      1);
  free(ev);
}

static void test_audit_detail_is_whole_utf8(void **state) {
  th_fixture_t *f = *state;
  /* 100 four-byte characters: the longest label, 400 bytes, more than an
   * event's detail holds. */
  char label[100 * 4 + 1];
  tokend_audit_event_t *ev, match;
  tokend_issued_t t;
  json_t *s;
  size_t n, i;

  for (i = 0; i < 100; i++)
    memcpy(label + 4 * i, "\xF0\x9F\x98\x80", 4); /* U+1F600 */
  label[400] = '\0';
  root_issue(f, DOMAIN, label, &t);
  ev = root_audit(f, DOMAIN, 0, &n);
  assert_int_equal(count_events(ev, n, 0, getpid(), "Issue", TOKEND_GRPC_OK,
                                t.info.id, &match),
                   1);
  free(ev);
  /* proto3 strings must be UTF-8 (other languages' gRPC stacks refuse the
   * message otherwise): a detail cut short must be cut between
   * characters. jansson checks. */
  s = json_string(match.detail);
  if (s == NULL)
    fail_msg("audit detail of %zu bytes is not valid UTF-8 (cut inside a "
             "character?)",
             strlen(match.detail));
  json_decref(s);
  tokend_client_wipe(&t);
}

static void test_socket_mode_and_group_as_configured(void **state) {
  static const char *const group_args[] = {"--socket-mode", "0660",
                                           "--socket-group", "65534", NULL};
  th_fixture_t *f = *state;
  const op_t ops[] = {{OP_WHOAMI, NULL, NULL, 0}};
  op_result_t res[1];
  th_tokend_t t;
  struct stat st;
  int rc;

  /* The fixture's: 0666, group nogroup; the files stay private. */
  assert_int_equal(stat(f->tokend.socket_path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0666);
  assert_int_equal(st.st_gid, NOGROUP_GID);
  assert_int_equal(stat(f->tokend.db_path, &st), 0);
  assert_int_equal(st.st_mode & 077, 0);
  assert_int_equal(stat(f->tokend.pepper_path, &st), 0);
  assert_int_equal(st.st_mode & 077, 0);

  /* 0660 and a group: members get in, others do not. */
  assert_int_equal(start_tokend(&t, group_args), 0);
  assert_int_equal(stat(t.socket_path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0660);
  assert_int_equal(st.st_gid, NOGROUP_GID);
  rc = run_as(t.socket_path, VERIFIER_UID, NOGROUP_GID, ops, 1, res, NULL);
  assert_int_equal(rc, 0);
  expect_ok(&res[0], "group member: WhoAmI");
  assert_int_equal(res[0].who.gid, NOGROUP_GID);
  rc = run_as(t.socket_path, VERIFIER_UID, VERIFIER_UID, ops, 1, res, NULL);
  assert_int_equal(rc, TOKEND_ECONNECT);
  assert_int_equal(th_tokend_stop(&t), 0);
  th_tokend_destroy(&t);

  /* The default, 0600: only tokend's own user. */
  assert_int_equal(start_tokend(&t, NULL), 0);
  assert_int_equal(stat(t.socket_path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  rc = run_as(t.socket_path, VERIFIER_UID, VERIFIER_UID, ops, 1, res, NULL);
  assert_int_equal(rc, TOKEND_ECONNECT);
  assert_int_equal(th_tokend_stop(&t), 0);
  th_tokend_destroy(&t);
}

/* ---- tokenctl ---- */

static json_t *parse_json(const th_run_result_t *r, const char *what) {
  json_error_t jerr;
  json_t *root = json_loads(r->out, 0, &jerr);

  if (root == NULL)
    fail_msg("%s: not one JSON value (%s):\n%s", what, jerr.text, r->out);
  return root;
}

/* Runs tokenctl as uid (gid the same) with stdout and stderr in files of
 * the test directory; r as th_run's. */
static void ctl_as(const th_fixture_t *f, uid_t uid, th_run_result_t *r,
                   const char *a1, const char *a2, const char *a3,
                   const char *a4, const char *a5) {
  const char *argv[] = {NULL, "--socket", f->tokend.socket_path, a1, a2, a3, a4,
                        a5,   NULL};
  const char *ld_env = NULL;
  char out_path[TH_PATH_BYTES], err_path[TH_PATH_BYTES];
  int out_fd, err_fd, wstatus;
  pid_t pid;

  /* The build tree may be out of uid's reach (a clone under /root). */
  if (th_tokenctl_for_other_uids(&argv[0], &ld_env) != 0) {
    fprintf(stderr, "skipped: no copy of tokenctl that uid %u can run\n",
            (unsigned)uid);
    skip();
  }
  snprintf(out_path, sizeof(out_path), "%s/ctl.out", f->tokend.dir);
  snprintf(err_path, sizeof(err_path), "%s/ctl.err", f->tokend.dir);
  out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(out_fd >= 0 && err_fd >= 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (dup2(out_fd, STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0 ||
        drop_privileges(uid, (gid_t)uid) != 0 || putenv((char *)ld_env) != 0)
      _exit(126);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(out_fd);
  close(err_fd);
  while (waitpid(pid, &wstatus, 0) < 0)
    assert_int_equal(errno, EINTR);
  memset(r, 0, sizeof(*r));
  r->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  r->out = th_read_file(out_path, &r->out_len);
  r->err = th_read_file(err_path, &r->err_len);
  assert_non_null(r->out);
  assert_non_null(r->err);
}

static void test_tokenctl_admins_grant_list_revoke(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  json_t *root, *admins, *tokens;
  const char *user;
  size_t i;
  int seen_verifier = 0, seen_nobody = 0;

  /* A uid number and a local user name both become "uid:<n>". */
  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              "--user", "12345", NULL);
  th_expect_exit(&r, 0, "admins grant --user 12345");
  assert_non_null(strstr(r.out, VERIFIER_USER));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              "--user", "nobody", NULL);
  th_expect_exit(&r, 0, "admins grant --user nobody");
  assert_non_null(strstr(r.out, "uid:65534 (local user nobody)"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              "--user", "12345", NULL);
  th_expect_exit(&r, 0, "second admins grant");
  assert_non_null(strstr(r.out, "already"));
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "admins", "list", "--domain", DOMAIN,
              "--json", NULL);
  th_expect_exit(&r, 0, "admins list --json");
  root = parse_json(&r, "admins list --json");
  admins = json_object_get(root, "admins");
  assert_true(json_is_array(admins));
  assert_int_equal(json_array_size(admins), 2);
  for (i = 0; i < json_array_size(admins); i++) {
    user =
        json_string_value(json_object_get(json_array_get(admins, i), "user"));
    assert_non_null(user);
    seen_verifier |= strcmp(user, VERIFIER_USER) == 0;
    seen_nobody |= strcmp(user, "uid:65534") == 0;
    assert_true(json_is_integer(
        json_object_get(json_array_get(admins, i), "granted_at")));
  }
  assert_true(seen_verifier && seen_nobody);
  json_decref(root);
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "admins", "list", "--domain", DOMAIN, NULL);
  th_expect_exit(&r, 0, "admins list");
  assert_non_null(strstr(r.out, "USER"));
  assert_non_null(strstr(r.out, "GRANTED BY"));
  assert_non_null(strstr(r.out, "uid:65534 (nobody)"));
  th_run_result_free(&r);

  /* An operator issues for an admin; list shows who. */
  th_tokenctl(&f->tokend, NULL, &r, "--actor", "12345", "issue", "--domain",
              DOMAIN, "--label", "for 12345", NULL);
  th_expect_exit(&r, 0, "--actor 12345 issue");
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "list", "--domain", DOMAIN, "--json",
              "--actor", "12345", NULL);
  th_expect_exit(&r, 0, "list --json --actor 12345");
  root = parse_json(&r, "list --json");
  tokens = json_object_get(root, "tokens");
  assert_int_equal(json_array_size(tokens), 1);
  assert_string_equal(json_string_value(json_object_get(
                          json_array_get(tokens, 0), "created_by")),
                      VERIFIER_USER);
  assert_true(
      json_is_null(json_object_get(json_array_get(tokens, 0), "revoked_by")));
  json_decref(root);
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "admins", "revoke", "--domain", DOMAIN,
              "--user", "12345", "--revoke-tokens", "--json", NULL);
  th_expect_exit(&r, 0, "admins revoke --revoke-tokens");
  root = parse_json(&r, "admins revoke --json");
  assert_int_equal(json_integer_value(json_object_get(root, "tokens_revoked")),
                   1);
  json_decref(root);
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "list", "--domain", DOMAIN, "--all", NULL);
  th_expect_exit(&r, 0, "list --all");
  assert_non_null(strstr(r.out, "CREATED BY"));
  assert_non_null(strstr(r.out, "REVOKED BY"));
  assert_non_null(strstr(r.out, VERIFIER_USER));
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "admins", "revoke", "--domain", DOMAIN,
              "--user", "12345", NULL);
  th_expect_exit(&r, 2, "admins revoke of a non-admin");
  assert_non_null(strstr(r.err, "NOT_FOUND"));
  assert_non_null(strstr(r.err, "admins list"));
  th_run_result_free(&r);

  /* Usage errors. */
  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              NULL);
  th_expect_exit(&r, 2, "admins grant without --user");
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "frobnicate", NULL);
  th_expect_exit(&r, 2, "admins frobnicate");
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              "--user", "99999999999", NULL);
  th_expect_exit(&r, 2, "admins grant of a uid out of range");
  th_run_result_free(&r);
}

/* The number of domain's admins, as ListDomainAdmins tells the operator. */
static size_t admin_count(const th_fixture_t *f, const char *domain) {
  tokend_admin_list_t *admins = NULL;
  size_t n;

  assert_int_equal(tokend_client_list_admins(f->client, domain, &admins), 0);
  n = admins->n_admins;
  tokend_admin_list_free(admins);
  return n;
}

/* A --user or --actor that is neither a uid, a local user nor written as
 * an identity (with @, or --identity) is refused before anything is sent:
 * a typo of a local user is never granted as a platform identity. Every
 * answer says which form was used. */
static void test_tokenctl_user_forms_explicit(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  json_t *root;

  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              "--user", "ux-alce", NULL);
  th_expect_exit(&r, 2, "admins grant --user ux-alce (no such local user)");
  assert_non_null(strstr(r.err, "no local user ux-alce; write a platform "
                                "identity with @, or pass --identity"));
  th_run_result_free(&r);
  assert_int_equal(admin_count(f, DOMAIN), 0);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "revoke", "--domain", DOMAIN,
              "--user", "ux-alce", NULL);
  th_expect_exit(&r, 2, "admins revoke --user ux-alce");
  assert_non_null(strstr(r.err, "no local user ux-alce"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "--actor", "ux-alce", "list", "--domain",
              DOMAIN, NULL);
  th_expect_exit(&r, 2, "--actor ux-alce list");
  assert_non_null(strstr(r.err, "no local user ux-alce"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "issue", "--actor", "ux-alce", "--domain",
              DOMAIN, "--label", "x", NULL);
  th_expect_exit(&r, 2, "issue --actor ux-alce");
  assert_non_null(strstr(r.err, "no local user ux-alce"));
  th_run_result_free(&r);

  /* Each form, and the answer naming it. */
  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              "--user", "ux-alce", "--identity", NULL);
  th_expect_exit(&r, 0, "admins grant --user ux-alce --identity");
  assert_non_null(strstr(r.out, "granted ux-alce (platform identity)"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              "--user", BOB, NULL);
  th_expect_exit(&r, 0, "admins grant --user " BOB);
  assert_non_null(strstr(r.out, "granted " BOB " (platform identity)"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              "--user", "nobody", NULL);
  th_expect_exit(&r, 0, "admins grant --user nobody");
  assert_non_null(strstr(r.out, "granted uid:65534 (local user nobody)"));
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              "--user", "uid:12345", "--json", NULL);
  th_expect_exit(&r, 0, "admins grant --user uid:12345 --json");
  root = parse_json(&r, "admins grant --json");
  assert_string_equal(json_string_value(json_object_get(root, "user")),
                      VERIFIER_USER);
  assert_string_equal(json_string_value(json_object_get(root, "user_form")),
                      "uid");
  json_decref(root);
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "admins", "revoke", "--domain", DOMAIN,
              "--user", "12345", NULL);
  th_expect_exit(&r, 0, "admins revoke --user 12345");
  assert_non_null(strstr(r.out, "removed uid:12345 (uid, no local user)"));
  th_run_result_free(&r);
  assert_int_equal(admin_count(f, DOMAIN), 3);
  /* --identity makes --actor an identity too. */
  th_tokenctl(&f->tokend, NULL, &r, "issue", "--actor", "ux-alce", "--identity",
              "--domain", DOMAIN, "--label", "x", NULL);
  th_expect_exit(&r, 0, "issue --actor ux-alce --identity");
  th_run_result_free(&r);
}

static void test_tokenctl_audit_and_whoami(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;
  json_t *root, *events, *ev;
  const char *method;
  size_t i;
  int seen_grant = 0, seen_issue = 0;

  th_tokenctl(&f->tokend, NULL, &r, "admins", "grant", "--domain", DOMAIN,
              "--user", ALICE, NULL);
  th_expect_exit(&r, 0, "admins grant");
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "issue", "--domain", DOMAIN, "--label",
              "glass", NULL);
  th_expect_exit(&r, 0, "break-glass issue");
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "audit", "--domain", DOMAIN, "--json",
              NULL);
  th_expect_exit(&r, 0, "audit --json");
  root = parse_json(&r, "audit --json");
  events = json_object_get(root, "events");
  assert_true(json_is_array(events));
  for (i = 0; i < json_array_size(events); i++) {
    ev = json_array_get(events, i);
    method = json_string_value(json_object_get(ev, "method"));

    assert_non_null(method);
    assert_int_equal(json_integer_value(json_object_get(ev, "peer_uid")), 0);
    if (strcmp(method, "GrantDomainAdmin") == 0)
      seen_grant = 1;
    if (strcmp(method, "Issue") == 0) {
      seen_issue = 1;
      assert_true(json_is_true(json_object_get(ev, "break_glass")));
      assert_string_equal(json_string_value(json_object_get(ev, "outcome")),
                          "OK");
    }
  }
  assert_true(seen_grant && seen_issue);
  json_decref(root);
  th_run_result_free(&r);

  /* Even an event whose detail ends in half a character prints as JSON. */
  th_tokenctl(
      &f->tokend, NULL, &r, "issue", "--domain", DOMAIN, "--label",
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80"
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80",
      NULL);
  th_expect_exit(&r, 0, "issue with a 68-emoji label");
  th_run_result_free(&r);
  th_tokenctl(&f->tokend, NULL, &r, "audit", "--domain", DOMAIN, "--json",
              NULL);
  th_expect_exit(&r, 0, "audit --json after a long label");
  json_decref(parse_json(&r, "audit --json after a long label"));
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "audit", "--since", "1h", NULL);
  th_expect_exit(&r, 0, "audit --since 1h");
  assert_non_null(strstr(r.out, "TIME"));
  assert_non_null(strstr(r.out, "PEER UID"));
  assert_non_null(strstr(r.out, "OUTCOME"));
  assert_non_null(strstr(r.out, "GrantDomainAdmin"));
  assert_non_null(strstr(r.out, "(break-glass)"));
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "audit", "--since", "4102444800000",
              "--json", NULL);
  th_expect_exit(&r, 0, "audit --since the future");
  root = parse_json(&r, "audit --since --json");
  assert_int_equal(json_array_size(json_object_get(root, "events")), 0);
  json_decref(root);
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "audit", "--since", "yesterday", NULL);
  th_expect_exit(&r, 2, "audit --since yesterday");
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "whoami", "--json", NULL);
  th_expect_exit(&r, 0, "whoami --json");
  root = parse_json(&r, "whoami --json");
  assert_int_equal(json_integer_value(json_object_get(root, "uid")), 0);
  assert_string_equal(json_string_value(json_object_get(root, "uid_name")),
                      "root");
  assert_string_equal(json_string_value(json_object_get(root, "user")),
                      "uid:0");
  assert_true(json_is_true(json_object_get(root, "operator")));
  assert_true(json_integer_value(json_object_get(root, "pid")) > 0);
  json_decref(root);
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "whoami", NULL);
  th_expect_exit(&r, 0, "whoami");
  assert_non_null(strstr(r.out, "uid:      0 (root)"));
  assert_non_null(strstr(r.out, "operator: yes"));
  th_run_result_free(&r);

  th_tokenctl(&f->tokend, NULL, &r, "--actor", ALICE, "whoami", NULL);
  th_expect_exit(&r, 0, "--actor whoami");
  assert_non_null(strstr(r.out, "user:     " ALICE));
  th_run_result_free(&r);
}

static void test_tokenctl_refusals_say_what_to_do(void **state) {
  th_fixture_t *f = *state;
  th_run_result_t r;

  ctl_as(f, VERIFIER_UID, &r, "issue", "--domain", DOMAIN, "--label", "x");
  th_expect_exit(&r, 2, "non-admin tokenctl issue");
  assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
  assert_non_null(strstr(r.err, "tokenctl admins grant --domain " DOMAIN
                                " --user " VERIFIER_USER));
  assert_int_equal(r.out_len, 0);
  th_run_result_free(&r);

  ctl_as(f, VERIFIER_UID, &r, "admins", "list", "--domain", DOMAIN, NULL);
  th_expect_exit(&r, 2, "non-operator admins list");
  assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
  assert_non_null(strstr(r.err, "operator"));
  th_run_result_free(&r);

  ctl_as(f, VERIFIER_UID, &r, "audit", NULL, NULL, NULL, NULL);
  th_expect_exit(&r, 2, "non-operator audit of every domain");
  assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
  assert_non_null(strstr(r.err, "--domain"));
  th_run_result_free(&r);

  ctl_as(f, VERIFIER_UID, &r, "whoami", NULL, NULL, NULL, NULL);
  th_expect_exit(&r, 0, "non-operator whoami");
  assert_non_null(strstr(r.out, "uid:      12345\n"));
  assert_non_null(strstr(r.out, "operator: no"));
  assert_non_null(strstr(r.out, "verifier: yes"));
  th_run_result_free(&r);
}

/* ---- token secrets pasted into other fields (issue 11, item 10) ---- */

#define TOKEN_REFUSAL "this looks like a token secret; it was not recorded"

/* Sends req (as the operator, on a raw connection) and expects
 * INVALID_ARGUMENT saying the field held a token. */
static void expect_token_refused(const th_fixture_t *f,
                                 Tokend__V1__Request *req, const char *what) {
  Tokend__V1__Response *r = NULL;
  int fd = th_connect(f->tokend.socket_path), rc;

  assert_true(fd >= 0);
  req->call_id = 77;
  assert_int_equal(th_send_request(fd, req), 0);
  rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);
  if (rc != 0)
    fail_msg("%s: no answer (%s)", what, th_recv_name(rc));
  if (th_response_code(r) != TOKEND_GRPC_INVALID_ARGUMENT ||
      strstr(r->status->message, TOKEN_REFUSAL) == NULL)
    fail_msg("%s: answered %d '%s', want INVALID_ARGUMENT '%s'", what,
             th_response_code(r), r->status != NULL ? r->status->message : "",
             TOKEN_REFUSAL);
  tokend__v1__response__free_unpacked(r, NULL);
  close(fd);
}

static void expect_secret_absent(const char *path, const char *token) {
  if (th_file_contains(path, token, strlen(token)))
    fail_msg("the token secret is in %s", path);
  /* Its body alone neither (the prefix is common to every token). */
  if (th_file_contains(path, strchr(token, '_') + 1, strlen(token) - 4))
    fail_msg("the token secret's body is in %s", path);
}

/* A token in any field but Verify's token (and in a longer value, such as
 * "<token>@x") is refused INVALID_ARGUMENT, and is nowhere in the log, the
 * database or its WAL: not even for a non-admin's refused call. */
static void test_token_in_any_field_refused_not_recorded(void **state) {
  th_fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest issue = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__RevokeRequest revoke = TOKEND__V1__REVOKE_REQUEST__INIT;
  Tokend__V1__ListRequest list = TOKEND__V1__LIST_REQUEST__INIT;
  Tokend__V1__GrantDomainAdminRequest grant =
      TOKEND__V1__GRANT_DOMAIN_ADMIN_REQUEST__INIT;
  Tokend__V1__RevokeDomainAdminRequest rvk =
      TOKEND__V1__REVOKE_DOMAIN_ADMIN_REQUEST__INIT;
  Tokend__V1__ListDomainAdminsRequest la =
      TOKEND__V1__LIST_DOMAIN_ADMINS_REQUEST__INIT;
  Tokend__V1__ListAuditEventsRequest audit =
      TOKEND__V1__LIST_AUDIT_EVENTS_REQUEST__INIT;
  Tokend__V1__WhoAmIRequest who = TOKEND__V1__WHO_AM_IREQUEST__INIT;
  tokend_issued_t is;
  char tok[TOKEND_TOKEN_BYTES], at[TOKEND_TOKEN_BYTES + 16];
  char dotted[TOKEND_TOKEN_BYTES + 16], wal[TH_PATH_BYTES + 8];
  char *scopes[2] = {"read", NULL};
  op_result_t res[3];
  const op_t ops[] = {{OP_LIST, tok, NULL, 0},
                      {OP_SET_ACTOR, NULL, at, 0},
                      {OP_WHOAMI, NULL, NULL, 0}};

  th_client_issue_ok(f->client, DOMAIN, "real", 0, &is);
  snprintf(tok, sizeof(tok), "%s", is.token);
  tokend_client_wipe(&is);
  snprintf(at, sizeof(at), "%s@x", tok);
  snprintf(dotted, sizeof(dotted), "a.%s.b", tok);
  scopes[1] = tok;

  req.actor = at;
  req.method_case = TOKEND__V1__REQUEST__METHOD_WHO_AM_I;
  req.who_am_i = &who;
  expect_token_refused(f, &req, "actor <token>@x");
  req.actor = tok;
  expect_token_refused(f, &req, "actor");
  req.actor = "";

  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &issue;
  issue.domain = tok;
  issue.label = "l";
  expect_token_refused(f, &req, "issue domain");
  issue.domain = dotted;
  expect_token_refused(f, &req, "issue domain a.<token>.b");
  issue.domain = DOMAIN;
  issue.label = at;
  expect_token_refused(f, &req, "issue label");
  issue.label = "l";
  issue.scopes = scopes;
  issue.n_scopes = 2;
  expect_token_refused(f, &req, "issue scope");

  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE;
  req.revoke = &revoke;
  revoke.domain = tok;
  revoke.token_id = "tok_x";
  expect_token_refused(f, &req, "revoke domain");
  revoke.domain = DOMAIN;
  revoke.token_id = tok;
  expect_token_refused(f, &req, "revoke token_id");

  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST;
  req.list = &list;
  list.domain = tok;
  expect_token_refused(f, &req, "list domain");
  list.domain = DOMAIN;
  list.page_token = tok;
  expect_token_refused(f, &req, "list page_token");

  req.method_case = TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN;
  req.grant_domain_admin = &grant;
  grant.domain = tok;
  grant.user = ALICE;
  expect_token_refused(f, &req, "grant domain");
  grant.domain = DOMAIN;
  grant.user = at;
  expect_token_refused(f, &req, "grant user");

  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN;
  req.revoke_domain_admin = &rvk;
  rvk.domain = tok;
  rvk.user = ALICE;
  expect_token_refused(f, &req, "revoke admin domain");
  rvk.domain = DOMAIN;
  rvk.user = tok;
  expect_token_refused(f, &req, "revoke admin user");

  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS;
  req.list_domain_admins = &la;
  la.domain = tok;
  expect_token_refused(f, &req, "list admins domain");

  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS;
  req.list_audit_events = &audit;
  audit.domain = tok;
  expect_token_refused(f, &req, "list audit domain");
  audit.domain = DOMAIN;
  audit.page_token = tok;
  expect_token_refused(f, &req, "list audit page_token");

  /* A non-admin, non-operator peer: `tokenctl list --domain "$TOKEN"`, and
   * an actor it may not name anyway. */
  run_ops(f, NOBODY_UID, ops, 3, res);
  assert_int_equal(res[0].grpc, TOKEND_GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(res[0].errmsg, TOKEN_REFUSAL));
  assert_int_equal(res[2].grpc, TOKEND_GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(res[2].errmsg, TOKEN_REFUSAL));

  /* The token still works: nothing above touched it. */
  th_expect_verify(f->client, tok, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(f->client);
  f->client = NULL;
  th_tokend_stop_ok(&f->tokend);
  snprintf(wal, sizeof(wal), "%s-wal", f->tokend.db_path);
  expect_secret_absent(f->tokend.log_path, tok);
  expect_secret_absent(f->tokend.db_path, tok);
  expect_secret_absent(wal, tok);
  explicit_bzero(tok, sizeof(tok));
  explicit_bzero(at, sizeof(at));
  explicit_bzero(dotted, sizeof(dotted));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_verifier_only_peer_may_verify_and_nothing_else, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_peer_not_in_verifier_list_cannot_verify, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_whoami_for_root_and_unprivileged_peers, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_admin_manages_own_domain_only, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_revoke_admin_revokes_only_their_tokens, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_revoke_admin_without_tokens_keeps_them, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_operator_acts_for_admins_or_as_break_glass, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_non_operator_cannot_name_an_actor,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_audit_readable_by_domain_admins_only,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_every_refusal_is_audited_with_code_7,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_audit_detail_is_whole_utf8, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_socket_mode_and_group_as_configured,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_tokenctl_admins_grant_list_revoke,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_tokenctl_audit_and_whoami, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_tokenctl_user_forms_explicit, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_tokenctl_refusals_say_what_to_do,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_token_in_any_field_refused_not_recorded, setup,
          th_fixture_teardown),
  };

  if (geteuid() != 0) {
    fprintf(stderr, "test_authz: skipped: only root can run peers of other "
                    "uids\n");
    return SKIP_NOT_ROOT;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
