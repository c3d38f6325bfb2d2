#include "server.h"

#include <errno.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "core/pepper.h"
#include "http/http.h"
#include "log.h"
#include "net/activation.h"
#include "net/net.h"
#include "rpc/rpc.h"
#include "tokend_time.h"

/* A row whose hash an older pepper made (issue 16): one generation back,
 * with the previous pepper configured, is marked to be re-keyed as it
 * verifies; older than that, it can no longer verify (counted). e is
 * row's entry. */
static int server_classify_pepper(server_t *s, const store_token_t *row,
                                  index_entry_t *e) {
  if (row->pepper_gen >= s->pepper_gen || e == NULL)
    return 0;
  if (s->previous_pepper != NULL && row->pepper_gen == s->pepper_gen - 1)
    return index_pepper_old_add(s->index, e);
  s->tokens_lost_pepper++;
  return 0;
}

static int load_row(void *arg, const store_token_t *row) {
  server_t *s = arg;
  domain_t *d = domains_get(&s->domains, row->domain);
  int err;

  if (d == NULL)
    return TOKEND_ENOMEM;
  if ((err = index_insert(s->index, row, d)) != 0)
    return err;
  return row->pepper_gen < s->pepper_gen
             ? server_classify_pepper(s, row, index_find(s->index, row->hash))
             : 0;
}

static int load_admin(void *arg, const store_admin_t *a) {
  server_t *s = arg;

  return domains_admin_add(&s->domains, a->domain, a->user, a->granted_at,
                           a->granted_by);
}

/* /metrics' tokend_tokens_expiring_soon: within 7 days. */
#define SERVER_EXPIRING_SOON_MS ((int64_t)7 * 24 * 3600 * 1000)

/* ---- the change feed (a store several hosts share) ---- */

/* A token changed through any host: memory takes its state now. A token
 * new to this host is indexed; a known one can only lose validity (a
 * revocation is never undone), have its expiry moved, or (issue 17's Edit)
 * get a new label, metadata or narrower scopes. */
static int on_feed_token(void *ctx, const store_token_t *row) {
  server_t *s = ctx;
  index_entry_t *e = index_find(s->index, row->hash);
  domain_t *d;
  int err;

  /* issue 16: another host began a pepper rotation this host cannot
   * follow (it has not the new pepper): answering on would miss every
   * token re-keyed there. */
  if (row->pepper_gen > s->pepper_gen) {
    log_error("another host re-keyed token %s to a new pepper (generation "
              "%d; this host has generation %d): stopping; start this host "
              "with that pepper as --pepper-file and its own as "
              "--previous-pepper-file (docs/OPERATIONS.md, \"Rotating the "
              "pepper\")",
              row->id, (int)row->pepper_gen, (int)s->pepper_gen);
    s->fatal = 1;
    server_stop(s);
    return TOKEND_ECONFIG;
  }
  /* A re-key (on any host) names the token by its new hash only: the
   * entry is found by its id and moved. */
  if (e == NULL && row->pepper_gen == s->pepper_gen &&
      (e = index_pepper_old_find(s->index, row->id)) != NULL &&
      (err = index_rekey(s->index, e, row->hash)) != 0)
    return err;
  if (e != NULL) {
    /* issue 15: a revocation, or an earlier expiry, from another host
     * takes validity away: clients' caches must see it. */
    const char *strings_was = e->strings;

    if ((row->revoked_at != 0 && e->revoked_at == 0) ||
        (row->expires_at != 0 &&
         (e->expires_at == 0 || row->expires_at < e->expires_at)))
      rpc_validity_taken(s->rpc);
    if (row->revoked_at != 0)
      index_revoke(s->index, e, row->revoked_at);
    if ((err = index_set_strings(s->index, e, row->label, row->scopes,
                                 row->metadata)) != 0)
      return err;
    /* issue 17: new scopes (only ever narrower), label or metadata:
     * caching clients must not hand out what they hold. */
    if (e->strings != strings_was)
      rpc_validity_taken(s->rpc);
    return index_set_expiry(s->index, e, row->expires_at);
  }
  if ((d = domains_get(&s->domains, row->domain)) == NULL)
    return TOKEND_ENOMEM;
  if ((err = index_insert(s->index, row, d)) != 0)
    return err;
  /* Issued by a host still on the previous pepper. */
  if (row->pepper_gen < s->pepper_gen &&
      (err = server_classify_pepper(s, row, index_find(s->index, row->hash))) !=
          0)
    return err;
  /* A full cache still answers (the index is the truth); it grows later. */
  if (verify_cache_reserve(s->vcache, index_count(s->index)) != 0)
    log_warn("out of memory for the verify cache; it grows on demand");
  return 0;
}

static int on_feed_admin(void *ctx, const char *domain, const char *user,
                         const store_admin_t *a) {
  server_t *s = ctx;

  if (a == NULL) {
    domains_admin_remove(&s->domains, domain, user);
    return 0;
  }
  return domains_admin_add(&s->domains, domain, user, a->granted_at,
                           a->granted_by);
}

static int server_listen_now(server_t *s);

/* Current with the store for the first time: listen now (clients that
 * connect get answers, not UNAVAILABLE, from the start). */
static void on_feed_ready(void *ctx) {
  server_t *s = ctx;

  if (!s->listen_pending || s->state != SERVER_RUNNING)
    return;
  s->listen_pending = 0;
  if (server_listen_now(s) != 0) {
    s->fatal = 1;
    server_stop(s);
  }
}

/* Follows the store's change feed, if it has one, from the revision the
 * load included. */
static int server_feed_open(server_t *s) {
  char url[CONFIG_STORE_URL_BYTES];
  struct store_feed_open_args args = {
      .loop = &s->loop,
      .host_id = s->host_id,
      .lease_ms = s->cfg.lease_ms,
      .rev = s->load_rev,
      .keep_revisions = s->cfg.feed_keep,
      .keep_ms = (uint64_t)s->cfg.feed_keep_minutes * 60000u,
      .version = TOKEND_VERSION,
      .handler = {.token = on_feed_token,
                  .admin = on_feed_admin,
                  .ready = on_feed_ready,
                  .ctx = s},
  };
  int err;

  config_store_url(&s->cfg, url, sizeof(url));
  if ((err = store_feed_open_url(url, &args, &s->feed)) != 0) {
    log_error("cannot follow the store's change feed: %s",
              tokend_strerror(err));
    return err;
  }
  if (s->feed != NULL)
    log_info("following the store's change feed from revision %lld as host "
             "%s (lease %u ms, writes wait up to %u ms to reach every live "
             "host)",
             (long long)s->load_rev, s->host_id, (unsigned)s->cfg.lease_ms,
             (unsigned)s->cfg.propagation_timeout_ms);
  return 0;
}

static void on_rpc_propagate(void *ctx, store_feed_wait_t *w, int64_t rev) {
  server_t *s = ctx;

  store_feed_wait(s->feed, w, rev, s->cfg.propagation_timeout_ms);
}

/* How long this host still answers Verify from memory (a store several
 * hosts share): until the feed's fresh_until; 0 once past it. */
static uint64_t server_lease_left_ms(const server_t *s) {
  uint64_t now = uv_now((uv_loop_t *)&s->loop);

  return now < s->feed->fresh_until ? s->feed->fresh_until - now : 0;
}

static void on_rpc_status(void *ctx, rpc_server_status_t *out) {
  server_t *s = ctx;
  store_feed_status_t fs;

  out->store = s->store_scheme;
  out->fresh = 1;
  if (s->feed == NULL)
    return;
  store_feed_status(s->feed, &fs);
  out->host_id = s->host_id;
  out->applied_revision = fs.applied_rev;
  out->lease_left_ms = (int64_t)server_lease_left_ms(s);
  out->fresh = out->lease_left_ms > 0;
  snprintf(out->problem, sizeof(out->problem), "%s", fs.problem);
}

