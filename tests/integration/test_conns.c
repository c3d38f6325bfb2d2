/* Connections and the network layer (issue 11, items 7, 8, 9 and 13): the
 * connection limits per uid and for operators, the file-descriptor limit
 * at start, read buffers that shrink and their global bound, a client that
 * reads its pipelined answers, and the messages of tokend and tokenctl
 * when the socket is not what it should be. Cases that need peers of other
 * uids run only as root and say so when skipped. */
#define _GNU_SOURCE /* pipe2 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "tokend_error.h"

#define DOMAIN "conns.example"
#define NOBODY_UID 65534
#define NOGROUP_GID 65534
#define CTL_TIMEOUT_MS (10000 * th_timeout_scale())

/* tokend's exit status when start-up fails (server/main.c). */
#define EXIT_START_FAILED 1

/* ---- helpers ---- */

/* In a forked child: becomes uid/gid with no supplementary groups. */
static int drop_privileges(uid_t uid, gid_t gid) {
  if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
    return -1;
  return getuid() == uid && geteuid() == uid ? 0 : -1;
}

/* ---- item 13: what tokend and tokenctl say about the socket ---- */

/* Runs tokend with args, which must exit `status` with a log that contains
 * every one of the NULL-terminated words. */
static void expect_start_refused(th_tokend_t *t, const char *const *args,
                                 int status, ...) {
  const char *word;
  va_list ap;
  char *log;
  size_t len;
  int got;

  if (truncate(t->log_path, 0) != 0 && errno != ENOENT)
    fail_msg("truncate %s: %s", t->log_path, strerror(errno));
  assert_int_equal(th_tokend_spawn(t, args), 0);
  got = th_tokend_wait_exit(t, TH_START_TIMEOUT_MS);
  if (got < 0) {
    th_tokend_kill(t);
    fail_msg("tokend did not exit: it should have refused to start");
  }
  log = th_read_file(t->log_path, &len);
  assert_non_null(log);
  if (got != status)
    fail_msg("tokend exited %d, want %d; log:\n%s", got, status, log);
  va_start(ap, status);
  while ((word = va_arg(ap, const char *)) != NULL)
    if (strstr(log, word) == NULL)
      fail_msg("tokend's log should say '%s':\n%s", word, log);
  va_end(ap);
  free(log);
}

static void test_socket_in_missing_directory_says_so(void **state) {
  th_fixture_t *f = *state;
  char file[TH_PATH_BYTES];

  snprintf(f->tokend.socket_path, sizeof(f->tokend.socket_path),
           "%s/nonexistent/tokend.sock", f->tokend.dir);
  expect_start_refused(&f->tokend, NULL, EXIT_START_FAILED,
                       "/nonexistent does not exist", NULL);
  /* Refused before anything was made: no database, no pepper. */
  assert_false(th_path_exists(f->tokend.db_path));
  assert_false(th_path_exists(f->tokend.pepper_path));

  /* A file where the directory should be. */
  snprintf(file, sizeof(file), "%s/plain", f->tokend.dir);
  th_write_file_ok(file, "x", 1, 0600);
  snprintf(f->tokend.socket_path, sizeof(f->tokend.socket_path),
           "%s/plain/tokend.sock", f->tokend.dir);
  expect_start_refused(&f->tokend, NULL, EXIT_START_FAILED,
                       "is not a directory", NULL);
}

/* tokenctl --socket path whoami must fail (exit 2) saying every one of the
 * NULL-terminated words, and never the old "make run" advice. */
static void expect_ctl_says(const char *path, ...) {
  const char *argv[] = {TOKENCTL_BIN, "--socket", path, "--timeout",
                        "5000",       "whoami",   NULL};
  th_run_result_t r;
  const char *word;
  va_list ap;

  assert_int_equal(th_run(argv, NULL, NULL, CTL_TIMEOUT_MS, &r), 0);
  th_expect_exit(&r, 2, "tokenctl whoami");
  va_start(ap, path);
  while ((word = va_arg(ap, const char *)) != NULL)
    if (strstr(r.err, word) == NULL)
      fail_msg("tokenctl should say '%s', said:\n%s", word, r.err);
  va_end(ap);
  if (strstr(r.err, "make run") != NULL)
    fail_msg("tokenctl still says 'make run':\n%s", r.err);
  th_run_result_free(&r);
}

static void test_tokenctl_missing_socket_says_no_such_socket(void **state) {
  th_fixture_t *f = *state;
  char path[TH_PATH_BYTES];

  snprintf(path, sizeof(path), "%s/none.sock", f->tokend.dir);
  expect_ctl_says(path, "no such socket", path, "is tokend running?", NULL);
}

static void test_tokenctl_regular_file_is_not_tokend(void **state) {
  th_fixture_t *f = *state;
  char path[TH_PATH_BYTES];

  snprintf(path, sizeof(path), "%s/file.sock", f->tokend.dir);
  th_write_file_ok(path, "", 0, 0666);
  expect_ctl_says(path, "is not a tokend", "regular file", NULL);
}

/* A listener that is not tokend: it answers every connection with a line of
 * text, as an HTTP server or a shell would, and hangs up. */
typedef struct {
  int lfd;
} foreign_t;

static void *foreign_serve(void *arg) {
  foreign_t *fo = arg;
  static const char line[] = "HTTP/1.0 400 Bad Request\r\n\r\n";
  int fd = accept(fo->lfd, NULL, NULL);

  if (fd >= 0) {
    (void)th_write_all(fd, line, sizeof(line) - 1);
    close(fd);
  }
  return NULL;
}

