/* Unit tests for server/store_worker: jobs run on the worker thread against
 * a real SQLite store; done callbacks arrive through a real libuv loop. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "store/worker.h"

#define MAX_JOBS 64
#define RUN_TIMEOUT_MS 10000

/* Any 32 bytes: the chain key of the audit log under test. */
static const uint8_t test_audit_key[STORE_AUDIT_KEY_BYTES] = {7, 1, 2, 3};

typedef struct fixture_s fixture_t;

/* A job plus what its done callback saw. job comes first: the callback gets
 * &job and casts back. */
typedef struct {
  store_job_t job;
  fixture_t *fx;
  int tag;
  int n_done;
  uv_thread_t done_thread;
} test_job_t;

struct fixture_s {
  char dir[64];
  char path[128];
  store_t *store;
  uv_loop_t loop;
  uv_timer_t timer;
  int timed_out;
  store_worker_t *worker; /* NULL once stopped */
  uv_thread_t test_thread;
  int order[MAX_JOBS]; /* tags, in the order done ran */
  int n_done;
  sqlite3 *holder; /* second connection holding the write lock, or NULL */
  int loop_closed; /* the test closed the loop itself */
};

static void remove_tree(const char *dir) {
  char p[512];
  struct dirent *de;
  DIR *d = opendir(dir);

  if (d == NULL)
    return;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));
  char why[256], url[160];

  if (fx == NULL || sodium_init() < 0)
    return -1;
  *state = fx;
  snprintf(fx->dir, sizeof(fx->dir), "/tmp/tokend_worker_XXXXXX");
  if (mkdtemp(fx->dir) == NULL)
    return -1;
  snprintf(fx->path, sizeof(fx->path), "%s/tokend.db", fx->dir);
  snprintf(url, sizeof(url), "sqlite:%s", fx->path);
  if (store_open_url(url, STORE_OPEN_CREATE, &fx->store, why, sizeof(why)) !=
      0) {
    fprintf(stderr, "store_open_url: %s\n", why);
    return -1;
  }
  if (store_audit_key_set(fx->store, test_audit_key) != 0) {
    fprintf(stderr, "store_audit_key_set: %s\n", store_errmsg(fx->store));
    return -1;
  }
  if (uv_loop_init(&fx->loop) != 0 || uv_timer_init(&fx->loop, &fx->timer))
    return -1;
  fx->timer.data = fx;
  fx->test_thread = uv_thread_self();
  if (store_worker_start(&fx->loop, fx->store, &fx->worker) != 0)
    return -1;
  return 0;
}

static int teardown(void **state) {
  fixture_t *fx = *state;
  int rc = 0;

  if (fx->holder != NULL)
    sqlite3_close(fx->holder);
  if (fx->worker != NULL)
    store_worker_stop(fx->worker);
  if (!fx->loop_closed) {
    if (!uv_is_closing((uv_handle_t *)&fx->timer))
      uv_close((uv_handle_t *)&fx->timer, NULL);
    /* Closes the worker's async handle and the timer. */
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&fx->loop) != 0)
      rc = -1;
  }
  store_close(fx->store);
  remove_tree(fx->dir);
  free(fx);
  return rc;
}

static void on_done(store_job_t *job) {
  test_job_t *t = (test_job_t *)job;

  t->n_done++;
  t->done_thread = uv_thread_self();
  if (t->fx->n_done < MAX_JOBS)
    t->fx->order[t->fx->n_done] = t->tag;
  t->fx->n_done++;
}

static void on_timeout(uv_timer_t *timer) {
  fixture_t *fx = timer->data;

  fx->timed_out = 1;
}

/* Runs the loop until n done callbacks in all have run (or a timeout). */
static void run_until_done(fixture_t *fx, int n) {
  fx->timed_out = 0;
  assert_int_equal(uv_timer_start(&fx->timer, on_timeout, RUN_TIMEOUT_MS, 0),
                   0);
  while (fx->n_done < n && !fx->timed_out)
    uv_run(&fx->loop, UV_RUN_ONCE);
  uv_timer_stop(&fx->timer);
  assert_false(fx->timed_out);
  assert_int_equal(fx->n_done, n);
}

