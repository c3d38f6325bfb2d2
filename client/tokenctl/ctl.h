/* tokenctl's shared core: exit statuses, the options every command shares,
 * the command table's shape, and the option parsing on top of getopt_long.
 *
 * tokenctl is built on the public client library (<tokend/client.h>) and
 * common/'s limits alone. Its files, one concern each:
 *   main.c        the command table, global options, dispatch, exit status
 *   opts.c        option parsing shared by the commands (this header)
 *   call.c        talking to tokend: connecting, reporting failures, paging
 *   user.c        users on the command line: local names, uids, identities
 *   table.c       output for people: times, tables, safe text
 *   json.c        --json output, with jansson
 *   tty.c         standard input and output that must not keep a secret
 *   cmd_tokens.c  issue, verify, revoke, list
 *   cmd_admins.c  admins grant / revoke / list
 *   cmd_audit.c   audit, audit --verify
 *   cmd_whoami.c  whoami
 *   cmd_status.c  status
 *   cmd_lifecycle.c  show, edit, roll (issue 17)
 * A new command is a cmd_*.c with its usage and run function, declared
 * below and listed in main.c's table. */
#ifndef TOKENCTL_CTL_H
#define TOKENCTL_CTL_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include <tokend/client.h>

/* TOKEND_SOCKET_DEFAULT and TOKEND_SOCKET_ENV, which the help and the
 * messages name. */
#include "tokend_limits.h"

#define CTL_EXIT_OK 0
#define CTL_EXIT_INVALID 1
#define CTL_EXIT_ERROR 2

/* ctl_getopt() results besides option characters. */
#define CTL_GETOPT_HELP (-2)
#define CTL_GETOPT_BAD (-3)

/* Long-only options. */
enum {
  OPT_SOCKET = 256,
  OPT_TIMEOUT,
  OPT_SCOPE,
  OPT_JSON,
  OPT_ALL,
  OPT_PAGE_SIZE,
  OPT_ACTOR,
  OPT_REVOKE_TOKENS,
  OPT_SINCE,
  OPT_IDENTITY,
  OPT_VERIFY,
  OPT_ANCHOR,
  OPT_VERSION,
  OPT_TO,
  OPT_EXPIRES_AT,
  /* issue 17 */
  OPT_ISSUE17_METADATA,
  OPT_ISSUE17_EXPIRING
};

#define CTL_COMMON_LONGOPTS                                                    \
  {"socket", required_argument, NULL, OPT_SOCKET},                             \
      {"timeout", required_argument, NULL, OPT_TIMEOUT}, {                     \
    "help", no_argument, NULL, 'h'                                             \
  }

#define CTL_COMMON_HELP                                                        \
  "      --socket PATH       tokend's socket (default: $TOKEND_SOCKET, else\n" \
  "                          " TOKEND_SOCKET_DEFAULT ")\n"                     \
  "      --timeout MS        give up after MS milliseconds (default 10000;\n"  \
  "                          0: wait forever)\n"                               \
  "  -h, --help              show this help\n"

/* --actor: on the commands an operator runs for a user, and before the
 * command name. */
#define CTL_ACTOR_LONGOPT                                                      \
  {"actor", required_argument, NULL, OPT_ACTOR}, {                             \
    "identity", no_argument, NULL, OPT_IDENTITY                                \
  }

#define CTL_ACTOR_HELP                                                         \
  "      --actor U           operators only: act for user U, who must be an\n" \
  "                          admin of the domain (U as in `admins grant\n"     \
  "                          --user`); without it an operator acts as\n"       \
  "                          break-glass (audited)\n"                          \
  "      --identity          U is a platform identity, sent as given, even\n"  \
  "                          without @\n"

typedef struct {
  const char *socket_path; /* NULL: $TOKEND_SOCKET, else the default */
  int timeout_ms;
  const char *actor; /* --actor as given; NULL: act as ourselves */
  int json;          /* --json, on the commands that take it */
  int identity;      /* --identity: --user and --actor are identities */
} ctl_opts_t;

/* One command: its name as messages print it after "tokenctl ", what runs
 * it (argv[0] is the command's name; returns the exit status) and its
 * --help text. */
typedef struct {
  const char *name;
  int (*run)(ctl_opts_t *opts, int argc, char **argv);
  const char *usage;
} ctl_command_t;

/* ---- the commands (cmd_*.c), each with its --help text ---- */

