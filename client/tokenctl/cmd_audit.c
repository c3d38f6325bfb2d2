/* tokenctl audit: the audit log, and --verify of its hash chain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "ctl.h"
#include "json.h"
#include "table.h"
#include "user.h"

const char ctl_audit_usage[] =
    "Usage: tokenctl audit [--domain D] [--since WHEN] [--json] [--page-size "
    "N]\n"
    "                      [--actor U]\n"
    "       tokenctl audit --verify [--anchor ID:HASH] [--json]\n"
    "\n"
    "Shows the audit log, newest first (times in UTC): every issue, revoke,\n"
    "admin grant and removal, and every refused call. Fetches every page.\n"
    "A domain's admins may read its events; operators may read every\n"
    "domain's (leave out --domain).\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           only domain D's events (required unless you\n"
    "                           are an operator)\n"
    "      --since WHEN         only events since WHEN: a duration ago (30m,\n"
    "                           1h30m, 2d, 1w), a date (2027-01-31, midnight\n"
    "                           UTC), a date and time with its zone\n"
    "                           (2027-01-31T12:00:00Z) or Unix ms\n"
    "      --json               print one JSON object {\"events\": [...]} on\n"
    "                           standard output (times in Unix ms, each with\n"
    "                           an RFC 3339 twin: time_rfc3339)\n"
    "      --page-size N        events per request, 1-1000 (default: "
    "tokend's)\n"
    "      --verify             operators: have tokend recompute the log's\n"
    "                           hash chain; exits 1 naming the first row\n"
    "                           that was changed, removed, inserted or moved\n"
    "      --anchor ID:HASH     with --verify: row ID must still have HASH\n"
    "                           (a head printed by an earlier --verify, or\n"
    "                           logged by tokend at start and exit), which\n"
    "                           shows the newest rows cut off\n"
    "A COUNT above 1 is one row for that many refusals of one "
    "kind.\n" CTL_ACTOR_HELP CTL_COMMON_HELP "\n"
    "Example:\n"
    "  tokenctl audit --domain example.com --since 1h\n"
    "  tokenctl audit --verify --anchor 1234:9f86d0...\n";

static const char *const ctl_audit_col_names[] = {
    "TIME",   "PEER UID", "PID",     "ACTOR", "DOMAIN",
    "METHOD", "TOKEN",    "OUTCOME", "COUNT", "DETAIL"};

static void ctl_audit_fill_row(const void *rows, size_t i,
                               char (*cell)[CTL_CELL_BYTES]) {
  const tokend_audit_event_t *e = (const tokend_audit_event_t *)rows + i;

  ctl_fmt_seconds(e->time, cell[0], CTL_CELL_BYTES);
  snprintf(cell[1], CTL_CELL_BYTES, "%lu", (unsigned long)e->peer_uid);
  snprintf(cell[2], CTL_CELL_BYTES, "%ld", (long)e->peer_pid);
  if (e->break_glass && e->actor[0] == '\0')
    snprintf(cell[3], CTL_CELL_BYTES, "(break-glass)");
  else
    ctl_fmt_user(e->actor, cell[3], CTL_CELL_BYTES);
  snprintf(cell[4], CTL_CELL_BYTES, "%s", e->domain[0] ? e->domain : "-");
  ctl_copy_text(cell[5], CTL_CELL_BYTES, e->method);
  snprintf(cell[6], CTL_CELL_BYTES, "%s", e->token_id[0] ? e->token_id : "-");
  snprintf(cell[7], CTL_CELL_BYTES, "%s", tokend_grpc_name(e->code));
  snprintf(cell[8], CTL_CELL_BYTES, "%llu", (unsigned long long)e->count);
  ctl_copy_text(cell[9], CTL_CELL_BYTES, e->detail[0] ? e->detail : "-");
}

static json_t *ctl_json_event_at(const void *rows, size_t i) {
  const tokend_audit_event_t *e = (const tokend_audit_event_t *)rows + i;
  char detail[sizeof(e->detail)];

  ctl_copy_text(detail, sizeof(detail), e->detail);
  return json_pack(
      "{s:I, s:I, s:I, s:I, s:o*, s:b, s:o*, s:o*, s:s, s:i, s:s, s:s, s:I}",
      "id", (json_int_t)e->id, "time", (json_int_t)e->time, "peer_uid",
      (json_int_t)e->peer_uid, "peer_pid", (json_int_t)e->peer_pid, "actor",
      ctl_json_text(e->actor), "break_glass", e->break_glass, "domain",
      ctl_json_text(e->domain), "token_id", ctl_json_text(e->token_id),
      "method", e->method, "code", e->code, "outcome",
      tokend_grpc_name(e->code), "detail", detail, "count",
      (json_int_t)e->count);
}

static int ctl_audit_print_json(const char *domain, int64_t since,
                                const tokend_audit_event_t *events, size_t n) {
  /* "o" for the events: an array that could not be built fails the whole
   * object, which then releases what it took. */
  return ctl_print_json(json_pack("{s:o*, s:o*, s:o}", "domain",
                                  ctl_json_text(domain), "since",
                                  ctl_json_time(since), "events",
                                  ctl_json_rows(events, n, ctl_json_event_at)));
}

