/* Storage failing under a running tokend: a full disk (the database on a
 * small tmpfs, filled up), a file system gone read-only and a disk whose
 * fsync fails (both injected by the fault_inject LD_PRELOAD shim). In each,
 * the write that fails is answered UNAVAILABLE or INTERNAL with a message,
 * Verify and List keep being served, and once the fault clears tokend
 * writes again without a restart.
 *
 * Memory always agrees with what a restart finds on disk. A failed write
 * leaves nothing behind, except where an fsync failed after SQLite had
 * written the commit: a restart would find that write, so tokend reads it
 * back, applies it in memory too and says so in the error ("... it is in
 * effect"). The tests follow what tokend said. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tokend_client.h"

#ifndef FAULT_INJECT_LIB
#error "FAULT_INJECT_LIB must name the fault_inject shim"
#endif

#define DOMAIN "faults.example"
#define TMPFS_OPTIONS "size=2m,mode=0700"
/* Issues tried under a fault before giving up on seeing one fail. */
#define MAX_ISSUES_UNDER_FAULT 200
#define MAX_TOKENS (MAX_ISSUES_UNDER_FAULT + 16)

typedef struct fixture_s fixture_t;

struct fixture_s {
  th_tokend_t tokend;
  char data_dir[TH_DIR_BYTES + 8]; /* the database and pepper live here */
  int mounted;                     /* data_dir is our tmpfs */
  char mount_error[128];
  char filler[TH_PATH_BYTES];
  char ctl[TH_PATH_BYTES]; /* fault_inject's control file */
  char env_preload[TH_PATH_BYTES + 16];
  char env_dir[TH_PATH_BYTES + 32];
  char env_ctl[TH_PATH_BYTES + 32];
  const char *env[4];
  const char *fault_name; /* for messages */
  void (*fault_on)(fixture_t *f);
  void (*fault_off)(fixture_t *f);
  /* What tokend acknowledged. */
  char tokens[MAX_TOKENS][TOKEND_TOKEN_BYTES];
  char ids[MAX_TOKENS][TOKEND_TOKEN_ID_BYTES];
  int revoked[MAX_TOKENS];
  size_t n_orphans; /* failed Issues that tokend said are in effect */
  size_t n;
};

/* ---- the faults ---- */

static void disk_fill(fixture_t *f) {
  static char chunk[65536];
  size_t sizes[] = {sizeof(chunk), 4096, 512, 1};
  size_t i;
  int fd = open(f->filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

  assert_true(fd >= 0);
  memset(chunk, 0xf1, sizeof(chunk));
  /* Down to the last byte: ever smaller writes until each size fails. */
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
    while (write(fd, chunk, sizes[i]) == (ssize_t)sizes[i])
      ;
  assert_int_equal(errno, ENOSPC);
  close(fd);
}

static void disk_free(fixture_t *f) { assert_int_equal(unlink(f->filler), 0); }

static void ctl_write(fixture_t *f, const char *what) {
  char tmp[TH_PATH_BYTES + 8];
  int fd;

  /* Renamed into place: the shim never reads half a word. */
  snprintf(tmp, sizeof(tmp), "%s.tmp", f->ctl);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, what, strlen(what)), (ssize_t)strlen(what));
  close(fd);
  assert_int_equal(rename(tmp, f->ctl), 0);
}

static void read_only_on(fixture_t *f) { ctl_write(f, "EROFS"); }
static void fsync_eio_on(fixture_t *f) { ctl_write(f, "EIO-SYNC"); }
static void fsync_stall_on(fixture_t *f) { ctl_write(f, "STALL-SYNC"); }
static void write_eio_on(fixture_t *f) { ctl_write(f, "EIO"); }
static void injected_off(fixture_t *f) { assert_int_equal(unlink(f->ctl), 0); }

/* ---- fixtures ---- */

static int setup_common(void **state, fixture_t **out) {
  fixture_t *f = calloc(1, sizeof(*f));

  if (f == NULL || th_tokend_init(&f->tokend) != 0) {
    free(f);
    return -1;
  }
  snprintf(f->data_dir, sizeof(f->data_dir), "%s/data", f->tokend.dir);
  if (mkdir(f->data_dir, 0700) != 0) {
    th_tokend_destroy(&f->tokend);
    free(f);
    return -1;
  }
  snprintf(f->tokend.db_path, sizeof(f->tokend.db_path), "%s/tokend.db",
           f->data_dir);
  snprintf(f->tokend.pepper_path, sizeof(f->tokend.pepper_path), "%s/pepper",
           f->data_dir);
  snprintf(f->filler, sizeof(f->filler), "%s/filler", f->data_dir);
  snprintf(f->ctl, sizeof(f->ctl), "%s/fault", f->tokend.dir);
  *state = f;
  *out = f;
  return 0;
}

