/* tokenctl policy show / set: a domain's policy (issue 17). Operators set
 * it; a domain's admins and operators see it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "ctl.h"
#include "json.h"
#include "table.h"

const char ctl_policy_usage[] =
    "Usage: tokenctl policy show --domain D [--json]\n"
    "       tokenctl policy set --domain D [--max-lifetime DURATION]\n"
    "                           [--require-expiry] [--allowed-scopes A,B]\n"
    "                           [--max-active N]\n"
    "\n"
    "A domain's policy: the longest lifetime a new token may have, whether\n"
    "it must expire, the scopes it may carry and how many active tokens the\n"
    "domain may hold. Issue refuses tokens outside it; tokens already\n"
    "issued are not changed. `set` (operators only) replaces the whole\n"
    "policy: a limit not given is no limit.\n"
    "\n"
    "Options:\n"
    "  -d, --domain D           the domain (required)\n"
    "      --max-lifetime D     e.g. 90d, 12h (set)\n"
    "      --require-expiry     refuse tokens that never expire (set)\n"
    "      --allowed-scopes L   comma-separated scopes a token may have (set)\n"
    "      --max-active N       at most N active tokens in the domain (set)\n"
    "      --json               print one JSON object (show)\n" CTL_ACTOR_HELP
        CTL_COMMON_HELP;

static const ctl_command_t ctl_policy_show_cmd = {"policy show", NULL,
                                                  ctl_policy_usage};
static const ctl_command_t ctl_policy_set_cmd = {"policy set", NULL,
                                                 ctl_policy_usage};

static void print_policy(const char *domain, const tokend_domain_policy_t *p) {
  char when[32];
  size_t i;

  printf("domain:             %s\n", domain);
  if (p->max_lifetime_ms > 0)
    printf("max lifetime:       %lld ms (%.1f days)\n",
           (long long)p->max_lifetime_ms,
           (double)p->max_lifetime_ms / 86400000.0);
  else
    printf("max lifetime:       none\n");
  printf("expiry required:    %s\n", p->require_expiry ? "yes" : "no");
  printf("allowed scopes:     ");
  if (p->n_allowed_scopes == 0)
    printf("any");
  for (i = 0; i < p->n_allowed_scopes; i++)
    printf("%s%s", i ? ", " : "", p->allowed_scopes[i]);
  printf("\n");
  if (p->max_active_tokens > 0)
    printf("max active tokens:  %u\n", (unsigned)p->max_active_tokens);
  else
    printf("max active tokens:  none\n");
  if (p->updated_at > 0) {
    ctl_fmt_iso(p->updated_at, when, sizeof(when));
    printf("set:                %s by %s\n", when, p->updated_by);
  } else {
    printf("set:                never (no policy)\n");
  }
}

static int ctl_policy_show(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"json", no_argument, NULL, OPT_JSON},
      CTL_ACTOR_LONGOPT,
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = &ctl_policy_show_cmd;
  char hint[TOKEND_DOMAIN_BYTES + TOKEND_USER_BYTES + 160];
  tokend_domain_policy_t p;
  tokend_client_t *client;
  const char *domain = NULL;
  json_t *scopes;
  size_t i;
  int c, rc;

  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:", longopts)) != -1) {
    if (c != 'd')
      return ctl_getopt_exit(c);
    domain = optarg;
  }
  if (domain == NULL)
    return ctl_usage_error(cmd, "--domain is required", NULL);
  if (optind < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind]);
  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_get_domain_policy(client, domain, &p);
  if (rc == TOKEND_EPERM)
    ctl_domain_perm_hint(opts, domain, hint, sizeof(hint));
  if (ctl_end_call("policy show", client, rc,
                   rc == TOKEND_EPERM ? hint : NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;
  if (opts->json) {
    scopes = json_array();
    for (i = 0; scopes != NULL && i < p.n_allowed_scopes; i++)
      json_array_append_new(scopes, json_string(p.allowed_scopes[i]));
    return ctl_print_json(json_pack(
        "{s:s, s:I, s:b, s:o, s:I, s:I, s:s}", "domain", domain,
        "max_lifetime_ms", (json_int_t)p.max_lifetime_ms, "require_expiry",
        p.require_expiry, "allowed_scopes", scopes, "max_active_tokens",
        (json_int_t)p.max_active_tokens, "updated_at", (json_int_t)p.updated_at,
        "updated_by", p.updated_by));
  }
  print_policy(domain, &p);
  return CTL_EXIT_OK;
}

/* Splits "a,b" into p's allowed scopes; 0, or TOKEND_EINVAL. */
static int parse_scopes(const char *list, tokend_domain_policy_t *p) {
  const char *s = list, *end;
  size_t len;

  while (*s != '\0') {
    end = strchr(s, ',');
    len = end != NULL ? (size_t)(end - s) : strlen(s);
    if (len == 0 || len >= TOKEND_SCOPE_BYTES ||
        p->n_allowed_scopes == TOKEND_MAX_SCOPES)
      return TOKEND_EINVAL;
    memcpy(p->allowed_scopes[p->n_allowed_scopes], s, len);
    p->allowed_scopes[p->n_allowed_scopes++][len] = '\0';
    s += len;
    if (*s == ',')
      s++;
  }
  return 0;
}

