/* fuzz_server: libFuzzer target that sends arbitrary bytes to a real tokend
 * connection: frame decoding (common/frame.c via server/net/conn.c), request
 * decoding and dispatch (server/rpc/), and the store worker on an
 * in-memory SQLite database.
 *
 * An input is one byte that picks the peer, then the bytes that peer sends.
 * The peer is, by that byte modulo 3: 0, the operator the harness really
 * is; 1, a domain admin (FUZZ_ADMIN_USER); 2, a peer with no role but the
 * default verifier one; so every authorization path is reached.
 *
 * One server_t lives for the whole process (its socket and pepper in a
 * mkdtemp directory). For each input the harness opens one end of a
 * socketpair with net_open_fd(), writes the bytes into the other end in a
 * few pieces whose sizes are drawn from a hash of the input (so frames get
 * split across reads, the same way for the same input), half-closes it and
 * runs the loop until the connection has closed and no store job is in
 * flight, reading every answer meanwhile. Every answer must be a whole frame
 * holding a Response with a status; a Response with a non-OK status carries
 * no result. A hang (the connection never closes) aborts with the server's
 * state.
 *
 * The server's log lines are all formatted, at every level; none may be an
 * error (the server found itself inconsistent or failing) and none, nor any
 * answer, may hold a stored token's secret that the input sent only as a
 * Verify's token (the link wraps log_msg; see CMakeLists.txt). A peer with no
 * role, or a domain admin, must never get a result beyond its rights.
 *
 * The fixtures in fuzz_fixtures.h (tokens, and a domain admin) are stored
 * before the first input. An input that changes what the store holds in a
 * way later answers could show (a token issued or revoked, an admin granted
 * or removed) makes the harness rebuild the server before the next input,
 * so every input meets the same tokens and admins and a crash reproduces
 * from its input alone. The audit log is the exception: it is rebuilt only
 * every FUZZ_REBUILD_EVERY inputs, so a ListAuditEvents answer may show
 * events of the inputs before.
 *
 * Run it with `make fuzz`, or by hand (FUZZ_SERVER_TRACE=1 prints every
 * answer and log line, e.g. to see what a reproducer does):
 *   build-fuzz/tests/fuzz/fuzz_server -max_len=65536 -timeout=10 \
 *       /tmp/corpus tests/fuzz/corpus */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "core/index.h"
#include "frame.h"
#include "fuzz_fixtures.h"
#include "log.h"
#include "net/net.h"
#include "rpc/internal.h"
#include "server.h"
#include "store/worker.h"
#include "token.h"
#include "tokend.pb-c.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void __wrap_log_msg(log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void __wrap_rpc_backup(rpc_t *r, sink_t *k, uint64_t call_id,
                       const authz_actor_t *actor,
                       const Tokend__V1__Request *req);

/* Backup creates a file wherever an operator names, and the harness is an
 * operator (root, in CI) sending random paths: the call is answered, never
 * run (-Wl,--wrap=rpc_backup). */
void __wrap_rpc_backup(rpc_t *r, sink_t *k, uint64_t call_id,
                       const authz_actor_t *actor,
                       const Tokend__V1__Request *req) {
  (void)actor;
  (void)req;
  rpc_send_error(r, k, call_id, TOKEND_EPERM,
                 "Backup writes files: not run by the fuzzer");
}

/* How long one input may take before the harness calls it a hang; below
 * the -timeout=10 that `make fuzz` passes, so the harness explains first. */
#define FUZZ_WAIT_MS 5000
/* At most this many separate writes per input; the rest goes in one. */
#define FUZZ_MAX_PIECES 8
/* Fixtures are created at this time (fixed, so runs are alike). */
#define FUZZ_CREATED_AT 1700000000000LL
/* Bounds the audit log, which every refused or accepted write appends to. */
#define FUZZ_REBUILD_EVERY 1024

typedef struct {
  store_job_t job; /* first: the done callback casts back */
  int done;
} fixture_job_t;