static int setup_disk_full(void **state) {
  fixture_t *f;

  if (setup_common(state, &f) != 0)
    return -1;
  /* Needs root (or CAP_SYS_ADMIN); without, the test skips itself. */
  if (mount("tmpfs", f->data_dir, "tmpfs", 0, TMPFS_OPTIONS) == 0)
    f->mounted = 1;
  else
    snprintf(f->mount_error, sizeof(f->mount_error), "%s", strerror(errno));
  f->fault_name = "disk full";
  f->fault_on = disk_fill;
  f->fault_off = disk_free;
  return 0;
}

static int setup_injected(void **state, const char *name,
                          void (*on)(fixture_t *)) {
  fixture_t *f;

  if (setup_common(state, &f) != 0)
    return -1;
  snprintf(f->env_preload, sizeof(f->env_preload), "LD_PRELOAD=%s",
           FAULT_INJECT_LIB);
  snprintf(f->env_dir, sizeof(f->env_dir), "TOKEND_FAULT_DIR=%s", f->data_dir);
  snprintf(f->env_ctl, sizeof(f->env_ctl), "TOKEND_FAULT_CTL=%s", f->ctl);
  f->env[0] = f->env_preload;
  f->env[1] = f->env_dir;
  f->env[2] = f->env_ctl;
  f->env[3] = NULL;
  f->tokend.env = f->env;
  f->fault_name = name;
  f->fault_on = on;
  f->fault_off = injected_off;
  return 0;
}

static int setup_read_only(void **state) {
  return setup_injected(state, "read-only file system", read_only_on);
}

static int setup_fsync_eio(void **state) {
  return setup_injected(state, "fsync I/O error", fsync_eio_on);
}

static int setup_write_eio(void **state) {
  return setup_injected(state, "write I/O error", write_eio_on);
}

static int setup_fsync_stall(void **state) {
  return setup_injected(state, "stalled fsync", fsync_stall_on);
}

/* Always unmounts, whatever the test left running. */
static int teardown(void **state) {
  fixture_t *f = *state;

  if (f->tokend.pid != 0)
    th_tokend_kill(&f->tokend);
  if (f->mounted && umount2(f->data_dir, 0) != 0 &&
      umount2(f->data_dir, MNT_DETACH) != 0)
    fprintf(stderr, "cannot unmount %s: %s\n", f->data_dir, strerror(errno));
  th_tokend_destroy(&f->tokend);
  free(f);
  return 0;
}

/* ---- checks ---- */

static void start_ok(fixture_t *f) {
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
}

/* Did tokend say the write that just failed is in effect after all? */
static int in_effect(const tokend_client_t *c) {
  return strstr(tokend_client_errmsg(c), "it is in effect") != NULL;
}

/* Issues a token; 0 and recorded, or the client's error. */
static int issue(fixture_t *f, tokend_client_t *c) {
  tokend_issue_params_t p = {DOMAIN, "faults", 0, NULL, 0, NULL};
  tokend_issued_t is;
  int rc;

  assert_true(f->n < MAX_TOKENS);
  rc = tokend_client_issue(c, &p, &is);
  if (rc != 0 && in_effect(c))
    f->n_orphans++;
  if (rc == 0) {
    memcpy(f->tokens[f->n], is.token, sizeof(is.token));
    memcpy(f->ids[f->n], is.info.id, sizeof(is.info.id));
    f->revoked[f->n] = 0;
    f->n++;
  }
  tokend_client_wipe(&is);
  return rc;
}

static void issue_ok(fixture_t *f, tokend_client_t *c) {
  int rc = issue(f, c);

  if (rc != 0)
    fail_msg("issue: %s (%s)", tokend_err_name(rc), tokend_client_errmsg(c));
}

/* The call just failed as a storage failure must: UNAVAILABLE or INTERNAL,
 * with a message. */
