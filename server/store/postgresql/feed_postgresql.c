/* feed_postgresql.c: the change feed follower of the PostgreSQL store
 * (store/feed.h), driven by the event loop through libpq's asynchronous
 * API: its own connection, whose socket the loop watches (uv_poll_t);
 * PQsendQueryParams and PQconsumeInput/PQisBusy/PQgetResult to query,
 * PQnotifies for the notifications. Connecting is done on libuv's thread
 * pool (PQconnectdbParams, bounded by connect_timeout): libpq resolves a
 * host name synchronously even in PQconnectStart, and a DNS outage must
 * not stall Verify. Nothing here blocks the loop.
 *
 * One query at a time on the connection; what is wanted next is a flag,
 * taken in this order when the connection is idle:
 *   feed    read the changes after the applied revision (a page at a time)
 *           and apply them through the handler: on a notification on
 *           tokend_changes, on the tick (the safety net), after connecting
 *   report  upsert this host's row in hosts (applied revision, heartbeat):
 *           when the applied revision moved, and as the heartbeat; it
 *           notifies tokend_applied with "<host id> <revision>"
 *   hosts   read the live hosts and their applied revisions, while writes
 *           wait to have spread: when a wait starts and on the tick (for
 *           liveness); between reads, the reports' notifications move
 *           the hosts' revisions on (and add a host new since), so a wait
 *           ends as the last host's report arrives
 * A read of the feed that comes back with less than a page found nothing
 * left to apply: everything committed before it was sent is in memory.
 * Every write committed after it counts this host (its last report made
 * it live) while that report is younger than the lease: fresh_until moves
 * to the report's send time plus the lease (feed_apply).
 *
 * The connection is lost (server gone, terminated, a query that does not
 * come back within the lease): it is dropped and made again, after a
 * backoff, and the feed is read from the applied revision: nothing is
 * missed. The hosts' liveness is judged on the database's clock (the
 * heartbeat's clock_timestamp()); fresh_until on this host's monotonic
 * clock, from the moment a read was sent, which is before the heartbeat
 * that follows it: this host stops answering no later than the others
 * stop counting it live. */
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "store/feed.h"
#include "store/postgresql/pg_util.h"

/* Changes read and applied per query while catching up. */
#define FEED_PAGE 5000
/* Reconnection backoff: the first retry at once (a terminated session, a
 * restarted server), then doubling up to the cap. */
#define FEED_BACKOFF_FIRST_MS 20
#define FEED_BACKOFF_MAX_MS 2000
/* At shutdown, the longest the leave (and the query before it) may take. */
#define FEED_BYE_MS 500

typedef enum {
  Q_NONE,
  Q_SETUP,  /* session settings and LISTEN */
  Q_FEED,   /* the changes after applied */
  Q_REPORT, /* this host's row */
  Q_HOSTS,  /* the live hosts' applied revisions */
  Q_BYE     /* this host leaves (close) */
} query_t;

/* The changes after $1, with what each names as it is now. Written so
 * that its plan does not depend on the planner's statistics (a new
 * database has none until autovacuum's first ANALYZE, and a plain join
 * then hashed every token on every read: 10 ms at 15,000 tokens, seconds
 * at 200,000): a page of changes by the primary key's order, then each
 * one's token and grant by their primary keys (LIMIT 1 keeps each LATERAL
 * subquery from being pulled up into a join the planner may hash). */
#define FEED_SQL                                                               \
  "SELECT c.rev, (c.token_seq IS NOT NULL)::int4,"                             \
  " coalesce(c.domain, ''), coalesce(c.user_name, ''),"                        \
  " (a.user_name IS NOT NULL)::int4, coalesce(a.granted_at, 0),"               \
  " coalesce(a.granted_by, ''),"                                               \
  " t.seq, t.id, t.domain, t.label, t.hint, t.scopes, t.hash, t.created_at,"   \
  " t.expires_at, t.last_used_at, t.revoked_at, t.created_by, t.revoked_by,"   \
  " t.metadata, t.rolled_from, t.rolled_to, t.pepper_gen"                      \
  " FROM (SELECT rev, token_seq, domain, user_name FROM changes"               \
  " WHERE rev > $1 ORDER BY rev LIMIT $2) c"                                   \
  " LEFT JOIN LATERAL (SELECT * FROM tokens"                                   \
  " WHERE tokens.seq = c.token_seq LIMIT 1) t ON true"                         \
  " LEFT JOIN LATERAL (SELECT user_name, granted_at, granted_by"               \
  " FROM domain_admins d WHERE c.token_seq IS NULL AND d.domain = c.domain"    \
  " AND d.user_name = c.user_name LIMIT 1) a ON true"                          \
  " ORDER BY c.rev"
