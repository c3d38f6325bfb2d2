/* tokenctl admins grant, revoke and list: who may manage a domain's
 * tokens (operators only). */
#include <stdio.h>
#include <string.h>

#include "call.h"
#include "ctl.h"
#include "json.h"
#include "table.h"
#include "user.h"

const char ctl_admins_usage[] =
    "Usage: tokenctl admins grant  --domain D --user U [--json]\n"
    "       tokenctl admins revoke --domain D --user U [--revoke-tokens] "
    "[--json]\n"
    "       tokenctl admins list   --domain D [--json]\n"
    "\n"
    "A domain's admins may issue, list and revoke its tokens and read its\n"
    "audit log. Only operators (root, tokend's own user, and tokend's\n"
    "--operator-uid / --operator-group) may manage them.\n"
    "\n"
    "A user U is a local user name (sent as uid:<n>), a uid number N or\n"
    "uid:N (sent as uid:N), or a platform identity sent as given (1-128\n"
    "characters of A-Z a-z 0-9 . _ @ : + -), which must contain @\n"
    "(alice@example.com) unless --identity is given. A name that is neither\n"
    "a local user nor has @ is an error, so a mistyped user name is never\n"
    "granted as an identity. The answer says which form was used.\n"
    "\n"
    "Run `tokenctl admins <grant|revoke|list> --help` for each one's "
    "options.\n";

static const char ctl_admins_grant_usage[] =
    "Usage: tokenctl admins grant --domain D --user U [--json]\n"
    "\n"
    "Makes U an admin of domain D (operators only). Granting an admin again\n"
    "is not an error: it reports when U was first granted.\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain (required)\n"
    "  -u, --user U             a local user name, a uid, or a platform\n"
    "                           identity with @ (required)\n"
    "      --identity           U is a platform identity even without @\n"
    "      --json               print one JSON object on standard output\n"
    "                           (times in Unix ms)\n" CTL_COMMON_HELP "\n"
    "Examples:\n"
    "  tokenctl admins grant --domain example.com --user alice   # uid:1000\n"
    "  tokenctl admins grant --domain example.com --user "
    "bob@example.com\n";

static const char ctl_admins_revoke_usage[] =
    "Usage: tokenctl admins revoke --domain D --user U [--revoke-tokens] "
    "[--json]\n"
    "\n"
    "Removes U from domain D's admins (operators only). Tokens U issued stay\n"
    "valid unless --revoke-tokens is given.\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain (required)\n"
    "  -u, --user U             as in `admins grant` (required)\n"
    "      --identity           U is a platform identity even without @\n"
    "      --revoke-tokens      also revoke every token U issued in D, in the\n"
    "                           same transaction\n"
    "      --json               print one JSON object on standard "
    "output\n" CTL_COMMON_HELP "\n"
    "Example:\n"
    "  tokenctl admins revoke --domain example.com --user alice "
    "--revoke-tokens\n";

static const char ctl_admins_list_usage[] =
    "Usage: tokenctl admins list --domain D [--json]\n"
    "\n"
    "Lists domain D's admins, who granted them and when (operators only).\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain (required)\n"
    "      --json               print one JSON object {\"domain\": ...,\n"
    "                           \"admins\": [...]} on standard output (times\n"
    "                           in Unix ms)\n" CTL_COMMON_HELP;

static int ctl_admins_grant(ctl_opts_t *opts, int argc, char **argv);
static int ctl_admins_revoke(ctl_opts_t *opts, int argc, char **argv);
static int ctl_admins_list(ctl_opts_t *opts, int argc, char **argv);

/* `admins` subcommands; their names are what messages print after
 * "tokenctl ". */
static const ctl_command_t ctl_admins_commands[] = {
    {"admins grant", ctl_admins_grant, ctl_admins_grant_usage},
    {"admins revoke", ctl_admins_revoke, ctl_admins_revoke_usage},
    {"admins list", ctl_admins_list, ctl_admins_list_usage},
};

const ctl_command_t *ctl_find_admins_command(const char *name) {
  size_t i;

  for (i = 0; i < sizeof(ctl_admins_commands) / sizeof(ctl_admins_commands[0]);
       i++)
    if (strcmp(ctl_admins_commands[i].name, name) == 0 ||
        strcmp(ctl_admins_commands[i].name + strlen("admins "), name) == 0)
      return &ctl_admins_commands[i];
  return NULL;
}

int ctl_unknown_admins_command(const char *given) {
  static const char *const names[] = {"grant", "revoke", "list"};

  return ctl_unknown_command(ctl_find_command("admins"), "subcommand", given,
                             names, sizeof(names) / sizeof(names[0]));
}

static const char ctl_operator_hint[] =
    "only operators manage domain admins: root, tokend's own user, and its "
    "--operator-uid / --operator-group; `tokenctl whoami` says whether you "
    "are one";

