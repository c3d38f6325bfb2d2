/* tokenctl issue, verify, revoke and list: a domain's tokens. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "call.h"
#include "ctl.h"
#include "json.h"
#include "table.h"
#include "tty.h"
#include "user.h"

/* Room for one token line plus stray whitespace; anything longer is not a
 * token. */
#define CTL_VERIFY_INPUT_BYTES 1024

const char ctl_issue_usage[] =
    "Usage: tokenctl issue --domain D --label L [--expires-in DURATION |\n"
    "                      --expires-at TIME] [--scope S]... [--json]\n"
    "                      [--actor U]\n"
    "\n"
    "Issues a new token. The token alone goes to standard output, its id and\n"
    "details to standard error. tokend keeps only a hash of it: the secret\n"
    "cannot be shown again.\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain the token belongs to (required)\n"
    "  -l, --label L            a name for people, 1-100 characters "
    "(required)\n"
    "  -e, --expires-in DURATION\n"
    "                           lifetime: whole numbers with units ms, s, m,\n"
    "                           h, d or w (90s, 15m, 1h30m, 30d, 2w), at most\n"
    "                           10 years; default: never\n"
    "      --expires-at TIME    expire at TIME instead: a date (2027-01-31,\n"
    "                           midnight UTC), a date and time with its zone\n"
    "                           (2027-01-31T12:00:00Z, ...T12:00+02:00) or\n"
    "                           Unix ms; at most 10 years from now\n"
    "      --scope S            grant scope S; repeat for more (at most 32)\n"
    "      --metadata JSON      a JSON object of at most 1024 bytes that\n"
    "                           Verify returns with the token\n"
    "      --json               print one JSON object with the token and its\n"
    "                           details on standard output (times in Unix ms,\n"
    "                           null when not set, each with an RFC 3339\n"
    "                           twin: expires_at_rfc3339)\n" CTL_ACTOR_HELP
        CTL_COMMON_HELP "\n"
    "Example:\n"
    "  TOKEN=$(tokenctl issue --domain example.com --label 'CI deploy' \\\n"
    "          --expires-in 30d --scope deploy)\n";

const char ctl_verify_usage[] =
    "Usage: tokenctl verify [--json] < FILE\n"
    "\n"
    "Reads one token from standard input (never from the command line, where\n"
    "ps and shell history would see it) and asks tokend whether it is valid.\n"
    "Exit status: 0 valid, 1 invalid (the reason is printed), 2 error.\n"
    "\n"
    "Options:\n"
    "      --json               print one JSON object on standard output\n"
    "                           (times in Unix ms, null when not "
    "set)\n" CTL_COMMON_HELP "\n"
    "Example:\n"
    "  printf '%s\\n' \"$TOKEN\" | tokenctl verify\n";

const char ctl_revoke_usage[] =
    "Usage: tokenctl revoke --domain D [--json] [--actor U] TOKEN_ID\n"
    "       tokenctl revoke --domain D [--yes] TOKEN_ID TOKEN_ID...\n"
    "       tokenctl revoke --domain D [--yes] --created-by U | --all |\n"
    "                       --created-before T\n"
    "\n"
    "Revokes a token by its id (tok_...). Revoking a revoked token is not an\n"
    "error: it reports when the token was first revoked.\n"
    "\n"
    "With several ids, or a selection, revokes them all in one transaction\n"
    "(an unknown id revokes nothing) and prints how many were revoked. It\n"
    "asks first on a terminal; elsewhere it needs --yes.\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain the token belongs to (required)\n"
    "      --created-by U       every token user U created\n"
    "      --all                every token of the domain\n"
    "      --created-before T   every token created before T (2026-01-31,\n"
    "                           2026-01-31T12:00:00Z, or Unix ms)\n"
    "      --yes                do not ask for confirmation\n"
    "      --json               print one JSON object on standard output\n"
    "                           (times in Unix ms)\n" CTL_ACTOR_HELP
        CTL_COMMON_HELP;