#define FEED_TOKEN_COL 7

typedef struct pg_feed {
  store_feed_t base;
  uv_loop_t *loop;
  char *uri; /* password included: never logged */
  char host_id[128];
  char
      app_name[64]; /* "tokend-listen:<host id>", what pg_stat_activity shows */
  char version[32];
  uint8_t instance[16]; /* this run's, so a second run under one id is seen */
  uint32_t lease_ms;
  uint32_t tick_ms; /* the heartbeat: a quarter lease */
  store_feed_handler_t h;

  PGconn *conn;
  int connecting;  /* a connect_work is on the thread pool */
  uv_poll_t *poll; /* watches PQsocket(conn); closing is asynchronous */
  int poll_fd;
  uv_timer_t tick;  /* poll the feed, heartbeat, check the lease */
  uv_timer_t retry; /* reconnect after the backoff */
  uv_timer_t timer; /* the first wait's deadline */
  uint32_t backoff_ms;

  query_t q;       /* in flight */
  uint64_t q_sent; /* uv_now() when it was sent */
  PGresult *q_result;
  int q_failed;
  int want_feed, want_report, want_hosts;
  int turn; /* the last kind sent: 0 feed, 1 report, 2 hosts */
  /* The send time (uv_now) of the last report that took this host's row:
   * from its execution, later, the other hosts count this one live for a
   * lease. 0: none yet. */
  uint64_t report_sent;
  int64_t reported_rev;     /* the revision that report said */
  int64_t reported_try_rev; /* the one the report in flight says */
  int ready_told;           /* handler.ready was called */
  int closing;
  int handles; /* open, closed one by one by close */

  int64_t applied;
  /* The live hosts and their applied revisions: as last read from hosts,
   * then moved on by their reports' notifications ("<host id> <rev>"; a
   * host that reports is live, and one new since the read is added).
   * Notifications arrive in commit order, so a host that registered
   * before a write's last report was noticed is in here by then. */
  int64_t *host_revs;
  char (*host_ids)[128];
  size_t n_hosts, hosts_cap;
  int hosts_known;

  store_feed_wait_t *wait_head, *wait_tail; /* by deadline */

  int stale_logged;
  log_limit_t err_log;
  char problem[256];
} pg_feed_t;

static const struct store_feed_ops pg_feed_ops;

static pg_feed_t *feed_of(store_feed_t *base) {
  return store_container_of(base, pg_feed_t, base);
}

static const pg_feed_t *feed_cof(const store_feed_t *base) {
  return store_container_of(base, const pg_feed_t, base);
}

static void feed_next(pg_feed_t *f);
static void feed_lost(pg_feed_t *f, const char *what, const char *msg);
static void on_poll(uv_poll_t *p, int status, int events);
static void on_retry(uv_timer_t *t);
static void on_timer(uv_timer_t *t);

static void feed_problem(pg_feed_t *f, const char *what, const char *msg) {
  snprintf(f->problem, sizeof(f->problem), "%.40s: %.200s", what,
           msg != NULL && msg[0] != '\0' ? msg : "connection lost");
  pg_one_line(f->problem);
}

static void on_poll_closed(uv_handle_t *h) { free(h); }

/* The server's notices on this connection go to tokend's log, one line. */
static void feed_notice(void *arg, const char *message) {
  char line[256];

  (void)arg;
  snprintf(line, sizeof(line), "%s", message);
  pg_one_line(line);
  log_warn("store: change feed: postgresql: %s", line);
}

/* Stops watching the socket (before libpq closes it, or when it moved). */
static void feed_unwatch(pg_feed_t *f) {
  if (f->poll == NULL)
    return;
  uv_close((uv_handle_t *)f->poll, on_poll_closed);
  f->poll = NULL;
  f->poll_fd = -1;
}

/* Watches the connection's socket for events (UV_READABLE, UV_WRITABLE). */
static int feed_watch(pg_feed_t *f, int events) {
  int fd = PQsocket(f->conn);

  if (fd < 0)
    return -1;
  if (f->poll != NULL && f->poll_fd != fd)
    feed_unwatch(f);
  if (f->poll == NULL) {
    if ((f->poll = malloc(sizeof(*f->poll))) == NULL)
      return -1;
    if (uv_poll_init(f->loop, f->poll, fd) != 0) {
      free(f->poll);
      f->poll = NULL;
      return -1;
    }
    f->poll->data = f;
    f->poll_fd = fd;
  }
  return uv_poll_start(f->poll, events, on_poll) == 0 ? 0 : -1;
}

/* Ends every wait whose deadline has passed (all of them with all set),
 * reporting how far its write had spread as last seen. */
static void waits_settle(pg_feed_t *f, int all);

