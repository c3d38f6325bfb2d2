/* peer: who is at the other end of a Unix socket, from the kernel. */
#define _GNU_SOURCE /* struct ucred, SO_PEERGROUPS */
#include "core/peer.h"

#include <stdio.h>
#include <sys/socket.h>

#include "tokend_error.h"

static int ids_match(const config_ids_t *ids, uint32_t uid,
                     const uint32_t *gids, size_t n_gids) {
  size_t i, j;

  for (i = 0; i < ids->n_uids; i++)
    if (ids->uids[i] == uid)
      return 1;
  for (i = 0; i < ids->n_gids; i++)
    for (j = 0; j < n_gids; j++)
      if (ids->gids[i] == gids[j])
        return 1;
  return 0;
}

int peer_identify(int fd, const config_t *cfg, peer_t *peer) {
  uint32_t gids[CONFIG_MAX_IDS * 4];
  gid_t groups[CONFIG_MAX_IDS * 4];
  struct ucred cred;
  socklen_t len = sizeof(cred);
  size_t n_gids = 0, i;

  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      len != sizeof(cred))
    return TOKEND_EPERM;
  peer->uid = (uint32_t)cred.uid;
  peer->gid = (uint32_t)cred.gid;
  peer->pid = (int32_t)cred.pid;
  gids[n_gids++] = (uint32_t)cred.gid;
  /* Supplementary groups, without asking NSS (which may block). A peer in
   * more groups than fit is judged by the ones that do. */
  len = sizeof(groups);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
    for (i = 0; i < len / sizeof(gid_t) && n_gids < CONFIG_MAX_IDS * 4; i++)
      gids[n_gids++] = (uint32_t)groups[i];
  peer->is_operator = ids_match(&cfg->operators, peer->uid, gids, n_gids);
  peer->is_verifier =
      cfg->any_verifier || ids_match(&cfg->verifiers, peer->uid, gids, n_gids);
  peer->is_leak_reporter =
      ids_match(&cfg->leak_reporters, peer->uid, gids, n_gids);
  snprintf(peer->user, sizeof(peer->user), "uid:%u", (unsigned)peer->uid);
  return 0;
}
