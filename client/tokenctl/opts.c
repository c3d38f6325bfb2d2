/* Option parsing shared by tokenctl's commands (ctl.h). */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

int ctl_parse_uint(const char *s, unsigned long long max,
                   unsigned long long *out) {
  unsigned long long v = 0;
  const char *p;

  if (*s == '\0')
    return TOKEND_EINVAL;
  for (p = s; *p != '\0'; p++) {
    if (*p < '0' || *p > '9')
      return TOKEND_EINVAL;
    /* max < the digit: max - it would wrap, and v * 10 + it > max. */
    if (max < (unsigned)(*p - '0') || v > (max - (unsigned)(*p - '0')) / 10)
      return TOKEND_EINVAL;
    v = v * 10 + (unsigned)(*p - '0');
  }
  *out = v;
  return 0;
}

int ctl_parse_duration_ms(const char *s, int64_t now_ms, int64_t *out,
                          const char **why) {
  unsigned long long n, unit_ms, limit, d;
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
  limit = (unsigned long long)(INT64_MAX - now_ms) / unit_ms;
  for (i = 0; i + 1 < len; i++) {
    d = (unsigned)(s[i] - '0');
    /* limit < d: limit - d would wrap, and the number is already too large
     * (only when now_ms is within a few units of INT64_MAX). */
    if (limit < d || n > (limit - d) / 10)
      return TOKEND_EINVAL;
    n = n * 10 + d;
  }
  if (n == 0) {
    *why = "must be more than 0";
    return TOKEND_EINVAL;
  }
  *out = (int64_t)(n * unit_ms);
  return 0;
}

int64_t ctl_now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ctl_getopt(const ctl_command_t *cmd, ctl_opts_t *opts, int argc,
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

int ctl_getopt_exit(int c) {
  return c == CTL_GETOPT_HELP ? CTL_EXIT_OK : CTL_EXIT_ERROR;
}

int ctl_usage_error(const ctl_command_t *cmd, const char *msg,
                    const char *arg) {
  fprintf(stderr, "tokenctl %s: %s%s%s\n", cmd->name, msg,
          arg != NULL ? " " : "", arg != NULL ? arg : "");
  fputs(cmd->usage, stderr);
  return CTL_EXIT_ERROR;
}
