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

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(void) {
  const struct CMUnitTest tests[] = {
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
          test_socket_without_permission_names_group, th_fixture_setup,
          th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
