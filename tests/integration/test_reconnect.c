/* The client library across tokend restarts and idle timeouts (issue 15,
 * section 1): Verify loops see no error while tokend restarts under them,
 * a connection tokend closed as idle is replaced by the next call, Issues
 * across a restart are answered or "outcome unknown" but never doubled,
 * and a tokend_pool_t serves several threads through a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define DOMAIN "reconnect.example"
/* Long enough for tokend to come back, also under valgrind. */
#define RECONNECT_WAIT_MS (20000 * th_timeout_scale())
/* Calls each loop makes before and after each restart. */
#define CALLS_BETWEEN 50
#define POOL_THREADS 6
#define POOL_SIZE 3

/* How tokend goes away in a restart. */
typedef enum { GO_SIGTERM, GO_SIGKILL } go_t;

typedef struct {
  const char *socket_path;
  const char *token;     /* Verify loops: the token to verify */
  tokend_pool_t *pool;   /* pool loops: the pool; else a client of its own */
  atomic_int stop;       /* set by the test */
  atomic_long calls;     /* calls answered */
  atomic_long errors;    /* calls that failed (Verify: or said invalid) */
  atomic_long in_doubt;  /* Issue loops: TOKEND_EINDOUBT */
  atomic_long other_err; /* Issue loops: any other failure */
  char first_error[256];
  pthread_mutex_t lock;
} loop_t;

static void loop_note_error(loop_t *l, const char *what, int rc,
                            const char *msg) {
  atomic_fetch_add(&l->errors, 1);
  pthread_mutex_lock(&l->lock);
  if (l->first_error[0] == '\0')
    snprintf(l->first_error, sizeof(l->first_error), "%s: %s: %s", what,
             tokend_err_name(rc), msg);
  pthread_mutex_unlock(&l->lock);
}

static tokend_client_t *loop_client(loop_t *l) {
  tokend_client_t *c = NULL;

  if (tokend_client_connect(l->socket_path, TH_IO_TIMEOUT_MS, &c) != 0 ||
      tokend_client_set_reconnect(c, RECONNECT_WAIT_MS) != 0) {
    tokend_client_close(c);
    loop_note_error(l, "connect", TOKEND_ECONNECT, "");
    return NULL;
  }
  return c;
}

static void *verify_loop(void *arg) {
  loop_t *l = arg;
  tokend_verify_result_t r;
  tokend_client_t *c = loop_client(l);
  int rc;

  if (c == NULL)
    return NULL;
  while (!atomic_load(&l->stop)) {
    rc = tokend_client_verify(c, l->token, &r);
    if (rc != 0)
      loop_note_error(l, "verify", rc, tokend_client_errmsg(c));
    else if (!r.valid)
      loop_note_error(l, "verify", 0, tokend_verify_reason_name(r.reason));
    atomic_fetch_add(&l->calls, 1);
  }
  tokend_client_close(c);
  return NULL;
}

static void *pool_verify_loop(void *arg) {
  loop_t *l = arg;
  tokend_verify_result_t r;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  int rc;

  while (!atomic_load(&l->stop)) {
    rc = tokend_pool_verify(l->pool, l->token, &r, why, sizeof(why));
    if (rc != 0)
      loop_note_error(l, "pool verify", rc, why);
    else if (!r.valid)
      loop_note_error(l, "pool verify", 0, tokend_verify_reason_name(r.reason));
    atomic_fetch_add(&l->calls, 1);
  }
  return NULL;
}

/* Issues tokens labelled "n<i>", each label once, until stopped. */
static void *issue_loop(void *arg) {
  loop_t *l = arg;
  tokend_issue_params_t params = {.domain = DOMAIN};
  tokend_client_t *c = loop_client(l);
  tokend_issued_t is;
  char label[32];
  long i;
  int rc;

  if (c == NULL)
    return NULL;
  for (i = 0; !atomic_load(&l->stop); i++) {
    snprintf(label, sizeof(label), "n%ld", i);
    params.label = label;
    rc = tokend_client_issue(c, &params, &is);
    tokend_client_wipe(&is);
    if (rc == TOKEND_EINDOUBT)
      atomic_fetch_add(&l->in_doubt, 1);
    else if (rc != 0) {
      atomic_fetch_add(&l->other_err, 1);
      loop_note_error(l, "issue", rc, tokend_client_errmsg(c));
    }
    atomic_fetch_add(&l->calls, 1);
  }
  tokend_client_close(c);
  return NULL;
}