static void expect_storage_failure(fixture_t *f, tokend_client_t *c, int rc,
                                   const char *call) {
  int grpc = tokend_client_grpc_status(c);
  const char *msg = tokend_client_errmsg(c);

  if (rc == 0)
    fail_msg("%s succeeded under '%s'", call, f->fault_name);
  if (grpc != TOKEND_GRPC_UNAVAILABLE && grpc != TOKEND_GRPC_INTERNAL)
    fail_msg("%s under '%s': gRPC status %d (%s), want UNAVAILABLE or "
             "INTERNAL",
             call, f->fault_name, grpc, msg);
  if (msg == NULL || msg[0] == '\0')
    fail_msg("%s under '%s': no message", call, f->fault_name);
  printf("%s under '%s': %d %s\n", call, f->fault_name, grpc, msg);
}

/* Every recorded token verifies as recorded. */
static void expect_tokens(const fixture_t *f, tokend_client_t *c,
                          const char *when) {
  tokend_verify_result_t v;
  size_t i;
  int rc;

  for (i = 0; i < f->n; i++) {
    rc = tokend_client_verify(c, f->tokens[i], &v);
    if (rc != 0)
      fail_msg("%s: verify %s: %s (%s)", when, f->ids[i], tokend_err_name(rc),
               tokend_client_errmsg(c));
    if (f->revoked[i] ? v.reason != TOKEND_VERIFY_REVOKED : !v.valid)
      fail_msg("%s: token %s verifies %s, want %s", when, f->ids[i],
               v.valid ? "VALID" : tokend_verify_reason_name(v.reason),
               f->revoked[i] ? "REVOKED" : "VALID");
  }
}

/* List (a read) answers, and holds exactly the acknowledged tokens. */
static void expect_listed(const fixture_t *f, tokend_client_t *c,
                          const char *when) {
  tokend_token_list_t *list = NULL;
  size_t i, j;
  int rc = tokend_client_list(c, DOMAIN, 1000, NULL, 1, &list);

  if (rc != 0)
    fail_msg("%s: list: %s (%s)", when, tokend_err_name(rc),
             tokend_client_errmsg(c));
  if (list->n_tokens != f->n + f->n_orphans)
    fail_msg("%s: %zu tokens listed, %zu were acknowledged (and %zu failed "
             "but are in effect)",
             when, list->n_tokens, f->n, f->n_orphans);
  for (i = 0; i < f->n; i++) {
    for (j = 0; j < list->n_tokens; j++)
      if (strcmp(list->tokens[j].id, f->ids[i]) == 0)
        break;
    if (j == list->n_tokens)
      fail_msg("%s: acknowledged token %s is not listed", when, f->ids[i]);
    if ((list->tokens[j].status == TOKEND_TOKEN_REVOKED) != f->revoked[i])
      fail_msg("%s: token %s is listed %s", when, f->ids[i],
               tokend_token_status_name(list->tokens[j].status));
  }
  tokend_token_list_free(list);
}

/* The disk holds what was acknowledged, nothing else: a sound database, in
 * which a restarted tokend finds every acknowledged token as recorded. */
static void expect_restart_agrees(fixture_t *f, const char *when) {
  tokend_client_t *c;

  assert_int_equal(th_db_integrity(f->tokend.db_path), 0);
  start_ok(f);
  c = th_client_connect_ok(&f->tokend);
  expect_tokens(f, c, when);
  expect_listed(f, c, when);
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);
}

