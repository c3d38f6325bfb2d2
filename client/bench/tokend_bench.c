/* tokend-bench: a load generator for tokend, shipped with it the way
 * redis-benchmark ships with Redis, and built to be run side by side with it.
 *
 *   tokend-bench -s SOCKET -c CONNS -P PIPELINE -n REQUESTS
 *                -t verify|issue|revoke|mixed[,...] [--tokens N] [--csv]
 *   tokend-bench -t bulk-revoke --tokens N -c 4 ...  (issue 17: Verify
 *                before and while one BulkRevoke of every token runs)
 *
 * Model: CONNS connections, each with up to PIPELINE requests in flight. By
 * default a connection works like redis-benchmark's: it writes PIPELINE
 * requests in one write, waits for all of their answers, then writes the
 * next PIPELINE. --window refills each answered slot at once instead. With
 * -P 1 the two are the same. It also waits like redis-benchmark's event
 * loop: before each batch it takes the socket out of epoll and adds it back
 * watching for room to write, writes when epoll says so, then does the same
 * to watch for the answers (four epoll_ctl and one more epoll_wait per
 * batch). On this project's VM that pattern alone made round trips at -c 1
 * up to a quarter faster in some runs (it keeps the CPU's tick running
 * through idle spells, saving timer VM exits: docs/PERFORMANCE.md), so the
 * two tools are only comparable if they wait alike. --keep-watch keeps one
 * watch per socket and writes at once.
 *
 * Everything runs on one thread around epoll with non-blocking sockets, so
 * the generator's own cost per request is small: a Verify is encoded and
 * its OK answer decoded by verify_wire, with no allocation; anything else
 * is packed, or unpacked into common/'s pb_arena, by protobuf-c; then a few
 * compares (its CPU use is printed with each result: on a small machine it
 * shares the cores with the server).
 *
 * Latency is per request, from the write that carried it to the read that
 * brought its answer (CLOCK_MONOTONIC), recorded in a log-linear histogram
 * with 1/128 relative precision, so memory does not grow with -n.
 *
 * Every answer is checked: a Verify of an issued token must say valid for
 * that token's id and domain, a Verify of a never-issued (well-formed) token
 * UNKNOWN, of a revoked one REVOKED; Issue and Revoke must succeed. Anything
 * else counts as an error; the exit status is 1 if there was any.
 *
 * Exit status: 0 all answers as expected, 1 some were not, 2 usage error or
 * the run could not complete (no tokend, connection lost, no answer within
 * --timeout-ms), 130 interrupted. */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <tokend/client.h>
#include <tokend/uv.h>

#include "frame.h"
#include "pb_arena.h"
#include "secret_buf.h"
#include "token.h"
#include "tokend.pb-c.h"
#include "tokend_error.h"
#include "tokend_limits.h"
#include "verify_wire.h"

#define BENCH_EXIT_OK 0
#define BENCH_EXIT_UNEXPECTED 1
#define BENCH_EXIT_ERROR 2
#define BENCH_EXIT_INTERRUPTED 130

#define BENCH_MAX_CONNS 1024
#define BENCH_MAX_PIPELINE 4096
/* call_id = (per-connection sequence << BENCH_SLOT_BITS) | slot: unique per
 * in-flight request, and the slot is found without a lookup. */
#define BENCH_SLOT_BITS 16
#define BENCH_MAX_TOKENS 20000000ull
#define BENCH_MAX_TESTS 8
/* The --tokens phase keeps at least this many Issues in flight per
 * connection, so group commit can share fsyncs. */
#define BENCH_SETUP_PIPELINE 64
/* Well-formed tokens that were never issued, for the invalid share. */
#define BENCH_UNKNOWN_TOKENS 1024
/* A Verify's token is chosen this many Verifies ahead and prefetched: the
 * pool is read at random and is larger than the cache, so otherwise every
 * Verify would wait for a miss to memory. */
#define BENCH_PICK_AHEAD 8
#define BENCH_READ_CHUNK 65536
/* Responses to our requests are small; anything larger is a broken peer. */
#define BENCH_MAX_RESPONSE_BYTES TOKEND_MAX_FRAME_BYTES_DEFAULT
/* The arena's first block: one Response unpacks without malloc. */
#define BENCH_ARENA_BYTES 16384
/* No cap of the bench's own: a Response is at most BENCH_MAX_RESPONSE_BYTES,
 * and one that needs more than the first block takes more blocks, as it
 * took malloc before the bench shared common/'s arena. */
#define BENCH_ARENA_CAP (SIZE_MAX / 2)
#define BENCH_ERRMSG_BYTES 512
#define BENCH_DEFAULT_TOKENS 1000
#define BENCH_DEFAULT_REQUESTS 100000
#define BENCH_DEFAULT_CONNS 50
#define BENCH_DEFAULT_TIMEOUT_MS 10000
/* echo: the size of each message, about a Verify request's or answer's */
#define BENCH_ECHO_BYTES 96
/* --host: the other tokends of a multi-host store (issue 13) */
#define BENCH_MAX_HOSTS 8
/* cache-revoke: the clients attached in its "with" blocks (issue 15) */
#define BENCH_DEFAULT_CACHING_CLIENTS 100

/* catch-up's pause between Status polls: short next to the 2 s a catch-up
 * may take, long enough not to take the CPU from the host catching up. */
#define BENCH_STATUS_POLL_NS 1000000ull
/* hosts_pending of a write's answer (0 without a multi-host store). */
#define BENCH_HOSTS_PENDING(result)                                            \
  ((result)->propagation != NULL ? (result)->propagation->hosts_pending : 0u)

/* Log-linear histogram: values below HIST_SUB are exact; above, each power
 * of two is split into HIST_SUB buckets (relative error < 1/HIST_SUB). */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

typedef enum { OP_VERIFY = 0, OP_ISSUE, OP_REVOKE, OP_COUNT } bench_op_t;

typedef enum {
  TEST_VERIFY = 0,
  TEST_ISSUE,
  TEST_REVOKE,
  TEST_MIXED,
  TEST_WARM_UP, /* one Verify of each --tokens token, in order */
  TEST_ECHO,    /* no server: what wake-ups allow, see bench_run_echo */
  /* multi-host (issue 13): one Revoke at a time, then every host polled */
  TEST_REVOKE_EVERYWHERE,
  /* multi-host: how long a resumed host takes to be current again */
  TEST_CATCH_UP,
  TEST_CLIENT_CACHE, /* the C library's Verify cache, bench_run_client_cache */
  /* Revokes, paired: with --caching-clients clients attached, and none */
  TEST_CACHE_REVOKE,
  TEST_UV_VERIFY, /* Verifies through tokend_uv_*, -c clients, -P in flight */
  /* issue 17: Verify while one BulkRevoke --all runs (bench_run_bulk) */
  TEST_BULK_REVOKE,
  TEST_SETUP /* the --tokens phase: Issues, not reported as a test */
} bench_test_kind_t;

static const char *const bench_test_names[] = {"verify",
                                               "issue",
                                               "revoke",
                                               "mixed",
                                               "warm-up",
                                               "echo",
                                               "revoke-everywhere",
                                               "catch-up",
                                               "client-cache",
                                               "cache-revoke",
                                               "uv-verify",
                                               "bulk-revoke",
                                               "setup"};

/* What the answer to a request must be, decided when it is sent. */
typedef enum {
  EXPECT_OK = 0,          /* Issue, Revoke: status OK */
  EXPECT_VALID,           /* Verify of an active issued token */
  EXPECT_UNKNOWN,         /* Verify of a token never issued */
  EXPECT_REVOKED,         /* Verify of a token whose revoke was answered */
  EXPECT_VALID_OR_REVOKED /* Verify sent while a revoke was in flight */
} bench_expect_t;

typedef enum {
  TOKEN_ACTIVE = 0,
  TOKEN_REVOKING,
  TOKEN_REVOKED
} bench_token_state_t;

typedef struct {
  char token[TOKEND_TOKEN_BYTES];
  char id[TOKEND_TOKEN_ID_BYTES];
  /* strlen of token and id, so the hot path never measures them */
  uint8_t token_len, id_len;
  uint8_t state;
} bench_token_t;

/* The token a Verify will send: pool[index], or unknown[index]. */
typedef struct {
  uint32_t index;
  uint8_t unknown;
} bench_pick_t;

_Static_assert(TOKEND_TOKEN_BYTES <= 256 && TOKEND_TOKEN_ID_BYTES <= 256,
               "token and id lengths are kept in a uint8_t");

typedef struct {
  uint64_t call_id; /* 0: free */
  uint64_t sent_ns;
  uint32_t token; /* pool index, for a Verify of an issued token or a Revoke */
  uint8_t op;
  uint8_t expect;
  /* A Verify of an issued token: the token's id, which the answer must
   * carry. A copy, made while the pool entry is in the cache, so checking
   * the answer does not wait for the pool again. */
  uint8_t id_len;
  char id[TOKEND_TOKEN_ID_BYTES];
} bench_slot_t;

typedef struct {
  int fd;
  uint32_t events; /* what epoll watches for this fd now */
  uint8_t *rbuf;
  size_t rlen, rcap;
  uint8_t *wbuf;
  size_t woff, wlen, wcap;
  bench_slot_t *slots;
  uint32_t *free_slots;
  uint32_t n_slots, n_free;
  uint32_t *unsent; /* slots queued since the last write began */
  uint32_t n_unsent;
  uint32_t inflight;
  uint64_t seq;
} bench_conn_t;

typedef struct {
  uint64_t counts[HIST_BUCKETS];
  uint64_t total, max;
} bench_hist_t;

typedef struct {
  bench_test_kind_t kind;
  uint64_t n; /* requests to send */
  uint32_t pipeline;
  int window;  /* refill each answered slot at once */
  double rate; /* requests per second for the whole test; 0: no limit */
  uint64_t sent, done;
  uint64_t start_ns, end_ns, deadline_ns; /* deadline 0: none */
  uint64_t last_progress_ns;
  uint64_t by_op[OP_COUNT];
  uint64_t unknown_sent;
  uint64_t errors;
  char first_error[BENCH_ERRMSG_BYTES];
  bench_hist_t hist;
  const char *label; /* the name it is reported by; NULL: the kind's */
} bench_test_t;

typedef struct {
  const char *socket_path;
  uint32_t conns, pipeline;
  uint64_t requests;
  int requests_set;
  bench_test_kind_t tests[BENCH_MAX_TESTS];
  size_t n_tests;
  uint64_t tokens;
  int tokens_set;
  unsigned invalid_pct;
  unsigned mix[OP_COUNT]; /* percentages for mixed */
  double rate;
  double duration_s;
  int window;
  int keep_watch; /* one lasting epoll watch per socket, not ae's re-arming */
  int csv;
  int timeout_ms;
  unsigned settle_ms; /* after a warm-up test */
  long server_pid;    /* 0: not measured */
  char domain[TOKEND_DOMAIN_BYTES];
  const char *hosts[BENCH_MAX_HOSTS]; /* --host: the other hosts' sockets */
  size_t n_hosts;
  long resume_pid; /* catch-up: the stopped tokend to SIGCONT; 0: none */
  unsigned caching_clients; /* cache-revoke: clients attached */
} bench_opts_t;

typedef struct {
  bench_opts_t o;
  int epfd;
  bench_conn_t *conns;
  bench_token_t *pool;
  size_t n_pool, cap_pool, n_active, revoke_cursor;
  size_t warm_cursor; /* warm-up: the next token to verify */
  char unknown[BENCH_UNKNOWN_TOKENS][TOKEND_TOKEN_BYTES];
  uint8_t unknown_len[BENCH_UNKNOWN_TOKENS];
  /* The next Verifies' tokens, a ring from pick_pos; n_picks 0: not yet
   * filled. */
  bench_pick_t picks[BENCH_PICK_AHEAD];
  unsigned pick_pos, n_picks;
  size_t domain_len; /* strlen(o.domain) */
  uint64_t rng;
  bench_test_t t;
  /* What protobuf-c unpacks a Response into; reset after each one. */
  pb_arena_t arena;
  int fatal; /* the run cannot go on: fatal_msg says why */
  char fatal_msg[BENCH_ERRMSG_BYTES];
  /* bulk-revoke: set by the thread whose BulkRevoke returned; the Verify
   * test running meanwhile stops sending then. NULL: no such test. */
  atomic_int *stop_flag;
} bench_t;

static volatile sig_atomic_t bench_interrupted;

static void on_sigint(int sig) {
  (void)sig;
  bench_interrupted = 1;
}

static uint64_t now_ns(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void) {
  struct rusage ru;

  getrusage(RUSAGE_SELF, &ru);
  return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) *
             1000000000u +
         ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) *
             1000u;
}

/* *out = CPU time (user + system, all threads) of process pid, from
 * /proc/<pid>/stat. Returns 0, or TOKEND_EIO if it cannot be read. */
static int proc_cpu_ns(long pid, uint64_t *out) {
  char path[64], buf[1024], *p;
  unsigned long long utime, stime;
  long tck = sysconf(_SC_CLK_TCK);
  FILE *f;
  size_t n;

  snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
  if ((f = fopen(path, "r")) == NULL)
    return TOKEND_EIO;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name may hold spaces: fields are counted from its ')'.
   * utime and stime are fields 14 and 15; ')' ends field 2. */
  if ((p = strrchr(buf, ')')) == NULL || tck <= 0 ||
      sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
             &utime, &stime) != 2)
    return TOKEND_EIO;
  *out = (uint64_t)(utime + stime) * (1000000000ull / (uint64_t)tck);
  return 0;
}

/* xorshift64*: the choice of token need not be unpredictable, only cheap. */
static uint64_t rng_next(bench_t *b) {
  b->rng ^= b->rng >> 12;
  b->rng ^= b->rng << 25;
  b->rng ^= b->rng >> 27;
  return b->rng * 2685821657736338717ull;
}

/* Uniform in [0, n) to within n / 2^64, by a multiply instead of a
 * division (one fewer per pick on the hot path). */
static uint64_t rng_below(bench_t *b, uint64_t n) {
  return (uint64_t)(((unsigned __int128)rng_next(b) * n) >> 64);
}

__attribute__((format(printf, 2, 3))) static void
bench_fail(bench_t *b, const char *fmt, ...) {
  va_list ap;

  if (b->fatal)
    return;
  b->fatal = 1;
  va_start(ap, fmt);
  vsnprintf(b->fatal_msg, sizeof(b->fatal_msg), fmt, ap);
  va_end(ap);
}

/* An answer that was not what the request called for. The run goes on. */
__attribute__((format(printf, 2, 3))) static void
bench_unexpected(bench_t *b, const char *fmt, ...) {
  va_list ap;

  if (b->t.errors++ > 0)
    return;
  va_start(ap, fmt);
  vsnprintf(b->t.first_error, sizeof(b->t.first_error), fmt, ap);
  va_end(ap);
}

