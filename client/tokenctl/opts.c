/* Option parsing shared by tokenctl's commands (ctl.h): numbers,
 * durations, times, short usage errors and "did you mean". */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- durations ---- */

static const struct {
  const char *name;
  unsigned long long ms;
} ctl_duration_units[] = {
    /* "ms" before "m": the longer unit name is tried first. */
    {"ms", 1ULL},          {"s", 1000ULL},         {"m", 60ULL * 1000},
    {"h", 3600ULL * 1000}, {"d", 86400ULL * 1000}, {"w", 7ULL * 86400 * 1000},
};

static const char ctl_duration_syntax[] =
    "expected whole numbers with units ms, s, m, h, d or w (90s, 15m, 1h30m, "
    "2d12h, 2w)";

int ctl_parse_duration_ms(const char *s, int64_t now_ms, int64_t *out,
                          const char **why) {
  unsigned long long total = 0, n, unit_ms;
  const char *p = s;
  size_t u, len;
  int too_long = 0;

  *why = ctl_duration_syntax;
  if (*p == '\0')
    return TOKEND_EINVAL;
  /* Terms of digits and a unit; any order, as Go's time.ParseDuration. */
  while (*p != '\0') {
    if (*p < '0' || *p > '9')
      return TOKEND_EINVAL;
    /* Past the bound the number is only skipped: no overflow, and a typo
     * later on is still the message. */
    for (n = 0; *p >= '0' && *p <= '9'; p++) {
      if (n <= CTL_DURATION_MAX_MS)
        n = n * 10 + (unsigned)(*p - '0');
    }
    unit_ms = 0;
    for (u = 0; u < sizeof(ctl_duration_units) / sizeof(ctl_duration_units[0]);
         u++) {
      len = strlen(ctl_duration_units[u].name);
      if (strncmp(p, ctl_duration_units[u].name, len) == 0 &&
          (p[len] == '\0' || (p[len] >= '0' && p[len] <= '9'))) {
        unit_ms = ctl_duration_units[u].ms;
        p += len;
        break;
      }
    }
    if (unit_ms == 0)
      return TOKEND_EINVAL;
    /* total <= the bound here, so the sum cannot wrap. */
    if (too_long || n > CTL_DURATION_MAX_MS / unit_ms ||
        total + n * unit_ms > CTL_DURATION_MAX_MS)
      too_long = 1;
    else
      total += n * unit_ms;
  }
  if (too_long) {
    *why = "longer than the limit of 10 years (3653d)";
    return TOKEND_EINVAL;
  }
  if (total == 0) {
    *why = "must be more than 0";
    return TOKEND_EINVAL;
  }
  if (total > (unsigned long long)(INT64_MAX - now_ms)) {
    *why = "too far in the future";
    return TOKEND_EINVAL;
  }
  *out = (int64_t)total;
  return 0;
}

