/* feed.c: the change feed's wrappers (store/feed.h): a backend's feed_open
 * by URL, and the calls through a follower's ops. */
#include "store/feed.h"

#include <stdio.h>

int store_feed_open_url(const char *url,
                        const struct store_feed_open_args *args,
                        store_feed_t **out) {
  const struct store_backend *backend;
  const char *location;
  char why[256];
  int err;

  *out = NULL;
  if ((err = store_url_parse(url, &backend, &location, why, sizeof(why))) != 0)
    return err;
  if (backend->feed_open == NULL)
    return 0;
  return backend->feed_open(location, args, out);
}

void store_feed_wait(store_feed_t *f, store_feed_wait_t *w, int64_t rev,
                     uint32_t timeout_ms) {
  f->ops->wait(f, w, rev, timeout_ms);
}

void store_feed_status(const store_feed_t *f, store_feed_status_t *out) {
  f->ops->status(f, out);
}

void store_feed_close(store_feed_t *f) {
  if (f != NULL)
    f->ops->close(f);
}