/* ---- histogram ---- */

static size_t hist_index(uint64_t v) {
  unsigned shift;

  if (v < HIST_SUB)
    return (size_t)v;
  shift = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
  return (size_t)(shift + 1) * HIST_SUB + (size_t)((v >> shift) - HIST_SUB);
}

/* The largest value that falls in bucket i. */
static uint64_t hist_highest(size_t i) {
  unsigned shift;
  uint64_t mant;

  if (i < HIST_SUB)
    return i;
  shift = (unsigned)(i / HIST_SUB) - 1;
  mant = HIST_SUB + i % HIST_SUB;
  return ((mant + 1) << shift) - 1;
}

static void hist_record(bench_hist_t *h, uint64_t v) {
  h->counts[hist_index(v)]++;
  h->total++;
  if (v > h->max)
    h->max = v;
}

/* The smallest recorded value v such that pct percent of values are <= v
 * (to the histogram's precision, never above the exact maximum). */
static uint64_t hist_percentile(const bench_hist_t *h, double pct) {
  double want = pct / 100.0 * (double)h->total;
  uint64_t rank = (uint64_t)want, seen = 0, v;
  size_t i;

  if (h->total == 0)
    return 0;
  if ((double)rank < want)
    rank++;
  if (rank == 0)
    rank = 1;
  for (i = 0; i < HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      v = hist_highest(i);
      return v < h->max ? v : h->max;
    }
  }
  return h->max;
}

/* ---- the token pool ---- */

/* The pool holds tokens: it grows without leaving a copy behind. */
static int pool_reserve(bench_t *b, size_t extra) {
  bench_token_t *np = secret_buf_reserve(b->pool, &b->cap_pool, b->n_pool,
                                         extra, sizeof(*b->pool), 1024, 1);

  if (np == NULL)
    return TOKEND_ENOMEM;
  b->pool = np;
  return 0;
}

static void pool_add(bench_t *b, const char *token, const char *id) {
  bench_token_t *tk;

  if (pool_reserve(b, 1) != 0) {
    bench_fail(b, "out of memory for %zu tokens", b->n_pool + 1);
    return;
  }
  tk = &b->pool[b->n_pool++];
  snprintf(tk->token, sizeof(tk->token), "%s", token);
  snprintf(tk->id, sizeof(tk->id), "%s", id);
  /* Both fit a uint8_t: at most TOKEND_TOKEN_BYTES - 1 characters. */
  tk->token_len = (uint8_t)strlen(tk->token);
  tk->id_len = (uint8_t)strlen(tk->id);
  tk->state = TOKEN_ACTIVE;
  b->n_active++;
}

/* The next active token to revoke, marked REVOKING; -1 if none is left. */
static int64_t pool_take_for_revoke(bench_t *b) {
  while (b->revoke_cursor < b->n_pool &&
         b->pool[b->revoke_cursor].state != TOKEN_ACTIVE)
    b->revoke_cursor++;
  if (b->revoke_cursor == b->n_pool)
    return -1;
  b->pool[b->revoke_cursor].state = TOKEN_REVOKING;
  b->n_active--;
  return (int64_t)b->revoke_cursor++;
}

/* ---- choosing a Verify's token ---- */

/* Chooses a token as the Verify of the moment would have (the pool only
 * grows, so the index stays valid), and starts loading it into the cache. */
static void pick_token(bench_t *b, bench_pick_t *p) {
  const char *at;
  size_t len;

  if (b->t.kind == TEST_WARM_UP && b->warm_cursor < b->n_pool) {
    /* Every token once, in order. */
    p->unknown = 0;
    p->index = (uint32_t)b->warm_cursor++;
  } else if (b->n_pool == 0 || rng_below(b, 100) < b->o.invalid_pct) {
    p->unknown = 1;
    p->index = (uint32_t)rng_below(b, BENCH_UNKNOWN_TOKENS);
  } else {
    p->unknown = 0;
    p->index = (uint32_t)rng_below(b, b->n_pool);
  }
  if (p->unknown) {
    at = b->unknown[p->index];
    len = sizeof(b->unknown[0]);
  } else {
    at = (const char *)&b->pool[p->index];
    len = sizeof(b->pool[0]);
  }
  /* Every cache line of the entry: the first, the last, and (an entry of
   * up to 129 bytes spans at most three) the one between. */
  _Static_assert(sizeof(bench_token_t) <= 129 && sizeof(b->unknown[0]) <= 129,
                 "a token entry spans at most three cache lines");
  __builtin_prefetch(at);
  __builtin_prefetch(at + len / 2);
  __builtin_prefetch(at + len - 1);
}

/* The token for the next Verify, chosen BENCH_PICK_AHEAD Verifies ago. */
static bench_pick_t next_pick(bench_t *b) {
  bench_pick_t p;

  if (b->n_picks == 0) {
    for (; b->n_picks < BENCH_PICK_AHEAD; b->n_picks++)
      pick_token(b, &b->picks[b->n_picks]);
    b->pick_pos = 0;
  }
  p = b->picks[b->pick_pos];
  pick_token(b, &b->picks[b->pick_pos]);
  b->pick_pos = (b->pick_pos + 1) % BENCH_PICK_AHEAD;
  return p;
}

/* ---- connections ---- */

/* Watches c for events. By default as redis-benchmark's event loop does
 * between batches: c is taken out of the epoll set and added back. With
 * --keep-watch the lasting watch is changed, and only if it differs. */
static int conn_watch(bench_t *b, bench_conn_t *c, uint32_t events) {
  struct epoll_event ev;
  int rc;

  if (b->o.keep_watch && c->events == events)
    return 0;
  memset(&ev, 0, sizeof(ev));
  ev.events = events;
  ev.data.ptr = c;
  if (b->o.keep_watch)
    rc = epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev);
  else if ((rc = epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->fd, NULL)) == 0)
    rc = epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->fd, &ev);
  if (rc != 0) {
    bench_fail(b, "epoll_ctl: %s", strerror(errno));
    return TOKEND_EINTERNAL;
  }
  c->events = events;
  return 0;
}

/* Writes what is queued; what the socket does not take waits for EPOLLOUT. */
static void conn_write(bench_t *b, bench_conn_t *c) {
  uint64_t now;
  uint32_t i;
  ssize_t n;

  /* Latency counts from the write that carries a request, as in
   * redis-benchmark, not from when it was queued. */
  if (c->n_unsent > 0) {
    now = now_ns();
    for (i = 0; i < c->n_unsent; i++)
      c->slots[c->unsent[i]].sent_ns = now;
    c->n_unsent = 0;
  }

  while (c->woff < c->wlen) {
    n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        (void)conn_watch(b, c, EPOLLIN | EPOLLOUT);
        return;
      }
      bench_fail(b, "write to tokend: %s", strerror(errno));
      return;
    }
    c->woff += (size_t)n;
  }
  c->woff = c->wlen = 0;
  (void)conn_watch(b, c, EPOLLIN);
}

/* Requests carry tokens: the buffer grows without leaving a copy behind. */
static int wbuf_reserve(bench_conn_t *c, size_t extra) {
  uint8_t *nb =
      secret_buf_reserve(c->wbuf, &c->wcap, c->wlen, extra, 1, 4096, 1);

  if (nb == NULL)
    return TOKEND_ENOMEM;
  c->wbuf = nb;
  return 0;
}

static bench_op_t pick_op(bench_t *b) {
  uint64_t r;

  switch (b->t.kind) {
  case TEST_VERIFY:
  case TEST_WARM_UP:
  case TEST_ECHO:              /* never sends through here */
  case TEST_REVOKE_EVERYWHERE: /* nor these */
  case TEST_CATCH_UP:
  case TEST_CLIENT_CACHE: /* the library sends */
  case TEST_CACHE_REVOKE:
  case TEST_UV_VERIFY:
  case TEST_BULK_REVOKE: /* runs verify tests */
    return OP_VERIFY;
  case TEST_ISSUE:
  case TEST_SETUP:
    return OP_ISSUE;
  case TEST_REVOKE:
    return OP_REVOKE;
  case TEST_MIXED:
    break;
  }
  r = rng_below(b, 100);
  if (r < b->o.mix[OP_VERIFY])
    return OP_VERIFY;
  if (r < b->o.mix[OP_VERIFY] + b->o.mix[OP_ISSUE])
    return OP_ISSUE;
  return OP_REVOKE;
}

/* Reserves room for a frame with a body of n bytes at the end of c's write
 * buffer and writes its header; returns where the body goes, or NULL (out
 * of memory: the run fails). */
static uint8_t *conn_append_frame(bench_t *b, bench_conn_t *c, size_t n) {
  uint8_t *p;

  if (wbuf_reserve(c, TOKEND_FRAME_HEADER_BYTES + n) != 0) {
    bench_fail(b, "out of memory for a request");
    return NULL;
  }
  p = c->wbuf + c->wlen;
  frame_encode_header(p, (uint32_t)n);
  c->wlen += TOKEND_FRAME_HEADER_BYTES + n;
  return p + TOKEND_FRAME_HEADER_BYTES;
}

/* Appends an Issue (victim < 0) or a Revoke of pool[victim] with call_id,
 * packed by protobuf-c. Returns 0, or TOKEND_ENOMEM (the run fails). */
static int conn_append_pb_request(bench_t *b, bench_conn_t *c, uint64_t call_id,
                                  int64_t victim) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__RevokeRequest rr = TOKEND__V1__REVOKE_REQUEST__INIT;
  uint8_t *body;
  size_t n;

  req.call_id = call_id;
  if (victim < 0) {
    req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
    req.issue = &ir;
    ir.domain = b->o.domain;
    ir.label = "tokend-bench";
  } else {
    req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE;
    req.revoke = &rr;
    rr.domain = b->o.domain;
    rr.token_id = b->pool[victim].id;
  }
  n = tokend__v1__request__get_packed_size(&req);
  if ((body = conn_append_frame(b, c, n)) == NULL)
    return TOKEND_ENOMEM;
  tokend__v1__request__pack(&req, body);
  return 0;
}

/* Queues one request on c, sent at now. A Verify, the request every test
 * but issue sends most, is written by verify_wire (the same bytes as
 * protobuf-c's pack) straight from the token and its stored length. */
static void conn_queue_request(bench_t *b, bench_conn_t *c, uint64_t now) {
  bench_test_t *t = &b->t;
  bench_op_t op = pick_op(b);
  uint32_t idx = c->free_slots[c->n_free - 1];
  bench_slot_t *s = &c->slots[idx];
  const bench_token_t *tk;
  const char *token = NULL;
  size_t token_len = 0;
  int64_t victim = -1;
  bench_pick_t pick;
  uint8_t *body;

  s->expect = EXPECT_OK;
  if (op == OP_REVOKE && (victim = pool_take_for_revoke(b)) < 0)
    op = OP_VERIFY; /* mixed ran out of tokens to revoke */
  if (op == OP_VERIFY) {
    pick = next_pick(b);
    if (pick.unknown) {
      token = b->unknown[pick.index];
      token_len = b->unknown_len[pick.index];
      s->expect = EXPECT_UNKNOWN;
      t->unknown_sent++;
    } else {
      s->token = pick.index;
      tk = &b->pool[s->token];
      token = tk->token;
      token_len = tk->token_len;
      memcpy(s->id, tk->id, sizeof(s->id));
      s->id_len = tk->id_len;
      s->expect = tk->state == TOKEN_ACTIVE    ? EXPECT_VALID
                  : tk->state == TOKEN_REVOKED ? EXPECT_REVOKED
                                               : EXPECT_VALID_OR_REVOKED;
    }
  } else if (op == OP_REVOKE) {
    s->token = (uint32_t)victim;
  }
  c->seq++;
  s->call_id = (c->seq << BENCH_SLOT_BITS) | idx;
  s->op = (uint8_t)op;
  s->sent_ns = now;
  if (op == OP_VERIFY) {
    body = conn_append_frame(b, c, vw_request_size(s->call_id, token_len));
    if (body == NULL)
      return;
    (void)vw_request_encode(body, s->call_id, token, token_len);
  } else if (conn_append_pb_request(b, c, s->call_id, victim) != 0) {
    return;
  }
  c->n_free--;
  c->unsent[c->n_unsent++] = idx;
  c->inflight++;
  t->sent++;
  t->by_op[op]++;
}

static int test_stopping(const bench_t *b, uint64_t now) {
  return bench_interrupted ||
         (b->t.deadline_ns != 0 && now >= b->t.deadline_ns) ||
         (b->stop_flag != NULL && atomic_load(b->stop_flag));
}

/* Sends what c may send now: in batch mode only once all of its previous
 * batch is answered; never more than -n in all, nor ahead of --rate. */
static void conn_fill(bench_t *b, bench_conn_t *c, uint64_t now) {
  bench_test_t *t = &b->t;
  uint64_t limit = t->n, allowed;

  if (b->fatal || test_stopping(b, now))
    return;
  if (!t->window && c->inflight > 0)
    return;
  if (t->rate > 0) {
    allowed = 1 + (uint64_t)((double)(now - t->start_ns) * t->rate / 1e9);
    if (allowed < limit)
      limit = allowed;
  }
  while (c->inflight < t->pipeline && t->sent < limit && !b->fatal) {
    /* revoke with --duration ends when every token is revoked. */
    if (t->kind == TEST_REVOKE && b->n_active == 0) {
      t->n = t->sent;
      break;
    }
    conn_queue_request(b, c, now);
  }
  if (c->wlen <= c->woff)
    return;
  /* As in redis-benchmark, the batch goes out when epoll says there is room
   * for it; with --keep-watch, at once. */
  if (b->o.keep_watch)
    conn_write(b, c);
  else if (!(c->events & EPOLLOUT))
    (void)conn_watch(b, c, EPOLLOUT);
}

static const char *reason_name(int reason) {
  switch (reason) {
  case TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED:
    return "MALFORMED";
  case TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN:
    return "UNKNOWN";
  case TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED:
    return "REVOKED";
  case TOKEND__V1__INVALID_REASON__INVALID_REASON_EXPIRED:
    return "EXPIRED";
  case TOKEND__V1__INVALID_REASON__INVALID_REASON_VALID:
    return "VALID";
  default:
    return "UNSPECIFIED";
  }
}

/* Whether s (not NUL-terminated) is exactly the len bytes at want. */
static int str_equals(vw_str_t s, const char *want, size_t len) {
  return s.len == len && (len == 0 || memcmp(s.p, want, len) == 0);
}

/* Checks the answer to a Verify that came with status OK: valid, reason,
 * token_id and domain as either decoder read them. */
