/* The HTTP face against real nginx (issue 14, section 1): tokend serves
 * HTTP on a Unix socket; an nginx the test starts itself (as the test's
 * user, its config, pid file, logs and temporary paths in tokend's
 * temporary directory, listening on a Unix socket there) protects
 * locations with auth_request to tokend's /verify and passes the X-Tokend-*
 * headers to an upstream (a second nginx server that echoes them). Every
 * check is a real HTTP request to nginx. /metrics is parsed by Debian's
 * python3-prometheus-client.
 *
 * Exits 77 (skipped) only when nginx is not installed. */
#define _GNU_SOURCE /* strcasestr */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "token.h"

#define NGINX_BIN "/usr/sbin/nginx"
#define PYTHON3_BIN "/usr/bin/python3"
#define RESPONSE_BYTES 65536

typedef struct {
  th_tokend_t tokend;
  tokend_client_t *client;
  pid_t nginx;
  char http_sock[TH_PATH_BYTES];  /* tokend's HTTP face */
  char front_sock[TH_PATH_BYTES]; /* nginx's protected server */
  char nginx_dir[TH_PATH_BYTES];
} fixture_t;

/* One HTTP exchange: status code, the head and the body. */
typedef struct {
  int code;
  char text[RESPONSE_BYTES]; /* head and body, NUL-terminated */
  const char *body;
} http_response_t;

/* GET path over fd (connected; closed here) with extra header lines (each
 * ending "\r\n"; may be ""), Connection: close, into *r. Returns 0, or -1
 * after printing why. */
static int http_get_fd(int fd, const char *path, const char *headers,
                       http_response_t *r) {
  char req[2048];
  size_t len = 0;
  struct pollfd p;
  ssize_t n;
  int rc;

  memset(r, 0, sizeof(*r));
  if (fd < 0)
    return -1;
  snprintf(req, sizeof(req),
           "GET %s HTTP/1.1\r\nHost: test\r\n%sConnection: close\r\n\r\n", path,
           headers);
  if (th_write_all(fd, req, strlen(req)) != 0)
    goto err;
  for (;;) {
    p.fd = fd;
    p.events = POLLIN;
    if ((rc = poll(&p, 1, TH_IO_TIMEOUT_MS)) <= 0) {
      fprintf(stderr, "http_get %s: no answer\n", path);
      goto err;
    }
    n = read(fd, r->text + len, sizeof(r->text) - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      goto err;
    if (n == 0)
      break;
    len += (size_t)n;
    if (len == sizeof(r->text) - 1)
      break;
  }
  close(fd);
  r->text[len] = '\0';
  if (sscanf(r->text, "HTTP/1.%*d %d", &r->code) != 1) {
    fprintf(stderr, "http_get %s: not an HTTP answer: %.80s\n", path, r->text);
    return -1;
  }
  r->body = strstr(r->text, "\r\n\r\n");
  r->body = r->body != NULL ? r->body + 4 : "";
  return 0;
err:
  close(fd);
  return -1;
}

static int http_get(const char *sock, const char *path, const char *headers,
                    http_response_t *r) {
  return http_get_fd(th_connect(sock), path, headers, r);
}

/* A connected TCP socket to 127.0.0.1:port, or -1. */
static int tcp_connect(unsigned port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    fd = -1;
  }
  return fd;
}

/* The value of header name in r's head (case-insensitive name), copied
 * into out; "" if absent. */
static const char *header(const http_response_t *r, const char *name, char *out,
                          size_t len) {
  char key[128];
  const char *p, *end;

  out[0] = '\0';
  snprintf(key, sizeof(key), "\r\n%s:", name);
  p = strcasestr(r->text, key);
  if (p == NULL || (r->body != NULL && p > r->body))
    return out;
  p += strlen(key);
  while (*p == ' ')
    p++;
  end = strstr(p, "\r\n");
  snprintf(out, len, "%.*s", (int)(end != NULL ? end - p : 0), p);
  return out;
}

/* nginx's error log to stderr, to explain a failure. */
static void nginx_dump_log(const fixture_t *f) {
  char path[TH_PATH_BYTES + 32], *text;

  snprintf(path, sizeof(path), "%s/error.log", f->nginx_dir);
  text = th_read_file(path, NULL);
  fprintf(stderr, "nginx's error log:\n%s\n", text != NULL ? text : "(none)");
  free(text);
}

/* GET path from nginx's front with the token as a Bearer credential
 * (NULL: none); fails the test unless it answers want. */
