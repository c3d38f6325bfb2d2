/* tokenctl: the admin CLI for tokend.
 *
 *   tokenctl [--socket PATH] [--timeout MS] <command> [options]
 *
 * Exit status: 0 success, 1 `verify` found the token invalid, 2 any error
 * (bad usage, tokend unreachable, tokend refused the call). */
/* wcwidth() and reallocarray(). */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <locale.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include <jansson.h>
#include <sodium.h>

#include <tokend/client.h>

/* TOKEND_SOCKET_DEFAULT and TOKEND_SOCKET_ENV, which the help and the
 * messages name. */
#include "tokend_limits.h"

#define CTL_EXIT_OK 0
#define CTL_EXIT_INVALID 1
#define CTL_EXIT_ERROR 2

#define CTL_TIMEOUT_DEFAULT_MS 10000
/* Room for one token line plus stray whitespace; anything longer is not a
 * token. */
#define CTL_VERIFY_INPUT_BYTES 1024

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
  OPT_ANCHOR
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

typedef struct {
  const char *name;
  int (*run)(ctl_opts_t *opts, int argc, char **argv);
  const char *usage;
} ctl_command_t;

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
    "  help     show a command's help\n"
    "\n"
    "Options:\n" CTL_ACTOR_HELP CTL_COMMON_HELP "\n"
    "Run `tokenctl <command> --help` for a command's options.\n"
    "Exit status: 0 success, 1 `verify` found the token invalid, 2 error.\n";

static const char ctl_issue_usage[] =
    "Usage: tokenctl issue --domain D --label L [--expires-in DURATION]\n"
    "                      [--scope S]... [--json] [--actor U]\n"
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
    "                           lifetime: a whole number and a unit s, m, h, "
    "d\n"
    "                           or w (90s, 15m, 12h, 30d, 2w); default: never\n"
    "      --scope S            grant scope S; repeat for more (at most 32)\n"
    "      --json               print one JSON object with the token and its\n"
    "                           details on standard output (times in Unix ms,\n"
    "                           null when not set)\n" CTL_ACTOR_HELP
        CTL_COMMON_HELP "\n"
    "Example:\n"
    "  TOKEN=$(tokenctl issue --domain example.com --label 'CI deploy' \\\n"
    "          --expires-in 30d --scope deploy)\n";

static const char ctl_verify_usage[] =
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

static const char ctl_revoke_usage[] =
    "Usage: tokenctl revoke --domain D [--json] [--actor U] TOKEN_ID\n"
    "\n"
    "Revokes a token by its id (tok_...). Revoking a revoked token is not an\n"
    "error: it reports when the token was first revoked.\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain the token belongs to (required)\n"
    "      --json               print one JSON object on standard output\n"
    "                           (times in Unix ms)\n" CTL_ACTOR_HELP
        CTL_COMMON_HELP;

static const char ctl_list_usage[] =
    "Usage: tokenctl list --domain D [--all] [--json] [--page-size N]\n"
    "                     [--actor U]\n"
    "\n"
    "Lists a domain's tokens, newest first, as a table (times in UTC), with\n"
    "who created them (and, with --all, who revoked them). Fetches every\n"
    "page.\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain to list (required)\n"
    "      --all                include revoked tokens\n"
    "      --json               print one JSON object {\"domain\": ...,\n"
    "                           \"tokens\": [...]} on standard output (times\n"
    "                           in Unix ms, null when not set)\n"
    "      --page-size N        tokens per request, 1-1000 (default: "
    "tokend's)\n" CTL_ACTOR_HELP CTL_COMMON_HELP;

static const char ctl_admins_usage[] =
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

static const char ctl_audit_usage[] =
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
    "                           1h, 2d, 1w) or a time in Unix ms\n"
    "      --json               print one JSON object {\"events\": [...]} on\n"
    "                           standard output (times in Unix ms)\n"
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

static const char ctl_whoami_usage[] =
    "Usage: tokenctl whoami [--json] [--actor U]\n"
    "\n"
    "Shows how tokend sees this process: its uid and gid (with their names\n"
    "where this system knows them), its pid, the user tokend acts for,\n"
    "and whether it is an operator and a verifier.\n"
    "\n"
    "Options:\n"
    "      --json               print one JSON object on standard "
    "output\n" CTL_ACTOR_HELP CTL_COMMON_HELP;

static const char ctl_help_usage[] =
    "Usage: tokenctl help [COMMAND [SUBCOMMAND]]\n";

static const char ctl_start_hint[] =
    "start tokend, or pass --socket / set TOKEND_SOCKET to where it listens";

/* ---- parsing ---- */

/* Parses a whole decimal number in [0, max]: no sign, no spaces. */
static int ctl_parse_uint(const char *s, unsigned long long max,
                          unsigned long long *out) {
  unsigned long long v = 0;
  const char *p;

  if (*s == '\0')
    return TOKEND_EINVAL;
  for (p = s; *p != '\0'; p++) {
    if (*p < '0' || *p > '9')
      return TOKEND_EINVAL;
    if (v > (max - (unsigned)(*p - '0')) / 10)
      return TOKEND_EINVAL;
    v = v * 10 + (unsigned)(*p - '0');
  }
  *out = v;
  return 0;
}

/* "90s", "15m", "12h", "30d", "2w" -> milliseconds, > 0 and small enough
 * that now_ms + it fits an int64. On failure *why says what is wrong. */
