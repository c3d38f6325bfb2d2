/* Secrets and core dumps (issue 11, item 5): tokend is not dumpable unless
 * --allow-core-dumps (which also keeps same-uid processes from ptrace-ing it
 * or reading its memory), and a core it is allowed to dump holds neither
 * the pepper (kept in sodium_malloc'd memory marked MADV_DONTDUMP) nor a
 * token it issued and verified (stack copies wiped, buffers wiped).
 *
 * Whether a process is dumpable cannot be read from /proc directly; proc(5)
 * gives a way: the /proc/PID files of a process that is not dumpable belong
 * to root. So tokend runs as a uid other than root (nobody, when the test is
 * root) and the owner of /proc/PID/status tells. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/sockios.h>

#include "frame.h"
#include "harness.h"
#include "token.h"
#include "tokend_client.h"

#define DOMAIN "secrets.example"
#define NOBODY_UID 65534
#define PEPPER_BYTES 32
#define FRAGMENT_CHARS 12

/* The uid tokend runs as in these tests: never root. */
static uid_t tokend_uid(void) {
  return geteuid() == 0 ? NOBODY_UID : geteuid();
}

/* The owner of /proc/<pid>/status, or (uid_t)-1. */
static uid_t proc_owner(pid_t pid) {
  char path[64];
  struct stat st;

  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  return stat(path, &st) == 0 ? st.st_uid : (uid_t)-1;
}

static void start_as_other_uid(th_tokend_t *t, const char *const *args) {
  assert_int_equal(th_tokend_init(t), 0);
  if (geteuid() == 0)
    t->uid = NOBODY_UID;
  if (th_tokend_start(t, args) != 0)
    fail_msg("tokend would not start as uid %u", (unsigned)tokend_uid());
}

/* By default tokend is not dumpable: its /proc files belong to root though
 * it runs as another uid. With --allow-core-dumps they are its own. */
static void test_not_dumpable_unless_allowed(void **state) {
  const char *allow[] = {"--allow-core-dumps", NULL};
  th_tokend_t t;

  (void)state;
  start_as_other_uid(&t, NULL);
  if (proc_owner(t.pid) != 0)
    fail_msg("tokend (uid %u) is dumpable: /proc/%d/status belongs to uid "
             "%d, not root",
             (unsigned)tokend_uid(), (int)t.pid, (int)proc_owner(t.pid));
  assert_int_equal(th_tokend_stop_clean(&t), 0);
  th_tokend_destroy(&t);

  start_as_other_uid(&t, allow);
  if (proc_owner(t.pid) != tokend_uid())
    fail_msg("with --allow-core-dumps /proc/%d/status belongs to uid %d, "
             "want %u",
             (int)t.pid, (int)proc_owner(t.pid), (unsigned)tokend_uid());
  assert_int_equal(th_tokend_stop_clean(&t), 0);
  th_tokend_destroy(&t);
}

/* Skips unless a SIGSEGV'd tokend would leave a core file in its working
 * directory: not under valgrind or a sanitizer (they handle the signal),
 * not with a core_pattern that pipes to a handler or names another
 * directory. Raises our core size limit, which tokend inherits. */
static void skip_unless_cores_land_in_cwd(void) {
  char pattern[256] = "";
  struct rlimit rl;
  FILE *f;

  if (!th_memory_measurable()) {
    fprintf(stderr, "skipped: under a wrapper or a sanitizer, tokend "
                    "leaves no core of its own\n");
    skip();
  }
  f = fopen("/proc/sys/kernel/core_pattern", "r");
  if (f != NULL) {
    if (fgets(pattern, sizeof(pattern), f) == NULL)
      pattern[0] = '\0';
    fclose(f);
  }
  if (pattern[0] == '|' || strchr(pattern, '/') != NULL || pattern[0] == '\0' ||
      pattern[0] == '\n') {
    fprintf(stderr,
            "skipped: core_pattern is '%s': cores do not land in the "
            "process's directory (a pipe to a handler, or another place)\n",
            pattern);
    skip();
  }
  assert_int_equal(getrlimit(RLIMIT_CORE, &rl), 0);
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (64u << 20)) {
    fprintf(stderr, "skipped: the hard core size limit is %llu bytes\n",
            (unsigned long long)rl.rlim_max);
    skip();
  }
  rl.rlim_cur = rl.rlim_max;
  assert_int_equal(setrlimit(RLIMIT_CORE, &rl), 0);
}

