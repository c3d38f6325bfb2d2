/* tokenctl whoami: how tokend sees this process. */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/types.h>

#include "call.h"
#include "ctl.h"
#include "json.h"
#include "user.h"

const char ctl_whoami_usage[] =
    "Usage: tokenctl whoami [--json] [--actor U]\n"
    "\n"
    "Shows how tokend sees this process: its uid and gid (with their names\n"
    "where this system knows them), its pid, the user tokend acts for,\n"
    "and whether it is an operator and a verifier.\n"
    "\n"
    "Options:\n"
    "      --json               print one JSON object on standard "
    "output\n" CTL_ACTOR_HELP CTL_COMMON_HELP;

int ctl_whoami(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"json", no_argument, NULL, OPT_JSON},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("whoami");
  char user[TOKEND_USER_BYTES + 64];
  const char *uid_name, *gid_name;
  tokend_client_t *client;
  tokend_whoami_t who;
  struct passwd *pw;
  struct group *gr;
  int c, rc;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":h", longopts)) != -1)
    return ctl_getopt_exit(c);
  if (optind < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind]);

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_whoami(client, &who);
  if (ctl_end_call("whoami", client, rc,
                   rc == TOKEND_EPERM && opts->actor != NULL
                       ? "only operators may use --actor"
                       : NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;

  /* The names are this system's: tokend knows only the numbers. */
  pw = getpwuid((uid_t)who.uid);
  uid_name = pw != NULL ? pw->pw_name : NULL;
  gr = getgrgid((gid_t)who.gid);
  gid_name = gr != NULL ? gr->gr_name : NULL;
  if (opts->json)
    return ctl_print_json(json_pack(
        "{s:I, s:s?, s:I, s:s?, s:I, s:s, s:b, s:b}", "uid",
        (json_int_t)who.uid, "uid_name", uid_name, "gid", (json_int_t)who.gid,
        "gid_name", gid_name, "pid", (json_int_t)who.pid, "user", who.user,
        "operator", who.is_operator, "verifier", who.is_verifier));
  ctl_fmt_user(who.user, user, sizeof(user));
  printf("uid:      %lu%s%s%s\n", (unsigned long)who.uid,
         uid_name != NULL ? " (" : "", uid_name != NULL ? uid_name : "",
         uid_name != NULL ? ")" : "");
  printf("gid:      %lu%s%s%s\n", (unsigned long)who.gid,
         gid_name != NULL ? " (" : "", gid_name != NULL ? gid_name : "",
         gid_name != NULL ? ")" : "");
  printf("pid:      %ld\n", (long)who.pid);
  printf("user:     %s\n", user);
  printf("operator: %s\n", who.is_operator ? "yes" : "no");
  printf("verifier: %s\n", who.is_verifier ? "yes" : "no");
  return CTL_EXIT_OK;
}
