/* tokend-admin: the operator's offline tool for tokend's stores. It works
 * on stores directly, through server/store/store.h, never through a running
 * tokend (tokenctl is the tool for that).
 *
 *   tokend-admin <command> [options]
 *
 * Exit status: 0 success, 1 the command refused or failed, 2 bad usage. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "admin/copy.h"

static const char admin_usage[] =
    "Usage: tokend-admin <command> [options]\n"
    "\n"
    "The operator's offline tool for tokend's stores (tokenctl talks to a\n"
    "running tokend; tokend-admin reads and writes stores themselves).\n"
    "\n"
    "Commands:\n"
    "  copy     copy a store (an SQLite file) into a new, empty one\n"
    "           (PostgreSQL): moving from one host to many\n"
    "  help     show a command's help\n"
    "\n"
    "Run `tokend-admin <command> --help` for a command's options.\n"
    "Exit status: 0 success, 1 refused or failed, 2 bad usage.\n";

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv, FILE *out, FILE *err);
  const char *usage;
} admin_command_t;

static const admin_command_t admin_commands[] = {
    {"copy", admin_copy, admin_copy_usage},
};

static const admin_command_t *admin_find(const char *name) {
  size_t i;

  for (i = 0; i < sizeof(admin_commands) / sizeof(admin_commands[0]); i++)
    if (strcmp(admin_commands[i].name, name) == 0)
      return &admin_commands[i];
  return NULL;
}

int main(int argc, char **argv) {
  const admin_command_t *cmd;

  /* A lost server connection must be an error to report, not a signal. */
  signal(SIGPIPE, SIG_IGN);
  /* A store file the tool creates is for tokend's user alone. */
  umask(0077);
  if (argc < 2) {
    fputs(admin_usage, stderr);
    return ADMIN_EXIT_USAGE;
  }
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    fputs(admin_usage, stdout);
    return ADMIN_EXIT_OK;
  }
  if (strcmp(argv[1], "help") == 0) {
    if (argc < 3) {
      fputs(admin_usage, stdout);
      return ADMIN_EXIT_OK;
    }
    if ((cmd = admin_find(argv[2])) == NULL) {
      fprintf(stderr, "tokend-admin: unknown command '%s'\n", argv[2]);
      fputs(admin_usage, stderr);
      return ADMIN_EXIT_USAGE;
    }
    fputs(cmd->usage, stdout);
    return ADMIN_EXIT_OK;
  }
  if ((cmd = admin_find(argv[1])) == NULL) {
    fprintf(stderr, "tokend-admin: unknown command '%s'\n", argv[1]);
    fputs(admin_usage, stderr);
    return ADMIN_EXIT_USAGE;
  }
  return cmd->run(argc - 1, argv + 1, stdout, stderr);
}