static void test_tokenctl_foreign_listener_is_not_tokend(void **state) {
  th_fixture_t *f = *state;
  struct sockaddr_un sa;
  char path[TH_PATH_BYTES];
  pthread_t th;
  foreign_t fo;

  snprintf(path, sizeof(path), "%s/foreign.sock", f->tokend.dir);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  assert_true(strlen(path) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, path, strlen(path) + 1);
  fo.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fo.lfd >= 0);
  assert_int_equal(bind(fo.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(fo.lfd, 4), 0);
  assert_int_equal(pthread_create(&th, NULL, foreign_serve, &fo), 0);
  /* Whether its line or its hang-up reaches tokenctl first, it is not a
   * tokend. */
  expect_ctl_says(path, "is not a tokend", NULL);
  assert_int_equal(pthread_join(th, NULL), 0);
  close(fo.lfd);
}

/* A listener that accepts nothing: connect() succeeds (the backlog takes
 * it) but no answer ever comes. */
static void test_tokenctl_silent_listener_is_not_tokend(void **state) {
  th_fixture_t *f = *state;
  const char *argv[] = {TOKENCTL_BIN, "--socket", NULL, "--timeout",
                        "300",        "whoami",   NULL};
  struct sockaddr_un sa;
  char path[TH_PATH_BYTES];
  th_run_result_t r;
  int lfd;

  snprintf(path, sizeof(path), "%s/silent.sock", f->tokend.dir);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  assert_true(strlen(path) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, path, strlen(path) + 1);
  lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(lfd >= 0);
  assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(lfd, 4), 0);
  argv[2] = path;
  assert_int_equal(th_run(argv, NULL, NULL, CTL_TIMEOUT_MS, &r), 0);
  th_expect_exit(&r, 2, "tokenctl against a silent listener");
  if (strstr(r.err, "did not answer tokend's protocol") == NULL ||
      strstr(r.err, path) == NULL)
    fail_msg("tokenctl should say the peer did not answer:\n%s", r.err);
  th_run_result_free(&r);
  close(lfd);
}

/* As nobody, against a live tokend's socket that only root may open (its
 * directory made searchable): the library says permission denied and names
 * the socket's group; tokenctl prints that sentence as it is. */
static void test_socket_without_permission_names_group(void **state) {
  th_fixture_t *f = *state;
  char why[TOKEND_CONNECT_ERRMSG_BYTES] = "";
  tokend_client_t *c = NULL;
  struct group *gr;
  int fds[2], rc = 0, wstatus;
  pid_t child;

  if (geteuid() != 0) {
    fprintf(stderr, "  skipped: only root can run a peer of another uid\n");
    skip();
  }
  assert_int_equal(chmod(f->tokend.dir, 0711), 0);
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
  child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (drop_privileges(NOBODY_UID, NOGROUP_GID) != 0)
      _exit(3);
    rc = tokend_client_open(f->tokend.socket_path, CTL_TIMEOUT_MS,
                            TOKEND_CONNECT_CHECK_PEER, &c, why, sizeof(why));
    tokend_client_close(c);
    if (th_write_all(fds[1], &rc, sizeof(rc)) != 0 ||
        th_write_all(fds[1], why, sizeof(why)) != 0)
      _exit(5);
    _exit(0);
  }
  close(fds[1]);
  assert_int_equal(th_read_all(fds[0], &rc, sizeof(rc), CTL_TIMEOUT_MS), 0);
  assert_int_equal(th_read_all(fds[0], why, sizeof(why), CTL_TIMEOUT_MS), 0);
  close(fds[0]);
  assert_int_equal(waitpid(child, &wstatus, 0), child);
  assert_true(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  why[sizeof(why) - 1] = '\0';
  if (rc != TOKEND_ESOCKPERM)
    fail_msg("as nobody: %s (%s), want TOKEND_ESOCKPERM", tokend_err_name(rc),
             why);
  gr = getgrgid(getegid());
  assert_non_null(gr);
  assert_non_null(strstr(why, "permission denied on"));
  assert_non_null(strstr(why, f->tokend.socket_path));
  if (strstr(why, gr->gr_name) == NULL)
    fail_msg("the message should name the socket's group %s: %s", gr->gr_name,
             why);
}

/* ---- item 7: connection limits and the file-descriptor limit ---- */

#define STATUS_MSG_BYTES 256

/* Sends WhoAmI on fd and reads one answer: its status code (0: served),
 * with the message in msg; -1 if no answer came. A refused connection's
 * answer is the status tokend sent it on arrival, with call_id 0. */
static int whoami_status(int fd, char msg[STATUS_MSG_BYTES]) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__WhoAmIRequest who = TOKEND__V1__WHO_AM_IREQUEST__INIT;
  Tokend__V1__Response *r = NULL;
  int code;

  msg[0] = '\0';
  req.call_id = 1;
  req.method_case = TOKEND__V1__REQUEST__METHOD_WHO_AM_I;
  req.who_am_i = &who;
  /* A refused peer may find the socket closed already: its answer is
   * still there to read. */
  (void)th_send_request(fd, &req);
  if (th_recv_response(fd, TH_IO_TIMEOUT_MS, &r) != 0)
    return -1;
  code = th_response_code(r);
  if (r->status != NULL && r->status->message != NULL)
    snprintf(msg, STATUS_MSG_BYTES, "%s", r->status->message);
  tokend__v1__response__free_unpacked(r, NULL);
  return code;
}