static int ctl_policy_set(ctl_opts_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"domain", required_argument, NULL, 'd'},
      {"max-lifetime", required_argument, NULL, OPT_MAX_LIFETIME},
      {"require-expiry", no_argument, NULL, OPT_REQUIRE_EXPIRY},
      {"allowed-scopes", required_argument, NULL, OPT_ALLOWED_SCOPES},
      {"max-active", required_argument, NULL, OPT_MAX_ACTIVE},
      CTL_COMMON_LONGOPTS,
      {NULL, 0, NULL, 0}};
  const ctl_command_t *cmd = &ctl_policy_set_cmd;
  tokend_domain_policy_t p;
  tokend_client_t *client;
  const char *domain = NULL, *why = NULL;
  unsigned long long n;
  int64_t now = ctl_now_ms(), ms;
  int c, rc;

  memset(&p, 0, sizeof(p));
  while ((c = ctl_getopt(cmd, opts, argc, argv, ":hd:", longopts)) != -1) {
    switch (c) {
    case 'd':
      domain = optarg;
      break;
    case OPT_MAX_LIFETIME:
      if (ctl_parse_duration_ms(optarg, now, &ms, &why) != 0) {
        fprintf(stderr, "tokenctl policy set: --max-lifetime '%s': %s\n",
                optarg, why);
        return CTL_EXIT_ERROR;
      }
      p.max_lifetime_ms = ms;
      break;
    case OPT_REQUIRE_EXPIRY:
      p.require_expiry = 1;
      break;
    case OPT_ALLOWED_SCOPES:
      if (parse_scopes(optarg, &p) != 0)
        return ctl_usage_error(cmd,
                               "--allowed-scopes takes scopes separated by "
                               "commas (at most 32):",
                               optarg);
      break;
    case OPT_MAX_ACTIVE:
      if (ctl_parse_uint(optarg, 2147483647ull, &n) != 0 || n == 0)
        return ctl_usage_error(cmd,
                               "--max-active takes a positive number:", optarg);
      p.max_active_tokens = (uint32_t)n;
      break;
    default:
      return ctl_getopt_exit(c);
    }
  }
  if (domain == NULL)
    return ctl_usage_error(cmd, "--domain is required", NULL);
  if (optind < argc)
    return ctl_usage_error(cmd, "unexpected argument", argv[optind]);
  /* The operator's own act, as managing admins is: acting for a domain
   * admin would record that admin as its author, which no admin may be. */
  if (opts->actor != NULL)
    return ctl_usage_error(cmd,
                           "--actor does not apply: operators set a "
                           "domain's policy as themselves",
                           NULL);
  if (ctl_connect(opts, &client) != 0)
    return CTL_EXIT_ERROR;
  rc = tokend_client_set_domain_policy(client, domain, &p);
  if (ctl_end_call("policy set", client, rc,
                   rc == TOKEND_EPERM ? "only operators set a domain's policy"
                                      : NULL) != CTL_EXIT_OK)
    return CTL_EXIT_ERROR;
  printf("policy of %s set\n", domain);
  return CTL_EXIT_OK;
}

int ctl_policy(ctl_opts_t *opts, int argc, char **argv) {
  const ctl_command_t *cmd = ctl_find_command("policy");

  if (argc < 2) {
    fputs("tokenctl policy: missing subcommand (show or set)\n", stderr);
    fputs(cmd->usage, stderr);
    return CTL_EXIT_ERROR;
  }
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    fputs(cmd->usage, stdout);
    return CTL_EXIT_OK;
  }
  optind = 0;
  if (strcmp(argv[1], "show") == 0)
    return ctl_policy_show(opts, argc - 1, argv + 1);
  if (strcmp(argv[1], "set") == 0)
    return ctl_policy_set(opts, argc - 1, argv + 1);
  fprintf(stderr, "tokenctl policy: unknown subcommand '%s'\n", argv[1]);
  fputs(cmd->usage, stderr);
  return CTL_EXIT_ERROR;
}
