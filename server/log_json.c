#include "log_json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void log_json_write(log_level_t level, const struct timespec *when,
                    const char *msg) {
  char time[64];
  struct tm tm;
  json_t *line;
  char *text = NULL;
  size_t n;

  gmtime_r(&when->tv_sec, &tm);
  n = strftime(time, sizeof(time), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(time + n, sizeof(time) - n, ".%03ldZ", when->tv_nsec / 1000000);
  line = json_pack("{s:s, s:s, s:s}", "time", time, "level",
                   log_level_name(level), "message", msg);
  /* JSON strings are UTF-8: a message that is not still says that much. */
  if (line == NULL)
    line = json_pack("{s:s, s:s, s:s}", "time", time, "level",
                     log_level_name(level), "message",
                     "(a message that is not valid UTF-8)");
  if (line != NULL)
    text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(line);
  if (text == NULL) {
    fprintf(stderr, "%s %s %s\n", time, log_level_name(level), msg);
    return;
  }
  n = strlen(text);
  /* One write per line, so concurrent writers never interleave a line. */
  text[n] = '\n';
  fwrite(text, 1, n + 1, stderr);
  free(text);
}