static void get_expect(fixture_t *f, const char *path, const char *token,
                       int want, http_response_t *r) {
  char headers[512];

  headers[0] = '\0';
  if (token != NULL)
    snprintf(headers, sizeof(headers), "Authorization: Bearer %s\r\n", token);
  assert_int_equal(http_get(f->front_sock, path, headers, r), 0);
  if (r->code != want) {
    nginx_dump_log(f);
    th_tokend_dump_log(&f->tokend);
    fail_msg("GET %s: %d, not %d:\n%s", path, r->code, want, r->text);
  }
}

/* A 401 from nginx must carry tokend's WWW-Authenticate and its reason. */
static void expect_401(fixture_t *f, const char *token, const char *reason) {
  http_response_t r;
  char v[256];

  get_expect(f, "/app/", token, 401, &r);
  header(&r, "WWW-Authenticate", v, sizeof(v));
  assert_true(strncmp(v, "Bearer realm=\"tokend\"", 21) == 0);
  if (strcmp(reason, "missing") != 0)
    assert_non_null(strstr(v, "error=\"invalid_token\""));
  assert_string_equal(header(&r, "X-Tokend-Reason", v, sizeof(v)), reason);
  /* The upstream was not reached. */
  assert_null(strstr(r.body, "upstream"));
}

static int write_nginx_conf(fixture_t *f) {
  char path[TH_PATH_BYTES + 32];
  const char *d = f->nginx_dir;
  FILE *out;

  snprintf(path, sizeof(path), "%s/nginx.conf", d);
  if ((out = fopen(path, "w")) == NULL)
    return -1;
  /* As root, nginx would run its workers as nobody, who cannot open
   * tokend's socket (mode 0600): the test's user it is. */
  if (geteuid() == 0)
    fprintf(out, "user root;\n");
  fprintf(out,
          "daemon off;\n"
          "worker_processes 1;\n"
          "pid %s/nginx.pid;\n"
          "error_log %s/error.log warn;\n"
          "events { worker_connections 64; }\n"
          "http {\n"
          "  access_log off;\n"
          "  client_body_temp_path %s/body;\n"
          "  proxy_temp_path %s/proxy;\n"
          "  fastcgi_temp_path %s/fastcgi;\n"
          "  uwsgi_temp_path %s/uwsgi;\n"
          "  scgi_temp_path %s/scgi;\n"
          "  upstream tokend { server unix:%s; keepalive 8; }\n"
          /* The application: echoes what it was given. */
          "  server {\n"
          "    listen unix:%s/upstream.sock;\n"
          "    location / {\n"
          "      default_type text/plain;\n"
          "      return 200 \"upstream id=$http_x_tokend_token_id "
          "domain=$http_x_tokend_domain scopes=$http_x_tokend_scopes "
          "label=$http_x_tokend_label auth=[$http_authorization]\\n\";\n"
          "    }\n"
          "  }\n"
          "  server {\n"
          "    listen unix:%s;\n"
          "    location = /_tokend {\n"
          "      internal;\n"
          "      proxy_pass http://tokend/verify;\n"
          "      proxy_http_version 1.1;\n"
          "      proxy_set_header Connection \"\";\n"
          "      proxy_pass_request_body off;\n"
          "      proxy_set_header Content-Length \"\";\n"
          "    }\n"
          "    location = /_tokend_write {\n"
          "      internal;\n"
          "      proxy_pass http://tokend/verify?scope=write;\n"
          "      proxy_http_version 1.1;\n"
          "      proxy_set_header Connection \"\";\n"
          "      proxy_pass_request_body off;\n"
          "      proxy_set_header Content-Length \"\";\n"
          "    }\n",
          d, d, d, d, d, d, d, f->http_sock, d, f->front_sock);
  fprintf(
      out,
      "    location /app/ {\n"
      "      auth_request /_tokend;\n"
      "      auth_request_set $tokend_id $upstream_http_x_tokend_token_id;\n"
      "      auth_request_set $tokend_domain $upstream_http_x_tokend_domain;\n"
      "      auth_request_set $tokend_scopes $upstream_http_x_tokend_scopes;\n"
      "      auth_request_set $tokend_label $upstream_http_x_tokend_label;\n"
      "      auth_request_set $tokend_reason $upstream_http_x_tokend_reason;\n"
      "      add_header X-Tokend-Reason $tokend_reason always;\n"
      "      proxy_set_header X-Tokend-Token-Id $tokend_id;\n"
      "      proxy_set_header X-Tokend-Domain $tokend_domain;\n"
      "      proxy_set_header X-Tokend-Scopes $tokend_scopes;\n"
      "      proxy_set_header X-Tokend-Label $tokend_label;\n"
      "      proxy_set_header Authorization \"\";\n"
      "      proxy_pass http://unix:%s/upstream.sock;\n"
      "    }\n"
      "    location /write/ {\n"
      "      auth_request /_tokend_write;\n"
      "      auth_request_set $tokend_reason $upstream_http_x_tokend_reason;\n"
      "      add_header X-Tokend-Reason $tokend_reason always;\n"
      "      proxy_set_header Authorization \"\";\n"
      "      proxy_pass http://unix:%s/upstream.sock;\n"
      "    }\n"
      "  }\n"
      "}\n",
      d, d);
  return fclose(out) == 0 ? 0 : -1;
}

