/* The client's Verify cache and tokend's revocation epoch region (issue
 * 15, section 2): cached answers are used, a Revoke by anyone is seen by
 * the next cached Verify (also racing from another process on another
 * CPU), expiry is honoured, a stopped tokend's region stops being trusted,
 * and a restarted tokend's new region replaces the old. */
#define _GNU_SOURCE /* sched_setaffinity */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define DOMAIN "cache.example"
#define CACHE_ENTRIES 1024
/* Revoke-then-Verify rounds between two processes (fewer when tokend runs
 * under valgrind, ten times slower). */
#define RACE_ROUNDS (th_wrapped() ? 1000 : 10000)

static tokend_client_t *caching_client(const th_tokend_t *t) {
  tokend_client_t *c = th_client_connect_ok(t);
  int rc = tokend_client_cache_enable(c, CACHE_ENTRIES);

  if (rc != 0)
    fail_msg("cache_enable: %s: %s", tokend_err_name(rc),
             tokend_client_errmsg(c));
  return c;
}

static tokend_cache_stats_t stats_of(const tokend_client_t *c) {
  tokend_cache_stats_t s;

  tokend_client_cache_stats(c, &s);
  return s;
}

/* The second Verify of a valid token is a hit; a Revoke made through
 * another connection is seen by the very next Verify. */
static void test_revoke_seen_by_next_cached_verify(void **state) {
  th_fixture_t *f = *state;
  tokend_client_t *c = caching_client(&f->tokend);
  tokend_issued_t is;
  tokend_cache_stats_t s;

  th_client_issue_ok(f->client, DOMAIN, "cached", 0, &is);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  s = stats_of(c);
  assert_int_equal(s.hits, 1);
  assert_int_equal(s.misses, 1);
  assert_int_equal(s.entries, 1);
  assert_true(s.generation != 0);
  assert_int_equal(s.fresh, 1);
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, is.info.id, NULL, NULL), 0);
  th_expect_verify(c, is.token, 0, TOKEND_VERIFY_REVOKED);
  s = stats_of(c);
  assert_int_equal(s.hits, 1);
  assert_int_equal(s.flushes, 1);
  /* Invalid answers are not cached: asked again, and again REVOKED. */
  th_expect_verify(c, is.token, 0, TOKEND_VERIFY_REVOKED);
  assert_int_equal(stats_of(c).hits, 1);
  tokend_client_close(c);
  tokend_client_wipe(&is);
}

/* issue 17: the next cached Verify after an Edit returns answers the new
 * label, metadata and scopes (an Edit moves the epoch whatever it
 * changed), and after a Roll without grace, EXPIRED for the old token. */
static void test_edit_and_roll_seen_by_next_cached_verify(void **state) {
  th_fixture_t *f = *state;
  static const char *const scopes[] = {"read", "write"};
  tokend_issue_params_t ip = {DOMAIN, "before", 0, scopes, 2, "{\"v\":1}"};
  tokend_client_t *c = caching_client(&f->tokend);
  tokend_verify_result_t v;
  tokend_edit_params_t e;
  tokend_rolled_t rolled;
  tokend_issued_t is;

  assert_int_equal(tokend_client_issue(f->client, &ip, &is), 0);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  assert_int_equal(stats_of(c).hits, 1);
  /* The label and metadata alone: no validity taken, still seen. */
  memset(&e, 0, sizeof(e));
  e.label = "after";
  e.metadata = "{\"v\":2}";
  assert_int_equal(tokend_client_edit(f->client, DOMAIN, is.info.id, &e, NULL),
                   0);
  assert_int_equal(tokend_client_verify(c, is.token, &v), 0);
  assert_true(v.valid);
  assert_string_equal(v.label, "after");
  assert_string_equal(v.metadata, "{\"v\":2}");
  assert_int_equal(v.n_scopes, 2);
  /* Scopes narrowed. */
  memset(&e, 0, sizeof(e));
  e.set_scopes = 1;
  e.scopes = scopes;
  e.n_scopes = 1;
  assert_int_equal(tokend_client_verify(c, is.token, &v), 0);
  assert_int_equal(tokend_client_edit(f->client, DOMAIN, is.info.id, &e, NULL),
                   0);
  assert_int_equal(tokend_client_verify(c, is.token, &v), 0);
  assert_true(v.valid);
  assert_int_equal(v.n_scopes, 1);
  assert_string_equal(v.scopes[0], "read");
  /* Rolled without grace: the old token expired at once. */
  assert_int_equal(tokend_client_verify(c, is.token, &v), 0);
  assert_int_equal(
      tokend_client_roll(f->client, DOMAIN, is.info.id, 0, &rolled), 0);
  th_expect_verify(c, is.token, 0, TOKEND_VERIFY_EXPIRED);
  th_expect_verify(c, rolled.token, 1, TOKEND_VERIFY_VALID);
  tokend_client_close(c);
  sodium_memzero(rolled.token, sizeof(rolled.token));
  tokend_client_wipe(&is);
}

