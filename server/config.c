#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <ini.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "store/store.h"
#include "token.h"

static const char usage[] =
    "Usage: tokend [OPTION]...\n"
    "Serve API-token Issue/Verify/Revoke/List over a Unix socket.\n"
    "\n"
    "  --socket PATH            socket to listen on (default: $TOKEND_SOCKET,\n"
    "                           else " TOKEND_SOCKET_DEFAULT ")\n"
    "  --socket-mode MODE       the socket's file mode, octal (default: 0600)\n"
    "  --socket-group GROUP     the socket's group, a name or gid (default:\n"
    "                           tokend's)\n"
    "  --operator-uid USER      a user (name or uid) who may do everything;\n"
    "                           repeat for more (default: root and tokend's\n"
    "                           own user)\n"
    "  --operator-group GROUP   members of GROUP may do everything\n"
    "  --verifier-uid USER      a user who may call Verify; once any verifier\n"
    "                           is named, only those (and operators) may\n"
    "                           (default: anyone who can open the socket)\n"
    "  --verifier-group GROUP   members of GROUP may call Verify\n"
    "  --leak-reporter USER     a user (name or uid) who may call\n"
    "                           RevokeLeaked: a secret-scanning webhook\n"
    "                           receiver; repeat for more (default: none;\n"
    "                           operators may)\n"
    "  --store URL              where tokens are stored, by URL: sqlite:PATH\n"
    "                           or postgresql://USER@HOST/DB (a libpq URI;\n"
    "                           its password from ~/.pgpass or PGPASSFILE;\n"
    "                           a path without a scheme is sqlite)\n"
    "  --store-file FILE        read the --store URL from FILE (its first\n"
    "                           line), so that no password sits in argv;\n"
    "                           FILE must not be readable by others\n"
    "  --db PATH                SQLite database, the same as --store\n"
    "                           sqlite:PATH (default: " CONFIG_DB_DEFAULT ")\n"
    "  --pepper-file PATH       32-byte hashing key, mode 0600, created with\n"
    "                           a new database (default: " CONFIG_PEPPER_DEFAULT
    ")\n"
    "  --previous-pepper-file PATH  the pepper rotated away from: tokens\n"
    "                           hashed with it keep verifying and are moved\n"
    "                           to --pepper-file's as they are verified\n"
    "                           (docs/OPERATIONS.md, \"Rotating the pepper\")\n"
    "  --create-db              create the database if it does not exist\n"
    "                           (first start); without it a missing database\n"
    "                           is an error (`make run` passes it)\n"
    "  --read-only              open the database read-only: serve Verify,\n"
    "                           List and other reads; answer every write\n"
    "                           FAILED_PRECONDITION (default: refuse to start\n"
    "                           if the database cannot be written)\n"
    "  --check-db               run a full PRAGMA integrity_check of the\n"
    "                           database, print its result and exit (0: ok,\n"
    "                           1: damaged); does not serve\n"
    "  --token-prefix PREFIX    prefix of new tokens, 1-16 chars of [a-z0-9]\n"
    "                           (default: " TOKEND_PREFIX_DEFAULT ")\n"
    "  --max-frame-bytes N      largest request accepted (default: 1048576)\n"
    "  --flush-interval-ms N    how often last_used_at is written back\n"
    "                           (default: 5000)\n"
    "  --last-used-granularity-ms N  write a token's last_used_at back at\n"
    "                           most once per N ms, and at shutdown; 0: after\n"
    "                           every use (default: 60000)\n"
    "  --busy-poll-us N         after reading requests, keep polling without\n"
    "                           sleeping for N us (0-10000), so a caller's\n"
    "                           next request is seen without a wake-up; burns\n"
    "                           CPU while it waits (default: 0, off)\n"
    "  --shutdown-timeout-ms N  how long shutdown waits for peers to take\n"
    "                           their last responses, and for last_used_at\n"
    "                           to be written back (default: 5000)\n"
    "  --flush-backoff-max-ms N  after failed last_used_at write-backs, wait\n"
    "                           100 ms, doubling, up to N ms between tries\n"
    "                           (default: 60000)\n"
    "  --log-repeat-interval-ms N  a line that a lasting failure repeats\n"
    "                           goes out at most once per N ms, then with\n"
    "                           \"(K more like this)\" (default: 10000)\n"
    "  --allow-core-dumps       let tokend dump core (and be ptraced by its\n"
    "                           own user); secrets stay out of the dump\n"
    "                           (default: not dumpable)\n"
    "  --max-connections N      connections served at once; more are told\n"
    "                           RESOURCE_EXHAUSTED and closed (default: 1024)\n"
    "  --max-connections-per-uid N  connections one non-operator uid may\n"
    "                           hold; more are told RESOURCE_EXHAUSTED and\n"
    "                           closed (default: 256)\n"
    "  --reserved-operator-connections N  of --max-connections, slots only\n"
    "                           operators may take (default: 8, or a quarter\n"
    "                           of --max-connections if that is less)\n"
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
    "  --max-list-memory N      most memory List and ListAuditEvents calls\n"
    "                           in flight may hold for their answers, all\n"
    "                           connections together; more are answered\n"
    "                           RESOURCE_EXHAUSTED (default: 67108864)\n"
    "  --max-read-memory N      most memory the read buffers of requests\n"
    "                           larger than 16 KiB may hold, all connections\n"
    "                           together; a request that would take more is\n"
    "                           answered RESOURCE_EXHAUSTED and its\n"
    "                           connection closed (default: 268435456)\n"
    "  --conn-buffer-pool N     buffer blocks (32 KiB each, left out of core\n"
    "                           dumps) of closed connections kept for new\n"
    "                           ones to reuse without a system call; 0: none\n"
    "                           (default: 64)\n"
    "  --max-pending-calls N    store calls one connection may have in\n"
    "                           flight (Issue, Revoke, List, ..., and audit\n"
    "                           records of its refused calls) before tokend\n"
    "                           stops reading from it (default: 32)\n"
    "  --refusal-audit-interval-ms N  refused calls of one kind (peer uid,\n"
    "                           actor, method, rule): the first is audited\n"
    "                           and logged at once, the repeats as one row\n"
    "                           with their count and one log line per N ms;\n"
    "                           0: a row per refusal (default: 10000)\n"
    "  --refusal-audit-max-keys N  kinds of refusal counted at once (about\n"
    "                           1 KiB each); past it the rest share one row\n"
    "                           per interval (default: 4096)\n"
    "With a store several hosts share (PostgreSQL; docs/DEPLOYMENT.md):\n"
    "  --host-id ID             this host's stable id among the store's hosts\n"
    "                           (default: HOSTNAME:SOCKET-PATH)\n"
    "  --lease-ms N             answer Verify UNAVAILABLE once not caught up\n"
    "                           with the store for N ms; other hosts stop\n"
    "                           waiting for this one after as long (default:\n"
    "                           5000)\n"
    "  --propagation-timeout-ms N  a write (Revoke, Issue, ...) is answered\n"
    "                           once every live host has applied it, or\n"
    "                           after N ms, saying how many had not\n"
    "                           (default: 2000)\n"
    "  --no-issue-wait          answer Issue once committed, without waiting\n"
    "                           for other hosts (Revoke always waits)\n"
    "  --feed-keep N            the change feed keeps the newest N changes\n"
    "                           (and every change a live host has not\n"
    "                           applied); 0: never pruned (default: 100000)\n"
    "  --feed-keep-minutes M    and every change younger than M minutes;\n"
    "                           a host away longer reloads every token\n"
    "                           (default: 10)\n"
    "  --http-listen ADDR       also serve HTTP (forward-auth /verify,\n"
    "                           /metrics, /healthz, /readyz) on ADDR:\n"
    "                           unix:PATH (mode, group and the verifier\n"
    "                           policy as --socket's, for the proxy's uid) or\n"
    "                           IPV4:PORT; repeat for more (default: none)\n"
    "  --http-verify-path PATH  forward-auth's path (default: /verify)\n"
    "  --http-token-header NAME the header holding the token: Authorization\n"
    "                           (\"Bearer <token>\") or another, whose whole\n"
    "                           value is the token (default: Authorization)\n"
    "  --http-tcp-verify        serve /verify on TCP addresses too, where the\n"
    "                           kernel names no peer: anyone who reaches the\n"
    "                           port may verify (default: 403 there)\n"
    "  --log-level LEVEL        debug, info, warn or error (default: info)\n"
    "  --log-format FORMAT      text, or json: one object per line (time,\n"
    "                           level, message) for log shippers (default:\n"
    "                           text; under journald, lines carry their\n"
    "                           syslog priority and no time of their own)\n"
    "  --config FILE            read settings from FILE first: one\n"
    "                           `key = value` per line, keys the long flags'\n"
    "                           names (repeat a key for a list; switches\n"
    "                           take yes or no), # comments; flags given\n"
    "                           here override it; SIGHUP reads it again\n"
    "  --audit-retention-days N  remove audit rows older than N days (checked\n"
    "                           hourly; the removal is itself audited, and\n"
    "                           the chain verifies from the newest removed\n"
    "                           row; default: 0, keep forever)\n"
    "  --check-config           check the settings, print the effective ones\n"
    "                           and exit (0: valid, 2: not)\n"
    "  -h, --help               show this help and exit\n"
    "  --version                show the version and exit\n";