static void check_verify(bench_t *b, const bench_slot_t *s, int valid,
                         int reason, vw_str_t token_id, vw_str_t domain) {
  int issued = s->expect != EXPECT_UNKNOWN, valid_ok, revoked_ok;

  valid_ok = valid && issued && str_equals(token_id, s->id, s->id_len) &&
             str_equals(domain, b->o.domain, b->domain_len);
  revoked_ok =
      !valid && reason == TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED;
  switch (s->expect) {
  case EXPECT_VALID:
    if (valid_ok)
      return;
    break;
  case EXPECT_REVOKED:
    if (revoked_ok)
      return;
    break;
  case EXPECT_VALID_OR_REVOKED:
    if (valid_ok || revoked_ok)
      return;
    break;
  case EXPECT_UNKNOWN:
    if (!valid && reason == TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN)
      return;
    break;
  default:
    break;
  }
  bench_unexpected(b,
                   "verify of %s token %s: got valid=%d reason=%s id=%.*s "
                   "domain=%.*s",
                   s->expect == EXPECT_UNKNOWN   ? "a never-issued"
                   : s->expect == EXPECT_VALID   ? "an active"
                   : s->expect == EXPECT_REVOKED ? "a revoked"
                                                 : "a revoking",
                   issued ? s->id : "-", valid, reason_name(reason),
                   (int)token_id.len, token_id.len > 0 ? token_id.p : "",
                   (int)domain.len, domain.len > 0 ? domain.p : "");
}

/* Checks one answer against what its request called for. */
static void check_response(bench_t *b, const bench_slot_t *s,
                           const Tokend__V1__Response *resp) {
  static const Tokend__V1__Response__ResultCase want[OP_COUNT] = {
      TOKEND__V1__RESPONSE__RESULT_VERIFY, TOKEND__V1__RESPONSE__RESULT_ISSUE,
      TOKEND__V1__RESPONSE__RESULT_REVOKE};
  static const char *const op_names[OP_COUNT] = {"verify", "issue", "revoke"};
  bench_token_t *tk;

  if (resp->status != NULL && resp->status->code != 0) {
    bench_unexpected(b, "%s: status %s: %s", op_names[s->op],
                     tokend_grpc_name(resp->status->code),
                     resp->status->message);
    if (s->op == OP_REVOKE)
      b->pool[s->token].state = TOKEN_ACTIVE; /* not revoked, not reused */
    return;
  }
  if (resp->result_case != want[s->op]) {
    bench_unexpected(b, "%s: status OK but result case %d", op_names[s->op],
                     (int)resp->result_case);
    return;
  }
  switch (s->op) {
  case OP_VERIFY:
    check_verify(b, s, resp->verify->valid != 0, (int)resp->verify->reason,
                 vw_cstr(resp->verify->token_id),
                 vw_cstr(resp->verify->domain));
    break;
  case OP_ISSUE:
    if (resp->issue->info == NULL ||
        token_check(resp->issue->token, strlen(resp->issue->token)) != 0 ||
        token_id_check(resp->issue->info->id, strlen(resp->issue->info->id)) !=
            0) {
      bench_unexpected(b, "issue: the answer has no well-formed token or id");
      break;
    }
    /* The setup phase and mixed draw on what they issue; issue alone
     * measures Issue and keeps nothing. */
    if (b->t.kind == TEST_SETUP || b->t.kind == TEST_MIXED)
      pool_add(b, resp->issue->token, resp->issue->info->id);
    break;
  case OP_REVOKE:
    tk = &b->pool[s->token];
    tk->state = TOKEN_REVOKED;
    if (resp->revoke->already_revoked)
      bench_unexpected(b,
                       "revoke of %s: already_revoked, but this run "
                       "revoked it only once",
                       tk->id);
    break;
  default:
    break;
  }
}

/* Frees the slot of an answered request. */
static void conn_release_slot(bench_t *b, bench_conn_t *c, uint32_t idx) {
  c->slots[idx].call_id = 0;
  c->free_slots[c->n_free++] = idx;
  c->inflight--;
  b->t.done++;
}

/* The slot in flight on c whose call_id this is, or NULL. */
static bench_slot_t *conn_find_slot(bench_conn_t *c, uint64_t call_id) {
  uint32_t idx = (uint32_t)(call_id & ((1u << BENCH_SLOT_BITS) - 1));

  if (call_id == 0 || idx >= c->n_slots || c->slots[idx].call_id != call_id)
    return NULL;
  return &c->slots[idx];
}

/* Any Response, unpacked by protobuf-c into the arena. */
static void conn_on_pb_response(bench_t *b, bench_conn_t *c,
                                const uint8_t *body, uint32_t len,
                                uint64_t now) {
  Tokend__V1__Response *resp;
  bench_slot_t *s;

  resp = tokend__v1__response__unpack(&b->arena.allocator, len, body);
  if (resp == NULL) {
    bench_fail(b, "tokend sent %u bytes that are not a Response", len);
    goto out_reset;
  }
  if ((s = conn_find_slot(c, resp->call_id)) == NULL) {
    bench_fail(b,
               "tokend answered call_id %" PRIu64 ", which is not in "
               "flight (status %d: %s)",
               resp->call_id, resp->status ? resp->status->code : 0,
               resp->status ? resp->status->message : "");
    goto out_free;
  }
  hist_record(&b->t.hist, now - s->sent_ns);
  check_response(b, s, resp);
  conn_release_slot(b, c, (uint32_t)(s - c->slots));
out_free:
  tokend__v1__response__free_unpacked(resp, &b->arena.allocator);
out_reset:
  /* Also wipes what an Issue's answer left there: its token. */
  pb_arena_reset(&b->arena);
}

/* The answer most runs get almost only, an OK Verify in the canonical form
 * to a Verify in flight, is read by verify_wire; every other Response (an
 * error status, another result, a call_id not in flight, any other
 * encoding) goes to protobuf-c, so how it is checked and reported is what
 * it always was. */
static void conn_on_response(bench_t *b, bench_conn_t *c, const uint8_t *body,
                             uint32_t len, uint64_t now) {
  vw_response_t vr;
  bench_slot_t *s;

  if (vw_response_decode(body, len, &vr) != VW_VERIFY ||
      (s = conn_find_slot(c, vr.call_id)) == NULL || s->op != OP_VERIFY) {
    conn_on_pb_response(b, c, body, len, now);
    return;
  }
  hist_record(&b->t.hist, now - s->sent_ns);
  check_verify(b, s, vr.valid, vr.reason, vr.token_id, vr.domain);
  conn_release_slot(b, c, (uint32_t)(s - c->slots));
}

/* Reads what tokend sent, handles every complete frame, trims once, then
 * sends what the freed slots allow. */
static void conn_read(bench_t *b, bench_conn_t *c, uint64_t now) {
  size_t off = 0, consumed;
  const uint8_t *body;
  uint32_t body_len;
  frame_result_t r;
  ssize_t n;
  uint8_t *nb;

  /* Answers to Issue carry tokens: like the write buffer, this one grows
   * and moves its contents without leaving a copy behind. */
  nb = secret_buf_reserve(c->rbuf, &c->rcap, c->rlen, BENCH_READ_CHUNK / 4, 1,
                          BENCH_READ_CHUNK, 1);
  if (nb == NULL) {
    bench_fail(b, "out of memory for reading");
    return;
  }
  c->rbuf = nb;
  n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    bench_fail(b, "read from tokend: %s", strerror(errno));
    return;
  }
  if (n == 0) {
    bench_fail(b, "tokend closed a connection with %u requests in flight",
               c->inflight);
    return;
  }
  c->rlen += (size_t)n;
  for (;;) {
    r = frame_decode(c->rbuf + off, c->rlen - off, BENCH_MAX_RESPONSE_BYTES,
                     &body, &body_len, &consumed);
    if (r == FRAME_NEED_MORE)
      break;
    if (r != FRAME_OK) {
      bench_fail(b, "tokend sent a bad frame header");
      return;
    }
    conn_on_response(b, c, body, body_len, now);
    if (b->fatal)
      return;
    off += consumed;
  }
  if (off > 0) {
    secret_buf_consume(c->rbuf, c->rlen, off, 1);
    c->rlen -= off;
    b->t.last_progress_ns = now;
    b->t.end_ns = now;
  }
  /* A frame larger than the buffer: make room for all of it. */
  if (consumed > c->rcap) {
    nb = secret_buf_reserve(c->rbuf, &c->rcap, c->rlen, consumed - c->rlen, 1,
                            BENCH_READ_CHUNK, 1);
    if (nb == NULL) {
      bench_fail(b, "out of memory for reading");
      return;
    }
    c->rbuf = nb;
  }
  conn_fill(b, c, now);
}

static int conn_open(bench_t *b, bench_conn_t *c, uint32_t n_slots) {
  struct sockaddr_un addr;
  struct epoll_event ev;
  uint32_t i;

  c->fd = -1;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (strlen(b->o.socket_path) >= sizeof(addr.sun_path)) {
    bench_fail(b, "socket path too long: %s", b->o.socket_path);
    return TOKEND_EINVAL;
  }
  strcpy(addr.sun_path, b->o.socket_path);
  c->slots = calloc(n_slots, sizeof(*c->slots));
  c->free_slots = malloc(n_slots * sizeof(*c->free_slots));
  c->unsent = malloc(n_slots * sizeof(*c->unsent));
  if (c->slots == NULL || c->free_slots == NULL || c->unsent == NULL) {
    bench_fail(b, "out of memory");
    return TOKEND_ENOMEM;
  }
  /* Slot 0 is taken last, so the first call_ids are small. */
  for (i = 0; i < n_slots; i++)
    c->free_slots[i] = n_slots - 1 - i;
  c->n_slots = c->n_free = n_slots;
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    bench_fail(b, "socket: %s", strerror(errno));
    return TOKEND_EIO;
  }
  /* Connect blocking (a full backlog makes a non-blocking one fail), then
   * switch to non-blocking for the run. */
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    bench_fail(b, "cannot connect to tokend at %s: %s", b->o.socket_path,
               strerror(errno));
    return TOKEND_ECONNECT;
  }
  if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) != 0) {
    bench_fail(b, "fcntl: %s", strerror(errno));
    return TOKEND_EIO;
  }
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.ptr = c;
  if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
    bench_fail(b, "epoll_ctl: %s", strerror(errno));
    return TOKEND_EINTERNAL;
  }
  c->events = EPOLLIN;
  return 0;
}

static void conn_free(bench_conn_t *c) {
  if (c->fd >= 0)
    close(c->fd);
  /* Requests and Issue's answers carry tokens: wipe them, as any holder
   * of a token should. */
  if (c->wbuf != NULL)
    sodium_memzero(c->wbuf, c->wcap);
  if (c->rbuf != NULL)
    sodium_memzero(c->rbuf, c->rcap);
  free(c->wbuf);
  free(c->rbuf);
  free(c->slots);
  free(c->free_slots);
  free(c->unsent);
}

/* ---- running a test ---- */

/* How long the loop may sleep: until the next request --rate allows, the
 * deadline, or the no-answer timeout, whichever is first. */
static int loop_timeout_ms(const bench_t *b, uint64_t now) {
  const bench_test_t *t = &b->t;
  uint64_t wait = 100 * 1000000ull, next;

  if (t->sent > t->done) {
    next = t->last_progress_ns + (uint64_t)b->o.timeout_ms * 1000000u;
    wait = next > now ? next - now : 0;
  }
  if (t->rate > 0 && t->sent < t->n) {
    next = t->start_ns + (uint64_t)((double)t->sent * 1e9 / t->rate);
    if (next <= now)
      wait = 0;
    else if (next - now < wait)
      wait = next - now;
  }
  if (t->deadline_ns != 0) {
    next = t->deadline_ns > now ? t->deadline_ns - now : 0;
    if (next < wait)
      wait = next;
  }
  return (int)((wait + 999999) / 1000000);
}

static int test_finished(const bench_t *b, uint64_t now) {
  const bench_test_t *t = &b->t;

  return t->done == t->sent && (t->sent >= t->n || test_stopping(b, now));
}

/* Runs one test to completion: n requests answered, or the deadline (or
 * ^C) passed and everything in flight answered. Returns 0, or non-zero if
 * the run cannot go on (b->fatal_msg). */
static int bench_run_test(bench_t *b, bench_test_kind_t kind, uint64_t n,
                          uint32_t pipeline, int window, double rate,
                          double duration_s) {
  bench_test_t *t = &b->t;
  struct epoll_event evs[64];
  uint64_t now;
  uint32_t i;
  int nev, k;

  memset(t, 0, sizeof(*t));
  t->kind = kind;
  /* Tokens picked ahead for the last test are not this one's. */
  b->n_picks = 0;
  b->warm_cursor = 0;
  t->n = n;
  t->pipeline = pipeline;
  t->window = window || rate > 0;
  t->rate = rate;
  now = now_ns();
  t->start_ns = t->end_ns = t->last_progress_ns = now;
  if (duration_s > 0)
    t->deadline_ns = now + (uint64_t)(duration_s * 1e9);
  for (i = 0; i < b->o.conns && !b->fatal; i++)
    conn_fill(b, &b->conns[i], now);
  while (!b->fatal && !test_finished(b, now)) {
    nev = epoll_wait(b->epfd, evs, 64, loop_timeout_ms(b, now));
    if (nev < 0 && errno != EINTR) {
      bench_fail(b, "epoll_wait: %s", strerror(errno));
      break;
    }
    now = now_ns();
    for (k = 0; k < nev && !b->fatal; k++) {
      bench_conn_t *c = evs[k].data.ptr;

      if (evs[k].events & EPOLLOUT)
        conn_write(b, c);
      if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        conn_read(b, c, now);
    }
    /* Paced sends are due by the clock, not by an answer. */
    if (t->rate > 0)
      for (i = 0; i < b->o.conns && !b->fatal; i++)
        conn_fill(b, &b->conns[i], now);
    if (t->sent > t->done &&
        now - t->last_progress_ns > (uint64_t)b->o.timeout_ms * 1000000u)
      bench_fail(
          b, "no answer from tokend for %d ms (%" PRIu64 " requests in flight)",
          b->o.timeout_ms, t->sent - t->done);
  }
  return b->fatal ? TOKEND_EIO : 0;
}

/* ---- echo: what the machine's wake-ups allow ---- */

/* The echo process: reads whatever arrives on fd and writes it back,
 * sleeping in epoll_wait in between, as a server does. Exits at EOF. */
