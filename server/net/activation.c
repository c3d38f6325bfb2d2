#include "net/activation.h"

#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"

/* The passed sockets: descriptor SD_LISTEN_FDS_START + i is fds[i] until
 * taken (then -1); names from sd_listen_fds_with_names ("unknown" when
 * systemd gave none). */
static int n_fds;
static int *fds;
static char **names;

int net_activation_init(void) {
  int n, i;

  if (fds != NULL)
    return 0;
  n = sd_listen_fds_with_names(1, &names);
  if (n < 0) {
    log_error("cannot read the sockets the service manager passed "
              "($LISTEN_FDS): %s",
              strerror(-n));
    return TOKEND_ECONFIG;
  }
  if (n == 0)
    return 0;
  if ((fds = calloc((size_t)n, sizeof(*fds))) == NULL) {
    log_error("out of memory");
    return TOKEND_ECONFIG;
  }
  n_fds = n;
  for (i = 0; i < n; i++)
    fds[i] = SD_LISTEN_FDS_START + i;
  return 0;
}

/* The index of the untaken socket for name, or -1. */
static int find(const char *name) {
  int i, untaken = 0, last = -1;

  for (i = 0; i < n_fds; i++) {
    if (fds[i] < 0)
      continue;
    if (strcmp(names[i], name) == 0)
      return i;
    untaken++;
    last = i;
  }
  /* One socket, however named (a .socket unit without
   * FileDescriptorName= names it after the unit): the API socket, unless
   * it is named as the HTTP face's. */
  if (n_fds == 1 && untaken == 1 && strcmp(name, NET_ACTIVATION_MAIN) == 0 &&
      strcmp(names[last], NET_ACTIVATION_HTTP) != 0)
    return last;
  return -1;
}

int net_activated_has(const char *name) { return find(name) >= 0; }

int net_take_activated(const char *name) {
  int i = find(name), fd;

  if (i < 0)
    return TOKEND_ENOTFOUND;
  fd = fds[i];
  fds[i] = -1;
  return fd;
}

void net_activation_close_unclaimed(void) {
  int i;

  for (i = 0; i < n_fds; i++) {
    if (fds[i] < 0)
      continue;
    log_warn("closing socket %s (fd %d) that the service manager passed: "
             "tokend has no use for a socket of that name",
             names[i], fds[i]);
    close(fds[i]);
    fds[i] = -1;
  }
  for (i = 0; names != NULL && names[i] != NULL; i++)
    free(names[i]);
  free(names);
  names = NULL;
  free(fds);
  fds = NULL;
  n_fds = 0;
}
