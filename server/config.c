#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
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
  OPT_HTTP_TCP_VERIFY
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
static int set_store(config_t *cfg, const char *url, FILE *err) {
  const struct store_backend *backend;
  const char *location;
  char why[512], redacted[CONFIG_PATH_BYTES];
  int rc;

  if ((rc = set_path(cfg->store_url, "--store", url, err)) != 0)
    return rc;
  if (store_url_parse(url, &backend, &location, why, sizeof(why)) != 0) {
    fprintf(err, "tokend: %s\n", why);
    return TOKEND_EINVAL;
  }
  /* Every message names the store by db_path: never with a password. */
  return set_path(cfg->db_path, "--store",
                  strcmp(backend->scheme, "sqlite") == 0
                      ? location
                      : store_url_redact(url, redacted, sizeof(redacted)),
                  err);
}

/* --store-file FILE: the URL on FILE's first line. A file others can read
 * would show them the password it may hold: refused, as ssh refuses such a
 * key. */
static int set_store_file(config_t *cfg, const char *path, FILE *err) {
  char line[CONFIG_PATH_BYTES + 2];
  struct stat st;
  size_t n;
  FILE *f;
  int rc;

  if ((f = fopen(path, "re")) == NULL) {
    fprintf(err, "tokend: --store-file %s: %s\n", path, strerror(errno));
    return TOKEND_EINVAL;
  }
  if (fstat(fileno(f), &st) != 0 || (st.st_mode & 0077) != 0) {
    fprintf(err,
            "tokend: --store-file %s: readable by others (mode %04o); "
            "chmod 600 it (it may hold a password)\n",
            path, (unsigned)(st.st_mode & 07777));
    fclose(f);
    return TOKEND_EINVAL;
  }
  if (fgets(line, sizeof(line), f) == NULL) {
    fprintf(err, "tokend: --store-file %s: empty\n", path);
    fclose(f);
    return TOKEND_EINVAL;
  }
  fclose(f);
  n = strcspn(line, "\r\n");
  if (line[n] == '\0' && n >= CONFIG_PATH_BYTES) {
    fprintf(err, "tokend: --store-file %s: first line too long\n", path);
    return TOKEND_EINVAL;
  }
  line[n] = '\0';
  rc = set_store(cfg, line, err);
  explicit_bzero(line, sizeof(line));
  return rc;
}

/* --host-id: what the hosts table and pg_stat_activity show; printable
 * ASCII without spaces, so it is one word in a log line. */
