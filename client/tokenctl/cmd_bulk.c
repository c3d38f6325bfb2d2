/* tokenctl revoke-leaked (below), and tokenctl revoke with several ids,
 * --created-by, --all or
 * --created-before: BulkRevoke (issue 17). `revoke` (cmd_tokens.c) parses
 * the options and hands the bulk forms here; one id alone stays a Revoke.
 * A bulk revocation cannot be undone, so it asks first on a terminal, and
 * refuses without --yes anywhere else. */
#define _GNU_SOURCE /* timegm */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "call.h"
#include "ctl.h"
#include "json.h"

/* 1 if the user said yes to what on the terminal; 0 otherwise (stdin or
 * stderr not a terminal, or no). */
static int confirm(const char *what) {
  char line[16];

  if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO))
    return 0;
  fprintf(stderr, "%s; this cannot be undone. Go on? [y/N] ", what);
  fflush(stderr);
  if (fgets(line, sizeof(line), stdin) == NULL)
    return 0;
  line[strcspn(line, "\n")] = '\0';
  return strcmp(line, "y") == 0 || strcmp(line, "Y") == 0 ||
         strcmp(line, "yes") == 0;
}

int ctl_bulk_revoke(const ctl_command_t *cmd, ctl_opts_t *opts,
                    const char *domain, const ctl_bulk_args_t *args, int n_ids,
                    char **ids) {
  tokend_bulk_select_t sel = {.token_ids = NULL};
  char what[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 96];
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160];
  tokend_client_t *client;
  tokend_propagation_t prop;
  uint32_t revoked = 0, already = 0;
  int n_sel = (n_ids > 0) + (args->created_by != NULL) + args->all +
              (args->created_before != NULL);
  int rc, has_prop;

  if (n_sel > 1)
    return ctl_usage_error(cmd,
                           "give only one of TOKEN_ID..., --created-by, "
                           "--all, --created-before",
                           NULL);
  if (n_ids > TOKEND_BULK_IDS_MAX)
    return ctl_usage_error(cmd, "too many token ids: at most 1000 a call",
                           NULL);
  if (n_ids > 0) {
    sel.token_ids = (const char *const *)ids;
    sel.n_token_ids = (size_t)n_ids;
    snprintf(what, sizeof(what), "Revoke %d tokens of %s", n_ids, domain);
  } else if (args->created_by != NULL) {
    sel.created_by = args->created_by;
    snprintf(what, sizeof(what), "Revoke every token %s created in %s",
             args->created_by, domain);
  } else if (args->all) {
    sel.all = 1;
    snprintf(what, sizeof(what), "Revoke EVERY token of %s", domain);
  } else {
    if (ctl_opt_time(cmd, "--created-before", args->created_before,
                     &sel.created_before) != 0)
      return CTL_EXIT_ERROR;
    if (sel.created_before <= 0)
      return ctl_usage_error(cmd, "--created-before must be after 1970; not",
                             args->created_before);
    snprintf(what, sizeof(what), "Revoke every token of %s created before %s",
             domain, args->created_before);
  }
  if (!args->yes && !confirm(what)) {
    fprintf(stderr, "tokenctl revoke: not confirmed, nothing revoked%s\n",
            isatty(STDIN_FILENO) ? ""
                                 : " (not on a terminal: pass --yes to "
                                   "revoke without asking)");
    return CTL_EXIT_ERROR;
  }

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_bulk_revoke(client, domain, &sel, &revoked, &already);
  has_prop = rc == 0 && tokend_client_last_propagation(client, &prop);
  if (rc == TOKEND_EPERM)
    ctl_domain_perm_hint(opts, domain, hint, sizeof(hint));
  else if (rc == TOKEND_ENOTFOUND)
    /* tokend's message already says that nothing was revoked. */
    snprintf(hint, sizeof(hint),
             "`tokenctl list --domain %s --all` shows its tokens", domain);
  if (ctl_end_call("revoke", client, rc,
                   rc == TOKEND_ENOTFOUND || rc == TOKEND_EPERM
                       ? hint
                       : NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;
  if (opts->json)
    return ctl_print_json(json_pack(
        "{s:s, s:I, s:I, s:o?}", "domain", domain, "revoked",
        (json_int_t)revoked, "already_revoked", (json_int_t)already,
        "propagation", has_prop ? ctl_json_propagation(&prop) : NULL));
  printf("revoked %u token%s in %s", (unsigned)revoked, revoked == 1 ? "" : "s",
         domain);
  if (already > 0)
    printf(" (%u already revoked)", (unsigned)already);
  printf("\n");
  return CTL_EXIT_OK;
}

/* ---- revoke-leaked ---- */

const char ctl_revoke_leaked_usage[] =
    "Usage: tokenctl revoke-leaked [--source URL] [--json] < SECRETS\n"
    "\n"
    "Revokes tokens found in public: reads secrets from standard input, one\n"
    "a line (at most 100), and has tokend revoke each that is one of its\n"
    "active tokens, audited as leaked with URL. Prints how many were known\n"
    "and how many revoked. For --leak-reporter identities and operators.\n"
    "\n"
    "Options:\n"
    "      --source URL         where the secrets were found (for the audit\n"
    "                           log)\n"
    "      --json               print one JSON object\n" CTL_COMMON_HELP;

/* Room for TOKEND_LEAKED_MAX secrets of the longest length, their line
 * ends, and a little slack to tell "too many" from "just fits". */
#define CTL_LEAKED_BUF (TOKEND_LEAKED_MAX * (TOKEND_TOKEN_BYTES + 2) + 64)

int ctl_revoke_leaked(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"source", required_argument, NULL, OPT_SOURCE},
      {"json", no_argument, NULL, OPT_JSON},
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("revoke-leaked");
  static char buf[CTL_LEAKED_BUF];
  const char *tokens[TOKEND_LEAKED_MAX], *source = NULL;
  int found[TOKEND_LEAKED_MAX];
  tokend_client_t *client;
  uint32_t revoked = 0;
  size_t len = 0, n = 0, i, known = 0;
  ssize_t got;
  char *p, *line, *save = NULL;
  int c, rc, status = CTL_EXIT_ERROR;
  json_t *arr;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":h", longopts)) != -1) {
    if (c != OPT_SOURCE)
      return ctl_getopt_exit(c);
    source = optarg;
  }
  if (optind < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind]);
  /* read(2), not stdio: no buffer of stdio's keeps a copy of a secret. */
  while (len < sizeof(buf) - 1 &&
         (got = read(STDIN_FILENO, buf + len, sizeof(buf) - 1 - len)) != 0) {
    if (got < 0) {
      if (errno == EINTR)
        continue;
      fprintf(stderr, "tokenctl revoke-leaked: reading stdin: %s\n",
              strerror(errno));
      goto out;
    }
    len += (size_t)got;
  }
  buf[len] = '\0';
  for (line = strtok_r(buf, "\r\n", &save); line != NULL;
       line = strtok_r(NULL, "\r\n", &save)) {
    for (p = line; *p == ' ' || *p == '\t'; p++)
      ;
    if (*p == '\0')
      continue;
    if (n == TOKEND_LEAKED_MAX || len == sizeof(buf) - 1) {
      fprintf(stderr, "tokenctl revoke-leaked: at most %d secrets a call\n",
              TOKEND_LEAKED_MAX);
      goto out;
    }
    p[strcspn(p, " \t")] = '\0';
    tokens[n++] = p;
  }
  if (n == 0) {
    fprintf(stderr, "tokenctl revoke-leaked: no secret on standard input\n");
    goto out;
  }
  if (ctl_connect(opts, &client) != 0)
    goto out;
  rc = tokend_client_revoke_leaked(client, tokens, n, source, found, &revoked);
  if (ctl_end_call("revoke-leaked", client, rc,
                   rc == TOKEND_EPERM
                       ? "only tokend's --leak-reporter identities and "
                         "operators may report leaked tokens"
                       : NULL) != CTL_EXIT_OK)
    goto out;
  for (i = 0; i < n; i++)
    known += found[i] != 0;
  if (opts->json) {
    arr = json_array();
    for (i = 0; arr != NULL && i < n; i++)
      json_array_append_new(arr, json_boolean(found[i]));
    status = ctl_print_json(json_pack(
        "{s:I, s:I, s:I, s:o}", "given", (json_int_t)n, "known",
        (json_int_t)known, "revoked", (json_int_t)revoked, "found", arr));
    goto out;
  }
  printf("%zu secret%s given, %zu known to tokend, %u revoked\n", n,
         n == 1 ? "" : "s", known, (unsigned)revoked);
  status = CTL_EXIT_OK;
out:
  sodium_memzero(buf, sizeof(buf));
  return status;
}
