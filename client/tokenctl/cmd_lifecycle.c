/* tokenctl show, edit and roll: the whole life of a token (issue 17). */
#define _GNU_SOURCE /* strptime, timegm */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "call.h"
#include "ctl.h"
#include "json.h"
#include "table.h"
#include "tty.h"
#include "user.h"

/* Room for one secret line read from stdin, as verify's. */
#define CTL_SHOW_INPUT_BYTES 1024

/* Long-only options of these commands (after ctl.h's). */
enum {
  OPT_STDIN = 512,
  OPT_METADATA,
  OPT_NO_METADATA,
  OPT_EDIT_EXPIRES_AT,
  OPT_NO_EXPIRY,
  OPT_SCOPES,
  OPT_GRACE
};

const char ctl_show_usage[] =
    "Usage: tokenctl show --domain D [--json] [--actor U] TOKEN_ID\n"
    "       tokenctl show --domain D --stdin [--json] [--actor U] < FILE\n"
    "\n"
    "Shows one token of the domain without using it (its last use and the\n"
    "Verify counters do not move): by its id, or by the secret itself, read\n"
    "from standard input (never from the command line).\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain the token belongs to (required)\n"
    "      --stdin              read the token's secret from standard input\n"
    "      --json               print one JSON object on standard output\n"
    "                           (times in Unix ms, null when not "
    "set)\n" CTL_ACTOR_HELP CTL_COMMON_HELP;

const char ctl_edit_usage[] =
    "Usage: tokenctl edit --domain D [--label L] [--metadata JSON | "
    "--no-metadata]\n"
    "                     [--expires-in DURATION | --expires-at T | "
    "--no-expiry]\n"
    "                     [--scopes S,...] [--json] [--actor U] TOKEN_ID\n"
    "\n"
    "Changes a token. The expiry can be shortened or set; lengthened or\n"
    "removed only within the domain's policy (its maximum lifetime counts\n"
    "from the token's creation). Scopes can only be narrowed (a subset of\n"
    "the token's). Audited with what changed.\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain the token belongs to (required)\n"
    "  -l, --label L            a new label, 1-100 characters\n"
    "      --metadata JSON      new metadata: a JSON object of at most 1024\n"
    "                           bytes, which Verify returns with the token\n"
    "      --no-metadata        remove the metadata\n"
    "  -e, --expires-in DURATION\n"
    "                           expire DURATION from now (90s, 15m, 12h, 30d,\n"
    "                           2w)\n"
    "      --expires-at T       expire at T: a date (2027-01-31, midnight\n"
    "                           UTC), a date and time with its zone\n"
    "                           (2027-01-31T12:00:00Z, ...T12:00+02:00) or\n"
    "                           Unix ms\n"
    "      --no-expiry          never expire (within the domain's policy)\n"
    "      --scopes S,...       keep only these scopes (comma-separated; \"\"\n"
    "                           for none)\n"
    "      --json               print the token as it is now as one JSON\n"
    "                           object on standard output\n" CTL_ACTOR_HELP
        CTL_COMMON_HELP;

const char ctl_roll_usage[] =
    "Usage: tokenctl roll --domain D [--grace DURATION] [--json] [--actor U]\n"
    "                     TOKEN_ID\n"
    "\n"
    "Rotates a token: a new token (new id and secret; the same label, scopes\n"
    "and metadata; as long a lifetime from now) replaces it, and the old one\n"
    "expires after the grace period. The new secret alone goes to standard\n"
    "output, details to standard error, as with issue.\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain the token belongs to (required)\n"
    "      --grace DURATION     how long the old token stays valid (90s, 15m,\n"
    "                           24h; at most 30d); default: it expires now\n"
    "      --json               print one JSON object with the new token, its\n"
    "                           details and the old one's on standard "
    "output\n" CTL_ACTOR_HELP CTL_COMMON_HELP "\n"
    "Example:\n"
    "  NEW=$(tokenctl roll --domain example.com --grace 24h tok_...)\n";