const char ctl_list_usage[] =
    "Usage: tokenctl list --domain D [--all] [--json] [--page-size N]\n"
    "                     [--expiring-within DURATION] [--actor U]\n"
    "\n"
    "Lists a domain's tokens, newest first, as a table (times in UTC), with\n"
    "their scopes and who created them (and, with --all, who revoked them).\n"
    "Fetches every page.\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain to list (required)\n"
    "      --all                include revoked tokens\n"
    "      --json               print one JSON object {\"domain\": ...,\n"
    "                           \"tokens\": [...]} on standard output (times\n"
    "                           in Unix ms, null when not set, each with an\n"
    "                           RFC 3339 twin: created_at_rfc3339)\n"
    "      --page-size N        tokens per request, 1-1000 (default: "
    "tokend's)\n"
    "      --expiring-within DURATION\n"
    "                           only active tokens that expire within\n"
    "                           DURATION from now (7d, 12h)\n"
    "A token Roll replaced shows \"(rolled)\" after its status; --json gives\n"
    "rolled_from and rolled_to.\n" CTL_ACTOR_HELP CTL_COMMON_HELP;

/* ---- issue ---- */

static int ctl_issue_print_json(const tokend_issued_t *issued,
                                json_t *propagation) {
  json_t *root = json_object(), *token = json_string(issued->token);

  /* json_object_set, not _set_new: ctl_print_secret_json wipes token. */
  if (root == NULL || token == NULL ||
      json_object_set(root, "token", token) != 0 ||
      json_object_update_new(root, ctl_json_info(&issued->info)) != 0 ||
      (propagation != NULL &&
       json_object_set_new(root, "propagation", propagation) != 0)) {
    json_decref(root);
    root = NULL;
  }
  return ctl_print_secret_json(root, token);
}