__attribute__((noreturn)) static void echo_serve(int fd) {
  uint8_t buf[BENCH_ECHO_BYTES * 4];
  struct epoll_event ev = {.events = EPOLLIN};
  ssize_t n, w, off;
  int ep = epoll_create1(EPOLL_CLOEXEC);

  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
    _exit(1);
  for (;;) {
    if (epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR)
      _exit(1);
    n = read(fd, buf, sizeof(buf));
    if (n == 0)
      _exit(0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR)
        continue;
      _exit(1);
    }
    for (off = 0; off < n; off += w)
      if ((w = write(fd, buf + off, (size_t)(n - off))) < 0 && errno != EINTR)
        _exit(1);
      else if (w < 0)
        w = 0;
  }
}

/* What redis-benchmark's event loop (ae) does around each call at -c 1
 * -P 1, as conn_watch does for the other tests: after the answer it drops
 * the read watch and adds a write watch, waits for room to write, then
 * drops the write watch and adds the read watch back. Returns 0, or
 * non-zero with b->fatal_msg set. */
static int echo_rearm(bench_t *b, int ep, int fd) {
  struct epoll_event ev = {.events = EPOLLOUT};
  int nev;

  if (epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) != 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
    goto err_errno;
  while ((nev = epoll_wait(ep, &ev, 1, b->o.timeout_ms)) < 0 && errno == EINTR)
    ;
  if (nev < 0)
    goto err_errno;
  if (nev == 0) {
    bench_fail(b, "echo: no room to write within %d ms", b->o.timeout_ms);
    return TOKEND_EIO;
  }
  ev.events = EPOLLIN;
  if (epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) != 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
    goto err_errno;
  return 0;

err_errno:
  bench_fail(b, "echo: re-arming: %s", strerror(errno));
  return TOKEND_EIO;
}

/* -t echo: round trips of a Verify-sized message, one at a time, to a
 * forked process that only echoes it, both sides sleeping in epoll_wait
 * between messages as tokend, redis-server and this tool do. No server
 * does less per request, so at -c 1 -P 1 this is the most requests per
 * second a server that sleeps between requests can answer on this
 * machine: what the kernel's wake-ups allow. Returns 0, or non-zero if it
 * cannot run (b->fatal_msg). */
static int bench_run_echo(bench_t *b, uint64_t n, double duration_s) {
  bench_test_t *t = &b->t;
  uint8_t msg[BENCH_ECHO_BYTES], back[BENCH_ECHO_BYTES];
  struct epoll_event ev = {.events = EPOLLIN};
  uint64_t sent_ns, now;
  size_t got;
  ssize_t r;
  int sv[2], ep = -1, status, nev;
  pid_t pid;

  memset(t, 0, sizeof(*t));
  t->kind = TEST_ECHO;
  t->n = n;
  t->pipeline = 1;
  memset(msg, 'e', sizeof(msg));
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    bench_fail(b, "echo: socketpair: %s", strerror(errno));
    return TOKEND_EIO;
  }
  pid = fork();
  if (pid < 0) {
    bench_fail(b, "echo: fork: %s", strerror(errno));
    close(sv[0]);
    close(sv[1]);
    return TOKEND_EIO;
  }
  if (pid == 0) { /* never returns */
    close(sv[0]);
    echo_serve(sv[1]);
  }
  close(sv[1]);
  if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) != 0 ||
      fcntl(sv[0], F_SETFL, O_NONBLOCK) != 0) {
    bench_fail(b, "echo: %s", strerror(errno));
    goto out_reap_child;
  }
  now = now_ns();
  t->start_ns = now;
  if (duration_s > 0)
    t->deadline_ns = now + (uint64_t)(duration_s * 1e9);
  while (t->done < n && !bench_interrupted &&
         (t->deadline_ns == 0 || now < t->deadline_ns)) {
    if (!b->o.keep_watch && echo_rearm(b, ep, sv[0]) != 0)
      goto out_reap_child;
    sent_ns = now_ns();
    if (write(sv[0], msg, sizeof(msg)) != (ssize_t)sizeof(msg)) {
      bench_fail(b, "echo: write: %s", strerror(errno));
      goto out_reap_child;
    }
    t->sent++;
    for (got = 0; got < sizeof(back);) {
      nev = epoll_wait(ep, &ev, 1, b->o.timeout_ms);
      if (nev == 0) {
        bench_fail(b, "echo: no answer within %d ms", b->o.timeout_ms);
        goto out_reap_child;
      }
      if (nev < 0 && errno != EINTR) {
        bench_fail(b, "echo: epoll_wait: %s", strerror(errno));
        goto out_reap_child;
      }
      r = read(sv[0], back + got, sizeof(back) - got);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        bench_fail(b, "echo: the echo process went away");
        goto out_reap_child;
      }
      if (r > 0)
        got += (size_t)r;
    }
    now = now_ns();
    if (memcmp(back, msg, sizeof(msg)) != 0 && t->errors++ == 0)
      snprintf(t->first_error, sizeof(t->first_error),
               "echo: the message came back changed");
    hist_record(&t->hist, now - sent_ns);
    t->done++;
  }
  t->end_ns = now;
out_reap_child:
  if (ep >= 0)
    close(ep);
  close(sv[0]); /* EOF: the echo process exits */
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  return b->fatal ? TOKEND_EIO : 0;
}

static void print_csv_header(void) {
  printf("test,conns,pipeline,requests,rps,p50_us,p90_us,p99_us,p999_us,"
         "max_us\n");
}

/* cpu: this process's CPU time during the test; server_cpu: the server's
 * (UINT64_MAX: not measured). */
static void print_result(const bench_t *b, uint64_t cpu, uint64_t server_cpu) {
  const bench_test_t *t = &b->t;
  const bench_hist_t *h = &t->hist;
  const char *name = t->label != NULL ? t->label : bench_test_names[t->kind];
  double secs = (double)(t->end_ns - t->start_ns) / 1e9;
  double rps = secs > 0 ? (double)t->done / secs : 0;
  double p50 = (double)hist_percentile(h, 50) / 1e3,
         p90 = (double)hist_percentile(h, 90) / 1e3,
         p99 = (double)hist_percentile(h, 99) / 1e3,
         p999 = (double)hist_percentile(h, 99.9) / 1e3,
         max = (double)h->max / 1e3;
  double server_us =
      t->done > 0 ? (double)server_cpu / 1e3 / (double)t->done : 0;

  if (b->o.csv) {
    /* The CSV columns are fixed: the server's CPU goes to stderr. */
    if (server_cpu != UINT64_MAX)
      fprintf(stderr,
              "tokend-bench: %s: server CPU %.3f us per request (%.0f%% of "
              "one core)\n",
              name, server_us,
              secs > 0 ? (double)server_cpu / 1e9 / secs * 100 : 0);
    printf("%s,%u,%u,%" PRIu64 ",%.2f,%.1f,%.1f,%.1f,%.1f,%.1f\n", name,
           b->o.conns, t->pipeline, t->done, rps, p50, p90, p99, p999, max);
    fflush(stdout);
    return;
  }
  printf("====== %s ======\n", name);
  printf("  %" PRIu64 " requests completed in %.3f seconds\n", t->done, secs);
  printf("  %u connections, pipeline %u (%s)%s\n", b->o.conns, t->pipeline,
         t->window ? "window" : "batch", t->rate > 0 ? ", paced" : "");
  if (t->kind == TEST_ECHO)
    printf("  requests: %" PRIu64 " echoed round trips, no server\n", t->done);
  else
    printf("  requests: %" PRIu64 " verify (%" PRIu64 " of never-issued "
           "tokens), %" PRIu64 " issue, %" PRIu64 " revoke\n",
           t->by_op[OP_VERIFY], t->unknown_sent, t->by_op[OP_ISSUE],
           t->by_op[OP_REVOKE]);
  printf("  %.2f requests per second\n", rps);
  printf("  latency (us): p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
         p50, p90, p99, p999, max);
  printf("  tokend-bench CPU: %.0f%% of one core\n",
         secs > 0 ? (double)cpu / 1e9 / secs * 100 : 0);
  if (server_cpu != UINT64_MAX)
    printf("  server CPU: %.3f us per request (%.0f%% of one core)\n",
           server_us, secs > 0 ? (double)server_cpu / 1e9 / secs * 100 : 0);
  printf("  unexpected answers: %" PRIu64 "\n\n", t->errors);
  fflush(stdout);
}

/* ---- multi-host: one call at a time over several tokends (issue 13) ---- */

/* A blocking connection to one host, for the tests that follow one write
 * through every host: one call in flight, its answer read in full. */
typedef struct {
  int fd;
  const char *path;
  uint8_t *buf; /* the last answer's frame (an Issue's holds a token) */
  size_t cap;
  uint64_t seq; /* the last call_id */
} bench_sync_t;

static int sync_open(bench_t *b, bench_sync_t *s, const char *path) {
  struct sockaddr_un addr;

  memset(s, 0, sizeof(*s));
  s->path = path;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(addr.sun_path)) {
    s->fd = -1;
    bench_fail(b, "socket path too long: %s", path);
    return TOKEND_EINVAL;
  }
  strcpy(addr.sun_path, path);
  s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->fd < 0 ||
      connect(s->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    bench_fail(b, "connect %s: %s", path, strerror(errno));
    return TOKEND_ECONNECT;
  }
  return 0;
}

static void sync_close(bench_sync_t *s) {
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  if (s->buf != NULL)
    sodium_memzero(s->buf, s->cap);
  free(s->buf);
  s->buf = NULL;
}

/* Reads exactly len bytes into s->buf + off, waiting at most --timeout-ms
 * for each piece. */
static int sync_read(bench_t *b, bench_sync_t *s, size_t off, size_t len) {
  struct pollfd pfd = {s->fd, POLLIN, 0};
  ssize_t n;
  int r;

  while (len > 0) {
    r = poll(&pfd, 1, b->o.timeout_ms);
    if (r < 0 && errno == EINTR && !bench_interrupted)
      continue;
    if (r <= 0) {
      bench_fail(b, "%s: no answer within %d ms", s->path, b->o.timeout_ms);
      return TOKEND_ETIMEDOUT;
    }
    n = read(s->fd, s->buf + off, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      bench_fail(b, "%s: connection lost", s->path);
      return TOKEND_EIO;
    }
    off += (size_t)n;
    len -= (size_t)n;
  }
  return 0;
}

/* Sends the frame req[0..req_len) and reads one answer: *body and *len
 * point into s->buf until the next call. */
static int sync_call(bench_t *b, bench_sync_t *s, const uint8_t *req,
                     size_t req_len, const uint8_t **body, uint32_t *len) {
  const uint8_t *ignored;
  size_t consumed, off = 0;
  uint32_t body_len;
  ssize_t n;
  frame_result_t r;
  uint8_t *nb;
  int rc;

  while (off < req_len) {
    n = write(s->fd, req + off, req_len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      bench_fail(b, "%s: write: %s", s->path, strerror(errno));
      return TOKEND_EIO;
    }
    off += (size_t)n;
  }
  if (s->cap < TOKEND_FRAME_HEADER_BYTES) {
    nb = secret_buf_reserve(s->buf, &s->cap, 0, BENCH_ARENA_BYTES, 1,
                            BENCH_ARENA_BYTES, 1);
    if (nb == NULL) {
      bench_fail(b, "out of memory for reading");
      return TOKEND_ENOMEM;
    }
    s->buf = nb;
  }
  if ((rc = sync_read(b, s, 0, TOKEND_FRAME_HEADER_BYTES)) != 0)
    return rc;
  /* A whole header gives OK (an empty body) or NEED_MORE, and in both
   * cases the frame's size in consumed. */
  r = frame_decode(s->buf, TOKEND_FRAME_HEADER_BYTES, BENCH_MAX_RESPONSE_BYTES,
                   &ignored, &body_len, &consumed);
  if (r != FRAME_OK && r != FRAME_NEED_MORE) {
    bench_fail(b, "%s: bad frame header", s->path);
    return TOKEND_EPROTO;
  }
  body_len = (uint32_t)(consumed - TOKEND_FRAME_HEADER_BYTES);
  if (s->cap < TOKEND_FRAME_HEADER_BYTES + (size_t)body_len) {
    nb = secret_buf_reserve(s->buf, &s->cap, 0,
                            TOKEND_FRAME_HEADER_BYTES + (size_t)body_len, 1,
                            BENCH_ARENA_BYTES, 1);
    if (nb == NULL) {
      bench_fail(b, "out of memory for reading");
      return TOKEND_ENOMEM;
    }
    s->buf = nb;
  }
  if ((rc = sync_read(b, s, TOKEND_FRAME_HEADER_BYTES, body_len)) != 0)
    return rc;
  *body = s->buf + TOKEND_FRAME_HEADER_BYTES;
  *len = body_len;
  return 0;
}

/* Sends a Verify of tk over s: 1 if the answer says REVOKED, 0 if it says
 * VALID, -1 for any other answer (counted as unexpected, with why), or a
 * negative TOKEND_E* code if the call failed (b->fatal is set). */
static int sync_verify_revoked(bench_t *b, bench_sync_t *s,
                               const bench_token_t *tk) {
  uint8_t req[TOKEND_FRAME_HEADER_BYTES + 256];
  const uint8_t *body;
  Tokend__V1__Response *resp;
  vw_response_t vr;
  uint32_t len;
  size_t n;
  int rc;

  n = vw_request_size(++s->seq, tk->token_len);
  if (n > sizeof(req) - TOKEND_FRAME_HEADER_BYTES) {
    bench_fail(b, "a Verify of %u bytes does not fit", (unsigned)n);
    return TOKEND_EINTERNAL;
  }
  frame_encode_header(req, (uint32_t)n);
  (void)vw_request_encode(req + TOKEND_FRAME_HEADER_BYTES, s->seq, tk->token,
                          tk->token_len);
  if ((rc = sync_call(b, s, req, TOKEND_FRAME_HEADER_BYTES + n, &body, &len)) !=
      0)
    return rc;
  if (vw_response_decode(body, len, &vr) == VW_VERIFY && vr.call_id == s->seq) {
    if (vr.valid)
      return 0;
    if (vr.reason == TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED)
      return 1;
    bench_unexpected(b, "%s: verify of revoked token %s: reason %s", s->path,
                     tk->id, reason_name(vr.reason));
    return -1;
  }
  resp = tokend__v1__response__unpack(&b->arena.allocator, len, body);
  if (resp == NULL)
    bench_unexpected(b, "%s: an answer that is not a Response", s->path);
  else
    bench_unexpected(b, "%s: verify of revoked token %s: status %s: %s",
                     s->path, tk->id,
                     tokend_grpc_name(resp->status ? resp->status->code : 0),
                     resp->status ? resp->status->message : "");
  if (resp != NULL)
    tokend__v1__response__free_unpacked(resp, &b->arena.allocator);
  pb_arena_reset(&b->arena);
  return -1;
}

/* Revokes pool[victim] over s. 0, or -1 (unexpected, counted) or a
 * negative TOKEND_E* code (fatal). *pending gets the answer's
 * hosts_pending (0 without a Propagation). */