/* The scenario every fault goes through. */
static void run_fault(fixture_t *f) {
  tokend_client_t *c;
  int64_t revoked_at = 0;
  int already = -1, rc, tries, revoke_in_effect;
  const size_t victim = 1; /* the token a Revoke under the fault targets */

  start_ok(f);
  c = th_client_connect_ok(&f->tokend);
  issue_ok(f, c);
  issue_ok(f, c);
  issue_ok(f, c);

  f->fault_on(f);
  /* Writes fail (a full disk may still take a few). */
  for (tries = 0; tries < MAX_ISSUES_UNDER_FAULT; tries++)
    if ((rc = issue(f, c)) != 0)
      break;
  if (tries == MAX_ISSUES_UNDER_FAULT)
    fail_msg("%d Issues all succeeded under '%s'", tries, f->fault_name);
  expect_storage_failure(f, c, rc, "Issue");
  /* Reads go on: Verify from memory, List from the database. */
  expect_tokens(f, c, "during the fault");
  expect_listed(f, c, "during the fault");
  /* A Revoke fails, and leaves the token valid (unless it is in effect):
   * memory agrees with disk. */
  rc = tokend_client_revoke(c, DOMAIN, f->ids[victim], NULL, NULL);
  expect_storage_failure(f, c, rc, "Revoke");
  revoke_in_effect = in_effect(c);
  f->revoked[victim] = revoke_in_effect;
  expect_tokens(f, c, "after a failed Revoke");
  /* On another connection too. */
  {
    tokend_client_t *other = th_client_connect_ok(&f->tokend);

    expect_tokens(f, other, "after a failed Revoke, another connection");
    tokend_client_close(other);
  }

  f->fault_off(f);
  /* tokend writes again, without a restart. */
  issue_ok(f, c);
  rc = tokend_client_revoke(c, DOMAIN, f->ids[victim], &revoked_at, &already);
  if (rc != 0)
    fail_msg("revoke after '%s' cleared: %s (%s)", f->fault_name,
             tokend_err_name(rc), tokend_client_errmsg(c));
  /* The failed Revoke had reached the database exactly if tokend said so. */
  if (already != revoke_in_effect)
    fail_msg("the Revoke that failed under '%s' was %sstored, but tokend "
             "said it was %sin effect",
             f->fault_name, already ? "" : "not ",
             revoke_in_effect ? "" : "not ");
  f->revoked[victim] = 1;
  expect_tokens(f, c, "after the fault cleared");
  expect_listed(f, c, "after the fault cleared");
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);
  expect_restart_agrees(f, "after a restart");
}

static void skip_unless_mounted(const fixture_t *f) {
  if (!f->mounted) {
    fprintf(stderr,
            "skipped: cannot mount a tmpfs on %s (%s); needs root or "
            "CAP_SYS_ADMIN\n",
            f->data_dir, f->mount_error);
    skip();
  }
}

static void test_disk_full_fails_writes_then_recovers(void **state) {
  skip_unless_mounted(*state);
  run_fault(*state);
}

static void test_read_only_fs_fails_writes_then_recovers(void **state) {
  run_fault(*state);
}

static void test_fsync_error_fails_writes_then_recovers(void **state) {
  run_fault(*state);
}

/* A Revoke whose commit failed must not change its outcome across a crash:
 * after SIGKILL and a restart the token verifies as it did before. */
static void failed_revoke_same_after_crash(fixture_t *f) {
  tokend_client_t *c;
  int rc;

  start_ok(f);
  c = th_client_connect_ok(&f->tokend);
  issue_ok(f, c);
  issue_ok(f, c);
  f->fault_on(f);
  rc = tokend_client_revoke(c, DOMAIN, f->ids[1], NULL, NULL);
  expect_storage_failure(f, c, rc, "Revoke");
  f->revoked[1] = in_effect(c);
  expect_tokens(f, c, "after a failed Revoke");
  tokend_client_close(c);
  assert_int_equal(th_tokend_kill(&f->tokend), 128 + SIGKILL);
  f->fault_off(f);
  expect_restart_agrees(f, "after SIGKILL and a restart");
}

static void test_revoke_failed_disk_full_same_after_crash(void **state) {
  skip_unless_mounted(*state);
  failed_revoke_same_after_crash(*state);
}

static void test_revoke_failed_read_only_same_after_crash(void **state) {
  failed_revoke_same_after_crash(*state);
}

static void test_revoke_failed_fsync_same_after_crash(void **state) {
  failed_revoke_same_after_crash(*state);
}

/* The next answer, which must come within timeout_ms and carry call_id and
 * status code. Returns it (the caller frees it). */
static Tokend__V1__Response *expect_answer(int fd, int timeout_ms,
                                           uint64_t call_id, int code) {
  Tokend__V1__Response *r = NULL;
  int rc = th_recv_response(fd, timeout_ms, &r);

  if (rc != 0)
    fail_msg("no answer to call %llu: %s", (unsigned long long)call_id,
             th_recv_name(rc));
  assert_int_equal(r->call_id, call_id);
  if (th_response_code(r) != code)
    fail_msg("call %llu: status %d (%s), want %d", (unsigned long long)call_id,
             th_response_code(r), r->status != NULL ? r->status->message : "",
             code);
  return r;
}

