#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

static const char usage[] =
    "Usage: tokend [OPTION]...\n"
    "Serve API-token Issue/Verify/Revoke/List over a Unix socket.\n"
    "\n"
    "  --socket PATH            socket to listen on (default: $TOKEND_SOCKET,\n"
    "                           else " TOKEND_SOCKET_DEFAULT ")\n"
    "  --db PATH                SQLite database (default: " CONFIG_DB_DEFAULT
    ")\n"
    "  --pepper-file PATH       32-byte hashing key, mode 0600, created on\n"
    "                           first start (default: " CONFIG_PEPPER_DEFAULT
    ")\n"
    "  --token-prefix PREFIX    prefix of new tokens, 1-16 chars of [a-z0-9]\n"
    "                           (default: " TOKEND_PREFIX_DEFAULT ")\n"
    "  --max-frame-bytes N      largest request accepted (default: 1048576)\n"
    "  --flush-interval-ms N    how often last_used_at is written back\n"
    "                           (default: 5000)\n"
    "  --shutdown-timeout-ms N  how long shutdown waits for peers to take\n"
    "                           their last responses (default: 5000)\n"
    "  --max-connections N      connections served at once; more are told\n"
    "                           RESOURCE_EXHAUSTED and closed (default: 1024)\n"
    "  --read-timeout-ms N      close a peer whose request stays incomplete\n"
    "                           this long (default: 10000)\n"
    "  --idle-timeout-ms N      close a peer silent this long; 0: never\n"
    "                           (default: 300000)\n"
    "  --max-queued-bytes N     stop reading from a peer whose unread answers\n"
    "                           exceed N bytes until it reads (default: "
    "1048576)\n"
    "  --max-queued-bytes-hard N  close such a peer past N bytes\n"
    "                           (default: 16777216)\n"
    "  --max-request-memory N   most memory decoding one request may take\n"
    "                           (default: 4194304)\n"
    "  --log-level LEVEL        debug, info, warn or error (default: info)\n"
    "  -h, --help               show this help and exit\n"
    "  --version                show the version and exit\n";

enum {
  OPT_SOCKET = 256,
  OPT_DB,
  OPT_PEPPER,
  OPT_PREFIX,
  OPT_MAX_FRAME,
  OPT_FLUSH,
  OPT_SHUTDOWN,
  OPT_LOG_LEVEL,
  OPT_MAX_CONNS,
  OPT_READ_TIMEOUT,
  OPT_IDLE_TIMEOUT,
  OPT_MAX_QUEUED,
  OPT_MAX_QUEUED_HARD,
  OPT_MAX_REQUEST_MEMORY,
  OPT_VERSION
};

static const struct option long_options[] = {
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"db", required_argument, NULL, OPT_DB},
    {"pepper-file", required_argument, NULL, OPT_PEPPER},
    {"token-prefix", required_argument, NULL, OPT_PREFIX},
    {"max-frame-bytes", required_argument, NULL, OPT_MAX_FRAME},
    {"flush-interval-ms", required_argument, NULL, OPT_FLUSH},
    {"shutdown-timeout-ms", required_argument, NULL, OPT_SHUTDOWN},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
    {"read-timeout-ms", required_argument, NULL, OPT_READ_TIMEOUT},
    {"idle-timeout-ms", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"max-queued-bytes", required_argument, NULL, OPT_MAX_QUEUED},
    {"max-queued-bytes-hard", required_argument, NULL, OPT_MAX_QUEUED_HARD},
    {"max-request-memory", required_argument, NULL, OPT_MAX_REQUEST_MEMORY},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0}};

void config_defaults(config_t *cfg) {
  const char *env = getenv(TOKEND_SOCKET_ENV);

  memset(cfg, 0, sizeof(*cfg));
  snprintf(cfg->socket_path, sizeof(cfg->socket_path), "%s",
           env != NULL && env[0] != '\0' ? env : TOKEND_SOCKET_DEFAULT);
  snprintf(cfg->db_path, sizeof(cfg->db_path), "%s", CONFIG_DB_DEFAULT);
  snprintf(cfg->pepper_path, sizeof(cfg->pepper_path), "%s",
           CONFIG_PEPPER_DEFAULT);
  snprintf(cfg->token_prefix, sizeof(cfg->token_prefix), "%s",
           TOKEND_PREFIX_DEFAULT);
  cfg->max_frame_bytes = TOKEND_MAX_FRAME_BYTES_DEFAULT;
  cfg->flush_interval_ms = CONFIG_FLUSH_INTERVAL_MS_DEFAULT;
  cfg->shutdown_timeout_ms = CONFIG_SHUTDOWN_TIMEOUT_MS_DEFAULT;
  cfg->max_connections = CONFIG_MAX_CONNECTIONS_DEFAULT;
  cfg->read_timeout_ms = CONFIG_READ_TIMEOUT_MS_DEFAULT;
  cfg->idle_timeout_ms = CONFIG_IDLE_TIMEOUT_MS_DEFAULT;
  cfg->max_queued_bytes = CONFIG_MAX_QUEUED_BYTES_DEFAULT;
  cfg->max_queued_bytes_hard = CONFIG_MAX_QUEUED_BYTES_HARD_DEFAULT;
  cfg->max_request_memory = CONFIG_MAX_REQUEST_MEMORY_DEFAULT;
  cfg->log_level = LOG_INFO;
}