static int ctl_parse_duration_ms(const char *s, int64_t now_ms, int64_t *out,
                                 const char **why) {
  unsigned long long n, unit_ms;
  size_t len = strlen(s), i;

  *why = "expected a whole number and a unit s, m, h, d or w (90s, 15m, 12h, "
         "30d, 2w)";
  if (len < 2)
    return TOKEND_EINVAL;
  for (i = 0; i + 1 < len; i++)
    if (s[i] < '0' || s[i] > '9')
      return TOKEND_EINVAL;
  switch (s[len - 1]) {
  case 's':
    unit_ms = 1000ULL;
    break;
  case 'm':
    unit_ms = 60ULL * 1000;
    break;
  case 'h':
    unit_ms = 3600ULL * 1000;
    break;
  case 'd':
    unit_ms = 86400ULL * 1000;
    break;
  case 'w':
    unit_ms = 7ULL * 86400 * 1000;
    break;
  default:
    return TOKEND_EINVAL;
  }
  /* The digits are checked: failing now means too large. */
  *why = "too far in the future";
  n = 0;
  for (i = 0; i + 1 < len; i++) {
    if (n > ((unsigned long long)(INT64_MAX - now_ms) / unit_ms -
             (unsigned)(s[i] - '0')) /
                10)
      return TOKEND_EINVAL;
    n = n * 10 + (unsigned)(s[i] - '0');
  }
  if (n == 0) {
    *why = "must be more than 0";
    return TOKEND_EINVAL;
  }
  *out = (int64_t)(n * unit_ms);
  return 0;
}

static int64_t ctl_now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Like getopt_long, but handles the options every command shares (and
 * --json, which getopt_long gives only to the commands that list it) and
 * reports bad ones itself. Returns an option, -1 at the end,
 * CTL_GETOPT_HELP (usage printed on stdout) or CTL_GETOPT_BAD (a message
 * and the usage printed on stderr). */
static int ctl_getopt(const ctl_command_t *cmd, ctl_opts_t *opts, int argc,
                      char **argv, const char *shortopts,
                      const struct option *longopts) {
  unsigned long long v;
  int c;

  for (;;) {
    c = getopt_long(argc, argv, shortopts, longopts, NULL);
    switch (c) {
    case OPT_SOCKET:
      opts->socket_path = optarg;
      continue;
    case OPT_TIMEOUT:
      if (ctl_parse_uint(optarg, INT_MAX, &v) != 0) {
        fprintf(stderr,
                "tokenctl: --timeout: '%s' is not a number of milliseconds "
                "(0 to %d; 0 waits forever)\n",
                optarg, INT_MAX);
        return CTL_GETOPT_BAD;
      }
      opts->timeout_ms = (int)v;
      continue;
    case OPT_ACTOR:
      opts->actor = optarg;
      continue;
    case OPT_IDENTITY:
      opts->identity = 1;
      continue;
    case OPT_JSON:
      opts->json = 1;
      continue;
    case 'h':
      fputs(cmd->usage, stdout);
      return CTL_GETOPT_HELP;
    case '?':
      if (optopt != 0 && optopt < 256)
        fprintf(stderr, "tokenctl%s%s: unknown option '-%c'\n",
                cmd->name[0] ? " " : "", cmd->name, optopt);
      else
        fprintf(stderr, "tokenctl%s%s: unknown option '%s'\n",
                cmd->name[0] ? " " : "", cmd->name, argv[optind - 1]);
      fputs(cmd->usage, stderr);
      return CTL_GETOPT_BAD;
    case ':':
      fprintf(stderr, "tokenctl%s%s: option '%s' needs a value\n",
              cmd->name[0] ? " " : "", cmd->name, argv[optind - 1]);
      fputs(cmd->usage, stderr);
      return CTL_GETOPT_BAD;
    default:
      return c;
    }
  }
}

/* The exit status for a ctl_getopt() result a command does not take:
 * success after --help, an error after a bad option. */
static int ctl_getopt_exit(int c) {
  return c == CTL_GETOPT_HELP ? CTL_EXIT_OK : CTL_EXIT_ERROR;
}

static int ctl_usage_error(const ctl_command_t *cmd, const char *msg,
                           const char *arg) {
  fprintf(stderr, "tokenctl %s: %s%s%s\n", cmd->name, msg,
          arg != NULL ? " " : "", arg != NULL ? arg : "");
  fputs(cmd->usage, stderr);
  return CTL_EXIT_ERROR;
}

/* ---- users ---- */

/* Which form a user given on the command line took. */
typedef enum {
  CTL_USER_UID,     /* a number N or "uid:N" */
  CTL_USER_LOCAL,   /* a local user name, looked up */
  CTL_USER_IDENTITY /* a platform identity, sent as given */
} ctl_user_form_t;

/* The user tokend knows U as, into out (TOKEND_USER_BYTES): a uid number N
 * or "uid:N" is "uid:N"; with `identity` (--identity), or when U contains
 * '@', U is a platform identity sent as given for tokend to check; else U
 * must be a local user name this system knows, "uid:<its uid>". A name that
 * is none of these is refused rather than sent as an identity: a mistyped
 * local user must not silently name someone else. *form (may be NULL) gets
 * the form. Returns 0, or TOKEND_EINVAL with why (why_len bytes) saying
 * what to write instead. */