/* A connection tokend serves. A connection just closed (such as the
 * harness's readiness probe) may hold its slot until tokend reads its EOF,
 * so a refusal is retried for a while; anything else fails. */
static int connect_served(const char *path) {
  int64_t deadline = th_mono_ms() + TH_IO_TIMEOUT_MS;
  char msg[STATUS_MSG_BYTES];
  int fd, code;

  for (;;) {
    fd = th_connect(path);
    assert_true(fd >= 0);
    code = whoami_status(fd, msg);
    if (code == 0)
      return fd;
    close(fd);
    if (code != TOKEND_GRPC_RESOURCE_EXHAUSTED)
      fail_msg("a new connection's WhoAmI got %d (%s)", code, msg);
    if (th_mono_ms() >= deadline)
      fail_msg("no connection was served: %s", msg);
    th_sleep_ms(10);
  }
}

/* A new connection must be refused RESOURCE_EXHAUSTED with a message that
 * contains word, then closed. */
static void expect_refused_conn(const char *path, const char *word) {
  char msg[STATUS_MSG_BYTES];
  int fd = th_connect(path), code;

  assert_true(fd >= 0);
  code = whoami_status(fd, msg);
  if (code != TOKEND_GRPC_RESOURCE_EXHAUSTED || strstr(msg, word) == NULL)
    fail_msg("want RESOURCE_EXHAUSTED naming '%s', got %d: %s", word, code,
             msg);
  assert_int_equal(th_wait_eof(fd, TH_IO_TIMEOUT_MS), 1);
  close(fd);
}

/* A child of another uid holding connections open. */
typedef struct {
  pid_t pid;
  int go; /* closing it lets the child close its connections and exit */
} peer_proc_t;

/* Forks a child that becomes uid (group nogroup), opens n connections to
 * path one after another, and reports each one's WhoAmI status into codes
 * and msgs; it holds them until peer_end(). */