int ctl_admins(ctl_opts_t *opts, int argc, char **argv) {
  const ctl_command_t *cmd = ctl_find_command("admins"), *sub;

  if (argc < 2)
    return ctl_usage_error(cmd, "missing subcommand (grant, revoke or list)",
                           NULL);
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(cmd->usage, stdout);
    return CTL_EXIT_OK;
  }
  sub = ctl_find_admins_command(argv[1]);
  if (sub == NULL)
    return ctl_unknown_admins_command(argv[1]);
  /* Managing admins is the operator's own act: there is nobody to act
   * for. */
  if (opts->actor != NULL)
    return ctl_usage_error(sub,
                           "--actor does not apply: operators manage admins "
                           "as themselves",
                           NULL);
  optind = 0;
  return sub->run(opts, argc - 1, argv + 1);
}

/* Parses the options grant and revoke share. Returns -1 to go on, else the
 * exit status. */
static int ctl_admins_parse(const ctl_command_t *cmd, ctl_opts_t *opts,
                            int argc, char **argv, const char **domain,
                            char user[TOKEND_USER_BYTES], ctl_user_form_t *form,
                            int *revoke_tokens) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"user", required_argument, NULL, 'u'},
      {"revoke-tokens", no_argument, NULL, OPT_REVOKE_TOKENS},
      {"identity", no_argument, NULL, OPT_IDENTITY},
      {"json", no_argument, NULL, OPT_JSON},
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  char why[TOKEND_USER_BYTES + 128];
  const char *given = NULL;
  int c;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:u:", longopts)) != -1) {
    switch (c) {
    case 'd':
      *domain = optarg;
      break;
    case 'u':
      given = optarg;
      break;
    case OPT_REVOKE_TOKENS:
      /* Only revoke has it. */
      if (revoke_tokens == NULL)
        return ctl_usage_error(cmd, "unknown option", "--revoke-tokens");
      *revoke_tokens = 1;
      break;
    default:
      return ctl_getopt_exit(c);
    }
  }
  if (optind < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind]);
  if (*domain == NULL)
    return ctl_usage_error(cmd, "--domain is required", NULL);
  if (given == NULL)
    return ctl_usage_error(cmd, "--user is required", NULL);
  if (ctl_resolve_user(given, opts->identity, user, form, why, sizeof(why)) !=
      0)
    return ctl_usage_error(cmd, "--user:", why);
  return -1;
}

static int ctl_admins_grant(ctl_opts_t *opts, int argc, char **argv) {
  const ctl_command_t *cmd = ctl_find_admins_command("grant");
  char user[TOKEND_USER_BYTES], shown[TOKEND_USER_BYTES + 64], when[32];
  tokend_client_t *client;
  const char *domain = NULL;
  int64_t granted_at = 0;
  ctl_user_form_t form;
  int rc, already = 0;

  rc = ctl_admins_parse(cmd, opts, argc, argv, &domain, user, &form, NULL);
  if (rc >= 0)
    return rc;
  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_grant_admin(client, domain, user, &granted_at, &already);
  if (ctl_end_call("admins grant", client, rc,
                   rc == TOKEND_EPERM ? ctl_operator_hint : NULL) !=
      CTL_EXIT_OK)
    return CTL_EXIT_ERROR;

  if (opts->json)
    return ctl_print_json(
        json_pack("{s:s, s:s, s:s, s:I, s:b}", "domain", domain, "user", user,
                  "user_form", ctl_user_form_name(form), "granted_at",
                  (json_int_t)granted_at, "already_admin", already));
  ctl_describe_user(user, form, shown, sizeof(shown));
  ctl_fmt_iso(granted_at, when, sizeof(when));
  if (already)
    printf("%s was already an admin of %s (since %s)\n", shown, domain, when);
  else
    printf("granted %s admin of %s\n", shown, domain);
  return CTL_EXIT_OK;
}

/* How many of domain's active tokens user created, counted from List's
 * pages (List has no creator filter). Returns 0 or a negative code (then
 * the count is unknown and nothing is said). */
static int ctl_count_active_by(const ctl_opts_t *opts, const char *domain,
                               const char *user, uint64_t *count) {
  char page_token[TOKEND_PAGE_TOKEN_BYTES] = "";
  tokend_token_list_t *page;
  tokend_client_t *client;
  size_t i;
  int rc;

  *count = 0;
  rc = tokend_client_connect(opts->socket_path, opts->timeout_ms, &client);
  if (rc != 0)
    return rc;
  do {
    rc = tokend_client_list(client, domain, TOKEND_LIST_PAGE_MAX, page_token, 0,
                            &page);
    if (rc != 0)
      break;
    for (i = 0; i < page->n_tokens; i++)
      if (page->tokens[i].status == TOKEND_TOKEN_ACTIVE &&
          strcmp(page->tokens[i].created_by, user) == 0)
        (*count)++;
    /* A page that does not advance would loop forever. */
    if (page->next_page_token[0] != '\0' &&
        strcmp(page->next_page_token, page_token) == 0)
      rc = TOKEND_EPROTO;
    memcpy(page_token, page->next_page_token, sizeof(page_token));
    tokend_token_list_free(page);
  } while (rc == 0 && page_token[0] != '\0');
  tokend_client_close(client);
  return rc;
}