static int ctl_resolve_user(const char *u, int identity,
                            char out[TOKEND_USER_BYTES], ctl_user_form_t *form,
                            char *why, size_t why_len) {
  unsigned long long v;
  struct passwd *pw;
  const char *p, *digits = strncmp(u, "uid:", 4) == 0 ? u + 4 : u;
  ctl_user_form_t f;

  if (strlen(u) > TOKEND_USER_MAX_CHARS || u[0] == '\0') {
    snprintf(why, why_len,
             "a user is 1-%d characters: a local user name, a uid, or a "
             "platform identity",
             TOKEND_USER_MAX_CHARS);
    return TOKEND_EINVAL;
  }
  if (identity) {
    snprintf(out, TOKEND_USER_BYTES, "%s", u);
    f = CTL_USER_IDENTITY;
    goto out_form;
  }
  for (p = digits; *p >= '0' && *p <= '9'; p++)
    ;
  if (*digits != '\0' && *p == '\0') {
    /* (uid_t)-1 is no uid: chown() and setreuid() read it as "unchanged". */
    if (ctl_parse_uint(digits, (uid_t)-1 - 1, &v) != 0) {
      snprintf(why, why_len, "%s is not a uid (0 to %lu)", u,
               (unsigned long)((uid_t)-1 - 1));
      return TOKEND_EINVAL;
    }
    snprintf(out, TOKEND_USER_BYTES, "uid:%llu", v);
    f = CTL_USER_UID;
  } else if (strchr(u, '@') != NULL) {
    snprintf(out, TOKEND_USER_BYTES, "%s", u);
    f = CTL_USER_IDENTITY;
  } else if (strchr(u, ':') == NULL && (pw = getpwnam(u)) != NULL) {
    snprintf(out, TOKEND_USER_BYTES, "uid:%lu", (unsigned long)pw->pw_uid);
    f = CTL_USER_LOCAL;
  } else {
    snprintf(why, why_len,
             "no local user %s; write a platform identity with @, or pass "
             "--identity",
             u);
    return TOKEND_EINVAL;
  }
out_form:
  if (form != NULL)
    *form = f;
  return 0;
}

/* user (as ctl_resolve_user made it) and the form it took, for the answer:
 * "uid:1000 (local user alice)", "uid:12345 (uid, no local user)",
 * "bob@example.com (platform identity)". */
static void ctl_describe_user(const char *user, ctl_user_form_t form, char *buf,
                              size_t len) {
  struct passwd *pw;

  if (form == CTL_USER_IDENTITY)
    snprintf(buf, len, "%s (platform identity)", user);
  else if ((pw = getpwuid((uid_t)strtoul(user + 4, NULL, 10))) != NULL)
    snprintf(buf, len, "%s (local user %s)", user, pw->pw_name);
  else
    snprintf(buf, len, "%s (uid, no local user)", user);
}

/* The name of a form, for --json. */
static const char *ctl_user_form_name(ctl_user_form_t form) {
  return form == CTL_USER_IDENTITY ? "identity"
         : form == CTL_USER_LOCAL  ? "local user"
                                   : "uid";
}

/* A user for people to read: "uid:1000 (alice)" where this system knows the
 * uid, the user as is otherwise, "-" for none. */
static void ctl_fmt_user(const char *user, char *buf, size_t len) {
  unsigned long long v;
  struct passwd *pw;

  if (user[0] == '\0')
    snprintf(buf, len, "-");
  else if (strncmp(user, "uid:", 4) == 0 &&
           ctl_parse_uint(user + 4, (uid_t)-1 - 1, &v) == 0 &&
           (pw = getpwuid((uid_t)v)) != NULL)
    snprintf(buf, len, "%s (%s)", user, pw->pw_name);
  else
    snprintf(buf, len, "%s", user);
}

/* ---- tokend ---- */

static const char *ctl_socket_path(const ctl_opts_t *opts) {
  const char *env;

  if (opts->socket_path != NULL)
    return opts->socket_path;
  env = getenv(TOKEND_SOCKET_ENV);
  return env != NULL && env[0] != '\0' ? env : TOKEND_SOCKET_DEFAULT;
}

/* Makes every later call on client act for --actor, if given; with client
 * NULL only checks that --actor names a user (saying why not on stderr). */
static int ctl_set_actor(const ctl_opts_t *opts, tokend_client_t *client) {
  char user[TOKEND_USER_BYTES], why[TOKEND_USER_BYTES + 128];
  int rc;

  if (opts->actor == NULL)
    return 0;
  /* An empty actor would quietly make an operator's call break-glass: it
   * is refused with the rest. */
  rc = ctl_resolve_user(opts->actor, opts->identity, user, NULL, why,
                        sizeof(why));
  if (rc == 0 && client != NULL &&
      (rc = tokend_client_set_actor(client, user)) != 0)
    snprintf(why, sizeof(why),
             "give a local user name, a uid, or an identity of at most %d "
             "characters",
             TOKEND_USER_MAX_CHARS);
  if (rc != 0)
    fprintf(stderr, "tokenctl: --actor '%s' is not a user: %s\n", opts->actor,
            why);
  return rc;
}

/* Connects (acting for --actor), or says on stderr why not and what to
 * do; on failure *client is NULL. The library tells a missing socket, one
 * we may not open and one that is not tokend's apart (asking the peer
 * WhoAmI first, so that the last is caught here rather than as a strange
 * failure of the command's call). */
static int ctl_connect(const ctl_opts_t *opts, tokend_client_t **client) {
  const char *path = ctl_socket_path(opts);
  char why[TOKEND_CONNECT_ERRMSG_BYTES];
  int rc;

  /* A mistyped --actor is the user's to fix before tokend is asked. */
  *client = NULL;
  if ((rc = ctl_set_actor(opts, NULL)) != 0)
    return rc;
  rc = tokend_client_open(path, opts->timeout_ms, TOKEND_CONNECT_CHECK_PEER,
                          client, why, sizeof(why));
  switch (rc) {
  case 0:
    rc = ctl_set_actor(opts, *client);
    if (rc != 0) {
      tokend_client_close(*client);
      *client = NULL;
    }
    return rc;
  case TOKEND_ETIMEDOUT:
    fprintf(stderr, "tokenctl: %s; try again or pass a larger --timeout\n",
            why);
    return rc;
  case TOKEND_ENOSOCKET:
  case TOKEND_ECONNECT:
    fprintf(stderr, "tokenctl: cannot connect to tokend: %s (%s)\n", why,
            ctl_start_hint);
    return rc;
  default:
    fprintf(stderr, "tokenctl: cannot connect to tokend: %s\n", why);
    return rc;
  }
}