static void job_init(test_job_t *t, fixture_t *fx, int tag,
                     store_job_kind_t kind) {
  memset(t, 0, sizeof(*t));
  t->fx = fx;
  t->tag = tag;
  t->job.kind = kind;
  t->job.done = on_done;
  t->job.result = 12345; /* must be overwritten */
}

static void issue_init(test_job_t *t, fixture_t *fx, int tag, unsigned n,
                       const char *domain) {
  store_token_t *row = &t->job.u.issue.row;

  job_init(t, fx, tag, STORE_JOB_ISSUE);
  snprintf(row->id, sizeof(row->id), "tok_%020u", n);
  snprintf(row->domain, sizeof(row->domain), "%s", domain);
  snprintf(row->label, sizeof(row->label), "label %u", n);
  snprintf(row->hint, sizeof(row->hint), "tkd_...%04u", n % 10000);
  snprintf(row->scopes, sizeof(row->scopes), "read");
  crypto_generichash(row->hash, TOKEND_HASH_BYTES, (const unsigned char *)&n,
                     sizeof(n), NULL, 0);
  row->created_at = 1000 + n;
}

static void revoke_init(test_job_t *t, fixture_t *fx, int tag,
                        const char *domain, const char *id, int64_t now) {
  job_init(t, fx, tag, STORE_JOB_REVOKE);
  snprintf(t->job.u.revoke.domain, sizeof(t->job.u.revoke.domain), "%s",
           domain);
  snprintf(t->job.u.revoke.id, sizeof(t->job.u.revoke.id), "%s", id);
  t->job.u.revoke.now = now;
}

static void list_init(test_job_t *t, fixture_t *fx, int tag, const char *domain,
                      store_token_t *rows, size_t max) {
  job_init(t, fx, tag, STORE_JOB_LIST);
  snprintf(t->job.u.list.domain, sizeof(t->job.u.list.domain), "%s", domain);
  t->job.u.list.include_revoked = 1;
  t->job.u.list.rows = rows;
  t->job.u.list.max_rows = max;
  t->job.u.list.n_rows = 999;
}

