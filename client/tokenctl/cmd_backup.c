/* tokenctl backup: a consistent online copy of tokend's store (Backup). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "call.h"
#include "ctl.h"
#include "json.h"

const char ctl_backup_usage[] =
    "Usage: tokenctl backup --to FILE [--json]\n"
    "\n"
    "Operators only. Has tokend write a consistent copy of its database,\n"
    "as it is at one moment, into the new file FILE (SQLite's online\n"
    "backup: writes wait for it, Verify does not). tokend creates FILE as\n"
    "its own user, mode 0600, and never replaces an existing file. The\n"
    "pepper file is not in the copy: keep it with it (tokenctl names it),\n"
    "or no token in the copy verifies. To restore: put the copy and the\n"
    "pepper where --db and --pepper-file point, and start tokend.\n"
    "A PostgreSQL store is backed up with PostgreSQL's tools (pg_dump).\n"
    "\n"
    "Options:\n"
    "      --to FILE            the new file (relative to this directory)\n"
    "      --json               print one JSON object on standard "
    "output\n" CTL_COMMON_HELP;

int ctl_backup(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"to", required_argument, NULL, OPT_TO},
      {"json", no_argument, NULL, OPT_JSON},
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("backup");
  char path[PATH_MAX], cwd[PATH_MAX];
  const char *to = NULL;
  tokend_backup_t b;
  tokend_client_t *client;
  int c, rc;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":h", longopts)) != -1) {
    if (c == OPT_TO) {
      to = optarg;
      continue;
    }
    return ctl_getopt_exit(c);
  }
  if (optind < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind]);
  if (to == NULL || to[0] == '\0')
    return ctl_usage_error(cmd, "missing --to FILE", NULL);
  /* tokend creates the file from its own working directory. */
  if (to[0] == '/') {
    rc = snprintf(path, sizeof(path), "%s", to);
  } else if (getcwd(cwd, sizeof(cwd)) == NULL) {
    fprintf(stderr, "tokenctl backup: cannot tell this directory: %s\n",
            strerror(errno));
    return CTL_EXIT_ERROR;
  } else {
    rc = snprintf(path, sizeof(path), "%s/%s", cwd, to);
  }
  if (rc < 0 || (size_t)rc >= sizeof(path))
    return ctl_usage_error(cmd, "path too long:", to);

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_backup(client, path, &b);
  if (ctl_end_call("backup", client, rc, NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;
  if (opts->json)
    return ctl_print_json(json_pack("{s:s, s:I, s:s}", "path", path, "bytes",
                                    (json_int_t)b.bytes, "pepper_file",
                                    b.pepper_file));
  printf("backup written to %s (%lld bytes)\n", path, (long long)b.bytes);
  printf("keep the pepper file %s with it: the copy does not hold it, and\n"
         "without it no token in the copy verifies\n",
         b.pepper_file);
  return CTL_EXIT_OK;
}
