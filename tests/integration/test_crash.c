/* Crash durability: concurrent Issue and Revoke traffic from several
 * connections while tokend is SIGKILLed at random moments, round after
 * round. After each crash the database passes PRAGMA integrity_check, and
 * after each restart every acknowledged Issue still verifies (valid, unless
 * an acknowledged Revoke says revoked) and every acknowledged Revoke
 * verifies REVOKED.
 *
 * The RNG seed is printed; TOKEND_CRASH_SEED=<n> replays a run's choices
 * (kill moments, which calls are made). Thread scheduling is the OS's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tokend_client.h"

#define DOMAIN "crash.example"
#define CRASH_SEED_DEFAULT 20240611u
#define CRASH_ROUNDS 5
#define CRASH_CLIENTS 3
#define KILL_AFTER_MIN_MS 50
#define KILL_AFTER_MAX_MS 400
/* Out of 100 calls a client makes, how many are Revokes (if it has an
 * acknowledged, unrevoked token to revoke). */
#define REVOKE_PERCENT 30
#define MAX_RECORDS 200000

typedef enum {
  REC_VALID,          /* Issue acknowledged */
  REC_REVOKING,       /* a Revoke is in flight */
  REC_REVOKE_UNKNOWN, /* a Revoke was sent and never answered */
  REC_REVOKED         /* Revoke acknowledged */
} rec_state_t;

typedef struct {
  char token[TOKEND_TOKEN_BYTES];
  char id[TOKEND_TOKEN_ID_BYTES];
  rec_state_t state;
} record_t;

/* What the clients learned, shared by them. */
typedef struct {
  pthread_mutex_t lock;
  record_t *recs;
  size_t n;
  size_t acked_issues, acked_revokes; /* this round */
  char error[512];                    /* the first wrong answer seen */
} ledger_t;

typedef struct {
  ledger_t *ledger;
  const char *socket_path;
  uint64_t rng;
} client_arg_t;

