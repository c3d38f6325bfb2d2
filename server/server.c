#include "server.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pepper.h"
#include "log.h"
#include "net/net.h"
#include "rpc/rpc.h"
#include "tokend_time.h"

static int load_row(void *arg, const store_token_t *row) {
  server_t *s = arg;
  domain_t *d = domains_get(&s->domains, row->domain);

  return d != NULL ? index_insert(s->index, row, d) : TOKEND_ENOMEM;
}

static int load_admin(void *arg, const store_admin_t *a) {
  server_t *s = arg;

  return domains_admin_add(&s->domains, a->domain, a->user, a->granted_at,
                           a->granted_by);
}

/* ---- the change feed (a store several hosts share) ---- */

/* A token changed through any host: memory takes its state now. A token
 * new to this host is indexed; a known one can only lose validity (a
 * revocation is never undone) or have its expiry moved. */
static int on_feed_token(void *ctx, const store_token_t *row) {
  server_t *s = ctx;
  index_entry_t *e = index_find(s->index, row->hash);
  domain_t *d;
  int err;

  if (e != NULL) {
    /* issue 15: a revocation, or an earlier expiry, from another host
     * takes validity away: clients' caches must see it. */
    if ((row->revoked_at != 0 && e->revoked_at == 0) ||
        (row->expires_at != 0 &&
         (e->expires_at == 0 || row->expires_at < e->expires_at)))
      rpc_validity_taken(s->rpc);
    if (row->revoked_at != 0 && e->revoked_at == 0)
      e->revoked_at = row->revoked_at;
    e->expires_at = row->expires_at;
    return 0;
  }
  if ((d = domains_get(&s->domains, row->domain)) == NULL)
    return TOKEND_ENOMEM;
  if ((err = index_insert(s->index, row, d)) != 0)
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

static void on_rpc_status(void *ctx, rpc_server_status_t *out) {
  server_t *s = ctx;
  store_feed_status_t fs;
  uint64_t now = uv_now(&s->loop);

  out->store = s->store_scheme;
  out->fresh = 1;
  if (s->feed == NULL)
    return;
  store_feed_status(s->feed, &fs);
  out->host_id = s->host_id;
  out->applied_revision = fs.applied_rev;
  out->fresh = now < s->feed->fresh_until;
  out->lease_left_ms = out->fresh ? (int64_t)(s->feed->fresh_until - now) : 0;
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

static void on_flush_timer(uv_timer_t *t) {
  server_t *s = t->data;

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
  /* Every call has ended (none waits to spread): leave the hosts. */
  store_feed_close(s->feed);
  s->feed = NULL;
  server_audit_read_head(s);
  server_audit_log_head(s);
  close_if_open((uv_handle_t *)&s->flush_timer);
  close_if_open((uv_handle_t *)&s->flush_retry_timer);
  close_if_open((uv_handle_t *)&s->sweep_timer);
  close_if_open((uv_handle_t *)&s->refusal_timer);
  close_if_open((uv_handle_t *)&s->busy_poll);
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

void server_stop(server_t *s) {
  if (s->state != SERVER_RUNNING)
    return;
  s->state = SERVER_DRAINING;
  /* issue 15: clients stop answering from their caches now. */
  rpc_epoch_retire(s->rpc);
  uv_update_time(&s->loop);
  s->drain_deadline = uv_now(&s->loop) + s->cfg.shutdown_timeout_ms;
  close_if_open((uv_handle_t *)&s->sigint);
  close_if_open((uv_handle_t *)&s->sigterm);
  uv_idle_stop(&s->busy_poll);
  /* No new peers; requests already read are answered, no new ones read. */
  net_stop(s->net);
  server_maybe_finish(s);
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
  if (present && !pepper_new &&
      sodium_memcmp(stored, fp, STORE_FINGERPRINT_BYTES) != 0) {
    log_error("pepper file %s is not the pepper of database %s (their "
              "fingerprints differ), so no token would verify; restore the "
              "pepper file that made this database, or point --pepper-file "
              "at it",
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

  pepper_audit_key(s->pepper, key);
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
  if ((err = net_socket_dir_check(cfg->socket_path)) != 0 ||
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
  if ((err = server_audit_chain_start(s)) != 0)
    return err;
  (void)sodium_mprotect_readonly(s->pepper);
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
           TOKEND_VERSION, cfg->socket_path, cfg->db_path,
           index_count(s->index));
  return 0;
}

int server_listen(server_t *s) {
  const config_t *cfg = &s->cfg;

  uv_timer_start(&s->flush_timer, on_flush_timer, cfg->flush_interval_ms,
                 cfg->flush_interval_ms);
  uv_timer_start(&s->sweep_timer, on_sweep_timer, sweep_interval(cfg),
                 sweep_interval(cfg));
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
}
