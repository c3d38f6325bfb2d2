/* tokend_pool_t: n clients behind a mutex, for multi-threaded services.
 *
 * Built on the public client API alone. The free clients form a stack, so
 * the most recently used connection (the one likeliest to be alive and in
 * cache) is lent first; a borrower waits on a condition variable while the
 * stack is empty. */
#include <tokend/client.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tokend_pool_s {
  pthread_mutex_t lock;
  pthread_cond_t freed; /* signalled when a client is released */
  int timeout_ms;
  size_t n;
  tokend_client_t **clients; /* all n, for close */
  tokend_client_t **idle;    /* a stack of the free ones */
  size_t n_idle;
};

/* Closes the first n clients and frees what pool_open made. */
static void pool_free(tokend_pool_t *pool, size_t n_open) {
  size_t i;

  for (i = 0; i < n_open; i++)
    tokend_client_close(pool->clients[i]);
  free(pool->clients);
  free(pool->idle);
  free(pool);
}

int tokend_pool_open(const char *socket_path, int timeout_ms, unsigned flags,
                     size_t n, tokend_pool_t **out, char *why, size_t why_len) {
  tokend_pool_t *pool;
  size_t i;
  int rc;

  if (why_len > 0)
    why[0] = '\0';
  if (out == NULL || n == 0 || timeout_ms < 0) {
    if (why_len > 0)
      snprintf(why, why_len, "invalid argument");
    return TOKEND_EINVAL;
  }
  *out = NULL;
  pool = calloc(1, sizeof(*pool));
  if (pool == NULL)
    goto err_nomem;
  pool->clients = calloc(n, sizeof(*pool->clients));
  pool->idle = calloc(n, sizeof(*pool->idle));
  if (pool->clients == NULL || pool->idle == NULL) {
    pool_free(pool, 0);
    goto err_nomem;
  }
  pool->n = n;
  pool->timeout_ms = timeout_ms;
  for (i = 0; i < n; i++) {
    rc = tokend_client_open(socket_path, timeout_ms, flags, &pool->clients[i],
                            why, why_len);
    if (rc != 0) {
      pool_free(pool, i);
      return rc;
    }
    pool->idle[i] = pool->clients[i];
  }
  pool->n_idle = n;
  if (pthread_mutex_init(&pool->lock, NULL) != 0)
    goto err_free_clients;
  /* CLOCK_MONOTONIC: a wall-clock step must not stretch or cut the wait. */
  {
    pthread_condattr_t attr;

    if (pthread_condattr_init(&attr) != 0)
      goto err_destroy_lock;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&pool->freed, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
      goto err_destroy_lock;
  }
  *out = pool;
  return 0;

err_destroy_lock:
  pthread_mutex_destroy(&pool->lock);
err_free_clients:
  pool_free(pool, n);
err_nomem:
  if (why_len > 0)
    snprintf(why, why_len, "out of memory");
  return TOKEND_ENOMEM;
}

int tokend_pool_acquire(tokend_pool_t *pool, tokend_client_t **out) {
  struct timespec until;
  int rc = 0;

  if (pool == NULL || out == NULL)
    return TOKEND_EINVAL;
  *out = NULL;
  if (pool->timeout_ms > 0) {
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += pool->timeout_ms / 1000;
    until.tv_nsec += (long)(pool->timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&pool->lock);
  while (pool->n_idle == 0) {
    if (pool->timeout_ms > 0)
      rc = pthread_cond_timedwait(&pool->freed, &pool->lock, &until);
    else
      rc = pthread_cond_wait(&pool->freed, &pool->lock);
    if (rc == ETIMEDOUT && pool->n_idle == 0) {
      pthread_mutex_unlock(&pool->lock);
      return TOKEND_ETIMEDOUT;
    }
  }
  *out = pool->idle[--pool->n_idle];
  pthread_mutex_unlock(&pool->lock);
  return 0;
}

void tokend_pool_release(tokend_pool_t *pool, tokend_client_t *client) {
  if (pool == NULL || client == NULL)
    return;
  /* Clearing can only fail on a NULL client. */
  (void)!tokend_client_set_actor(client, NULL);
  pthread_mutex_lock(&pool->lock);
  pool->idle[pool->n_idle++] = client;
  pthread_cond_signal(&pool->freed);
  pthread_mutex_unlock(&pool->lock);
}

int tokend_pool_verify(tokend_pool_t *pool, const char *token,
                       tokend_verify_result_t *out, char *why, size_t why_len) {
  tokend_client_t *client;
  int rc;

  if (why_len > 0)
    why[0] = '\0';
  rc = tokend_pool_acquire(pool, &client);
  if (rc != 0) {
    if (why_len > 0)
      snprintf(why, why_len, "%s",
               rc == TOKEND_ETIMEDOUT ? "no connection of the pool came free "
                                        "in time"
                                      : tokend_strerror(rc));
    return rc;
  }
  rc = tokend_client_verify(client, token, out);
  if (rc != 0 && why_len > 0)
    snprintf(why, why_len, "%s", tokend_client_errmsg(client));
  tokend_pool_release(pool, client);
  return rc;
}

int tokend_pool_cache_enable(tokend_pool_t *pool, size_t max_entries, char *why,
                             size_t why_len) {
  tokend_client_t **held;
  size_t n = 0, i;
  int rc = 0;

  if (why_len > 0)
    why[0] = '\0';
  if (pool == NULL || max_entries == 0)
    return TOKEND_EINVAL;
  if ((held = calloc(pool->n, sizeof(*held))) == NULL)
    return TOKEND_ENOMEM;
  /* Every client borrowed first: none is in use while its cache is made. */
  for (n = 0; n < pool->n; n++)
    if ((rc = tokend_pool_acquire(pool, &held[n])) != 0) {
      if (why_len > 0)
        snprintf(why, why_len, "%s",
                 rc == TOKEND_ETIMEDOUT ? "not every connection of the pool "
                                          "came free in time"
                                        : tokend_strerror(rc));
      goto release;
    }
  for (i = 0; i < n && rc == 0; i++)
    if ((rc = tokend_client_cache_enable(held[i], max_entries)) != 0 &&
        why_len > 0)
      snprintf(why, why_len, "%s", tokend_client_errmsg(held[i]));

release:
  for (i = 0; i < n; i++)
    tokend_pool_release(pool, held[i]);
  free(held);
  return rc;
}

void tokend_pool_close(tokend_pool_t *pool) {
  if (pool == NULL)
    return;
  pthread_cond_destroy(&pool->freed);
  pthread_mutex_destroy(&pool->lock);
  pool_free(pool, pool->n);
}