/* One line on stderr: what failed, tokend's status code name and message,
 * and what to do about it when we can tell. */
static void ctl_report(const char *what, tokend_client_t *client, int rc,
                       const char *hint) {
  const char *msg = tokend_client_errmsg(client);

  if (msg[0] == '\0')
    msg = tokend_strerror(rc);
  if (hint == NULL) {
    switch (rc) {
    case TOKEND_ETIMEDOUT:
      hint = "tokend did not answer in time; pass a larger --timeout "
             "(0 waits forever)";
      break;
    case TOKEND_ECLOSED:
    case TOKEND_EIO:
      hint = "tokend's log may say why";
      break;
    case TOKEND_EPROTO: /* only ever local: tokend's statuses never map to it */
      hint = "are tokenctl and tokend the same version?";
      break;
    case TOKEND_EUNAVAIL:
      hint = "tokend may be shutting down; try again";
      break;
    }
  }
  fprintf(stderr, "tokenctl: %s failed: %s: %s%s%s%s\n", what,
          tokend_grpc_name(tokend_client_grpc_status(client)), msg,
          hint != NULL ? " (" : "", hint != NULL ? hint : "",
          hint != NULL ? ")" : "");
}

/* Ends a command's one call to tokend: reports its failure (rc != 0) with
 * hint, then closes the connection. Returns CTL_EXIT_OK or
 * CTL_EXIT_ERROR. */
static int ctl_end_call(const char *what, tokend_client_t *client, int rc,
                        const char *hint) {
  if (rc != 0)
    ctl_report(what, client, rc, hint);
  tokend_client_close(client);
  return rc != 0 ? CTL_EXIT_ERROR : CTL_EXIT_OK;
}

/* What to do about PERMISSION_DENIED from a call on domain's tokens or
 * audit log, into buf. */
static const char *ctl_domain_perm_hint(const ctl_opts_t *opts,
                                        const char *domain, char *buf,
                                        size_t len) {
  char user[TOKEND_USER_BYTES], why[TOKEND_USER_BYTES + 128];

  if (opts->actor != NULL) {
    if (ctl_resolve_user(opts->actor, opts->identity, user, NULL, why,
                         sizeof(why)) != 0)
      snprintf(user, sizeof(user), "U");
    snprintf(buf, len,
             "only operators may use --actor, and the user they act for must "
             "be an admin of the domain: tokenctl admins grant --domain %s "
             "--user %s",
             domain, user);
  } else {
    snprintf(buf, len,
             "ask an operator to grant you admin of this domain: tokenctl "
             "admins grant --domain %s --user uid:%lu",
             domain, (unsigned long)getuid());
  }
  return buf;
}

/* ---- fetching every page ---- */

/* The items of every page of a listing, gathered into one array: tokend
 * hands out a long list a page at a time. */
typedef struct {
  void *items; /* n items of size bytes each; the caller frees it */
  size_t n, cap, size;
  /* The page to ask for next: "" for the first, and after the last. */
  char page_token[TOKEND_PAGE_TOKEN_BYTES];
} ctl_pages_t;

/* Appends one page's n_items items (pages->size bytes each) and moves on to
 * the page after it. what names the command in messages. Returns
 * CTL_EXIT_OK, or CTL_EXIT_ERROR after saying why on stderr. */
static int ctl_pages_add(ctl_pages_t *pages, const char *what,
                         const void *items, size_t n_items,
                         const char next_page_token[TOKEND_PAGE_TOKEN_BYTES]) {
  size_t cap;
  void *grown;

  /* A page that makes no progress would have us loop forever. */
  if (next_page_token[0] != '\0' &&
      (n_items == 0 || strcmp(next_page_token, pages->page_token) == 0)) {
    fprintf(stderr,
            "tokenctl: %s failed: tokend's pages do not advance (are "
            "tokenctl and tokend the same version?)\n",
            what);
    return CTL_EXIT_ERROR;
  }
  if (n_items > pages->cap - pages->n) {
    cap = pages->cap * 2 > pages->n + n_items ? pages->cap * 2
                                              : pages->n + n_items;
    grown = reallocarray(pages->items, cap, pages->size);
    if (grown == NULL) {
      fprintf(stderr, "tokenctl: %s failed: out of memory\n", what);
      return CTL_EXIT_ERROR;
    }
    pages->items = grown;
    pages->cap = cap;
  }
  if (n_items > 0)
    memcpy((char *)pages->items + pages->n * pages->size, items,
           n_items * pages->size);
  pages->n += n_items;
  memcpy(pages->page_token, next_page_token, sizeof(pages->page_token));
  return CTL_EXIT_OK;
}

/* ---- output helpers ---- */

/* Unix ms as UTC in strftime() format fmt; zero for 0; where the time
 * cannot be shown, the number of ms followed by unit. */
static void ctl_fmt_utc(int64_t ms, const char *fmt, const char *zero,
                        const char *unit, char *buf, size_t len) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;

  if (ms == 0)
    snprintf(buf, len, "%s", zero);
  else if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, fmt, &tm) == 0)
    snprintf(buf, len, "%lld%s", (long long)ms, unit);
}

/* "2026-11-29T10:07:00Z", or "never" for 0. */
static void ctl_fmt_iso(int64_t ms, char *buf, size_t len) {
  ctl_fmt_utc(ms, "%Y-%m-%dT%H:%M:%SZ", "never", " ms", buf, len);
}

/* "2026-11-29 10:07", or "-" for 0. */
static void ctl_fmt_short(int64_t ms, char *buf, size_t len) {
  ctl_fmt_utc(ms, "%Y-%m-%d %H:%M", "-", "", buf, len);
}