static int set_host_id(config_t *cfg, const char *id, FILE *err) {
  size_t i, n = strlen(id);

  if (n == 0 || n >= CONFIG_HOST_ID_BYTES - 1) {
    fprintf(err, "tokend: --host-id: 1 to %d characters\n",
            CONFIG_HOST_ID_BYTES - 2);
    return TOKEND_EINVAL;
  }
  for (i = 0; i < n; i++) {
    if (id[i] <= ' ' || id[i] > '~') {
      fprintf(err, "tokend: --host-id: printable ASCII without spaces\n");
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

int config_parse(config_t *cfg, int argc, char **argv, FILE *out, FILE *err) {
  int c, rc = 0, explicit_paths = 0, explicit_operators = 0;
  int explicit_reserved = 0;
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
      cfg->store_url[0] = '\0';
      explicit_paths++;
      break;
    case OPT_STORE:
      rc = set_store(cfg, optarg, err);
      explicit_paths++;
      break;
    case OPT_STORE_FILE:
      rc = set_store_file(cfg, optarg, err);
      explicit_paths++;
      break;
    case OPT_HOST_ID:
      rc = set_host_id(cfg, optarg, err);
      break;
    case OPT_LEASE:
      rc = parse_u32("--lease-ms", optarg, 100, 3600000, &cfg->lease_ms, err);
      break;
    case OPT_PROPAGATION_TIMEOUT:
      rc = parse_u32("--propagation-timeout-ms", optarg, 0, 600000,
                     &cfg->propagation_timeout_ms, err);
      break;
    case OPT_ISSUE_NO_WAIT:
      cfg->issue_no_wait = 1;
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
    case OPT_LAST_USED_GRANULARITY:
      rc = parse_u32("--last-used-granularity-ms", optarg, 0, 86400000,
                     &cfg->last_used_granularity_ms, err);
      break;
    case OPT_BUSY_POLL:
      rc = parse_u32("--busy-poll-us", optarg, 0, CONFIG_BUSY_POLL_US_MAX,
                     &cfg->busy_poll_us, err);
      break;
    case OPT_SHUTDOWN:
      rc = parse_u32("--shutdown-timeout-ms", optarg, 0, 600000,
                     &cfg->shutdown_timeout_ms, err);
      break;
    case OPT_FLUSH_BACKOFF_MAX:
      rc = parse_u32("--flush-backoff-max-ms", optarg,
                     CONFIG_FLUSH_BACKOFF_MIN_MS, 3600000,
                     &cfg->flush_backoff_max_ms, err);
      break;
    case OPT_LOG_REPEAT_INTERVAL:
      rc = parse_u32("--log-repeat-interval-ms", optarg, 0, 3600000,
                     &cfg->log_repeat_interval_ms, err);
      break;
    case OPT_ALLOW_CORE_DUMPS:
      cfg->allow_core_dumps = 1;
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
    case OPT_MAX_CONNS_PER_UID:
      rc = parse_u32("--max-connections-per-uid", optarg, 1, 1000000,
                     &cfg->max_connections_per_uid, err);
      break;
    case OPT_RESERVED_OPERATOR_CONNS:
      rc = parse_u32("--reserved-operator-connections", optarg, 0, 1000000,
                     &cfg->reserved_operator_connections, err);
      explicit_reserved = 1;
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
    case OPT_SOCKET_MODE: {
      char *end;
      unsigned long mode;
      errno = 0;
      mode = strtoul(optarg, &end, 8);
      if (optarg[0] == '\0' || *end != '\0' || errno != 0 || mode > 0777 ||
          (mode & 0600) != 0600) {
        fprintf(err,
                "tokend: --socket-mode: '%s' is not an octal mode from "
                "0600 to 0777 that lets tokend's user read and write\n",
                optarg);
        rc = TOKEND_EINVAL;
      } else {
        cfg->socket_mode = (uint32_t)mode;
      }
      break;
    }
    case OPT_SOCKET_GROUP: {
      uint32_t gid;
      rc = parse_id("--socket-group", optarg, 1, &gid, err);
      if (rc == 0)
        cfg->socket_gid = gid;
      break;
    }
    case OPT_OPERATOR_UID:
    case OPT_OPERATOR_GROUP:
      /* Naming any operator replaces the default ones. */
      if (!explicit_operators) {
        memset(&cfg->operators, 0, sizeof(cfg->operators));
        explicit_operators = 1;
      }
      rc = add_id(c == OPT_OPERATOR_UID ? "--operator-uid" : "--operator-group",
                  optarg, c == OPT_OPERATOR_GROUP, &cfg->operators, err);
      break;
    case OPT_VERIFIER_UID:
    case OPT_VERIFIER_GROUP:
      rc = add_id(c == OPT_VERIFIER_UID ? "--verifier-uid" : "--verifier-group",
                  optarg, c == OPT_VERIFIER_GROUP, &cfg->verifiers, err);
      cfg->any_verifier = 0;
      break;
    case OPT_MAX_PENDING_CALLS:
      rc = parse_u32("--max-pending-calls", optarg, 1, 100000,
                     &cfg->max_pending_calls, err);
      break;
    case OPT_REFUSAL_AUDIT_INTERVAL:
      rc = parse_u32("--refusal-audit-interval-ms", optarg, 0,
                     CONFIG_REFUSAL_AUDIT_INTERVAL_MS_MAX,
                     &cfg->refusal_audit_interval_ms, err);
      break;
    case OPT_REFUSAL_AUDIT_MAX_KEYS:
      rc = parse_u32("--refusal-audit-max-keys", optarg, 1,
                     CONFIG_REFUSAL_AUDIT_MAX_KEYS_MAX,
                     &cfg->refusal_audit_max_keys, err);
      break;
    case OPT_MAX_LIST_MEMORY:
      rc = parse_u32("--max-list-memory", optarg, CONFIG_MAX_LIST_MEMORY_MIN,
                     UINT32_MAX, &cfg->max_list_memory, err);
      break;
    case OPT_CREATE_DB:
      cfg->create_db = 1;
      break;
    case OPT_READ_ONLY:
      cfg->read_only = 1;
      break;
    case OPT_CHECK_DB:
      cfg->check_db = 1;
      break;
    case OPT_MAX_READ_MEMORY:
      rc = parse_u32("--max-read-memory", optarg, CONFIG_MAX_READ_MEMORY_MIN,
                     UINT32_MAX, &cfg->max_read_memory, err);
      break;
    case OPT_CONN_BUFFER_POOL:
      rc = parse_u32("--conn-buffer-pool", optarg, 0,
                     CONFIG_CONN_BUFFER_POOL_MAX, &cfg->conn_buffer_pool, err);
      break;
    case OPT_HTTP_LISTEN:
    case OPT_HTTP_VERIFY_PATH:
    case OPT_HTTP_TOKEN_HEADER:
    case OPT_HTTP_TCP_VERIFY:
      rc = set_http(cfg, c, optarg, err);
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
  if (rc == 0 && !explicit_reserved &&
      cfg->reserved_operator_connections > cfg->max_connections / 4)
    cfg->reserved_operator_connections = cfg->max_connections / 4;
  if (rc == 0 && cfg->reserved_operator_connections >= cfg->max_connections) {
    fprintf(err, "tokend: --reserved-operator-connections must be less than "
                 "--max-connections\n");
    rc = TOKEND_EINVAL;
  }
  /* Only the all-default layout creates var/ by itself. */
  cfg->default_dir = explicit_paths == 0;
  return rc;
}
