#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tokend_error.h"

static log_level_t current_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level_t level) { current_level = level; }

log_level_t log_get_level(void) { return current_level; }

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

void log_msg(log_level_t level, const char *fmt, ...) {
  char line[1024];
  struct timespec ts;
  struct tm tm;
  size_t n;
  int r;
  va_list ap;

  if (level < current_level)
    return;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
  r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
               ts.tv_nsec / 1000000, level_names[level]);
  if (r > 0)
    n += (size_t)r;
  va_start(ap, fmt);
  r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
  va_end(ap);
  if (r > 0)
    n += (size_t)r;
  if (n > sizeof(line) - 2)
    n = sizeof(line) - 2;
  /* One write per line, so concurrent writers never interleave a line. */
  line[n++] = '\n';
  fwrite(line, 1, n, stderr);
}