/* Drops the connection; it is made again after the backoff. */
static void feed_drop(pg_feed_t *f) {
  feed_unwatch(f);
  PQclear(f->q_result);
  f->q_result = NULL;
  PQfinish(f->conn);
  f->conn = NULL;
  f->q = Q_NONE;
  f->hosts_known = 0;
  /* After every reconnection, the feed from the applied revision. */
  f->want_feed = 1;
  f->want_report = 1;
  if (f->closing)
    return;
  f->backoff_ms = f->backoff_ms == 0 ? FEED_BACKOFF_FIRST_MS
                  : f->backoff_ms >= FEED_BACKOFF_MAX_MS / 2
                      ? FEED_BACKOFF_MAX_MS
                      : 2 * f->backoff_ms;
  uv_timer_start(&f->retry, on_retry, f->backoff_ms, 0);
}

static void feed_lost(pg_feed_t *f, const char *what, const char *msg) {
  feed_problem(f, what, msg);
  log_limited(&f->err_log, LOG_WARN,
              "store: change feed: %s; reconnecting (Verify keeps answering "
              "until the lease, %u ms, runs out)",
              f->problem, (unsigned)f->lease_ms);
  feed_drop(f);
}

/* A connection made on the thread pool. */
typedef struct {
  uv_work_t req;
  pg_feed_t *f;
  PGconn *conn;
  char timeout[16];
} connect_work_t;

static void feed_connected(pg_feed_t *f);
static void feed_release(pg_feed_t *f);

/* Thread pool: connect, blocking. The URI, expanded where it stands,
 * overrides the keepalive and timeout defaults before it; the application
 * name after it is the follower's (what pg_stat_activity shows). */
static void connect_work(uv_work_t *req) {
  connect_work_t *w = req->data;
  const char *const keys[] = {"keepalives",          "keepalives_idle",
                              "keepalives_interval", "keepalives_count",
                              "connect_timeout",     "dbname",
                              "application_name",    NULL};
  const char *vals[] = {
      "1", "5", "2", "3", w->timeout, w->f->uri, w->f->app_name, NULL};

  w->conn = PQconnectdbParams(keys, vals, 1);
}

static void connect_done(uv_work_t *req, int status) {
  connect_work_t *w = req->data;
  pg_feed_t *f = w->f;
  PGconn *conn = w->conn;

  free(w);
  f->connecting = 0;
  if (f->closing) {
    PQfinish(conn);
    feed_release(f);
    return;
  }
  f->handles--;
  if (status != 0 || conn == NULL || PQstatus(conn) != CONNECTION_OK) {
    feed_lost(f, "cannot connect",
              status != 0    ? uv_strerror(status)
              : conn == NULL ? "out of memory"
                             : PQerrorMessage(conn));
    PQfinish(conn);
    return;
  }
  f->conn = conn;
  feed_connected(f);
}

/* Starts connecting on the thread pool; feed_connected goes on. */
static void feed_connect(pg_feed_t *f) {
  connect_work_t *w = calloc(1, sizeof(*w));
  uint32_t secs = f->lease_ms / 1000;

  if (w == NULL) {
    feed_lost(f, "cannot connect", "out of memory");
    return;
  }
  w->f = f;
  w->req.data = w;
  /* A server that does not answer is given up on within the lease. */
  snprintf(w->timeout, sizeof(w->timeout), "%u", secs < 2 ? 2u : secs);
  if (uv_queue_work(f->loop, &w->req, connect_work, connect_done) != 0) {
    free(w);
    feed_lost(f, "cannot connect", "cannot queue the connection");
    return;
  }
  /* Counted with the handles: the follower is freed after it returns. */
  f->connecting = 1;
  f->handles++;
}

static void on_retry(uv_timer_t *t) {
  pg_feed_t *f = t->data;

  if (f->closing || f->conn != NULL || f->connecting)
    return;
  feed_connect(f);
}

