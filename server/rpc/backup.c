/* Backup: an operator's consistent online copy of the store (issue 16). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"

static void backup_ok(call_t *call) {
  Tokend__V1__Response resp = TOKEND__V1__RESPONSE__INIT;
  Tokend__V1__Status status = TOKEND__V1__STATUS__INIT;
  Tokend__V1__BackupResponse br = TOKEND__V1__BACKUP_RESPONSE__INIT;
  const rpc_t *r = call->rpc;

  log_info("backup of %s written to %s (%lld bytes) for uid %u; keep the "
           "pepper file %s with it",
           r->env.cfg->db_path, call->job.u.backup.path,
           (long long)call->job.u.backup.bytes, (unsigned)call->sink->peer.uid,
           r->env.cfg->pepper_path);
  if (!rpc_sink_open(call->sink))
    return;
  resp.call_id = call->call_id;
  resp.status = &status;
  resp.result_case = TOKEND__V1__RESPONSE__RESULT_BACKUP;
  resp.backup = &br;
  br.path = call->job.u.backup.path;
  br.bytes = call->job.u.backup.bytes;
  br.pepper_file = (char *)r->env.cfg->pepper_path;
  (void)rpc_send(call->rpc, call->sink, &resp, 0);
}

static void backup_fini(call_t *call) {
  free(call->job.u.backup.path);
  call->job.u.backup.path = NULL;
}

static const call_kind_t backup_kind = {
    .method = "Backup",
    .what = "back up the store",
    .ok = backup_ok,
    .fini = backup_fini,
};

/* Operators only (the method table). The path is tokend's to create, so
 * it must not depend on tokend's working directory: absolute. */
void rpc_backup(rpc_t *r, sink_t *k, uint64_t call_id,
                const authz_actor_t *actor,
                const Tokend__V1__Request *request) {
  const Tokend__V1__BackupRequest *req = request->backup;
  call_t *call;
  char *path;

  (void)actor;
  if (rpc_reject_nul(r, k, call_id, req->path, "path"))
    return;
  if (req->path[0] != '/' || strlen(req->path) >= PATH_MAX) {
    rpc_send_error(r, k, call_id, TOKEND_EINVAL,
                   "path must be absolute (tokend creates the file) and "
                   "shorter than PATH_MAX");
    return;
  }
  if ((path = strdup(req->path)) == NULL) {
    rpc_send_error(r, k, call_id, TOKEND_ENOMEM, "out of memory");
    return;
  }
  if ((call = call_new(r, k, call_id, &backup_kind, STORE_JOB_BACKUP)) ==
      NULL) {
    free(path);
    return;
  }
  call->job.u.backup.path = path;
  call_submit(call);
}
