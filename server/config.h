/* config: tokend's command-line flags. */
#ifndef TOKEND_CONFIG_H
#define TOKEND_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "tokend_error.h"
#include "tokend_limits.h"

#define CONFIG_PATH_BYTES 4096
#define CONFIG_DIR_DEFAULT "var"
#define CONFIG_DB_DEFAULT "var/tokend.db"
#define CONFIG_PEPPER_DEFAULT "var/pepper"
#define CONFIG_FLUSH_INTERVAL_MS_DEFAULT 5000
#define CONFIG_SHUTDOWN_TIMEOUT_MS_DEFAULT 5000

typedef struct {
  char socket_path[CONFIG_PATH_BYTES];
  char db_path[CONFIG_PATH_BYTES];
  char pepper_path[CONFIG_PATH_BYTES];
  char token_prefix[TOKEND_PREFIX_MAX_CHARS + 1];
  uint32_t max_frame_bytes;
  uint32_t flush_interval_ms;   /* last_used_at write-back period */
  uint32_t shutdown_timeout_ms; /* how long shutdown waits for peers */
  log_level_t log_level;
  /* 1 when a path is the built-in default under var/, which tokend then
   * creates if missing (an explicit path's directory must exist). */
  int default_dir;
} config_t;

/* Fills cfg with the defaults (honouring $TOKEND_SOCKET). */
void config_defaults(config_t *cfg);

/* Parses argv into cfg (already holding defaults). Returns 0 to run, 1 if
 * --help or --version was printed to out (exit 0), or TOKEND_EINVAL after
 * printing a one-line reason to err (exit 2). */
int config_parse(config_t *cfg, int argc, char **argv, FILE *out,
                 FILE *err) TOKEND_MUST_CHECK;

#endif
