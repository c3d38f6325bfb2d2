/* Integration tests: tokend under a service manager without one running
 * (issue 16): socket activation ($LISTEN_FDS), readiness and stopping
 * notifications ($NOTIFY_SOCKET), SIGHUP reloading --config, and log lines
 * for journald ($JOURNAL_STREAM) or a log shipper (--log-format json). */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

/* A Unix socket of type type bound at path (listening, for a stream one),
 * as systemd binds a .socket unit's. Fails the test if it cannot. */
static int bind_unix(const char *path, int type) {
  struct sockaddr_un sa;
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

  assert_true(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  assert_true(strlen(path) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, path, strlen(path) + 1);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  if (type == SOCK_STREAM)
    assert_int_equal(listen(fd, 16), 0);
  return fd;
}

/* Waits until the log holds needle; fails the test (with the log) after
 * TH_START_TIMEOUT_MS, or if tokend exited. */
static void wait_for_log(th_tokend_t *t, const char *needle) {
  int64_t deadline = th_mono_ms() + TH_START_TIMEOUT_MS;

  while (!th_file_contains(t->log_path, needle, strlen(needle))) {
    if (th_mono_ms() >= deadline || th_tokend_wait_exit(t, 0) >= 0) {
      th_tokend_dump_log(t);
      fail_msg("no \"%s\" in tokend's log", needle);
    }
    th_sleep_ms(10);
  }
}

/* The next datagram on fd into buf (NUL-terminated), within
 * TH_STOP_TIMEOUT_MS. Fails the test if none comes. */
static void recv_notify(int fd, char *buf, size_t len) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  ssize_t n;

  assert_int_equal(poll(&p, 1, TH_STOP_TIMEOUT_MS), 1);
  n = recv(fd, buf, len - 1, 0);
  assert_true(n > 0);
  buf[n] = '\0';
}

/* Issues a token on path and checks it verifies: path is served. */
static void expect_served(const char *path, uint64_t call_id) {
  char token[TOKEND_TOKEN_BYTES];
  int fd = th_connect(path);

  assert_true(fd >= 0);
  assert_int_equal(th_raw_issue(fd, call_id, "acme", "probe", token), 0);
  th_expect_valid_raw(fd, call_id + 1, token);
  close(fd);
}

/* systemd bound the socket: tokend serves it, binds nothing of its own,
 * and leaves the socket file (systemd's) in place when it stops. */
static void test_socket_activation_serves_the_passed_socket(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char path[TH_PATH_BYTES];
  int lfd;

  snprintf(path, sizeof(path), "%s/act.sock", t->dir);
  lfd = bind_unix(path, SOCK_STREAM);
  t->listen_fd = lfd;
  t->listen_fdname = "tokend";
  assert_int_equal(th_tokend_spawn(t, NULL), 0);
  /* Only tokend holds it now, as only systemd and tokend would. */
  close(lfd);
  wait_for_log(t, "passed by the service manager");
  expect_served(path, 1);
  assert_false(th_path_exists(t->socket_path));
  th_tokend_stop_ok(t);
  assert_true(th_path_exists(path));
}

/* One socket, whatever its name (a .socket unit without
 * FileDescriptorName= names it after the unit), is the API socket. */
static void test_socket_activation_single_socket_any_name(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char path[TH_PATH_BYTES];
  int lfd;

  snprintf(path, sizeof(path), "%s/act.sock", t->dir);
  lfd = bind_unix(path, SOCK_STREAM);
  t->listen_fd = lfd;
  t->listen_fdname = "tokend-api.socket";
  assert_int_equal(th_tokend_spawn(t, NULL), 0);
  close(lfd);
  wait_for_log(t, "passed by the service manager");
  expect_served(path, 1);
  th_tokend_stop_ok(t);
}

/* An HTTP GET of path on the Unix socket sock (or, with sock NULL, on
 * 127.0.0.1:port): the status code of the answer, or -1. */