enum {
  OPT_SOCKET = 256,
  OPT_DB,
  OPT_STORE,
  OPT_PEPPER,
  OPT_PREFIX,
  OPT_MAX_FRAME,
  OPT_FLUSH,
  OPT_LAST_USED_GRANULARITY,
  OPT_BUSY_POLL,
  OPT_SHUTDOWN,
  OPT_LOG_LEVEL,
  OPT_MAX_CONNS,
  OPT_MAX_CONNS_PER_UID,
  OPT_RESERVED_OPERATOR_CONNS,
  OPT_READ_TIMEOUT,
  OPT_IDLE_TIMEOUT,
  OPT_MAX_QUEUED,
  OPT_MAX_QUEUED_HARD,
  OPT_MAX_REQUEST_MEMORY,
  OPT_MAX_PENDING_CALLS,
  OPT_MAX_LIST_MEMORY,
  OPT_REFUSAL_AUDIT_INTERVAL,
  OPT_REFUSAL_AUDIT_MAX_KEYS,
  OPT_MAX_READ_MEMORY,
  OPT_CONN_BUFFER_POOL,
  OPT_SOCKET_MODE,
  OPT_SOCKET_GROUP,
  OPT_OPERATOR_UID,
  OPT_OPERATOR_GROUP,
  OPT_VERIFIER_UID,
  OPT_VERIFIER_GROUP,
  OPT_VERSION,
  OPT_FLUSH_BACKOFF_MAX,
  OPT_LOG_REPEAT_INTERVAL,
  OPT_ALLOW_CORE_DUMPS,
  OPT_CREATE_DB,
  OPT_READ_ONLY,
  OPT_CHECK_DB,
  OPT_STORE_FILE,
  OPT_HOST_ID,
  OPT_LEASE,
  OPT_PROPAGATION_TIMEOUT,
  OPT_ISSUE_NO_WAIT,
  /* the HTTP face (issue 14) */
  OPT_HTTP_LISTEN,
  OPT_HTTP_VERIFY_PATH,
  OPT_HTTP_TOKEN_HEADER,
  OPT_HTTP_TCP_VERIFY,
  OPT_CONFIG,
  OPT_CHECK_CONFIG,
  OPT_LOG_FORMAT,
  OPT_AUDIT_RETENTION,
  OPT_LEAK_REPORTER, /* issue 17 */
  /* pruning the change feed (issue 13) */
  OPT_FEED_KEEP,
  OPT_FEED_KEEP_MINUTES,
  OPT_PREVIOUS_PEPPER
};