int ctl_issue(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"label", required_argument, NULL, 'l'},
      {"expires-in", required_argument, NULL, 'e'},
      {"expires-at", required_argument, NULL, OPT_EXPIRES_AT},
      {"scope", required_argument, NULL, OPT_SCOPE},
      {"json", no_argument, NULL, OPT_JSON},
      {"metadata", required_argument, NULL, OPT_ISSUE17_METADATA},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("issue");
  const char *scopes[TOKEND_MAX_SCOPES];
  int has_expires_in = 0, has_expires_at = 0;
  tokend_issue_params_t params;
  tokend_client_t *client;
  tokend_issued_t issued;
  tokend_propagation_t prop;
  int has_prop;
  char created[32], expires[32], creator[TOKEND_USER_BYTES + 64];
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160];
  int64_t now, duration;
  int c, rc;

  memset(&params, 0, sizeof(params));
  now = ctl_now_ms();
  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:l:e:", longopts)) != -1) {
    switch (c) {
    case 'd':
      params.domain = optarg;
      break;
    case 'l':
      params.label = optarg;
      break;
    case 'e':
      if (ctl_opt_duration(cmd, "--expires-in", optarg, now, &duration) != 0)
        return CTL_EXIT_ERROR;
      params.expires_at = now + duration;
      has_expires_in = 1;
      break;
    case OPT_EXPIRES_AT:
      if (ctl_opt_time(cmd, "--expires-at", optarg, &params.expires_at) != 0)
        return CTL_EXIT_ERROR;
      /* The same bound as --expires-in's; a token born expired is a
       * mistake. */
      if (params.expires_at <= now)
        return ctl_usage_error(cmd, "--expires-at is in the past:", optarg);
      if ((uint64_t)(params.expires_at - now) > CTL_DURATION_MAX_MS)
        return ctl_usage_error(
            cmd, "--expires-at is more than 10 years from now:", optarg);
      has_expires_at = 1;
      break;
    case OPT_SCOPE:
      if (params.n_scopes == TOKEND_MAX_SCOPES)
        return ctl_usage_error(cmd, "too many --scope options; at most", "32");
      scopes[params.n_scopes++] = optarg;
      break;
    case OPT_ISSUE17_METADATA:
      params.metadata = optarg;
      break;
    default:
      return ctl_getopt_exit(c);
    }
  }
  if (optind < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind]);
  if (params.domain == NULL)
    return ctl_usage_error(cmd, "--domain is required", NULL);
  if (params.label == NULL)
    return ctl_usage_error(cmd, "--label is required", NULL);
  params.scopes = scopes;
  if (has_expires_in && has_expires_at)
    return ctl_usage_error(
        cmd, "--expires-in and --expires-at exclude each other: give one",
        NULL);

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_issue(client, &params, &issued);
  has_prop = rc == 0 && tokend_client_last_propagation(client, &prop);
  if (ctl_end_call(
          "issue", client, rc,
          rc == TOKEND_EPERM
              ? ctl_domain_perm_hint(opts, params.domain, hint, sizeof(hint))
              : NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;

  if (opts->json) {
    rc = ctl_issue_print_json(&issued,
                              has_prop ? ctl_json_propagation(&prop) : NULL);
  } else if (ctl_write_all(STDOUT_FILENO, issued.token, strlen(issued.token)) !=
                 0 ||
             ctl_write_all(STDOUT_FILENO, "\n", 1) != 0) {
    fprintf(stderr, "tokenctl: cannot write to standard output: %s\n",
            strerror(errno));
    rc = CTL_EXIT_ERROR;
  } else {
    rc = CTL_EXIT_OK;
  }
  tokend_client_wipe(&issued);
  if (rc != CTL_EXIT_OK) {
    /* The token exists but nobody has its secret. */
    fprintf(stderr,
            "tokenctl: token %s was issued but its secret is lost; revoke it "
            "with `tokenctl revoke --domain %s %s`\n",
            issued.info.id, issued.info.domain, issued.info.id);
    return rc;
  }
  if (opts->json)
    return CTL_EXIT_OK;

  ctl_fmt_iso(issued.info.created_at, created, sizeof(created));
  ctl_fmt_iso(issued.info.expires_at, expires, sizeof(expires));
  ctl_fmt_user(issued.info.created_by, creator, sizeof(creator));
  fprintf(stderr,
          "id:      %s\n"
          "domain:  %s\n"
          "label:   %s\n"
          "hint:    %s\n"
          "created: %s by %s\n"
          "expires: %s\n"
          "scopes:  ",
          issued.info.id, issued.info.domain, issued.info.label,
          issued.info.hint, created, creator, expires);
  ctl_print_scopes(stderr, issued.info.scopes, issued.info.n_scopes);
  fputs("tokenctl: store the token now: tokend keeps only its hash and will "
        "not show it again\n",
        stderr);
  return CTL_EXIT_OK;
}

/* Cuts buf[0..len) down to its first line without surrounding whitespace,
 * NUL-terminated in place. */
static const char *ctl_trim_line(char *buf, size_t len) {
  char *nl = memchr(buf, '\n', len);
  char *start = buf, *end;

  if (nl != NULL)
    len = (size_t)(nl - buf);
  end = buf + len;
  while (start < end && (*start == ' ' || *start == '\t'))
    start++;
  while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' ||
                         end[-1] == '\n'))
    end--;
  *end = '\0';
  return start;
}

static int ctl_verify_print_json(const tokend_verify_result_t *r) {
  json_t *root;

  root = json_pack("{s:b, s:s}", "valid", r->valid, "reason",
                   tokend_verify_reason_name(r->reason));
  /* The details exist only when tokend knows the token. */
  if (root != NULL && r->token_id[0] != '\0' &&
      json_object_update_new(
          root,
          json_pack("{s:s, s:s, s:s, s:o*, s:o*, s:o*}", "token_id",
                    r->token_id, "domain", r->domain, "label", r->label,
                    "scopes", ctl_json_scopes(r->scopes, r->n_scopes),
                    "expires_at", ctl_json_time(r->expires_at), "metadata",
                    r->metadata[0] != '\0' ? json_loads(r->metadata, 0, NULL)
                                           : json_null())) != 0) {
    json_decref(root);
    root = NULL;
  }
  return ctl_print_json(root);
}