/* --verify: exits 0 if the chain holds, CTL_EXIT_INVALID naming the first
 * bad row if not, CTL_EXIT_ERROR if the check could not run. */
static int ctl_audit_verify(ctl_opts_t *opts, const char *anchor) {
  char hash[TOKEND_AUDIT_HASH_HEX_BYTES] = "";
  tokend_audit_check_t chk;
  tokend_client_t *client;
  unsigned long long id = 0;
  const char *colon = anchor != NULL ? strchr(anchor, ':') : NULL;
  char idbuf[24];
  int rc;

  if (anchor != NULL) {
    if (colon == NULL || (size_t)(colon - anchor) >= sizeof(idbuf) ||
        strlen(colon + 1) != sizeof(hash) - 1) {
      fprintf(stderr, "tokenctl audit: --anchor must be ID:HASH (a row id "
                      "and 64 hex digits)\n");
      return CTL_EXIT_ERROR;
    }
    memcpy(idbuf, anchor, (size_t)(colon - anchor));
    idbuf[colon - anchor] = '\0';
    if (ctl_parse_uint(idbuf, INT64_MAX, &id) != 0 || id == 0) {
      fprintf(stderr, "tokenctl audit: --anchor: '%s' is not a row id\n",
              idbuf);
      return CTL_EXIT_ERROR;
    }
    snprintf(hash, sizeof(hash), "%s", colon + 1);
  }
  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_verify_audit(client, (int64_t)id, hash, &chk);
  if (rc != 0) {
    ctl_report("audit --verify", client, rc,
               rc == TOKEND_EPERM ? "only operators may verify the audit log"
                                  : NULL);
    tokend_client_close(client);
    return CTL_EXIT_ERROR;
  }
  tokend_client_close(client);
  if (opts->json) {
    if (ctl_print_json(json_pack(
            "{s:b, s:I, s:I, s:s, s:I, s:s}", "ok", chk.first_bad_id == 0,
            "rows_checked", (json_int_t)chk.rows_checked, "first_bad_id",
            (json_int_t)chk.first_bad_id, "problem", chk.problem, "head_id",
            (json_int_t)chk.head_id, "head_hash", chk.head_hash)) != 0)
      return CTL_EXIT_ERROR;
  } else if (chk.first_bad_id == 0) {
    printf("audit log OK: %lld rows check out%s\n"
           "head: %lld:%s (keep it: --anchor it next time)\n",
           (long long)chk.rows_checked,
           anchor != NULL ? ", and the anchor is in place" : "",
           (long long)chk.head_id, chk.head_hash);
  } else {
    printf("audit log TAMPERED: first bad row %lld: %s\n"
           "(%lld rows checked; the rows before it check out, up to "
           "%lld:%s)\n",
           (long long)chk.first_bad_id, chk.problem,
           (long long)chk.rows_checked, (long long)chk.head_id, chk.head_hash);
  }
  return chk.first_bad_id == 0 ? CTL_EXIT_OK : CTL_EXIT_INVALID;
}