/* Starts nginx in the foreground as a child and waits until its front
 * socket accepts a connection. */
static int nginx_start(fixture_t *f) {
  char conf[TH_PATH_BYTES + 32], log[TH_PATH_BYTES + 32];
  int64_t deadline;
  int fd, status;

  snprintf(conf, sizeof(conf), "%s/nginx.conf", f->nginx_dir);
  snprintf(log, sizeof(log), "%s/error.log", f->nginx_dir);
  if (write_nginx_conf(f) != 0)
    return -1;
  if ((f->nginx = fork()) < 0)
    return -1;
  if (f->nginx == 0) {
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    /* -e: the error log before the config is read (the compiled-in one is
     * under /var/log, not the test's). */
    execl(NGINX_BIN, NGINX_BIN, "-p", f->nginx_dir, "-c", conf, "-e", log,
          (char *)NULL);
    _exit(127);
  }
  deadline = th_mono_ms() + TH_START_TIMEOUT_MS;
  while (th_mono_ms() < deadline) {
    if (waitpid(f->nginx, &status, WNOHANG) == f->nginx) {
      f->nginx = 0;
      break;
    }
    if (access(f->front_sock, F_OK) == 0 &&
        (fd = th_connect(f->front_sock)) >= 0) {
      close(fd);
      return 0;
    }
    th_sleep_ms(10);
  }
  fprintf(stderr, "nginx did not start; its log:\n");
  {
    char *text = th_read_file(log, NULL);

    fprintf(stderr, "%s\n", text != NULL ? text : "(none)");
    free(text);
  }
  return -1;
}

static void nginx_stop(fixture_t *f) {
  int status;

  if (f->nginx <= 0)
    return;
  /* SIGQUIT: nginx's graceful stop; it ends its worker itself. */
  kill(f->nginx, SIGQUIT);
  if (waitpid(f->nginx, &status, 0) != f->nginx)
    kill(f->nginx, SIGKILL);
  f->nginx = 0;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  char arg[TH_PATH_BYTES + 8];
  const char *args[] = {"--http-listen", arg, NULL};

  if (f == NULL || th_tokend_init(&f->tokend) != 0)
    goto err;
  snprintf(f->http_sock, sizeof(f->http_sock), "%s/h.sock", f->tokend.dir);
  snprintf(f->front_sock, sizeof(f->front_sock), "%s/front.sock",
           f->tokend.dir);
  snprintf(f->nginx_dir, sizeof(f->nginx_dir), "%s/nginx", f->tokend.dir);
  snprintf(arg, sizeof(arg), "unix:%s", f->http_sock);
  if (mkdir(f->nginx_dir, 0700) != 0 ||
      th_tokend_start(&f->tokend, args) != 0 || nginx_start(f) != 0)
    goto err;
  f->client = th_client_connect_ok(&f->tokend);
  *state = f;
  return 0;
err:
  if (f != NULL) {
    nginx_stop(f);
    th_tokend_destroy(&f->tokend);
    free(f);
  }
  return -1;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  int rc;

  nginx_stop(f);
  tokend_client_close(f->client);
  rc = th_tokend_stop_clean(&f->tokend);
  th_tokend_destroy(&f->tokend);
  free(f);
  return rc;
}

static void issue(fixture_t *f, const char *label, int64_t expires_at,
                  const char *const *scopes, size_t n_scopes,
                  tokend_issued_t *out) {
  tokend_issue_params_t p = {"example.com", label,    expires_at,
                             scopes,        n_scopes, NULL};

  assert_int_equal(tokend_client_issue(f->client, &p, out), 0);
}

/* A valid token reaches the upstream with who it is, forwarded by
 * auth_request_set, and without the credential (stripped by nginx). */
static void test_valid_token_reaches_upstream_with_headers(void **state) {
  fixture_t *f = *state;
  const char *scopes[] = {"read", "write"};
  tokend_issued_t is;
  http_response_t r;
  char want[512];

  issue(f, "ci runner", 0, scopes, 2, &is);
  get_expect(f, "/app/", is.token, 200, &r);
  snprintf(want, sizeof(want),
           "upstream id=%s domain=example.com scopes=read write "
           "label=ci runner auth=[]\n",
           is.info.id);
  assert_string_equal(r.body, want);
  /* The scope the write location asks for: it has it. */
  get_expect(f, "/write/", is.token, 200, &r);
}

