/* log_json: --log-format json, one JSON object per line on stderr, built
 * with jansson (common/log.c knows no JSON library). */
#ifndef TOKEND_LOG_JSON_H
#define TOKEND_LOG_JSON_H

#include <time.h>

#include "log.h"

/* A log_writer_t (log.h): writes {"time": "<ISO-8601 UTC>", "level":
 * "info", "message": "..."} and a newline to stderr in one write. A line
 * jansson cannot build (out of memory) goes out as plain text instead. */
void log_json_write(log_level_t level, const struct timespec *when,
                    const char *msg);

#endif