static int http_status(const char *sock, int port, const char *path) {
  char req[256], buf[512];
  struct sockaddr_in sa;
  ssize_t n;
  size_t len = 0;
  int fd, code = -1;

  if (sock != NULL) {
    fd = th_connect(sock);
  } else {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0)
    return -1;
  snprintf(req, sizeof(req),
           "GET %s HTTP/1.1\r\nHost: x\r\n"
           "Connection: close\r\n\r\n",
           path);
  if (th_write_all(fd, req, strlen(req)) == 0)
    while (len < sizeof(buf) - 1 &&
           (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
      len += (size_t)n;
  buf[len] = '\0';
  close(fd);
  if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
    return -1;
  return code;
}

/* issue 16: the HTTP face's socket passed by name ("http", a second
 * .socket unit's) beside the API socket: tokend serves the --http-listen
 * address from it instead of binding it, and leaves its file (systemd's)
 * when it stops. */
static void test_socket_activation_http_socket_by_name(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char api[TH_PATH_BYTES], http[TH_PATH_BYTES], listen[TH_PATH_BYTES + 8];
  const char *args[] = {"--http-listen", listen, NULL};
  int lfd, hfd;

  snprintf(api, sizeof(api), "%s/act.sock", t->dir);
  snprintf(http, sizeof(http), "%s/http.sock", t->dir);
  snprintf(listen, sizeof(listen), "unix:%s", http);
  lfd = bind_unix(api, SOCK_STREAM);
  hfd = bind_unix(http, SOCK_STREAM);
  t->listen_fd = lfd;
  t->listen_fdname = "tokend";
  t->listen_fd2 = hfd;
  t->listen_fdname2 = "http";
  assert_int_equal(th_tokend_spawn(t, args), 0);
  close(lfd);
  close(hfd);
  wait_for_log(t, "http: listening on unix:");
  assert_true(
      th_file_contains(t->log_path, "(passed by the service manager)\n", 31));
  expect_served(api, 1);
  assert_int_equal(http_status(http, 0, "/healthz"), 200);
  th_tokend_stop_ok(t);
  /* systemd's file: tokend removes neither. */
  assert_true(th_path_exists(api));
  assert_true(th_path_exists(http));
}

/* A passed "http" socket no --http-listen names (a TCP one, here) is
 * served too: the .socket unit is where its address is configured. */
static void test_socket_activation_http_socket_without_flag(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char api[TH_PATH_BYTES];
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int lfd, hfd;

  snprintf(api, sizeof(api), "%s/act.sock", t->dir);
  lfd = bind_unix(api, SOCK_STREAM);
  hfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(hfd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(hfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(hfd, 16), 0);
  assert_int_equal(getsockname(hfd, (struct sockaddr *)&sa, &len), 0);
  t->listen_fd = lfd;
  t->listen_fdname = "tokend";
  t->listen_fd2 = hfd;
  t->listen_fdname2 = "http";
  assert_int_equal(th_tokend_spawn(t, NULL), 0);
  close(lfd);
  close(hfd);
  wait_for_log(t, "http: listening on 127.0.0.1:");
  expect_served(api, 1);
  assert_int_equal(http_status(NULL, ntohs(sa.sin_port), "/healthz"), 200);
  /* No peer identity over TCP: /verify is off without --http-tcp-verify. */
  assert_int_equal(http_status(NULL, ntohs(sa.sin_port), "/verify"), 403);
  th_tokend_stop_ok(t);
}

/* READY=1 once the index is loaded (the STATUS= line counts its tokens)
 * and the socket is served; STOPPING=1 at SIGTERM. */
static void test_notify_ready_after_load_and_stopping(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char path[TH_PATH_BYTES], env[TH_PATH_BYTES + 16], msg[512];
  char token[TOKEND_TOKEN_BYTES];
  const char *envp[2] = {env, NULL};
  int nfd, fd, i;

  /* A database with three tokens to load. */
  assert_int_equal(th_tokend_start(t, NULL), 0);
  fd = th_connect(t->socket_path);
  assert_true(fd >= 0);
  for (i = 0; i < 3; i++)
    assert_int_equal(th_raw_issue(fd, (uint64_t)i + 1, "acme", "n", token), 0);
  close(fd);
  th_tokend_stop_ok(t);

  snprintf(path, sizeof(path), "%s/notify.sock", t->dir);
  nfd = bind_unix(path, SOCK_DGRAM);
  snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", path);
  t->env = envp;
  assert_int_equal(th_tokend_spawn(t, NULL), 0);
  recv_notify(nfd, msg, sizeof(msg));
  assert_non_null(strstr(msg, "READY=1"));
  assert_non_null(strstr(msg, "STATUS=serving 3 tokens on "));
  /* Ready means served: no waiting for the socket. */
  fd = th_connect(t->socket_path);
  assert_true(fd >= 0);
  th_expect_valid_raw(fd, 10, token);
  close(fd);
  assert_int_equal(kill(t->pid, SIGTERM), 0);
  recv_notify(nfd, msg, sizeof(msg));
  assert_non_null(strstr(msg, "STOPPING=1"));
  assert_int_equal(th_tokend_wait_exit(t, TH_STOP_TIMEOUT_MS), 0);
  close(nfd);
}

/* SIGHUP reads --config again: the log level changes, a setting that
 * needs a restart is named, tokend keeps serving; a broken file changes
 * nothing and stops nothing. */
static void test_sighup_reloads_config_and_keeps_serving(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char conf[TH_PATH_BYTES], token[TOKEND_TOKEN_BYTES];
  const char *args[] = {"--config", conf, NULL};
  static const char before[] = "log-level = warn\nmax-connections = 64\n";
  static const char after[] = "# raised\nlog-level = debug\n"
                              "max-connections = 32\ntoken-prefix = other\n";
  static const char broken[] = "log-level = loud\n";
  int fd;

  snprintf(conf, sizeof(conf), "%s/tokend.conf", t->dir);
  th_write_file_ok(conf, before, sizeof(before) - 1, 0600);
  assert_int_equal(th_tokend_start(t, args), 0);
  fd = th_connect(t->socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_raw_issue(fd, 1, "acme", "before", token), 0);

  th_write_file_ok(conf, after, sizeof(after) - 1, 0600);
  assert_int_equal(kill(t->pid, SIGHUP), 0);
  wait_for_log(t, "SIGHUP: log-level: warn -> debug");
  wait_for_log(t, "SIGHUP: max-connections: 64 -> 32");
  wait_for_log(t, "SIGHUP: token-prefix changed (tkd -> other) but needs a "
                  "restart");
  /* The connection from before and a new one are both served. */
  th_expect_valid_raw(fd, 2, token);
  expect_served(t->socket_path, 3);

  th_write_file_ok(conf, broken, sizeof(broken) - 1, 0600);
  assert_int_equal(kill(t->pid, SIGHUP), 0);
  wait_for_log(t, "tokend.conf:1: log-level: must be debug");
  wait_for_log(t, "SIGHUP: the settings are not valid; nothing changed");
  th_expect_valid_raw(fd, 5, token);
  close(fd);
  assert_int_equal(th_tokend_wait_exit(t, 0), -1);
  th_tokend_stop_ok(t);
}

/* GET path with header "name: value" on the Unix socket sock: the status
 * code, or -1. */
static int http_status_with(const char *sock, const char *path,
                            const char *name, const char *value) {
  char req[512], buf[512];
  size_t len = 0;
  ssize_t n;
  int fd = th_connect(sock), code = -1;

  if (fd < 0)
    return -1;
  snprintf(req, sizeof(req),
           "GET %s HTTP/1.1\r\nHost: x\r\n%s: %s\r\n"
           "Connection: close\r\n\r\n",
           path, name, value);
  if (th_write_all(fd, req, strlen(req)) == 0)
    while (len < sizeof(buf) - 1 &&
           (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
      len += (size_t)n;
  buf[len] = '\0';
  close(fd);
  if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
    return -1;
  return code;
}

/* issue 16: SIGHUP applies the HTTP face's verify path and token header
 * at once, and says an HTTP address needs a restart (the old one goes on
 * serving). */
static void test_sighup_reloads_http_settings(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char conf[TH_PATH_BYTES], http[TH_PATH_BYTES], other[TH_PATH_BYTES];
  char text[3 * TH_PATH_BYTES], bearer[TOKEND_TOKEN_BYTES + 16];
  char token[TOKEND_TOKEN_BYTES];
  const char *args[] = {"--config", conf, NULL};
  int fd;

  snprintf(conf, sizeof(conf), "%s/tokend.conf", t->dir);
  snprintf(http, sizeof(http), "%s/http.sock", t->dir);
  snprintf(other, sizeof(other), "%s/other.sock", t->dir);
  snprintf(text, sizeof(text), "http-listen = unix:%s\n", http);
  th_write_file_ok(conf, text, strlen(text), 0600);
  assert_int_equal(th_tokend_start(t, args), 0);
  fd = th_connect(t->socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_raw_issue(fd, 1, "acme", "http", token), 0);
  close(fd);
  snprintf(bearer, sizeof(bearer), "Bearer %s", token);
  assert_int_equal(http_status_with(http, "/verify", "Authorization", bearer),
                   204);

  snprintf(text, sizeof(text),
           "http-listen = unix:%s\nhttp-verify-path = /auth\n"
           "http-token-header = X-Api-Token\nmax-connections = 99\n"
           "previous-pepper-file = /nonexistent/pepper.old\n",
           other);
  th_write_file_ok(conf, text, strlen(text), 0600);
  assert_int_equal(kill(t->pid, SIGHUP), 0);
  wait_for_log(t, "SIGHUP: http-verify-path: /verify -> /auth");
  wait_for_log(t, "SIGHUP: http-token-header: Authorization -> X-Api-Token");
  wait_for_log(t, "SIGHUP: http-listen changed");
  wait_for_log(t, "SIGHUP: the HTTP face keeps max-connections");
  /* A key only the new file names is a change too (restart). */
  wait_for_log(t, "SIGHUP: previous-pepper-file changed ((none) -> "
                  "/nonexistent/pepper.old) but needs a restart");
  wait_for_log(t, "settings changed");
  /* The new path and header at once, on the address it had. */
  assert_int_equal(http_status_with(http, "/auth", "X-Api-Token", token), 204);
  assert_int_equal(http_status_with(http, "/verify", "Authorization", bearer),
                   404);
  assert_false(th_path_exists(other));
  th_tokend_stop_ok(t);
}

/* Under journald (JOURNAL_STREAM names stderr's device and inode) each
 * line starts with its syslog priority and carries no time; with a
 * JOURNAL_STREAM that is not stderr (inherited by a child whose stderr
 * went elsewhere), lines stay plain. */
static void test_journal_stream_priority_prefixes(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char env[64], *log;
  const char *envp[2] = {env, NULL};
  struct stat st;

  th_write_file_ok(t->log_path, "", 0, 0600);
  assert_int_equal(stat(t->log_path, &st), 0);
  snprintf(env, sizeof(env), "JOURNAL_STREAM=%llu:%llu",
           (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
  t->env = envp;
  assert_int_equal(th_tokend_start(t, NULL), 0);
  th_tokend_stop_ok(t);
  log = th_read_file(t->log_path, NULL);
  assert_non_null(log);
  /* The first line, and the one that says it listens, at info: <6>. */
  assert_int_equal(strncmp(log, "<", 1), 0);
  assert_non_null(strstr(log, "\n<6>info  tokend "));
  assert_null(strstr(log, "Z info"));
  free(log);

  th_write_file_ok(t->log_path, "", 0, 0600);
  snprintf(env, sizeof(env), "JOURNAL_STREAM=%llu:%llu",
           (unsigned long long)st.st_dev, (unsigned long long)st.st_ino + 1);
  assert_int_equal(th_tokend_start(t, NULL), 0);
  th_tokend_stop_ok(t);
  log = th_read_file(t->log_path, NULL);
  assert_non_null(log);
  assert_null(strstr(log, "<6>"));
  assert_non_null(strstr(log, "Z info  tokend "));
  free(log);
}

/* --log-format json: every line one object with time, level, message. */
static void test_log_format_json_lines(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  const char *args[] = {"--log-format", "json", NULL};
  char *log, *line, *save = NULL;
  int lines = 0;

  assert_int_equal(th_tokend_start(t, args), 0);
  th_tokend_stop_ok(t);
  log = th_read_file(t->log_path, NULL);
  assert_non_null(log);
  for (line = strtok_r(log, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save)) {
    assert_int_equal(strncmp(line, "{\"time\":\"", 9), 0);
    assert_non_null(strstr(line, ",\"level\":\""));
    assert_non_null(strstr(line, ",\"message\":\""));
    assert_int_equal(line[strlen(line) - 1], '}');
    lines++;
  }
  assert_true(lines >= 2);
  assert_true(th_file_contains(t->log_path, "\"level\":\"info\"", 14));
  free(log);
}

/* tokend --check-config: the effective settings and exit 0; a bad line of
 * the file: exit 2 naming FILE:LINE. Nothing is created either way. */
static void test_check_config_exit_codes(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  char conf[TH_PATH_BYTES];
  const char *argv[] = {TOKEND_BIN,          "--config", conf, "--check-config",
                        "--max-connections", "99",       NULL};
  static const char good[] = "max-connections = 50\nlog-level = warn\n";
  static const char bad[] = "log-level = warn\nmax-conections = 50\n";
  char want[TH_PATH_BYTES + 32];
  th_run_result_t r;

  snprintf(conf, sizeof(conf), "%s/tokend.conf", t->dir);
  th_write_file_ok(conf, good, sizeof(good) - 1, 0600);
  assert_int_equal(th_run(argv, NULL, NULL, TH_START_TIMEOUT_MS, &r), 0);
  th_expect_exit(&r, 0, "tokend --check-config");
  assert_non_null(strstr(r.out, "\nmax-connections = 99\n"));
  assert_non_null(strstr(r.out, "\nlog-level = warn\n"));
  th_run_result_free(&r);
  th_write_file_ok(conf, bad, sizeof(bad) - 1, 0600);
  assert_int_equal(th_run(argv, NULL, NULL, TH_START_TIMEOUT_MS, &r), 0);
  th_expect_exit(&r, 2, "tokend --check-config, bad file");
  snprintf(want, sizeof(want), "%s:2: max-conections: unknown key", conf);
  assert_non_null(strstr(r.err, want));
  th_run_result_free(&r);
  assert_false(th_path_exists(t->db_path));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_socket_activation_serves_the_passed_socket, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_socket_activation_single_socket_any_name, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_socket_activation_http_socket_by_name, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_socket_activation_http_socket_without_flag, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_notify_ready_after_load_and_stopping,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_sighup_reloads_config_and_keeps_serving, th_fixture_setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_sighup_reloads_http_settings,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_journal_stream_priority_prefixes,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_log_format_json_lines,
                                      th_fixture_setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_check_config_exit_codes,
                                      th_fixture_setup, th_fixture_teardown),
  };

  return cmocka_run_group_tests_name("systemd", tests, NULL, NULL);
}