static void peer_start(peer_proc_t *p, const char *path, uid_t uid, int n,
                       int *codes, char (*msgs)[STATUS_MSG_BYTES]) {
  int res[2], go[2], i, fd;
  char msg[STATUS_MSG_BYTES];
  char buf;

  assert_int_equal(pipe2(res, O_CLOEXEC), 0);
  assert_int_equal(pipe2(go, O_CLOEXEC), 0);
  p->pid = fork();
  assert_true(p->pid >= 0);
  if (p->pid == 0) {
    close(res[0]);
    close(go[1]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (drop_privileges(uid, NOGROUP_GID) != 0)
      _exit(3);
    for (i = 0; i < n; i++) {
      int code = -1;

      memset(msg, 0, sizeof(msg));
      fd = th_connect(path);
      if (fd >= 0)
        code = whoami_status(fd, msg);
      if (th_write_all(res[1], &code, sizeof(code)) != 0 ||
          th_write_all(res[1], msg, sizeof(msg)) != 0)
        _exit(5);
    }
    /* Hold every connection until the parent says go. */
    while (read(go[0], &buf, 1) < 0 && errno == EINTR)
      ;
    _exit(0);
  }
  close(res[1]);
  close(go[0]);
  for (i = 0; i < n; i++) {
    assert_int_equal(
        th_read_all(res[0], &codes[i], sizeof(codes[i]), TH_IO_TIMEOUT_MS), 0);
    assert_int_equal(
        th_read_all(res[0], msgs[i], STATUS_MSG_BYTES, TH_IO_TIMEOUT_MS), 0);
    msgs[i][STATUS_MSG_BYTES - 1] = '\0';
  }
  close(res[0]);
  p->go = go[1];
}

static void peer_end(peer_proc_t *p) {
  int wstatus;

  close(p->go);
  assert_int_equal(waitpid(p->pid, &wstatus, 0), p->pid);
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
    fail_msg("peer child exited with status 0x%x", (unsigned)wstatus);
}

/* Lines of the file at path that contain word. */
static long count_lines(const char *path, const char *word) {
  size_t len;
  char *text = th_read_file(path, &len), *p;
  long n = 0;

  assert_non_null(text);
  for (p = text; (p = strstr(p, word)) != NULL; p += strlen(word))
    n++;
  free(text);
  return n;
}

#define REFUSAL_FLOOD 50
#define REFUSAL_LOG_INTERVAL_MS 200
#define LIMIT_TOTAL 6
#define LIMIT_PER_UID 2
#define LIMIT_RESERVED 2

/* One uid holds its share and is refused past it; another uid still gets
 * in up to the operators' reserve; past it only an operator does, and an
 * operator (exempt from the per-uid share) up to --max-connections. */
static void test_per_uid_limit_and_operator_reserve(void **state) {
  th_fixture_t *f = *state;
  int root = geteuid() == 0, fds[LIMIT_PER_UID], i;
  int codes[3];
  char msgs[3][STATUS_MSG_BYTES];
  peer_proc_t other, third, op;
  /* The test's own uid must not be an operator: name another. */
  const char *const args[] = {"--max-connections",
                              "6",
                              "--max-connections-per-uid",
                              "2",
                              "--reserved-operator-connections",
                              "2",
                              "--operator-uid",
                              root ? "65534" : "0",
                              "--socket-mode",
                              "0666",
                              "--log-repeat-interval-ms",
                              "200",
                              NULL};

  if (root)
    assert_int_equal(chmod(f->tokend.dir, 0711), 0);
  assert_int_equal(th_tokend_start(&f->tokend, args), 0);
  for (i = 0; i < LIMIT_PER_UID; i++)
    fds[i] = connect_served(f->tokend.socket_path);
  expect_refused_conn(f->tokend.socket_path, "--max-connections-per-uid");
  /* Refusals give nothing back and take nothing: still refused. */
  expect_refused_conn(f->tokend.socket_path, "--max-connections-per-uid");
  /* A flood of refusals is logged at most once per --log-repeat-interval-ms,
   * a line after held-back ones ending "(N more like this)" as every
   * rate-limited line does (log_limit_t). Refused until such a line shows,
   * which takes a little over one interval. */
  {
    int64_t start = th_mono_ms(), deadline = start + CTL_TIMEOUT_MS;
    long lines, allowed;
    int n = 2;

    do {
      for (i = 0; i < REFUSAL_FLOOD; i++, n++)
        expect_refused_conn(f->tokend.socket_path, "--max-connections-per-uid");
    } while (count_lines(f->tokend.log_path, "more like this)") == 0 &&
             th_mono_ms() < deadline);
    if (count_lines(f->tokend.log_path, "more like this)") == 0)
      fail_msg("%d refusals in %lld ms: no log line says \"(N more like "
               "this)\"",
               n, (long long)(th_mono_ms() - start));
    allowed = (long)((th_mono_ms() - start) / REFUSAL_LOG_INTERVAL_MS) + 2;
    lines = count_lines(f->tokend.log_path, "refusing a connection");
    if (lines > allowed)
      fail_msg("%d refusals in %lld ms were logged in %ld lines, want at "
               "most %ld",
               n, (long long)(th_mono_ms() - start), lines, allowed);
  }

  if (!root) {
    fprintf(stderr, "  skipped the other-uid and operator cases: only root "
                    "can run peers of other uids\n");
  } else {
    /* Another uid gets its share: 4 of 6 taken, the rest reserved. */
    peer_start(&other, f->tokend.socket_path, 65533, LIMIT_PER_UID, codes,
               msgs);
    for (i = 0; i < LIMIT_PER_UID; i++)
      if (codes[i] != 0)
        fail_msg("uid 65533's connection %d: %d (%s)", i, codes[i], msgs[i]);
    /* A third uid, within its own share, meets the reserve. */
    peer_start(&third, f->tokend.socket_path, 65532, 1, codes, msgs);
    if (codes[0] != TOKEND_GRPC_RESOURCE_EXHAUSTED ||
        strstr(msgs[0], "reserved for operators") == NULL)
      fail_msg("uid 65532 should meet the operators' reserve: %d (%s)",
               codes[0], msgs[0]);
    peer_end(&third);
    /* An operator takes the reserved slots, beyond the per-uid share, up to
     * --max-connections and no further. */
    peer_start(&op, f->tokend.socket_path, 65534, 3, codes, msgs);
    for (i = 0; i < LIMIT_RESERVED; i++)
      if (codes[i] != 0)
        fail_msg("operator's connection %d: %d (%s)", i, codes[i], msgs[i]);
    if (codes[2] != TOKEND_GRPC_RESOURCE_EXHAUSTED ||
        strstr(msgs[2], "--max-connections") == NULL)
      fail_msg("past --max-connections even an operator is refused: %d (%s)",
               codes[2], msgs[2]);
    peer_end(&op);
    peer_end(&other);
  }
  /* The connections within the limits were never disturbed. */
  for (i = 0; i < LIMIT_PER_UID; i++) {
    char msg[STATUS_MSG_BYTES];

    assert_int_equal(whoami_status(fds[i], msg), 0);
    close(fds[i]);
  }
}

/* The value of "Max open files" in /proc/pid/limits: soft or hard. */
static long proc_nofile(pid_t pid, int hard) {
  char path[64], *text, *line;
  long soft_v = -1, hard_v = -1;
  size_t len;

  snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
  text = th_read_file(path, &len);
  if (text == NULL)
    return -1;
  line = strstr(text, "Max open files");
  if (line != NULL)
    sscanf(line + strlen("Max open files"), "%ld %ld", &soft_v, &hard_v);
  free(text);
  return hard ? hard_v : soft_v;
}

#define FD_TEST_MAX_CONNS 1000
/* CONFIG_FD_RESERVE (server/config.h) */
#define FD_TEST_NEED (FD_TEST_MAX_CONNS + 64)

/* Started with a soft limit below what --max-connections needs (and a
 * hard limit above it), tokend raises its soft limit. */
static void test_fd_soft_limit_raised_at_start(void **state) {
  th_fixture_t *f = *state;
  const char *const args[] = {"--max-connections", "1000", NULL};
  struct rlimit saved, low;
  long soft;
  int rc;

  /* valgrind keeps file descriptors of its own above the soft limit it
   * starts with and refuses to let its client raise it. */
  if (th_wrapped()) {
    fprintf(stderr, "  skipped: tokend runs under a wrapper\n");
    skip();
  }
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < FD_TEST_NEED) {
    fprintf(stderr, "  skipped: the hard limit %llu is below %d\n",
            (unsigned long long)saved.rlim_max, FD_TEST_NEED);
    skip();
  }
  low = saved;
  low.rlim_cur = 256;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  rc = th_tokend_start(&f->tokend, args);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
  assert_int_equal(rc, 0);
  soft = proc_nofile(f->tokend.pid, 0);
  if (soft < FD_TEST_NEED)
    fail_msg("tokend's soft RLIMIT_NOFILE is %ld, want at least %d", soft,
             FD_TEST_NEED);
  assert_true(th_file_contains(f->tokend.log_path, "raising the file-",
                               strlen("raising the file-")));
}

