/* peer: who is at the other end of a connection, from the kernel
 * (SO_PEERCRED, SO_PEERGROUPS) at accept time. Nothing in a request can
 * change it. net/ and http/ fill it in (peer_identify); rpc/ and authz read
 * it. */
#ifndef TOKEND_PEER_H
#define TOKEND_PEER_H

#include <stdint.h>

#include "config.h"
#include "tokend_limits.h"

typedef struct {
  uint32_t uid, gid;
  int32_t pid;
  int is_operator;
  int is_verifier;
  int is_leak_reporter;         /* --leak-reporter: may call RevokeLeaked */
  char user[TOKEND_USER_BYTES]; /* "uid:<uid>": who a non-operator acts as */
} peer_t;

/* Fills *peer from the credentials the kernel holds for the Unix stream
 * socket fd (uid, gid, pid, supplementary groups) and decides its roles by
 * cfg's operator and verifier lists. Returns 0, or TOKEND_EPERM if they
 * cannot be read (*peer is then partly written: refuse the peer). */
int peer_identify(int fd, const config_t *cfg, peer_t *peer) TOKEND_MUST_CHECK;

#endif