/* A token's details for people, on f. */
static void ctl_print_token(FILE *f, const tokend_token_info_t *t) {
  char created[32], expires[32], used[32], revoked[32], text[CTL_CELL_BYTES];
  char creator[TOKEND_USER_BYTES + 64];
  char meta[TOKEND_METADATA_BYTES];

  ctl_fmt_iso(t->created_at, created, sizeof(created));
  ctl_fmt_iso(t->expires_at, expires, sizeof(expires));
  ctl_fmt_iso(t->last_used_at, used, sizeof(used));
  ctl_fmt_iso(t->revoked_at, revoked, sizeof(revoked));
  ctl_fmt_user(t->created_by, creator, sizeof(creator));
  ctl_copy_text(text, sizeof(text), t->label);
  ctl_copy_text(meta, sizeof(meta), t->metadata);
  fprintf(f,
          "id:        %s\n"
          "domain:    %s\n"
          "label:     %s\n"
          "hint:      %s\n"
          "status:    %s\n"
          "created:   %s by %s\n"
          "expires:   %s\n"
          "last used: %s\n",
          t->id, t->domain, text, t->hint, tokend_token_status_name(t->status),
          created, creator, expires, t->last_used_at != 0 ? used : "never");
  if (t->revoked_at != 0) {
    ctl_fmt_user(t->revoked_by, creator, sizeof(creator));
    fprintf(f, "revoked:   %s by %s\n", revoked, creator);
  }
  if (t->rolled_from[0] != '\0')
    fprintf(f, "replaces:  %s\n", t->rolled_from);
  if (t->rolled_to[0] != '\0')
    fprintf(f, "rolled to: %s\n", t->rolled_to);
  fprintf(f, "metadata:  %s\n", meta[0] != '\0' ? meta : "(none)");
  fputs("scopes:    ", f);
  ctl_print_scopes(f, t->scopes, t->n_scopes);
}

/* Reads the secret for show --stdin into buf, trimmed; returns it or NULL
 * after saying why. */
static const char *ctl_read_secret(char *buf, size_t cap) {
  size_t len = 0;
  char *start, *end;

  if (ctl_read_token(buf, cap - 1, &len) != 0) {
    fputs("tokenctl show: cannot read a token from standard input\n", stderr);
    return NULL;
  }
  /* The first line only; a NUL inside it would cut the token short. */
  end = memchr(buf, '\n', len);
  if (end != NULL)
    len = (size_t)(end - buf);
  if (memchr(buf, '\0', len) != NULL) {
    fputs("tokenctl show: the token on standard input contains a NUL byte\n",
          stderr);
    return NULL;
  }
  buf[len] = '\0';
  start = buf;
  while (*start == ' ' || *start == '\t')
    start++;
  end = start + strlen(start);
  while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
    *--end = '\0';
  if (*start == '\0') {
    fputs("tokenctl show: no token on standard input\n", stderr);
    return NULL;
  }
  return start;
}

/* ---- show ---- */

int ctl_show(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"stdin", no_argument, NULL, OPT_STDIN},
      {"json", no_argument, NULL, OPT_JSON},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("show");
  char buf[CTL_SHOW_INPUT_BYTES + 1];
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160];
  const char *domain = NULL, *secret = NULL;
  tokend_token_info_t info;
  tokend_client_t *client;
  int c, rc, from_stdin = 0;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:", longopts)) != -1) {
    switch (c) {
    case 'd':
      domain = optarg;
      break;
    case OPT_STDIN:
      from_stdin = 1;
      break;
    default:
      return ctl_getopt_exit(c);
    }
  }
  if (domain == NULL)
    return ctl_usage_error(cmd, "--domain is required", NULL);
  if (from_stdin && optind < argc)
    return ctl_usage_error(cmd, "give TOKEN_ID or --stdin, not both", NULL);
  if (!from_stdin && optind >= argc)
    return ctl_usage_error(cmd, "TOKEN_ID (or --stdin) is required", NULL);
  if (optind + 1 < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind + 1]);

  rc = CTL_EXIT_ERROR;
  if (from_stdin && (secret = ctl_read_secret(buf, sizeof(buf))) == NULL)
    goto wipe;
  if (ctl_connect(opts, &client) != 0)
    goto wipe;
  rc = secret != NULL
           ? tokend_client_lookup_secret(client, domain, secret, &info)
           : tokend_client_lookup(client, domain, argv[optind], &info);
  if (rc == TOKEND_EPERM)
    ctl_domain_perm_hint(opts, domain, hint, sizeof(hint));
  else if (rc == TOKEND_ENOTFOUND)
    snprintf(hint, sizeof(hint),
             "`tokenctl list --domain %s --all` shows its tokens", domain);
  if (ctl_end_call("show", client, rc,
                   rc == TOKEND_ENOTFOUND || rc == TOKEND_EPERM
                       ? hint
                       : NULL) != CTL_EXIT_OK) {
    rc = CTL_EXIT_ERROR;
    goto wipe;
  }
  if (opts->json) {
    rc = ctl_print_json(ctl_json_info(&info));
  } else {
    ctl_print_token(stdout, &info);
    rc = CTL_EXIT_OK;
  }