/* A disk that stops answering holds every store job, the audit records of
 * refused calls too. A peer whose calls are refused must not queue such
 * records without bound meanwhile: the first refusal of a kind is one
 * record (counted against --max-pending-calls like any store call), its
 * repeats are only counted and become one row with their count when the
 * interval ends (issue 11, item 6), here at shutdown. So every refusal is
 * answered while the disk stalls, and every one is in the log once it
 * answers. (The test's uid is root, which is neither an operator nor a
 * verifier once both are named.) */
#define STALL_REFUSED_CALLS 500

static void test_refusals_during_a_stalled_disk_are_counted(void **state) {
  static const char *const args[] = {"--operator-uid",
                                     "12345",
                                     "--verifier-uid",
                                     "12345",
                                     "--max-pending-calls",
                                     "8",
                                     NULL};
  fixture_t *f = *state;
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  uint8_t *buf = NULL;
  size_t len = 0, i;
  int fd;

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  vr.token = "tkd_not_a_token";
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  th_frame_repeat(&buf, &len, &req, 1, STALL_REFUSED_CALLS);
  f->fault_on(f);
  assert_int_equal(th_write_all(fd, buf, len), 0);
  free(buf);
  for (i = 0; i < STALL_REFUSED_CALLS; i++)
    tokend__v1__response__free_unpacked(
        expect_answer(fd, TH_IO_TIMEOUT_MS, i + 1,
                      TOKEND_GRPC_PERMISSION_DENIED),
        NULL);
  f->fault_off(f);
  close(fd);
  assert_int_equal(th_tokend_stop_clean(&f->tokend), 0);
  /* Every refusal was recorded once the disk answered: the first on its
   * own row, the rest as one. */
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT count(*) FROM audit_events WHERE "
                               "method = 'Verify' AND code = 7"),
                   2);
  assert_int_equal(th_db_count(f->tokend.db_path,
                               "SELECT sum(count) FROM audit_events WHERE "
                               "method = 'Verify' AND code = 7"),
                   STALL_REFUSED_CALLS);
}

/* Lists queued behind a disk that stopped answering hold their answers'
 * rows; across all connections those may not exceed --max-list-memory.
 * The first is let through even if it alone is bigger; the next List or
 * ListAuditEvents is answered RESOURCE_EXHAUSTED at once. Once the disk
 * answers, the admitted one completes (the Issues that were queued ahead
 * of it on a next page) and the rows are given back. */
#define LISTED_TOKENS 300 /* a page of them: 301 rows of ~3 KB, far above: */
#define LIST_MEMORY "65536"
#define STALLED_ISSUES 2

static void send_list(int fd, uint64_t call_id, const char *page_token) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListRequest lr = TOKEND__V1__LIST_REQUEST__INIT;

  lr.domain = DOMAIN;
  lr.page_size = 1000;
  lr.page_token = (char *)page_token;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST;
  req.list = &lr;
  assert_int_equal(th_send_request(fd, &req), 0);
}

static void send_list_audit(int fd, uint64_t call_id) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListAuditEventsRequest ar =
      TOKEND__V1__LIST_AUDIT_EVENTS_REQUEST__INIT;

  ar.domain = DOMAIN;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS;
  req.list_audit_events = &ar;
  assert_int_equal(th_send_request(fd, &req), 0);
}