/* Waits until the loops have answered n more calls than `from` (no sleep:
 * the counter is the condition), failing the test if they stopped
 * progressing for TH_START_TIMEOUT_MS. */
static void wait_calls(loop_t *l, long from, long n) {
  int64_t deadline = th_mono_ms() + 4 * TH_START_TIMEOUT_MS;

  while (atomic_load(&l->calls) < from + n) {
    if (th_mono_ms() > deadline)
      fail_msg("the loop answered %ld calls, want %ld",
               atomic_load(&l->calls) - from, n);
    sched_yield();
  }
}

/* Stops tokend as `how` says and starts it again on the same socket and
 * database, with the loops running. */
static void restart(th_tokend_t *t, go_t how) {
  if (how == GO_SIGKILL)
    assert_int_equal(th_tokend_kill(t), 128 + SIGKILL);
  else
    assert_int_equal(th_tokend_stop_clean(t), 0);
  assert_int_equal(th_tokend_start(t, NULL), 0);
}

static void loop_init(loop_t *l, const th_tokend_t *t, const char *token) {
  memset(l, 0, sizeof(*l));
  l->socket_path = t->socket_path;
  l->token = token;
  pthread_mutex_init(&l->lock, NULL);
}

/* Runs `threads` threads of fn across a SIGTERM restart and a SIGKILL
 * restart, CALLS_BETWEEN calls before, between and after. */