/* "2026-11-29 10:07:03", or "-" for 0. */
static void ctl_fmt_seconds(int64_t ms, char *buf, size_t len) {
  ctl_fmt_utc(ms, "%Y-%m-%d %H:%M:%S", "-", "", buf, len);
}

static void ctl_print_scopes(FILE *f, const char (*scopes)[TOKEND_SCOPE_BYTES],
                             size_t n) {
  size_t i;

  if (n == 0)
    fputs("(none)", f);
  for (i = 0; i < n; i++)
    fprintf(f, "%s%s", i > 0 ? ", " : "", scopes[i]);
  fputc('\n', f);
}

static json_t *ctl_json_time(int64_t ms) {
  return ms != 0 ? json_integer((json_int_t)ms) : json_null();
}

/* One JSON value for row i of rows; NULL on failure. */
typedef json_t *(*ctl_json_row_t)(const void *rows, size_t i);

/* A JSON array of n rows, or NULL if any of it cannot be built. */
static json_t *ctl_json_rows(const void *rows, size_t n,
                             ctl_json_row_t to_json) {
  json_t *arr = json_array();
  size_t i;

  for (i = 0; arr != NULL && i < n; i++) {
    if (json_array_append_new(arr, to_json(rows, i)) != 0) {
      json_decref(arr);
      arr = NULL;
    }
  }
  return arr;
}

static json_t *ctl_json_scope_at(const void *rows, size_t i) {
  return json_string(((const char(*)[TOKEND_SCOPE_BYTES])rows)[i]);
}

static json_t *ctl_json_scopes(const char (*scopes)[TOKEND_SCOPE_BYTES],
                               size_t n) {
  return ctl_json_rows(scopes, n, ctl_json_scope_at);
}

/* A string, or null when it is empty (a user, domain or id not set). */
static json_t *ctl_json_text(const char *s) {
  return s[0] != '\0' ? json_string(s) : json_null();
}

static json_t *ctl_json_info(const tokend_token_info_t *t) {
  return json_pack(
      "{s:s, s:s, s:s, s:s, s:o*, s:s, s:o*, s:o*, s:o*, s:o*, "
      "s:o*, s:o*}",
      "id", t->id, "domain", t->domain, "label", t->label, "hint", t->hint,
      "scopes", ctl_json_scopes(t->scopes, t->n_scopes), "status",
      tokend_token_status_name(t->status), "created_at",
      ctl_json_time(t->created_at), "expires_at", ctl_json_time(t->expires_at),
      "last_used_at", ctl_json_time(t->last_used_at), "revoked_at",
      ctl_json_time(t->revoked_at), "created_by", ctl_json_text(t->created_by),
      "revoked_by", ctl_json_text(t->revoked_by));
}

/* Writes all of buf to fd; stdio is bypassed so that no stdio buffer keeps
 * a copy of a secret. */
static int ctl_write_all(int fd, const char *buf, size_t len) {
  ssize_t n;

  while (len > 0) {
    n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return TOKEND_EIO;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Prints one JSON value and a newline on stdout. Takes the reference to
 * root, so a json_pack() result goes straight in; NULL (building it
 * failed) is reported. */
static int ctl_print_json(json_t *root) {
  int rc = CTL_EXIT_OK;

  if (root == NULL ||
      json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
    fputs("tokenctl: cannot encode the result as JSON\n", stderr);
    rc = CTL_EXIT_ERROR;
  } else {
    fputc('\n', stdout);
  }
  json_decref(root);
  return rc;
}

/* ---- issue ---- */

static int ctl_issue_print_json(const tokend_issued_t *issued) {
  json_t *root, *token = NULL;
  const char *copy;
  char *text = NULL;
  int rc = CTL_EXIT_ERROR;

  root = json_object();
  token = json_string(issued->token);
  /* json_object_set, not _set_new: we keep a reference to wipe it. */
  if (root != NULL && token != NULL &&
      json_object_set(root, "token", token) == 0 &&
      json_object_update_new(root, ctl_json_info(&issued->info)) == 0)
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (text == NULL)
    fputs("tokenctl: cannot encode the result as JSON\n", stderr);
  else if (ctl_write_all(STDOUT_FILENO, text, strlen(text)) != 0 ||
           ctl_write_all(STDOUT_FILENO, "\n", 1) != 0)
    fprintf(stderr, "tokenctl: cannot write to standard output: %s\n",
            strerror(errno));
  else
    rc = CTL_EXIT_OK;
  if (text != NULL) {
    sodium_memzero(text, strlen(text));
    free(text);
  }
  /* jansson holds its own copy of the secret. */
  copy = json_string_value(token);
  if (copy != NULL)
    sodium_memzero((char *)copy, strlen(copy));
  json_decref(token);
  json_decref(root);
  return rc;
}

static int ctl_issue(ctl_opts_t *opts, int argc, char **argv);
static int ctl_verify(ctl_opts_t *opts, int argc, char **argv);
static int ctl_revoke(ctl_opts_t *opts, int argc, char **argv);
static int ctl_list(ctl_opts_t *opts, int argc, char **argv);
static int ctl_admins(ctl_opts_t *opts, int argc, char **argv);
static int ctl_admins_grant(ctl_opts_t *opts, int argc, char **argv);
static int ctl_admins_revoke(ctl_opts_t *opts, int argc, char **argv);
static int ctl_admins_list(ctl_opts_t *opts, int argc, char **argv);
static int ctl_audit(ctl_opts_t *opts, int argc, char **argv);
static int ctl_whoami(ctl_opts_t *opts, int argc, char **argv);
static int ctl_help(ctl_opts_t *opts, int argc, char **argv);

static const ctl_command_t ctl_commands[] = {
    {"issue", ctl_issue, ctl_issue_usage},
    {"verify", ctl_verify, ctl_verify_usage},
    {"revoke", ctl_revoke, ctl_revoke_usage},
    {"list", ctl_list, ctl_list_usage},
    {"admins", ctl_admins, ctl_admins_usage},
    {"audit", ctl_audit, ctl_audit_usage},
    {"whoami", ctl_whoami, ctl_whoami_usage},
    {"help", ctl_help, ctl_help_usage},
};

/* `admins` subcommands; their names are what messages print after
 * "tokenctl ". */
static const ctl_command_t ctl_admins_commands[] = {
    {"admins grant", ctl_admins_grant, ctl_admins_grant_usage},
    {"admins revoke", ctl_admins_revoke, ctl_admins_revoke_usage},
    {"admins list", ctl_admins_list, ctl_admins_list_usage},
};

static const ctl_command_t ctl_main = {"", NULL, ctl_main_usage};

static const ctl_command_t *ctl_find_command(const char *name) {
  size_t i;

  for (i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]); i++)
    if (strcmp(ctl_commands[i].name, name) == 0)
      return &ctl_commands[i];
  return NULL;
}

