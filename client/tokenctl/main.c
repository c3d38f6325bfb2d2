/* tokenctl: the admin CLI for tokend.
 *
 *   tokenctl [--socket PATH] [--timeout MS] <command> [options]
 *
 * Exit status: 0 success, 1 `verify` found the token invalid, 2 any error
 * (bad usage, tokend unreachable, tokend refused the call).
 *
 * This file holds the command table, the global options and the dispatch;
 * ctl.h maps the other files. */
#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

#define CTL_TIMEOUT_DEFAULT_MS 10000

static const char ctl_main_usage[] =
    "Usage: tokenctl [--socket PATH] [--timeout MS] [--actor U] <command> "
    "[options]\n"
    "\n"
    "Issues, verifies, revokes and lists tokend's API tokens, manages who may\n"
    "do so, and reads the audit log.\n"
    "\n"
    "Commands:\n"
    "  issue    issue a new token; its secret is shown this once\n"
    "  verify   check a token read from standard input\n"
    "  revoke   revoke a token by its id\n"
    "  list     list a domain's tokens\n"
    "  admins   grant, revoke and list a domain's admins (operators)\n"
    "  audit    show the audit log\n"
    "  whoami   show how tokend sees you\n"
    "  status   show how tokend is doing (current with its store?)\n"
    "  backup   write a consistent copy of tokend's database to a file\n"
    "  policy   show or set a domain's policy (lifetime, scopes, count)\n"
    "  revoke-leaked  revoke secrets found in public, read from stdin\n"
    "  help     show a command's help\n"
    "  show     show one token without using it (by id, or secret on stdin)\n"
    "  edit     change a token's label, metadata, expiry or scopes\n"
    "  roll     replace a token with a new one; the old one expires later\n"
    "\n"
    "Options:\n" CTL_ACTOR_HELP CTL_COMMON_HELP
    "      --version           show tokenctl's version and exit\n"
    "\n"
    "Run `tokenctl <command> --help` for a command's options.\n"
    "Exit status: 0 success, 1 `verify` found the token invalid, 2 error.\n";

static const char ctl_help_usage[] =
    "Usage: tokenctl help [COMMAND [SUBCOMMAND]]\n";

static int ctl_help(ctl_opts_t *opts, int argc, char **argv);

static const ctl_command_t ctl_commands[] = {
    {"issue", ctl_issue, ctl_issue_usage},
    {"verify", ctl_verify, ctl_verify_usage},
    {"revoke", ctl_revoke, ctl_revoke_usage},
    {"list", ctl_list, ctl_list_usage},
    {"admins", ctl_admins, ctl_admins_usage},
    {"audit", ctl_audit, ctl_audit_usage},
    {"whoami", ctl_whoami, ctl_whoami_usage},
    {"status", ctl_status, ctl_status_usage},
    {"backup", ctl_backup, ctl_backup_usage},
    {"help", ctl_help, ctl_help_usage},
    {"show", ctl_show, ctl_show_usage},
    {"edit", ctl_edit, ctl_edit_usage},
    {"roll", ctl_roll, ctl_roll_usage},
    /* issue 17 */
    {"policy", ctl_policy, ctl_policy_usage},
    {"revoke-leaked", ctl_revoke_leaked, ctl_revoke_leaked_usage},
};

static const ctl_command_t ctl_main = {"", NULL, ctl_main_usage};

#define CTL_N_COMMANDS (sizeof(ctl_commands) / sizeof(ctl_commands[0]))

const ctl_command_t *ctl_find_command(const char *name) {
  size_t i;

  for (i = 0; i < CTL_N_COMMANDS; i++)
    if (strcmp(ctl_commands[i].name, name) == 0)
      return &ctl_commands[i];
  return NULL;
}

/* "unknown command", with the closest name in the table. */
static int ctl_unknown_top_command(const char *given) {
  const char *names[CTL_N_COMMANDS];
  size_t i;

  for (i = 0; i < CTL_N_COMMANDS; i++)
    names[i] = ctl_commands[i].name;
  return ctl_unknown_command(&ctl_main, "command", given, names,
                             CTL_N_COMMANDS);
}

static int ctl_help(ctl_opts_t *opts, int argc, char **argv) {
  const ctl_command_t *cmd;

  if (argc < 2) {
    fputs(ctl_main_usage, stdout);
    return CTL_EXIT_OK;
  }
  cmd = ctl_find_command(argv[1]);
  if (cmd == NULL)
    return ctl_unknown_top_command(argv[1]);
  if (argc >= 3 && cmd->run == ctl_admins) {
    cmd = ctl_find_admins_command(argv[2]);
    if (cmd == NULL)
      return ctl_unknown_admins_command(argv[2]);
  }
  fputs(cmd->usage, stdout);
  return CTL_EXIT_OK;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {"version", no_argument, NULL, OPT_VERSION},
      {NULL, 0, NULL, 0}};
  ctl_opts_t opts = {NULL, CTL_TIMEOUT_DEFAULT_MS, NULL, 0, 0};
  const ctl_command_t *cmd;
  int c, rc;

  /* A closed stdout must give an error we can report (the token may be
   * lost), not a silent death. */
  signal(SIGPIPE, SIG_IGN);
  /* wcwidth() needs a UTF-8 LC_CTYPE to measure labels, whatever the user's
   * locale; glibc always has C.UTF-8. Nothing else here is locale-aware. */
  setlocale(LC_CTYPE, "C.UTF-8");
  opterr = 0;
  /* "+": stop at the command name; its options are parsed by the command. */
  while ((c = ctl_getopt(&ctl_main, &opts, argc, argv, "+:h", longopts)) !=
         -1) {
    if (c == OPT_VERSION) {
      printf("tokenctl %s\n", TOKEND_VERSION);
      return CTL_EXIT_OK;
    }
    return ctl_getopt_exit(c);
  }
  if (optind >= argc)
    return ctl_usage_error(&ctl_main, "missing command", NULL);
  cmd = ctl_find_command(argv[optind]);
  if (cmd == NULL)
    return ctl_unknown_top_command(argv[optind]);
  argc -= optind;
  argv += optind;
  /* 0 makes glibc's getopt start over, at argv[1] of the command's argv. */
  optind = 0;
  rc = cmd->run(&opts, argc, argv);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "tokenctl: cannot write to standard output: %s\n",
            strerror(errno));
    return CTL_EXIT_ERROR;
  }
  return rc;
}