/* ---- times ---- */

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil), so no TZ or libc state is read. */
static int64_t ctl_days_from_civil(int64_t y, unsigned m, unsigned d) {
  int64_t era;
  unsigned yoe, doy, doe;

  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

/* n decimal digits at *p into *out; advances *p. Returns 0 or -1. */
static int ctl_digits(const char **p, int n, unsigned *out) {
  unsigned v = 0;
  int i;

  for (i = 0; i < n; i++) {
    if ((*p)[i] < '0' || (*p)[i] > '9')
      return -1;
    v = v * 10 + (unsigned)((*p)[i] - '0');
  }
  *p += n;
  *out = v;
  return 0;
}

static const char ctl_time_syntax[] =
    "expected a date (2027-01-31, midnight UTC), a date and time with its "
    "zone (2027-01-31T12:00:00Z, 2027-01-31T12:00+02:00) or Unix ms";

int ctl_parse_time_ms(const char *s, int64_t *out, const char **why) {
  static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30,
                                     31, 31, 30, 31, 30, 31};
  unsigned y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, oh, om, frac;
  unsigned long long v;
  int64_t t, offset_ms = 0;
  const char *p = s;
  int leap, sign, nfrac;

  *why = ctl_time_syntax;
  if (s[0] >= '0' && s[0] <= '9' && strchr(s, '-') == NULL) {
    if (ctl_parse_uint(s, INT64_MAX, &v) != 0)
      return TOKEND_EINVAL;
    *out = (int64_t)v;
    return 0;
  }
  if (ctl_digits(&p, 4, &y) != 0 || *p++ != '-' || ctl_digits(&p, 2, &mo) ||
      *p++ != '-' || ctl_digits(&p, 2, &d) != 0)
    return TOKEND_EINVAL;
  if (*p != '\0') {
    if (*p != 'T' && *p != 't' && *p != ' ')
      return TOKEND_EINVAL;
    p++;
    if (ctl_digits(&p, 2, &h) != 0 || *p++ != ':' ||
        ctl_digits(&p, 2, &mi) != 0)
      return TOKEND_EINVAL;
    if (*p == ':') {
      p++;
      if (ctl_digits(&p, 2, &sec) != 0)
        return TOKEND_EINVAL;
      if (*p == '.' || *p == ',') {
        /* Fractions: milliseconds kept, finer digits dropped. */
        p++;
        for (nfrac = 0; *p >= '0' && *p <= '9'; p++, nfrac++) {
          frac = (unsigned)(*p - '0');
          if (nfrac < 3)
            ms = ms * 10 + frac;
        }
        if (nfrac == 0)
          return TOKEND_EINVAL;
        for (; nfrac < 3; nfrac++)
          ms *= 10;
      }
    }
    if (*p == 'Z' || *p == 'z') {
      p++;
    } else if (*p == '+' || *p == '-') {
      sign = *p++ == '-' ? -1 : 1;
      if (ctl_digits(&p, 2, &oh) != 0)
        return TOKEND_EINVAL;
      if (*p == ':')
        p++;
      if (ctl_digits(&p, 2, &om) != 0 || oh > 23 || om > 59)
        return TOKEND_EINVAL;
      offset_ms = sign * ((int64_t)oh * 3600 + (int64_t)om * 60) * 1000;
    } else {
      /* A local time would mean whatever TZ says on this machine. */
      *why = "a date and time needs its zone: Z for UTC, or an offset "
             "such as +02:00";
      return TOKEND_EINVAL;
    }
    if (*p != '\0')
      return TOKEND_EINVAL;
  }
  leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
      (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 59) {
    *why = "not a valid date or time";
    return TOKEND_EINVAL;
  }
  if (y < 1970) {
    *why = "before 1970";
    return TOKEND_EINVAL;
  }
  t = ctl_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 +
      (int64_t)mi * 60 + sec;
  t = t * 1000 + ms - offset_ms;
  if (t < 0) {
    *why = "before 1970";
    return TOKEND_EINVAL;
  }
  *out = t;
  return 0;
}

int64_t ctl_now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- did you mean ---- */

size_t ctl_edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), i, j, prev, cur, sub;
  size_t row[CTL_SUGGEST_MAX_LEN + 1];

  if (la > CTL_SUGGEST_MAX_LEN || lb > CTL_SUGGEST_MAX_LEN)
    return SIZE_MAX;
  /* One row of the Levenshtein table, updated in place. */
  for (j = 0; j <= lb; j++)
    row[j] = j;
  for (i = 1; i <= la; i++) {
    prev = row[0];
    row[0] = i;
    for (j = 1; j <= lb; j++) {
      sub = prev + (a[i - 1] != b[j - 1]);
      cur = row[j] + 1;
      if (row[j - 1] + 1 < cur)
        cur = row[j - 1] + 1;
      if (sub < cur)
        cur = sub;
      prev = row[j];
      row[j] = cur;
    }
  }
  return row[lb];
}

const char *ctl_suggest(const char *given, const char *const *names, size_t n) {
  const char *best = NULL, *prefix_of = NULL;
  size_t i, d, best_d = SIZE_MAX, glen = strlen(given);
  int prefixes = 0;

  for (i = 0; i < n; i++) {
    if (glen > 0 && strncmp(names[i], given, glen) == 0) {
      prefixes++;
      prefix_of = names[i];
    }
    d = ctl_edit_distance(given, names[i]);
    /* Two edits at most, and fewer than the name's length, so that "x"
     * does not suggest "ls". */
    if (d <= 2 && d < strlen(names[i]) && d < best_d) {
      best_d = d;
      best = names[i];
    }
  }
  /* One typo beats a prefix ("revok"); a unique prefix beats two typos
   * ("st" is status's start, though two edits from "list"). */
  if (prefixes == 1 && (best == NULL || best_d > 1))
    best = prefix_of;
  return best;
}

/* ---- getopt and usage errors ---- */

/* The hint line after a usage error: what to run for the whole help. */
static void ctl_try_help(const ctl_command_t *cmd) {
  fprintf(stderr, "try 'tokenctl%s%s --help'\n", cmd->name[0] ? " " : "",
          cmd->name);
}