/* An `admins` subcommand by its own name ("grant") or full name. */
static const ctl_command_t *ctl_find_admins_command(const char *name) {
  size_t i;

  for (i = 0; i < sizeof(ctl_admins_commands) / sizeof(ctl_admins_commands[0]);
       i++)
    if (strcmp(ctl_admins_commands[i].name, name) == 0 ||
        strcmp(ctl_admins_commands[i].name + strlen("admins "), name) == 0)
      return &ctl_admins_commands[i];
  return NULL;
}

static int ctl_issue(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"label", required_argument, NULL, 'l'},
      {"expires-in", required_argument, NULL, 'e'},
      {"scope", required_argument, NULL, OPT_SCOPE},
      {"json", no_argument, NULL, OPT_JSON},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("issue");
  const char *scopes[TOKEND_MAX_SCOPES];
  const char *expires_in = NULL, *why;
  tokend_issue_params_t params;
  tokend_client_t *client;
  tokend_issued_t issued;
  char created[32], expires[32], creator[TOKEND_USER_BYTES + 64];
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160];
  int64_t now, duration;
  int c, rc;

  memset(&params, 0, sizeof(params));
  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:l:e:", longopts)) != -1) {
    switch (c) {
    case 'd':
      params.domain = optarg;
      break;
    case 'l':
      params.label = optarg;
      break;
    case 'e':
      expires_in = optarg;
      break;
    case OPT_SCOPE:
      if (params.n_scopes == TOKEND_MAX_SCOPES)
        return ctl_usage_error(cmd, "too many --scope options; at most", "32");
      scopes[params.n_scopes++] = optarg;
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
  if (expires_in != NULL) {
    now = ctl_now_ms();
    if (ctl_parse_duration_ms(expires_in, now, &duration, &why) != 0) {
      fprintf(stderr, "tokenctl issue: --expires-in '%s': %s\n", expires_in,
              why);
      return CTL_EXIT_ERROR;
    }
    params.expires_at = now + duration;
  }

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_issue(client, &params, &issued);
  if (ctl_end_call(
          "issue", client, rc,
          rc == TOKEND_EPERM
              ? ctl_domain_perm_hint(opts, params.domain, hint, sizeof(hint))
              : NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;

  if (opts->json) {
    rc = ctl_issue_print_json(&issued);
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

/* ---- verify ---- */

static struct termios ctl_saved_termios;
static volatile sig_atomic_t ctl_echo_off;

static void ctl_restore_echo_and_die(int sig) {
  if (ctl_echo_off)
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_saved_termios);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Reads the first line of stdin into buf (len bytes), without stdio so no
 * stdio buffer keeps a copy. When stdin is a terminal the token is typed
 * without echo, so it does not stay on screen. */
static int ctl_read_token(char *buf, size_t len, size_t *out_len) {
  struct sigaction sa, old_int, old_term;
  struct termios noecho;
  size_t got = 0;
  ssize_t n;
  int rc = 0, tty = 0;

  if (isatty(STDIN_FILENO) &&
      tcgetattr(STDIN_FILENO, &ctl_saved_termios) == 0) {
    tty = 1;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ctl_restore_echo_and_die;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    noecho = ctl_saved_termios;
    noecho.c_lflag &= ~(tcflag_t)ECHO;
    ctl_echo_off = tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho) == 0;
    fputs("token (not echoed): ", stderr);
  }
  while (got < len) {
    n = read(STDIN_FILENO, buf + got, len - got);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = TOKEND_EIO;
      break;
    }
    if (n == 0 || memchr(buf + got, '\n', (size_t)n) != NULL) {
      got += (size_t)n;
      break;
    }
    got += (size_t)n;
  }
  if (tty) {
    if (ctl_echo_off)
      tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_saved_termios);
    ctl_echo_off = 0;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    fputc('\n', stderr);
  }
  if (rc != 0)
    return rc;
  if (got == len && memchr(buf, '\n', len) == NULL)
    return TOKEND_EMSGSIZE;
  *out_len = got;
  return 0;
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
          root, json_pack("{s:s, s:s, s:s, s:o*, s:o*}", "token_id",
                          r->token_id, "domain", r->domain, "label", r->label,
                          "scopes", ctl_json_scopes(r->scopes, r->n_scopes),
                          "expires_at", ctl_json_time(r->expires_at))) != 0) {
    json_decref(root);
    root = NULL;
  }
  return ctl_print_json(root);
}

static int ctl_verify(ctl_opts_t *opts, int argc, char **argv) {
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
  }

close_client:
  tokend_client_close(client);
wipe_buf:
  sodium_memzero(buf, sizeof(buf));
  return rc;
}