static void on_sweep_timer(uv_timer_t *t) {
  server_t *s = t->data;

  net_sweep(s->net, uv_now(&s->loop));
}

/* Sweeps often enough that a timeout fires at most a quarter late. */
static uint64_t sweep_interval(const config_t *cfg) {
  uint64_t t = cfg->read_timeout_ms;

  if (cfg->idle_timeout_ms > 0 && cfg->idle_timeout_ms < t)
    t = cfg->idle_timeout_ms;
  t /= 4;
  return t < 10 ? 10 : t > 1000 ? 1000 : t;
}

static void server_notify_status(server_t *s, const char *state);

static void on_flush_timer(uv_timer_t *t) {
  server_t *s = t->data;

  server_notify_status(s, NULL);
  /* After failures, the timer's ticks wait out the backoff. */
  if (uv_now(&s->loop) < rpc_flush_not_before(s->rpc))
    return;
  (void)rpc_flush_last_used(s->rpc);
}

static void on_refusal_timer(uv_timer_t *t) {
  server_t *s = t->data;

  /* After the worker stopped (shutdown's end) nothing can be written. */
  if (s->worker != NULL)
    (void)rpc_flush_refusals(s->rpc);
}

static void on_signal(uv_signal_t *h, int signum) {
  server_t *s = h->data;

  log_info("received %s: shutting down",
           signum == SIGINT ? "SIGINT" : "SIGTERM");
  server_stop(s);
}

/* ---- operations (issue 16): systemd's notifications, SIGHUP ---- */

/* systemd's STATUS= line (systemctl status): the token count, when it
 * changed. sd_notify does nothing without $NOTIFY_SOCKET. */
static void server_notify_status(server_t *s, const char *state) {
  size_t n = index_count(s->index);

  /* Nothing to say before READY=1 (a shared store: not yet listening). */
  if (state == NULL && (n == s->status_tokens || s->listen_pending))
    return;
  s->status_tokens = n;
  (void)sd_notifyf(0, "%s%sSTATUS=serving %zu tokens on %s",
                   state != NULL ? state : "", state != NULL ? "\n" : "", n,
                   net_listen_path(s->net));
}

/* What SIGHUP may change while tokend runs: these keys of config_print.
 * The operator and verifier lists hold for connections accepted from then
 * on (a connection's rights are fixed when it is accepted). */
static const char *const reload_keys[] = {
    "log-level",
    "log-repeat-interval-ms",
    "operator-uid",
    "operator-group",
    "verifier-uid",
    "verifier-group",
    "leak-reporter",
    "max-connections",
    "max-connections-per-uid",
    "reserved-operator-connections",
    "read-timeout-ms",
    "idle-timeout-ms",
    /* the HTTP face (issue 16): read per request (the path, the header)
     * or per connection accepted (tcp-verify); its addresses need a
     * restart */
    "http-verify-path",
    "http-token-header",
    "http-tcp-verify",
};

static int reload_key(const char *key) {
  size_t i;

  for (i = 0; i < sizeof(reload_keys) / sizeof(reload_keys[0]); i++)
    if (strcmp(reload_keys[i], key) == 0)
      return 1;
  return 0;
}

typedef struct {
  int applied; /* changes applied */
  int restart; /* changes that wait for a restart */
} reload_count_t;

static void on_reload_changed(void *ctx, const char *key, const char *was,
                              const char *now) {
  reload_count_t *rc = ctx;

  if (reload_key(key)) {
    rc->applied++;
    log_info("SIGHUP: %s: %s -> %s", key, was[0] ? was : "(none)",
             now[0] ? now : "(none)");
  } else {
    rc->restart++;
    log_warn("SIGHUP: %s changed (%s -> %s) but needs a restart; still %s", key,
             was[0] ? was : "(none)", now[0] ? now : "(none)",
             was[0] ? was : "(none)");
  }
}

void server_reload(server_t *s) {
  reload_count_t count = {0, 0};
  char *msgs = NULL, *line, *save = NULL;
  size_t len = 0;
  config_t next;
  FILE *err;
  int rc;

  if (s->state != SERVER_RUNNING || s->argv == NULL)
    return;
  if (s->cfg.config_path[0] == '\0') {
    log_info("SIGHUP: no --config file to read again; nothing changed");
    return;
  }
  (void)sd_notify(0, "RELOADING=1");
  log_info("SIGHUP: reading %s again", s->cfg.config_path);
  config_defaults(&next);
  if ((err = open_memstream(&msgs, &len)) == NULL) {
    log_error("SIGHUP: out of memory; nothing changed");
    goto out;
  }
  rc = config_parse(&next, s->argc, s->argv, err, err);
  fclose(err);
  if (rc != 0) {
    for (line = strtok_r(msgs, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save))
      log_error("SIGHUP: %s", line);
    log_error("SIGHUP: the settings are not valid; nothing changed");
    goto out;
  }
  /* More connections need more descriptors: checked before anything is
   * applied, so a reload that cannot have them changes nothing. */
  if (next.max_connections > s->cfg.max_connections &&
      net_fd_limit(&next) != 0) {
    log_error("SIGHUP: nothing changed");
    goto out;
  }
  /* The new level first: the lines saying what changed are logged at it. */
  log_set_level(next.log_level);
  if (config_diff(&s->cfg, &next, on_reload_changed, &count) != 0) {
    log_set_level(s->cfg.log_level);
    log_error("SIGHUP: out of memory; nothing changed");
    goto out;
  }
  /* The HTTP face's connection limit and timeout are libmicrohttpd's,
   * fixed when it started: the new ones hold for the socket at once, for
   * HTTP after a restart. */
  if (s->http != NULL && (next.max_connections != s->cfg.max_connections ||
                          next.read_timeout_ms != s->cfg.read_timeout_ms))
    log_warn("SIGHUP: the HTTP face keeps max-connections %u and "
             "read-timeout-ms %u until a restart",
             (unsigned)s->cfg.max_connections,
             (unsigned)s->cfg.read_timeout_ms);
  /* net and rpc read these from s->cfg as they need them. */
  s->cfg.log_level = next.log_level;
  s->cfg.log_repeat_interval_ms = next.log_repeat_interval_ms;
  s->cfg.operators = next.operators;
  s->cfg.verifiers = next.verifiers;
  s->cfg.any_verifier = next.any_verifier;
  s->cfg.leak_reporters = next.leak_reporters;
  s->cfg.max_connections = next.max_connections;
  s->cfg.max_connections_per_uid = next.max_connections_per_uid;
  s->cfg.reserved_operator_connections = next.reserved_operator_connections;
  s->cfg.read_timeout_ms = next.read_timeout_ms;
  s->cfg.idle_timeout_ms = next.idle_timeout_ms;
  /* http reads these from s->cfg at each request (or connection). */
  memcpy(s->cfg.http_verify_path, next.http_verify_path,
         sizeof(s->cfg.http_verify_path));
  memcpy(s->cfg.http_token_header, next.http_token_header,
         sizeof(s->cfg.http_token_header));
  s->cfg.http_tcp_verify = next.http_tcp_verify;
  log_set_repeat_interval(s->cfg.log_repeat_interval_ms);
  uv_timer_start(&s->sweep_timer, on_sweep_timer, sweep_interval(&s->cfg),
                 sweep_interval(&s->cfg));
  log_info("SIGHUP: %d settings changed, %d more wait for a restart",
           count.applied, count.restart);
out:
  free(msgs);
  server_notify_status(s, "READY=1");
}