/* An unknown long option, with the closest one the command takes. */
static void ctl_unknown_option(const ctl_command_t *cmd, const char *arg,
                               const struct option *longopts) {
  const char *names[64], *best;
  char given[CTL_SUGGEST_MAX_LEN + 1];
  size_t n = 0, len;

  fprintf(stderr, "tokenctl%s%s: unknown option '%s'", cmd->name[0] ? " " : "",
          cmd->name, arg);
  if (strncmp(arg, "--", 2) == 0) {
    len = strcspn(arg + 2, "=");
    if (len <= CTL_SUGGEST_MAX_LEN) {
      memcpy(given, arg + 2, len);
      given[len] = '\0';
      for (; longopts[n].name != NULL && n < 64; n++)
        names[n] = longopts[n].name;
      best = ctl_suggest(given, names, n);
      if (best != NULL)
        fprintf(stderr, "; did you mean '--%s'?", best);
    }
  }
  fputc('\n', stderr);
  ctl_try_help(cmd);
}

int ctl_getopt(const ctl_command_t *cmd, ctl_opts_t *opts, int argc,
               char **argv, const char *shortopts,
               const struct option *longopts) {
  unsigned long long v;
  char opt[3] = {'-', 0, 0};
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
                "tokenctl%s%s: --timeout: '%s' is not a number of "
                "milliseconds (0 to %d; 0 waits forever)\n",
                cmd->name[0] ? " " : "", cmd->name, optarg, INT_MAX);
        ctl_try_help(cmd);
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
      if (optopt != 0 && optopt < 256) {
        opt[1] = (char)optopt;
        ctl_unknown_option(cmd, opt, longopts);
      } else {
        ctl_unknown_option(cmd, argv[optind - 1], longopts);
      }
      return CTL_GETOPT_BAD;
    case ':':
      fprintf(stderr, "tokenctl%s%s: option '%s' needs a value\n",
              cmd->name[0] ? " " : "", cmd->name, argv[optind - 1]);
      ctl_try_help(cmd);
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
  fprintf(stderr, "tokenctl%s%s: %s%s%s\n", cmd->name[0] ? " " : "", cmd->name,
          msg, arg != NULL ? " " : "", arg != NULL ? arg : "");
  ctl_try_help(cmd);
  return CTL_EXIT_ERROR;
}

int ctl_unknown_command(const ctl_command_t *parent, const char *what,
                        const char *given, const char *const *names, size_t n) {
  const char *best = ctl_suggest(given, names, n);

  fprintf(stderr, "tokenctl%s%s: unknown %s '%s'", parent->name[0] ? " " : "",
          parent->name, what, given);
  if (best != NULL)
    fprintf(stderr, "; did you mean '%s'?", best);
  fputc('\n', stderr);
  ctl_try_help(parent);
  return CTL_EXIT_ERROR;
}

int ctl_opt_duration(const ctl_command_t *cmd, const char *flag,
                     const char *arg, int64_t now_ms, int64_t *out) {
  const char *why;

  if (ctl_parse_duration_ms(arg, now_ms, out, &why) == 0)
    return 0;
  fprintf(stderr, "tokenctl %s: %s '%s': %s\n", cmd->name, flag, arg, why);
  ctl_try_help(cmd);
  return CTL_EXIT_ERROR;
}

int ctl_opt_time(const ctl_command_t *cmd, const char *flag, const char *arg,
                 int64_t *out) {
  const char *why;

  if (ctl_parse_time_ms(arg, out, &why) == 0)
    return 0;
  fprintf(stderr, "tokenctl %s: %s '%s': %s\n", cmd->name, flag, arg, why);
  ctl_try_help(cmd);
  return CTL_EXIT_ERROR;
}

int ctl_parse_when(const char *s, int64_t now_ms, int64_t *out,
                   const char **why) {
  int64_t ago;

  /* A duration ends in a unit letter; a time is digits or a date. */
  if (ctl_parse_duration_ms(s, 0, &ago, why) == 0) {
    /* Longer ago than 1970 is the same as "all". */
    *out = ago < now_ms ? now_ms - ago : 0;
    return 0;
  }
  if (ctl_parse_time_ms(s, out, why) == 0)
    return 0;
  *why = "expected a duration ago (30m, 1h30m, 2d) or a time: a date "
         "(2027-01-31, midnight UTC), a date and time with its zone "
         "(2027-01-31T12:00:00Z) or Unix ms";
  return TOKEND_EINVAL;
}

int ctl_opt_when(const ctl_command_t *cmd, const char *flag, const char *arg,
                 int64_t now_ms, int64_t *out) {
  const char *why;

  if (ctl_parse_when(arg, now_ms, out, &why) == 0)
    return 0;
  fprintf(stderr, "tokenctl %s: %s '%s': %s\n", cmd->name, flag, arg, why);
  ctl_try_help(cmd);
  return CTL_EXIT_ERROR;
}