static void test_missing_malformed_unknown_401(void **state) {
  fixture_t *f = *state;
  char token[TOKEND_TOKEN_BYTES];

  expect_401(f, NULL, "missing");
  expect_401(f, "not-a-token", "malformed");
  /* Well formed (shape and checksum) but never issued here. */
  assert_int_equal(token_generate("tkd", token), 0);
  expect_401(f, token, "unknown");
}

/* Revoked: refused on the very next request after Revoke returns (no
 * cache between the index and the answer). */
static void test_revoked_refused_on_next_request(void **state) {
  fixture_t *f = *state;
  tokend_issued_t is;
  http_response_t r;

  issue(f, "to revoke", 0, NULL, 0, &is);
  get_expect(f, "/app/", is.token, 200, &r);
  assert_int_equal(
      tokend_client_revoke(f->client, "example.com", is.info.id, NULL, NULL),
      0);
  expect_401(f, is.token, "revoked");
}

static void test_expired_401(void **state) {
  fixture_t *f = *state;
  int64_t expires_at = th_now_ms() + 1000;
  tokend_issued_t is;
  http_response_t r;

  issue(f, "short-lived", expires_at, NULL, 0, &is);
  get_expect(f, "/app/", is.token, 200, &r);
  /* The condition is the clock passing expires_at. */
  while (th_now_ms() <= expires_at)
    th_sleep_ms(20);
  expect_401(f, is.token, "expired");
}

/* A token without the scope the location asks for: 403, the reason and
 * the scope named. */
static void test_wrong_scope_403(void **state) {
  fixture_t *f = *state;
  const char *scopes[] = {"read"};
  tokend_issued_t is;
  http_response_t r;
  char v[256];

  issue(f, "reader", 0, scopes, 1, &is);
  get_expect(f, "/app/", is.token, 200, &r);
  get_expect(f, "/write/", is.token, 403, &r);
  assert_string_equal(header(&r, "X-Tokend-Reason", v, sizeof(v)),
                      "insufficient_scope");
}

/* /metrics parses with the reference Python parser, and counts the
 * verifies this test made over HTTP and the socket alike. */
static void test_metrics_parse_and_count(void **state) {
  fixture_t *f = *state;
  static const char script[] =
      "import sys\n"
      "from prometheus_client.parser import text_string_to_metric_families\n"
      "fams = {m.name: m for m in "
      "text_string_to_metric_families(sys.stdin.read())}\n"
      "def value(name, sample, **labels):\n"
      "    for s in fams[name].samples:\n"
      "        if s.name == sample and all(s.labels.get(k) == v for k, v in "
      "labels.items()):\n"
      "            return s.value\n"
      "    raise SystemExit('no sample %s %s' % (sample, labels))\n"
      "assert fams['tokend_verify'].type == 'counter'\n"
      "assert value('tokend_verify', 'tokend_verify_total', result='valid', "
      "reason='valid') >= 2\n"
      "assert value('tokend_verify', 'tokend_verify_total', "
      "result='invalid', reason='malformed') >= 1\n"
      "assert value('tokend_build_info', 'tokend_build_info') == 1\n"
      "assert fams['tokend_http_verify_duration_seconds'].type == "
      "'histogram'\n"
      "assert value('tokend_http_verify_duration_seconds', "
      "'tokend_http_verify_duration_seconds_count') >= 3\n"
      "assert value('tokend_http_requests', 'tokend_http_requests_total', "
      "method='GET', code='401') >= 1\n"
      "assert value('tokend_index_tokens', 'tokend_index_tokens') >= 1\n"
      "assert value('tokend_tokens', 'tokend_tokens', status='active') >= 1\n"
      "assert value('tokend_tokens', 'tokend_tokens', status='revoked') >= 0\n"
      "assert value('tokend_audit_rows_written', "
      "'tokend_audit_rows_written_total') >= 1\n"
      "assert value('tokend_store_commit_duration_seconds', "
      "'tokend_store_commit_duration_seconds_count') >= 1\n"
      "assert value('tokend_verify_duration_seconds', "
      "'tokend_verify_duration_seconds_count', transport='socket') >= 1\n"
      "assert value('tokend_store_call_duration_seconds', "
      "'tokend_store_call_duration_seconds_count', kind='write') >= 1\n"
      "assert value('tokend_store_call_duration_seconds', "
      "'tokend_store_call_duration_seconds_bucket', kind='write', "
      "le='+Inf') >= 1\n"
      "print('metrics ok: %d families' % len(fams))\n";
  const char *argv[] = {PYTHON3_BIN, "-c", script, NULL};
  tokend_verify_result_t v;
  tokend_issued_t is;
  http_response_t r;
  th_run_result_t run;
  char type[128];

  issue(f, "metrics", 0, NULL, 0, &is);
  get_expect(f, "/app/", is.token, 200, &r);
  expect_401(f, "bad", "malformed");
  th_client_verify_ok(f->client, is.token, &v);
  assert_int_equal(http_get(f->http_sock, "/metrics", "", &r), 0);
  assert_int_equal(r.code, 200);
  assert_non_null(
      strstr(header(&r, "Content-Type", type, sizeof(type)), "version=0.0.4"));
  assert_int_equal(th_run(argv, NULL, r.body, 10000, &run), 0);
  if (run.status != 0)
    fail_msg("the Prometheus parser refused /metrics (%d): %s%s\n%s",
             run.status, run.out, run.err, r.body);
  th_run_result_free(&run);
}