static void pin_to_cpu(int cpu) {
  cpu_set_t set;

  if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
    return;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)sched_setaffinity(0, sizeof(set), &set);
}

/* The revoker: for each token id read from `in`, Revoke it, then write one
 * byte to `out` (the moment Revoke has returned). */
static int revoker(const char *socket_path, int in, int out) {
  char id[TOKEND_TOKEN_ID_BYTES];
  tokend_client_t *c = NULL;

  pin_to_cpu(1);
  if (tokend_client_connect(socket_path, TH_IO_TIMEOUT_MS, &c) != 0)
    return 1;
  while (th_read_all(in, id, sizeof(id), TH_IO_TIMEOUT_MS) == 0) {
    if (tokend_client_revoke(c, DOMAIN, id, NULL, NULL) != 0 ||
        th_write_all(out, "r", 1) != 0)
      return 2;
  }
  tokend_client_close(c);
  return 0;
}

/* Another process revokes; the moment its Revoke returns, a cached Verify
 * here (on another CPU) answers REVOKED, round after round. No sleep: the
 * processes hand over through pipes. */
static void test_revoke_by_other_process_races_cached_verify(void **state) {
  th_fixture_t *f = *state;
  tokend_client_t *c = caching_client(&f->tokend);
  tokend_issued_t is;
  tokend_verify_result_t r;
  int to_child[2], from_child[2], status, i;
  char ack;
  pid_t pid;

  assert_int_equal(pipe(to_child), 0);
  assert_int_equal(pipe(from_child), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(to_child[1]);
    close(from_child[0]);
    _exit(revoker(f->tokend.socket_path, to_child[0], from_child[1]));
  }
  close(to_child[0]);
  close(from_child[1]);
  pin_to_cpu(0);
  for (i = 0; i < RACE_ROUNDS; i++) {
    th_client_issue_ok(f->client, DOMAIN, "race", 0, &is);
    th_client_verify_ok(c, is.token, &r);
    th_client_verify_ok(c, is.token, &r); /* now from the cache */
    assert_int_equal(r.valid, 1);
    assert_int_equal(th_write_all(to_child[1], is.info.id, sizeof(is.info.id)),
                     0);
    assert_int_equal(th_read_all(from_child[0], &ack, 1, TH_IO_TIMEOUT_MS), 0);
    th_client_verify_ok(c, is.token, &r);
    if (r.valid || r.reason != TOKEND_VERIFY_REVOKED)
      fail_msg("round %d: a cached Verify after Revoke returned said %s", i,
               tokend_verify_reason_name(r.reason));
    tokend_client_wipe(&is);
  }
  close(to_child[1]);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(stats_of(c).hits, RACE_ROUNDS);
  close(from_child[0]);
  tokend_client_close(c);
}

/* A cached answer is not used past the token's expiry, by this host's
 * clock: tokend is asked, and says EXPIRED. */
static void test_expired_answer_not_served_from_cache(void **state) {
  th_fixture_t *f = *state;
  tokend_client_t *c = caching_client(&f->tokend);
  tokend_issued_t is;
  int64_t expires_at = th_now_ms() + 500;

  th_client_issue_ok(f->client, DOMAIN, "expiring", expires_at, &is);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  assert_int_equal(stats_of(c).hits, 1);
  /* The condition is the clock itself. */
  while (th_now_ms() <= expires_at)
    sched_yield();
  th_expect_verify(c, is.token, 0, TOKEND_VERIFY_EXPIRED);
  assert_int_equal(stats_of(c).hits, 1);
  tokend_client_close(c);
  tokend_client_wipe(&is);
}

/* A stopped tokend stops refreshing its heartbeat: once it is older than
 * the bound the cache is not used (the Verify goes to tokend, which cannot
 * answer while stopped), and is used again once tokend runs. */
