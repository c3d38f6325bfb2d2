/* One line per event on stderr: "<ISO-8601 UTC time> <level> <message>".
 * Never pass a token secret to these functions. */
#ifndef TOKEND_LOG_H
#define TOKEND_LOG_H

#include <stdint.h>

typedef enum {
  LOG_DEBUG = 0,
  LOG_INFO = 1,
  LOG_WARN = 2,
  LOG_ERROR = 3
} log_level_t;

/* Lines below level are dropped. Default: LOG_INFO. */
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Parses "debug", "info", "warn" or "error". Returns 0 or TOKEND_EINVAL. */
int log_level_parse(const char *name, log_level_t *out);

void log_msg(log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A rate limit for one kind of repeated line (one per call site): at most
 * one line per interval_ms; lines in between are only counted, and the next
 * line that goes out ends with "(N more like this)". So a failure that
 * repeats thousands of times a second costs one line per interval, and the
 * count says how often it happened. Initialise with LOG_LIMIT_INIT(ms) or
 * log_limit_init(); the caller owns it, and only one thread may use it. */
typedef struct {
  uint64_t interval_ms;
  uint64_t next_ms;    /* monotonic ms before which lines are held back */
  uint64_t suppressed; /* lines held back since the last one out */
  int started;         /* a line has gone out */
} log_limit_t;

#define LOG_LIMIT_INIT(ms)                                                     \
  { (ms), 0, 0, 0 }
/* A limit whose interval is the process's, log_set_repeat_interval(). */
#define LOG_LIMIT_USE_DEFAULT UINT64_MAX
#define LOG_LIMIT_DEFAULT LOG_LIMIT_INIT(LOG_LIMIT_USE_DEFAULT)
#define LOG_REPEAT_INTERVAL_MS_DEFAULT 10000

/* The interval of LOG_LIMIT_DEFAULT limits (default
 * LOG_REPEAT_INTERVAL_MS_DEFAULT). Set it once at start, before any thread
 * logs. */
void log_set_repeat_interval(uint64_t ms);

void log_limit_init(log_limit_t *l, uint64_t interval_ms);

/* The decision alone, at monotonic time now_ms: 1 if a line may go out (then
 * *suppressed gets how many were held back before it, and the count starts
 * again), 0 if it is held back (and counted). */
int log_limit_allow(log_limit_t *l, uint64_t now_ms, uint64_t *suppressed);

/* log_msg() through limit l (at CLOCK_MONOTONIC time). Returns 1 if the line
 * went out, 0 if it was held back or below the level. */
int log_limited(log_limit_t *l, log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