int ctl_verify(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"json", no_argument, NULL, OPT_JSON},
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("verify");
  char buf[CTL_VERIFY_INPUT_BYTES + 1];
  tokend_verify_result_t result;
  tokend_client_t *client = NULL;
  char expires[32];
  const char *token, *nl;
  size_t len = 0;
  int c, rc;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":h", longopts)) != -1)
    return ctl_getopt_exit(c);
  if (optind < argc)
    return ctl_usage_error(cmd,
                           "reads the token from standard input, never from "
                           "the command line (ps and shell history would "
                           "see it)",
                           NULL);
  if (opts->actor != NULL)
    return ctl_usage_error(cmd,
                           "--actor does not apply: a token is valid or not "
                           "whoever asks",
                           NULL);

  rc = ctl_read_token(buf, CTL_VERIFY_INPUT_BYTES, &len);
  if (rc != 0) {
    fprintf(stderr, "tokenctl verify: %s\n",
            rc == TOKEND_EMSGSIZE
                ? "the first line of standard input is too long to be a token"
                : "cannot read standard input");
    rc = CTL_EXIT_ERROR;
    goto wipe_buf;
  }
  /* A NUL inside the line would have us verify only the part before it. */
  nl = memchr(buf, '\n', len);
  if (memchr(buf, '\0', nl != NULL ? (size_t)(nl - buf) : len) != NULL) {
    fputs("tokenctl verify: the token on standard input contains a NUL "
          "byte\n",
          stderr);
    rc = CTL_EXIT_ERROR;
    goto wipe_buf;
  }
  token = ctl_trim_line(buf, len);
  if (token[0] == '\0') {
    fputs("tokenctl verify: no token on standard input (pipe it in: "
          "printf '%s\\n' \"$TOKEN\" | tokenctl verify)\n",
          stderr);
    rc = CTL_EXIT_ERROR;
    goto wipe_buf;
  }

  if (ctl_connect(opts, &client) != 0) {
    rc = CTL_EXIT_ERROR;
    goto wipe_buf;
  }
  rc = tokend_client_verify(client, token, &result);
  if (rc != 0) {
    ctl_report("verify", client, rc,
               rc == TOKEND_EPERM
                   ? "tokend lets only its --verifier-uid / --verifier-group "
                     "verify; ask its operator to add your uid or group"
                   : NULL);
    rc = CTL_EXIT_ERROR;
    goto close_client;
  }
  rc = result.valid ? CTL_EXIT_OK : CTL_EXIT_INVALID;
  if (opts->json) {
    if (ctl_verify_print_json(&result) != CTL_EXIT_OK)
      rc = CTL_EXIT_ERROR;
    goto close_client;
  }
  if (result.valid)
    puts("valid");
  else
    printf("invalid: %s\n", tokend_verify_reason_name(result.reason));
  if (result.token_id[0] != '\0') {
    ctl_fmt_iso(result.expires_at, expires, sizeof(expires));
    printf("id:      %s\n"
           "domain:  %s\n"
           "label:   %s\n"
           "expires: %s\n"
           "scopes:  ",
           result.token_id, result.domain, result.label, expires);
    ctl_print_scopes(stdout, result.scopes, result.n_scopes);
    if (result.metadata[0] != '\0')
      printf("metadata: %s\n", result.metadata);
  }

close_client:
  tokend_client_close(client);
wipe_buf:
  sodium_memzero(buf, sizeof(buf));
  return rc;
}

/* ---- revoke ---- */