static int set_path(char *dst, const char *flag, const char *val, FILE *err) {
  if (val[0] == '\0' || strlen(val) >= CONFIG_PATH_BYTES) {
    fprintf(err, "tokend: %s: path is empty or too long\n", flag);
    return TOKEND_EINVAL;
  }
  memcpy(dst, val, strlen(val) + 1);
  return 0;
}

static int parse_u32(const char *flag, const char *val, uint32_t min,
                     uint32_t max, uint32_t *out, FILE *err) {
  char *end;
  unsigned long long v;

  errno = 0;
  if (val[0] < '0' || val[0] > '9') {
    fprintf(err, "tokend: %s: '%s' is not a number\n", flag, val);
    return TOKEND_EINVAL;
  }
  v = strtoull(val, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) {
    fprintf(err, "tokend: %s: '%s' is not a number from %u to %u\n", flag, val,
            min, max);
    return TOKEND_EINVAL;
  }
  *out = (uint32_t)v;
  return 0;
}

/* The offending option's name: a short one from optopt (argv may still be
 * in the middle of a group like -xh), a long one from the word getopt
 * passed. */
static const char *bad_option_name(char **argv, char *buf, size_t len) {
  if (optopt > 0 && optopt < 256) {
    snprintf(buf, len, "-%c", optopt);
    return buf;
  }
  return argv[optind - 1];
}

int config_parse(config_t *cfg, int argc, char **argv, FILE *out, FILE *err) {
  int c, rc = 0, explicit_paths = 0;
  char name[8];

  /* 0, not 1: glibc then also forgets a half-parsed group of flags. */
  optind = 0;
  opterr = 0;
  while (rc == 0 &&
         (c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_SOCKET:
      rc = set_path(cfg->socket_path, "--socket", optarg, err);
      break;
    case OPT_DB:
      rc = set_path(cfg->db_path, "--db", optarg, err);
      explicit_paths++;
      break;
    case OPT_PEPPER:
      rc = set_path(cfg->pepper_path, "--pepper-file", optarg, err);
      explicit_paths++;
      break;
    case OPT_PREFIX:
      if (token_prefix_check(optarg) != 0) {
        fprintf(err,
                "tokend: --token-prefix: must be 1-16 chars of [a-z0-9]\n");
        rc = TOKEND_EINVAL;
      } else {
        snprintf(cfg->token_prefix, sizeof(cfg->token_prefix), "%s", optarg);
      }
      break;
    case OPT_MAX_FRAME:
      rc = parse_u32("--max-frame-bytes", optarg, 64,
                     TOKEND_MAX_FRAME_BYTES_LIMIT, &cfg->max_frame_bytes, err);
      break;
    case OPT_FLUSH:
      rc = parse_u32("--flush-interval-ms", optarg, 10, 3600000,
                     &cfg->flush_interval_ms, err);
      break;
    case OPT_SHUTDOWN:
      rc = parse_u32("--shutdown-timeout-ms", optarg, 0, 600000,
                     &cfg->shutdown_timeout_ms, err);
      break;
    case OPT_LOG_LEVEL:
      if (log_level_parse(optarg, &cfg->log_level) != 0) {
        fprintf(err,
                "tokend: --log-level: must be debug, info, warn or error\n");
        rc = TOKEND_EINVAL;
      }
      break;
    case OPT_MAX_CONNS:
      rc = parse_u32("--max-connections", optarg, 1, 1000000,
                     &cfg->max_connections, err);
      break;
    case OPT_READ_TIMEOUT:
      rc = parse_u32("--read-timeout-ms", optarg, 10, 3600000,
                     &cfg->read_timeout_ms, err);
      break;
    case OPT_IDLE_TIMEOUT:
      rc = parse_u32("--idle-timeout-ms", optarg, 0, UINT32_MAX / 2,
                     &cfg->idle_timeout_ms, err);
      break;
    case OPT_MAX_QUEUED:
      rc = parse_u32("--max-queued-bytes", optarg, 4096, 1u << 30,
                     &cfg->max_queued_bytes, err);
      break;
    case OPT_MAX_QUEUED_HARD:
      rc = parse_u32("--max-queued-bytes-hard", optarg, 4096, 1u << 30,
                     &cfg->max_queued_bytes_hard, err);
      break;
    case OPT_MAX_REQUEST_MEMORY:
      rc = parse_u32("--max-request-memory", optarg, 4096, 1u << 30,
                     &cfg->max_request_memory, err);
      break;
    case 'h':
      fputs(usage, out);
      return 1;
    case OPT_VERSION:
      fprintf(out, "tokend %s\n", TOKEND_VERSION);
      return 1;
    case ':':
      fprintf(err, "tokend: %s needs a value (see --help)\n",
              bad_option_name(argv, name, sizeof(name)));
      rc = TOKEND_EINVAL;
      break;
    default:
      fprintf(err, "tokend: unknown option '%s' (see --help)\n",
              bad_option_name(argv, name, sizeof(name)));
      rc = TOKEND_EINVAL;
      break;
    }
  }
  if (rc == 0 && optind < argc) {
    fprintf(err, "tokend: unexpected argument '%s' (see --help)\n",
            argv[optind]);
    rc = TOKEND_EINVAL;
  }
  if (rc == 0 && cfg->max_queued_bytes_hard < cfg->max_queued_bytes) {
    fprintf(err, "tokend: --max-queued-bytes-hard must be at least "
                 "--max-queued-bytes\n");
    rc = TOKEND_EINVAL;
  }
  /* Only the all-default layout creates var/ by itself. */
  cfg->default_dir = explicit_paths == 0;
  return rc;
}