static int sync_revoke(bench_t *b, bench_sync_t *s, int64_t victim,
                       uint32_t *pending) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RevokeRequest rr = TOKEND__V1__REVOKE_REQUEST__INIT;
  Tokend__V1__Response *resp;
  uint8_t frame[TOKEND_FRAME_HEADER_BYTES + 512];
  const uint8_t *body;
  uint32_t len;
  size_t n;
  int rc;

  *pending = 0;
  req.call_id = ++s->seq;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE;
  req.revoke = &rr;
  rr.domain = b->o.domain;
  rr.token_id = b->pool[victim].id;
  n = tokend__v1__request__get_packed_size(&req);
  if (n > sizeof(frame) - TOKEND_FRAME_HEADER_BYTES) {
    bench_fail(b, "a Revoke of %u bytes does not fit", (unsigned)n);
    return TOKEND_EINTERNAL;
  }
  frame_encode_header(frame, (uint32_t)n);
  tokend__v1__request__pack(&req, frame + TOKEND_FRAME_HEADER_BYTES);
  if ((rc = sync_call(b, s, frame, TOKEND_FRAME_HEADER_BYTES + n, &body,
                      &len)) != 0)
    return rc;
  resp = tokend__v1__response__unpack(&b->arena.allocator, len, body);
  rc = -1;
  if (resp == NULL)
    bench_unexpected(b, "%s: an answer that is not a Response", s->path);
  else if (resp->status != NULL && resp->status->code != 0)
    bench_unexpected(b, "%s: revoke: status %s: %s", s->path,
                     tokend_grpc_name(resp->status->code),
                     resp->status->message);
  else if (resp->call_id != s->seq ||
           resp->result_case != TOKEND__V1__RESPONSE__RESULT_REVOKE)
    bench_unexpected(b, "%s: revoke answered as call %" PRIu64 ", result %d",
                     s->path, resp->call_id, (int)resp->result_case);
  else {
    rc = 0;
    *pending = BENCH_HOSTS_PENDING(resp->revoke);
  }
  if (resp != NULL)
    tokend__v1__response__free_unpacked(resp, &b->arena.allocator);
  pb_arena_reset(&b->arena);
  return rc;
}

/* revoke-everywhere: -n Revokes, one at a time, through -s; right after
 * each returns, a Verify of the token on every host (-s and each --host),
 * repeated on a host until it answers REVOKED. Two latencies per Revoke,
 * both from its write: until its answer ("revoke-returned") and until the
 * last host answered REVOKED ("revoke-everywhere"). A Verify that still
 * says VALID after the Revoke returned breaks tokend's promise and counts
 * as unexpected (it is polled again, so the second latency stays true). */
static int bench_run_revoke_everywhere(bench_t *b, bench_hist_t *everywhere,
                                       uint64_t *stale, uint64_t *pending_n) {
  bench_sync_t hosts[1 + BENCH_MAX_HOSTS];
  bench_test_t *t = &b->t;
  size_t n_hosts = 1 + b->o.n_hosts, i;
  uint64_t t0, t1, k, deadline;
  uint32_t pending;
  int64_t victim;
  int rc = 0, r;

  memset(t, 0, sizeof(*t));
  memset(everywhere, 0, sizeof(*everywhere));
  *stale = *pending_n = 0;
  t->kind = TEST_REVOKE_EVERYWHERE;
  t->n = b->o.requests;
  t->pipeline = 1;
  for (i = 0; i < n_hosts; i++)
    hosts[i].fd = -1, hosts[i].buf = NULL;
  for (i = 0; i < n_hosts && rc == 0; i++)
    rc = sync_open(b, &hosts[i], i == 0 ? b->o.socket_path : b->o.hosts[i - 1]);
  t->start_ns = now_ns();
  for (k = 0; k < t->n && rc == 0 && !bench_interrupted; k++) {
    if ((victim = pool_take_for_revoke(b)) < 0) {
      bench_fail(b, "revoke-everywhere: no active token left; pass --tokens");
      rc = TOKEND_EINVAL;
      break;
    }
    t0 = now_ns();
    r = sync_revoke(b, &hosts[0], victim, &pending);
    t1 = now_ns();
    if (r < -1) {
      rc = r;
      break;
    }
    t->sent++;
    t->by_op[OP_REVOKE]++;
    if (r != 0)
      continue;
    *pending_n += pending > 0;
    b->pool[victim].state = TOKEN_REVOKED;
    hist_record(&t->hist, t1 - t0);
    deadline = t1 + (uint64_t)b->o.timeout_ms * 1000000u;
    for (i = 0; i < n_hosts && rc == 0; i++) {
      while ((r = sync_verify_revoked(b, &hosts[i], &b->pool[victim])) != 1) {
        if (r < -1) {
          rc = r;
          break;
        }
        t->by_op[OP_VERIFY]++;
        if (r == 0) {
          (*stale)++;
          bench_unexpected(b,
                           "%s answered VALID for token %s after its Revoke "
                           "returned",
                           hosts[i].path, b->pool[victim].id);
        }
        if (now_ns() > deadline) {
          bench_fail(b, "%s: token %s not REVOKED %d ms after its Revoke",
                     hosts[i].path, b->pool[victim].id, b->o.timeout_ms);
          rc = TOKEND_ETIMEDOUT;
          break;
        }
      }
      t->by_op[OP_VERIFY]++;
    }
    if (rc == 0) {
      hist_record(everywhere, now_ns() - t0);
      t->done++;
    }
  }
  t->end_ns = now_ns();
  for (i = 0; i < n_hosts; i++)
    sync_close(&hosts[i]);
  return rc;
}

/* Asks s for its ServerStatus: 0 with *applied and *fresh, or a negative
 * TOKEND_E* code (b->fatal is set). */
static int sync_status(bench_t *b, bench_sync_t *s, int64_t *applied,
                       int *fresh) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__ServerStatusRequest sr = TOKEND__V1__SERVER_STATUS_REQUEST__INIT;
  Tokend__V1__Response *resp;
  uint8_t frame[TOKEND_FRAME_HEADER_BYTES + 64];
  const uint8_t *body;
  uint32_t len;
  size_t n;
  int rc;

  req.call_id = ++s->seq;
  req.method_case = TOKEND__V1__REQUEST__METHOD_SERVER_STATUS;
  req.server_status = &sr;
  n = tokend__v1__request__get_packed_size(&req);
  frame_encode_header(frame, (uint32_t)n);
  tokend__v1__request__pack(&req, frame + TOKEND_FRAME_HEADER_BYTES);
  if ((rc = sync_call(b, s, frame, TOKEND_FRAME_HEADER_BYTES + n, &body,
                      &len)) != 0)
    return rc;
  resp = tokend__v1__response__unpack(&b->arena.allocator, len, body);
  rc = TOKEND_ESTATUS;
  if (resp == NULL)
    bench_fail(b, "%s: an answer that is not a Response", s->path);
  else if (resp->status != NULL && resp->status->code != 0)
    bench_fail(b, "%s: status: %s: %s", s->path,
               tokend_grpc_name(resp->status->code), resp->status->message);
  else if (resp->result_case != TOKEND__V1__RESPONSE__RESULT_SERVER_STATUS)
    bench_fail(b, "%s: status answered with result %d", s->path,
               (int)resp->result_case);
  else {
    *applied = resp->server_status->applied_revision;
    *fresh = resp->server_status->fresh;
    rc = 0;
  }
  if (resp != NULL)
    tokend__v1__response__free_unpacked(resp, &b->arena.allocator);
  pb_arena_reset(&b->arena);
  return rc;
}

/* catch-up: reads the head revision from the first --host (which must be
 * fresh), sends SIGCONT to --resume-pid (a host of the same store the
 * caller stopped, whose socket is -s), then asks -s for its status every
 * millisecond until it is fresh with applied_revision at least the head.
 * One sample: the time from the SIGCONT to that answer. */
static int bench_run_catch_up(bench_t *b) {
  bench_sync_t host, head_host;
  bench_test_t *t = &b->t;
  int64_t head = 0, applied = 0;
  uint64_t t0, polls = 0;
  int fresh = 0, rc;
  struct timespec pause = {0, (long)BENCH_STATUS_POLL_NS};

  memset(t, 0, sizeof(*t));
  t->kind = TEST_CATCH_UP;
  t->n = 1;
  t->pipeline = 1;
  host.fd = head_host.fd = -1;
  host.buf = head_host.buf = NULL;
  if (b->o.n_hosts == 0) {
    bench_fail(b, "catch-up needs --host: a host to read the head from");
    return TOKEND_EINVAL;
  }
  if ((rc = sync_open(b, &head_host, b->o.hosts[0])) != 0 ||
      (rc = sync_open(b, &host, b->o.socket_path)) != 0 ||
      (rc = sync_status(b, &head_host, &head, &fresh)) != 0)
    goto out_close;
  if (!fresh) {
    bench_fail(b, "%s is not fresh: no head to catch up with", b->o.hosts[0]);
    rc = TOKEND_EUNAVAIL;
    goto out_close;
  }
  t->start_ns = t0 = now_ns();
  if (b->o.resume_pid != 0 && kill((pid_t)b->o.resume_pid, SIGCONT) != 0) {
    bench_fail(b, "SIGCONT to %ld: %s", b->o.resume_pid, strerror(errno));
    rc = TOKEND_EINVAL;
    goto out_close;
  }
  for (;;) {
    if ((rc = sync_status(b, &host, &applied, &fresh)) != 0)
      goto out_close;
    polls++;
    if (fresh && applied >= head)
      break;
    if (bench_interrupted ||
        now_ns() - t0 > (uint64_t)b->o.timeout_ms * 1000000u) {
      bench_fail(b,
                 "%s not current %d ms after SIGCONT: revision %" PRId64
                 " of %" PRId64 ", fresh %d",
                 b->o.socket_path, b->o.timeout_ms, applied, head, fresh);
      rc = TOKEND_ETIMEDOUT;
      goto out_close;
    }
    nanosleep(&pause, NULL);
  }
  t->end_ns = now_ns();
  hist_record(&t->hist, t->end_ns - t0);
  t->sent = t->done = 1;
  fprintf(
      stderr,
      "tokend-bench: catch-up: %s fresh at revision %" PRId64 " (head %" PRId64
      ") %.1f ms after SIGCONT, %" PRIu64 " Status polls\n",
      b->o.socket_path, applied, head, (double)(t->end_ns - t0) / 1e6, polls);
out_close:
  sync_close(&head_host);
  sync_close(&host);
  return rc;
}

/* Runs revoke-everywhere and prints its two rows (see the usage). */
static int bench_report_revoke_everywhere(bench_t *b, uint64_t cpu0) {
  bench_hist_t *everywhere = calloc(1, sizeof(*everywhere));
  uint64_t stale = 0, pending = 0;
  int rc;

  if (everywhere == NULL) {
    bench_fail(b, "out of memory");
    return TOKEND_ENOMEM;
  }
  rc = bench_run_revoke_everywhere(b, everywhere, &stale, &pending);
  if (rc == 0) {
    b->t.label = "revoke-returned";
    print_result(b, cpu_ns() - cpu0, UINT64_MAX);
    b->t.label = "revoke-everywhere";
    b->t.hist = *everywhere;
    print_result(b, cpu_ns() - cpu0, UINT64_MAX);
    fprintf(stderr,
            "tokend-bench: revoke-everywhere: %" PRIu64 " revokes over %zu "
            "hosts; %" PRIu64 " answered with hosts pending; %" PRIu64
            " Verify answers VALID after the Revoke returned\n",
            b->t.done, 1 + b->o.n_hosts, pending, stale);
  }
  free(everywhere);
  return rc;
}

/* ---- client-cache: the C library's Verify cache (issue 15) ---- */

/* One Verify through the library, which must say `valid`; counts a wrong
 * answer or a failure in b->t. */
static void cache_verify(bench_t *b, tokend_client_t *c, const char *token,
                         int valid) {
  tokend_verify_result_t r;
  int rc = tokend_client_verify(c, token, &r);

  if (rc == 0 && r.valid == valid)
    return;
  if (b->t.errors++ == 0)
    snprintf(b->t.first_error, sizeof(b->t.first_error), "%s",
             rc != 0 ? tokend_client_errmsg(c)
                     : tokend_verify_reason_name(r.reason));
}

/* The calling thread's CPU time, ns: what a phase cost this thread,
 * whatever else ran on the machine meanwhile. */