/* /metrics' tokend_tokens_expiring_soon for example.com (0: no sample). */
static long expiring_soon(fixture_t *f) {
  static const char name[] =
      "tokend_tokens_expiring_soon{domain=\"example.com\"} ";
  http_response_t r;
  const char *p;

  assert_int_equal(http_get(f->http_sock, "/metrics", "", &r), 0);
  assert_int_equal(r.code, 200);
  p = strstr(r.body, name);
  return p != NULL ? strtol(p + strlen(name), NULL, 10) : 0;
}

/* issue 17: /verify says the token's metadata (X-Tokend-Metadata, the
 * compact JSON), and /metrics counts the tokens expiring within 7 days per
 * domain. */
static void test_metadata_header_and_expiring_soon_metric(void **state) {
  fixture_t *f = *state;
  tokend_issue_params_t p = {"example.com", "meta", 0,
                             NULL,          0,      "{ \"plan\": \"pro\" }"};
  tokend_issued_t is, soon, later;
  http_response_t r;
  char hdr[512], v[128];
  long before;

  assert_int_equal(tokend_client_issue(f->client, &p, &is), 0);
  snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", is.token);
  assert_int_equal(http_get(f->http_sock, "/verify", hdr, &r), 0);
  assert_int_equal(r.code, 204);
  assert_string_equal(header(&r, "X-Tokend-Metadata", v, sizeof(v)),
                      "{\"plan\":\"pro\"}");

  before = expiring_soon(f);
  issue(f, "soon", th_now_ms() + 3600 * 1000, NULL, 0, &soon);
  issue(f, "later", th_now_ms() + 30LL * 24 * 3600 * 1000, NULL, 0, &later);
  assert_int_equal(expiring_soon(f), before + 1);
  tokend_client_wipe(&is);
  tokend_client_wipe(&soon);
  tokend_client_wipe(&later);
}

static void test_healthz_readyz(void **state) {
  fixture_t *f = *state;
  http_response_t r;

  assert_int_equal(http_get(f->http_sock, "/healthz", "", &r), 0);
  assert_int_equal(r.code, 200);
  assert_int_equal(http_get(f->http_sock, "/readyz", "", &r), 0);
  assert_int_equal(r.code, 200);
  assert_int_equal(http_get(f->http_sock, "/nowhere", "", &r), 0);
  assert_int_equal(r.code, 404);
}

/* A second tokend whose only verifier and operator is another uid: the
 * kernel names this test's process as the peer, and it may not verify. */
static void test_unix_peer_not_verifier_403(void **state) {
  th_tokend_t t;
  char sock[TH_PATH_BYTES + 16], arg[TH_PATH_BYTES + 32], v[64];
  const char *args[] = {
      "--http-listen", arg, "--verifier-uid", "65534", "--operator-uid",
      "65534",         NULL};
  http_response_t r;

  (void)state;
  assert_int_equal(th_tokend_init(&t), 0);
  snprintf(sock, sizeof(sock), "%s/h.sock", t.dir);
  snprintf(arg, sizeof(arg), "unix:%s", sock);
  assert_int_equal(th_tokend_start(&t, args), 0);
  assert_int_equal(
      http_get(sock, "/verify", "Authorization: Bearer tkd_x\r\n", &r), 0);
  assert_int_equal(r.code, 403);
  assert_string_equal(header(&r, "X-Tokend-Reason", v, sizeof(v)),
                      "not_verifier");
  /* Health and metrics are not Verify: anyone who can open the socket. */
  assert_int_equal(http_get(sock, "/healthz", "", &r), 0);
  assert_int_equal(r.code, 200);
  assert_int_equal(th_tokend_stop_clean(&t), 0);
  th_tokend_destroy(&t);
}