/* With a hard limit below what --max-connections needs, tokend refuses to
 * start and says the numbers. */
static void test_fd_hard_limit_too_low_refused(void **state) {
  th_fixture_t *f = *state;
  const char *argv[] = {"/bin/sh",
                        "-c",
                        "ulimit -n 256 && exec \"$@\"",
                        "sh",
                        TOKEND_BIN,
                        "--socket",
                        f->tokend.socket_path,
                        "--db",
                        f->tokend.db_path,
                        "--pepper-file",
                        f->tokend.pepper_path,
                        "--max-connections",
                        "1000",
                        NULL};
  th_run_result_t r;

  assert_int_equal(th_run(argv, NULL, NULL, TH_START_TIMEOUT_MS, &r), 0);
  th_expect_exit(&r, EXIT_START_FAILED, "tokend with RLIMIT_NOFILE 256");
  if (strstr(r.err, "RLIMIT_NOFILE") == NULL ||
      strstr(r.err, "needs 1064 file descriptors") == NULL ||
      strstr(r.err, "allows 256") == NULL)
    fail_msg("tokend should say what it needs and what it may have:\n%s",
             r.err);
  th_run_result_free(&r);
  assert_false(th_path_exists(f->tokend.socket_path));
}

/* Open file descriptors of pid. */
static int proc_fd_count(pid_t pid) {
  char path[64];
  struct dirent *e;
  DIR *d;
  int n = 0;

  snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
  d = opendir(path);
  assert_non_null(d);
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

#define FD_SQUEEZE_CONNS 8
#define FD_SQUEEZE_ROOM 3

/* Out of file descriptors (its limit lowered from outside after start):
 * accept fails, tokend says so in its log, and the connections it could
 * not accept wait in the backlog to be served once descriptors are free,
 * instead of being closed unread (libuv's EMFILE trick did that silently). */
static void test_out_of_fds_logged_and_served_later(void **state) {
  th_fixture_t *f = *state;
  static const char word[] = "out of file descriptors";
  struct rlimit saved, low;
  int fds[FD_SQUEEZE_CONNS], i;
  int64_t deadline;

  if (th_wrapped()) {
    fprintf(stderr, "  skipped: tokend runs under a wrapper, whose own "
                    "descriptors a lowered limit would take\n");
    skip();
  }
  assert_int_equal(prlimit(f->tokend.pid, RLIMIT_NOFILE, NULL, &saved), 0);
  low = saved;
  low.rlim_cur = (rlim_t)proc_fd_count(f->tokend.pid) + FD_SQUEEZE_ROOM;
  assert_int_equal(prlimit(f->tokend.pid, RLIMIT_NOFILE, &low, NULL), 0);
  for (i = 0; i < FD_SQUEEZE_CONNS; i++) {
    fds[i] = th_connect(f->tokend.socket_path);
    assert_true(fds[i] >= 0);
    assert_int_equal(th_send_verify(fds[i], 1, f->token), 0);
  }
  deadline = th_mono_ms() + TH_IO_TIMEOUT_MS;
  while (!th_file_contains(f->tokend.log_path, word, strlen(word)) &&
         th_mono_ms() < deadline)
    th_sleep_ms(10);
  if (!th_file_contains(f->tokend.log_path, word, strlen(word))) {
    th_tokend_dump_log(&f->tokend);
    fail_msg("tokend did not log that accept ran out of file descriptors");
  }
  /* Descriptors again: every connection is served, none was dropped. */
  assert_int_equal(prlimit(f->tokend.pid, RLIMIT_NOFILE, &saved, NULL), 0);
  for (i = 0; i < FD_SQUEEZE_CONNS; i++) {
    Tokend__V1__Response *r = NULL;
    int rc = th_recv_response(fds[i], TH_IO_TIMEOUT_MS, &r);

    if (rc != 0)
      fail_msg("connection %d, made while tokend was out of descriptors: "
               "%s",
               i, th_recv_name(rc));
    assert_int_equal(r->call_id, 1);
    assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_VERIFY);
    assert_true(r->verify->valid);
    tokend__v1__response__free_unpacked(r, NULL);
    close(fds[i]);
  }
}

/* ---- item 8: read buffers shrink, and all of them are bounded ---- */

/* A Verify frame whose whole size (header included) is exactly total
 * bytes: a token string of the right length (malformed, so answered
 * INVALID). malloc'd; the caller frees it. */
static uint8_t *verify_frame_of_size(size_t total, uint64_t call_id) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  size_t body = total - 5, tok_len = body, packed, len;
  uint8_t *frame;
  char *tok;
  int i;

  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  tok = malloc(body + 1);
  assert_non_null(tok);
  /* The varints of the lengths make the overhead; a few rounds settle it. */
  for (i = 0; i < 4; i++) {
    memset(tok, 'a', tok_len);
    tok[tok_len] = '\0';
    vr.token = tok;
    packed = tokend__v1__request__get_packed_size(&req);
    tok_len = tok_len + body - packed;
  }
  memset(tok, 'a', tok_len);
  tok[tok_len] = '\0';
  frame = th_frame_request(&req, &len);
  free(tok);
  assert_non_null(frame);
  assert_int_equal(len, total);
  return frame;
}