static void test_lists_behind_a_stalled_disk_bounded(void **state) {
  static const char *const args[] = {"--max-list-memory", LIST_MEMORY, NULL};
  fixture_t *f = *state;
  Tokend__V1__Response *r = NULL;
  size_t i;
  int fd;

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  for (i = 0; i < LISTED_TOKENS; i++)
    assert_int_equal(th_send_issue(fd, 1 + i, DOMAIN, "listed"), 0);
  for (i = 0; i < LISTED_TOKENS; i++)
    tokend__v1__response__free_unpacked(
        expect_answer(fd, TH_IO_TIMEOUT_MS, 1 + i, TOKEND_GRPC_OK), NULL);

  f->fault_on(f);
  for (i = 0; i < STALLED_ISSUES; i++)
    assert_int_equal(th_send_issue(fd, 1000 + i, DOMAIN, "stalled"), 0);
  send_list(fd, 2001, "");
  send_list(fd, 2002, "");
  send_list_audit(fd, 2003);
  /* Neither fits beside the first. */
  for (i = 2002; i <= 2003; i++) {
    r = expect_answer(fd, TH_IO_TIMEOUT_MS, i, TOKEND_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(r->status->message, "--max-list-memory"));
    tokend__v1__response__free_unpacked(r, NULL);
  }
  f->fault_off(f);
  for (i = 0; i < STALLED_ISSUES; i++)
    tokend__v1__response__free_unpacked(
        expect_answer(fd, TH_IO_TIMEOUT_MS, 1000 + i, TOKEND_GRPC_OK), NULL);
  /* Sized for the tokens there were when it was sent; the Issues queued
   * ahead of it follow on a next page. */
  r = expect_answer(fd, TH_IO_TIMEOUT_MS, 2001, TOKEND_GRPC_OK);
  assert_int_equal(r->list->n_tokens, LISTED_TOKENS);
  assert_string_not_equal(r->list->next_page_token, "");
  send_list(fd, 2004, r->list->next_page_token);
  tokend__v1__response__free_unpacked(r, NULL);
  r = expect_answer(fd, TH_IO_TIMEOUT_MS, 2004, TOKEND_GRPC_OK);
  assert_int_equal(r->list->n_tokens, STALLED_ISSUES);
  assert_string_equal(r->list->next_page_token, "");
  tokend__v1__response__free_unpacked(r, NULL);
  /* The rows were given back: the whole List fits again, in one page. */
  send_list(fd, 3001, "");
  r = expect_answer(fd, TH_IO_TIMEOUT_MS, 3001, TOKEND_GRPC_OK);
  assert_int_equal(r->list->n_tokens, LISTED_TOKENS + STALLED_ISSUES);
  assert_string_equal(r->list->next_page_token, "");
  tokend__v1__response__free_unpacked(r, NULL);
  send_list_audit(fd, 3002);
  tokend__v1__response__free_unpacked(
      expect_answer(fd, TH_IO_TIMEOUT_MS, 3002, TOKEND_GRPC_OK), NULL);
  close(fd);
  assert_int_equal(th_tokend_stop_clean(&f->tokend), 0);
}

/* ---- last_used write-back under a lasting fault (issue 11, item 2) ---- */

/* Lines of tokend's log containing needle (all lines if needle is ""). */
static int log_lines_with(const fixture_t *f, const char *needle) {
  char *log = th_read_file(f->tokend.log_path, NULL), *line, *save = NULL;
  int count = 0;

  if (log == NULL)
    return 0;
  for (line = strtok_r(log, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save))
    count += strstr(line, needle) != NULL;
  free(log);
  return count;
}

#define SHUTDOWN_TOKENS 3

/* SIGTERM while last_used_at cannot be written: tokend retries within
 * --shutdown-timeout-ms, then gives up on it with one error line saying how
 * many tokens' last_used_at were lost, and exits 1. Before, it retried at
 * once forever (~90% CPU, hundreds of thousands of lines, no exit). */