/* ---- revoke ---- */

static int ctl_revoke(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"json", no_argument, NULL, OPT_JSON},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("revoke");
  const char *domain = NULL, *token_id;
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160], when[32];
  tokend_client_t *client;
  int64_t revoked_at = 0;
  int c, rc, already = 0;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:", longopts)) != -1) {
    switch (c) {
    case 'd':
      domain = optarg;
      break;
    default:
      return ctl_getopt_exit(c);
    }
  }
  if (domain == NULL)
    return ctl_usage_error(cmd, "--domain is required", NULL);
  if (optind >= argc)
    return ctl_usage_error(cmd, "TOKEN_ID is required", NULL);
  if (optind + 1 < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind + 1]);
  token_id = argv[optind];

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_revoke(client, domain, token_id, &revoked_at, &already);
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
        "{s:s, s:s, s:I, s:b}", "token_id", token_id, "domain", domain,
        "revoked_at", (json_int_t)revoked_at, "already_revoked", already));
  ctl_fmt_iso(revoked_at, when, sizeof(when));
  if (already)
    printf("%s was already revoked at %s\n", token_id, when);
  else
    printf("revoked %s at %s\n", token_id, when);
  return CTL_EXIT_OK;
}

/* ---- tables ---- */

/* Terminal columns of a UTF-8 string (tokend accepts only valid UTF-8
 * labels): wcwidth() of each code point, so that CJK characters count as
 * two, or one column per code point where wcwidth() does not know it. */
static size_t ctl_display_width(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = 0, len;
  uint32_t cp;
  int w;

  while (*p != '\0') {
    if (*p < 0x80)
      cp = *p, len = 1;
    else if ((*p & 0xE0) == 0xC0)
      cp = *p & 0x1F, len = 2;
    else if ((*p & 0xF0) == 0xE0)
      cp = *p & 0x0F, len = 3;
    else
      cp = *p & 0x07, len = 4;
    for (p++; --len > 0 && (*p & 0xC0) == 0x80; p++)
      cp = (cp << 6) | (*p & 0x3F);
    w = wcwidth((wchar_t)cp);
    n += w >= 0 ? (size_t)w : 1;
  }
  return n;
}

static void ctl_print_cell(const char *s, size_t width, int last) {
  size_t w = ctl_display_width(s);

  fputs(s, stdout);
  if (last)
    return;
  for (; w < width + 2; w++)
    fputc(' ', stdout);
}

/* Room for one formatted cell: a label (400 bytes of UTF-8), a user with
 * its local name, or a status message. */
#define CTL_CELL_BYTES 512
#define CTL_MAX_COLS 10

/* Fills the cells of row i of rows. */
typedef void (*ctl_fill_row_t)(const void *rows, size_t i,
                               char (*cell)[CTL_CELL_BYTES]);

/* Length of the valid UTF-8 sequence at s (NUL-terminated): 1-4, or 0 if
 * it is not one (bad or missing continuation bytes, overlong forms,
 * surrogates, beyond U+10FFFF). */