/* TCP has no peer identity: /verify there is refused unless
 * --http-tcp-verify says anyone who reaches the port may verify. */
static void test_tcp_verify_needs_flag(void **state) {
  static const char *const with[] = {"--http-listen", "127.0.0.1:0",
                                     "--http-tcp-verify", NULL};
  static const char *const without[] = {"--http-listen", "127.0.0.1:0", NULL};
  const char *const *args[] = {without, with};
  int want[] = {403, 401};
  http_response_t r;
  th_tokend_t t;
  char *log, *at;
  unsigned port;
  int i;

  (void)state;
  for (i = 0; i < 2; i++) {
    assert_int_equal(th_tokend_init(&t), 0);
    assert_int_equal(th_tokend_start(&t, args[i]), 0);
    /* Port 0 picked one; the log names it (written before the main
     * socket listens, which th_tokend_start waited for). */
    log = th_read_file(t.log_path, NULL);
    assert_non_null(log);
    at = strstr(log, "http: listening on 127.0.0.1:");
    assert_non_null(at);
    assert_int_equal(sscanf(at, "http: listening on 127.0.0.1:%u", &port), 1);
    free(log);
    assert_int_equal(http_get_fd(tcp_connect(port), "/verify",
                                 "Authorization: Bearer tkd_x\r\n", &r),
                     0);
    assert_int_equal(r.code, want[i]);
    assert_int_equal(th_tokend_stop_clean(&t), 0);
    th_tokend_destroy(&t);
  }
}

/* Starts t with its HTTP face on <dir>/h.sock (into sock) and the extra
 * flags (up to 6, NULL-terminated; may be NULL). */
static void start_with_http(th_tokend_t *t, char sock[TH_PATH_BYTES + 16],
                            const char *const *extra) {
  static char arg[TH_PATH_BYTES + 32];
  const char *args[10] = {"--http-listen", arg};
  size_t n = 2;

  assert_int_equal(th_tokend_init(t), 0);
  snprintf(sock, TH_PATH_BYTES + 16, "%s/h.sock", t->dir);
  snprintf(arg, sizeof(arg), "unix:%s", sock);
  while (extra != NULL && *extra != NULL && n < 8)
    args[n++] = *extra++;
  args[n] = NULL;
  assert_int_equal(th_tokend_start(t, args), 0);
}

/* Reads from fd until count HTTP status lines have come or the peer
 * closes; returns the text read (NUL-terminated in buf). */
static size_t read_answers(int fd, char *buf, size_t cap, int count) {
  size_t len = 0;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  const char *at;
  ssize_t n;
  int seen;

  buf[0] = '\0';
  for (;;) {
    for (seen = 0, at = buf; (at = strstr(at, "HTTP/1.1 ")) != NULL; at++)
      seen++;
    if (seen >= count || len == cap - 1 || poll(&p, 1, TH_IO_TIMEOUT_MS) <= 0)
      break;
    if ((n = read(fd, buf + len, cap - 1 - len)) <= 0)
      break;
    len += (size_t)n;
    buf[len] = '\0';
  }
  return len;
}

/* Keep-alive and pipelining: three requests written at once on one
 * connection get three answers, in order, on it. */
static void test_pipelined_requests_answered_in_order(void **state) {
  static const char reqs[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                             "GET /verify HTTP/1.1\r\nHost: t\r\n\r\n"
                             "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n";
  char sock[TH_PATH_BYTES + 16], *buf = malloc(RESPONSE_BYTES);
  const char *a, *b, *c;
  th_tokend_t t;
  int fd;

  (void)state;
  assert_non_null(buf);
  start_with_http(&t, sock, NULL);
  fd = th_connect(sock);
  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, reqs, sizeof(reqs) - 1), 0);
  read_answers(fd, buf, RESPONSE_BYTES, 3);
  a = strstr(buf, "HTTP/1.1 200");
  b = strstr(buf, "HTTP/1.1 401");
  c = strstr(buf, "HTTP/1.1 404");
  if (a == NULL || b == NULL || c == NULL || !(a < b && b < c))
    fail_msg("three answers in order expected:\n%s", buf);
  close(fd);
  free(buf);
  assert_int_equal(th_tokend_stop_clean(&t), 0);
  th_tokend_destroy(&t);
}

/* A malformed header line, or HTTP/1.1 without Host, gets a 400; a header
 * section past the limit a 4xx (libmicrohttpd's 431), never a 5xx or a
 * silent close. (A first line that is no request line at all is closed
 * without an answer: libmicrohttpd's way.) */