static uint64_t thread_cpu_ns(void) {
  struct timespec ts;

  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* client-cache's cached phase runs in this many equal batches: the best
 * one is what a hit costs when nothing else takes the CPU (this project's
 * machine is shared), the mean is what this run saw. */
#define BENCH_CACHE_BATCHES 10

/* Uncached and cached Verifies of the --tokens tokens on one thread, in
 * the same run, then the blend of --invalid-pct unknown tokens (never
 * cached: each is a round trip). Prints its own report. Tokens an earlier
 * test revoked must answer REVOKED (and are round trips): run it before
 * the revoke tests, or alone, to measure hits only. */
static int bench_run_client_cache(bench_t *b) {
  tokend_cache_stats_t st;
  tokend_client_t *c = NULL;
  uint64_t n = b->o.requests, n_rt, i, t0, cpu0, hit_cpu, batch, k;
  double rt_ns, hit_ns, best_ns = 0, blend_ns, batch_ns;
  size_t j;
  int rc;

  memset(&b->t, 0, sizeof(b->t));
  if (b->n_pool == 0) {
    bench_fail(b, "client-cache: no tokens to verify; pass --tokens");
    return -1;
  }
  if ((rc = tokend_client_connect(b->o.socket_path, b->o.timeout_ms, &c)) !=
      0) {
    bench_fail(b, "client-cache: cannot connect: %s", tokend_strerror(rc));
    return -1;
  }
  n_rt = n < 100000 ? n : 100000;
  t0 = now_ns();
  for (i = 0; i < n_rt; i++)
    cache_verify(b, c, b->pool[i % b->n_pool].token,
                 b->pool[i % b->n_pool].state == TOKEN_ACTIVE);
  rt_ns = (double)(now_ns() - t0) / (double)n_rt;
  if ((rc = tokend_client_cache_enable(c, b->n_pool)) != 0) {
    bench_fail(b, "client-cache: %s", tokend_client_errmsg(c));
    tokend_client_close(c);
    return -1;
  }
  for (i = 0; i < b->n_pool; i++) /* one miss each: now cached */
    cache_verify(b, c, b->pool[i].token, b->pool[i].state == TOKEN_ACTIVE);
  /* The tokens in turn, as the uncached phase: a running index, not a
   * division per Verify. */
  batch = n / BENCH_CACHE_BATCHES > 0 ? n / BENCH_CACHE_BATCHES : 1;
  j = 0;
  cpu0 = thread_cpu_ns();
  t0 = now_ns();
  for (i = 0; i < n; i += batch) {
    uint64_t b0 = now_ns(), m = n - i < batch ? n - i : batch;

    for (k = 0; k < m; k++) {
      cache_verify(b, c, b->pool[j].token, b->pool[j].state == TOKEN_ACTIVE);
      if (++j == b->n_pool)
        j = 0;
    }
    batch_ns = (double)(now_ns() - b0) / (double)m;
    if (best_ns == 0 || batch_ns < best_ns)
      best_ns = batch_ns;
  }
  hit_ns = (double)(now_ns() - t0) / (double)n;
  hit_cpu = thread_cpu_ns() - cpu0;
  t0 = now_ns();
  for (i = 0; i < n; i++) {
    if (rng_below(b, 100) < b->o.invalid_pct)
      cache_verify(b, c, b->unknown[rng_below(b, BENCH_UNKNOWN_TOKENS)], 0);
    else {
      size_t pick = rng_below(b, b->n_pool);

      cache_verify(b, c, b->pool[pick].token,
                   b->pool[pick].state == TOKEN_ACTIVE);
    }
  }
  blend_ns = (double)(now_ns() - t0) / (double)n;
  tokend_client_cache_stats(c, &st);
  tokend_client_close(c);
  printf("====== client-cache ======\n");
  printf("  %zu tokens, one thread, libtokend-client\n", b->n_pool);
  printf("  uncached Verify: %.2f us a round trip (%.0f/s, %" PRIu64
         " Verifies)\n",
         rt_ns / 1e3, 1e9 / rt_ns, n_rt);
  printf("  cached Verify:   %.1f ns (%.2f million/s, %.0fx the round "
         "trip)\n",
         hit_ns, 1e3 / hit_ns, rt_ns / hit_ns);
  printf("    best of %d batches: %.1f ns (%.2f million/s, %.0fx); CPU "
         "%.1f ns a Verify\n",
         BENCH_CACHE_BATCHES, best_ns, 1e3 / best_ns, rt_ns / best_ns,
         (double)hit_cpu / (double)n);
  printf("  blended, %u%% unknown tokens: %.1f ns (%.2f million/s, %.0fx "
         "the round trip)\n",
         b->o.invalid_pct, blend_ns, 1e3 / blend_ns, rt_ns / blend_ns);
  printf("  cache: %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64
         " flushes, %" PRIu64 " stale; %zu of %zu entries\n",
         st.hits, st.misses, st.flushes, st.stale, st.entries, st.capacity);
  printf("  unexpected answers: %" PRIu64 "\n\n", b->t.errors);
  fflush(stdout);
  return 0;
}

/* ---- cache-revoke: Revoke with caching clients attached (issue 15) ---- */

/* Revokes per block: blocks alternate A B B A (none attached, then
 * --caching-clients attached, ...), so a drift of the machine's load over
 * the run falls on both alike. */
#define BENCH_CACHE_REVOKE_BLOCK 50

/* Opens n clients with the Verify cache on (each maps tokend's epoch
 * region) and has each answer one Verify of token, from tokend then from
 * its cache. Returns 0 or -1 (b->fatal set). */
static int cache_clients_open(bench_t *b, tokend_client_t **cl, unsigned n,
                              const char *token) {
  unsigned i;
  int rc;

  for (i = 0; i < n; i++) {
    if ((rc = tokend_client_connect(b->o.socket_path, b->o.timeout_ms,
                                    &cl[i])) != 0) {
      bench_fail(b, "cache-revoke: cannot connect client %u: %s", i,
                 tokend_strerror(rc));
      return -1;
    }
    if ((rc = tokend_client_cache_enable(cl[i], 16)) != 0) {
      bench_fail(b, "cache-revoke: %s", tokend_client_errmsg(cl[i]));
      return -1;
    }
    cache_verify(b, cl[i], token, 1);
    cache_verify(b, cl[i], token, 1);
  }
  return 0;
}

static void cache_clients_close(tokend_client_t **cl, unsigned n) {
  unsigned i;

  for (i = 0; i < n; i++) {
    tokend_client_close(cl[i]);
    cl[i] = NULL;
  }
}

/* cache-revoke: -n Revokes through -s, one at a time, in blocks of
 * BENCH_CACHE_REVOKE_BLOCK: half of them while --caching-clients clients
 * (this process's, each on its own connection, each having mapped the
 * epoch region and answered from its cache) are attached, half with none.
 * Between two Revokes (not timed) one Verify of a token still active,
 * from an attached client in turn (whose cache the last Revoke just
 * flushed), or from a plain client when none is attached. t->hist gets
 * the Revokes with none attached, *with those with the clients. */
static int bench_run_cache_revoke(bench_t *b, bench_hist_t *with) {
  bench_test_t *t = &b->t;
  tokend_client_t **cl = NULL, *plain = NULL;
  unsigned n_cl = b->o.caching_clients, next = 0;
  bench_sync_t s = {.fd = -1, .buf = NULL};
  uint64_t k = 0, blk, m, t0, t1;
  uint32_t pending;
  int64_t victim;
  int rc = 0, r, attached;

  memset(t, 0, sizeof(*t));
  memset(with, 0, sizeof(*with));
  t->kind = TEST_CACHE_REVOKE;
  t->n = b->o.requests;
  t->pipeline = 1;
  if ((cl = calloc(n_cl > 0 ? n_cl : 1, sizeof(*cl))) == NULL) {
    bench_fail(b, "out of memory");
    return TOKEND_ENOMEM;
  }
  if ((rc = sync_open(b, &s, b->o.socket_path)) != 0)
    goto out;
  if ((r = tokend_client_connect(b->o.socket_path, b->o.timeout_ms, &plain)) !=
      0) {
    bench_fail(b, "cache-revoke: cannot connect: %s", tokend_strerror(r));
    rc = r;
    goto out;
  }
  t->start_ns = now_ns();
  for (blk = 0; k < t->n && rc == 0 && !bench_interrupted; blk++) {
    attached = blk % 4 == 1 || blk % 4 == 2;
    if (attached && n_cl > 0 &&
        cache_clients_open(b, cl, n_cl, b->pool[b->n_pool - 1].token) != 0) {
      rc = TOKEND_ECONNECT;
      break;
    }
    for (m = 0; m < BENCH_CACHE_REVOKE_BLOCK && k < t->n && rc == 0; m++) {
      /* The last token is the clients' own: never revoked here. */
      if (b->revoke_cursor + 1 >= b->n_pool ||
          (victim = pool_take_for_revoke(b)) < 0 ||
          (size_t)victim == b->n_pool - 1) {
        bench_fail(b, "cache-revoke: no active token left; pass --tokens");
        rc = TOKEND_EINVAL;
        break;
      }
      t0 = now_ns();
      r = sync_revoke(b, &s, victim, &pending);
      t1 = now_ns();
      if (r < -1) {
        rc = r;
        break;
      }
      k++;
      t->sent++;
      t->by_op[OP_REVOKE]++;
      if (r != 0)
        continue;
      b->pool[victim].state = TOKEN_REVOKED;
      hist_record(attached ? with : &t->hist, t1 - t0);
      t->done++;
      cache_verify(b, attached && n_cl > 0 ? cl[next++ % n_cl] : plain,
                   b->pool[b->n_pool - 1].token, 1);
      t->by_op[OP_VERIFY]++;
    }
    if (attached)
      cache_clients_close(cl, n_cl);
  }
  t->end_ns = now_ns();
out:
  if (cl != NULL)
    cache_clients_close(cl, n_cl);
  free(cl);
  tokend_client_close(plain);
  sync_close(&s);
  return rc;
}

/* Runs cache-revoke and prints its two rows, and their ratio. */
static int bench_report_cache_revoke(bench_t *b, uint64_t cpu0) {
  bench_hist_t *with = calloc(1, sizeof(*with)), none;
  char label[64];
  double p50_0, p50_n, p99_0, p99_n;
  int rc;

  if (with == NULL) {
    bench_fail(b, "out of memory");
    return TOKEND_ENOMEM;
  }
  rc = bench_run_cache_revoke(b, with);
  if (rc == 0) {
    none = b->t.hist;
    p50_0 = (double)hist_percentile(&none, 50);
    p99_0 = (double)hist_percentile(&none, 99);
    p50_n = (double)hist_percentile(with, 50);
    p99_n = (double)hist_percentile(with, 99);
    b->t.label = "revoke-0-caching";
    b->t.done = none.total;
    print_result(b, cpu_ns() - cpu0, UINT64_MAX);
    snprintf(label, sizeof(label), "revoke-%u-caching", b->o.caching_clients);
    b->t.label = label;
    b->t.hist = *with;
    b->t.done = with->total;
    print_result(b, cpu_ns() - cpu0, UINT64_MAX);
    fprintf(stderr,
            "tokend-bench: cache-revoke: with %u caching clients / with "
            "none: p50 %.3f, p99 %.3f (%" PRIu64 " and %" PRIu64
            " revokes, paired blocks of %d)\n",
            b->o.caching_clients, p50_0 > 0 ? p50_n / p50_0 : 0,
            p99_0 > 0 ? p99_n / p99_0 : 0, with->total, none.total,
            BENCH_CACHE_REVOKE_BLOCK);
  }
  b->t.label = NULL;
  free(with);
  return rc;
}

/* ---- uv-verify: the async client (tokend_uv_*), pipelined ---- */

typedef struct bench_uv_s bench_uv_t;

/* One call in flight: which client, when sent, what it must answer. */
typedef struct {
  bench_uv_t *run;
  tokend_uv_t *client;
  uint64_t sent_ns;
  int valid;
} bench_uv_call_t;

struct bench_uv_s {
  bench_t *b;
  uint64_t to_send; /* Verifies not sent yet */
  int failed;
};

static void uv_verify_send(bench_uv_call_t *call);

static void uv_verify_done(tokend_uv_t *client, int status, const char *msg,
                           const tokend_verify_result_t *result, void *data) {
  bench_uv_call_t *call = data;
  bench_t *b = call->run->b;

  (void)client;
  hist_record(&b->t.hist, now_ns() - call->sent_ns);
  b->t.done++;
  if (status != 0) {
    bench_unexpected(b, "uv-verify: %s: %s", tokend_strerror(status), msg);
    call->run->failed = 1;
  } else if (result->valid != call->valid)
    bench_unexpected(b, "uv-verify: %s for a token that is %s",
                     tokend_verify_reason_name(result->reason),
                     call->valid ? "active" : "not");
  if (!call->run->failed && call->run->to_send > 0 && !bench_interrupted)
    uv_verify_send(call);
}

/* Sends the next Verify in call's slot: a token chosen as the verify test
 * chooses them (--invalid-pct never-issued ones). */
static void uv_verify_send(bench_uv_call_t *call) {
  bench_uv_t *run = call->run;
  bench_t *b = run->b;
  const char *token;
  uint64_t i;
  int rc;

  if (rng_below(b, 100) < b->o.invalid_pct) {
    token = b->unknown[rng_below(b, BENCH_UNKNOWN_TOKENS)];
    call->valid = 0;
    b->t.unknown_sent++;
  } else {
    i = rng_below(b, b->n_pool);
    token = b->pool[i].token;
    call->valid = b->pool[i].state == TOKEN_ACTIVE;
  }
  run->to_send--;
  call->sent_ns = now_ns();
  if ((rc = tokend_uv_verify(call->client, token, uv_verify_done, call)) != 0) {
    bench_fail(b, "uv-verify: %s", tokend_strerror(rc));
    run->failed = 1;
    return;
  }
  b->t.sent++;
  b->t.by_op[OP_VERIFY]++;
}

/* uv-verify: -n Verifies through tokend_uv_* on a libuv loop of this
 * thread: -c clients (connections), each keeping -P calls in flight (a
 * call answered is replaced at once, as --window does); every call made
 * in one turn of the loop goes out in one write, as the library does. */
static int bench_run_uv_verify(bench_t *b) {
  bench_uv_call_t *calls = NULL;
  tokend_uv_t **clients = NULL;
  bench_uv_t run = {b, b->o.requests, 0};
  uv_loop_t loop;
  char why[256];
  uint32_t c, p;
  int rc;

  memset(&b->t, 0, sizeof(b->t));
  b->t.kind = TEST_UV_VERIFY;
  b->t.n = b->o.requests;
  b->t.pipeline = b->o.pipeline;
  b->t.window = 1;
  if (b->n_pool == 0) {
    bench_fail(b, "uv-verify: no tokens to verify; pass --tokens");
    return TOKEND_EINVAL;
  }
  if ((rc = uv_loop_init(&loop)) != 0) {
    bench_fail(b, "uv-verify: %s", uv_strerror(rc));
    return TOKEND_EINTERNAL;
  }
  clients = calloc(b->o.conns, sizeof(*clients));
  calls = calloc((size_t)b->o.conns * b->o.pipeline, sizeof(*calls));
  if (clients == NULL || calls == NULL) {
    bench_fail(b, "out of memory");
    rc = TOKEND_ENOMEM;
    goto out;
  }
  for (c = 0; c < b->o.conns; c++)
    if ((rc = tokend_uv_open(&loop, b->o.socket_path, &clients[c], why,
                             sizeof(why))) != 0) {
      bench_fail(b, "uv-verify: %s", why);
      goto out;
    }
  b->t.start_ns = now_ns();
  for (c = 0; c < b->o.conns; c++)
    for (p = 0; p < b->o.pipeline && run.to_send > 0 && !run.failed; p++) {
      bench_uv_call_t *call = &calls[(size_t)c * b->o.pipeline + p];

      call->run = &run;
      call->client = clients[c];
      uv_verify_send(call);
    }
  uv_run(&loop, UV_RUN_DEFAULT);
  b->t.end_ns = now_ns();
  rc = b->fatal ? TOKEND_ECLOSED : 0;
out:
  for (c = 0; clients != NULL && c < b->o.conns; c++)
    tokend_uv_close(clients[c], NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT); /* the closes' callbacks */
  if (uv_loop_close(&loop) != 0 && rc == 0) {
    bench_fail(b, "uv-verify: the loop still had handles");
    rc = TOKEND_EINTERNAL;
  }
  free(calls);
  free(clients);
  return rc;
}

/* ---- options ---- */

/* ---- bulk-revoke: Verify while one BulkRevoke takes every token ---- */

/* The BulkRevoke's own thread: a blocking client call, timed. */
typedef struct {
  const char *socket_path;
  const char *domain;
  atomic_int done;
  int rc;
  uint32_t revoked;
  uint64_t ns;
  char errmsg[BENCH_ERRMSG_BYTES];
} bench_bulk_t;

static void *bulk_thread(void *arg) {
  bench_bulk_t *k = arg;
  tokend_bulk_select_t sel = {.all = 1};
  tokend_client_t *c = NULL;
  uint64_t t0;

  /* No deadline: a revocation of millions may take minutes. */
  k->rc = tokend_client_connect(k->socket_path, 0, &c);
  if (k->rc == 0) {
    t0 = now_ns();
    k->rc = tokend_client_bulk_revoke(c, k->domain, &sel, &k->revoked, NULL);
    k->ns = now_ns() - t0;
    if (k->rc != 0)
      snprintf(k->errmsg, sizeof(k->errmsg), "%s", tokend_client_errmsg(c));
    tokend_client_close(c);
  } else {
    snprintf(k->errmsg, sizeof(k->errmsg), "cannot connect: %s",
             tokend_strerror(k->rc));
  }
  atomic_store(&k->done, 1);
  return NULL;
}

/* Three rows: Verify for -n requests before (every token active), Verify
 * for as long as one BulkRevoke --all of the --tokens tokens runs (each
 * answer VALID or REVOKED), then -n Verifies after it returned (each must
 * say REVOKED: in effect before the answer); and the BulkRevoke's time.
 * Verify's p99 and max during it against before is what shows whether the
 * loop stalled. */
static int bench_run_bulk(bench_t *b, uint64_t cpu0) {
  bench_bulk_t k = {.socket_path = b->o.socket_path, .domain = b->o.domain};
  pthread_t th;
  uint64_t errors = 0;
  size_t i;

  if (b->n_pool == 0) {
    bench_fail(b, "bulk-revoke: no tokens to revoke; pass --tokens");
    return -1;
  }
  if (bench_run_test(b, TEST_VERIFY, b->o.requests, b->o.pipeline, b->o.window,
                     b->o.rate, b->o.duration_s) != 0)
    return -1;
  b->t.label = "bulk-revoke: verify before";
  print_result(b, cpu_ns() - cpu0, UINT64_MAX);
  errors += b->t.errors;

  for (i = 0; i < b->n_pool; i++)
    b->pool[i].state = TOKEN_REVOKING;
  b->n_active = 0;
  atomic_init(&k.done, 0);
  if (pthread_create(&th, NULL, bulk_thread, &k) != 0) {
    bench_fail(b, "bulk-revoke: cannot start a thread");
    return -1;
  }
  b->stop_flag = &k.done;
  cpu0 = cpu_ns();
  if (bench_run_test(b, TEST_VERIFY, UINT64_MAX >> BENCH_SLOT_BITS,
                     b->o.pipeline, b->o.window, b->o.rate, 0) != 0) {
    pthread_join(th, NULL);
    b->stop_flag = NULL;
    return -1;
  }
  pthread_join(th, NULL);
  b->stop_flag = NULL;
  b->t.label = "bulk-revoke: verify during";
  print_result(b, cpu_ns() - cpu0, UINT64_MAX);
  if (k.rc != 0) {
    bench_fail(b, "bulk-revoke: BulkRevoke failed: %s", k.errmsg);
    return -1;
  }
  if (b->o.csv)
    fprintf(stderr, "tokend-bench: bulk-revoke: %u tokens in %.3f s\n",
            (unsigned)k.revoked, (double)k.ns / 1e9);
  else
    printf("====== bulk-revoke: BulkRevoke --all ======\n"
           "  %u tokens revoked in one call: %.3f seconds (%.0f per "
           "second)\n\n",
           (unsigned)k.revoked, (double)k.ns / 1e9,
           k.ns > 0 ? (double)k.revoked / ((double)k.ns / 1e9) : 0);
  if (k.revoked != b->n_pool)
    bench_unexpected(b, "bulk-revoke: revoked %u of %zu tokens",
                     (unsigned)k.revoked, b->n_pool);
  errors += b->t.errors;

  for (i = 0; i < b->n_pool; i++)
    b->pool[i].state = TOKEN_REVOKED;
  cpu0 = cpu_ns();
  if (bench_run_test(b, TEST_VERIFY, b->o.requests, b->o.pipeline, b->o.window,
                     b->o.rate, b->o.duration_s) != 0)
    return -1;
  b->t.label = "bulk-revoke: verify after";
  print_result(b, cpu_ns() - cpu0, UINT64_MAX);
  /* What main adds up: every row's unexpected answers. */
  b->t.errors += errors;
  return 0;
}

static const char bench_usage[] =
    "Usage: tokend-bench [options]\n"
    "\n"
    "Load generator for tokend, with redis-benchmark's connection and\n"
    "pipelining model (compare with redis-benchmark -s SOCK -c C -P P).\n"
    "\n"
    "  -s, --socket PATH     tokend's socket (default: $TOKEND_SOCKET, else\n"
    "                        " TOKEND_SOCKET_DEFAULT ")\n"
    "  -c, --conns N         connections (default 50)\n"
    "  -P, --pipeline N      requests in flight per connection (default 1)\n"
    "  -n, --requests N      requests per test (default 100000; unlimited\n"
    "                        with --duration and no -n)\n"
    "  -t, --tests LIST      comma-separated: verify, issue, revoke, mixed,\n"
    "                        warm-up, echo, client-cache, cache-revoke,\n"
    "                        uv-verify, bulk-revoke (default verify);\n"
    "                        run in order.\n"
    "                        bulk-revoke: -n Verifies, then Verifies while\n"
    "                        one BulkRevoke --all of the --tokens tokens\n"
    "                        runs (each VALID or REVOKED), then -n more\n"
    "                        (each REVOKED); reports the three and the\n"
    "                        BulkRevoke's time\n"
    "                        client-cache: libtokend-client on one thread\n"
    "                        (-c and -P do not apply): -n Verifies of the\n"
    "                        --tokens tokens uncached (at most 100000),\n"
    "                        then with the Verify cache on, then blended\n"
    "                        with --invalid-pct never-issued tokens\n"
    "                        cache-revoke: -n Revokes through -s, one at\n"
    "                        a time, in blocks of 50 alternating A B B A:\n"
    "                        none attached, and --caching-clients clients\n"
    "                        with the Verify cache on (each has mapped the\n"
    "                        epoch region); one Verify between Revokes (not\n"
    "                        timed), from an attached client in turn.\n"
    "                        Reports revoke-0-caching and revoke-N-caching,\n"
    "                        and their ratio on stderr\n"
    "                        uv-verify: -n Verifies through tokend_uv_* on\n"
    "                        a libuv loop: -c clients, -P calls in flight\n"
    "                        on each, refilled at once (compare verify\n"
    "                        --window with the same -c and -P)\n"
    "                        warm-up verifies each --tokens token once, in\n"
    "                        order, whatever -n: its first Verify.\n"
    "                        echo needs no tokend (-c 1 -P 1 only): round\n"
    "                        trips to a forked process that echoes them:\n"
    "                        the best a server that sleeps between\n"
    "                        requests can do on this machine\n"
    "                        revoke-everywhere (multi-host store): -n\n"
    "                        Revokes through -s, one at a time; after\n"
    "                        each returns, Verify on -s and every --host\n"
    "                        until each says REVOKED. Reports two rows:\n"
    "                        revoke-returned (until the Revoke's answer)\n"
    "                        and revoke-everywhere (until the last host\n"
    "                        said REVOKED), both from the Revoke's write;\n"
    "                        a VALID after the Revoke returned is an\n"
    "                        unexpected answer\n"
    "                        catch-up (multi-host store): reads the head\n"
    "                        revision from the first --host, sends\n"
    "                        SIGCONT to --resume-pid (a host of the store\n"
    "                        you stopped, at -s), and times until -s's\n"
    "                        Status says fresh at that revision or later\n"
    "      --tokens N        first issue N tokens (not measured) for verify,\n"
    "                        revoke and mixed to use (default 1000, plus -n\n"
    "                        for each revoke test; 0 if only issue)\n"
    "      --invalid-pct P   share of Verifies of well-formed, never-issued\n"
    "                        tokens, which must answer UNKNOWN (default 10)\n"
    "      --mix V:I:R       mixed: percent verify:issue:revoke (default\n"
    "                        90:5:5; revoke falls back to verify when no\n"
    "                        active token is left)\n"
    "      --rate R          send at most R requests per second per test,\n"
    "                        over all connections (slots refill at once)\n"
    "      --duration S      stop sending each test after S seconds\n"
    "      --window          refill each answered slot at once instead of\n"
    "                        waiting for the whole batch of -P answers\n"
    "      --keep-watch      keep one epoll watch on each connection and\n"
    "                        write each batch at once, instead of waiting as\n"
    "                        redis-benchmark does (before each batch: stop\n"
    "                        watching for answers, watch for room to write,\n"
    "                        write, watch for answers again). Fewer system\n"
    "                        calls; see docs/PERFORMANCE.md for how the two\n"
    "                        compare\n"
    "      --domain D        domain for the tokens (default bench-<pid>)\n"
    "      --timeout-ms MS   fail if tokend answers nothing for MS ms while\n"
    "                        requests are in flight (default 10000)\n"
    "      --settle-ms MS    after a warm-up test, wait MS ms sending\n"
    "                        nothing: tokend writes back the first uses'\n"
    "                        last_used_at, which the next test would share\n"
    "                        the CPU with\n"
    "      --host SOCKET     another tokend of the same multi-host store,\n"
    "                        for revoke-everywhere (repeat, at most 8)\n"
    "      --resume-pid PID  catch-up: the stopped tokend to SIGCONT\n"
    "      --caching-clients N  cache-revoke: clients attached (default\n"
    "                        100)\n"
    "      --server-pid PID  also report PID's CPU time per request (read\n"
    "                        from /proc; on stderr with --csv)\n"
    "      --csv             print one header line, then one line per test:\n"
    "                        test,conns,pipeline,requests,rps,p50_us,p90_us,\n"
    "                        p99_us,p999_us,max_us\n"
    "  -h, --help            show this help\n"
    "\n"
    "Tokens issued stay in tokend's database (in the --domain): run it\n"
    "against a throwaway tokend. Exit status: 0 every answer as expected,\n"
    "1 some were not (count and first one on stderr), 2 usage error or the\n"
    "run could not complete, 130 interrupted.\n";

enum {
  OPT_TOKENS = 256,
  OPT_INVALID_PCT,
  OPT_MIX,
  OPT_RATE,
  OPT_DURATION,
  OPT_WINDOW,
  OPT_KEEP_WATCH,
  OPT_DOMAIN,
  OPT_TIMEOUT_MS,
  OPT_SETTLE_MS,
  OPT_SERVER_PID,
  OPT_HOST,
  OPT_RESUME_PID,
  OPT_CSV,
  OPT_CACHING_CLIENTS
};

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
  char *end;
  unsigned long long v;

  if (*s < '0' || *s > '9')
    return TOKEND_EINVAL;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max)
    return TOKEND_EINVAL;
  *out = v;
  return 0;
}