int ctl_revoke(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"json", no_argument, NULL, OPT_JSON},
      /* the bulk forms (cmd_bulk.c) */
      {"created-by", required_argument, NULL, OPT_CREATED_BY},
      {"created-before", required_argument, NULL, OPT_CREATED_BEFORE},
      {"all", no_argument, NULL, OPT_ALL},
      {"yes", no_argument, NULL, OPT_YES},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("revoke");
  ctl_bulk_args_t bulk = {.created_by = NULL};
  const char *domain = NULL, *token_id;
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160], when[32];
  tokend_client_t *client;
  int64_t revoked_at = 0;
  int c, rc, already = 0, has_prop;
  tokend_propagation_t prop;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:", longopts)) != -1) {
    switch (c) {
    case 'd':
      domain = optarg;
      break;
    case OPT_CREATED_BY:
      bulk.created_by = optarg;
      break;
    case OPT_CREATED_BEFORE:
      bulk.created_before = optarg;
      break;
    case OPT_ALL:
      bulk.all = 1;
      break;
    case OPT_YES:
      bulk.yes = 1;
      break;
    default:
      return ctl_getopt_exit(c);
    }
  }
  if (domain == NULL)
    return ctl_usage_error(cmd, "--domain is required", NULL);
  if (optind + 1 < argc || bulk.created_by != NULL || bulk.all ||
      bulk.created_before != NULL)
    return ctl_bulk_revoke(cmd, opts, domain, &bulk, argc - optind,
                           argv + optind);
  if (optind >= argc)
    return ctl_usage_error(cmd, "TOKEN_ID is required", NULL);
  if (optind + 1 < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind + 1]);
  token_id = argv[optind];

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_revoke(client, domain, token_id, &revoked_at, &already);
  has_prop = rc == 0 && tokend_client_last_propagation(client, &prop);
  if (rc == TOKEND_EPERM)
    ctl_domain_perm_hint(opts, domain, hint, sizeof(hint));
  else if (rc == TOKEND_ENOTFOUND)
    snprintf(hint, sizeof(hint),
             "`tokenctl list --domain %s --all` shows its tokens", domain);
  if (ctl_end_call("revoke", client, rc,
                   rc == TOKEND_ENOTFOUND || rc == TOKEND_EPERM
                       ? hint
                       : NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;

  if (opts->json)
    return ctl_print_json(json_pack(
        "{s:s, s:s, s:I, s:b, s:o?}", "token_id", token_id, "domain", domain,
        "revoked_at", (json_int_t)revoked_at, "already_revoked", already,
        "propagation", has_prop ? ctl_json_propagation(&prop) : NULL));
  ctl_fmt_iso(revoked_at, when, sizeof(when));
  if (already)
    printf("%s was already revoked at %s\n", token_id, when);
  else
    printf("revoked %s at %s\n", token_id, when);
  return CTL_EXIT_OK;
}

/* ---- list ---- */

enum {
  COL_ID,
  COL_LABEL,
  COL_HINT,
  COL_STATUS,
  COL_SCOPES,
  COL_CREATED,
  COL_CREATED_BY,
  COL_EXPIRES,
  COL_LAST_USED,
  COL_REVOKED, /* this column and the ones after it only with --all */
  COL_REVOKED_BY,
  COL_COUNT
};

_Static_assert(COL_COUNT <= CTL_MAX_COLS, "ctl_print_table() has room");

static const char *const ctl_col_names[COL_COUNT] = {
    "ID",         "LABEL",   "HINT",      "STATUS",  "SCOPES",    "CREATED",
    "CREATED BY", "EXPIRES", "LAST USED", "REVOKED", "REVOKED BY"};

/* A token's scopes for its cell: comma-separated, "-" for none, cut
 * with "..." where the cell is full. */
static void ctl_fmt_scopes(const tokend_token_info_t *t, char *buf,
                           size_t len) {
  size_t i, used = 0;
  int n;

  buf[0] = '\0';
  if (t->n_scopes == 0) {
    snprintf(buf, len, "-");
    return;
  }
  for (i = 0; i < t->n_scopes; i++) {
    n = snprintf(buf + used, len - used, "%s%s", i > 0 ? "," : "",
                 t->scopes[i]);
    if (n < 0 || (size_t)n >= len - used) {
      /* Room for "..." is kept by cutting back to the last full scope. */
      buf[used] = '\0';
      if (used + 4 <= len)
        memcpy(buf + used, "...", 4);
      return;
    }
    used += (size_t)n;
  }
}

static void ctl_token_fill_row(const void *rows, size_t i,
                               char (*cell)[CTL_CELL_BYTES]) {
  const tokend_token_info_t *t = (const tokend_token_info_t *)rows + i;

  snprintf(cell[COL_ID], CTL_CELL_BYTES, "%s", t->id);
  snprintf(cell[COL_LABEL], CTL_CELL_BYTES, "%s", t->label);
  snprintf(cell[COL_HINT], CTL_CELL_BYTES, "%s", t->hint);
  snprintf(cell[COL_STATUS], CTL_CELL_BYTES, "%s%s",
           tokend_token_status_name(t->status),
           t->rolled_to[0] != '\0' ? " (rolled)" : "");
  ctl_fmt_scopes(t, cell[COL_SCOPES], CTL_CELL_BYTES);
  ctl_fmt_short(t->created_at, cell[COL_CREATED], CTL_CELL_BYTES);
  ctl_fmt_user(t->created_by, cell[COL_CREATED_BY], CTL_CELL_BYTES);
  ctl_fmt_short(t->expires_at, cell[COL_EXPIRES], CTL_CELL_BYTES);
  ctl_fmt_short(t->last_used_at, cell[COL_LAST_USED], CTL_CELL_BYTES);
  ctl_fmt_short(t->revoked_at, cell[COL_REVOKED], CTL_CELL_BYTES);
  ctl_fmt_user(t->revoked_by, cell[COL_REVOKED_BY], CTL_CELL_BYTES);
}

static json_t *ctl_json_token_at(const void *rows, size_t i) {
  return ctl_json_info((const tokend_token_info_t *)rows + i);
}

static int ctl_list_print_json(const char *domain,
                               const tokend_token_info_t *tokens, size_t n) {
  /* "o", not "o*": an array that could not be built fails the whole
   * object, which then releases what it took. */
  return ctl_print_json(json_pack("{s:s, s:o}", "domain", domain, "tokens",
                                  ctl_json_rows(tokens, n, ctl_json_token_at)));
}

int ctl_list(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"all", no_argument, NULL, OPT_ALL},
      {"json", no_argument, NULL, OPT_JSON},
      {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
      {"expiring-within", required_argument, NULL, OPT_ISSUE17_EXPIRING},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("list");
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160];
  ctl_pages_t pages = {.size = sizeof(tokend_token_info_t)};
  tokend_token_list_t *page;
  tokend_client_t *client;
  const char *domain = NULL;
  unsigned long long v;
  uint32_t page_size = 0;
  int c, rc, all = 0;
  int64_t expiring_within = 0;
  const char *why;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:", longopts)) != -1) {
    switch (c) {
    case 'd':
      domain = optarg;
      break;
    case OPT_ALL:
      all = 1;
      break;
    case OPT_PAGE_SIZE:
      if (ctl_parse_uint(optarg, TOKEND_LIST_PAGE_MAX, &v) != 0 || v == 0)
        return ctl_usage_error(cmd, "--page-size must be 1 to 1000, not",
                               optarg);
      page_size = (uint32_t)v;
      break;
    case OPT_ISSUE17_EXPIRING:
      if (ctl_parse_duration_ms(optarg, ctl_now_ms(), &expiring_within, &why) !=
          0) {
        fprintf(stderr, "tokenctl list: --expiring-within '%s': %s\n", optarg,
                why);
        return CTL_EXIT_ERROR;
      }
      break;
    default:
      return ctl_getopt_exit(c);
    }
  }
  if (optind < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind]);
  if (domain == NULL)
    return ctl_usage_error(cmd, "--domain is required", NULL);

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  do {
    rc = expiring_within > 0
             ? tokend_client_list_expiring(client, domain, page_size,
                                           pages.page_token, expiring_within,
                                           &page)
             : tokend_client_list(client, domain, page_size, pages.page_token,
                                  all, &page);
    if (rc != 0) {
      ctl_report("list", client, rc,
                 rc == TOKEND_EPERM
                     ? ctl_domain_perm_hint(opts, domain, hint, sizeof(hint))
                     : NULL);
      rc = CTL_EXIT_ERROR;
      break;
    }
    rc = ctl_pages_add(&pages, "list", page->tokens, page->n_tokens,
                       page->next_page_token);
    tokend_token_list_free(page);
  } while (rc == CTL_EXIT_OK && pages.page_token[0] != '\0');
  tokend_client_close(client);
  if (rc != CTL_EXIT_OK)
    goto free_pages;

  if (opts->json) {
    rc = ctl_list_print_json(domain, pages.items, pages.n);
  } else if (pages.n == 0) {
    fprintf(stderr, "tokenctl: no %stokens in domain %s%s\n",
            all ? "" : "active or expired ", domain,
            all ? "" : " (--all includes revoked ones)");
  } else {
    ctl_print_table(ctl_col_names, all ? COL_COUNT : COL_REVOKED, pages.items,
                    pages.n, ctl_token_fill_row);
  }

free_pages:
  free(pages.items);
  return rc;
}
