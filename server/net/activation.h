/* net/activation: listening sockets a service manager passed to tokend
 * (systemd's socket activation, sd_listen_fds(3): $LISTEN_FDS,
 * $LISTEN_PID, $LISTEN_FDNAMES), taken by name. Each face of tokend takes
 * its own: the API socket is NET_ACTIVATION_MAIN; another (an HTTP face)
 * calls net_take_activated() with its name before the unclaimed ones are
 * closed. Process-wide state, like the environment it comes from; loop
 * thread only. */
#ifndef TOKEND_NET_ACTIVATION_H
#define TOKEND_NET_ACTIVATION_H

#include "tokend_error.h"

/* The name (FileDescriptorName= in the .socket unit) of the API socket.
 * When exactly one socket is passed, it is the API socket whatever its
 * name. */
#define NET_ACTIVATION_MAIN "tokend"
/* The name of the HTTP face's sockets (FileDescriptorName=http), any
 * number of them: each serves the --http-listen address it is bound to,
 * or one more address (issue 16). */
#define NET_ACTIVATION_HTTP "http"

/* Reads the passed sockets once, and unsets the variables (children do not
 * inherit them). Without $LISTEN_FDS, or with $LISTEN_PID naming another
 * process, there are none. Returns 0, or TOKEND_ECONFIG after logging
 * why the variables could not be read. */
int net_activation_init(void) TOKEND_MUST_CHECK;

/* 1 if a socket for name waits to be taken, else 0. */
int net_activated_has(const char *name);

/* Takes the socket passed under name: returns its descriptor, which the
 * caller owns from now on, or TOKEND_ENOTFOUND. */
int net_take_activated(const char *name);

/* Closes the passed sockets no face took, logging each (a .socket unit
 * naming a socket this tokend has no use for). Idempotent. */
void net_activation_close_unclaimed(void);

#endif
