#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tokend_error.h"

static log_level_t current_level = LOG_INFO;
static uint64_t repeat_interval_ms = LOG_REPEAT_INTERVAL_MS_DEFAULT;
static const char *const level_names[] = {"debug", "info", "warn", "error"};
/* syslog priorities (LOG_DEBUG 7 ... LOG_ERR 3), journald's "<N>" */
static const char level_priorities[] = {'7', '6', '4', '3'};
static const char *const format_names[] = {"text", "json"};
static int journal;
static log_writer_t writer;

/* Atomic: SIGHUP changes the level on the loop thread while the store
 * worker logs. */
void log_set_level(log_level_t level) {
  __atomic_store_n(&current_level, level, __ATOMIC_RELAXED);
}

log_level_t log_get_level(void) {
  return __atomic_load_n(&current_level, __ATOMIC_RELAXED);
}

const char *log_level_name(log_level_t level) { return level_names[level]; }

int log_format_parse(const char *name, log_format_t *out) {
  int i;

  for (i = LOG_FORMAT_TEXT; i <= LOG_FORMAT_JSON; i++) {
    if (strcmp(name, format_names[i]) == 0) {
      *out = (log_format_t)i;
      return 0;
    }
  }
  return TOKEND_EINVAL;
}

const char *log_format_name(log_format_t f) { return format_names[f]; }

void log_set_journal(int on) { journal = on; }

void log_set_writer(log_writer_t w) { writer = w; }

int log_level_parse(const char *name, log_level_t *out) {
  int i;

  for (i = LOG_DEBUG; i <= LOG_ERROR; i++) {
    if (strcmp(name, level_names[i]) == 0) {
      *out = (log_level_t)i;
      return 0;
    }
  }
  return TOKEND_EINVAL;
}

/* Formats and writes one line; suffix (may be "") is appended to the
 * message. */
static void log_vline(log_level_t level, const char *suffix, const char *fmt,
                      va_list ap) {
  char line[1024];
  struct timespec ts;
  struct tm tm;
  size_t n, slen = strlen(suffix);
  int r;

  clock_gettime(CLOCK_REALTIME, &ts);
  if (writer != NULL) {
    n = 0;
  } else if (journal) {
    r = snprintf(line, sizeof(line), "<%c>%-5s ", level_priorities[level],
                 level_names[level]);
    n = r > 0 ? (size_t)r : 0;
  } else {
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
                 ts.tv_nsec / 1000000, level_names[level]);
    if (r > 0)
      n += (size_t)r;
  }
  r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
  if (r > 0)
    n += (size_t)r;
  if (n > sizeof(line) - 2)
    n = sizeof(line) - 2;
  /* The count is what makes a limited line honest: it is kept even when the
   * message had to be cut. */
  if (slen > 0 && slen < sizeof(line) - 2) {
    if (n > sizeof(line) - 2 - slen)
      n = sizeof(line) - 2 - slen;
    memcpy(line + n, suffix, slen);
    n += slen;
  }
  if (writer != NULL) {
    line[n] = '\0';
    writer(level, &ts, line);
    return;
  }
  /* One write per line, so concurrent writers never interleave a line. */
  line[n++] = '\n';
  fwrite(line, 1, n, stderr);
}

void log_msg(log_level_t level, const char *fmt, ...) {
  va_list ap;

  if (level < log_get_level())
    return;
  va_start(ap, fmt);
  log_vline(level, "", fmt, ap);
  va_end(ap);
}

void log_limit_init(log_limit_t *l, uint64_t interval_ms) {
  memset(l, 0, sizeof(*l));
  l->interval_ms = interval_ms;
}

void log_set_repeat_interval(uint64_t ms) {
  __atomic_store_n(&repeat_interval_ms, ms, __ATOMIC_RELAXED);
}

int log_limit_allow(log_limit_t *l, uint64_t now_ms, uint64_t *suppressed) {
  uint64_t interval =
      l->interval_ms == LOG_LIMIT_USE_DEFAULT
          ? __atomic_load_n(&repeat_interval_ms, __ATOMIC_RELAXED)
          : l->interval_ms;

  if (l->started && now_ms < l->next_ms) {
    l->suppressed++;
    return 0;
  }
  *suppressed = l->suppressed;
  l->suppressed = 0;
  l->started = 1;
  l->next_ms = now_ms + interval;
  return 1;
}

int log_limited(log_limit_t *l, log_level_t level, const char *fmt, ...) {
  char suffix[64] = "";
  struct timespec ts;
  uint64_t held;
  va_list ap;

  if (level < log_get_level())
    return 0;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  if (!log_limit_allow(
          l, (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u,
          &held))
    return 0;
  if (held > 0)
    snprintf(suffix, sizeof(suffix), " (%llu more like this)",
             (unsigned long long)held);
  va_start(ap, fmt);
  log_vline(level, suffix, fmt, ap);
  va_end(ap);
  return 1;
}