static int ctl_admins_revoke(ctl_opts_t *opts, int argc, char **argv) {
  const ctl_command_t *cmd = ctl_find_admins_command("revoke");
  char user[TOKEND_USER_BYTES], shown[TOKEND_USER_BYTES + 64];
  char hint[TOKEND_DOMAIN_BYTES + 64];
  tokend_client_t *client;
  const char *domain = NULL;
  uint32_t revoked = 0;
  uint64_t left = 0;
  ctl_user_form_t form;
  int rc, revoke_tokens = 0, counted = 0;

  rc = ctl_admins_parse(cmd, opts, argc, argv, &domain, user, &form,
                        &revoke_tokens);
  if (rc >= 0)
    return rc;
  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc =
      tokend_client_revoke_admin(client, domain, user, revoke_tokens, &revoked);
  if (rc == TOKEND_ENOTFOUND)
    snprintf(hint, sizeof(hint),
             "`tokenctl admins list --domain %s` shows its admins", domain);
  if (ctl_end_call("admins revoke", client, rc,
                   rc == TOKEND_EPERM       ? ctl_operator_hint
                   : rc == TOKEND_ENOTFOUND ? hint
                                            : NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;

  ctl_describe_user(user, form, shown, sizeof(shown));
  /* Without --revoke-tokens the tokens U issued stay valid: say so, with
   * how many, since removing an admin is often meant to cut them off. */
  if (!revoke_tokens && ctl_count_active_by(opts, domain, user, &left) == 0) {
    counted = 1;
    if (left > 0)
      fprintf(stderr,
              "tokenctl admins revoke: warning: %llu token%s %s issued in %s "
              "%s still active; `tokenctl revoke --domain %s --created-by "
              "%s` revokes them (next time, --revoke-tokens does it in the "
              "same transaction)\n",
              (unsigned long long)left, left == 1 ? "" : "s", shown, domain,
              left == 1 ? "is" : "are", domain, user);
  }

  if (opts->json) {
    json_t *root = json_pack("{s:s, s:s, s:s, s:I}", "domain", domain, "user",
                             user, "user_form", ctl_user_form_name(form),
                             "tokens_revoked", (json_int_t)revoked);

    /* Added, not changed: scripts read the keys above. */
    if (root != NULL && counted &&
        json_object_set_new(root, "tokens_still_active",
                            json_integer((json_int_t)left)) != 0) {
      json_decref(root);
      root = NULL;
    }
    return ctl_print_json(root);
  }
  printf("removed %s from the admins of %s", shown, domain);
  if (revoke_tokens)
    printf("; revoked %lu of their tokens", (unsigned long)revoked);
  fputc('\n', stdout);
  return CTL_EXIT_OK;
}

static const char *const ctl_admin_col_names[] = {"USER", "GRANTED",
                                                  "GRANTED BY"};

static void ctl_admin_fill_row(const void *rows, size_t i,
                               char (*cell)[CTL_CELL_BYTES]) {
  const tokend_admin_t *a = (const tokend_admin_t *)rows + i;

  ctl_fmt_user(a->user, cell[0], CTL_CELL_BYTES);
  ctl_fmt_short(a->granted_at, cell[1], CTL_CELL_BYTES);
  ctl_fmt_user(a->granted_by, cell[2], CTL_CELL_BYTES);
}

static json_t *ctl_json_admin_at(const void *rows, size_t i) {
  const tokend_admin_t *a = (const tokend_admin_t *)rows + i;

  return json_pack("{s:s, s:o*, s:o*}", "user", a->user, "granted_at",
                   ctl_json_time(a->granted_at), "granted_by",
                   ctl_json_text(a->granted_by));
}

static int ctl_admins_list_print_json(const char *domain,
                                      const tokend_admin_list_t *list) {
  /* "o", not "o*": an array that could not be built fails the whole
   * object, which then releases what it took. */
  return ctl_print_json(json_pack(
      "{s:s, s:o}", "domain", domain, "admins",
      ctl_json_rows(list->admins, list->n_admins, ctl_json_admin_at)));
}

static int ctl_admins_list(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"json", no_argument, NULL, OPT_JSON},
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_admins_command("list");
  tokend_admin_list_t *list = NULL;
  tokend_client_t *client;
  const char *domain = NULL;
  int c, rc;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:", longopts)) != -1) {
    switch (c) {
    case 'd':
      domain = optarg;
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
  rc = tokend_client_list_admins(client, domain, &list);
  if (ctl_end_call("admins list", client, rc,
                   rc == TOKEND_EPERM ? ctl_operator_hint : NULL) !=
      CTL_EXIT_OK)
    return CTL_EXIT_ERROR;

  if (opts->json) {
    rc = ctl_admins_list_print_json(domain, list);
  } else if (list->n_admins == 0) {
    fprintf(stderr,
            "tokenctl: domain %s has no admins (add one with `tokenctl admins "
            "grant --domain %s --user U`)\n",
            domain, domain);
    rc = CTL_EXIT_OK;
  } else {
    ctl_print_table(ctl_admin_col_names, 3, list->admins, list->n_admins,
                    ctl_admin_fill_row);
    rc = CTL_EXIT_OK;
  }
  tokend_admin_list_free(list);
  return rc;
}