/* Sends one statement; binary results. */
static void feed_send(pg_feed_t *f, query_t q, const char *sql, int n,
                      const char *const *values, const int *lengths,
                      const int *formats) {
  int rc;

  if (!PQsendQueryParams(f->conn, sql, n, NULL, values, lengths, formats, 1)) {
    feed_lost(f, "send", PQerrorMessage(f->conn));
    return;
  }
  f->q = q;
  f->q_sent = uv_now(f->loop);
  f->q_failed = 0;
  /* Non-blocking: what did not fit in the socket goes when writable. */
  rc = PQflush(f->conn);
  if (rc < 0 ||
      feed_watch(f, rc == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0)
    feed_lost(f, "send", PQerrorMessage(f->conn));
}

static void send_feed(pg_feed_t *f) {
  char rev[24], page[24];
  const char *values[2] = {rev, page};

  snprintf(rev, sizeof(rev), "%lld", (long long)f->applied);
  snprintf(page, sizeof(page), "%d", FEED_PAGE);
  f->want_feed = 0;
  feed_send(f, Q_FEED, FEED_SQL, 2, values, NULL, NULL);
}

static void send_report(pg_feed_t *f) {
  char rev[24], lease[24], pid[24];
  const char *values[6] = {
      f->host_id, (const char *)f->instance, rev, lease, pid, f->version};
  const int lengths[6] = {0, (int)sizeof(f->instance), 0, 0, 0, 0};
  const int formats[6] = {0, 1, 0, 0, 0, 0};

  snprintf(rev, sizeof(rev), "%lld", (long long)f->applied);
  f->reported_try_rev = f->applied;
  snprintf(lease, sizeof(lease), "%u", (unsigned)f->lease_ms);
  snprintf(pid, sizeof(pid), "%d", (int)getpid());
  f->want_report = 0;
  feed_send(f, Q_REPORT, "SELECT tokend_report($1, $2, $3, $4, $5, $6)::int4",
            6, values, lengths, formats);
}

static void send_hosts(pg_feed_t *f) {
  f->want_hosts = 0;
  feed_send(f, Q_HOSTS,
            "SELECT host_id, applied_rev FROM hosts WHERE heartbeat_at >"
            " clock_timestamp() - lease_ms * interval '1 millisecond'",
            0, NULL, NULL, NULL);
}

/* The next wanted query, if the connection is up and idle: in turn after
 * the last one (feed, report, hosts), so that under a stream of writes,
 * whose notifications keep the feed wanted, the reports and the reads of
 * hosts that answer waiting writes still get their turn. */
static void feed_next(pg_feed_t *f) {
  int i;

  if (f->conn == NULL || f->connecting || f->q != Q_NONE || f->closing)
    return;
  if (f->wait_head == NULL)
    f->want_hosts = 0;
  for (i = 0; i < 3; i++) {
    f->turn = (f->turn + 1) % 3;
    if (f->turn == 0 && f->want_feed) {
      send_feed(f);
      return;
    }
    if (f->turn == 1 && f->want_report) {
      send_report(f);
      return;
    }
    if (f->turn == 2 && f->want_hosts) {
      send_hosts(f);
      return;
    }
  }
}

/* ---- waits ---- */

static void wait_unlink(pg_feed_t *f, store_feed_wait_t *w) {
  if (w->prev != NULL)
    w->prev->next = w->next;
  else
    f->wait_head = w->next;
  if (w->next != NULL)
    w->next->prev = w->prev;
  else
    f->wait_tail = w->prev;
  w->prev = w->next = NULL;
}

/* How far rev has spread, by the hosts as last read (before any read:
 * only this host is known). */
static void spread(const pg_feed_t *f, int64_t rev, store_propagation_t *p) {
  size_t i;

  p->revision = rev;
  p->applied = p->pending = 0;
  if (!f->hosts_known) {
    if (f->applied >= rev)
      p->applied = 1;
    else
      p->pending = 1;
    return;
  }
  for (i = 0; i < f->n_hosts; i++) {
    int64_t hr = f->host_revs[i];

    /* This host knows what it applied before its report says so. */
    if (f->applied > hr && strcmp(f->host_ids[i], f->host_id) == 0)
      hr = f->applied;
    if (hr >= rev)
      p->applied++;
    else
      p->pending++;
  }
}

static void timer_rearm(pg_feed_t *f) {
  uint64_t now = uv_now(f->loop);

  if (f->wait_head == NULL) {
    uv_timer_stop(&f->timer);
    return;
  }
  uv_timer_start(
      &f->timer, on_timer,
      f->wait_head->deadline > now ? f->wait_head->deadline - now : 0, 0);
}

/* Ends the waits the last read of hosts satisfies (every live host has
 * applied their revision). */
static void waits_check(pg_feed_t *f) {
  store_feed_wait_t *w, *next;
  store_propagation_t p;

  /* Only against the live hosts as read: before that, this host alone
   * would look like all of them. */
  if (!f->hosts_known) {
    timer_rearm(f);
    return;
  }

  for (w = f->wait_head; w != NULL; w = next) {
    next = w->next;
    spread(f, w->rev, &p);
    if (p.pending == 0 && p.applied > 0) {
      wait_unlink(f, w);
      w->cb(w, &p);
      /* The last call answered may have ended the server's shutdown,
       * which closed the follower and ended every other wait. */
      if (f->closing)
        return;
    }
  }
  timer_rearm(f);
}

static void waits_settle(pg_feed_t *f, int all) {
  uint64_t now = uv_now(f->loop);
  store_feed_wait_t *w;
  store_propagation_t p;

  while ((w = f->wait_head) != NULL && (all || w->deadline <= now)) {
    wait_unlink(f, w);
    spread(f, w->rev, &p);
    w->cb(w, &p);
    /* As in waits_check: a close from within ended the rest. */
    if (f->closing && !all)
      return;
  }
  if (!f->closing)
    timer_rearm(f);
}

static void on_timer(uv_timer_t *t) { waits_settle(t->data, 0); }

static void pg_feed_wait(store_feed_t *base, store_feed_wait_t *w, int64_t rev,
                         uint32_t timeout_ms) {
  pg_feed_t *f = feed_of(base);

  w->rev = rev;
  w->deadline = uv_now(f->loop) + timeout_ms;
  w->next = NULL;
  /* Every timeout is the same, so the latest is the last. */
  w->prev = f->wait_tail;
  if (f->wait_tail != NULL)
    f->wait_tail->next = w;
  else
    f->wait_head = w;
  f->wait_tail = w;
  timer_rearm(f);
  f->want_hosts = 1;
  feed_next(f);
}

/* ---- results ---- */

static void feed_apply(pg_feed_t *f, const PGresult *r) {
  store_token_t *row = NULL;
  store_admin_t a;
  int i, n = PQntuples(r), err;
  char domain[TOKEND_DOMAIN_BYTES], user[TOKEND_USER_BYTES];

  for (i = 0; i < n; i++) {
    int64_t rev = pg_get_i64(r, i, 0);

    err = 0;
    if (pg_get_i64(r, i, 1)) {
      if (row == NULL && (row = malloc(sizeof(*row))) == NULL) {
        /* Not applied, not counted: read again on the next tick. */
        log_limited(&f->err_log, LOG_ERROR,
                    "store: change feed: out of memory");
        break;
      }
      if (PQgetisnull(r, i, FEED_TOKEN_COL))
        err = TOKEND_ESTORE; /* a change of a token that is not there */
      else if ((err = pg_token_read(r, i, FEED_TOKEN_COL, row)) == 0)
        err = f->h.token(f->h.ctx, row);
    } else {
      pg_get_text(r, i, 2, domain, sizeof(domain));
      pg_get_text(r, i, 3, user, sizeof(user));
      if (pg_get_i64(r, i, 4)) {
        memcpy(a.domain, domain, sizeof(a.domain));
        memcpy(a.user, user, sizeof(a.user));
        a.granted_at = pg_get_i64(r, i, 5);
        pg_get_text(r, i, 6, a.granted_by, sizeof(a.granted_by));
        err = f->h.admin(f->h.ctx, domain, user, &a);
      } else {
        err = f->h.admin(f->h.ctx, domain, user, NULL);
      }
    }
    if (err != 0)
      log_error("store: change feed: revision %lld could not be applied: %s",
                (long long)rev, tokend_strerror(err));
    f->applied = rev;
  }
  if (row != NULL) {
    sodium_memzero(row, sizeof(*row));
    free(row);
  }
  if (i < n)
    return;
  if (n == FEED_PAGE) {
    f->want_feed = 1; /* more to catch up on */
    return;
  }
  /* Current as of when this read was sent, and counted by every write
   * that commits after it: a report (one query at a time: it completed
   * before this read was sent) made this host live in hosts. A write
   * committed after this read waits for this host while the report is
   * younger than the lease (its read of hosts sees it), so this host may
   * answer until then, and no longer. Before its first report, never: a
   * write would not wait for it. */
  if (f->report_sent == 0)
    return;
  f->base.fresh_until = f->report_sent + f->lease_ms;
  if (!f->ready_told) {
    f->ready_told = 1;
    f->h.ready(f->h.ctx);
  }
  f->problem[0] = '\0';
  if (f->stale_logged) {
    f->stale_logged = 0;
    log_info("store: change feed: caught up at revision %lld; answering "
             "Verify again",
             (long long)f->applied);
  }
}

/* Room for n hosts. */
static int hosts_reserve(pg_feed_t *f, size_t n) {
  int64_t *revs;
  char(*ids)[128];
  size_t cap = f->hosts_cap == 0 ? 8 : f->hosts_cap;

  if (n <= f->hosts_cap)
    return 0;
  while (cap < n)
    cap *= 2;
  if ((revs = realloc(f->host_revs, cap * sizeof(*revs))) == NULL)
    return -1;
  f->host_revs = revs;
  if ((ids = realloc(f->host_ids, cap * sizeof(*ids))) == NULL)
    return -1;
  f->host_ids = ids;
  f->hosts_cap = cap;
  return 0;
}

static void feed_hosts_read(pg_feed_t *f, const PGresult *r) {
  size_t n = (size_t)PQntuples(r), i;

  if (hosts_reserve(f, n) != 0)
    return;
  for (i = 0; i < n; i++) {
    pg_get_text(r, (int)i, 0, f->host_ids[i], sizeof(f->host_ids[i]));
    f->host_revs[i] = pg_get_i64(r, (int)i, 1);
  }
  f->n_hosts = n;
  f->hosts_known = 1;
  waits_check(f);
}

/* A host's report, as its notification says: "<host id> <revision>".
 * Returns 1 if the hosts known moved on. */
static int feed_host_reported(pg_feed_t *f, const char *payload) {
  const char *sp = strrchr(payload, ' ');
  size_t len, i;
  int64_t rev;

  if (!f->hosts_known || sp == NULL || (len = (size_t)(sp - payload)) == 0 ||
      len >= sizeof(f->host_ids[0]))
    return 0;
  rev = strtoll(sp + 1, NULL, 10);
  for (i = 0; i < f->n_hosts; i++)
    if (strncmp(f->host_ids[i], payload, len) == 0 &&
        f->host_ids[i][len] == '\0')
      break;
  if (i == f->n_hosts) {
    /* New since the read: it reported, so it is live, and counted. */
    if (hosts_reserve(f, i + 1) != 0) {
      f->hosts_known = 0; /* read them again rather than miss one */
      return 0;
    }
    memcpy(f->host_ids[i], payload, len);
    f->host_ids[i][len] = '\0';
    f->host_revs[i] = rev;
    f->n_hosts++;
    return 1;
  }
  if (rev <= f->host_revs[i])
    return 0;
  f->host_revs[i] = rev;
  return 1;
}

/* One query's results are in: act on them. */
static void feed_done(pg_feed_t *f, query_t q, PGresult *r) {
  switch (q) {
  case Q_SETUP:
    f->backoff_ms = 0;
    break;
  case Q_FEED:
    feed_apply(f, r);
    /* This host's part of a wait may be done now. */
    if (f->wait_head != NULL) {
      waits_check(f);
      if (f->closing)
        return;
    }
    /* Report what changed at once (writes wait for it), and the
     * heartbeat once per tick. */
    if (f->applied != f->reported_rev || f->report_sent == 0 ||
        f->q_sent - f->report_sent >= f->tick_ms / 2)
      f->want_report = 1;
    break;
  case Q_REPORT:
    if (PQntuples(r) == 1 && pg_get_i64(r, 0, 0) == 0) {
      char why[256];

      snprintf(why, sizeof(why),
               "another tokend, still live, reports as host id \"%s\": give "
               "each host its own --host-id",
               f->host_id);
      /* Not counted by writes: never current (report_sent stays), so
       * this host does not answer (at start it does not even listen)
       * until the row is free: the same id's previous run, killed without
       * leaving, is past its lease; or a second tokend really runs with
       * this id, and the operator must give it its own. Tried again on
       * every tick. */
      feed_problem(f, "hosts", why);
      log_limited(&f->err_log, LOG_ERROR,
                  "store: change feed: %s (or, if this host's previous run "
                  "was killed, wait for its lease to run out); not answering "
                  "until this host's row is free",
                  why);
      f->report_sent = 0;
      f->base.fresh_until = 0;
      break;
    }
    f->report_sent = f->q_sent;
    f->reported_rev = f->reported_try_rev;
    log_debug("store: change feed: reported revision %lld",
              (long long)f->reported_rev);
    /* The next read of the feed makes this host current. */
    f->want_feed = 1;
    break;
  case Q_HOSTS:
    feed_hosts_read(f, r);
    break;
  case Q_NONE:
  case Q_BYE:
    break;
  }
}

/* Takes the notifications libpq has parsed: what they want read. */
static void feed_notifies(pg_feed_t *f) {
  PGnotify *n;
  int moved = 0;

  while ((n = PQnotifies(f->conn)) != NULL) {
    if (strcmp(n->relname, "tokend_changes") == 0)
      f->want_feed = 1;
    else if (strcmp(n->relname, "tokend_applied") == 0 &&
             feed_host_reported(f, n->extra) && f->wait_head != NULL)
      moved = 1;
    PQfreemem(n);
  }
  /* Writes whose every live host has now reported them are answered
   * without a read of hosts; one stays needed when a wait starts (for
   * liveness) and on the tick while writes wait (a host that stopped
   * reporting drops out after its lease). */
  if (moved)
    waits_check(f);
}

/* Reads what arrived: notifications, and the query's results. */
static void feed_read(pg_feed_t *f) {
  PGresult *r;
  query_t q;

  if (!PQconsumeInput(f->conn)) {
    feed_lost(f, "connection", PQerrorMessage(f->conn));
    return;
  }
  feed_notifies(f);
  while (f->q != Q_NONE && !PQisBusy(f->conn)) {
    if ((r = PQgetResult(f->conn)) == NULL) {
      /* The query is over: its last result, if it succeeded. */
      q = f->q;
      f->q = Q_NONE;
      r = f->q_result;
      f->q_result = NULL;
      if (!f->q_failed && r != NULL)
        feed_done(f, q, r);
      PQclear(r);
      /* Without its LISTEN, the follower would only poll: start over. */
      if (q == Q_SETUP && f->q_failed && f->conn != NULL) {
        feed_drop(f);
        return;
      }
      if (f->conn == NULL || f->closing)
        return;
      continue;
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK &&
        PQresultStatus(r) != PGRES_COMMAND_OK) {
      if (!f->q_failed) {
        feed_problem(f, "query", PQresultErrorMessage(r));
        log_limited(&f->err_log, LOG_WARN, "store: change feed: %s",
                    f->problem);
      }
      /* A failed read of the feed is tried again on the next tick. */
      f->q_failed = 1;
    }
    PQclear(f->q_result);
    f->q_result = r;
  }
  if (PQstatus(f->conn) == CONNECTION_BAD) {
    feed_lost(f, "connection", PQerrorMessage(f->conn));
    return;
  }
  /* Parsed while reading the results: no event would bring them again. */
  feed_notifies(f);
  feed_next(f);
}

/* Connected: from now on non-blocking, watched by the loop. */
static void feed_connected(pg_feed_t *f) {
  PQsetNoticeProcessor(f->conn, feed_notice, f);
  if (PQsetnonblocking(f->conn, 1) != 0) {
    feed_lost(f, "connect", PQerrorMessage(f->conn));
    return;
  }
  /* The heartbeats need not wait for a disk flush: a lost one is only a
   * late one. */
  if (!PQsendQuery(f->conn, "SET synchronous_commit = off;"
                            " LISTEN tokend_changes; LISTEN tokend_applied")) {
    feed_lost(f, "connect", PQerrorMessage(f->conn));
    return;
  }
  f->q = Q_SETUP;
  f->q_sent = uv_now(f->loop);
  f->q_failed = 0;
  f->want_feed = f->want_report = 1;
  if (PQflush(f->conn) < 0 || feed_watch(f, UV_READABLE | UV_WRITABLE) != 0)
    feed_lost(f, "connect", PQerrorMessage(f->conn));
}

static void on_poll(uv_poll_t *p, int status, int events) {
  pg_feed_t *f = p->data;
  int rc;

  if (f->conn == NULL)
    return;
  if (status < 0) {
    feed_lost(f, "connection", uv_strerror(status));
    return;
  }
  if (events & UV_WRITABLE) {
    if ((rc = PQflush(f->conn)) < 0) {
      feed_lost(f, "send", PQerrorMessage(f->conn));
      return;
    }
    if (rc == 0 && feed_watch(f, UV_READABLE) != 0) {
      feed_lost(f, "connection", "cannot watch the socket");
      return;
    }
  }
  if (events & UV_READABLE)
    feed_read(f);
}

/* The safety net: read the feed and report (the heartbeat) every quarter
 * lease; notice a lease run out, and a query or a connection attempt that
 * does not come back within it. */
static void on_tick(uv_timer_t *t) {
  pg_feed_t *f = t->data;
  uint64_t now = uv_now(f->loop);

  if (f->ready_told && now >= f->base.fresh_until && !f->stale_logged) {
    f->stale_logged = 1;
    log_warn("store: change feed: not current for %u ms (--lease-ms)%s%s: "
             "answering Verify UNAVAILABLE until caught up",
             (unsigned)f->lease_ms, f->problem[0] != '\0' ? ": " : "",
             f->problem);
  }
  if (f->conn != NULL && f->q != Q_NONE && now - f->q_sent >= f->lease_ms) {
    feed_lost(f, "query", "no answer within the lease");
    return;
  }
  f->want_feed = 1;
  /* Liveness, while writes wait: a host that stopped reporting drops out
   * of the read once its lease has run out. */
  if (f->wait_head != NULL)
    f->want_hosts = 1;
  feed_next(f);
}

/* ---- the ops ---- */

static void pg_feed_status(const store_feed_t *base, store_feed_status_t *out) {
  const pg_feed_t *f = feed_cof(base);

  out->applied_rev = f->applied;
  snprintf(out->problem, sizeof(out->problem), "%s", f->problem);
}

static void on_handle_closed(uv_handle_t *h) { feed_release(h->data); }

/* One of the follower's handles (or its connection work) is done; the
 * last frees it. */
static void feed_release(pg_feed_t *f) {
  if (--f->handles > 0)
    return;
  free(f->host_revs);
  free(f->host_ids);
  sodium_memzero(f->uri, strlen(f->uri));
  free(f->uri);
  free(f);
}

/* Shutdown only: waits, without the loop, up to ms for the query in
 * flight to end (its results read and dropped). 0 once idle, -1 if not. */
static int feed_wait_idle(pg_feed_t *f, int ms) {
  uint64_t deadline = uv_hrtime() + (uint64_t)ms * 1000000u;
  struct pollfd pfd = {.fd = PQsocket(f->conn), .events = POLLIN};
  PGresult *r;
  int left;

  while (pfd.fd >= 0 && PQflush(f->conn) >= 0) {
    while (!PQisBusy(f->conn)) {
      if ((r = PQgetResult(f->conn)) == NULL) {
        f->q = Q_NONE;
        return 0;
      }
      PQclear(r);
    }
    left = (int)((deadline - uv_hrtime()) / 1000000u);
    if (uv_hrtime() >= deadline || poll(&pfd, 1, left) <= 0 ||
        !PQconsumeInput(f->conn))
      break;
  }
  return -1;
}

static void pg_feed_close(store_feed_t *base) {
  pg_feed_t *f = feed_of(base);
  const char *values[2] = {f->host_id, (const char *)f->instance};
  const int lengths[2] = {0, (int)sizeof(f->instance)};
  const int formats[2] = {0, 1};

  f->closing = 1;
  waits_settle(f, 1);
  /* Leaving: other hosts stop waiting for this one at once rather than
   * after its lease, and a restart under the same id takes its row at once.
   * At shutdown the loop may wait, briefly: the query in flight, then the
   * leave, each for at most FEED_BYE_MS. */
  if (f->conn != NULL &&
      (f->q == Q_NONE || feed_wait_idle(f, FEED_BYE_MS) == 0) &&
      PQsendQueryParams(f->conn,
                        "UPDATE hosts SET heartbeat_at = '-infinity'"
                        " WHERE host_id = $1 AND instance = $2",
                        2, NULL, values, lengths, formats, 1)) {
    f->q = Q_BYE;
    (void)feed_wait_idle(f, FEED_BYE_MS);
  }
  feed_unwatch(f);
  PQfinish(f->conn);
  f->conn = NULL;
  PQclear(f->q_result);
  f->q_result = NULL;
  uv_close((uv_handle_t *)&f->tick, on_handle_closed);
  uv_close((uv_handle_t *)&f->retry, on_handle_closed);
  uv_close((uv_handle_t *)&f->timer, on_handle_closed);
}

static const struct store_feed_ops pg_feed_ops = {
    .wait = pg_feed_wait,
    .status = pg_feed_status,
    .close = pg_feed_close,
};

int store_pg_feed_open(const char *location,
                       const struct store_feed_open_args *args,
                       store_feed_t **out) {
  pg_feed_t *f = calloc(1, sizeof(*f));
  size_t n = strlen("postgresql:") + strlen(location) + 1;
  uint32_t tick;

  *out = NULL;
  if (f == NULL || (f->uri = malloc(n)) == NULL) {
    free(f);
    return TOKEND_ENOMEM;
  }
  snprintf(f->uri, n, "postgresql:%s", location);
  f->base.ops = &pg_feed_ops;
  f->loop = args->loop;
  snprintf(f->host_id, sizeof(f->host_id), "%s", args->host_id);
  snprintf(f->app_name, sizeof(f->app_name), "tokend-listen:%s", args->host_id);
  snprintf(f->version, sizeof(f->version), "%s", args->version);
  randombytes_buf(f->instance, sizeof(f->instance));
  f->lease_ms = args->lease_ms;
  f->applied = args->rev;
  f->h = args->handler;
  f->poll_fd = -1;
  log_limit_init(&f->err_log, LOG_LIMIT_USE_DEFAULT);
  /* Not current until its first report and a read of the feed after it
   * (feed_apply): the server listens only then (handler.ready). */
  f->base.fresh_until = 0;
  uv_timer_init(f->loop, &f->tick);
  uv_timer_init(f->loop, &f->retry);
  uv_timer_init(f->loop, &f->timer);
  f->tick.data = f->retry.data = f->timer.data = f;
  f->handles = 3;
  /* A heartbeat every quarter lease: three may be lost before the others
   * stop counting this host live. */
  tick = f->lease_ms / 4;
  if (tick < 10)
    tick = 10;
  f->tick_ms = tick;
  uv_timer_start(&f->tick, on_tick, tick, tick);
  feed_connect(f);
  *out = &f->base;
  return 0;
}