static void test_malformed_and_oversized_requests_4xx(void **state) {
  char sock[TH_PATH_BYTES + 16], *buf = malloc(RESPONSE_BYTES);
  char *big = malloc(40000);
  th_tokend_t t;
  int fd, code;

  (void)state;
  assert_non_null(buf);
  assert_non_null(big);
  start_with_http(&t, sock, NULL);
  fd = th_connect(sock);
  assert_true(fd >= 0);
  assert_int_equal(
      th_write_all(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n",
                   43),
      0);
  read_answers(fd, buf, RESPONSE_BYTES, 1);
  assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &code), 1);
  assert_int_equal(code, 400);
  close(fd);
  fd = th_connect(sock);
  assert_true(fd >= 0);
  assert_int_equal(th_write_all(fd, "GET /healthz HTTP/1.1\r\n\r\n", 25), 0);
  read_answers(fd, buf, RESPONSE_BYTES, 1);
  assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &code), 1);
  assert_int_equal(code, 400);
  close(fd);
  /* 32 KiB of header: twice what one request may bring. */
  snprintf(big, 40000, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
  memset(big + strlen(big), 'a', 32768);
  memcpy(big + strlen("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ") + 32768,
         "\r\n\r\n", 5);
  fd = th_connect(sock);
  assert_true(fd >= 0);
  (void)th_write_all(fd, big, strlen(big));
  read_answers(fd, buf, RESPONSE_BYTES, 1);
  assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &code), 1);
  assert_true(code >= 400 && code < 500);
  close(fd);
  free(big);
  free(buf);
  assert_int_equal(th_tokend_stop_clean(&t), 0);
  th_tokend_destroy(&t);
}

/* tokend_connections_refused_total{transport="socket"} now. */
static long refused_now(const char *sock) {
  static const char key[] = "tokend_connections_refused_total{"
                            "transport=\"socket\"} ";
  http_response_t r;
  const char *at;
  long n = -1;

  assert_int_equal(http_get(sock, "/metrics", "", &r), 0);
  assert_int_equal(r.code, 200);
  at = strstr(r.body, key);
  assert_non_null(at);
  assert_int_equal(sscanf(at + strlen(key), "%ld", &n), 1);
  return n;
}

/* A connection the main socket refuses for a limit is counted in
 * /metrics. The test's user is made a non-operator (operators are exempt
 * from the per-uid limit). */
static void test_refused_connection_counted(void **state) {
  static const char *const extra[] = {"--max-connections-per-uid", "1",
                                      "--operator-uid", "65534", NULL};
  char sock[TH_PATH_BYTES + 16];
  Tokend__V1__Response *resp;
  th_tokend_t t;
  int64_t deadline;
  long before;
  int a, b, code;

  (void)state;
  start_with_http(&t, sock, extra);
  /* The harness's probe connection may still count for a moment after it
   * closed: retry until one connection is served, and count from there. */
  deadline = th_mono_ms() + TH_IO_TIMEOUT_MS;
  for (;;) {
    a = th_connect(t.socket_path);
    assert_true(a >= 0);
    /* A refused one may be closed before the request is even written. */
    code = -1;
    if (th_send_verify(a, 1, "tkd_none") == 0 &&
        th_recv_response(a, TH_IO_TIMEOUT_MS, &resp) == 0) {
      code = th_response_code(resp);
      tokend__v1__response__free_unpacked(resp, NULL);
    }
    if (code == 0)
      break;
    close(a);
    assert_true(th_mono_ms() < deadline);
    th_sleep_ms(10);
  }
  before = refused_now(sock);
  b = th_connect(t.socket_path);
  assert_true(b >= 0);
  /* The second is answered RESOURCE_EXHAUSTED and closed. */
  th_expect_error_then_eof(b, TOKEND_GRPC_RESOURCE_EXHAUSTED);
  assert_int_equal(refused_now(sock), before + 1);
  close(a);
  close(b);
  assert_int_equal(th_tokend_stop_clean(&t), 0);
  th_tokend_destroy(&t);
}

/* GET path on sock until it answers want (the condition /readyz follows),
 * within TH_IO_TIMEOUT_MS; the last answer in *r. */
static void wait_for_code(const char *sock, const char *path, int want,
                          http_response_t *r) {
  int64_t deadline = th_mono_ms() + TH_IO_TIMEOUT_MS;

  for (;;) {
    assert_int_equal(http_get(sock, path, "", r), 0);
    if (r->code == want)
      return;
    if (th_mono_ms() >= deadline)
      fail_msg("GET %s: still %d, not %d: %s", path, r->code, want, r->body);
    th_sleep_ms(20);
  }
}

/* /readyz says "not ready" while the store's writes fail (the fault
 * injection shim fails the database's writes), with why, and ready again
 * once they work. */