static void shutdown_gives_up_last_used(fixture_t *f) {
  /* Only the shutdown writes last_used_at back: every use stays unsaved. */
  const char *args[] = {"--shutdown-timeout-ms",
                        "1000",
                        "--flush-interval-ms",
                        "3600000",
                        "--last-used-granularity-ms",
                        "0",
                        NULL};
  tokend_client_t *c;
  char want[96];
  size_t i;
  int status;

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  c = th_client_connect_ok(&f->tokend);
  for (i = 0; i < SHUTDOWN_TOKENS; i++)
    issue_ok(f, c);
  for (i = 0; i < SHUTDOWN_TOKENS; i++)
    th_expect_verify(c, f->tokens[i], 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  f->fault_on(f);
  assert_int_equal(kill(f->tokend.pid, SIGTERM), 0);
  /* Generous: far beyond the 1 s it is given, but finite. */
  status = th_tokend_wait_exit(&f->tokend, 3 * TH_STOP_TIMEOUT_MS);
  if (status == -1)
    fail_msg("tokend did not exit after SIGTERM under '%s' (%d log lines "
             "so far)",
             f->fault_name, log_lines_with(f, ""));
  if (status != 1) {
    th_tokend_dump_log(&f->tokend);
    fail_msg("tokend exited %d under '%s', want 1 (last_used_at lost)", status,
             f->fault_name);
  }
  if (log_lines_with(f, "") >= 20) {
    th_tokend_dump_log(&f->tokend);
    fail_msg("%d log lines for one shutdown under '%s'", log_lines_with(f, ""),
             f->fault_name);
  }
  snprintf(want, sizeof(want), "could not write last_used_at of %d tokens",
           SHUTDOWN_TOKENS);
  /* One line gives up; besides it, at most the store's own (rate-limited)
   * report of the first failed write. */
  if (log_lines_with(f, want) != 1 || th_log_count_errors(&f->tokend) > 2) {
    th_tokend_dump_log(&f->tokend);
    fail_msg("want one error line saying \"%s\" and at most one other", want);
  }
}

static void test_shutdown_read_only_gives_up_last_used(void **state) {
  shutdown_gives_up_last_used(*state);
}

static void test_shutdown_write_eio_gives_up_last_used(void **state) {
  shutdown_gives_up_last_used(*state);
}

/* While running, a write-back that keeps failing is retried with backoff
 * and logged once per --log-repeat-interval-ms, not every flush interval;
 * once the fault clears it succeeds again and says so. Before, each 10 ms
 * tick logged a line. */
static void test_failing_write_back_backs_off_and_logs_little(void **state) {
  fixture_t *f = *state;
  const char *args[] = {"--flush-interval-ms",
                        "10",
                        "--last-used-granularity-ms",
                        "0",
                        "--flush-backoff-max-ms",
                        "400",
                        NULL};
  tokend_client_t *c;
  int64_t until, deadline;
  int verifies = 0;

  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  c = th_client_connect_ok(&f->tokend);
  issue_ok(f, c);
  f->fault_on(f);
  /* 1.5 s of use under the fault: 150 flush ticks, each with a dirty
   * last_used_at to write. */
  until = th_mono_ms() + 1500;
  while (th_mono_ms() < until) {
    th_expect_verify(c, f->tokens[0], 1, TOKEND_VERIFY_VALID);
    verifies++;
  }
  f->fault_off(f);
  th_expect_verify(c, f->tokens[0], 1, TOKEND_VERIFY_VALID);
  /* The next try (at most 400 ms away) succeeds. */
  deadline = th_mono_ms() + TH_STOP_TIMEOUT_MS;
  while (log_lines_with(f, "write-back works again") == 0 &&
         th_mono_ms() < deadline)
    th_sleep_ms(20);
  printf("%d verifies under the fault; %d write-back lines\n", verifies,
         log_lines_with(f, "write-back"));
  if (log_lines_with(f, "write-back") > 3) {
    th_tokend_dump_log(&f->tokend);
    fail_msg("%d write-back lines in 1.5 s of a lasting fault",
             log_lines_with(f, "write-back"));
  }
  if (log_lines_with(f, "write-back works again") != 1) {
    th_tokend_dump_log(&f->tokend);
    fail_msg("no (or more than one) recovery line after the fault cleared");
  }
  tokend_client_close(c);
  th_tokend_stop_ok(&f->tokend);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_disk_full_fails_writes_then_recovers,
                                      setup_disk_full, teardown),
      cmocka_unit_test_setup_teardown(
          test_read_only_fs_fails_writes_then_recovers, setup_read_only,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_fsync_error_fails_writes_then_recovers, setup_fsync_eio,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_revoke_failed_disk_full_same_after_crash, setup_disk_full,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_revoke_failed_read_only_same_after_crash, setup_read_only,
          teardown),
      cmocka_unit_test_setup_teardown(test_revoke_failed_fsync_same_after_crash,
                                      setup_fsync_eio, teardown),
      cmocka_unit_test_setup_teardown(
          test_refusals_during_a_stalled_disk_are_counted, setup_fsync_stall,
          teardown),
      cmocka_unit_test_setup_teardown(test_lists_behind_a_stalled_disk_bounded,
                                      setup_fsync_stall, teardown),
      cmocka_unit_test_setup_teardown(
          test_shutdown_read_only_gives_up_last_used, setup_read_only,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_shutdown_write_eio_gives_up_last_used, setup_write_eio,
          teardown),
      cmocka_unit_test_setup_teardown(
          test_failing_write_back_backs_off_and_logs_little, setup_read_only,
          teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