static const struct option long_options[] = {
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"db", required_argument, NULL, OPT_DB},
    {"store", required_argument, NULL, OPT_STORE},
    {"store-file", required_argument, NULL, OPT_STORE_FILE},
    {"host-id", required_argument, NULL, OPT_HOST_ID},
    {"lease-ms", required_argument, NULL, OPT_LEASE},
    {"propagation-timeout-ms", required_argument, NULL,
     OPT_PROPAGATION_TIMEOUT},
    {"no-issue-wait", no_argument, NULL, OPT_ISSUE_NO_WAIT},
    {"pepper-file", required_argument, NULL, OPT_PEPPER},
    {"previous-pepper-file", required_argument, NULL, OPT_PREVIOUS_PEPPER},
    {"token-prefix", required_argument, NULL, OPT_PREFIX},
    {"max-frame-bytes", required_argument, NULL, OPT_MAX_FRAME},
    {"flush-interval-ms", required_argument, NULL, OPT_FLUSH},
    {"last-used-granularity-ms", required_argument, NULL,
     OPT_LAST_USED_GRANULARITY},
    {"busy-poll-us", required_argument, NULL, OPT_BUSY_POLL},
    {"shutdown-timeout-ms", required_argument, NULL, OPT_SHUTDOWN},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
    {"max-connections-per-uid", required_argument, NULL, OPT_MAX_CONNS_PER_UID},
    {"reserved-operator-connections", required_argument, NULL,
     OPT_RESERVED_OPERATOR_CONNS},
    {"read-timeout-ms", required_argument, NULL, OPT_READ_TIMEOUT},
    {"idle-timeout-ms", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"max-queued-bytes", required_argument, NULL, OPT_MAX_QUEUED},
    {"max-queued-bytes-hard", required_argument, NULL, OPT_MAX_QUEUED_HARD},
    {"max-request-memory", required_argument, NULL, OPT_MAX_REQUEST_MEMORY},
    {"max-pending-calls", required_argument, NULL, OPT_MAX_PENDING_CALLS},
    {"max-list-memory", required_argument, NULL, OPT_MAX_LIST_MEMORY},
    {"refusal-audit-interval-ms", required_argument, NULL,
     OPT_REFUSAL_AUDIT_INTERVAL},
    {"refusal-audit-max-keys", required_argument, NULL,
     OPT_REFUSAL_AUDIT_MAX_KEYS},
    {"max-read-memory", required_argument, NULL, OPT_MAX_READ_MEMORY},
    {"conn-buffer-pool", required_argument, NULL, OPT_CONN_BUFFER_POOL},
    {"socket-mode", required_argument, NULL, OPT_SOCKET_MODE},
    {"socket-group", required_argument, NULL, OPT_SOCKET_GROUP},
    {"operator-uid", required_argument, NULL, OPT_OPERATOR_UID},
    {"operator-group", required_argument, NULL, OPT_OPERATOR_GROUP},
    {"verifier-uid", required_argument, NULL, OPT_VERIFIER_UID},
    {"verifier-group", required_argument, NULL, OPT_VERIFIER_GROUP},
    {"flush-backoff-max-ms", required_argument, NULL, OPT_FLUSH_BACKOFF_MAX},
    {"log-repeat-interval-ms", required_argument, NULL,
     OPT_LOG_REPEAT_INTERVAL},
    {"allow-core-dumps", no_argument, NULL, OPT_ALLOW_CORE_DUMPS},
    {"create-db", no_argument, NULL, OPT_CREATE_DB},
    {"read-only", no_argument, NULL, OPT_READ_ONLY},
    {"check-db", no_argument, NULL, OPT_CHECK_DB},
    {"http-listen", required_argument, NULL, OPT_HTTP_LISTEN},
    {"http-verify-path", required_argument, NULL, OPT_HTTP_VERIFY_PATH},
    {"http-token-header", required_argument, NULL, OPT_HTTP_TOKEN_HEADER},
    {"http-tcp-verify", no_argument, NULL, OPT_HTTP_TCP_VERIFY},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"audit-retention-days", required_argument, NULL, OPT_AUDIT_RETENTION},
    {"leak-reporter", required_argument, NULL, OPT_LEAK_REPORTER},
    {"feed-keep", required_argument, NULL, OPT_FEED_KEEP},
    {"feed-keep-minutes", required_argument, NULL, OPT_FEED_KEEP_MINUTES},
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
  cfg->last_used_granularity_ms = CONFIG_LAST_USED_GRANULARITY_MS_DEFAULT;
  cfg->busy_poll_us = CONFIG_BUSY_POLL_US_DEFAULT;
  cfg->shutdown_timeout_ms = CONFIG_SHUTDOWN_TIMEOUT_MS_DEFAULT;
  cfg->lease_ms = CONFIG_LEASE_MS_DEFAULT;
  cfg->propagation_timeout_ms = CONFIG_PROPAGATION_TIMEOUT_MS_DEFAULT;
  cfg->feed_keep = CONFIG_FEED_KEEP_DEFAULT;
  cfg->feed_keep_minutes = CONFIG_FEED_KEEP_MINUTES_DEFAULT;
  cfg->flush_backoff_max_ms = CONFIG_FLUSH_BACKOFF_MAX_MS_DEFAULT;
  cfg->log_repeat_interval_ms = CONFIG_LOG_REPEAT_INTERVAL_MS_DEFAULT;
  cfg->max_connections = CONFIG_MAX_CONNECTIONS_DEFAULT;
  cfg->max_connections_per_uid = CONFIG_MAX_CONNECTIONS_PER_UID_DEFAULT;
  cfg->reserved_operator_connections =
      CONFIG_RESERVED_OPERATOR_CONNECTIONS_DEFAULT;
  cfg->read_timeout_ms = CONFIG_READ_TIMEOUT_MS_DEFAULT;
  cfg->idle_timeout_ms = CONFIG_IDLE_TIMEOUT_MS_DEFAULT;
  cfg->max_queued_bytes = CONFIG_MAX_QUEUED_BYTES_DEFAULT;
  cfg->max_queued_bytes_hard = CONFIG_MAX_QUEUED_BYTES_HARD_DEFAULT;
  cfg->max_request_memory = CONFIG_MAX_REQUEST_MEMORY_DEFAULT;
  cfg->max_list_memory = CONFIG_MAX_LIST_MEMORY_DEFAULT;
  cfg->max_read_memory = CONFIG_MAX_READ_MEMORY_DEFAULT;
  cfg->conn_buffer_pool = CONFIG_CONN_BUFFER_POOL_DEFAULT;
  cfg->max_pending_calls = CONFIG_MAX_PENDING_CALLS_DEFAULT;
  cfg->refusal_audit_interval_ms = CONFIG_REFUSAL_AUDIT_INTERVAL_MS_DEFAULT;
  cfg->refusal_audit_max_keys = CONFIG_REFUSAL_AUDIT_MAX_KEYS_DEFAULT;
  cfg->log_level = LOG_INFO;
  cfg->socket_mode = 0600;
  cfg->socket_gid = -1;
  cfg->any_verifier = 1;
  snprintf(cfg->http_verify_path, sizeof(cfg->http_verify_path), "%s",
           CONFIG_HTTP_VERIFY_PATH_DEFAULT);
  snprintf(cfg->http_token_header, sizeof(cfg->http_token_header), "%s",
           CONFIG_HTTP_TOKEN_HEADER_DEFAULT);
  /* Default operators: root and the user tokend runs as. */
  cfg->operators.uids[cfg->operators.n_uids++] = 0;
  if (geteuid() != 0)
    cfg->operators.uids[cfg->operators.n_uids++] = (uint32_t)geteuid();
}

/* A number, or a name the system knows (resolved once, at start-up). */
static int parse_id(const char *flag, const char *val, int group, uint32_t *out,
                    FILE *err) {
  char *end;
  unsigned long v;
  struct passwd *pw;
  struct group *gr;

  errno = 0;
  v = strtoul(val, &end, 10);
  if (val[0] >= '0' && val[0] <= '9' && *end == '\0' && errno == 0 &&
      v < UINT32_MAX) {
    *out = (uint32_t)v;
    return 0;
  }
  if (group && (gr = getgrnam(val)) != NULL) {
    *out = (uint32_t)gr->gr_gid;
    return 0;
  }
  if (!group && (pw = getpwnam(val)) != NULL) {
    *out = (uint32_t)pw->pw_uid;
    return 0;
  }
  fprintf(err, "tokend: %s: no such %s '%s'\n", flag, group ? "group" : "user",
          val);
  return TOKEND_EINVAL;
}

static int add_id(const char *flag, const char *val, int group,
                  config_ids_t *ids, FILE *err) {
  uint32_t *list = group ? ids->gids : ids->uids;
  size_t *n = group ? &ids->n_gids : &ids->n_uids;

  if (*n >= CONFIG_MAX_IDS) {
    fprintf(err, "tokend: %s: at most %d may be given\n", flag, CONFIG_MAX_IDS);
    return TOKEND_EINVAL;
  }
  if (parse_id(flag, val, group, &list[*n], err) != 0)
    return TOKEND_EINVAL;
  (*n)++;
  return 0;
}