static void test_readyz_follows_store_writes(void **state) {
  static const char *const extra[] = {"--flush-interval-ms",
                                      "50",
                                      "--last-used-granularity-ms",
                                      "0",
                                      "--flush-backoff-max-ms",
                                      "200",
                                      NULL};
  char sock[TH_PATH_BYTES + 16], data[TH_PATH_BYTES], ctl[TH_PATH_BYTES + 8];
  char env_preload[TH_PATH_BYTES + 16], env_dir[TH_PATH_BYTES + 32];
  char env_ctl[TH_PATH_BYTES + 32], auth[TOKEND_TOKEN_BYTES + 32];
  const char *env[4];
  tokend_client_t *c;
  tokend_issued_t is;
  http_response_t r;
  th_tokend_t t;

  (void)state;
  assert_int_equal(th_tokend_init(&t), 0);
  /* The database in a folder of its own: only its writes are failed, not
   * the log's. */
  snprintf(data, sizeof(data), "%s/data", t.dir);
  assert_int_equal(mkdir(data, 0700), 0);
  snprintf(t.db_path, sizeof(t.db_path), "%s/data/tokend.db", t.dir);
  snprintf(ctl, sizeof(ctl), "%s/fault", t.dir);
  snprintf(env_preload, sizeof(env_preload), "LD_PRELOAD=%s", FAULT_INJECT_LIB);
  snprintf(env_dir, sizeof(env_dir), "TOKEND_FAULT_DIR=%s", data);
  snprintf(env_ctl, sizeof(env_ctl), "TOKEND_FAULT_CTL=%s", ctl);
  env[0] = env_preload;
  env[1] = env_dir;
  env[2] = env_ctl;
  env[3] = NULL;
  t.env = env;
  {
    static char arg[TH_PATH_BYTES + 32];
    const char *args[10] = {"--http-listen", arg};
    size_t n = 2, i;

    snprintf(sock, sizeof(sock), "%s/h.sock", t.dir);
    snprintf(arg, sizeof(arg), "unix:%s", sock);
    for (i = 0; extra[i] != NULL; i++)
      args[n++] = extra[i];
    args[n] = NULL;
    assert_int_equal(th_tokend_start(&t, args), 0);
  }
  c = th_client_connect_ok(&t);
  th_client_issue_ok(c, "example.com", "ready", 0, &is);
  snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", is.token);
  wait_for_code(sock, "/readyz", 200, &r);

  th_write_file_ok(ctl, "EIO", 3, 0600);
  /* A use to write back: the next write-back fails. */
  assert_int_equal(http_get(sock, "/verify", auth, &r), 0);
  assert_int_equal(r.code, 204);
  wait_for_code(sock, "/readyz", 503, &r);
  assert_non_null(strstr(r.body, "not ready: store writes failing"));
  /* Verify still answers from memory. */
  assert_int_equal(http_get(sock, "/verify", auth, &r), 0);
  assert_int_equal(r.code, 204);

  th_write_file_ok(ctl, "", 0, 0600);
  wait_for_code(sock, "/readyz", 200, &r);
  tokend_client_close(c);
  assert_int_equal(th_tokend_stop_clean(&t), 0);
  th_tokend_destroy(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_token_reaches_upstream_with_headers),
      cmocka_unit_test(test_missing_malformed_unknown_401),
      cmocka_unit_test(test_revoked_refused_on_next_request),
      cmocka_unit_test(test_expired_401),
      cmocka_unit_test(test_wrong_scope_403),
      cmocka_unit_test(test_metrics_parse_and_count),
      cmocka_unit_test(test_metadata_header_and_expiring_soon_metric),
      cmocka_unit_test(test_healthz_readyz),
  };
  /* tokend alone, no nginx */
  const struct CMUnitTest alone[] = {
      cmocka_unit_test(test_unix_peer_not_verifier_403),
      cmocka_unit_test(test_tcp_verify_needs_flag),
      cmocka_unit_test(test_pipelined_requests_answered_in_order),
      cmocka_unit_test(test_malformed_and_oversized_requests_4xx),
      cmocka_unit_test(test_refused_connection_counted),
      cmocka_unit_test(test_readyz_follows_store_writes),
  };
  int failed;

  /* Without nginx the tests of tokend alone still run; the ctest entry is
   * then skipped (77) if they pass, so that nginx's absence shows. */
  failed = cmocka_run_group_tests_name("http_alone", alone, NULL, NULL);
  if (access(NGINX_BIN, X_OK) != 0) {
    printf("skipped: the nginx tests: %s is not installed "
           "(scripts/install-deps.sh installs it)\n",
           NGINX_BIN);
    return failed != 0 ? failed : 77;
  }
  return failed +
         cmocka_run_group_tests_name("http_nginx", tests, setup, teardown);
}
