/* tokenctl revoke with several ids, --created-by, --all or
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

#include "call.h"
#include "ctl.h"
#include "json.h"

int ctl_parse_time_ms(const char *s, int64_t *out) {
  unsigned long long v;
  struct tm tm;
  const char *end;
  time_t t;

  if (ctl_parse_uint(s, (unsigned long long)INT64_MAX, &v) == 0) {
    if (v == 0)
      return TOKEND_EINVAL;
    *out = (int64_t)v;
    return 0;
  }
  memset(&tm, 0, sizeof(tm));
  /* YYYY-MM-DD, or with THH:MM:SS and an optional Z (UTC either way). */
  end = strptime(s, "%Y-%m-%d", &tm);
  if (end == NULL)
    return TOKEND_EINVAL;
  if (*end == 'T' || *end == ' ') {
    end = strptime(end + 1, "%H:%M:%S", &tm);
    if (end == NULL)
      return TOKEND_EINVAL;
  }
  if (*end == 'Z')
    end++;
  if (*end != '\0')
    return TOKEND_EINVAL;
  t = timegm(&tm);
  if (t <= 0)
    return TOKEND_EINVAL;
  *out = (int64_t)t * 1000;
  return 0;
}

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
    if (ctl_parse_time_ms(args->created_before, &sel.created_before) != 0)
      return ctl_usage_error(cmd,
                             "--created-before takes a date (2026-01-31, "
                             "2026-01-31T12:00:00Z) or Unix milliseconds:",
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
    snprintf(hint, sizeof(hint),
             "nothing was revoked; `tokenctl list --domain %s --all` shows "
             "its tokens",
             domain);
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
