/* peer: who is at the other end of a connection, from the kernel
 * (SO_PEERCRED, SO_PEERGROUPS) at accept time. Nothing in a request can
 * change it. net/ fills it in; rpc/ and authz read it. */
#ifndef TOKEND_PEER_H
#define TOKEND_PEER_H

#include <stdint.h>

#include "tokend_limits.h"

typedef struct {
  uint32_t uid, gid;
  int32_t pid;
  int is_operator;
  int is_verifier;
  char user[TOKEND_USER_BYTES]; /* "uid:<uid>": who a non-operator acts as */
} peer_t;

#endif