int ctl_audit(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"since", required_argument, NULL, OPT_SINCE},
      {"json", no_argument, NULL, OPT_JSON},
      {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
      {"verify", no_argument, NULL, OPT_VERIFY},
      {"anchor", required_argument, NULL, OPT_ANCHOR},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("audit");
  const char *anchor = NULL;
  int verify = 0;
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160];
  ctl_pages_t pages = {.size = sizeof(tokend_audit_event_t)};
  tokend_audit_list_t *page;
  tokend_client_t *client;
  const char *domain = NULL;
  unsigned long long v;
  uint32_t page_size = 0;
  int64_t since = 0;
  int c, rc;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:", longopts)) != -1) {
    switch (c) {
    case 'd':
      domain = optarg;
      break;
    case OPT_SINCE:
      if (ctl_opt_when(cmd, "--since", optarg, ctl_now_ms(), &since) != 0)
        return CTL_EXIT_ERROR;
      break;
    case OPT_PAGE_SIZE:
      if (ctl_parse_uint(optarg, TOKEND_LIST_PAGE_MAX, &v) != 0 || v == 0)
        return ctl_usage_error(cmd, "--page-size must be 1 to 1000, not",
                               optarg);
      page_size = (uint32_t)v;
      break;
    case OPT_VERIFY:
      verify = 1;
      break;
    case OPT_ANCHOR:
      anchor = optarg;
      break;
    default:
      return ctl_getopt_exit(c);
    }
  }
  if (optind < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind]);
  if (anchor != NULL && !verify)
    return ctl_usage_error(cmd, "--anchor goes with --verify", NULL);
  if (verify && (domain != NULL || since != 0 || page_size != 0))
    return ctl_usage_error(
        cmd,
        "--verify checks the whole log: no --domain, --since or --page-size",
        NULL);
  if (verify)
    return ctl_audit_verify(opts, anchor);
  if (domain == NULL)
    domain = "";
  else if (domain[0] == '\0')
    return ctl_usage_error(cmd,
                           "--domain must not be empty (leave it out for "
                           "every domain)",
                           NULL);

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  do {
    rc = tokend_client_list_audit(client, domain, since, page_size,
                                  pages.page_token, &page);
    if (rc != 0) {
      if (rc == TOKEND_EPERM && domain[0] == '\0')
        snprintf(hint, sizeof(hint),
                 "only operators may read every domain's events; pass "
                 "--domain D for a domain you administer");
      else if (rc == TOKEND_EPERM)
        ctl_domain_perm_hint(opts, domain, hint, sizeof(hint));
      ctl_report("audit", client, rc, rc == TOKEND_EPERM ? hint : NULL);
      rc = CTL_EXIT_ERROR;
      break;
    }
    rc = ctl_pages_add(&pages, "audit", page->events, page->n_events,
                       page->next_page_token);
    tokend_audit_list_free(page);
  } while (rc == CTL_EXIT_OK && pages.page_token[0] != '\0');
  tokend_client_close(client);
  if (rc != CTL_EXIT_OK)
    goto free_pages;

  if (opts->json) {
    rc = ctl_audit_print_json(domain, since, pages.items, pages.n);
  } else if (pages.n == 0) {
    fprintf(stderr, "tokenctl: no audit events%s%s%s\n",
            domain[0] ? " in domain " : "", domain,
            since != 0 ? " in that time" : "");
  } else {
    ctl_print_table(ctl_audit_col_names, 10, pages.items, pages.n,
                    ctl_audit_fill_row);
  }

free_pages:
  free(pages.items);
  return rc;
}