static void run_across_restarts(th_tokend_t *t, loop_t *l, void *(*fn)(void *),
                                int threads) {
  pthread_t th[POOL_THREADS];
  long before;
  int i;

  assert_true(threads <= POOL_THREADS);
  for (i = 0; i < threads; i++)
    assert_int_equal(pthread_create(&th[i], NULL, fn, l), 0);
  wait_calls(l, 0, CALLS_BETWEEN);
  restart(t, GO_SIGTERM);
  before = atomic_load(&l->calls);
  wait_calls(l, before, CALLS_BETWEEN);
  restart(t, GO_SIGKILL);
  before = atomic_load(&l->calls);
  wait_calls(l, before, CALLS_BETWEEN);
  atomic_store(&l->stop, 1);
  for (i = 0; i < threads; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
}

/* tokend restarted (cleanly, then killed) under a client in a loop of
 * Verifies: every Verify is answered, valid. */
static void test_verify_loop_survives_restarts(void **state) {
  th_fixture_t *f = *state;
  tokend_issued_t is;
  loop_t l;

  th_client_issue_ok(f->client, DOMAIN, "verified", 0, &is);
  loop_init(&l, &f->tokend, is.token);
  run_across_restarts(&f->tokend, &l, verify_loop, 1);
  if (atomic_load(&l.errors) != 0)
    fail_msg("%ld of %ld Verifies failed across the restarts; the first: %s",
             atomic_load(&l.errors), atomic_load(&l.calls), l.first_error);
  tokend_client_wipe(&is);
}

/* The same through a pool used by several threads. */
static void test_pool_threads_survive_restarts(void **state) {
  th_fixture_t *f = *state;
  char why[TOKEND_CONNECT_ERRMSG_BYTES];
  tokend_issued_t is;
  tokend_pool_t *pool = NULL;
  loop_t l;
  int i;

  th_client_issue_ok(f->client, DOMAIN, "pooled", 0, &is);
  loop_init(&l, &f->tokend, is.token);
  if (tokend_pool_open(f->tokend.socket_path, TH_IO_TIMEOUT_MS, 0, POOL_SIZE,
                       &pool, why, sizeof(why)) != 0)
    fail_msg("tokend_pool_open: %s", why);
  /* Each client waits as long as the loops above. */
  for (i = 0; i < POOL_SIZE; i++) {
    tokend_client_t *c;

    assert_int_equal(tokend_pool_acquire(pool, &c), 0);
    assert_int_equal(tokend_client_set_reconnect(c, RECONNECT_WAIT_MS), 0);
    tokend_pool_release(pool, c);
  }
  l.pool = pool;
  run_across_restarts(&f->tokend, &l, pool_verify_loop, POOL_THREADS);
  if (atomic_load(&l.errors) != 0)
    fail_msg("%ld of %ld pooled Verifies failed; the first: %s",
             atomic_load(&l.errors), atomic_load(&l.calls), l.first_error);
  tokend_pool_close(pool);
  tokend_client_wipe(&is);
}

/* Issue in a loop across the restarts: each answered, or "outcome unknown";
 * never anything else, and never a token issued twice for one call. */
static void test_issue_across_restarts_never_doubled(void **state) {
  th_fixture_t *f = *state;
  long stored, dup_labels, ok;
  loop_t l;

  loop_init(&l, &f->tokend, NULL);
  run_across_restarts(&f->tokend, &l, issue_loop, 1);
  if (atomic_load(&l.other_err) != 0)
    fail_msg("Issue failed other than 'outcome unknown': %s", l.first_error);
  /* Every label went out in one call: two rows with one label would be a
   * call sent twice. */
  dup_labels = th_db_count(f->tokend.db_path,
                           "SELECT count(*) FROM (SELECT label FROM tokens "
                           "GROUP BY label HAVING count(*) > 1)");
  assert_int_equal(dup_labels, 0);
  stored = th_db_count(f->tokend.db_path, "SELECT count(*) FROM tokens");
  ok = atomic_load(&l.calls) - atomic_load(&l.in_doubt);
  /* Each answered Issue is stored; one in doubt may or may not be. */
  if (stored < ok || stored > ok + atomic_load(&l.in_doubt))
    fail_msg("%ld tokens stored for %ld answered Issues and %ld in doubt",
             stored, ok, atomic_load(&l.in_doubt));
}

/* tokend closes a connection idle for --idle-timeout-ms; the client's next
 * call connects again and is answered. */
static void test_call_after_idle_timeout_works(void **state) {
  th_fixture_t *f = *state;
  tokend_verify_result_t r;
  tokend_issued_t is;
  tokend_client_t *c, *off;
  int fd;

  th_client_issue_ok(f->client, DOMAIN, "idle", 0, &is);
  c = th_client_connect_ok(&f->tokend);
  off = th_client_connect_ok(&f->tokend);
  assert_int_equal(tokend_client_set_reconnect(off, 0), 0);
  th_client_verify_ok(c, is.token, &r);
  th_client_verify_ok(off, is.token, &r);
  /* A raw connection made after both: once tokend closed it as idle, it
   * has closed the two clients' connections too, idle for longer. */
  fd = th_connect(f->tokend.socket_path);
  assert_true(fd >= 0);
  assert_int_equal(th_wait_eof(fd, TH_START_TIMEOUT_MS), 1);
  close(fd);
  /* Without reconnecting the call fails: the connection really went. */
  assert_int_equal(tokend_client_verify(off, is.token, &r), TOKEND_ECLOSED);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(off);
  tokend_client_close(c);
  tokend_client_wipe(&is);
}

static int setup(void **state) { return th_fixture_setup_client(state, NULL); }

static int setup_idle(void **state) {
  static const char *const args[] = {"--idle-timeout-ms", "200", NULL};

  return th_fixture_setup_client(state, args);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_verify_loop_survives_restarts, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_pool_threads_survive_restarts, setup,
                                      th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_issue_across_restarts_never_doubled,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_call_after_idle_timeout_works,
                                      setup_idle, th_fixture_teardown),
  };

  return cmocka_run_group_tests_name("reconnect", tests, NULL, NULL);
}