static int set_path(char *dst, const char *flag, const char *val, FILE *err) {
  if (val[0] == '\0' || strlen(val) >= CONFIG_PATH_BYTES) {
    fprintf(err, "tokend: %s: path is empty or too long\n", flag);
    return TOKEND_EINVAL;
  }
  memcpy(dst, val, strlen(val) + 1);
  return 0;
}

/* --store URL: a scheme this build has, checked now so that a wrong one is
 * a one-line start-up error. db_path gets what messages call the database:
 * for sqlite its path, as --db would have set it; for others the URL
 * without its password (store_url_redact). */
static int set_store(config_t *cfg, const char *flag, const char *url,
                     FILE *err) {
  const struct store_backend *backend;
  const char *location;
  char why[512], redacted[CONFIG_PATH_BYTES];
  int rc;

  if ((rc = set_path(cfg->store_url, flag, url, err)) != 0)
    return rc;
  if (store_url_parse(url, &backend, &location, why, sizeof(why)) != 0) {
    fprintf(err, "tokend: %s\n", why);
    return TOKEND_EINVAL;
  }
  /* Every message names the store by db_path: never with a password. */
  return set_path(cfg->db_path, flag,
                  strcmp(backend->scheme, "sqlite") == 0
                      ? location
                      : store_url_redact(url, redacted, sizeof(redacted)),
                  err);
}

/* --store-file FILE: the URL on FILE's first line. A file others can read
 * would show them the password it may hold: refused, as ssh refuses such a
 * key. */
static int set_store_file(config_t *cfg, const char *flag, const char *path,
                          FILE *err) {
  char line[CONFIG_PATH_BYTES + 2];
  struct stat st;
  size_t n;
  FILE *f;
  int rc;

  if ((f = fopen(path, "re")) == NULL) {
    fprintf(err, "tokend: %s %s: %s\n", flag, path, strerror(errno));
    return TOKEND_EINVAL;
  }
  if (fstat(fileno(f), &st) != 0 || (st.st_mode & 0077) != 0) {
    fprintf(err,
            "tokend: %s %s: readable by others (mode %04o); "
            "chmod 600 it (it may hold a password)\n",
            flag, path, (unsigned)(st.st_mode & 07777));
    fclose(f);
    return TOKEND_EINVAL;
  }
  if (fgets(line, sizeof(line), f) == NULL) {
    fprintf(err, "tokend: %s %s: empty\n", flag, path);
    fclose(f);
    return TOKEND_EINVAL;
  }
  fclose(f);
  n = strcspn(line, "\r\n");
  if (line[n] == '\0' && n >= CONFIG_PATH_BYTES) {
    fprintf(err, "tokend: %s %s: first line too long\n", flag, path);
    return TOKEND_EINVAL;
  }
  line[n] = '\0';
  rc = set_store(cfg, flag, line, err);
  explicit_bzero(line, sizeof(line));
  return rc;
}

/* --host-id: what the hosts table and pg_stat_activity show; printable
 * ASCII without spaces, so it is one word in a log line. */
static int set_host_id(config_t *cfg, const char *flag, const char *id,
                       FILE *err) {
  size_t i, n = strlen(id);

  if (n == 0 || n >= CONFIG_HOST_ID_BYTES - 1) {
    fprintf(err, "tokend: %s: 1 to %d characters\n", flag,
            CONFIG_HOST_ID_BYTES - 2);
    return TOKEND_EINVAL;
  }
  for (i = 0; i < n; i++) {
    if (id[i] <= ' ' || id[i] > '~') {
      fprintf(err, "tokend: %s: printable ASCII without spaces\n", flag);
      return TOKEND_EINVAL;
    }
  }
  memcpy(cfg->host_id, id, n + 1);
  return 0;
}

const char *config_host_id(const config_t *cfg, char *buf, size_t len) {
  char host[64];

  if (cfg->host_id[0] != '\0') {
    snprintf(buf, len, "%s", cfg->host_id);
    return buf;
  }
  if (gethostname(host, sizeof(host)) != 0)
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';
  snprintf(buf, len, "%s:%.*s", host, (int)(len > 66 ? len - 66 : 0),
           cfg->socket_path);
  return buf;
}