static int parse_positive_double(const char *s, double *out) {
  char *end;
  double v;

  errno = 0;
  v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v > 0) || v > 1e9)
    return TOKEND_EINVAL;
  *out = v;
  return 0;
}

static int parse_tests(const char *s, bench_opts_t *o) {
  char buf[256], *tok, *save = NULL;
  size_t k;

  if (strlen(s) >= sizeof(buf))
    return TOKEND_EINVAL;
  strcpy(buf, s);
  o->n_tests = 0;
  for (tok = strtok_r(buf, ",", &save); tok != NULL;
       tok = strtok_r(NULL, ",", &save)) {
    for (k = 0; k < TEST_SETUP; k++)
      if (strcmp(tok, bench_test_names[k]) == 0)
        break;
    if (k == TEST_SETUP || o->n_tests == BENCH_MAX_TESTS)
      return TOKEND_EINVAL;
    o->tests[o->n_tests++] = (bench_test_kind_t)k;
  }
  return o->n_tests > 0 ? 0 : TOKEND_EINVAL;
}

static int parse_mix(const char *s, unsigned mix[OP_COUNT]) {
  unsigned v, i, r;
  int used;

  if (sscanf(s, "%u:%u:%u%n", &mix[0], &mix[1], &mix[2], &used) != 3 ||
      s[used] != '\0')
    return TOKEND_EINVAL;
  for (i = 0, v = 0; i < OP_COUNT; i++) {
    r = mix[i];
    if (r > 100)
      return TOKEND_EINVAL;
    v += r;
  }
  return v == 100 ? 0 : TOKEND_EINVAL;
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "tokend-bench: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'tokend-bench --help'.\n");
  return BENCH_EXIT_ERROR;
}