/* Counts rows with this id through a second connection. */
static int64_t db_count_id(const fixture_t *fx, const char *id) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t n;

  assert_int_equal(sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  assert_int_equal(
      sqlite3_prepare_v2(db,
                         id != NULL ? "SELECT count(*) FROM tokens WHERE id = ?"
                                    : "SELECT count(*) FROM tokens",
                         -1, &st, NULL),
      SQLITE_OK);
  if (id != NULL)
    assert_int_equal(sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC),
                     SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

/* Takes the database's write lock from a second connection and parks the
 * worker on it behind blocker (a write), so that the jobs submitted next
 * queue up and are taken together as one batch once the lock is released. */
static void park_worker(fixture_t *fx, test_job_t *blocker) {
  assert_int_equal(
      sqlite3_open_v2(fx->path, &fx->holder, SQLITE_OPEN_READWRITE, NULL),
      SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(fx->holder, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  store_worker_submit(fx->worker, &blocker->job);
  /* Give the worker time to take the blocker and wait on the lock (it
   * retries for 5 s). */
  uv_sleep(100);
}

static void unpark_worker(fixture_t *fx) {
  assert_int_equal(sqlite3_exec(fx->holder, "COMMIT", NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(fx->holder);
  fx->holder = NULL;
}

static void test_store_worker_issue_commits_and_sets_seq(void **state) {
  fixture_t *fx = *state;
  test_job_t a;

  issue_init(&a, fx, 0, 1, "d");
  store_worker_submit(fx->worker, &a.job);
  run_until_done(fx, 1);
  assert_int_equal(a.n_done, 1);
  assert_int_equal(a.job.result, 0);
  assert_string_equal(a.job.errmsg, "");
  assert_true(a.job.u.issue.row.seq > 0);
  assert_int_equal(db_count_id(fx, a.job.u.issue.row.id), 1);
}

static void test_store_worker_done_in_order_on_loop_thread(void **state) {
  fixture_t *fx = *state;
  static test_job_t jobs[12];
  static store_token_t rows[8];
  store_touch_t touch;
  int i, n = 0;

  for (i = 0; i < 4; i++, n++)
    issue_init(&jobs[n], fx, n, (unsigned)(10 + i), "d");
  list_init(&jobs[n], fx, n, "d", rows, 8);
  n++;
  revoke_init(&jobs[n], fx, n, "d", jobs[0].job.u.issue.row.id, 5000);
  n++;
  memcpy(touch.hash, jobs[1].job.u.issue.row.hash, TOKEND_HASH_BYTES);
  touch.last_used_at = 4000;
  job_init(&jobs[n], fx, n, STORE_JOB_TOUCH);
  jobs[n].job.u.touch.items = &touch;
  jobs[n].job.u.touch.n = 1;
  n++;
  list_init(&jobs[n], fx, n, "nobody", rows, 8);
  n++;
  for (i = 0; i < 3; i++, n++)
    issue_init(&jobs[n], fx, n, (unsigned)(20 + i), "d");

  for (i = 0; i < n; i++)
    store_worker_submit(fx->worker, &jobs[i].job);
  run_until_done(fx, n);
  for (i = 0; i < n; i++) {
    assert_int_equal(fx->order[i], i);
    assert_int_equal(jobs[i].n_done, 1);
    assert_int_equal(jobs[i].job.result, 0);
    assert_true(uv_thread_equal(&jobs[i].done_thread, &fx->test_thread));
  }
  /* Issues got seqs in submission order. */
  for (i = 1; i < 4; i++)
    assert_true(jobs[i].job.u.issue.row.seq > jobs[i - 1].job.u.issue.row.seq);
  assert_true(jobs[8].job.u.issue.row.seq > jobs[3].job.u.issue.row.seq);
  assert_int_equal(jobs[4].job.u.list.n_rows, 4);
  assert_int_equal(jobs[5].job.u.revoke.revoked_at, 5000);
  assert_int_equal(jobs[7].job.u.list.n_rows, 0);
}

static void test_store_worker_batched_writes_all_commit(void **state) {
  fixture_t *fx = *state;
  static test_job_t jobs[20];
  test_job_t blocker;
  int i;

  issue_init(&blocker, fx, 100, 999, "d");
  park_worker(fx, &blocker);
  for (i = 0; i < 20; i++) {
    issue_init(&jobs[i], fx, i, (unsigned)i, i % 2 ? "a" : "b");
    store_worker_submit(fx->worker, &jobs[i].job);
  }
  unpark_worker(fx);
  run_until_done(fx, 21);
  assert_int_equal(blocker.job.result, 0);
  assert_int_equal(fx->order[0], 100);
  for (i = 0; i < 20; i++) {
    assert_int_equal(fx->order[i + 1], i);
    assert_int_equal(jobs[i].job.result, 0);
    assert_true(jobs[i].job.u.issue.row.seq > 0);
    if (i > 0)
      assert_true(jobs[i].job.u.issue.row.seq >
                  jobs[i - 1].job.u.issue.row.seq);
    assert_int_equal(db_count_id(fx, jobs[i].job.u.issue.row.id), 1);
  }
  assert_int_equal(db_count_id(fx, NULL), 21);
}

/* One write in a group fails on a constraint: the documented all-or-nothing
 * behaviour fails every write of that group and commits none of them. */
static void test_store_worker_failing_job_fails_its_group(void **state) {
  fixture_t *fx = *state;
  test_job_t first, blocker, a, dup, b, after_list;
  store_token_t rows[8];

  issue_init(&first, fx, 0, 1, "d");
  store_worker_submit(fx->worker, &first.job);
  run_until_done(fx, 1);
  assert_int_equal(first.job.result, 0);

  issue_init(&blocker, fx, 1, 2, "d");
  park_worker(fx, &blocker);
  issue_init(&a, fx, 2, 3, "d");
  issue_init(&dup, fx, 3, 4, "d");
  memcpy(dup.job.u.issue.row.id, first.job.u.issue.row.id,
         sizeof(dup.job.u.issue.row.id));
  issue_init(&b, fx, 4, 5, "d");
  list_init(&after_list, fx, 5, "d", rows, 8);
  store_worker_submit(fx->worker, &a.job);
  store_worker_submit(fx->worker, &dup.job);
  store_worker_submit(fx->worker, &b.job);
  store_worker_submit(fx->worker, &after_list.job);
  unpark_worker(fx);
  run_until_done(fx, 6);

  assert_int_equal(blocker.job.result, 0);
  assert_int_equal(a.job.result, TOKEND_EEXIST);
  assert_int_equal(dup.job.result, TOKEND_EEXIST);
  assert_int_equal(b.job.result, TOKEND_EEXIST);
  assert_true(strlen(a.job.errmsg) > 0);
  assert_true(strlen(b.job.errmsg) > 0);
  assert_int_equal(db_count_id(fx, a.job.u.issue.row.id), 0);
  assert_int_equal(db_count_id(fx, b.job.u.issue.row.id), 0);
  assert_int_equal(db_count_id(fx, NULL), 2);
  /* The read after the failed group still runs, and sees no trace of it. */
  assert_int_equal(after_list.job.result, 0);
  assert_int_equal(after_list.job.u.list.n_rows, 2);
  assert_int_equal(fx->order[5], 5);

  /* The worker is not stuck in a transaction: a later write commits. */
  issue_init(&a, fx, 6, 3, "d");
  store_worker_submit(fx->worker, &a.job);
  run_until_done(fx, 7);
  assert_int_equal(a.job.result, 0);
  assert_int_equal(db_count_id(fx, a.job.u.issue.row.id), 1);
}

/* A revoke of an unknown id is that job's own NOT_FOUND, not a store
 * failure: the other writes of its group commit. */
static void test_store_worker_revoke_unknown_keeps_group(void **state) {
  fixture_t *fx = *state;
  test_job_t first, blocker, a, unknown, known, again, b;

  issue_init(&first, fx, 0, 1, "d");
  store_worker_submit(fx->worker, &first.job);
  run_until_done(fx, 1);

  issue_init(&blocker, fx, 1, 2, "d");
  park_worker(fx, &blocker);
  issue_init(&a, fx, 2, 3, "d");
  revoke_init(&unknown, fx, 3, "d", "tok_nosuchtoken000000000", 5000);
  revoke_init(&known, fx, 4, "d", first.job.u.issue.row.id, 6000);
  revoke_init(&again, fx, 5, "d", first.job.u.issue.row.id, 7000);
  issue_init(&b, fx, 6, 4, "d");
  store_worker_submit(fx->worker, &a.job);
  store_worker_submit(fx->worker, &unknown.job);
  store_worker_submit(fx->worker, &known.job);
  store_worker_submit(fx->worker, &again.job);
  store_worker_submit(fx->worker, &b.job);
  unpark_worker(fx);
  run_until_done(fx, 7);

  assert_int_equal(unknown.job.result, TOKEND_ENOTFOUND);
  assert_true(strlen(unknown.job.errmsg) > 0);
  assert_int_equal(a.job.result, 0);
  assert_int_equal(b.job.result, 0);
  assert_int_equal(db_count_id(fx, a.job.u.issue.row.id), 1);
  assert_int_equal(db_count_id(fx, b.job.u.issue.row.id), 1);

  assert_int_equal(known.job.result, 0);
  assert_int_equal(known.job.u.revoke.revoked_at, 6000);
  assert_int_equal(known.job.u.revoke.already, 0);
  assert_memory_equal(known.job.u.revoke.hash, first.job.u.issue.row.hash,
                      TOKEND_HASH_BYTES);
  assert_int_equal(again.job.result, 0);
  assert_int_equal(again.job.u.revoke.revoked_at, 6000);
  assert_int_equal(again.job.u.revoke.already, 1);
}

static void test_store_worker_touch_then_list(void **state) {
  fixture_t *fx = *state;
  test_job_t issues[3], touch, older, list;
  store_touch_t items[2];
  store_token_t rows[8];
  int i;

  for (i = 0; i < 3; i++) {
    issue_init(&issues[i], fx, i, (unsigned)(i + 1), "d");
    store_worker_submit(fx->worker, &issues[i].job);
  }
  run_until_done(fx, 3);

  memcpy(items[0].hash, issues[1].job.u.issue.row.hash, TOKEND_HASH_BYTES);
  items[0].last_used_at = 4242;
  memcpy(items[1].hash, issues[2].job.u.issue.row.hash, TOKEND_HASH_BYTES);
  items[1].last_used_at = 77;
  job_init(&touch, fx, 3, STORE_JOB_TOUCH);
  touch.job.u.touch.items = items;
  touch.job.u.touch.n = 2;
  store_worker_submit(fx->worker, &touch.job);
  run_until_done(fx, 4);
  assert_int_equal(touch.job.result, 0);

  /* An older time in a later touch does not lower it. */
  items[0].last_used_at = 10;
  job_init(&older, fx, 4, STORE_JOB_TOUCH);
  older.job.u.touch.items = items;
  older.job.u.touch.n = 1;
  list_init(&list, fx, 5, "d", rows, 8);
  store_worker_submit(fx->worker, &older.job);
  store_worker_submit(fx->worker, &list.job);
  run_until_done(fx, 6);
  assert_int_equal(older.job.result, 0);
  assert_int_equal(list.job.result, 0);
  assert_int_equal(list.job.u.list.n_rows, 3);
  /* Newest first. */
  assert_string_equal(rows[0].id, issues[2].job.u.issue.row.id);
  assert_int_equal(rows[0].last_used_at, 77);
  assert_string_equal(rows[1].id, issues[1].job.u.issue.row.id);
  assert_int_equal(rows[1].last_used_at, 4242);
  assert_string_equal(rows[2].id, issues[0].job.u.issue.row.id);
  assert_int_equal(rows[2].last_used_at, 0);
}

static void test_store_worker_stop_runs_queued_jobs(void **state) {
  fixture_t *fx = *state;
  test_job_t jobs[5];
  int i;

  for (i = 0; i < 5; i++) {
    issue_init(&jobs[i], fx, i, (unsigned)(i + 1), "d");
    store_worker_submit(fx->worker, &jobs[i].job);
  }
  /* No loop iteration in between: stop itself runs and reports them. */
  store_worker_stop(fx->worker);
  fx->worker = NULL;
  assert_int_equal(fx->n_done, 5);
  for (i = 0; i < 5; i++) {
    assert_int_equal(fx->order[i], i);
    assert_int_equal(jobs[i].n_done, 1);
    assert_int_equal(jobs[i].job.result, 0);
    assert_true(uv_thread_equal(&jobs[i].done_thread, &fx->test_thread));
    assert_int_equal(db_count_id(fx, jobs[i].job.u.issue.row.id), 1);
  }

  /* One more run closes the async handle; nothing is left on the loop. */
  uv_close((uv_handle_t *)&fx->timer, NULL);
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->n_done, 5);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  fx->loop_closed = 1;
}

/* ---- commits that fail (the fault injection shim, preloaded by ctest) ---- */

/* Makes the writes (EIO) or the fsyncs (EIO-SYNC) of the files in fx->dir
 * fail, through tests/integration/fault_inject.c; "" ends the fault. */
static void fault_set(fixture_t *fx, const char *fault) {
  char ctl[96];
  FILE *f;

  if (getenv("LD_PRELOAD") == NULL ||
      strstr(getenv("LD_PRELOAD"), "fault_inject") == NULL)
    fail_msg("run through ctest, which preloads the fault injection shim");
  snprintf(ctl, sizeof(ctl), "%s.fault", fx->dir);
  assert_int_equal(setenv("TOKEND_FAULT_DIR", fx->dir, 1), 0);
  assert_int_equal(setenv("TOKEND_FAULT_CTL", ctl, 1), 0);
  f = fopen(ctl, "w");
  assert_non_null(f);
  fputs(fault, f);
  assert_int_equal(fclose(f), 0);
  if (fault[0] == '\0') {
    unlink(ctl);
    unsetenv("TOKEND_FAULT_DIR");
    unsetenv("TOKEND_FAULT_CTL");
  }
}

/* A commit whose outcome is unknown (its fsync failed after SQLite wrote
 * it): the writes fail as unavailable, and the worker finds them in the
 * store all the same, with their outputs, for memory to agree. */
static void test_store_worker_commit_in_doubt_found_applied(void **state) {
  fixture_t *fx = *state;
  static store_token_t rows[4];
  test_job_t a, b, c;

  issue_init(&a, fx, 0, 1, "d");
  store_worker_submit(fx->worker, &a.job);
  run_until_done(fx, 1);
  assert_int_equal(a.job.result, 0);

  fault_set(fx, "EIO-SYNC");
  issue_init(&b, fx, 1, 2, "d");
  revoke_init(&c, fx, 2, "d", a.job.u.issue.row.id, 5000);
  store_worker_submit(fx->worker, &b.job);
  store_worker_submit(fx->worker, &c.job);
  run_until_done(fx, 3);
  fault_set(fx, "");
  assert_int_equal(b.job.result, TOKEND_EUNAVAIL);
  assert_int_equal(b.job.applied, 1);
  assert_int_equal(b.job.unknown, 0);
  assert_true(b.job.u.issue.row.seq > a.job.u.issue.row.seq);
  assert_int_equal(c.job.result, TOKEND_EUNAVAIL);
  assert_int_equal(c.job.applied, 1);
  assert_int_equal(c.job.unknown, 0);
  assert_int_equal(c.job.u.revoke.revoked_at, 5000);
  assert_int_equal(c.job.u.revoke.already, 0);
  assert_memory_equal(c.job.u.revoke.hash, a.job.u.issue.row.hash,
                      TOKEND_HASH_BYTES);

  /* The store reconnected by itself and serves on. */
  list_init(&a, fx, 3, "d", rows, 4);
  store_worker_submit(fx->worker, &a.job);
  run_until_done(fx, 4);
  assert_int_equal(a.job.result, 0);
  assert_int_equal(a.job.u.list.n_rows, 2);
}

/* A commit that definitely failed: nothing applied, nothing unknown. */
static void test_store_worker_commit_failed_not_applied(void **state) {
  fixture_t *fx = *state;
  test_job_t a;

  fault_set(fx, "EIO");
  issue_init(&a, fx, 0, 1, "d");
  store_worker_submit(fx->worker, &a.job);
  run_until_done(fx, 1);
  fault_set(fx, "");
  assert_int_equal(a.job.result, TOKEND_EUNAVAIL);
  assert_int_equal(a.job.applied, 0);
  assert_int_equal(a.job.unknown, 0);
  assert_true(a.job.errmsg[0] != '\0');
  assert_int_equal(db_count_id(fx, a.job.u.issue.row.id), 0);
}

#define WORKER_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      WORKER_TEST(test_store_worker_issue_commits_and_sets_seq),
      WORKER_TEST(test_store_worker_done_in_order_on_loop_thread),
      WORKER_TEST(test_store_worker_batched_writes_all_commit),
      WORKER_TEST(test_store_worker_failing_job_fails_its_group),
      WORKER_TEST(test_store_worker_revoke_unknown_keeps_group),
      WORKER_TEST(test_store_worker_touch_then_list),
      WORKER_TEST(test_store_worker_stop_runs_queued_jobs),
      WORKER_TEST(test_store_worker_commit_in_doubt_found_applied),
      WORKER_TEST(test_store_worker_commit_failed_not_applied),
  };

  return cmocka_run_group_tests_name("store_worker", tests, NULL, NULL);
}