static void on_sighup(uv_signal_t *h, int signum) {
  (void)signum;
  server_reload(h->data);
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void close_if_open(uv_handle_t *h) {
  if (h->loop != NULL && !uv_is_closing(h))
    uv_close(h, on_handle_closed);
}

static void on_shutdown_timeout(uv_timer_t *t) {
  server_t *s = t->data;

  log_warn("shutdown: %zu connections did not take their answers in time; "
           "closing them",
           net_conn_count(s->net));
  net_close_all(s->net);
}

/* Reads the audit log's newest row id and chain hash into s (the store
 * worker must not be running). */
static void server_audit_read_head(server_t *s) {
  if (s->store == NULL ||
      store_audit_head(s->store, &s->audit_head_id, s->audit_head_hash) != 0)
    s->audit_head_id = -1;
}

/* Logs what server_audit_read_head read: the log (journald, a log host)
 * then anchors the chain outside the database. */
static void server_audit_log_head(const server_t *s) {
  char hex[2 * STORE_AUDIT_HASH_BYTES + 1];

  if (s->audit_head_id < 0)
    return;
  sodium_bin2hex(hex, sizeof(hex), s->audit_head_hash,
                 sizeof(s->audit_head_hash));
  log_info("audit log head: row %lld hash %s (anchor for tokenctl audit "
           "--verify --anchor %lld:%s)",
           (long long)s->audit_head_id, hex, (long long)s->audit_head_id, hex);
}

/* The last step of shutdown: every answer is owed no more and last_used is
 * written. Close the remaining handles so the loop ends. */
static void server_finish(server_t *s) {
  s->state = SERVER_CLOSING;
  store_worker_stop(s->worker);
  s->worker = NULL;
  /* Every call has ended (none waits to spread): leave the hosts. The
   * epoch's heartbeat timer and a Verify still queued read the feed's
   * fresh_until until then: not after (it is freed once closed). */
  rpc_feed_closed(s->rpc);
  store_feed_close(s->feed);
  s->feed = NULL;
  server_audit_read_head(s);
  server_audit_log_head(s);
  close_if_open((uv_handle_t *)&s->flush_timer);
  close_if_open((uv_handle_t *)&s->flush_retry_timer);
  close_if_open((uv_handle_t *)&s->sweep_timer);
  close_if_open((uv_handle_t *)&s->refusal_timer);
  close_if_open((uv_handle_t *)&s->busy_poll);
  /* Held until here: a SIGHUP while draining must not kill tokend (its
   * default action), only be ignored. */
  close_if_open((uv_handle_t *)&s->sighup);
  close_if_open((uv_handle_t *)&s->retention_timer);
  net_close_when_sent(s->net);
  if (net_conn_count(s->net) == 0)
    close_if_open((uv_handle_t *)&s->shutdown_timer);
  else
    uv_timer_start(&s->shutdown_timer, on_shutdown_timeout,
                   s->cfg.shutdown_timeout_ms, 0);
}

static void server_maybe_finish(server_t *s);

static void on_flush_retry(uv_timer_t *t) { server_maybe_finish(t->data); }

/* Shutdown could not write last_used_at back within --shutdown-timeout-ms:
 * it is loss-tolerant (those tokens show an older last use), so say once
 * how much was lost and stop rather than retry until the disk recovers. */
static void server_give_up_last_used(server_t *s) {
  s->last_used_lost = index_dirty_count(s->index);
  log_error("shutdown: could not write last_used_at of %zu tokens within "
            "--shutdown-timeout-ms (%u ms, %u attempts; last error: %s); "
            "giving up on it: those tokens keep their last saved "
            "last_used_at. Exiting with status 1",
            s->last_used_lost, (unsigned)s->cfg.shutdown_timeout_ms,
            (unsigned)rpc_flush_failures(s->rpc), rpc_flush_errmsg(s->rpc));
}

static void server_maybe_finish(server_t *s) {
  uint64_t now, wake, not_before;

  if (s->state != SERVER_DRAINING || s->jobs_in_flight > 0)
    return;
  /* One more write-back: last_used of the final moments survives, also
   * where --last-used-granularity-ms held it back, and of Verifies still
   * queued (read in the same turn as the signal). */
  rpc_verify_drain(s->rpc);
  /* Refusals counted and not yet written are written now. */
  if (rpc_flush_refusals(s->rpc) > 0)
    return;
  if (!s->final_flush_marked) {
    s->final_flush_marked = 1;
    (void)index_mark_unsaved(s->index);
  }
  /* A failed write-back put everything back: failures mean unsaved data. */
  if (rpc_flush_failures(s->rpc) > 0) {
    now = uv_now(&s->loop);
    not_before = rpc_flush_not_before(s->rpc);
    if (now >= s->drain_deadline) {
      server_give_up_last_used(s);
      server_finish(s);
      return;
    }
    /* Failing: try again after the backoff, but no later than the
     * deadline, where the last try is given up. */
    if (now < not_before) {
      wake = not_before < s->drain_deadline ? not_before : s->drain_deadline;
      uv_timer_start(&s->flush_retry_timer, on_flush_retry, wake - now, 0);
      return;
    }
  }
  if (rpc_flush_last_used(s->rpc))
    return;
  server_finish(s);
}

/* Busy polling trades CPU for latency: a caller that sends its next
 * request within --busy-poll-us of the last is read without tokend going to
 * sleep in epoll_wait and being woken again (on a 2-core VM the wake-up is
 * most of a Verify's round trip at one connection). An active idle handle
 * is what makes libuv poll with a zero timeout; it stops itself once the
 * time has passed with nothing read, and at shutdown. */
static void on_busy_poll(uv_idle_t *h) {
  server_t *s = h->data;

  if (s->state != SERVER_RUNNING || uv_hrtime() >= s->busy_poll_until)
    uv_idle_stop(h);
}

/* net's handler: before a batch of requests. Reads the clock for them
 * and, with --busy-poll-us, keeps the loop polling without sleeping for
 * that long after them. */
static void on_net_burst(void *ctx) {
  server_t *s = ctx;

  rpc_burst(s->rpc);
  if (s->cfg.busy_poll_us == 0 || s->state != SERVER_RUNNING)
    return;
  s->busy_poll_until = uv_hrtime() + (uint64_t)s->cfg.busy_poll_us * 1000u;
  if (!uv_is_active((uv_handle_t *)&s->busy_poll))
    uv_idle_start(&s->busy_poll, on_busy_poll);
}

static int on_net_frame(void *ctx, sink_t *k, const uint8_t *body, size_t len) {
  server_t *s = ctx;

  return rpc_frame(s->rpc, k, body, len);
}

static void on_net_status(void *ctx, sink_t *k, int grpc_code,
                          const char *message) {
  server_t *s = ctx;

  rpc_status(s->rpc, k, grpc_code, message);
}

static void on_net_closed(void *ctx) {
  server_t *s = ctx;

  if (s->state == SERVER_CLOSING && net_conn_count(s->net) == 0)
    close_if_open((uv_handle_t *)&s->shutdown_timer);
}

/* rpc's store: every job counts until its done callback ends it, so that
 * shutdown waits for all of them. */
static void on_rpc_submit(void *ctx, store_job_t *job) {
  server_t *s = ctx;

  s->jobs_in_flight++;
  store_worker_submit(s->worker, job);
}

static void on_rpc_job_end(void *ctx) {
  server_t *s = ctx;

  s->jobs_in_flight--;
  server_maybe_finish(s);
}

/* ---- audit retention (issue 16): --audit-retention-days ---- */

/* One retention pass: its job, the audit record that says what it
 * removed, and the server it reports to. */
typedef struct {
  store_job_t job;
  store_audit_t audit;
  server_t *s;
} server_prune_t;

static void on_prune_done(store_job_t *job) {
  server_prune_t *p =
      (server_prune_t *)((char *)job - offsetof(server_prune_t, job));
  server_t *s = p->s;

  if (job->result != 0)
    log_error("audit retention: could not remove audit rows older than %u "
              "days: %s (tried again in an hour)",
              (unsigned)s->cfg.audit_retention_days, job->errmsg);
  else if (job->u.audit_prune.removed > 0)
    log_info("audit retention: removed %lld audit rows older than %u days, "
             "up to row %lld",
             (long long)job->u.audit_prune.removed,
             (unsigned)s->cfg.audit_retention_days,
             (long long)job->u.audit_prune.upto);
  free(p);
  on_rpc_job_end(s);
}

static void on_retention_timer(uv_timer_t *t) {
  server_t *s = t->data;
  struct timespec now;
  server_prune_t *p;

  if (s->state != SERVER_RUNNING || s->worker == NULL)
    return;
  if ((p = calloc(1, sizeof(*p))) == NULL) {
    log_error("audit retention: out of memory (tried again in an hour)");
    return;
  }
  clock_gettime(CLOCK_REALTIME, &now);
  p->s = s;
  p->job.kind = STORE_JOB_AUDIT_PRUNE;
  p->job.done = on_prune_done;
  p->job.u.audit_prune.keep_ms =
      (int64_t)s->cfg.audit_retention_days * 86400000;
  p->job.u.audit_prune.now_ms =
      (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  p->audit.at = p->job.u.audit_prune.now_ms;
  p->audit.peer_uid = (uint32_t)geteuid();
  p->audit.peer_pid = (int32_t)getpid();
  snprintf(p->audit.actor, sizeof(p->audit.actor), "tokend");
  snprintf(p->audit.method, sizeof(p->audit.method), "AuditRetention");
  p->job.audit = &p->audit;
  on_rpc_submit(s, &p->job);
}

void server_stop(server_t *s) {
  if (s->state != SERVER_RUNNING)
    return;
  s->state = SERVER_DRAINING;
  (void)sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
  /* issue 15: clients stop answering from their caches now. */
  rpc_epoch_retire(s->rpc);
  uv_update_time(&s->loop);
  s->drain_deadline = uv_now(&s->loop) + s->cfg.shutdown_timeout_ms;
  close_if_open((uv_handle_t *)&s->sigint);
  close_if_open((uv_handle_t *)&s->sigterm);
  uv_idle_stop(&s->busy_poll);
  /* No new peers; requests already read are answered, no new ones read. */
  net_stop(s->net);
  http_stop(s->http); /* HTTP answers are never owed: it just closes */
  server_maybe_finish(s);
}

/* ---- a pepper rotation (issue 16; docs/OPERATIONS.md) ---- */

/* Reads --previous-pepper-file into s->previous_pepper: only for a
 * database that exists, with its new pepper already made by the operator
 * (a rotation never creates one), and never the same pepper twice. */
static int server_previous_pepper_read(server_t *s, const config_t *cfg,
                                       int db_new, int pepper_missing) {
  char why[1024];
  int err;

  if (db_new || pepper_missing) {
    log_error("--previous-pepper-file %s: %s", cfg->previous_pepper_path,
              db_new ? "a new database has no previous pepper; drop the "
                       "flag"
                     : "the new pepper (--pepper-file) is missing: make it "
                       "first, 32 random bytes, mode 0600, owned by "
                       "tokend's user (docs/OPERATIONS.md, \"Rotating the "
                       "pepper\")");
    return TOKEND_ECONFIG;
  }
  if ((s->previous_pepper = sodium_malloc(TOKEND_PEPPER_BYTES)) == NULL) {
    log_error("out of memory for the previous pepper");
    return TOKEND_ENOMEM;
  }
  err = pepper_read(cfg->previous_pepper_path, s->previous_pepper, why,
                    sizeof(why));
  if (err != 0) {
    log_error("--previous-pepper-file: %s", why);
    return err == TOKEND_ENOTFOUND ? TOKEND_ECONFIG : err;
  }
  if (sodium_memcmp(s->previous_pepper, s->pepper, TOKEND_PEPPER_BYTES) == 0) {
    log_error("--previous-pepper-file %s holds the same pepper as "
              "--pepper-file %s: a rotation needs a new one",
              cfg->previous_pepper_path, cfg->pepper_path);
    return TOKEND_ECONFIG;
  }
  return 0;
}

/* The store's pepper generation (0 before any rotation): into *gen. */
static int server_pepper_gen_read(server_t *s, int32_t *gen) {
  uint8_t buf[STORE_META_VALUE_MAX];
  char text[24];
  size_t len = 0;
  long v;
  char *end;
  int err;

  *gen = 0;
  err = store_meta_get(s->store, STORE_META_PEPPER_GEN, buf, sizeof(buf) - 1,
                       &len);
  if (err == TOKEND_ENOTFOUND)
    return 0;
  if (err != 0 || len == 0 || len >= sizeof(text)) {
    log_error("database %s: cannot read its pepper generation: %s",
              s->cfg.db_path,
              err != 0 ? store_errmsg(s->store) : "a bad value");
    return err != 0 ? err : TOKEND_ESTORE;
  }
  memcpy(text, buf, len);
  text[len] = '\0';
  v = strtol(text, &end, 10);
  if (*end != '\0' || v < 0 || v > INT32_MAX - 1) {
    log_error("database %s: its pepper generation '%s' is not a number",
              s->cfg.db_path, text);
    return TOKEND_ESTORE;
  }
  *gen = (int32_t)v;
  return 0;
}

/* Before the load: the generation tokens of the current pepper carry
 * (one more than the store's when this start begins a rotation), and,
 * while a previous pepper is configured without beginning one, that it is
 * the pepper the store was rotated from. */
static int server_pepper_state(server_t *s, const config_t *cfg) {
  uint8_t prev[STORE_FINGERPRINT_BYTES], fp[PEPPER_FINGERPRINT_BYTES];
  size_t len = 0;
  int err;

  if ((err = server_pepper_gen_read(s, &s->pepper_gen)) != 0)
    return err;
  if (s->previous_pepper == NULL)
    return 0;
  if (s->pepper_rotation_begins) {
    if (cfg->read_only) {
      log_error("--previous-pepper-file: a --read-only tokend cannot begin "
                "a pepper rotation (it records the new pepper)");
      return TOKEND_ECONFIG;
    }
    s->pepper_gen++;
    return 0;
  }
  /* Continuing a rotation: the store names the pepper it came from. */
  err = store_meta_get(s->store, STORE_META_PEPPER_PREVIOUS, prev, sizeof(prev),
                       &len);
  if (err != 0 && err != TOKEND_ENOTFOUND) {
    log_error("database %s: %s", cfg->db_path, store_errmsg(s->store));
    return err;
  }
  pepper_fingerprint(s->previous_pepper, fp);
  if (err == TOKEND_ENOTFOUND || len != sizeof(prev) ||
      sodium_memcmp(prev, fp, sizeof(prev)) != 0) {
    log_error("--previous-pepper-file %s is not the pepper database %s was "
              "rotated from%s; point it at that pepper, or drop the flag",
              cfg->previous_pepper_path, cfg->db_path,
              err == TOKEND_ENOTFOUND ? " (it never was)" : "");
    return TOKEND_ECONFIG;
  }
  return 0;
}

/* The audit log's chain key. It outlives pepper rotations: once sealed
 * in the store (at the first rotation), it is opened with the current
 * pepper; before, it is derived from the database's pepper (the previous
 * one, for a start that begins the first rotation). out is the caller's
 * to wipe. */
static int server_audit_key(server_t *s, uint8_t out[PEPPER_AUDIT_KEY_BYTES]) {
  uint8_t sealed[PEPPER_AUDIT_KEY_SEALED_BYTES];
  const uint8_t *pepper =
      s->pepper_rotation_begins ? s->previous_pepper : s->pepper;
  size_t len = 0;
  int err;

  err = store_meta_get(s->store, STORE_META_AUDIT_KEY_SEALED, sealed,
                       sizeof(sealed), &len);
  if (err == TOKEND_ENOTFOUND) {
    pepper_audit_key(pepper, out);
    return 0;
  }
  if (err != 0) {
    log_error("database %s: %s", s->cfg.db_path, store_errmsg(s->store));
    return err;
  }
  if (len != sizeof(sealed) ||
      pepper_audit_key_open(pepper, sealed, out) != 0) {
    log_error("database %s: its sealed audit chain key does not open with "
              "the pepper %s; the audit log cannot be chained",
              s->cfg.db_path,
              s->pepper_rotation_begins ? s->cfg.previous_pepper_path
                                        : s->cfg.pepper_path);
    return TOKEND_ECONFIG;
  }
  return 0;
}

/* After the load, when this start begins a rotation: records the new
 * pepper's fingerprint, the generation, the previous pepper's
 * fingerprint and the audit key sealed under the new pepper, with an
 * audit row saying so, in one transaction: a start cut short leaves the
 * store on the previous pepper, and the same command begins again. Then
 * logs where the rotation stands. */
static int server_pepper_rotation(server_t *s) {
  uint8_t fp[PEPPER_FINGERPRINT_BYTES], prev[PEPPER_FINGERPRINT_BYTES];
  uint8_t key[PEPPER_AUDIT_KEY_BYTES], sealed[PEPPER_AUDIT_KEY_SEALED_BYTES];
  char gen[24];
  size_t old = index_pepper_old_count(s->index);
  store_audit_t ev;
  struct timespec now;
  int err;

  if (s->tokens_lost_pepper > 0)
    log_warn("%zu tokens were hashed with a pepper older than %s: they "
             "answer UNKNOWN (a rotation away from their pepper ended "
             "before they were verified)",
             s->tokens_lost_pepper,
             s->previous_pepper != NULL ? "both pepper files"
                                        : "--pepper-file's");
  if (!s->pepper_rotation_begins) {
    if (s->previous_pepper != NULL)
      log_info("pepper rotation: %zu tokens still hashed with the previous "
               "pepper %s; they move to %s as they are verified",
               old, s->cfg.previous_pepper_path, s->cfg.pepper_path);
    return 0;
  }
  if ((err = server_audit_key(s, key)) != 0)
    return err;
  pepper_audit_key_seal(s->pepper, key, sealed);
  sodium_memzero(key, sizeof(key));
  pepper_fingerprint(s->pepper, fp);
  pepper_fingerprint(s->previous_pepper, prev);
  snprintf(gen, sizeof(gen), "%d", (int)s->pepper_gen);
  memset(&ev, 0, sizeof(ev));
  clock_gettime(CLOCK_REALTIME, &now);
  ev.at = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  ev.peer_uid = (uint32_t)geteuid();
  ev.peer_pid = (int32_t)getpid();
  snprintf(ev.actor, sizeof(ev.actor), "tokend");
  snprintf(ev.method, sizeof(ev.method), "PepperRotation");
  snprintf(ev.detail, sizeof(ev.detail),
           "pepper rotation begins: generation %d; %zu tokens hashed with "
           "the previous pepper move to the new one as they are verified",
           (int)s->pepper_gen, old);
  if ((err = store_begin(s->store)) != 0)
    goto fail;
  if ((err = store_fingerprint_set(s->store, fp)) != 0 ||
      (err = store_meta_set(s->store, STORE_META_PEPPER_GEN,
                            (const uint8_t *)gen, strlen(gen))) != 0 ||
      (err = store_meta_set(s->store, STORE_META_PEPPER_PREVIOUS, prev,
                            sizeof(prev))) != 0 ||
      (err = store_meta_set(s->store, STORE_META_AUDIT_KEY_SEALED, sealed,
                            sizeof(sealed))) != 0 ||
      (err = store_audit_append(s->store, &ev)) != 0) {
    store_rollback(s->store);
    goto fail;
  }
  if ((err = store_commit(s->store)) != 0)
    goto fail;
  log_warn("pepper rotation begins: %s is the pepper now (generation %d); "
           "%zu tokens hashed with %s move to it as they are verified; keep "
           "--previous-pepper-file until `tokenctl status` shows none left",
           s->cfg.pepper_path, (int)s->pepper_gen, old,
           s->cfg.previous_pepper_path);
  s->pepper_rotation_begins = 0;
  return 0;

fail:
  log_error("cannot record the pepper rotation in %s: %s", s->cfg.db_path,
            store_errmsg(s->store));
  return err;
}

/* Opens the database and the pepper together, so that neither is ever
 * silently replaced: a missing database is created only with --create-db; a
 * new pepper only with a new (or empty) database, and that is logged at
 * warn; a pepper whose fingerprint differs from the one the database
 * recorded, or a missing pepper with a database that holds anything, is
 * refused (every token would answer UNKNOWN). */
static int server_open_store(server_t *s, const config_t *cfg) {
  uint8_t fp[PEPPER_FINGERPRINT_BYTES], stored[STORE_FINGERPRINT_BYTES];
  char why[1024], url[CONFIG_STORE_URL_BYTES];
  int err, db_new, pepper_missing = 0, pepper_new = 0, present;
  int64_t rows = 0;

  /* The backend by URL (--store, or --db's sqlite:PATH). A store that
   * cannot tell whether it exists is left to the open to report. */
  config_store_url(cfg, url, sizeof(url));
  db_new = store_exists_url(url) == 0;
  if (db_new && !cfg->create_db) {
    log_error("no database at %s; pass --create-db to create a new one",
              cfg->db_path);
    return TOKEND_ECONFIG;
  }
  err = pepper_read(cfg->pepper_path, s->pepper, why, sizeof(why));
  if (err == TOKEND_ENOTFOUND) {
    pepper_missing = 1;
  } else if (err != 0) {
    log_error("%s", why);
    return err;
  }
  if (cfg->previous_pepper_path[0] != '\0' &&
      (err = server_previous_pepper_read(s, cfg, db_new, pepper_missing)) != 0)
    return err;
  /* A new database gets a new pepper before the database file exists, so a
   * pepper that cannot be made leaves nothing behind. */
  if (pepper_missing && db_new) {
    if ((err = pepper_create(cfg->pepper_path, s->pepper, why, sizeof(why))) !=
        0) {
      log_error("%s", why);
      return err;
    }
    pepper_new = 1;
  }
  err =
      store_open_url(url,
                     cfg->read_only ? STORE_OPEN_READ_ONLY
                                    : (cfg->create_db ? STORE_OPEN_CREATE : 0),
                     &s->store, why, sizeof(why));
  if (err != 0) {
    log_error("database %s: %s", cfg->db_path, why);
    goto err_unlink_pepper;
  }
  if (pepper_missing && !pepper_new) {
    if ((err = store_count_rows(s->store, &rows)) != 0) {
      log_error("database %s: %s", cfg->db_path, store_errmsg(s->store));
      return err;
    }
    if (rows == 0 && cfg->read_only) {
      log_error("no pepper file at %s, and --read-only cannot create one for "
                "the empty database %s",
                cfg->pepper_path, cfg->db_path);
      return TOKEND_ECONFIG;
    }
    if (rows > 0) {
      log_error("no pepper file at %s, but database %s holds %lld tokens, "
                "admins and audit rows hashed with its pepper; restore that "
                "pepper file (or point --pepper-file at it): a new one would "
                "make every token invalid",
                cfg->pepper_path, cfg->db_path, (long long)rows);
      return TOKEND_ECONFIG;
    }
    if ((err = pepper_create(cfg->pepper_path, s->pepper, why, sizeof(why))) !=
        0) {
      log_error("%s", why);
      return err;
    }
    pepper_new = 1;
  }
  pepper_fingerprint(s->pepper, fp);
  if ((err = store_fingerprint_get(s->store, stored, &present)) != 0) {
    log_error("database %s: %s", cfg->db_path, store_errmsg(s->store));
    return err;
  }
  if (!present && s->previous_pepper != NULL) {
    log_error("database %s records no pepper fingerprint yet: start it once "
              "with its own pepper before rotating (--previous-pepper-file)",
              cfg->db_path);
    return TOKEND_ECONFIG;
  }
  if (present && !pepper_new &&
      sodium_memcmp(stored, fp, STORE_FINGERPRINT_BYTES) != 0) {
    /* issue 16: the database's is the previous pepper's: a rotation
     * begins (server_pepper_rotation, once the tokens are loaded). */
    if (s->previous_pepper != NULL) {
      pepper_fingerprint(s->previous_pepper, fp);
      if (sodium_memcmp(stored, fp, STORE_FINGERPRINT_BYTES) == 0) {
        s->pepper_rotation_begins = 1;
        return 0;
      }
      log_error("database %s was made with neither pepper file %s "
                "(--pepper-file) nor %s (--previous-pepper-file), so no "
                "token would verify; point them at the database's pepper "
                "and the new one",
                cfg->db_path, cfg->pepper_path, cfg->previous_pepper_path);
      return TOKEND_ECONFIG;
    }
    log_error("pepper file %s is not the pepper of database %s (their "
              "fingerprints differ), so no token would verify; restore the "
              "pepper file that made this database, or point --pepper-file "
              "at it (to rotate to a new pepper, name the old one with "
              "--previous-pepper-file)",
              cfg->pepper_path, cfg->db_path);
    return TOKEND_ECONFIG;
  }
  /* First start of this database (or of its schema version 3, whose hashes
   * the pepper in use made), or a new pepper for an empty one. */
  if ((!present || pepper_new) && !cfg->read_only &&
      (err = store_fingerprint_set(s->store, fp)) != 0) {
    log_error("database %s: %s", cfg->db_path, store_errmsg(s->store));
    return err;
  }
  if (db_new)
    log_warn("created a new, empty database %s (--create-db)", cfg->db_path);
  if (pepper_new)
    log_warn("created a new pepper %s for the %s database %s", cfg->pepper_path,
             db_new ? "new" : "empty", cfg->db_path);
  return 0;

err_unlink_pepper:
  /* Made for a database that could not be created: not kept. */
  if (pepper_new && db_new)
    unlink(cfg->pepper_path);
  return err;
}

/* The audit log's chain key (pepper_audit_key). Logs the chain's head, so
 * that the log (journald, a log host) anchors it outside the database:
 * cutting off the newest rows is then detectable too (tokenctl audit
 * --verify --anchor). */
static int server_audit_chain_start(server_t *s) {
  uint8_t key[STORE_AUDIT_KEY_BYTES];
  int err;

  _Static_assert(STORE_AUDIT_KEY_BYTES == PEPPER_AUDIT_KEY_BYTES,
                 "the store chains with the pepper's audit key");
  if ((err = server_audit_key(s, key)) != 0)
    return err;
  err = store_audit_key_set(s->store, key);
  sodium_memzero(key, sizeof(key));
  if (err != 0) {
    log_error("cannot chain the audit log of %s: %s", s->cfg.db_path,
              store_errmsg(s->store));
    return err;
  }
  return 0;
}

int server_rpc_new(server_t *s) {
  rpc_env_t env = {
      .cfg = &s->cfg,
      .index = s->index,
      .vcache = s->vcache,
      .domains = &s->domains,
      .pepper = s->pepper,
      .previous_pepper = s->previous_pepper,
      .pepper_gen = s->pepper_gen,
      .loop = &s->loop,
      .submit = on_rpc_submit,
      .job_end = on_rpc_job_end,
      .fresh_until = s->feed != NULL ? &s->feed->fresh_until : NULL,
      .propagate = s->feed != NULL ? on_rpc_propagate : NULL,
      .status = on_rpc_status,
      .ctx = s,
  };
  int err;

  if ((err = rpc_new(&env, &s->rpc)) != 0)
    log_error("out of memory");
  return err;
}

int server_net_new(server_t *s) {
  net_handler_t handler = {
      .frame = on_net_frame,
      .status = on_net_status,
      .burst = on_net_burst,
      .closed = on_net_closed,
      .ctx = s,
  };
  int err;

  if ((err = net_new(&s->loop, &s->cfg, &handler, &s->net)) != 0)
    log_error("out of memory");
  return err;
}

int server_init(server_t *s, const config_t *cfg) {
  int err;

  memset(s, 0, sizeof(*s));
  s->cfg = *cfg;
  config_host_id(cfg, s->host_id, sizeof(s->host_id));
  {
    const struct store_backend *backend;
    const char *location;
    char url[CONFIG_STORE_URL_BYTES], why[256];

    config_store_url(cfg, url, sizeof(url));
    s->store_scheme =
        store_url_parse(url, &backend, &location, why, sizeof(why)) == 0
            ? backend->scheme
            : "";
  }
  if (sodium_init() < 0) {
    log_error("libsodium failed to initialise");
    return TOKEND_EINTERNAL;
  }
  if (cfg->default_dir && mkdir(CONFIG_DIR_DEFAULT, 0700) != 0 &&
      errno != EEXIST) {
    log_error("cannot create %s/: %s", CONFIG_DIR_DEFAULT, strerror(errno));
    return TOKEND_ECONFIG;
  }
  /* A socket the service manager passed is already bound: its directory
   * is systemd's business. */
  if ((err = net_activation_init()) != 0)
    return err;
  if ((!net_activated_has(NET_ACTIVATION_MAIN) &&
       (err = net_socket_dir_check(cfg->socket_path)) != 0) ||
      (err = net_fd_limit(cfg)) != 0)
    return err;
  /* The key of every stored hash: kept where a core dump, an overflow or a
   * stray write cannot reach it. */
  if ((s->pepper = sodium_malloc(TOKEND_PEPPER_BYTES)) == NULL) {
    log_error("out of memory for the pepper");
    return TOKEND_ENOMEM;
  }
  if ((err = server_open_store(s, cfg)) != 0)
    return err;
  if (cfg->audit_retention_days > 0 &&
      (!store_has_audit_prune(s->store) || cfg->read_only)) {
    log_error("--audit-retention-days: %s",
              cfg->read_only ? "a --read-only tokend removes nothing"
                             : "this store has no audit retention in tokend");
    return TOKEND_ECONFIG;
  }
  if ((err = server_pepper_state(s, cfg)) != 0 ||
      (err = server_audit_chain_start(s)) != 0)
    return err;
  (void)sodium_mprotect_readonly(s->pepper);
  if (s->previous_pepper != NULL)
    (void)sodium_mprotect_readonly(s->previous_pepper);
  if ((err = index_new(&s->index)) != 0 ||
      (err = verify_cache_new(&s->vcache)) != 0 ||
      (err = domains_init(&s->domains)) != 0) {
    log_error("out of memory");
    return err;
  }
  /* Admins and tokens from one snapshot, and the feed's revision it
   * includes: following the feed from there misses nothing. */
  if ((err = store_snapshot_begin(s->store, &s->load_rev)) != 0) {
    log_error("cannot read %s: %s", cfg->db_path, store_errmsg(s->store));
    return err;
  }
  if ((err = store_admin_load(s->store, load_admin, s)) != 0) {
    log_error("cannot load domain admins from %s: %s", cfg->db_path,
              store_errmsg(s->store));
    store_snapshot_end(s->store);
    return err;
  }
  if ((err = store_load(s->store, load_row, s)) != 0) {
    log_error("cannot load tokens from %s: %s", cfg->db_path,
              err == TOKEND_EEXIST ? "duplicate token hash"
                                   : store_errmsg(s->store));
    store_snapshot_end(s->store);
    return err;
  }
  store_snapshot_end(s->store);
  if ((err = server_pepper_rotation(s)) != 0)
    return err;
  /* Room in the verify cache for every token, so it never rehashes while
   * answering (it grows with the index, on Issue). */
  if ((err = verify_cache_reserve(s->vcache, index_count(s->index))) != 0) {
    log_error("out of memory for the verify cache of %zu tokens",
              index_count(s->index));
    return err;
  }
  if ((err = uv_loop_init(&s->loop)) != 0) {
    log_error("loop init: %s", uv_strerror(err));
    return TOKEND_EINTERNAL;
  }
  s->loop_up = 1;
  uv_timer_init(&s->loop, &s->flush_timer);
  uv_timer_init(&s->loop, &s->flush_retry_timer);
  s->flush_retry_timer.data = s;
  uv_timer_init(&s->loop, &s->shutdown_timer);
  uv_timer_init(&s->loop, &s->sweep_timer);
  uv_timer_init(&s->loop, &s->refusal_timer);
  uv_idle_init(&s->loop, &s->busy_poll);
  uv_signal_init(&s->loop, &s->sigint);
  uv_signal_init(&s->loop, &s->sigterm);
  uv_signal_init(&s->loop, &s->sighup);
  s->sighup.data = s;
  uv_timer_init(&s->loop, &s->retention_timer);
  s->retention_timer.data = s;
  s->flush_timer.data = s->shutdown_timer.data = s->sweep_timer.data = s;
  s->refusal_timer.data = s;
  s->busy_poll.data = s;
  s->sigint.data = s->sigterm.data = s;
  server_audit_read_head(s);
  if ((err = server_feed_open(s)) != 0)
    return err;
  if ((err = store_worker_start(&s->loop, s->store, &s->worker)) != 0)
    return err;
  /* Signals first: a SIGTERM sent the moment the socket exists must already
   * mean a clean shutdown. */
  uv_signal_start(&s->sigint, on_signal, SIGINT);
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  uv_signal_start(&s->sighup, on_sighup, SIGHUP);
  return 0;
}

/* Binds the socket: clients may connect from now on. */
static int server_listen_now(server_t *s) {
  const config_t *cfg = &s->cfg;
  int err;

  if ((err = net_listen(s->net)) != 0)
    return err;
  server_audit_log_head(s);
  log_info("tokend %s listening on %s (database %s, %zu tokens)",
           TOKEND_VERSION, net_listen_path(s->net), cfg->db_path,
           index_count(s->index));
  /* Every face has taken its passed socket by now. */
  net_activation_close_unclaimed();
  /* systemd (Type=notify): the index is loaded and the socket served. */
  server_notify_status(s, "READY=1");
  return 0;
}

int server_listen(server_t *s) {
  const config_t *cfg = &s->cfg;

  uv_timer_start(&s->flush_timer, on_flush_timer, cfg->flush_interval_ms,
                 cfg->flush_interval_ms);
  uv_timer_start(&s->sweep_timer, on_sweep_timer, sweep_interval(cfg),
                 sweep_interval(cfg));
  /* The first pass at once, then hourly. */
  if (cfg->audit_retention_days > 0)
    uv_timer_start(&s->retention_timer, on_retention_timer, 0,
                   CONFIG_AUDIT_RETENTION_CHECK_MS);
  if (cfg->refusal_audit_interval_ms > 0)
    uv_timer_start(&s->refusal_timer, on_refusal_timer,
                   cfg->refusal_audit_interval_ms,
                   cfg->refusal_audit_interval_ms);
  /* With a store several hosts share, only once this host is counted by
   * every write and has caught up (on_feed_ready): a client that connects
   * never meets the moment it is not. */
  if (s->feed != NULL) {
    s->listen_pending = 1;
    log_info("registering as host %s and catching up with the store before "
             "listening on %s",
             s->host_id, cfg->socket_path);
    return 0;
  }
  return server_listen_now(s);
}

int server_run(server_t *s) {
  int rc = uv_run(&s->loop, UV_RUN_DEFAULT);

  if (rc != 0) {
    log_error("event loop ended with active handles");
    return TOKEND_EINTERNAL;
  }
  /* A shutdown that lost last_used_at is not a clean one: exit 1. */
  if (s->fatal)
    return TOKEND_ECONFIG;
  return s->last_used_lost > 0 ? TOKEND_EIO : 0;
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  close_if_open(h);
}

void server_cleanup(server_t *s) {
  /* Passed sockets a failed start never took. */
  net_activation_close_unclaimed();
  /* Queued Verifies hold their conns: answer them before closing all. */
  if (s->rpc != NULL)
    rpc_verify_drain(s->rpc);
  if (s->loop_up) {
    /* After a failed init (or run), close what is open and let the loop
     * run the close callbacks. */
    if (s->worker != NULL) {
      store_worker_stop(s->worker);
      s->worker = NULL;
    }
    rpc_feed_closed(s->rpc);
    store_feed_close(s->feed);
    s->feed = NULL;
    /* The listener's watcher before the listener, which closes the fd. */
    if (s->net != NULL)
      net_close_listener(s->net);
    uv_walk(&s->loop, walk_close, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    s->loop_up = 0;
  }
  net_free(s->net);
  s->net = NULL;
  http_free(s->http);
  s->http = NULL;
  rpc_free(s->rpc);
  s->rpc = NULL;
  /* The cache points into the index: it goes first. */
  verify_cache_free(s->vcache);
  s->vcache = NULL;
  index_free(s->index);
  s->index = NULL;
  domains_free(&s->domains);
  store_close(s->store);
  s->store = NULL;
  /* sodium_free wipes it (read-only or not) and unmaps its pages. */
  if (s->pepper != NULL)
    sodium_free(s->pepper);
  s->pepper = NULL;
  if (s->previous_pepper != NULL)
    sodium_free(s->previous_pepper);
  s->previous_pepper = NULL;
}

/* ---- the HTTP face (issue 14): its handler, readiness, metrics ---- */

int server_ready(const server_t *s, char *why, size_t len) {
  if (s->state != SERVER_RUNNING) {
    snprintf(why, len, "shutting down");
    return 0;
  }
  if (s->index == NULL || s->worker == NULL) {
    snprintf(why, len, "%s",
             s->index == NULL ? "index not loaded" : "store worker stopped");
    return 0;
  }
  /* A store several hosts share: Verify answers only while current. */
  if (s->feed != NULL && server_lease_left_ms(s) == 0) {
    store_feed_status_t fs;

    store_feed_status(s->feed, &fs);
    snprintf(why, len, "not current with the store (past --lease-ms)%s%s",
             fs.problem[0] != '\0' ? ": " : "", fs.problem);
    return 0;
  }
  /* The store as far as tokend last knew: its last write-back failed.
   * Verify still answers from memory; Issue and Revoke would fail. */
  if (s->rpc != NULL && rpc_flush_failures(s->rpc) > 0) {
    snprintf(why, len, "store writes failing (%u in a row): %s",
             (unsigned)rpc_flush_failures(s->rpc), rpc_flush_errmsg(s->rpc));
    return 0;
  }
  return 1;
}

static int on_http_verify(void *ctx, const char *tok, size_t len,
                          rpc_verify_result_t *out) {
  server_t *s = ctx;

  return rpc_verify_now(s->rpc, tok, len, out);
}

static int on_http_ready(void *ctx, char *why, size_t len) {
  return server_ready(ctx, why, len);
}

/* The server's metric families; the HTTP face adds its own after. */
static void on_http_metrics(void *ctx, prom_t *p) {
  server_t *s = ctx;
  uint64_t counts[RPC_VERIFY_REASONS];
  char labels[96], why[64];
  int i;

  prom_family(p, "tokend_build_info", "gauge",
              "Always 1; the version of the running tokend as a label.");
  prom_appendf(p, "tokend_build_info{version=\"");
  prom_label_value(p, TOKEND_VERSION);
  prom_appendf(p, "\"} 1\n");
  prom_family(p, "tokend_verify_total", "counter",
              "Verify calls answered (socket and HTTP), by result and "
              "reason.");
  rpc_verify_counts(s->rpc, counts);
  for (i = 1; i < RPC_VERIFY_REASONS; i++) {
    snprintf(labels, sizeof(labels), "result=\"%s\",reason=\"%s\"",
             strcmp(rpc_verify_reason_name(i), "valid") == 0 ? "valid"
                                                             : "invalid",
             rpc_verify_reason_name(i));
    prom_sample(p, "tokend_verify_total", labels, counts[i]);
  }
  prom_family(p, "tokend_verify_duration_seconds", "histogram",
              "Socket Verifies, from the read of their requests to their "
              "answers (HTTP's: tokend_http_verify_duration_seconds).");
  prom_hist_write(p, "tokend_verify_duration_seconds", "transport=\"socket\"",
                  rpc_verify_latency(s->rpc));
  prom_family(p, "tokend_store_call_duration_seconds", "histogram",
              "Store calls from request read to answer, the commit "
              "included, by kind (write: Issue, Revoke, grants; read: "
              "List, audit).");
  prom_hist_write(p, "tokend_store_call_duration_seconds", "kind=\"write\"",
                  rpc_call_latency(s->rpc, 1));
  prom_hist_write(p, "tokend_store_call_duration_seconds", "kind=\"read\"",
                  rpc_call_latency(s->rpc, 0));
  {
    size_t active, revoked, expired;

    index_status_counts(s->index, tokend_now_ms(), &active, &revoked, &expired);
    prom_family(p, "tokend_tokens", "gauge",
                "Tokens in memory by status (what Verify would answer).");
    prom_sample(p, "tokend_tokens", "status=\"active\"", active);
    prom_sample(p, "tokend_tokens", "status=\"revoked\"", revoked);
    prom_sample(p, "tokend_tokens", "status=\"expired\"", expired);
  }
  /* issue 17: per domain, from the index's list of tokens that expire. */
  {
    domain_t *d, *tmp;
    char dl[TOKEND_DOMAIN_BYTES + 16];

    HASH_ITER(hh, s->domains.table, d, tmp) { d->expiring_soon = 0; }
    index_expiring_tally(s->index, tokend_now_ms(), SERVER_EXPIRING_SOON_MS);
    prom_family(p, "tokend_tokens_expiring_soon", "gauge",
                "Active tokens that expire within 7 days, by domain (only "
                "domains that have some).");
    HASH_ITER(hh, s->domains.table, d, tmp) {
      if (d->expiring_soon == 0)
        continue;
      snprintf(dl, sizeof(dl), "domain=\"%s\"", d->name);
      prom_sample(p, "tokend_tokens_expiring_soon", dl, d->expiring_soon);
    }
  }
  if (s->worker != NULL) {
    store_worker_stats_t ws;

    store_worker_stats(s->worker, &ws);
    prom_family(p, "tokend_audit_rows_written_total", "counter",
                "Audit log rows committed by this tokend.");
    prom_sample(p, "tokend_audit_rows_written_total", "", ws.audit_rows);
    prom_family(p, "tokend_store_commit_duration_seconds", "histogram",
                "Each write group's COMMIT on the writer thread (for "
                "SQLite the fsync; for PostgreSQL the flush of its WAL).");
    prom_hist_write(p, "tokend_store_commit_duration_seconds", "", &ws.commit);
  }
  prom_family(p, "tokend_tokens_previous_pepper", "gauge",
              "Tokens still hashed with the previous pepper (a rotation "
              "moves them as they are verified; 0: the old pepper may go).");
  prom_sample(p, "tokend_tokens_previous_pepper", "",
              index_pepper_old_count(s->index));
  prom_family(p, "tokend_index_tokens", "gauge",
              "Tokens in the in-memory index (every status).");
  prom_sample(p, "tokend_index_tokens", "", index_count(s->index));
  prom_family(p, "tokend_connections_open", "gauge",
              "Connections open now, by transport.");
  prom_sample(p, "tokend_connections_open", "transport=\"socket\"",
              net_conn_count(s->net));
  prom_sample(p, "tokend_connections_open", "transport=\"http\"",
              s->http != NULL ? http_conn_count(s->http) : 0);
  prom_family(p, "tokend_connections_refused_total", "counter",
              "Connections to the main socket refused for a limit "
              "(connections, per uid, file descriptors).");
  prom_sample(p, "tokend_connections_refused_total", "transport=\"socket\"",
              net_refused_count(s->net));
  prom_family(p, "tokend_store_jobs_in_flight", "gauge",
              "Store jobs submitted and not yet done.");
  prom_sample(p, "tokend_store_jobs_in_flight", "", s->jobs_in_flight);
  prom_family(p, "tokend_last_used_flush_failures", "gauge",
              "last_used write-backs failed in a row (0: the last worked).");
  prom_sample(p, "tokend_last_used_flush_failures", "",
              rpc_flush_failures(s->rpc));
  if (s->feed != NULL) {
    store_feed_status_t fs;

    store_feed_status(s->feed, &fs);
    prom_family(p, "tokend_feed_applied_revision", "gauge",
                "The store's change feed revision this host has applied.");
    prom_sample(p, "tokend_feed_applied_revision", "",
                (uint64_t)fs.applied_rev);
    prom_family(p, "tokend_feed_lease_left_seconds", "gauge",
                "How long this host answers Verify without catching up "
                "with the store again (0: past its lease, UNAVAILABLE).");
    prom_appendf(p, "tokend_feed_lease_left_seconds %.3f\n",
                 (double)server_lease_left_ms(s) / 1000.0);
  }
  prom_family(p, "tokend_ready", "gauge", "1 when /readyz would answer 200.");
  prom_sample(p, "tokend_ready", "",
              (uint64_t)server_ready(s, why, sizeof(why)));
}

int server_http_new(server_t *s) {
  http_handler_t handler = {
      .verify = on_http_verify,
      .metrics = on_http_metrics,
      .ready = on_http_ready,
      .ctx = s,
  };
  int err, fd;

  /* issue 16: sockets passed under the name "http" are HTTP faces too,
   * --http-listen or not (the .socket unit then names the addresses). */
  if (s->cfg.n_http_listen == 0 && !net_activated_has(NET_ACTIVATION_HTTP))
    return 0;
  if ((err = http_new(&s->loop, &s->cfg, &handler, &s->http)) != 0) {
    log_error("out of memory");
    return err;
  }
  while ((fd = net_take_activated(NET_ACTIVATION_HTTP)) >= 0)
    if ((err = http_adopt(s->http, fd)) != 0)
      return err;
  return 0;
}

int server_http_listen(server_t *s) {
  return s->http != NULL ? http_listen(s->http) : 0;
}