/* Fills o from argv. Returns -1 to go on, else the exit status. */
static int parse_opts(int argc, char **argv, bench_opts_t *o) {
  static const struct option longopts[] = {
      {"socket", required_argument, NULL, 's'},
      {"conns", required_argument, NULL, 'c'},
      {"pipeline", required_argument, NULL, 'P'},
      {"requests", required_argument, NULL, 'n'},
      {"tests", required_argument, NULL, 't'},
      {"tokens", required_argument, NULL, OPT_TOKENS},
      {"invalid-pct", required_argument, NULL, OPT_INVALID_PCT},
      {"mix", required_argument, NULL, OPT_MIX},
      {"rate", required_argument, NULL, OPT_RATE},
      {"duration", required_argument, NULL, OPT_DURATION},
      {"window", no_argument, NULL, OPT_WINDOW},
      {"keep-watch", no_argument, NULL, OPT_KEEP_WATCH},
      {"domain", required_argument, NULL, OPT_DOMAIN},
      {"timeout-ms", required_argument, NULL, OPT_TIMEOUT_MS},
      {"settle-ms", required_argument, NULL, OPT_SETTLE_MS},
      {"server-pid", required_argument, NULL, OPT_SERVER_PID},
      {"host", required_argument, NULL, OPT_HOST},
      {"resume-pid", required_argument, NULL, OPT_RESUME_PID},
      {"csv", no_argument, NULL, OPT_CSV},
      {"caching-clients", required_argument, NULL, OPT_CACHING_CLIENTS},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  uint64_t v;
  size_t i;
  int ch;

  o->socket_path = getenv(TOKEND_SOCKET_ENV);
  if (o->socket_path == NULL || o->socket_path[0] == '\0')
    o->socket_path = TOKEND_SOCKET_DEFAULT;
  o->conns = BENCH_DEFAULT_CONNS;
  o->pipeline = 1;
  o->requests = BENCH_DEFAULT_REQUESTS;
  o->tests[0] = TEST_VERIFY;
  o->n_tests = 1;
  o->invalid_pct = 10;
  o->mix[OP_VERIFY] = 90;
  o->mix[OP_ISSUE] = 5;
  o->mix[OP_REVOKE] = 5;
  o->timeout_ms = BENCH_DEFAULT_TIMEOUT_MS;
  o->caching_clients = BENCH_DEFAULT_CACHING_CLIENTS;
  snprintf(o->domain, sizeof(o->domain), "bench-%ld", (long)getpid());

  while ((ch = getopt_long(argc, argv, "s:c:P:n:t:h", longopts, NULL)) != -1) {
    switch (ch) {
    case 's':
      o->socket_path = optarg;
      break;
    case 'c':
      if (parse_u64(optarg, 1, BENCH_MAX_CONNS, &v) != 0)
        return usage_error("-c must be 1 to 1024, not '%s'", optarg);
      o->conns = (uint32_t)v;
      break;
    case 'P':
      if (parse_u64(optarg, 1, BENCH_MAX_PIPELINE, &v) != 0)
        return usage_error("-P must be 1 to 4096, not '%s'", optarg);
      o->pipeline = (uint32_t)v;
      break;
    case 'n':
      if (parse_u64(optarg, 1, UINT64_MAX >> BENCH_SLOT_BITS, &o->requests) !=
          0)
        return usage_error("-n must be a positive number, not '%s'", optarg);
      o->requests_set = 1;
      break;
    case 't':
      if (parse_tests(optarg, o) != 0)
        return usage_error("-t takes a comma-separated list of verify, "
                           "issue, revoke, mixed, warm-up, echo, "
                           "revoke-everywhere, catch-up (at most 8), not "
                           "'%s'",
                           optarg);
      break;
    case OPT_TOKENS:
      if (parse_u64(optarg, 0, BENCH_MAX_TOKENS, &o->tokens) != 0)
        return usage_error("--tokens must be 0 to 20000000, not '%s'", optarg);
      o->tokens_set = 1;
      break;
    case OPT_INVALID_PCT:
      if (parse_u64(optarg, 0, 100, &v) != 0)
        return usage_error("--invalid-pct must be 0 to 100, not '%s'", optarg);
      o->invalid_pct = (unsigned)v;
      break;
    case OPT_MIX:
      if (parse_mix(optarg, o->mix) != 0)
        return usage_error("--mix takes V:I:R percentages adding up to 100, "
                           "not '%s'",
                           optarg);
      break;
    case OPT_RATE:
      if (parse_positive_double(optarg, &o->rate) != 0)
        return usage_error("--rate must be a positive number, not '%s'",
                           optarg);
      break;
    case OPT_DURATION:
      if (parse_positive_double(optarg, &o->duration_s) != 0)
        return usage_error("--duration must be a positive number of "
                           "seconds, not '%s'",
                           optarg);
      break;
    case OPT_WINDOW:
      o->window = 1;
      break;
    case OPT_KEEP_WATCH:
      o->keep_watch = 1;
      break;
    case OPT_DOMAIN:
      if (strlen(optarg) < 1 || strlen(optarg) > TOKEND_DOMAIN_MAX_CHARS)
        return usage_error("--domain must be 1 to 128 characters: '%s'",
                           optarg);
      snprintf(o->domain, sizeof(o->domain), "%s", optarg);
      break;
    case OPT_TIMEOUT_MS:
      if (parse_u64(optarg, 1, 3600000, &v) != 0)
        return usage_error("--timeout-ms must be 1 to 3600000, not '%s'",
                           optarg);
      o->timeout_ms = (int)v;
      break;
    case OPT_SETTLE_MS:
      if (parse_u64(optarg, 0, 600000, &v) != 0)
        return usage_error("--settle-ms must be 0 to 600000, not '%s'", optarg);
      o->settle_ms = (unsigned)v;
      break;
    case OPT_SERVER_PID:
      if (parse_u64(optarg, 1, INT32_MAX, &v) != 0)
        return usage_error("--server-pid must be a process id, not '%s'",
                           optarg);
      o->server_pid = (long)v;
      break;
    case OPT_HOST:
      if (o->n_hosts == BENCH_MAX_HOSTS)
        return usage_error("%s", "at most 8 --host");
      o->hosts[o->n_hosts++] = optarg;
      break;
    case OPT_RESUME_PID:
      if (parse_u64(optarg, 1, INT32_MAX, &v) != 0)
        return usage_error("--resume-pid must be a process id, not '%s'",
                           optarg);
      o->resume_pid = (long)v;
      break;
    case OPT_CSV:
      o->csv = 1;
      break;
    case OPT_CACHING_CLIENTS:
      if (parse_u64(optarg, 0, 1000, &v) != 0)
        return usage_error("--caching-clients must be 0 to 1000, not '%s'",
                           optarg);
      o->caching_clients = (unsigned)v;
      break;
    case 'h':
      fputs(bench_usage, stdout);
      return BENCH_EXIT_OK;
    default:
      fprintf(stderr, "Try 'tokend-bench --help'.\n");
      return BENCH_EXIT_ERROR;
    }
  }
  if (optind < argc)
    return usage_error("unexpected argument '%s'", argv[optind]);
  for (i = 0; i < o->n_tests; i++) {
    if (o->tests[i] == TEST_ECHO && (o->conns != 1 || o->pipeline != 1))
      return usage_error("%s", "echo runs with -c 1 -P 1 only");
  }
  if (o->duration_s > 0 && !o->requests_set)
    o->requests = UINT64_MAX >> BENCH_SLOT_BITS;
  if (!o->tokens_set) {
    for (i = 0; i < o->n_tests; i++) {
      if (o->tests[i] == TEST_REVOKE || o->tests[i] == TEST_REVOKE_EVERYWHERE ||
          o->tests[i] == TEST_CACHE_REVOKE) {
        if (!o->requests_set)
          return usage_error("%s", "revoke with --duration and no -n needs "
                                   "--tokens");
        o->tokens += o->requests;
      }
    }
    for (i = 0; i < o->n_tests; i++)
      if (o->tests[i] != TEST_ISSUE && o->tests[i] != TEST_ECHO &&
          o->tests[i] != TEST_CATCH_UP) {
        o->tokens += BENCH_DEFAULT_TOKENS;
        break;
      }
    if (o->tokens > BENCH_MAX_TOKENS)
      return usage_error("%s", "that many revokes need more than 20000000 "
                               "tokens");
  }
  return -1;
}

/* ---- main ---- */

static int bench_setup(bench_t *b) {
  uint64_t t0 = now_ns();
  uint32_t pipeline = b->o.pipeline > BENCH_SETUP_PIPELINE
                          ? b->o.pipeline
                          : BENCH_SETUP_PIPELINE;
  double secs;
  size_t i;

  for (i = 0; i < BENCH_UNKNOWN_TOKENS; i++) {
    if (token_generate(TOKEND_PREFIX_DEFAULT, b->unknown[i]) != 0) {
      bench_fail(b, "cannot generate tokens");
      return TOKEND_EINTERNAL;
    }
    b->unknown_len[i] = (uint8_t)strlen(b->unknown[i]);
  }
  if (b->o.tokens == 0) {
    fprintf(stderr, "tokend-bench: setup done (no tokens)\n");
    return 0;
  }
  if (pool_reserve(b, (size_t)b->o.tokens) != 0) {
    bench_fail(b, "out of memory for %" PRIu64 " tokens", b->o.tokens);
    return TOKEND_ENOMEM;
  }
  if (bench_run_test(b, TEST_SETUP, b->o.tokens, pipeline, 1, 0, 0) != 0)
    return TOKEND_EIO;
  if (b->t.errors > 0 || b->n_pool != b->o.tokens) {
    bench_fail(b,
               "setup: only %zu of %" PRIu64 " Issues succeeded; first "
               "failure: %s",
               b->n_pool, b->o.tokens, b->t.first_error);
    return TOKEND_EIO;
  }
  secs = (double)(now_ns() - t0) / 1e9;
  fprintf(stderr,
          "tokend-bench: setup done: issued %zu tokens in domain %s in %.2f s "
          "(%.0f per second)\n",
          b->n_pool, b->o.domain, secs,
          secs > 0 ? (double)b->n_pool / secs : 0);
  return 0;
}

int main(int argc, char **argv) {
  bench_t *b;
  struct sigaction sa;
  uint64_t errors = 0, cpu0, server0 = 0, server1 = 0, server_cpu;
  char first_error[BENCH_ERRMSG_BYTES + 16] = "";
  bench_test_kind_t kind;
  int status = BENCH_EXIT_ERROR, rc, server_ok, echo_only;
  size_t i;
  uint32_t k;

  b = calloc(1, sizeof(*b));
  if (b == NULL) {
    fprintf(stderr, "tokend-bench: out of memory\n");
    return BENCH_EXIT_ERROR;
  }
  b->epfd = -1;
  if ((rc = parse_opts(argc, argv, &b->o)) >= 0) {
    status = rc;
    goto out_free;
  }
  b->domain_len = strlen(b->o.domain);
  if (sodium_init() < 0) {
    fprintf(stderr, "tokend-bench: libsodium failed to initialise\n");
    goto out_free;
  }
  randombytes_buf(&b->rng, sizeof(b->rng));
  b->rng |= 1;
  if (pb_arena_init(&b->arena, BENCH_ARENA_BYTES, BENCH_ARENA_CAP) != 0) {
    fprintf(stderr, "tokend-bench: out of memory\n");
    goto out_free;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  if ((b->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
    fprintf(stderr, "tokend-bench: epoll_create1: %s\n", strerror(errno));
    goto out_free;
  }
  b->conns = calloc(b->o.conns, sizeof(*b->conns));
  if (b->conns == NULL) {
    fprintf(stderr, "tokend-bench: out of memory\n");
    goto out_close_epoll;
  }
  for (k = 0; k < b->o.conns; k++)
    b->conns[k].fd = -1;
  for (i = 0; i < b->o.n_tests && b->o.tests[i] == TEST_ECHO; i++)
    ;
  echo_only = i == b->o.n_tests; /* needs no tokend */
  for (k = 0; k < b->o.conns && !echo_only; k++)
    if (conn_open(b, &b->conns[k],
                  b->o.pipeline > BENCH_SETUP_PIPELINE
                      ? b->o.pipeline
                      : BENCH_SETUP_PIPELINE) != 0)
      goto out_fatal;
  if (!echo_only && bench_setup(b) != 0)
    goto out_fatal;
  if (b->o.csv)
    print_csv_header();
  for (i = 0; i < b->o.n_tests && !bench_interrupted; i++) {
    kind = b->o.tests[i];
    if (i > 0 && b->o.tests[i - 1] == TEST_WARM_UP && b->o.settle_ms > 0) {
      struct timespec ts = {(time_t)(b->o.settle_ms / 1000),
                            (long)(b->o.settle_ms % 1000) * 1000000L};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !bench_interrupted)
        ;
    }
    if ((kind == TEST_REVOKE || kind == TEST_REVOKE_EVERYWHERE ||
         kind == TEST_CACHE_REVOKE) &&
        b->n_active < b->o.requests && b->o.duration_s == 0) {
      bench_fail(b,
                 "revoke: -n %" PRIu64 " but only %zu active tokens; "
                 "pass --tokens",
                 b->o.requests, b->n_active);
      goto out_fatal;
    }
    if (kind == TEST_CLIENT_CACHE) {
      if (bench_run_client_cache(b) != 0)
        goto out_fatal;
      if (b->t.errors > 0 && errors == 0)
        snprintf(first_error, sizeof(first_error), "%s: %s",
                 bench_test_names[kind], b->t.first_error);
      errors += b->t.errors;
      continue;
    }
    cpu0 = cpu_ns();
    server_cpu = UINT64_MAX;
    /* echo involves no server: no server CPU to report for it */
    server_ok = b->o.server_pid != 0 && kind != TEST_ECHO &&
                proc_cpu_ns(b->o.server_pid, &server0) == 0;
    if (b->o.server_pid != 0 && kind != TEST_ECHO && !server_ok)
      fprintf(stderr, "tokend-bench: cannot read /proc/%ld/stat\n",
              b->o.server_pid);
    if (kind == TEST_WARM_UP && b->n_pool == 0) {
      bench_fail(b, "warm-up: no tokens to verify; pass --tokens");
      goto out_fatal;
    }
    if (kind == TEST_ECHO)
      rc = bench_run_echo(b, b->o.requests, b->o.duration_s);
    else if (kind == TEST_REVOKE_EVERYWHERE)
      rc = bench_report_revoke_everywhere(b, cpu0);
    else if (kind == TEST_CACHE_REVOKE)
      rc = bench_report_cache_revoke(b, cpu0);
    else if (kind == TEST_UV_VERIFY)
      rc = bench_run_uv_verify(b);
    else if (kind == TEST_CATCH_UP)
      rc = bench_run_catch_up(b);
    else if (kind == TEST_BULK_REVOKE)
      rc = bench_run_bulk(b, cpu0);
    else
      rc = bench_run_test(
          b, kind, kind == TEST_WARM_UP ? b->n_pool : b->o.requests,
          b->o.pipeline, b->o.window, b->o.rate, b->o.duration_s);
    if (rc != 0)
      goto out_fatal;
    if (kind == TEST_REVOKE_EVERYWHERE || kind == TEST_CACHE_REVOKE)
      server_ok = 0; /* reported with each of its two results */
    if (server_ok && proc_cpu_ns(b->o.server_pid, &server1) == 0 &&
        server1 >= server0)
      server_cpu = server1 - server0;
    if (kind != TEST_REVOKE_EVERYWHERE && kind != TEST_CACHE_REVOKE &&
        kind != TEST_BULK_REVOKE)
      print_result(b, cpu_ns() - cpu0, server_cpu);
    if (b->t.errors > 0 && errors == 0)
      snprintf(first_error, sizeof(first_error), "%s: %s",
               bench_test_names[kind], b->t.first_error);
    errors += b->t.errors;
  }
  if (errors > 0) {
    fprintf(stderr,
            "tokend-bench: %" PRIu64 " unexpected answers; the first: %s\n",
            errors, first_error);
    status = BENCH_EXIT_UNEXPECTED;
  } else {
    status = BENCH_EXIT_OK;
  }
  if (bench_interrupted)
    status = BENCH_EXIT_INTERRUPTED;
  goto out_close_conns;

out_fatal:
  fprintf(stderr, "tokend-bench: %s\n", b->fatal_msg);
  status = bench_interrupted ? BENCH_EXIT_INTERRUPTED : BENCH_EXIT_ERROR;
out_close_conns:
  for (k = 0; k < b->o.conns; k++)
    conn_free(&b->conns[k]);
  free(b->conns);
out_close_epoll:
  close(b->epfd);
out_free:
  if (b->pool != NULL)
    sodium_memzero(b->pool, b->cap_pool * sizeof(*b->pool));
  free(b->pool);
  sodium_memzero(b->unknown, sizeof(b->unknown));
  pb_arena_free(&b->arena);
  free(b);
  return status;
}