static size_t ctl_utf8_len(const unsigned char *s) {
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  uint32_t cp;
  size_t len, i;

  if (s[0] < 0x80)
    return 1;
  if ((s[0] & 0xE0) == 0xC0)
    cp = s[0] & 0x1F, len = 2;
  else if ((s[0] & 0xF0) == 0xE0)
    cp = s[0] & 0x0F, len = 3;
  else if ((s[0] & 0xF8) == 0xF0)
    cp = s[0] & 0x07, len = 4;
  else
    return 0;
  for (i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

/* Copies the text src into dst (len bytes) with control characters and
 * bytes that are not UTF-8 replaced by '?', whole characters only. A
 * terminal must never get escapes from a table, and JSON must be UTF-8:
 * tokend's messages are text, but one cut short may end in half a
 * character. */
static void ctl_copy_text(char *dst, size_t len, const char *src) {
  const unsigned char *p = (const unsigned char *)src;
  size_t n = 0, c;

  while (*p != '\0') {
    c = ctl_utf8_len(p);
    if (c == 0 || *p < 0x20 || *p == 0x7f) {
      if (n + 1 >= len)
        break;
      dst[n++] = '?';
      p += c == 0 ? 1 : c;
      continue;
    }
    if (n + c >= len)
      break;
    memcpy(dst + n, p, c);
    n += c;
    p += c;
  }
  dst[n] = '\0';
}

/* Prints a header and n rows, each column as wide as its widest cell. */
static void ctl_print_table(const char *const *names, size_t ncols,
                            const void *rows, size_t n, ctl_fill_row_t fill) {
  char cell[CTL_MAX_COLS][CTL_CELL_BYTES];
  size_t width[CTL_MAX_COLS], i, col, w;

  for (col = 0; col < ncols; col++)
    width[col] = ctl_display_width(names[col]);
  for (i = 0; i < n; i++) {
    fill(rows, i, cell);
    for (col = 0; col < ncols; col++) {
      w = ctl_display_width(cell[col]);
      if (w > width[col])
        width[col] = w;
    }
  }
  for (col = 0; col < ncols; col++)
    ctl_print_cell(names[col], width[col], col + 1 == ncols);
  fputc('\n', stdout);
  for (i = 0; i < n; i++) {
    fill(rows, i, cell);
    for (col = 0; col < ncols; col++)
      ctl_print_cell(cell[col], width[col], col + 1 == ncols);
    fputc('\n', stdout);
  }
}

/* ---- list ---- */

enum {
  COL_ID,
  COL_LABEL,
  COL_HINT,
  COL_STATUS,
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
    "ID",         "LABEL",   "HINT",      "STATUS",  "CREATED",
    "CREATED BY", "EXPIRES", "LAST USED", "REVOKED", "REVOKED BY"};

static void ctl_token_fill_row(const void *rows, size_t i,
                               char (*cell)[CTL_CELL_BYTES]) {
  const tokend_token_info_t *t = (const tokend_token_info_t *)rows + i;

  snprintf(cell[COL_ID], CTL_CELL_BYTES, "%s", t->id);
  snprintf(cell[COL_LABEL], CTL_CELL_BYTES, "%s", t->label);
  snprintf(cell[COL_HINT], CTL_CELL_BYTES, "%s", t->hint);
  snprintf(cell[COL_STATUS], CTL_CELL_BYTES, "%s",
           tokend_token_status_name(t->status));
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

static int ctl_list(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"all", no_argument, NULL, OPT_ALL},
      {"json", no_argument, NULL, OPT_JSON},
      {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
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
    rc = tokend_client_list(client, domain, page_size, pages.page_token, all,
                            &page);
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

/* ---- admins ---- */

static const char ctl_operator_hint[] =
    "only operators manage domain admins: root, tokend's own user, and its "
    "--operator-uid / --operator-group; `tokenctl whoami` says whether you "
    "are one";

static int ctl_admins(ctl_opts_t *opts, int argc, char **argv) {
  const ctl_command_t *cmd = ctl_find_command("admins"), *sub;

  if (argc < 2) {
    fputs("tokenctl admins: missing subcommand (grant, revoke or list)\n",
          stderr);
    fputs(cmd->usage, stderr);
    return CTL_EXIT_ERROR;
  }
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(cmd->usage, stdout);
    return CTL_EXIT_OK;
  }
  sub = ctl_find_admins_command(argv[1]);
  if (sub == NULL) {
    fprintf(stderr, "tokenctl admins: unknown subcommand '%s'\n", argv[1]);
    fputs(cmd->usage, stderr);
    return CTL_EXIT_ERROR;
  }
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

static int ctl_admins_revoke(ctl_opts_t *opts, int argc, char **argv) {
  const ctl_command_t *cmd = ctl_find_admins_command("revoke");
  char user[TOKEND_USER_BYTES], shown[TOKEND_USER_BYTES + 64];
  char hint[TOKEND_DOMAIN_BYTES + 64];
  tokend_client_t *client;
  const char *domain = NULL;
  uint32_t revoked = 0;
  ctl_user_form_t form;
  int rc, revoke_tokens = 0;

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

  if (opts->json)
    return ctl_print_json(json_pack(
        "{s:s, s:s, s:s, s:I}", "domain", domain, "user", user, "user_form",
        ctl_user_form_name(form), "tokens_revoked", (json_int_t)revoked));
  ctl_describe_user(user, form, shown, sizeof(shown));
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
  /* "o": see ctl_list_print_json(). */
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

/* ---- audit ---- */

/* --since: a duration ago ("30m", "2d") or a time in Unix ms. */
static int ctl_parse_since(const char *s, int64_t now_ms, int64_t *out,
                           const char **why) {
  unsigned long long v;
  int64_t ago;

  if (s[0] >= '0' && s[0] <= '9' && ctl_parse_uint(s, INT64_MAX, &v) == 0) {
    *out = (int64_t)v;
    return 0;
  }
  if (ctl_parse_duration_ms(s, now_ms, &ago, why) != 0) {
    *why = "expected a duration ago (30m, 1h, 2d, 1w) or a time in Unix ms";
    return TOKEND_EINVAL;
  }
  /* Longer ago than 1970 is the same as "all". */
  *out = ago < now_ms ? now_ms - ago : 0;
  return 0;
}

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
  /* "o" for the events: see ctl_list_print_json(). */
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

static int ctl_audit(ctl_opts_t *opts, int argc, char **argv) {
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
  const char *domain = NULL, *why;
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
      if (ctl_parse_since(optarg, ctl_now_ms(), &since, &why) != 0) {
        fprintf(stderr, "tokenctl audit: --since '%s': %s\n", optarg, why);
        return CTL_EXIT_ERROR;
      }
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

/* ---- whoami ---- */

static int ctl_whoami(ctl_opts_t *opts, int argc, char **argv) {
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

/* ---- help and main ---- */

static int ctl_help(ctl_opts_t *opts, int argc, char **argv) {
  const ctl_command_t *cmd;

  if (argc < 2) {
    fputs(ctl_main_usage, stdout);
    return CTL_EXIT_OK;
  }
  cmd = ctl_find_command(argv[1]);
  if (cmd == NULL) {
    fprintf(stderr, "tokenctl: unknown command '%s'\n", argv[1]);
    fputs(ctl_main_usage, stderr);
    return CTL_EXIT_ERROR;
  }
  if (argc >= 3 && cmd->run == ctl_admins) {
    cmd = ctl_find_admins_command(argv[2]);
    if (cmd == NULL) {
      fprintf(stderr, "tokenctl: unknown command 'admins %s'\n", argv[2]);
      fputs(ctl_admins_usage, stderr);
      return CTL_EXIT_ERROR;
    }
  }
  fputs(cmd->usage, stdout);
  return CTL_EXIT_OK;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      CTL_ACTOR_LONGOPT, CTL_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
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
  while ((c = ctl_getopt(&ctl_main, &opts, argc, argv, "+:h", longopts)) != -1)
    return ctl_getopt_exit(c);
  if (optind >= argc) {
    fputs("tokenctl: missing command\n", stderr);
    fputs(ctl_main_usage, stderr);
    return CTL_EXIT_ERROR;
  }
  cmd = ctl_find_command(argv[optind]);
  if (cmd == NULL) {
    fprintf(stderr, "tokenctl: unknown command '%s'\n", argv[optind]);
    fputs(ctl_main_usage, stderr);
    return CTL_EXIT_ERROR;
  }
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