/* The path of the core file in dir (a name starting "core"), into out
 * (TH_PATH_BYTES); 0 if there is one. */
static int find_core(const char *dir, char *out, size_t len) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int found = -1;

  assert_non_null(d);
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, "core", 4) == 0) {
      if ((size_t)snprintf(out, len, "%.*s/%.64s", TH_DIR_BYTES, dir,
                           e->d_name) >= len)
        break;
      found = 0;
      break;
    }
  closedir(d);
  return found;
}

/* Issues a token, verifies it (a full check, then from the cache), then
 * SIGSEGVs tokend, which must die of it. */
static void use_then_crash(th_tokend_t *t, char tok[TOKEND_TOKEN_BYTES]) {
  tokend_client_t *c = th_client_connect_ok(t);
  tokend_issued_t is;

  th_client_issue_ok(c, DOMAIN, "core", 0, &is);
  snprintf(tok, TOKEND_TOKEN_BYTES, "%s", is.token);
  tokend_client_wipe(&is);
  th_expect_verify(c, tok, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, tok, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  assert_int_equal(kill(t->pid, SIGSEGV), 0);
  assert_int_equal(th_tokend_wait_exit(t, TH_STOP_TIMEOUT_MS), 128 + SIGSEGV);
}

/* Without --allow-core-dumps a crash leaves no core, even with the core
 * size limit raised. */
static void test_crash_leaves_no_core_by_default(void **state) {
  char tok[TOKEND_TOKEN_BYTES], core[TH_PATH_BYTES];
  th_tokend_t t;

  (void)state;
  skip_unless_cores_land_in_cwd();
  assert_int_equal(th_tokend_init(&t), 0);
  assert_int_equal(th_tokend_start(&t, NULL), 0);
  use_then_crash(&t, tok);
  explicit_bzero(tok, sizeof(tok));
  if (find_core(t.dir, core, sizeof(core)) == 0)
    fail_msg("a core was dumped without --allow-core-dumps: %s", core);
  th_tokend_destroy(&t);
}

/* With --allow-core-dumps the core is there, and neither the pepper nor the
 * token (whole, or its secret body) is in it. */
static void test_allowed_core_holds_no_pepper_or_token(void **state) {
  const char *allow[] = {"--allow-core-dumps", NULL};
  char tok[TOKEND_TOKEN_BYTES], core[TH_PATH_BYTES];
  const char *body;
  uint8_t *pepper;
  size_t i;
  size_t pepper_len = 0;
  struct stat st;
  th_tokend_t t;

  (void)state;
  skip_unless_cores_land_in_cwd();
  assert_int_equal(th_tokend_init(&t), 0);
  assert_int_equal(th_tokend_start(&t, allow), 0);
  use_then_crash(&t, tok);
  if (find_core(t.dir, core, sizeof(core)) != 0)
    fail_msg("no core file in %s after SIGSEGV with --allow-core-dumps", t.dir);
  assert_int_equal(stat(core, &st), 0);
  printf("core %s: %lld bytes\n", core, (long long)st.st_size);
  pepper = (uint8_t *)th_read_file(t.pepper_path, &pepper_len);
  assert_non_null(pepper);
  assert_int_equal(pepper_len, PEPPER_BYTES);
  body = strchr(tok, '_') + 1;
  if (th_file_contains(core, pepper, pepper_len))
    fail_msg("the pepper is in the core");
  if (th_file_contains(core, tok, strlen(tok)))
    fail_msg("the token is in the core");
  /* Nor any 12 characters of its secret part (body and checksum): neither
   * the stack copies that hashing and lazy binding left, nor the vector
   * registers that copied it. (Its last 4 are in its non-secret hint.) */
  for (i = 0; i + FRAGMENT_CHARS <= strlen(body); i++)
    if (th_file_contains(core, body + i, FRAGMENT_CHARS))
      fail_msg("%d characters of the token (from its character %zu) are in "
               "the core",
               FRAGMENT_CHARS, (size_t)(body - tok) + i);
  explicit_bzero(pepper, pepper_len);
  free(pepper);
  explicit_bzero(tok, sizeof(tok));
  th_tokend_destroy(&t);
}

/* Fails the test if the core holds tok (whole, or any FRAGMENT_CHARS of its
 * secret part) or any other well-formed token. */
static void expect_core_without_tokens(const char *core, const char *tok) {
  const char *body = strchr(tok, '_') + 1;
  size_t i, len;
  char *data;

  if (th_file_contains(core, tok, strlen(tok)))
    fail_msg("the token is in the core");
  for (i = 0; i + FRAGMENT_CHARS <= strlen(body); i++)
    if (th_file_contains(core, body + i, FRAGMENT_CHARS))
      fail_msg("%d characters of the token (from its character %zu) are in "
               "the core",
               FRAGMENT_CHARS, (size_t)(body - tok) + i);
  data = th_read_file(core, &len);
  assert_non_null(data);
  if (token_find_embedded(data, len))
    fail_msg("a well-formed token is in the core");
  explicit_bzero(data, len);
  free(data);
}

/* Waits until tokend has read everything sent on fd (nothing is left in
 * fd's send queue). */
static void wait_taken(int fd) {
  int64_t deadline = th_mono_ms() + TH_IO_TIMEOUT_MS;
  int queued = -1;

  while (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0 &&
         th_mono_ms() < deadline)
    th_sleep_ms(5);
  if (queued != 0)
    fail_msg("tokend did not read what was sent (%d bytes left)", queued);
}

/* Verifies whose answers (about 100 bytes each) are several times what a
 * socket holds, so that the answers after them wait in tokend. */
#define FILL_VERIFIES 20000
#define STUCK_ISSUE_CALL_ID (FILL_VERIFIES + 1)

/* The connection buffers hold secrets too: a Verify request being read (in
 * the read buffer) and an Issue answer the peer has not read yet (in an
 * output buffer). Neither may be in a core. */
static void test_allowed_core_holds_no_buffered_token(void **state) {
  /* Room for every answer: a peer above the soft limit is not read from. */
  const char *args[] = {"--allow-core-dumps", "--max-queued-bytes",
                        "268435456",          "--max-queued-bytes-hard",
                        "536870912",          NULL};
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest v = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__IssueRequest is_req = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  char tok[TOKEND_TOKEN_BYTES], core[TH_PATH_BYTES];
  uint8_t *buf = NULL, *frame;
  size_t len = 0, n_answers = 0;
  tokend_client_t *c;
  tokend_issued_t is;
  int full, part, rc, stuck = 1;
  th_tokend_t t;

  (void)state;
  skip_unless_cores_land_in_cwd();
  assert_int_equal(th_tokend_init(&t), 0);
  assert_int_equal(th_tokend_start(&t, args), 0);
  c = th_client_connect_ok(&t);
  th_client_issue_ok(c, DOMAIN, "buffered", 0, &is);
  snprintf(tok, sizeof(tok), "%s", is.token);
  tokend_client_wipe(&is);

  /* A peer that does not read: Verifies that fill its socket, then an
   * Issue, whose answer (a new token) must wait in an output buffer. */
  full = th_connect(t.socket_path);
  assert_true(full >= 0);
  v.token = tok;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &v;
  th_frame_repeat(&buf, &len, &req, 1, FILL_VERIFIES);
  is_req.domain = DOMAIN;
  is_req.label = "stuck";
  req.call_id = STUCK_ISSUE_CALL_ID;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &is_req;
  assert_int_equal(th_frame_append(&buf, &len, &req), 0);
  assert_int_equal(th_write_all(full, buf, len), 0);
  free(buf);
  wait_taken(full);
  /* The store finishes jobs in order: once an Issue sent later is answered,
   * the stuck Issue's answer has been made. */
  th_client_issue_ok(c, DOMAIN, "after", 0, &is);
  tokend_client_wipe(&is);
  tokend_client_close(c);

  /* A Verify read but for its last byte: the token sits in the read
   * buffer. (Its header claims one byte more than the request.) */
  part = th_connect(t.socket_path);
  assert_true(part >= 0);
  req.call_id = 1;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &v;
  frame = th_frame_request(&req, &len);
  assert_non_null(frame);
  frame_encode_header(frame, (uint32_t)(len - TOKEND_FRAME_HEADER_BYTES + 1));
  assert_int_equal(th_write_all(part, frame, len), 0);
  explicit_bzero(frame, len);
  free(frame);
  wait_taken(part);

  assert_int_equal(kill(t.pid, SIGSEGV), 0);
  assert_int_equal(th_tokend_wait_exit(&t, TH_STOP_TIMEOUT_MS), 128 + SIGSEGV);
  /* The Issue's answer was still in tokend, not in the socket. */
  while ((rc = th_recv_response(full, TH_IO_TIMEOUT_MS, &r)) == 0) {
    n_answers++;
    if (r->call_id == STUCK_ISSUE_CALL_ID)
      stuck = 0;
    tokend__v1__response__free_unpacked(r, NULL);
  }
  close(full);
  close(part);
  printf("%zu of %d answers had reached the socket\n", n_answers,
         FILL_VERIFIES + 1);
  if (!stuck || n_answers >= FILL_VERIFIES)
    fail_msg("the Issue's answer reached the socket (%zu answers read): the "
             "test did not keep it in tokend",
             n_answers);

  if (find_core(t.dir, core, sizeof(core)) != 0)
    fail_msg("no core file in %s after SIGSEGV with --allow-core-dumps", t.dir);
  expect_core_without_tokens(core, tok);
  explicit_bzero(tok, sizeof(tok));
  th_tokend_destroy(&t);
}

/* GET /verify with tok as a Bearer credential on tokend's HTTP socket
 * sock; the answer must be 204 (the token is valid). */
static void http_verify_valid(const char *sock, const char *tok) {
  char req[TOKEND_TOKEN_BYTES + 128], ans[1024];
  size_t len = 0;
  ssize_t n;
  int fd = th_connect(sock);

  assert_true(fd >= 0);
  snprintf(req, sizeof(req),
           "GET /verify HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
           "%s\r\nConnection: close\r\n\r\n",
           tok);
  assert_int_equal(th_write_all(fd, req, strlen(req)), 0);
  explicit_bzero(req, sizeof(req));
  while (len < sizeof(ans) - 1 &&
         (n = read(fd, ans + len, sizeof(ans) - 1 - len)) > 0)
    len += (size_t)n;
  ans[len] = '\0';
  close(fd);
  if (strncmp(ans, "HTTP/1.1 204", 12) != 0)
    fail_msg("HTTP /verify: %s", ans);
}

/* The HTTP face (issue 14): a token verified over HTTP, twice (a full
 * check, then from the cache), leaves no copy in a core: libmicrohttpd's
 * connection memory held it in the Authorization header, wiped once
 * answered. */
static void test_allowed_core_holds_no_http_token(void **state) {
  char tok[TOKEND_TOKEN_BYTES], core[TH_PATH_BYTES], arg[TH_PATH_BYTES + 16];
  char sock[TH_PATH_BYTES + 8];
  const char *args[] = {"--allow-core-dumps", "--http-listen", arg, NULL};
  tokend_client_t *c;
  tokend_issued_t is;
  th_tokend_t t;

  (void)state;
  skip_unless_cores_land_in_cwd();
  assert_int_equal(th_tokend_init(&t), 0);
  snprintf(sock, sizeof(sock), "%s/h.sock", t.dir);
  snprintf(arg, sizeof(arg), "unix:%s", sock);
  assert_int_equal(th_tokend_start(&t, args), 0);
  c = th_client_connect_ok(&t);
  th_client_issue_ok(c, DOMAIN, "http", 0, &is);
  snprintf(tok, sizeof(tok), "%s", is.token);
  tokend_client_wipe(&is);
  tokend_client_close(c);
  http_verify_valid(sock, tok);
  http_verify_valid(sock, tok);
  assert_int_equal(kill(t.pid, SIGSEGV), 0);
  assert_int_equal(th_tokend_wait_exit(&t, TH_STOP_TIMEOUT_MS), 128 + SIGSEGV);
  if (find_core(t.dir, core, sizeof(core)) != 0)
    fail_msg("no core file in %s after SIGSEGV with --allow-core-dumps", t.dir);
  expect_core_without_tokens(core, tok);
  explicit_bzero(tok, sizeof(tok));
  th_tokend_destroy(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_not_dumpable_unless_allowed),
      cmocka_unit_test(test_crash_leaves_no_core_by_default),
      cmocka_unit_test(test_allowed_core_holds_no_pepper_or_token),
      cmocka_unit_test(test_allowed_core_holds_no_buffered_token),
      cmocka_unit_test(test_allowed_core_holds_no_http_token),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