static void test_stopped_tokend_cache_not_trusted(void **state) {
  th_fixture_t *f = *state;
  tokend_client_t *c = NULL;
  tokend_verify_result_t r;
  tokend_issued_t is;
  int64_t deadline;
  uint64_t hits;

  th_client_issue_ok(f->client, DOMAIN, "stopped", 0, &is);
  /* A short timeout: the Verify that reaches a stopped tokend. */
  assert_int_equal(tokend_client_connect(f->tokend.socket_path,
                                         300 * th_timeout_scale(), &c),
                   0);
  assert_int_equal(tokend_client_cache_enable(c, CACHE_ENTRIES), 0);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  hits = stats_of(c).hits;
  assert_int_equal(hits, 1);
  assert_int_equal(kill(f->tokend.pid, SIGSTOP), 0);
  deadline = th_mono_ms() + TH_START_TIMEOUT_MS;
  while (stats_of(c).fresh) {
    if (th_mono_ms() > deadline) {
      kill(f->tokend.pid, SIGCONT);
      fail_msg("the heartbeat of a stopped tokend stayed fresh");
    }
    sched_yield();
  }
  assert_int_equal(tokend_client_verify(c, is.token, &r), TOKEND_ETIMEDOUT);
  assert_int_equal(stats_of(c).hits, hits);
  assert_true(stats_of(c).stale >= 1);
  assert_int_equal(kill(f->tokend.pid, SIGCONT), 0);
  /* Fresh again within a beat; the late answer is skipped by call_id. */
  deadline = th_mono_ms() + TH_START_TIMEOUT_MS;
  while (!stats_of(c).fresh)
    if (th_mono_ms() > deadline)
      fail_msg("the heartbeat did not come back after SIGCONT");
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  assert_int_equal(stats_of(c).hits, hits + 1);
  tokend_client_close(c);
  tokend_client_wipe(&is);
}

/* A tokend that shuts down retires its region at once (its heartbeat
 * becomes 0): a restarted tokend may take Revokes before the old bound
 * would have run out. The client then asks the new tokend, maps its new
 * region and caches again under it. */
static void test_restart_retires_region_and_maps_new_one(void **state) {
  th_fixture_t *f = *state;
  tokend_client_t *c = caching_client(&f->tokend);
  tokend_cache_stats_t before, after;
  tokend_issued_t is;

  th_client_issue_ok(f->client, DOMAIN, "restarted", 0, &is);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  before = stats_of(c);
  assert_int_equal(before.hits, 1);
  tokend_client_close(f->client);
  f->client = NULL;
  assert_int_equal(th_tokend_stop_clean(&f->tokend), 0);
  assert_int_equal(stats_of(c).fresh, 0);
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  /* Not from the cache: asked of the new tokend. */
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  after = stats_of(c);
  assert_int_equal(after.hits, before.hits);
  assert_int_equal(after.stale, before.stale + 1);
  /* The next maps the new region and caches; the one after is a hit. */
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  after = stats_of(c);
  assert_int_equal(after.hits, before.hits + 1);
  assert_true(after.generation != 0);
  assert_true(after.generation != before.generation);
  tokend_client_close(c);
  tokend_client_wipe(&is);
}

/* A killed tokend cannot retire its page, whose heartbeat stays young for
 * up to the bound; but its socket closes at once, and the client looks at
 * it every coarse tick. A tokend restarted at once takes a Revoke; the
 * caching client answers REVOKED, not its old cached VALID. */
static void test_killed_then_restarted_revoke_seen(void **state) {
  th_fixture_t *f = *state;
  tokend_client_t *c = caching_client(&f->tokend), *other;
  tokend_issued_t is;

  th_client_issue_ok(f->client, DOMAIN, "killed", 0, &is);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  assert_int_equal(stats_of(c).hits, 1);
  tokend_client_close(f->client);
  f->client = NULL;
  assert_int_equal(th_tokend_kill(&f->tokend), 128 + SIGKILL);
  assert_int_equal(th_tokend_start(&f->tokend, NULL), 0);
  other = th_client_connect_ok(&f->tokend);
  assert_int_equal(tokend_client_revoke(other, DOMAIN, is.info.id, NULL, NULL),
                   0);
  th_expect_verify(c, is.token, 0, TOKEND_VERIFY_REVOKED);
  assert_int_equal(stats_of(c).hits, 1);
  tokend_client_close(other);
  tokend_client_close(c);
  tokend_client_wipe(&is);
}

/* Cached hits are reported back, once per --last-used-granularity-ms per
 * token, on the next Verify of the token, and tokend counts them: its
 * per-domain valid Verifies equal every Verify the client answered. */