/* Reads the answer to call_id: an answer (any status) carrying it. */
static void expect_answer(int fd, uint64_t call_id) {
  Tokend__V1__Response *r = NULL;
  int rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);

  if (rc != 0)
    fail_msg("no answer to call %llu: %s", (unsigned long long)call_id,
             th_recv_name(rc));
  if (r->call_id != call_id)
    fail_msg("answer to call %llu, want %llu (status %d: %s)",
             (unsigned long long)r->call_id, (unsigned long long)call_id,
             th_response_code(r), r->status != NULL ? r->status->message : "");
  tokend__v1__response__free_unpacked(r, NULL);
}

#define BIG_CONNS 48
#define BIG_REQUEST (1000u * 1000u)
/* What tokend may keep after BIG_CONNS requests of BIG_REQUEST bytes were
 * handled: its decode arena (at most --max-request-memory, 4 MiB) and some
 * slack, far below the 48 MB the requests took. */
#define BIG_KEEP_KIB (12L * 1024)

/* Connections that each sent one large request and then idle give its
 * buffer back: tokend's resident memory falls near where it was, and the
 * connections stay open. */
static void test_idle_large_requests_give_memory_back(void **state) {
  th_fixture_t *f = *state;
  int fds[BIG_CONNS], i;
  uint8_t *frame = verify_frame_of_size(BIG_REQUEST, 1);
  long base, rss = -1;
  int64_t deadline;

  for (i = 0; i < BIG_CONNS; i++) {
    fds[i] = th_connect(f->tokend.socket_path);
    assert_true(fds[i] >= 0);
    th_expect_valid_raw(fds[i], 1, f->token);
  }
  base = th_proc_status_kib(f->tokend.pid, "VmRSS");
  assert_true(base > 0);
  for (i = 0; i < BIG_CONNS; i++) {
    assert_int_equal(th_write_all(fds[i], frame, BIG_REQUEST), 0);
    expect_answer(fds[i], 1);
  }
  free(frame);
  if (!th_memory_measurable()) {
    fprintf(stderr, "  memory check skipped: tokend's memory cannot be "
                    "judged here (sanitizer or wrapper)\n");
  } else {
    /* Poll: the buffers go as each request is handled, before its answer,
     * but allow the kernel's accounting a moment. */
    deadline = th_mono_ms() + TH_IO_TIMEOUT_MS;
    while ((rss = th_proc_status_kib(f->tokend.pid, "VmRSS")) >
               base + BIG_KEEP_KIB &&
           th_mono_ms() < deadline)
      th_sleep_ms(20);
    printf("read buffers: VmRSS %ld KiB with %d idle connections, %ld KiB "
           "after each sent %u bytes\n",
           base, BIG_CONNS, rss, BIG_REQUEST);
    if (rss > base + BIG_KEEP_KIB)
      fail_msg("tokend holds %ld KiB after %d connections each sent one "
               "%u-byte request and went idle (%ld KiB before): their read "
               "buffers did not shrink",
               rss, BIG_CONNS, BIG_REQUEST, base);
  }
  /* None was closed for it. */
  for (i = 0; i < BIG_CONNS; i++) {
    th_expect_valid_raw(fds[i], 2, f->token);
    close(fds[i]);
  }
}

#define READ_MEMORY 262144

/* Waits until tokend has read everything sent on fd (nothing left in its
 * send queue). */
static void wait_taken(int fd) {
  int64_t deadline = th_mono_ms() + TH_IO_TIMEOUT_MS;
  int queued = -1;

  while (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0 &&
         th_mono_ms() < deadline)
    th_sleep_ms(5);
  if (queued != 0)
    fail_msg("tokend did not read what was sent (%d bytes left)", queued);
}

static int setup_read_memory(void **state) {
  static const char *const args[] = {"--max-read-memory", "262144", NULL};

  return th_fixture_setup_token(state, args, DOMAIN, "read-memory");
}

/* --max-read-memory at its edge: a request that takes exactly the limit is
 * read and answered, one byte more is refused RESOURCE_EXHAUSTED and its
 * connection closed; the bound is on all connections together. */
