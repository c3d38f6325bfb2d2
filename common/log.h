/* One line per event on stderr: "<ISO-8601 UTC time> <level> <message>".
 * Never pass a token secret to these functions. */
#ifndef TOKEND_LOG_H
#define TOKEND_LOG_H

#include <stdint.h>
#include <time.h>

typedef enum {
  LOG_DEBUG = 0,
  LOG_INFO = 1,
  LOG_WARN = 2,
  LOG_ERROR = 3
} log_level_t;

/* How a line looks: text is "<time> <level> <message>"; json is one
 * object per line, {"time", "level", "message"}, for log shippers. */
typedef enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 } log_format_t;

/* Parses "text" or "json". Returns 0 or TOKEND_EINVAL. */
int log_format_parse(const char *name, log_format_t *out);
const char *log_format_name(log_format_t f);
const char *log_level_name(log_level_t level);

/* Under journald (the caller checks $JOURNAL_STREAM against stderr, as
 * sd-daemon(3) says), text lines start with their syslog priority, "<3>"
 * for error ... "<7>" for debug, and carry no time: journald stamps its
 * own. 0 (the default): plain text lines. */
void log_set_journal(int on);

/* Replaces how lines are written: w gets each line's level, wall-clock
 * time and message (NUL-terminated, no newline), from whichever thread
 * logs, and must write it in one call. NULL: the built-in text lines.
 * Set it at start, before any other thread logs. */
typedef void (*log_writer_t)(log_level_t level, const struct timespec *when,
                             const char *msg);
void log_set_writer(log_writer_t w);

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
 * LOG_REPEAT_INTERVAL_MS_DEFAULT). Any thread may change it (SIGHUP does);
 * limits take the new interval from their next line on. */
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