static uint64_t rng_next(uint64_t *s) {
  /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void ledger_error(ledger_t *l, const char *what, const char *detail) {
  pthread_mutex_lock(&l->lock);
  if (l->error[0] == '\0')
    snprintf(l->error, sizeof(l->error), "%s: %s", what, detail);
  pthread_mutex_unlock(&l->lock);
}

/* Picks an acknowledged, unrevoked record and marks it REC_REVOKING; -1 if
 * there is none near a random start. */
static long ledger_take_for_revoke(ledger_t *l, uint64_t *rng) {
  long found = -1;
  size_t start, i;

  pthread_mutex_lock(&l->lock);
  if (l->n > 0) {
    start = (size_t)(rng_next(rng) % l->n);
    for (i = 0; i < l->n && i < 64; i++) {
      record_t *rec = &l->recs[(start + i) % l->n];

      if (rec->state == REC_VALID) {
        rec->state = REC_REVOKING;
        found = (long)((start + i) % l->n);
        break;
      }
    }
  }
  pthread_mutex_unlock(&l->lock);
  return found;
}

/* A client: Issue and Revoke until tokend goes away. Never asserts (cmocka
 * is not thread-safe): wrong answers go to ledger->error. */
static void *client_main(void *p) {
  client_arg_t *a = p;
  ledger_t *l = a->ledger;
  tokend_client_t *c = NULL;
  tokend_issue_params_t params = {DOMAIN, "crash", 0, NULL, 0, NULL};
  tokend_issued_t is;
  long idx;
  int rc, already;
  int64_t revoked_at;

  if (tokend_client_connect(a->socket_path, TH_IO_TIMEOUT_MS, &c) != 0)
    return NULL; /* killed before we got in */
  /* The crash ends this connection's part: a client that reconnected would
   * write into the restarted tokend while the ledger is being checked. */
  if (tokend_client_set_reconnect(c, 0) != 0) {
    tokend_client_close(c);
    return NULL;
  }
  for (;;) {
    idx = -1;
    if (rng_next(&a->rng) % 100 < REVOKE_PERCENT)
      idx = ledger_take_for_revoke(l, &a->rng);
    if (idx >= 0) {
      char id[TOKEND_TOKEN_ID_BYTES];

      pthread_mutex_lock(&l->lock);
      memcpy(id, l->recs[idx].id, sizeof(id));
      pthread_mutex_unlock(&l->lock);
      rc = tokend_client_revoke(c, DOMAIN, id, &revoked_at, &already);
      pthread_mutex_lock(&l->lock);
      if (rc == 0) {
        l->recs[idx].state = REC_REVOKED;
        l->acked_revokes++;
      } else {
        l->recs[idx].state = REC_REVOKE_UNKNOWN;
      }
      pthread_mutex_unlock(&l->lock);
      if (rc == 0 && already)
        ledger_error(l, id, "first Revoke answered already_revoked");
    } else {
      rc = tokend_client_issue(c, &params, &is);
      if (rc == 0) {
        pthread_mutex_lock(&l->lock);
        if (l->n < MAX_RECORDS) {
          memcpy(l->recs[l->n].token, is.token, sizeof(is.token));
          memcpy(l->recs[l->n].id, is.info.id, sizeof(is.info.id));
          l->recs[l->n].state = REC_VALID;
          l->n++;
        }
        l->acked_issues++;
        pthread_mutex_unlock(&l->lock);
      }
      tokend_client_wipe(&is);
    }
    /* A connection-level failure is the crash; a status from a live
     * tokend is a wrong answer. */
    if (rc != 0) {
      if (rc != TOKEND_ECLOSED && rc != TOKEND_ECONNECT && rc != TOKEND_EIO &&
          rc != TOKEND_ETIMEDOUT)
        ledger_error(l, tokend_err_name(rc), tokend_client_errmsg(c));
      break;
    }
  }
  tokend_client_close(c);
  return NULL;
}

/* The check is read-only: it must not be what recovers or repairs the
 * file. */
static void integrity_ok(const char *db_path, int round) {
  if (th_db_integrity(db_path) != 0)
    fail_msg("round %d: integrity_check after SIGKILL failed (see above)",
             round);
}

/* Checks every record against the restarted tokend and settles the
 * records whose Revoke was never answered to what the disk says. */
static void ledger_check(ledger_t *l, const th_tokend_t *t, int round) {
  tokend_verify_result_t v;
  tokend_client_t *c = NULL;
  size_t i;

  assert_int_equal(tokend_client_connect(t->socket_path, TH_IO_TIMEOUT_MS, &c),
                   0);
  for (i = 0; i < l->n; i++) {
    record_t *rec = &l->recs[i];
    int rc = tokend_client_verify(c, rec->token, &v);

    if (rc != 0)
      fail_msg("round %d: verify %s: %s (%s)", round, rec->id,
               tokend_err_name(rc), tokend_client_errmsg(c));
    switch (rec->state) {
    case REC_VALID:
      if (!v.valid)
        fail_msg("round %d: token %s, issued and acknowledged, verifies %s "
                 "after SIGKILL and restart",
                 round, rec->id, tokend_verify_reason_name(v.reason));
      break;
    case REC_REVOKED:
      if (v.valid || v.reason != TOKEND_VERIFY_REVOKED)
        fail_msg("round %d: token %s, revoked and acknowledged, verifies %s "
                 "after SIGKILL and restart",
                 round, rec->id,
                 v.valid ? "VALID" : tokend_verify_reason_name(v.reason));
      break;
    case REC_REVOKE_UNKNOWN:
    case REC_REVOKING:
      /* Either is right; from now on the disk has decided. */
      if (v.valid)
        rec->state = REC_VALID;
      else if (v.reason == TOKEND_VERIFY_REVOKED)
        rec->state = REC_REVOKED;
      else
        fail_msg("round %d: token %s, issued and acknowledged, verifies %s",
                 round, rec->id, tokend_verify_reason_name(v.reason));
      break;
    }
  }
  tokend_client_close(c);
}

static void test_acknowledged_writes_survive_repeated_sigkill(void **state) {
  th_fixture_t *f = *state;
  th_tokend_t *t = &f->tokend;
  pthread_t threads[CRASH_CLIENTS];
  client_arg_t args[CRASH_CLIENTS];
  ledger_t ledger;
  const char *env_seed = getenv("TOKEND_CRASH_SEED");
  uint64_t seed =
      env_seed != NULL ? strtoull(env_seed, NULL, 10) : CRASH_SEED_DEFAULT;
  uint64_t rng = seed;
  size_t total_issues = 0, total_revokes = 0;
  int64_t deadline;
  int round, i, kill_after, status;

  printf("test_crash: seed %llu (TOKEND_CRASH_SEED=%llu to replay)\n",
         (unsigned long long)seed, (unsigned long long)seed);
  memset(&ledger, 0, sizeof(ledger));
  pthread_mutex_init(&ledger.lock, NULL);
  ledger.recs = calloc(MAX_RECORDS, sizeof(*ledger.recs));
  assert_non_null(ledger.recs);

  for (round = 1; round <= CRASH_ROUNDS; round++) {
    assert_int_equal(th_tokend_start(t, NULL), 0);
    /* What earlier rounds were told survived the crash before this. */
    ledger_check(&ledger, t, round);

    ledger.acked_issues = ledger.acked_revokes = 0;
    for (i = 0; i < CRASH_CLIENTS; i++) {
      args[i].ledger = &ledger;
      args[i].socket_path = t->socket_path;
      args[i].rng = rng_next(&rng);
      assert_int_equal(pthread_create(&threads[i], NULL, client_main, &args[i]),
                       0);
    }
    /* Kill at a random moment once traffic flows (the first write is
     * acknowledged), so that every round has calls in flight. */
    deadline = th_mono_ms() + TH_IO_TIMEOUT_MS;
    for (;;) {
      size_t acked;

      pthread_mutex_lock(&ledger.lock);
      acked = ledger.acked_issues + ledger.acked_revokes;
      pthread_mutex_unlock(&ledger.lock);
      if (acked > 0 || th_mono_ms() >= deadline)
        break;
      th_sleep_ms(1);
    }
    kill_after =
        KILL_AFTER_MIN_MS +
        (int)(rng_next(&rng) % (KILL_AFTER_MAX_MS - KILL_AFTER_MIN_MS + 1));
    th_sleep_ms(kill_after);
    status = th_tokend_kill(t);
    assert_int_equal(status, 128 + SIGKILL);
    for (i = 0; i < CRASH_CLIENTS; i++)
      pthread_join(threads[i], NULL);
    printf("test_crash: round %d: killed after %d ms; %zu Issues and %zu "
           "Revokes acknowledged\n",
           round, kill_after, ledger.acked_issues, ledger.acked_revokes);
    if (ledger.error[0] != '\0')
      fail_msg("round %d: a client got a wrong answer: %s", round,
               ledger.error);
    total_issues += ledger.acked_issues;
    total_revokes += ledger.acked_revokes;
    integrity_ok(t->db_path, round);
  }

  /* The last crash too, then a clean stop. */
  assert_int_equal(th_tokend_start(t, NULL), 0);
  ledger_check(&ledger, t, CRASH_ROUNDS + 1);
  th_tokend_stop_ok(t);
  integrity_ok(t->db_path, CRASH_ROUNDS + 1);
  /* The test tested something. */
  if (total_issues == 0 || total_revokes == 0)
    fail_msg("only %zu Issues and %zu Revokes were acknowledged in %d "
             "rounds",
             total_issues, total_revokes, CRASH_ROUNDS);
  free(ledger.recs);
  pthread_mutex_destroy(&ledger.lock);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_acknowledged_writes_survive_repeated_sigkill, th_fixture_setup,
          th_fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
