/* tokenctl status: how tokend is doing (ServerStatus). */
#include <stdio.h>

#include "call.h"
#include "ctl.h"
#include "json.h"

const char ctl_status_usage[] =
    "Usage: tokenctl status [--json]\n"
    "\n"
    "Shows how tokend is doing, from its memory (it never asks the store):\n"
    "its version and store, and with a store several hosts share\n"
    "(PostgreSQL) this host's id, the change feed revision it has applied,\n"
    "and whether it is current: a host that has not caught up with the\n"
    "store for its --lease-ms answers Verify UNAVAILABLE. index digest is\n"
    "equal on two hosts whose tokens, revocations and admins agree.\n"
    "old pepper counts the tokens still hashed with the previous pepper\n"
    "during a pepper rotation: it may be destroyed once that is 0.\n"
    "Exit status 0 while current, 1 when not, 2 on error.\n"
    "\n"
    "Options:\n"
    "      --json               print one JSON object on standard "
    "output\n" CTL_COMMON_HELP;

int ctl_status(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"json", no_argument, NULL, OPT_JSON},
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("status");
  tokend_server_status_t st;
  tokend_client_t *client;
  uint64_t previous = 0;
  int c, rc;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":h", longopts)) != -1)
    return ctl_getopt_exit(c);
  if (optind < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind]);

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_server_status(client, &st);
  if (rc == 0)
    rc = tokend_client_tokens_previous_pepper(client, &previous);
  if (ctl_end_call("status", client, rc, NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;
  if (opts->json) {
    rc = ctl_print_json(json_pack(
        "{s:s, s:s, s:s, s:I, s:b, s:I, s:I, s:s, s:s, s:I}", "version",
        st.version, "store", st.store, "host_id", st.host_id,
        "applied_revision", (json_int_t)st.applied_revision, "fresh", st.fresh,
        "lease_left_ms", (json_int_t)st.lease_left_ms, "tokens",
        (json_int_t)st.tokens, "index_digest", st.index_digest, "problem",
        st.problem, "tokens_previous_pepper", (json_int_t)previous));
    return rc != CTL_EXIT_OK ? rc : st.fresh ? CTL_EXIT_OK : CTL_EXIT_INVALID;
  }
  printf("version:      %s\n", st.version);
  printf("store:        %s\n", st.store);
  if (st.host_id[0] != '\0') {
    printf("host id:      %s\n", st.host_id);
    printf("applied:      revision %lld\n", (long long)st.applied_revision);
  }
  if (st.fresh)
    printf("current:      yes (lease %lld ms left)\n",
           (long long)st.lease_left_ms);
  else
    printf("current:      NO: answering Verify UNAVAILABLE%s%s%s\n",
           st.problem[0] != '\0' ? " (" : "", st.problem,
           st.problem[0] != '\0' ? ")" : "");
  printf("tokens:       %llu\n", (unsigned long long)st.tokens);
  printf("index digest: %s\n", st.index_digest);
  printf("old pepper:   %llu tokens still hashed with it\n",
         (unsigned long long)previous);
  return st.fresh ? CTL_EXIT_OK : CTL_EXIT_INVALID;
}