const char *config_store_url(const config_t *cfg, char *buf, size_t len) {
  if (cfg->store_url[0] != '\0')
    snprintf(buf, len, "%s", cfg->store_url);
  else
    snprintf(buf, len, "sqlite:%s", cfg->db_path);
  return buf;
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

int config_http_addr_parse(const char *s, config_http_addr_t *out, char *why,
                           size_t len) {
  struct in_addr a;
  const char *colon;
  char *end;
  unsigned long port;
  size_t n;

  memset(out, 0, sizeof(*out));
  if (strncmp(s, "unix:", 5) == 0) {
    n = strlen(s + 5);
    if (n == 0 || n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
      snprintf(why, len, "unix: path is empty or longer than %zu bytes",
               sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
      return TOKEND_EINVAL;
    }
    out->is_unix = 1;
    memcpy(out->path, s + 5, n + 1);
    return 0;
  }
  colon = strrchr(s, ':');
  n = colon != NULL ? (size_t)(colon - s) : 0;
  if (colon == NULL || n == 0 || n >= sizeof(out->host)) {
    snprintf(why, len, "'%.64s' is neither unix:PATH nor IPV4:PORT", s);
    return TOKEND_EINVAL;
  }
  memcpy(out->host, s, n);
  out->host[n] = '\0';
  errno = 0;
  port = strtoul(colon + 1, &end, 10);
  if (inet_pton(AF_INET, out->host, &a) != 1 || colon[1] < '0' ||
      colon[1] > '9' || *end != '\0' || errno != 0 || port > 65535) {
    snprintf(why, len,
             "'%.64s' is not IPV4:PORT (an IPv4 address, a port "
             "from 0 to 65535)",
             s);
    return TOKEND_EINVAL;
  }
  out->port = (uint16_t)port;
  return 0;
}

/* The HTTP face's flags. A header name or path with a space, CR or LF
 * could not be matched against any request: refused here. */
static int set_http(config_t *cfg, int opt, const char *val, FILE *err) {
  config_http_addr_t addr;
  char why[160];
  const char *p;

  switch (opt) {
  case OPT_HTTP_LISTEN:
    if (cfg->n_http_listen == CONFIG_HTTP_LISTEN_MAX) {
      fprintf(err, "tokend: --http-listen: at most %d addresses\n",
              CONFIG_HTTP_LISTEN_MAX);
      return TOKEND_EINVAL;
    }
    if (config_http_addr_parse(val, &addr, why, sizeof(why)) != 0) {
      fprintf(err, "tokend: --http-listen: %s\n", why);
      return TOKEND_EINVAL;
    }
    return set_path(cfg->http_listen[cfg->n_http_listen++], "--http-listen",
                    val, err);
  case OPT_HTTP_TCP_VERIFY:
    cfg->http_tcp_verify = 1;
    return 0;
  default:
    break;
  }
  for (p = val; *p != '\0'; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f)
      break;
  if (val[0] == '\0' || *p != '\0' || strlen(val) >= CONFIG_HTTP_NAME_BYTES ||
      (opt == OPT_HTTP_VERIFY_PATH && val[0] != '/')) {
    fprintf(err,
            "tokend: %s: '%.64s' must be %s of at most %d printable "
            "characters\n",
            opt == OPT_HTTP_VERIFY_PATH ? "--http-verify-path"
                                        : "--http-token-header",
            val,
            opt == OPT_HTTP_VERIFY_PATH ? "a path starting with /"
                                        : "a header name",
            CONFIG_HTTP_NAME_BYTES - 1);
    return TOKEND_EINVAL;
  }
  memcpy(opt == OPT_HTTP_VERIFY_PATH ? cfg->http_verify_path
                                     : cfg->http_token_header,
         val, strlen(val) + 1);
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

/* What the sources read so far (the file, then the command line) have set.
 * Naming operators or verifiers in a source replaces the list before it
 * (the default, or the file's): flags override the file, lists included. */
typedef struct {
  int explicit_paths;    /* --db, --store, --pepper-file, ... (any source) */
  int explicit_reserved; /* --reserved-operator-connections (any source) */
  int source_operators;  /* this source named an operator */
  int source_verifiers;  /* this source named a verifier */
  int source_leak;       /* this source named a --leak-reporter */
  int source_http;       /* this source named an --http-listen address */
} parse_state_t;

/* A switch: on the command line it takes no value (val NULL: on); in the
 * file, "yes" or "no". */
static int parse_bool(const char *flag, const char *val, int *out, FILE *err) {
  /* yes and no, as the installed file writes them; true and false too,
   * which a hand-written file may well say. */
  if (val == NULL || strcmp(val, "yes") == 0 || strcmp(val, "true") == 0) {
    *out = 1;
    return 0;
  }
  if (strcmp(val, "no") == 0 || strcmp(val, "false") == 0) {
    *out = 0;
    return 0;
  }
  fprintf(err, "tokend: %s: '%s' is not yes or no\n", flag, val);
  return TOKEND_EINVAL;
}

/* Applies one setting, option c with value val (NULL for a switch given on
 * the command line), to cfg. flag names it in messages: "--max-connections"
 * on the command line, "FILE:LINE: max-connections" from a file. Returns 0
 * or TOKEND_EINVAL after printing one line to err. */
static int config_apply(config_t *cfg, parse_state_t *st, int c,
                        const char *flag, const char *val, FILE *err) {
  int rc = 0;

  switch (c) {
  case OPT_SOCKET:
    rc = set_path(cfg->socket_path, flag, val, err);
    break;
  case OPT_DB:
    rc = set_path(cfg->db_path, flag, val, err);
    cfg->store_url[0] = '\0';
    st->explicit_paths++;
    break;
  case OPT_STORE:
    rc = set_store(cfg, flag, val, err);
    st->explicit_paths++;
    break;
  case OPT_STORE_FILE:
    rc = set_store_file(cfg, flag, val, err);
    st->explicit_paths++;
    break;
  case OPT_HOST_ID:
    rc = set_host_id(cfg, flag, val, err);
    break;
  case OPT_LEASE:
    rc = parse_u32(flag, val, 100, 3600000, &cfg->lease_ms, err);
    break;
  case OPT_PROPAGATION_TIMEOUT:
    rc = parse_u32(flag, val, 0, 600000, &cfg->propagation_timeout_ms, err);
    break;
  case OPT_ISSUE_NO_WAIT:
    rc = parse_bool(flag, val, &cfg->issue_no_wait, err);
    break;
  case OPT_PEPPER:
    rc = set_path(cfg->pepper_path, flag, val, err);
    st->explicit_paths++;
    break;
  case OPT_PREVIOUS_PEPPER:
    rc = set_path(cfg->previous_pepper_path, flag, val, err);
    break;
  case OPT_PREFIX:
    if (token_prefix_check(val) != 0) {
      fprintf(err, "tokend: %s: must be 1-16 chars of [a-z0-9]\n", flag);
      rc = TOKEND_EINVAL;
    } else {
      snprintf(cfg->token_prefix, sizeof(cfg->token_prefix), "%s", val);
    }
    break;
  case OPT_MAX_FRAME:
    rc = parse_u32(flag, val, 64, TOKEND_MAX_FRAME_BYTES_LIMIT,
                   &cfg->max_frame_bytes, err);
    break;
  case OPT_FLUSH:
    rc = parse_u32(flag, val, 10, 3600000, &cfg->flush_interval_ms, err);
    break;
  case OPT_LAST_USED_GRANULARITY:
    rc = parse_u32(flag, val, 0, 86400000, &cfg->last_used_granularity_ms, err);
    break;
  case OPT_BUSY_POLL:
    rc = parse_u32(flag, val, 0, CONFIG_BUSY_POLL_US_MAX, &cfg->busy_poll_us,
                   err);
    break;
  case OPT_SHUTDOWN:
    rc = parse_u32(flag, val, 0, 600000, &cfg->shutdown_timeout_ms, err);
    break;
  case OPT_FLUSH_BACKOFF_MAX:
    rc = parse_u32(flag, val, CONFIG_FLUSH_BACKOFF_MIN_MS, 3600000,
                   &cfg->flush_backoff_max_ms, err);
    break;
  case OPT_LOG_REPEAT_INTERVAL:
    rc = parse_u32(flag, val, 0, 3600000, &cfg->log_repeat_interval_ms, err);
    break;
  case OPT_ALLOW_CORE_DUMPS:
    rc = parse_bool(flag, val, &cfg->allow_core_dumps, err);
    break;
  case OPT_LOG_LEVEL:
    if (log_level_parse(val, &cfg->log_level) != 0) {
      fprintf(err, "tokend: %s: must be debug, info, warn or error\n", flag);
      rc = TOKEND_EINVAL;
    }
    break;
  case OPT_MAX_CONNS:
    rc = parse_u32(flag, val, 1, 1000000, &cfg->max_connections, err);
    break;
  case OPT_MAX_CONNS_PER_UID:
    rc = parse_u32(flag, val, 1, 1000000, &cfg->max_connections_per_uid, err);
    break;
  case OPT_RESERVED_OPERATOR_CONNS:
    rc = parse_u32(flag, val, 0, 1000000, &cfg->reserved_operator_connections,
                   err);
    st->explicit_reserved = 1;
    break;
  case OPT_READ_TIMEOUT:
    rc = parse_u32(flag, val, 10, 3600000, &cfg->read_timeout_ms, err);
    break;
  case OPT_IDLE_TIMEOUT:
    rc = parse_u32(flag, val, 0, UINT32_MAX / 2, &cfg->idle_timeout_ms, err);
    break;
  case OPT_MAX_QUEUED:
    rc = parse_u32(flag, val, 4096, 1u << 30, &cfg->max_queued_bytes, err);
    break;
  case OPT_MAX_QUEUED_HARD:
    rc = parse_u32(flag, val, 4096, 1u << 30, &cfg->max_queued_bytes_hard, err);
    break;
  case OPT_MAX_REQUEST_MEMORY:
    rc = parse_u32(flag, val, 4096, 1u << 30, &cfg->max_request_memory, err);
    break;
  case OPT_SOCKET_MODE: {
    char *end;
    unsigned long mode;
    errno = 0;
    mode = strtoul(val, &end, 8);
    if (val[0] == '\0' || *end != '\0' || errno != 0 || mode > 0777 ||
        (mode & 0600) != 0600) {
      fprintf(err,
              "tokend: %s: '%s' is not an octal mode from "
              "0600 to 0777 that lets tokend's user read and write\n",
              flag, val);
      rc = TOKEND_EINVAL;
    } else {
      cfg->socket_mode = (uint32_t)mode;
    }
    break;
  }
  case OPT_SOCKET_GROUP: {
    uint32_t gid;
    rc = parse_id(flag, val, 1, &gid, err);
    if (rc == 0)
      cfg->socket_gid = gid;
    break;
  }
  case OPT_OPERATOR_UID:
  case OPT_OPERATOR_GROUP:
    /* Naming any operator replaces the default ones. */
    if (!st->source_operators) {
      memset(&cfg->operators, 0, sizeof(cfg->operators));
      st->source_operators = 1;
    }
    rc = add_id(flag, val, c == OPT_OPERATOR_GROUP, &cfg->operators, err);
    break;
  case OPT_VERIFIER_UID:
  case OPT_VERIFIER_GROUP:
    /* As operators: a source's verifiers replace the earlier ones. */
    if (!st->source_verifiers) {
      memset(&cfg->verifiers, 0, sizeof(cfg->verifiers));
      st->source_verifiers = 1;
    }
    rc = add_id(flag, val, c == OPT_VERIFIER_GROUP, &cfg->verifiers, err);
    cfg->any_verifier = 0;
    break;
  case OPT_LEAK_REPORTER:
    /* As operators: a source's leak reporters replace the earlier ones. */
    if (!st->source_leak) {
      memset(&cfg->leak_reporters, 0, sizeof(cfg->leak_reporters));
      st->source_leak = 1;
    }
    /* "uid:N" as tokend names users (the audit log's actor), a uid, or
     * a user name. */
    rc = add_id(flag, strncmp(val, "uid:", 4) == 0 ? val + 4 : val, 0,
                &cfg->leak_reporters, err);
    break;
  case OPT_MAX_PENDING_CALLS:
    rc = parse_u32(flag, val, 1, 100000, &cfg->max_pending_calls, err);
    break;
  case OPT_REFUSAL_AUDIT_INTERVAL:
    rc = parse_u32(flag, val, 0, CONFIG_REFUSAL_AUDIT_INTERVAL_MS_MAX,
                   &cfg->refusal_audit_interval_ms, err);
    break;
  case OPT_REFUSAL_AUDIT_MAX_KEYS:
    rc = parse_u32(flag, val, 1, CONFIG_REFUSAL_AUDIT_MAX_KEYS_MAX,
                   &cfg->refusal_audit_max_keys, err);
    break;
  case OPT_MAX_LIST_MEMORY:
    rc = parse_u32(flag, val, CONFIG_MAX_LIST_MEMORY_MIN, UINT32_MAX,
                   &cfg->max_list_memory, err);
    break;
  case OPT_CREATE_DB:
    rc = parse_bool(flag, val, &cfg->create_db, err);
    break;
  case OPT_READ_ONLY:
    rc = parse_bool(flag, val, &cfg->read_only, err);
    break;
  case OPT_CHECK_DB:
    rc = parse_bool(flag, val, &cfg->check_db, err);
    break;
  case OPT_MAX_READ_MEMORY:
    rc = parse_u32(flag, val, CONFIG_MAX_READ_MEMORY_MIN, UINT32_MAX,
                   &cfg->max_read_memory, err);
    break;
  case OPT_CONN_BUFFER_POOL:
    rc = parse_u32(flag, val, 0, CONFIG_CONN_BUFFER_POOL_MAX,
                   &cfg->conn_buffer_pool, err);
    break;
  case OPT_HTTP_LISTEN:
    /* As operators: a source's addresses replace the earlier ones. */
    if (!st->source_http) {
      cfg->n_http_listen = 0;
      st->source_http = 1;
    }
    rc = set_http(cfg, c, val, err);
    break;
  case OPT_HTTP_VERIFY_PATH:
  case OPT_HTTP_TOKEN_HEADER:
    rc = set_http(cfg, c, val, err);
    break;
  case OPT_HTTP_TCP_VERIFY:
    rc = parse_bool(flag, val, &cfg->http_tcp_verify, err);
    break;
  case OPT_AUDIT_RETENTION:
    rc = parse_u32(flag, val, 0, CONFIG_AUDIT_RETENTION_DAYS_MAX,
                   &cfg->audit_retention_days, err);
    break;
  case OPT_FEED_KEEP:
    rc = parse_u32(flag, val, 0, CONFIG_FEED_KEEP_MAX, &cfg->feed_keep, err);
    break;
  case OPT_FEED_KEEP_MINUTES:
    rc = parse_u32(flag, val, 0, CONFIG_FEED_KEEP_MINUTES_MAX,
                   &cfg->feed_keep_minutes, err);
    break;
  case OPT_LOG_FORMAT:
    if (log_format_parse(val, &cfg->log_format) != 0) {
      fprintf(err, "tokend: %s: must be text or json\n", flag);
      rc = TOKEND_EINVAL;
    }
    break;
  default:
    /* Only options config_file_key and config_parse hand over get here. */
    fprintf(err, "tokend: %s: not a setting\n", flag);
    rc = TOKEND_EINVAL;
    break;
  }
  return rc;
}

/* Options that are actions, or name the file itself: not keys of it. */
static int config_file_key_allowed(int c) {
  return c != 'h' && c != OPT_VERSION && c != OPT_CONFIG &&
         c != OPT_CHECK_CONFIG && c != OPT_CHECK_DB;
}

/* Reading --config FILE with libinih: its line counted here, by the
 * reader, so that every message names FILE:LINE. */
typedef struct {
  config_t *cfg;
  parse_state_t *st;
  const char *path;
  FILE *f;
  FILE *err;
  int lineno;
  int too_long;     /* the first line longer than inih's buffer, or 0 */
  int error_lineno; /* the first line a setting failed on, or 0 */
} config_file_t;

/* inih's reader: fgets that counts lines. Debian builds inih with lines of
 * at most INI_MAX_LINE bytes; a longer one is an error here, not cut into
 * two settings as inih would. Leading blanks are dropped: to inih an
 * indented line would continue the previous key's value, silently. */
static char *config_file_read(char *str, int num, void *stream) {
  config_file_t *cf = stream;
  size_t n;
  int ch;

  if (fgets(str, num, cf->f) == NULL)
    return NULL;
  cf->lineno++;
  n = strlen(str);
  if (n == (size_t)num - 1 && str[n - 1] != '\n' && !feof(cf->f)) {
    while ((ch = fgetc(cf->f)) != EOF && ch != '\n')
      ;
    if (cf->too_long == 0)
      cf->too_long = cf->lineno;
    str[0] = '\0';
  }
  n = strspn(str, " \t");
  memmove(str, str + n, strlen(str + n) + 1);
  return str;
}

/* inih's handler, once per "key = value" line: the key is a long option's
 * name. Returns 1 (go on) or 0 (an error, already printed). */
static int config_file_setting(void *user, const char *section,
                               const char *name, const char *value) {
  config_file_t *cf = user;
  const struct option *o;
  char flag[CONFIG_PATH_BYTES + 160];
  int rc = TOKEND_EINVAL;

  snprintf(flag, sizeof(flag), "%s:%d: %s", cf->path, cf->lineno, name);
  if (section[0] != '\0') {
    fprintf(cf->err, "tokend: %s: sections ([%s]) are not used\n", flag,
            section);
    goto out;
  }
  for (o = long_options; o->name != NULL; o++)
    if (strcmp(o->name, name) == 0 && config_file_key_allowed(o->val))
      break;
  if (o->name == NULL) {
    fprintf(cf->err, "tokend: %s: unknown key (see tokend --help)\n", flag);
    goto out;
  }
  if (o->has_arg == no_argument || value[0] != '\0')
    rc = config_apply(cf->cfg, cf->st, o->val, flag, value, cf->err);
  else
    fprintf(cf->err, "tokend: %s: needs a value\n", flag);
out:
  if (rc != 0 && cf->error_lineno == 0)
    cf->error_lineno = cf->lineno;
  return rc == 0;
}

/* Reads --config FILE into cfg. Returns 0 or TOKEND_EINVAL after printing
 * at least one line (the first bad line's) to err. */
static int config_file_parse(config_t *cfg, parse_state_t *st, const char *path,
                             FILE *err) {
  config_file_t cf = {.cfg = cfg, .st = st, .path = path, .err = err};
  int line;

  if ((cf.f = fopen(path, "re")) == NULL) {
    fprintf(err, "tokend: --config %s: %s\n", path, strerror(errno));
    return TOKEND_EINVAL;
  }
  line = ini_parse_stream(config_file_read, &cf, config_file_setting, &cf);
  fclose(cf.f);
  if (cf.too_long != 0 && (line <= 0 || cf.too_long <= line)) {
    fprintf(err, "tokend: %s:%d: line longer than %d characters\n", path,
            cf.too_long, INI_MAX_LINE - 2);
    return TOKEND_EINVAL;
  }
  if (line < 0) {
    fprintf(err, "tokend: --config %s: cannot read it\n", path);
    return TOKEND_EINVAL;
  }
  /* A line that is no setting at all: inih returns it, unannounced. */
  if (line > 0 && line != cf.error_lineno)
    fprintf(err, "tokend: %s:%d: not a `key = value` line\n", path, line);
  return line == 0 ? 0 : TOKEND_EINVAL;
}

/* The long option's name for messages: "--max-connections". */
static const char *flag_name(int longindex, char *buf, size_t len) {
  snprintf(buf, len, "--%s", long_options[longindex].name);
  return buf;
}

int config_parse(config_t *cfg, int argc, char **argv, FILE *out, FILE *err) {
  parse_state_t st = {0};
  const char *file = NULL;
  char name[8], flag[64];
  int c, idx, rc = 0;

  /* First the file named by --config (the last one given), so that the
   * command line, read next, overrides it. 0, not 1: glibc then also
   * forgets a half-parsed group of flags. */
  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1)
    if (c == OPT_CONFIG)
      file = optarg;
  if (file != NULL) {
    if ((rc = set_path(cfg->config_path, "--config", file, err)) == 0)
      rc = config_file_parse(cfg, &st, file, err);
  }
  st.source_operators = st.source_verifiers = st.source_http = 0;
  st.source_leak = 0;
  optind = 0;
  while (rc == 0 &&
         (c = getopt_long(argc, argv, ":h", long_options, &idx)) != -1) {
    switch (c) {
    case 'h':
      fputs(usage, out);
      return 1;
    case OPT_VERSION:
      fprintf(out, "tokend %s\n", TOKEND_VERSION);
      return 1;
    case OPT_CONFIG:
      break;
    case OPT_CHECK_CONFIG:
      cfg->check_config = 1;
      break;
    case ':':
      fprintf(err, "tokend: %s needs a value (see --help)\n",
              bad_option_name(argv, name, sizeof(name)));
      rc = TOKEND_EINVAL;
      break;
    case '?':
      fprintf(err, "tokend: unknown option '%s' (see --help)\n",
              bad_option_name(argv, name, sizeof(name)));
      rc = TOKEND_EINVAL;
      break;
    default:
      rc = config_apply(cfg, &st, c, flag_name(idx, flag, sizeof(flag)), optarg,
                        err);
      break;
    }
  }
  if (rc == 0 && optind < argc) {
    fprintf(err, "tokend: unexpected argument '%s' (see --help)\n",
            argv[optind]);
    rc = TOKEND_EINVAL;
  }
  /* Checked here, before any file is created, as well as at bind. */
  if (rc == 0 &&
      strlen(cfg->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(err,
            "tokend: --socket: path is %zu bytes; a Unix socket path must be "
            "shorter than %zu\n",
            strlen(cfg->socket_path),
            sizeof(((struct sockaddr_un *)0)->sun_path));
    rc = TOKEND_EINVAL;
  }
  if (rc == 0 && cfg->max_queued_bytes_hard < cfg->max_queued_bytes) {
    fprintf(err, "tokend: --max-queued-bytes-hard must be at least "
                 "--max-queued-bytes\n");
    rc = TOKEND_EINVAL;
  }
  if (rc == 0 && cfg->create_db && cfg->read_only) {
    fprintf(err, "tokend: --create-db and --read-only exclude each other\n");
    rc = TOKEND_EINVAL;
  }
  /* The default reserve must leave non-operators most of a small limit;
   * one given explicitly must leave them at least one slot. */
  if (rc == 0 && !st.explicit_reserved &&
      cfg->reserved_operator_connections > cfg->max_connections / 4)
    cfg->reserved_operator_connections = cfg->max_connections / 4;
  if (rc == 0 && cfg->reserved_operator_connections >= cfg->max_connections) {
    fprintf(err, "tokend: --reserved-operator-connections must be less than "
                 "--max-connections\n");
    rc = TOKEND_EINVAL;
  }
  /* Only the all-default layout creates var/ by itself. */
  cfg->default_dir = st.explicit_paths == 0;
  return rc;
}

static void print_ids(FILE *out, const char *uid_key, const char *gid_key,
                      const config_ids_t *ids) {
  size_t i;

  for (i = 0; i < ids->n_uids; i++)
    fprintf(out, "%s = %u\n", uid_key, (unsigned)ids->uids[i]);
  for (i = 0; i < ids->n_gids; i++)
    fprintf(out, "%s = %u\n", gid_key, (unsigned)ids->gids[i]);
}

void config_print(const config_t *cfg, FILE *out) {
  char redacted[CONFIG_PATH_BYTES];

#define PRINT_U32(key, field) fprintf(out, key " = %u\n", (unsigned)cfg->field)
#define PRINT_BOOL(key, field)                                                 \
  fprintf(out, key " = %s\n", cfg->field ? "yes" : "no")
  fprintf(out, "socket = %s\n", cfg->socket_path);
  fprintf(out, "socket-mode = %04o\n", (unsigned)cfg->socket_mode);
  if (cfg->socket_gid >= 0)
    fprintf(out, "socket-group = %lld\n", (long long)cfg->socket_gid);
  print_ids(out, "operator-uid", "operator-group", &cfg->operators);
  if (!cfg->any_verifier)
    print_ids(out, "verifier-uid", "verifier-group", &cfg->verifiers);
  print_ids(out, "leak-reporter", "leak-reporter", &cfg->leak_reporters);
  /* The URL may carry a password (--store-file keeps it out of argv): the
   * printout must not show it. */
  if (cfg->store_url[0] != '\0')
    fprintf(out, "store = %s\n",
            store_url_redact(cfg->store_url, redacted, sizeof(redacted)));
  else
    fprintf(out, "db = %s\n", cfg->db_path);
  fprintf(out, "pepper-file = %s\n", cfg->pepper_path);
  if (cfg->previous_pepper_path[0] != '\0')
    fprintf(out, "previous-pepper-file = %s\n", cfg->previous_pepper_path);
  PRINT_BOOL("create-db", create_db);
  PRINT_BOOL("read-only", read_only);
  fprintf(out, "token-prefix = %s\n", cfg->token_prefix);
  PRINT_U32("max-frame-bytes", max_frame_bytes);
  PRINT_U32("flush-interval-ms", flush_interval_ms);
  PRINT_U32("last-used-granularity-ms", last_used_granularity_ms);
  PRINT_U32("busy-poll-us", busy_poll_us);
  PRINT_U32("shutdown-timeout-ms", shutdown_timeout_ms);
  PRINT_U32("flush-backoff-max-ms", flush_backoff_max_ms);
  PRINT_U32("log-repeat-interval-ms", log_repeat_interval_ms);
  PRINT_BOOL("allow-core-dumps", allow_core_dumps);
  PRINT_U32("max-connections", max_connections);
  PRINT_U32("max-connections-per-uid", max_connections_per_uid);
  PRINT_U32("reserved-operator-connections", reserved_operator_connections);
  PRINT_U32("read-timeout-ms", read_timeout_ms);
  PRINT_U32("idle-timeout-ms", idle_timeout_ms);
  PRINT_U32("max-queued-bytes", max_queued_bytes);
  PRINT_U32("max-queued-bytes-hard", max_queued_bytes_hard);
  PRINT_U32("max-request-memory", max_request_memory);
  PRINT_U32("max-list-memory", max_list_memory);
  PRINT_U32("max-read-memory", max_read_memory);
  PRINT_U32("conn-buffer-pool", conn_buffer_pool);
  PRINT_U32("max-pending-calls", max_pending_calls);
  PRINT_U32("refusal-audit-interval-ms", refusal_audit_interval_ms);
  PRINT_U32("refusal-audit-max-keys", refusal_audit_max_keys);
  if (cfg->host_id[0] != '\0')
    fprintf(out, "host-id = %s\n", cfg->host_id);
  PRINT_U32("lease-ms", lease_ms);
  PRINT_U32("propagation-timeout-ms", propagation_timeout_ms);
  PRINT_BOOL("no-issue-wait", issue_no_wait);
  PRINT_U32("feed-keep", feed_keep);
  PRINT_U32("feed-keep-minutes", feed_keep_minutes);
  PRINT_U32("audit-retention-days", audit_retention_days);
  {
    size_t i;

    for (i = 0; i < cfg->n_http_listen; i++)
      fprintf(out, "http-listen = %s\n", cfg->http_listen[i]);
  }
  fprintf(out, "http-verify-path = %s\n", cfg->http_verify_path);
  fprintf(out, "http-token-header = %s\n", cfg->http_token_header);
  PRINT_BOOL("http-tcp-verify", http_tcp_verify);
  fprintf(out, "log-level = %s\n", log_level_name(cfg->log_level));
  fprintf(out, "log-format = %s\n", log_format_name(cfg->log_format));
#undef PRINT_U32
#undef PRINT_BOOL
}

/* The values text (config_print's) gives key, joined by ", " (a list's),
 * malloc'd; "" when it has none. NULL if out of memory. */
static char *config_value_of(const char *text, const char *key) {
  size_t klen = strlen(key), len = 0;
  const char *line, *eol, *v;
  char *out = NULL;
  FILE *f = open_memstream(&out, &len);

  if (f == NULL)
    return NULL;
  for (line = text; *line != '\0'; line = *eol ? eol + 1 : eol) {
    eol = line + strcspn(line, "\n");
    if (strncmp(line, key, klen) != 0 || strncmp(line + klen, " = ", 3) != 0)
      continue;
    v = line + klen + 3;
    fprintf(f, "%s%.*s", ftell(f) > 0 ? ", " : "", (int)(eol - v), v);
  }
  if (fclose(f) != 0) {
    free(out);
    return NULL;
  }
  return out;
}

int config_diff(const config_t *a, const config_t *b, config_changed_fn changed,
                void *ctx) {
  char *ta = NULL, *tb = NULL, *seen = NULL, *va, *vb;
  size_t la = 0, lb = 0, ls = 0;
  char key[64], probe[68];
  const char *texts[2], *line, *eol;
  FILE *fa, *fb, *fs;
  int i, rc = TOKEND_ENOMEM;

  fa = open_memstream(&ta, &la);
  fb = open_memstream(&tb, &lb);
  fs = open_memstream(&seen, &ls);
  if (fa == NULL || fb == NULL || fs == NULL)
    goto out;
  config_print(a, fa);
  config_print(b, fb);
  if (fflush(fa) != 0 || fflush(fb) != 0 || fputc('\n', fs) == EOF)
    goto out;
  texts[0] = ta;
  texts[1] = tb;
  /* Every key either names, in config_print's order, once. */
  for (i = 0; i < 2; i++) {
    for (line = texts[i]; *line != '\0'; line = *eol ? eol + 1 : eol) {
      eol = line + strcspn(line, "\n");
      snprintf(key, sizeof(key), "%.*s", (int)strcspn(line, " \n"), line);
      snprintf(probe, sizeof(probe), "\n%s\n", key);
      if (fflush(fs) != 0)
        goto out;
      if (strstr(seen, probe) != NULL)
        continue;
      fprintf(fs, "%s\n", key);
      va = config_value_of(ta, key);
      vb = config_value_of(tb, key);
      if (va != NULL && vb != NULL && strcmp(va, vb) != 0)
        changed(ctx, key, va, vb);
      free(va);
      free(vb);
    }
  }
  rc = 0;
out:
  if (fa != NULL)
    fclose(fa);
  if (fb != NULL)
    fclose(fb);
  if (fs != NULL)
    fclose(fs);
  free(ta);
  free(tb);
  free(seen);
  return rc;
}