extern const char ctl_issue_usage[];
extern const char ctl_verify_usage[];
extern const char ctl_revoke_usage[];
extern const char ctl_list_usage[];
extern const char ctl_admins_usage[];
extern const char ctl_audit_usage[];
extern const char ctl_whoami_usage[];
extern const char ctl_status_usage[];
extern const char ctl_backup_usage[];

int ctl_issue(ctl_opts_t *opts, int argc, char **argv);
int ctl_verify(ctl_opts_t *opts, int argc, char **argv);
int ctl_revoke(ctl_opts_t *opts, int argc, char **argv);
int ctl_list(ctl_opts_t *opts, int argc, char **argv);
/* Runs the `admins` subcommand argv[1] names. */
int ctl_admins(ctl_opts_t *opts, int argc, char **argv);
int ctl_audit(ctl_opts_t *opts, int argc, char **argv);
int ctl_whoami(ctl_opts_t *opts, int argc, char **argv);
int ctl_status(ctl_opts_t *opts, int argc, char **argv);
int ctl_backup(ctl_opts_t *opts, int argc, char **argv);

/* issue 17 (cmd_lifecycle.c): show, edit, roll. */
extern const char ctl_show_usage[];
extern const char ctl_edit_usage[];
extern const char ctl_roll_usage[];
int ctl_show(ctl_opts_t *opts, int argc, char **argv);
int ctl_edit(ctl_opts_t *opts, int argc, char **argv);
int ctl_roll(ctl_opts_t *opts, int argc, char **argv);

/* ---- issue 17: revocation in bulk (cmd_bulk.c) ---- */

/* Long-only options of the bulk forms of `revoke` (numbered apart from
 * the enum above, which other commands extend). */
enum {
  OPT_CREATED_BY = 400,
  OPT_CREATED_BEFORE,
  OPT_YES,
  OPT_MAX_LIFETIME,
  OPT_REQUIRE_EXPIRY,
  OPT_ALLOWED_SCOPES,
  OPT_MAX_ACTIVE,
  OPT_SOURCE
};

/* The bulk selectors `revoke` parsed (NULL / 0: not given). */
typedef struct {
  const char *created_by;
  const char *created_before; /* as given: a date or Unix ms */
  int all;
  int yes; /* --yes: do not ask */
} ctl_bulk_args_t;

/* `revoke` with several TOKEN_IDs (ids[0..n_ids)) or one of args'
 * selectors: checks there is one selection, asks on a terminal unless
 * args->yes (refusing anywhere else), calls BulkRevoke and prints how many
 * were revoked. Returns the exit status. */
int ctl_bulk_revoke(const ctl_command_t *cmd, ctl_opts_t *opts,
                    const char *domain, const ctl_bulk_args_t *args, int n_ids,
                    char **ids);

/* tokenctl revoke-leaked (cmd_bulk.c): secrets on stdin, RevokeLeaked. */
extern const char ctl_revoke_leaked_usage[];
int ctl_revoke_leaked(ctl_opts_t *opts, int argc, char **argv);

/* tokenctl policy show / set (cmd_policy.c). */
extern const char ctl_policy_usage[];
int ctl_policy(ctl_opts_t *opts, int argc, char **argv);

/* The command called name (main.c's table), or NULL. */
const ctl_command_t *ctl_find_command(const char *name);
/* An `admins` subcommand by its own name ("grant") or full name ("admins
 * grant"), or NULL. */
const ctl_command_t *ctl_find_admins_command(const char *name);
/* "unknown subcommand" for `admins <given>`, with the closest one (see
 * ctl_unknown_command). Returns CTL_EXIT_ERROR. */
int ctl_unknown_admins_command(const char *given);

/* ---- option parsing (opts.c) ---- */

/* Parses a whole decimal number in [0, max]: no sign, no spaces. Returns 0
 * or TOKEND_EINVAL. */
int ctl_parse_uint(const char *s, unsigned long long max,
                   unsigned long long *out);

/* The longest duration any flag takes: 10 years, leap days included.
 * Longer is a typo (an extra digit) far more often than an intent. */
#define CTL_DURATION_MAX_MS (3653ULL * 86400 * 1000)