static void test_read_memory_limit_edge(void **state) {
  th_fixture_t *f = *state;
  uint8_t *under = verify_frame_of_size(READ_MEMORY, 1);
  uint8_t *over = verify_frame_of_size(READ_MEMORY + 1, 1);
  uint8_t *half = verify_frame_of_size(200000, 1);
  uint8_t *rest = verify_frame_of_size(100000, 1);
  int fd, a, b;

  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, under, READ_MEMORY), 0);
  expect_answer(fd, 1);
  /* Again on the same connection: its buffer was given back in between. */
  assert_int_equal(th_write_all(fd, under, READ_MEMORY), 0);
  expect_answer(fd, 1);
  th_expect_valid_raw(fd, 3, f->token);
  close(fd);

  /* Refused on its header: the rest need not (and cannot all) be sent. */
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, over, 16384), 0);
  th_expect_error_then_eof(fd, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  close(fd);

  /* Together: a holds 200,000 bytes of a request it has not finished, so
   * b's 100,000-byte one would pass the limit; once a's is handled, b's
   * fits. */
  a = th_connect(f->tokend.socket_path);
  b = th_connect(f->tokend.socket_path);
  assert_true(a >= 0 && b >= 0);
  assert_int_equal(th_write_all(a, half, 100000), 0);
  wait_taken(a);
  assert_int_equal(th_write_all(b, rest, 16384), 0);
  th_expect_error_then_eof(b, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  close(b);
  assert_int_equal(th_write_all(a, half + 100000, 100000), 0);
  expect_answer(a, 1);
  b = th_connect(f->tokend.socket_path);
  assert_true(b >= 0);
  assert_int_equal(th_write_all(b, rest, 100000), 0);
  expect_answer(b, 1);
  close(a);
  close(b);
  free(under);
  free(over);
  free(half);
  free(rest);
}

/* ---- item 9: a client that reads its pipelined answers is served ---- */

#define LIST_TOKENS 1000
#define LIST_CALLS 8
#define ISSUE_BATCH 50
#define SCOPE_CHARS 64

/* Issues LIST_TOKENS tokens in DOMAIN, each with a 100-character label and
 * 32 scopes of 64 characters (about 2.3 KB in a List answer, so that a page
 * of 1,000 is 2.3 MB), pipelined in batches. */
static void issue_many(const th_tokend_t *t) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;
  char label[101], scope_buf[TOKEND_MAX_SCOPES][SCOPE_CHARS + 1];
  char *scopes[TOKEND_MAX_SCOPES];
  Tokend__V1__Response *r = NULL;
  uint8_t *buf = NULL;
  size_t len = 0, done = 0, i, n;
  int fd = th_connect(t->socket_path);

  assert_true(fd >= 0);
  memset(label, 'l', 100);
  label[100] = '\0';
  for (i = 0; i < TOKEND_MAX_SCOPES; i++) {
    memset(scope_buf[i], 's', SCOPE_CHARS);
    snprintf(scope_buf[i], sizeof(scope_buf[i]), "%02zu", i);
    scope_buf[i][2] = 's';
    scope_buf[i][SCOPE_CHARS] = '\0';
    scopes[i] = scope_buf[i];
  }
  ir.domain = DOMAIN;
  ir.label = label;
  ir.scopes = scopes;
  ir.n_scopes = TOKEND_MAX_SCOPES;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &ir;
  while (done < LIST_TOKENS) {
    n = LIST_TOKENS - done < ISSUE_BATCH ? LIST_TOKENS - done : ISSUE_BATCH;
    th_frame_repeat(&buf, &len, &req, done + 1, n);
    assert_int_equal(th_write_all(fd, buf, len), 0);
    free(buf);
    buf = NULL;
    len = 0;
    for (i = 0; i < n; i++) {
      assert_int_equal(th_recv_response(fd, 10 * TH_IO_TIMEOUT_MS, &r), 0);
      if (th_response_code(r) != 0)
        fail_msg("issue %zu: %d (%s)", done + i, th_response_code(r),
                 r->status->message);
      tokend__v1__response__free_unpacked(r, NULL);
    }
    done += n;
  }
  close(fd);
}

/* LIST_CALLS Lists of page_size 1000, framed, call ids 1 to LIST_CALLS. */
static uint8_t *list_frames(size_t *len) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ListRequest lr = TOKEND__V1__LIST_REQUEST__INIT;
  uint8_t *buf = NULL;

  *len = 0;
  lr.domain = DOMAIN;
  lr.page_size = LIST_TOKENS;
  lr.page_token = "";
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST;
  req.list = &lr;
  th_frame_repeat(&buf, len, &req, 1, LIST_CALLS);
  return buf;
}

#ifndef FAULT_INJECT_LIB
#error "FAULT_INJECT_LIB must name the fault_inject shim"
#endif

/* tokend with the fault_inject shim (see fault_inject.c), its database's
 * syncs stallable through the file ctl. */
typedef struct {
  th_fixture_t fx; /* first: th_fixture_teardown frees it */
  char ctl[TH_PATH_BYTES];
  char env_preload[TH_PATH_BYTES + 16];
  char env_dir[TH_PATH_BYTES + 32];
  char env_ctl[TH_PATH_BYTES + 32];
  const char *env[4];
} stall_fixture_t;

static int setup_stallable(void **state) {
  stall_fixture_t *sf = calloc(1, sizeof(*sf));
  th_fixture_t *f = &sf->fx;

  *state = NULL;
  if (sf == NULL || th_tokend_init(&f->tokend) != 0) {
    free(sf);
    return -1;
  }
  snprintf(sf->ctl, sizeof(sf->ctl), "%s/fault", f->tokend.dir);
  snprintf(sf->env_preload, sizeof(sf->env_preload), "LD_PRELOAD=%s",
           FAULT_INJECT_LIB);
  snprintf(sf->env_dir, sizeof(sf->env_dir), "TOKEND_FAULT_DIR=%s",
           f->tokend.dir);
  snprintf(sf->env_ctl, sizeof(sf->env_ctl), "TOKEND_FAULT_CTL=%s", sf->ctl);
  sf->env[0] = sf->env_preload;
  sf->env[1] = sf->env_dir;
  sf->env[2] = sf->env_ctl;
  sf->env[3] = NULL;
  f->tokend.env = sf->env;
  *state = f;
  if (th_tokend_start(&f->tokend, NULL) != 0) {
    th_tokend_destroy(&f->tokend);
    free(sf);
    *state = NULL;
    return -1;
  }
  return 0;
}

/* The issue's case exactly: 8 Lists of 1,000 tokens pipelined (within
 * --max-pending-calls) by a client that reads continuously: about 18 MB of
 * answers, more than --max-queued-bytes-hard (16 MiB). tokend used to make
 * them in one burst and close the client after its first answer. A burst
 * depends on timing (the store worker hands back every job it ran in one
 * batch), so it is made certain: the store is held in a stalled fsync (an
 * Issue on another connection) while the Lists queue behind it. */