/* What the peer end has received and not yet parsed. */
typedef struct {
  uint8_t *buf;
  size_t len, cap;
  size_t responses;
  int eof;
} fuzz_peer_t;

static server_t g_server;
static int g_server_up;
static char g_dir[] = "/tmp/tokend-fuzz-XXXXXX";
static config_t g_cfg;
static uint8_t g_fixture_hash[FUZZ_TOKEN_COUNT][TOKEND_HASH_BYTES];
static uint64_t g_baseline;   /* server_fingerprint() after the fixtures */
static unsigned g_inputs_run; /* since the server was last built */
static int g_trace;    /* $FUZZ_SERVER_TRACE: print each answer to stderr */
static unsigned g_who; /* the peer of the current input (see peer_as) */
static int g_secret_exempt; /* see secret_outside_verify() */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
__attribute__((noreturn));

static void die(const char *fmt, ...) {
  va_list ap;

  fprintf(stderr, "fuzz_server: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  abort();
}

/* How many times the secrets of the stored tokens occur in buf. */
static size_t count_secrets(const void *buf, size_t len) {
  const char *p, *end = (const char *)buf + len;
  size_t i, n = 0;

  for (i = 0; i < FUZZ_TOKEN_COUNT; i++)
    for (p = buf; (p = memmem(p, (size_t)(end - p), fuzz_fixtures[i].body,
                              TOKEND_TOKEN_BODY_CHARS)) != NULL;
         p += TOKEND_TOKEN_BODY_CHARS)
      n++;
  return n;
}

/* A peer may put a stored token's secret into a field the server keeps and
 * shows (a label, a domain, a user): that is data, not a leak. Returns 1 if
 * the stream carries a secret anywhere but in a Verify's token, the one
 * field meant for secrets; such an input is exempt from the secret checks
 * and the server is rebuilt after it. */
static int secret_outside_verify(const uint8_t *buf, size_t len) {
  const uint8_t *body;
  uint32_t body_len;
  size_t off = 0, consumed, in_verify = 0, total = count_secrets(buf, len);
  Tokend__V1__Request *req;

  if (total == 0)
    return 0;
  while (frame_decode(buf + off, len - off, g_cfg.max_frame_bytes, &body,
                      &body_len, &consumed) == FRAME_OK) {
    req = tokend__v1__request__unpack(NULL, body_len, body);
    if (req != NULL && req->method_case == TOKEND__V1__REQUEST__METHOD_VERIFY)
      in_verify +=
          count_secrets(req->verify->token, strlen(req->verify->token));
    /* issue 17: Lookup's token is the other field meant for a secret. */
    if (req != NULL && req->method_case == TOKEND__V1__REQUEST__METHOD_LOOKUP)
      in_verify +=
          count_secrets(req->lookup->token, strlen(req->lookup->token));
    tokend__v1__request__free_unpacked(req, NULL);
    off += consumed;
  }
  return total > in_verify;
}

/* Every log call of the server lands here (-Wl,--wrap=log_msg). */
void __wrap_log_msg(log_level_t level, const char *fmt, ...) {
  char line[1024];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (level >= LOG_ERROR)
    die("the server logged an error: %s", line);
  if (!g_secret_exempt && count_secrets(line, strlen(line)) > 0)
    die("the server logged a token secret: %s", line);
  if (g_trace)
    fprintf(stderr, "fuzz_server: log %d: %s\n", (int)level, line);
}

static void fixture_done(store_job_t *job) { ((fixture_job_t *)job)->done = 1; }

static void fixture_submit(server_t *s, fixture_job_t *j,
                           store_job_kind_t kind) {
  j->job.kind = kind;
  j->job.done = fixture_done;
  store_worker_submit(s->worker, &j->job);
}

/* Stores the fixtures through the server's own store worker and applies
 * them in memory, as the done callbacks in rpc/tokens.c and rpc/admins.c would.
 */
static void fixtures_load(server_t *s) {
  fixture_job_t issue[FUZZ_TOKEN_COUNT], revoke[FUZZ_TOKEN_COUNT], grant;
  char tok[TOKEND_TOKEN_BYTES];
  size_t i, n_revoke = 0, pending;
  domain_t *d;
  index_entry_t *e;

  memset(issue, 0, sizeof(issue));
  memset(revoke, 0, sizeof(revoke));
  memset(&grant, 0, sizeof(grant));
  for (i = 0; i < FUZZ_TOKEN_COUNT; i++) {
    const fuzz_fixture_t *f = &fuzz_fixtures[i];
    store_token_t *row = &issue[i].job.u.issue.row;

    fuzz_token_string(f->body, tok);
    if (token_check(tok, strlen(tok)) != 0)
      die("fixture %zu: %s is not a well-formed token", i, tok);
    token_hash(tok, strlen(tok), s->pepper, row->hash);
    memcpy(g_fixture_hash[i], row->hash, TOKEND_HASH_BYTES);
    token_hint(tok, strlen(tok), row->hint);
    snprintf(row->id, sizeof(row->id), "%s", f->id);
    snprintf(row->domain, sizeof(row->domain), "%s", f->domain);
    snprintf(row->label, sizeof(row->label), "%s", f->label);
    snprintf(row->scopes, sizeof(row->scopes), "%s", f->scopes);
    snprintf(row->created_by, sizeof(row->created_by), "%s", f->created_by);
    row->created_at = FUZZ_CREATED_AT;
    row->expires_at = f->expires_at;
    fixture_submit(s, &issue[i], STORE_JOB_ISSUE);
    if (f->revoked_at != 0) {
      fixture_job_t *r = &revoke[n_revoke++];

      snprintf(r->job.u.revoke.domain, sizeof(r->job.u.revoke.domain), "%s",
               f->domain);
      snprintf(r->job.u.revoke.id, sizeof(r->job.u.revoke.id), "%s", f->id);
      snprintf(r->job.u.revoke.by, sizeof(r->job.u.revoke.by), "uid:0");
      r->job.u.revoke.now = f->revoked_at;
      fixture_submit(s, r, STORE_JOB_REVOKE);
    }
  }
  snprintf(grant.job.u.grant.domain, sizeof(grant.job.u.grant.domain), "%s",
           FUZZ_ADMIN_DOMAIN);
  snprintf(grant.job.u.grant.user, sizeof(grant.job.u.grant.user), "%s",
           FUZZ_ADMIN_USER);
  snprintf(grant.job.u.grant.by, sizeof(grant.job.u.grant.by), "uid:0");
  grant.job.u.grant.now = FUZZ_CREATED_AT;
  fixture_submit(s, &grant, STORE_JOB_GRANT);
  do {
    uv_run(&s->loop, UV_RUN_ONCE);
    pending = !grant.done;
    for (i = 0; i < FUZZ_TOKEN_COUNT; i++)
      pending += !issue[i].done + (i < n_revoke && !revoke[i].done);
  } while (pending > 0);

  for (i = 0; i < FUZZ_TOKEN_COUNT; i++) {
    store_token_t *row = &issue[i].job.u.issue.row;

    if (issue[i].job.result != 0)
      die("fixture %zu: store: %s", i, issue[i].job.errmsg);
    d = domains_get(&s->domains, row->domain);
    if (d == NULL || index_insert(s->index, row, d) != 0)
      die("fixture %zu: cannot index it", i);
  }
  for (i = 0; i < n_revoke; i++) {
    if (revoke[i].job.result != 0)
      die("fixture revoke %zu: store: %s", i, revoke[i].job.errmsg);
    e = index_find(s->index, revoke[i].job.u.revoke.hash);
    if (e == NULL)
      die("fixture revoke %zu: not in the index", i);
    e->revoked_at = revoke[i].job.u.revoke.revoked_at;
  }
  if (grant.job.result != 0 ||
      domains_admin_add(&s->domains, FUZZ_ADMIN_DOMAIN, FUZZ_ADMIN_USER,
                        grant.job.u.grant.granted_at, "uid:0") != 0)
    die("fixture admin: %s", grant.job.errmsg);
  sodium_memzero(tok, sizeof(tok));
}

/* FNV-1a over len bytes, continuing from h. */
static uint64_t fnv(uint64_t h, const void *buf, size_t len) {
  const uint8_t *p = buf;
  size_t i;

  for (i = 0; i < len; i++)
    h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

/* What later answers could show of the server's state: how many tokens it
 * holds, whether each fixture is revoked, and every domain's admins (summed,
 * since their order is not kept). */
static uint64_t server_fingerprint(const server_t *s) {
  uint64_t h = 1469598103934665603ULL, admins = 0;
  size_t n = index_count(s->index), i;
  const domain_t *d, *tmp;
  const index_entry_t *e;

  h = fnv(h, &n, sizeof(n));
  for (i = 0; i < FUZZ_TOKEN_COUNT; i++) {
    e = index_find(s->index, g_fixture_hash[i]);
    h = fnv(h, e != NULL ? (const void *)&e->revoked_at : "", 8);
  }
  HASH_ITER(hh, s->domains.table, d, tmp) {
    uint64_t dh = fnv(1469598103934665603ULL, d->name, strlen(d->name));

    for (i = 0; i < d->n_admins; i++)
      admins += fnv(dh, d->admins[i].user, strlen(d->admins[i].user));
  }
  return fnv(h, &admins, sizeof(admins));
}

static void server_up(void) {
  struct sigaction old_int, old_term;

  /* SIGINT and SIGTERM stay libFuzzer's (stop fuzzing, keep the corpus):
   * the server must not start a graceful shutdown under the fuzzer. */
  sigaction(SIGINT, NULL, &old_int);
  sigaction(SIGTERM, NULL, &old_term);
  /* As main.c composes it. */
  if (server_init(&g_server, &g_cfg) != 0 || server_rpc_new(&g_server) != 0 ||
      server_net_new(&g_server) != 0 || server_listen(&g_server) != 0)
    die("tokend's start-up failed (see the line above)");
  uv_signal_stop(&g_server.sigint);
  uv_signal_stop(&g_server.sigterm);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  fixtures_load(&g_server);
  g_baseline = server_fingerprint(&g_server);
  g_inputs_run = 0;
  g_server_up = 1;
}

static void server_down(void) {
  if (!g_server_up)
    return;
  server_cleanup(&g_server);
  g_server_up = 0;
}

static void teardown(void) {
  char path[CONFIG_PATH_BYTES];

  server_down();
  snprintf(path, sizeof(path), "%s/pepper", g_dir);
  unlink(path);
  rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* The server writes to a peer that may have gone. */
  signal(SIGPIPE, SIG_IGN);
  umask(0077);
  if (mkdtemp(g_dir) == NULL)
    die("mkdtemp: %s", strerror(errno));
  config_defaults(&g_cfg);
  snprintf(g_cfg.socket_path, sizeof(g_cfg.socket_path), "%s/tokend.sock",
           g_dir);
  snprintf(g_cfg.pepper_path, sizeof(g_cfg.pepper_path), "%s/pepper", g_dir);
  snprintf(g_cfg.db_path, sizeof(g_cfg.db_path), ":memory:");
  /* Each server_up() starts a new in-memory database. */
  g_cfg.create_db = 1;
  g_cfg.default_dir = 0;
  /* Small enough that inputs of a few KiB reach the decoding cap and pause
   * reading for backpressure; big enough for any valid request. */
  g_cfg.max_request_memory = 16384;
  g_cfg.max_queued_bytes = 4096;
  /* Write-backs of last_used_at and Verify counts run between inputs too. */
  g_cfg.flush_interval_ms = 100;
  g_cfg.log_level = LOG_DEBUG;
  g_trace = getenv("FUZZ_SERVER_TRACE") != NULL;
  server_up();
  /* LeakSanitizer checks at exit, after this has freed the server. */
  atexit(teardown);
  return 0;
}

/* ---- the peer end ---- */

/* Nothing a peer without the right role may see reaches it: a peer with no
 * role gets only what a verifier may (Verify, ServerStatus, the cache
 * region: every peer is a verifier while none is named) and WhoAmI, the
 * domain admin only its own domain's tokens and events and no
 * operator-only result. */
static void check_authorized(const Tokend__V1__Response *resp) {
  const Tokend__V1__WhoAmIResponse *w;
  size_t i;

  if (g_who == 0)
    return;
  switch (resp->result_case) {
  case TOKEND__V1__RESPONSE__RESULT__NOT_SET:
  case TOKEND__V1__RESPONSE__RESULT_VERIFY:
  case TOKEND__V1__RESPONSE__RESULT_SERVER_STATUS:
  case TOKEND__V1__RESPONSE__RESULT_GET_CACHE_REGION:
    return;
  case TOKEND__V1__RESPONSE__RESULT_WHO_AM_I:
    w = resp->who_am_i;
    if (w->operator_ ||
        w->uid != (g_who == 1 ? FUZZ_ADMIN_UID : FUZZ_NOBODY_UID))
      die("WhoAmI told peer %u it is uid %u, operator %d", g_who,
          (unsigned)w->uid, (int)w->operator_);
    return;
  case TOKEND__V1__RESPONSE__RESULT_ISSUE:
    if (g_who == 1 && strcmp(resp->issue->info->domain, FUZZ_ADMIN_DOMAIN) == 0)
      return;
    break;
  case TOKEND__V1__RESPONSE__RESULT_REVOKE:
    if (g_who == 1)
      return;
    break;
  /* The admin's domain only: another's is refused before the store. */
  case TOKEND__V1__RESPONSE__RESULT_BULK_REVOKE:
    if (g_who == 1)
      return;
    break;
  /* A domain's policy to its admins; setting one is for operators only
   * (the default below). */
  case TOKEND__V1__RESPONSE__RESULT_GET_DOMAIN_POLICY:
    if (g_who == 1)
      return;
    break;
  /* --leak-reporter identities and operators only: the fuzzed peers are
   * neither. */
  case TOKEND__V1__RESPONSE__RESULT_REVOKE_LEAKED:
    break;
  case TOKEND__V1__RESPONSE__RESULT_LIST:
    if (g_who != 1)
      break;
    for (i = 0; i < resp->list->n_tokens; i++)
      if (strcmp(resp->list->tokens[i]->domain, FUZZ_ADMIN_DOMAIN) != 0)
        die("the domain admin was shown a token of domain %s",
            resp->list->tokens[i]->domain);
    return;
  /* issue 17: a domain admin sees only its own domain's tokens. */
  case TOKEND__V1__RESPONSE__RESULT_LOOKUP:
    if (g_who == 1 &&
        strcmp(resp->lookup->info->domain, FUZZ_ADMIN_DOMAIN) == 0)
      return;
    break;
  case TOKEND__V1__RESPONSE__RESULT_EDIT:
    if (g_who == 1 && strcmp(resp->edit->info->domain, FUZZ_ADMIN_DOMAIN) == 0)
      return;
    break;
  case TOKEND__V1__RESPONSE__RESULT_ROLL:
    if (g_who == 1 &&
        strcmp(resp->roll->info->domain, FUZZ_ADMIN_DOMAIN) == 0 &&
        strcmp(resp->roll->previous->domain, FUZZ_ADMIN_DOMAIN) == 0)
      return;
    break;
  case TOKEND__V1__RESPONSE__RESULT_LIST_AUDIT_EVENTS:
    if (g_who != 1)
      break;
    for (i = 0; i < resp->list_audit_events->n_events; i++)
      if (strcmp(resp->list_audit_events->events[i]->domain,
                 FUZZ_ADMIN_DOMAIN) != 0)
        die("the domain admin was shown an audit event of domain %s",
            resp->list_audit_events->events[i]->domain);
    return;
  default:
    break;
  }
  die("peer %u (not an operator) got a result of kind %d (call_id %llu)", g_who,
      (int)resp->result_case, (unsigned long long)resp->call_id);
}

static void peer_check_response(const uint8_t *body, uint32_t len) {
  Tokend__V1__Response *resp = tokend__v1__response__unpack(NULL, len, body);

  if (resp == NULL)
    die("an answer of %u bytes is not a Response", (unsigned)len);
  if (resp->status == NULL)
    die("an answer (call_id %llu) has no status",
        (unsigned long long)resp->call_id);
  if (resp->status->code != 0 &&
      resp->result_case != TOKEND__V1__RESPONSE__RESULT__NOT_SET)
    die("an answer with status %d also carries a result",
        (int)resp->status->code);
  /* call_id 0 is a connection-level error, never an answer to a call. */
  if (resp->call_id == 0 && resp->status->code == 0)
    die("an OK answer on call_id 0 (result %d)", (int)resp->result_case);
  /* One word for the outcome: VALID exactly when valid. */
  if (resp->result_case == TOKEND__V1__RESPONSE__RESULT_VERIFY &&
      resp->verify->valid != (resp->verify->reason ==
                              TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID))
    die("a Verify answer says valid=%d with reason %d",
        (int)resp->verify->valid, (int)resp->verify->reason);
  check_authorized(resp);
  /* Only Issue answers carry a secret: the new token's. */
  if (!g_secret_exempt && count_secrets(body, len) > 0)
    die("an answer (call_id %llu) carries a stored token's secret",
        (unsigned long long)resp->call_id);
  if (g_trace)
    fprintf(stderr, "fuzz_server: answer call_id=%llu code=%d result=%d%s%s\n",
            (unsigned long long)resp->call_id, (int)resp->status->code,
            (int)resp->result_case, resp->status->message[0] ? " " : "",
            resp->status->message);
  tokend__v1__response__free_unpacked(resp, NULL);
}

/* Parses every whole answer in p->buf, then trims once. */
static void peer_parse(fuzz_peer_t *p) {
  const uint8_t *body;
  uint32_t body_len;
  size_t off = 0, consumed;
  frame_result_t r;

  for (;;) {
    r = frame_decode(p->buf + off, p->len - off, TOKEND_MAX_FRAME_BYTES_LIMIT,
                     &body, &body_len, &consumed);
    if (r == FRAME_NEED_MORE)
      break;
    if (r != FRAME_OK)
      die("the server sent a bad frame header (%d)", (int)r);
    peer_check_response(body, body_len);
    p->responses++;
    off += consumed;
  }
  if (off > 0) {
    memmove(p->buf, p->buf + off, p->len - off);
    p->len -= off;
  }
}

/* Reads whatever the server has sent, without blocking. */
static void peer_drain(fuzz_peer_t *p, int fd) {
  ssize_t n;
  uint8_t *nb;

  while (!p->eof) {
    if (p->cap - p->len < 65536) {
      p->cap = p->cap ? p->cap * 2 : 131072;
      nb = realloc(p->buf, p->cap);
      if (nb == NULL)
        die("out of memory for answers");
      p->buf = nb;
    }
    n = recv(fd, p->buf + p->len, p->cap - p->len, MSG_DONTWAIT);
    if (n > 0) {
      p->len += (size_t)n;
      continue;
    }
    if (n == 0 || errno == ECONNRESET)
      p->eof = 1;
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      die("recv: %s", strerror(errno));
    break;
  }
  peer_parse(p);
}

/* One turn: waits up to wait_ms for the loop or the peer to have something
 * (less if a timer is due sooner), runs the loop without blocking, takes
 * what the server sent. */
static void pump(fuzz_peer_t *p, int fd, int wait_ms) {
  struct pollfd pfd[2];
  int timeout = uv_backend_timeout(&g_server.loop);

  pfd[0].fd = uv_backend_fd(&g_server.loop);
  pfd[0].events = POLLIN;
  pfd[1].fd = fd;
  pfd[1].events = POLLIN;
  if (timeout < 0 || timeout > wait_ms)
    timeout = wait_ms;
  if (timeout > 0)
    (void)poll(pfd, p->eof ? 1 : 2, timeout);
  uv_run(&g_server.loop, UV_RUN_NOWAIT);
  peer_drain(p, fd);
}

/* Serves c as the operator the harness is (0), as the fixtures' domain
 * admin (1) or as a peer with no role but the default verifier one (2). */
static void peer_as(sink_t *c, unsigned which) {
  uint32_t uid = which == 1 ? FUZZ_ADMIN_UID : FUZZ_NOBODY_UID;

  if (which == 0) {
    if (!c->peer.is_operator)
      die("the harness (uid %u) is not an operator", (unsigned)c->peer.uid);
    return;
  }
  c->peer.uid = c->peer.gid = uid;
  c->peer.is_operator = 0;
  c->peer.is_verifier = 1;
  snprintf(c->peer.user, sizeof(c->peer.user), "uid:%u", (unsigned)uid);
}

/* The piece sizes of an input come from its hash. */
static uint64_t input_seed(const uint8_t *data, size_t size) {
  return fnv(1469598103934665603ULL, data, size) | 1;
}

static size_t next_piece(uint64_t *state) {
  static const size_t sizes[] = {1, 2, 3, 4, 5, 6, 7, 11, 64, 4096};
  uint64_t x = *state;

  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return sizes[x % (sizeof(sizes) / sizeof(sizes[0]))];
}

static uint64_t elapsed_ms(uint64_t start_ns) {
  return (uv_hrtime() - start_ns) / 1000000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_peer_t peer = {0};
  sink_t *c;
  uint64_t seed = input_seed(data, size), start = uv_hrtime();
  size_t off = 0, want;
  unsigned pieces = 0, who = 0;
  ssize_t n;
  int fds[2];

  if (size > 0) {
    who = data[0] % 3;
    data++;
    size--;
  }

  if (!g_server_up)
    server_up();
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    die("socketpair: %s", strerror(errno));
  if (net_open_fd(g_server.net, fds[0], &c) != 0)
    die("net_open_fd failed");
  /* Nothing is read before the loop runs: the peer can still be changed. */
  peer_as(c, who);
  g_who = who;
  g_secret_exempt = secret_outside_verify(data, size);
  if (g_trace)
    fprintf(stderr, "fuzz_server: input of %zu bytes as %s%s\n", size,
            c->peer.user, c->peer.is_operator ? " (operator)" : "");

  while (off < size) {
    want = size - off;
    if (pieces < FUZZ_MAX_PIECES) {
      size_t piece = next_piece(&seed);
      if (piece < want)
        want = piece;
      pieces++;
    }
    n = send(fds[1], data + off, want, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
      break; /* the server closed the connection: the rest is moot */
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      die("send: %s", strerror(errno));
    if (n > 0)
      off += (size_t)n;
    /* The server reads each piece on its own; if its buffer is full, wait
     * for it to take some. */
    pump(&peer, fds[1], n > 0 ? 0 : 10);
    if (elapsed_ms(start) > FUZZ_WAIT_MS)
      die("the server took %zu of %zu bytes in %d ms", off, size, FUZZ_WAIT_MS);
  }
  shutdown(fds[1], SHUT_WR);

  while (!peer.eof || net_conn_count(g_server.net) > 0 ||
         g_server.jobs_in_flight > 0) {
    pump(&peer, fds[1], 10);
    if (elapsed_ms(start) > FUZZ_WAIT_MS)
      die("after %d ms: peer eof %d, %zu connections, %zu store jobs in "
          "flight, %zu answers read",
          FUZZ_WAIT_MS, peer.eof, net_conn_count(g_server.net),
          g_server.jobs_in_flight, peer.responses);
  }
  if (peer.len != 0)
    die("the connection closed %zu bytes into an answer", peer.len);
  close(fds[1]);
  free(peer.buf);

  /* The next input meets the fixtures alone again. */
  if (g_secret_exempt || server_fingerprint(&g_server) != g_baseline ||
      ++g_inputs_run >= FUZZ_REBUILD_EVERY)
    server_down();
  return 0;
}