/* A duration -> milliseconds: one or more terms of a whole number and a
 * unit ms, s, m, h, d or w ("90s", "500ms", "1h30m", "2d12h", "2w"), in
 * any order, > 0, at most CTL_DURATION_MAX_MS, and small enough that
 * now_ms (>= 0) + it fits an int64. Returns 0, or TOKEND_EINVAL with
 * *why (a static string) saying what is wrong. Every duration flag goes
 * through this (or ctl_opt_duration). */
int ctl_parse_duration_ms(const char *s, int64_t now_ms, int64_t *out,
                          const char **why);

/* A point in time -> Unix ms: Unix ms digits ("1798675200000"), an ISO
 * 8601 date ("2027-01-31", meaning midnight UTC) or date and time with
 * its zone ("2027-01-31T12:00:00Z", "2027-01-31T12:00+02:00", seconds
 * and a fraction optional, 'T' or a space between). A date and time
 * without a zone is refused rather than read in $TZ. Not before 1970.
 * Returns 0, or TOKEND_EINVAL with *why (static) saying what is wrong.
 * Every time flag goes through this (or ctl_opt_time). */
int ctl_parse_time_ms(const char *s, int64_t *out, const char **why);

/* A point in the past as a flag like --since takes it: a duration ago
 * ("30m", "1h30m"; longer ago than 1970 gives 0) or a time as
 * ctl_parse_time_ms takes it. Returns 0 or TOKEND_EINVAL with *why. */
int ctl_parse_when(const char *s, int64_t now_ms, int64_t *out,
                   const char **why);

/* The time now, in Unix ms. */
int64_t ctl_now_ms(void);

/* Like getopt_long, but handles the options every command shares (and
 * --json, which getopt_long gives only to the commands that list it) and
 * reports bad ones itself. Returns an option, -1 at the end,
 * CTL_GETOPT_HELP (usage printed on stdout) or CTL_GETOPT_BAD (one line
 * on stderr, with the closest long option for an unknown one, and the
 * --help hint). */
int ctl_getopt(const ctl_command_t *cmd, ctl_opts_t *opts, int argc,
               char **argv, const char *shortopts,
               const struct option *longopts);

/* The exit status for a ctl_getopt() result a command does not take:
 * success after --help, an error after a bad option. */
int ctl_getopt_exit(int c);

/* A usage error, short: "tokenctl <cmd>: msg [arg]" and the line
 * "try 'tokenctl <cmd> --help'" on stderr (never the whole help).
 * Returns CTL_EXIT_ERROR. */
int ctl_usage_error(const ctl_command_t *cmd, const char *msg, const char *arg);

/* The flag helpers a command's option loop calls: each parses arg as
 * its ctl_parse_* above does, or says on stderr "tokenctl <cmd>: <flag>
 * '<arg>': <why>" and the --help hint. Return 0, or CTL_EXIT_ERROR to
 * return from the command:
 *   case OPT_GRACE:
 *     if (ctl_opt_duration(cmd, "--grace", optarg, now, &grace) != 0)
 *       return CTL_EXIT_ERROR; */
int ctl_opt_duration(const ctl_command_t *cmd, const char *flag,
                     const char *arg, int64_t now_ms, int64_t *out);
int ctl_opt_time(const ctl_command_t *cmd, const char *flag, const char *arg,
                 int64_t *out);
int ctl_opt_when(const ctl_command_t *cmd, const char *flag, const char *arg,
                 int64_t now_ms, int64_t *out);

/* ---- did you mean (opts.c) ---- */

/* Names longer than this are never compared (no suggestion). */
#define CTL_SUGGEST_MAX_LEN 63

/* The Levenshtein distance between a and b; SIZE_MAX when either is
 * longer than CTL_SUGGEST_MAX_LEN. */
size_t ctl_edit_distance(const char *a, const char *b);

/* The name among names[0..n) closest to given: the first one edit away;
 * else the one name given is a prefix of, if just one; else the first two
 * edits away (fewer edits than the name has characters: "x" suggests no
 * "ls"). NULL if none. */
const char *ctl_suggest(const char *given, const char *const *names, size_t n);

/* Says on stderr "tokenctl[ <parent>]: unknown <what> '<given>'", with
 * "; did you mean '<name>'?" when ctl_suggest finds one among
 * names[0..n), and the --help hint for parent. Returns CTL_EXIT_ERROR. */
int ctl_unknown_command(const ctl_command_t *parent, const char *what,
                        const char *given, const char *const *names, size_t n);

#endif