static void test_reading_client_gets_all_pipelined_lists(void **state) {
  stall_fixture_t *sf = *state;
  th_fixture_t *f = &sf->fx;
  Tokend__V1__Response *r = NULL;
  size_t len, got = 0, bytes = 0;
  char msg[STATUS_MSG_BYTES];
  uint8_t *frames;
  int fd, writer, rc, i;

  issue_many(&f->tokend);
  frames = list_frames(&len);
  writer = th_connect(f->tokend.socket_path);
  fd = th_connect(f->tokend.socket_path);
  assert_true(writer >= 0 && fd >= 0);
  th_write_file_ok(sf->ctl, "STALL-SYNC", 10, 0600);
  assert_int_equal(th_send_issue(writer, 1, DOMAIN, "stall"), 0);
  /* The Issue is submitted (and the store stalls in its commit) before the
   * Lists are read, so they cannot go ahead of it. */
  wait_taken(writer);
  assert_int_equal(th_write_all(fd, frames, len), 0);
  free(frames);
  /* Once tokend has read the Lists they are queued behind the Issue. */
  wait_taken(fd);
  assert_int_equal(unlink(sf->ctl), 0);
  for (i = 0; i < LIST_CALLS; i++) {
    rc = th_recv_response(fd, 10 * TH_IO_TIMEOUT_MS, &r);
    if (rc != 0)
      fail_msg("after %zu of %d List answers (%zu bytes): %s", got, LIST_CALLS,
               bytes, th_recv_name(rc));
    if (th_response_code(r) != 0)
      fail_msg("List %llu: %d (%s)", (unsigned long long)r->call_id,
               th_response_code(r), r->status->message);
    assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT_LIST);
    assert_int_equal(r->list->n_tokens, LIST_TOKENS);
    bytes += tokend__v1__response__get_packed_size(r);
    got++;
    tokend__v1__response__free_unpacked(r, NULL);
  }
  printf("pipelined Lists: %zu answers, %zu bytes, all read\n", got, bytes);
  assert_true(bytes > 16u * 1024u * 1024u);
  expect_answer(writer, 1);
  /* Still served. */
  assert_int_equal(whoami_status(fd, msg), 0);
  close(fd);
  close(writer);
}

static int setup_small_hard_limit(void **state) {
  static const char *const args[] = {"--max-queued-bytes", "65536",
                                     "--max-queued-bytes-hard", "1048576",
                                     NULL};

  return th_fixture_setup_token(state, args, DOMAIN, "conns");
}

/* The hard limit still protects tokend from a peer that does not read: an
 * answer that would take its unread answers past it closes the
 * connection (here one List page, 2.3 MB, against a 1 MiB hard limit),
 * and others are served meanwhile. */
static void test_non_reader_closed_at_hard_limit(void **state) {
  th_fixture_t *f = *state;
  struct pollfd pfd;
  size_t len;
  uint8_t *frames;
  int fd, other;

  issue_many(&f->tokend);
  frames = list_frames(&len);
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, frames, len), 0);
  free(frames);
  /* Closed by tokend, seen without reading a byte. */
  pfd.fd = fd;
  pfd.events = POLLRDHUP;
  pfd.revents = 0;
  if (poll(&pfd, 1, 10 * TH_IO_TIMEOUT_MS) != 1 ||
      !(pfd.revents & (POLLRDHUP | POLLHUP)))
    fail_msg("tokend did not close a peer that read none of its answers");
  close(fd);
  other = th_connect(f->tokend.socket_path);
  assert_true(other >= 0);
  th_expect_valid_raw(other, 1, f->token);
  close(other);
}

static int setup_short_shutdown(void **state) {
  static const char *const args[] = {"--shutdown-timeout-ms", "200", NULL};

  return th_fixture_setup_token(state, args, DOMAIN, "conns");
}

/* A peer that reads nothing has its List answers held (as rows) at the
 * defaults, not its connection closed; SIGTERM still ends tokend cleanly:
 * held answers are made at shutdown and --shutdown-timeout-ms bounds the
 * wait for the peer. */
static void test_held_answers_do_not_block_shutdown(void **state) {
  th_fixture_t *f = *state;
  size_t len;
  uint8_t *frames;
  int fd;

  issue_many(&f->tokend);
  frames = list_frames(&len);
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, frames, len), 0);
  free(frames);
  wait_taken(fd);
  assert_int_equal(th_tokend_stop_clean(&f->tokend), 0);
  close(fd);
}

static int setup_token(void **state) {
  return th_fixture_setup_token(state, NULL, DOMAIN, "conns");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_reading_client_gets_all_pipelined_lists, setup_stallable,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_non_reader_closed_at_hard_limit,
                                      setup_small_hard_limit,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_held_answers_do_not_block_shutdown,
                                      setup_short_shutdown,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_idle_large_requests_give_memory_back,
                                      setup_token, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_read_memory_limit_edge,
                                      setup_read_memory, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_per_uid_limit_and_operator_reserve,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_fd_soft_limit_raised_at_start,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_fd_hard_limit_too_low_refused,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_out_of_fds_logged_and_served_later,
                                      setup_token, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_socket_in_missing_directory_says_so,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_tokenctl_missing_socket_says_no_such_socket, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_tokenctl_regular_file_is_not_tokend,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_tokenctl_foreign_listener_is_not_tokend, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_tokenctl_silent_listener_is_not_tokend, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_socket_without_permission_names_group, th_fixture_setup,
          th_fixture_teardown),
  };

  /* A refused peer's request may meet a closed socket. */
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