static void test_cached_hits_counted_by_tokend(void **state) {
  th_fixture_t *f = *state;
  tokend_client_t *c = caching_client(&f->tokend);
  tokend_cache_stats_t s;
  tokend_issued_t is;
  int64_t deadline = th_mono_ms() + TH_START_TIMEOUT_MS;
  long valid;
  int i;

  th_client_issue_ok(f->client, DOMAIN, "counted", 0, &is);
  th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID); /* a miss */
  for (i = 0; i < 5; i++)
    th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
  /* Hits until one of them is due to report (the condition is the clock,
   * seen through the counters). */
  do {
    th_expect_verify(c, is.token, 1, TOKEND_VERIFY_VALID);
    tokend_client_cache_stats(c, &s);
    if (th_mono_ms() > deadline)
      fail_msg("no hit was reported within %d ms", TH_START_TIMEOUT_MS);
  } while (s.reported == 0);
  assert_true(s.reported >= 5);
  tokend_client_close(c);
  tokend_client_close(f->client);
  f->client = NULL;
  /* The counters reach the database at shutdown. */
  assert_int_equal(th_tokend_stop_clean(&f->tokend), 0);
  valid = th_db_count(f->tokend.db_path, "SELECT valid FROM verify_counts "
                                         "WHERE domain = '" DOMAIN "'");
  /* The miss, the hits reported, and the Verify that reported them. */
  if (valid != (long)(1 + s.reported + 1))
    fail_msg("tokend counted %ld valid Verifies; the client answered %llu "
             "and reported %llu of them",
             valid, (unsigned long long)(s.misses + s.hits),
             (unsigned long long)s.reported);
  tokend_client_wipe(&is);
}

static int setup(void **state) { return th_fixture_setup_client(state, NULL); }

static int setup_granular(void **state) {
  static const char *const args[] = {"--last-used-granularity-ms", "100", NULL};

  return th_fixture_setup_client(state, args);
}

/* A pool with the cache on: every client caches (each with its own
 * table), and a Revoke is seen by the next pooled Verify, whichever client
 * it borrows. */
static void test_pool_clients_cache_and_see_revoke(void **state) {
  th_fixture_t *f = *state;
  char why[TOKEND_STATUS_MESSAGE_BYTES];
  tokend_client_t *held[3];
  tokend_verify_result_t r;
  tokend_pool_t *pool;
  tokend_issued_t is;
  size_t i;
  int k;

  th_client_issue_ok(f->client, DOMAIN, "pooled", 0, &is);
  assert_int_equal(tokend_pool_open(f->tokend.socket_path, 5000, 0, 3, &pool,
                                    why, sizeof(why)),
                   0);
  assert_int_equal(tokend_pool_cache_enable(pool, 0, NULL, 0), TOKEND_EINVAL);
  if (tokend_pool_cache_enable(pool, CACHE_ENTRIES, why, sizeof(why)) != 0)
    fail_msg("pool cache_enable: %s", why);
  /* Each client answers twice: once from tokend, then from its cache. */
  for (i = 0; i < 3; i++)
    assert_int_equal(tokend_pool_acquire(pool, &held[i]), 0);
  for (i = 0; i < 3; i++) {
    th_expect_verify(held[i], is.token, 1, TOKEND_VERIFY_VALID);
    th_expect_verify(held[i], is.token, 1, TOKEND_VERIFY_VALID);
    assert_int_equal(stats_of(held[i]).hits, 1);
    tokend_pool_release(pool, held[i]);
  }
  assert_int_equal(
      tokend_client_revoke(f->client, DOMAIN, is.info.id, NULL, NULL), 0);
  for (k = 0; k < 9; k++) {
    assert_int_equal(tokend_pool_verify(pool, is.token, &r, why, sizeof(why)),
                     0);
    assert_int_equal(r.valid, 0);
    assert_int_equal(r.reason, TOKEND_VERIFY_REVOKED);
  }
  tokend_pool_close(pool);
  tokend_client_wipe(&is);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_revoke_seen_by_next_cached_verify,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_edit_and_roll_seen_by_next_cached_verify, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_revoke_by_other_process_races_cached_verify, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_expired_answer_not_served_from_cache,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_stopped_tokend_cache_not_trusted,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(
          test_restart_retires_region_and_maps_new_one, setup,
          th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_killed_then_restarted_revoke_seen,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_pool_clients_cache_and_see_revoke,
                                      setup, th_fixture_teardown),
      cmocka_unit_test_setup_teardown(test_cached_hits_counted_by_tokend,
                                      setup_granular, th_fixture_teardown),
  };

  return cmocka_run_group_tests_name("verify_cache", tests, NULL, NULL);
}