wipe:
  sodium_memzero(buf, sizeof(buf));
  return rc;
}

/* ---- edit ---- */

/* Splits a comma-separated list in place into scopes (room for
 * TOKEND_MAX_SCOPES); "" is none. Returns the count, or -1 if too many. */
static int ctl_split_scopes(char *s, const char **scopes) {
  int n = 0;
  char *p = s, *comma;

  if (*s == '\0')
    return 0;
  for (;;) {
    if (n == TOKEND_MAX_SCOPES)
      return -1;
    scopes[n++] = p;
    comma = strchr(p, ',');
    if (comma == NULL)
      return n;
    *comma = '\0';
    p = comma + 1;
  }
}

int ctl_edit(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"label", required_argument, NULL, 'l'},
      {"metadata", required_argument, NULL, OPT_METADATA},
      {"no-metadata", no_argument, NULL, OPT_NO_METADATA},
      {"expires-in", required_argument, NULL, 'e'},
      {"expires-at", required_argument, NULL, OPT_EDIT_EXPIRES_AT},
      {"no-expiry", no_argument, NULL, OPT_NO_EXPIRY},
      {"scopes", required_argument, NULL, OPT_SCOPES},
      {"json", no_argument, NULL, OPT_JSON},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("edit");
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160];
  const char *scopes[TOKEND_MAX_SCOPES], *domain = NULL;
  tokend_edit_params_t params;
  tokend_token_info_t info;
  tokend_client_t *client;
  int c, rc, n, expiry_opts = 0;
  int64_t now = ctl_now_ms(), duration;

  memset(&params, 0, sizeof(params));
  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:l:e:", longopts)) != -1) {
    switch (c) {
    case 'd':
      domain = optarg;
      break;
    case 'l':
      params.label = optarg;
      break;
    case OPT_METADATA:
    case OPT_NO_METADATA:
      if (params.metadata != NULL)
        return ctl_usage_error(cmd, "give --metadata or --no-metadata once",
                               NULL);
      params.metadata = c == OPT_METADATA ? optarg : "";
      break;
    case 'e':
      if (ctl_opt_duration(cmd, "--expires-in", optarg, now, &duration) != 0)
        return CTL_EXIT_ERROR;
      params.expires_at = now + duration;
      expiry_opts++;
      break;
    case OPT_EDIT_EXPIRES_AT:
      if (ctl_opt_time(cmd, "--expires-at", optarg, &params.expires_at) != 0)
        return CTL_EXIT_ERROR;
      if (params.expires_at == 0)
        return ctl_usage_error(cmd, "--expires-at must be after 1970; not",
                               optarg);
      expiry_opts++;
      break;
    case OPT_NO_EXPIRY:
      params.expires_at = 0;
      expiry_opts++;
      break;
    case OPT_SCOPES:
      if ((n = ctl_split_scopes(optarg, scopes)) < 0)
        return ctl_usage_error(cmd, "too many scopes; at most", "32");
      params.set_scopes = 1;
      params.scopes = scopes;
      params.n_scopes = (size_t)n;
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
  if (expiry_opts > 1)
    return ctl_usage_error(
        cmd, "give one of --expires-in, --expires-at and --no-expiry", NULL);
  params.set_expires_at = expiry_opts == 1;
  if (params.label == NULL && params.metadata == NULL &&
      !params.set_expires_at && !params.set_scopes)
    return ctl_usage_error(cmd, "nothing to change", NULL);

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_edit(client, domain, argv[optind], &params, &info);
  if (rc == TOKEND_EPERM)
    ctl_domain_perm_hint(opts, domain, hint, sizeof(hint));
  else if (rc == TOKEND_ENOTFOUND)
    snprintf(hint, sizeof(hint),
             "`tokenctl list --domain %s --all` shows its tokens", domain);
  if (ctl_end_call("edit", client, rc,
                   rc == TOKEND_ENOTFOUND || rc == TOKEND_EPERM
                       ? hint
                       : NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;
  if (opts->json)
    return ctl_print_json(ctl_json_info(&info));
  ctl_print_token(stdout, &info);
  return CTL_EXIT_OK;
}

/* ---- roll ---- */

static int ctl_roll_print_json(const tokend_rolled_t *r) {
  json_t *root = json_object(), *token = json_string(r->token);

  /* json_object_set, not _set_new: ctl_print_secret_json wipes token. */
  if (root == NULL || token == NULL ||
      json_object_set(root, "token", token) != 0 ||
      json_object_update_new(root, ctl_json_info(&r->info)) != 0 ||
      json_object_set_new(root, "previous", ctl_json_info(&r->previous)) != 0) {
    json_decref(root);
    root = NULL;
  }
  return ctl_print_secret_json(root, token);
}

int ctl_roll(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"grace", required_argument, NULL, OPT_GRACE},
      {"json", no_argument, NULL, OPT_JSON},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = ctl_find_command("roll");
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160], expires[32];
  const char *domain = NULL;
  tokend_client_t *client;
  tokend_rolled_t rolled;
  int64_t grace = 0;
  int c, rc;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:", longopts)) != -1) {
    switch (c) {
    case 'd':
      domain = optarg;
      break;
    case OPT_GRACE:
      if (ctl_opt_duration(cmd, "--grace", optarg, ctl_now_ms(), &grace) != 0)
        return CTL_EXIT_ERROR;
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

  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_roll(client, domain, argv[optind], grace, &rolled);
  if (rc == TOKEND_EPERM)
    ctl_domain_perm_hint(opts, domain, hint, sizeof(hint));
  else if (rc == TOKEND_ENOTFOUND)
    snprintf(hint, sizeof(hint),
             "`tokenctl list --domain %s --all` shows its tokens", domain);
  if (ctl_end_call("roll", client, rc,
                   rc == TOKEND_ENOTFOUND || rc == TOKEND_EPERM
                       ? hint
                       : NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;

  if (opts->json) {
    rc = ctl_roll_print_json(&rolled);
  } else if (ctl_write_all(STDOUT_FILENO, rolled.token, strlen(rolled.token)) !=
                 0 ||
             ctl_write_all(STDOUT_FILENO, "\n", 1) != 0) {
    fprintf(stderr, "tokenctl: cannot write to standard output: %s\n",
            strerror(errno));
    rc = CTL_EXIT_ERROR;
  } else {
    rc = CTL_EXIT_OK;
  }
  sodium_memzero(rolled.token, sizeof(rolled.token));
  if (rc != CTL_EXIT_OK) {
    /* The new token exists but nobody has its secret. */
    fprintf(stderr,
            "tokenctl: token %s replaced %s but its secret is lost; roll it "
            "again with `tokenctl roll --domain %s %s`\n",
            rolled.info.id, rolled.previous.id, rolled.info.domain,
            rolled.info.id);
    return rc;
  }
  if (opts->json)
    return CTL_EXIT_OK;
  ctl_print_token(stderr, &rolled.info);
  ctl_fmt_iso(rolled.previous.expires_at, expires, sizeof(expires));
  fprintf(stderr,
          "tokenctl: %s replaces %s, which expires at %s; store the new token "
          "now: tokend keeps only its hash and will not show it again\n",
          rolled.info.id, rolled.previous.id, expires);
  return CTL_EXIT_OK;
}
