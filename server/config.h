/* config: tokend's command-line flags. */
#ifndef TOKEND_CONFIG_H
#define TOKEND_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "tokend_error.h"
#include "tokend_limits.h"

#define CONFIG_PATH_BYTES 4096
/* Where the database and pepper are unless flags say otherwise: with
 * -DTOKEND_FHS=ON (the packages) the FHS places; else the development
 * var/ under the working directory (`make run` passes those explicitly). */
#ifdef TOKEND_FHS
#define CONFIG_DIR_DEFAULT "/var/lib/tokend"
#define CONFIG_DB_DEFAULT "/var/lib/tokend/tokend.db"
#define CONFIG_PEPPER_DEFAULT "/var/lib/tokend/pepper"
#else
#define CONFIG_DIR_DEFAULT "var"
#define CONFIG_DB_DEFAULT "var/tokend.db"
#define CONFIG_PEPPER_DEFAULT "var/pepper"
#endif
#define CONFIG_FLUSH_INTERVAL_MS_DEFAULT 5000
#define CONFIG_LAST_USED_GRANULARITY_MS_DEFAULT 60000
#define CONFIG_BUSY_POLL_US_DEFAULT 0 /* off: sleep when there is nothing */
#define CONFIG_BUSY_POLL_US_MAX 10000 /* at most 10 ms */
#define CONFIG_SHUTDOWN_TIMEOUT_MS_DEFAULT 5000
/* A failed last_used write-back is retried after 100 ms, then twice as long
 * after each further failure, up to this. */
#define CONFIG_FLUSH_BACKOFF_MIN_MS 100
#define CONFIG_FLUSH_BACKOFF_MAX_MS_DEFAULT 60000
/* A line repeated by a failure that persists goes out at most this often. */
#define CONFIG_LOG_REPEAT_INTERVAL_MS_DEFAULT LOG_REPEAT_INTERVAL_MS_DEFAULT
#define CONFIG_MAX_CONNECTIONS_DEFAULT 1024
/* --max-connections-per-uid: a quarter of the default --max-connections,
 * so that one local user (a runaway pool, a hostile process) cannot take
 * the slots every other service's verifier needs; operators are exempt. */
#define CONFIG_MAX_CONNECTIONS_PER_UID_DEFAULT 256
/* --reserved-operator-connections: slots only operators may take, so that
 * an operator can always get in to look (PostgreSQL's
 * superuser_reserved_connections). When --max-connections is small the
 * default shrinks to a quarter of it. */
#define CONFIG_RESERVED_OPERATOR_CONNECTIONS_DEFAULT 8
/* File descriptors tokend needs besides one per connection: the listener,
 * the database with its WAL and shared memory, the loop's epoll, signal and
 * async fds, the store worker's, stdio, a refused connection being answered,
 * with room to spare. */
#define CONFIG_FD_RESERVE 64
#define CONFIG_READ_TIMEOUT_MS_DEFAULT 10000
#define CONFIG_IDLE_TIMEOUT_MS_DEFAULT 300000
#define CONFIG_MAX_QUEUED_BYTES_DEFAULT (1024u * 1024u)
#define CONFIG_MAX_QUEUED_BYTES_HARD_DEFAULT (16u * 1024u * 1024u)
#define CONFIG_MAX_REQUEST_MEMORY_DEFAULT (4u * 1024u * 1024u)
/* --max-list-memory: rows of List answers in flight, all connections */
#define CONFIG_MAX_LIST_MEMORY_DEFAULT (64u * 1024u * 1024u)
#define CONFIG_MAX_LIST_MEMORY_MIN (64u * 1024u)
#define CONFIG_MAX_PENDING_CALLS_DEFAULT 32
/* --refusal-audit-interval-ms: repeated refusals of one kind (peer uid,
 * actor, method, rule) share one audit row and one log line per interval;
 * 0 records every refusal on its own row */
#define CONFIG_REFUSAL_AUDIT_INTERVAL_MS_DEFAULT 10000
#define CONFIG_REFUSAL_AUDIT_INTERVAL_MS_MAX 3600000
/* --refusal-audit-max-keys: kinds of refusal counted at once (about 1 KiB
 * of memory each); past it, one overflow row per interval */
#define CONFIG_REFUSAL_AUDIT_MAX_KEYS_DEFAULT 4096
#define CONFIG_REFUSAL_AUDIT_MAX_KEYS_MAX 1000000
/* --max-read-memory: read buffers larger than a connection's first 16 KiB,
 * all connections together (a request bigger than that is read into a
 * buffer of its own size, which goes back once it is handled). 256 frames
 * of the default --max-frame-bytes at once. */
#define CONFIG_MAX_READ_MEMORY_DEFAULT (256u * 1024u * 1024u)
#define CONFIG_MAX_READ_MEMORY_MIN (64u * 1024u)

/* --conn-buffer-pool: closed connections' buffer blocks (32 KiB each, left
 * out of core dumps) kept for the next connections to reuse: 64 are 2 MiB,
 * enough for that many connections opened and closed at once without a
 * system call for their buffers. */
#define CONFIG_CONN_BUFFER_POOL_DEFAULT 64
#define CONFIG_CONN_BUFFER_POOL_MAX 1000000

/* The HTTP face (issue 14, server/http/): --http-listen may be given this
 * many times; --http-verify-path and --http-token-header are this long at
 * most. */
#define CONFIG_HTTP_LISTEN_MAX 4
#define CONFIG_HTTP_NAME_BYTES 128
#define CONFIG_HTTP_VERIFY_PATH_DEFAULT "/verify"
#define CONFIG_HTTP_TOKEN_HEADER_DEFAULT "Authorization"

/* How many uids or groups one policy list may name. */
#define CONFIG_MAX_IDS 64

/* A set of peers named by uid and by group (primary or supplementary). */
#define CONFIG_HOST_ID_BYTES 128
#define CONFIG_LEASE_MS_DEFAULT 5000
#define CONFIG_PROPAGATION_TIMEOUT_MS_DEFAULT 2000
/* Pruning the change feed: the newest revisions and minutes kept. */
#define CONFIG_FEED_KEEP_DEFAULT 100000
#define CONFIG_FEED_KEEP_MINUTES_DEFAULT 10
#define CONFIG_FEED_KEEP_MAX 1000000000
#define CONFIG_FEED_KEEP_MINUTES_MAX 5256000 /* ten years */
/* --audit-retention-days: at most 100 years; checked hourly. */
#define CONFIG_AUDIT_RETENTION_DAYS_MAX 36500
#define CONFIG_AUDIT_RETENTION_CHECK_MS (3600u * 1000u)

typedef struct {
  uint32_t uids[CONFIG_MAX_IDS];
  size_t n_uids;
  uint32_t gids[CONFIG_MAX_IDS];
  size_t n_gids;
} config_ids_t;

typedef struct {
  char socket_path[CONFIG_PATH_BYTES];
  uint32_t socket_mode; /* file mode of the socket, e.g. 0600 */
  int64_t socket_gid;   /* group of the socket; -1: tokend's own */
  /* operators may do everything; default: root and tokend's own uid */
  config_ids_t operators;
  /* verifiers may call Verify; any_verifier: everyone (the default) */
  config_ids_t verifiers;
  int any_verifier;
  /* --leak-reporter: who may call RevokeLeaked (issue 17), besides
   * operators; none by default */
  config_ids_t leak_reporters;
  /* The database's location as messages name it: for --db PATH (or a
   * --store sqlite:PATH), the path; for another backend, its URL. */
  char db_path[CONFIG_PATH_BYTES];
  /* --store URL; "" means sqlite:<db_path> (--db, or the default). */
  char store_url[CONFIG_PATH_BYTES];
  char pepper_path[CONFIG_PATH_BYTES];
  /* --previous-pepper-file: the pepper a rotation moves away from ("":
   * none); tokens still hashed with it verify, and are re-keyed to
   * pepper_path's as they are (docs/OPERATIONS.md). */
  char previous_pepper_path[CONFIG_PATH_BYTES];
  char token_prefix[TOKEND_PREFIX_MAX_CHARS + 1];
  uint32_t max_frame_bytes;
  uint32_t flush_interval_ms; /* last_used_at write-back period */
  /* a token's last_used_at is written back at most once per this long
   * (and at shutdown); 0: after every use */
  uint32_t last_used_granularity_ms;
  /* after a read burst, poll without sleeping for this long (0: off) */
  uint32_t busy_poll_us;
  /* how long shutdown waits for peers, and for last_used to be written */
  uint32_t shutdown_timeout_ms;
  uint32_t flush_backoff_max_ms;   /* longest wait between failed write-backs */
  uint32_t log_repeat_interval_ms; /* repeated failure lines: one per this */
  int allow_core_dumps;     /* 0: tokend is not dumpable (PR_SET_DUMPABLE) */
  uint32_t max_connections; /* more are answered and closed */
  uint32_t max_connections_per_uid;       /* per non-operator uid */
  uint32_t reserved_operator_connections; /* of max_connections */
  uint32_t read_timeout_ms;       /* a partial frame may wait this long */
  uint32_t idle_timeout_ms;       /* a silent connection lives this long; 0 */
  uint32_t max_queued_bytes;      /* unsent output above which reading pauses */
  uint32_t max_queued_bytes_hard; /* unsent output above which we close */
  uint32_t max_request_memory;    /* what decoding one request may allocate */
  /* rows that List and ListAuditEvents calls in flight may hold, all
   * connections together */
  uint32_t max_list_memory;
  uint32_t max_pending_calls;         /* store calls in flight per connection */
  uint32_t refusal_audit_interval_ms; /* 0: every refusal its own row */
  uint32_t refusal_audit_max_keys;    /* kinds of refusal counted at once */
  /* large read buffers (a request past the first 16 KiB), all connections */
  uint32_t max_read_memory;
  /* buffer blocks of closed connections kept for reuse */
  uint32_t conn_buffer_pool;
  log_level_t log_level;
  /* --create-db: create the database if there is none (first start); without
   * it a missing database refuses to start, so that a deleted or mistyped
   * one is never silently replaced by an empty one. */
  int create_db;
  /* --read-only: open the database read-only; Verify and reads are served,
   * every write is answered FAILED_PRECONDITION. */
  int read_only;
  /* --check-db: run a full integrity check of the database and exit. */
  int check_db;
  /* 1 when a path is the built-in default under var/, which tokend then
   * creates if missing (an explicit path's directory must exist). */
  int default_dir;
  /* A store several hosts share (PostgreSQL; docs/DEPLOYMENT.md): */
  /* --host-id: this host's stable id in the store's hosts table; "" means
   * the default, "<hostname>:<socket path>" (config_host_id). */
  char host_id[CONFIG_HOST_ID_BYTES];
  /* --lease-ms: Verify answers UNAVAILABLE once this host has not caught
   * up with the store's change feed for this long. */
  uint32_t lease_ms;
  /* --propagation-timeout-ms: longest a write waits to have reached every
   * live host before it is answered (saying how many had not). */
  uint32_t propagation_timeout_ms;
  /* --no-issue-wait: Issue is answered once committed, without waiting
   * for the other hosts (0: it waits, the default). */
  int issue_no_wait;
  /* --- the HTTP face (server/http/, issue 14) --- */
  /* --http-listen ADDR, repeatable: "unix:PATH" or "IPV4:PORT"; none: no
   * HTTP face (the default) */
  char http_listen[CONFIG_HTTP_LISTEN_MAX][CONFIG_PATH_BYTES];
  size_t n_http_listen;
  char http_verify_path[CONFIG_HTTP_NAME_BYTES];  /* forward-auth's path */
  char http_token_header[CONFIG_HTTP_NAME_BYTES]; /* where the token is */
  /* --http-tcp-verify: serve /verify on TCP addresses, where no peer
   * identity exists (anyone who reaches the port is a verifier) */
  int http_tcp_verify;
  /* --config FILE ("" if none): read before the flags, again at SIGHUP. */
  char config_path[CONFIG_PATH_BYTES];
  /* --check-config: print the effective settings and exit. */
  int check_config;
  /* --log-format: text (or journald's, detected) or json lines. */
  log_format_t log_format;
  /* --audit-retention-days: audit rows older than this are removed (0:
   * kept forever, the default). */
  uint32_t audit_retention_days;
  /* --- pruning the change feed (issue 13) --- */
  /* --feed-keep: changes kept behind the newest, whatever their age (0:
   * the feed is never pruned). */
  uint32_t feed_keep;
  /* --feed-keep-minutes: changes younger than this are kept. */
  uint32_t feed_keep_minutes;
} config_t;

/* One --http-listen address, parsed. */
typedef struct {
  int is_unix;
  char path[CONFIG_PATH_BYTES]; /* is_unix: the socket's path */
  char host[64];                /* TCP: an IPv4 literal */
  uint16_t port;                /* TCP: 0 picks a free port */
} config_http_addr_t;

/* Parses an --http-listen value: "unix:/path" (the path shorter than a Unix
 * socket path may be) or "A.B.C.D:PORT". Returns 0, or TOKEND_EINVAL with
 * a one-line reason in why (len bytes). */
int config_http_addr_parse(const char *s, config_http_addr_t *out, char *why,
                           size_t len) TOKEND_MUST_CHECK;

/* Fills cfg with the defaults (honouring $TOKEND_SOCKET). */
void config_defaults(config_t *cfg);

/* The store's URL (store/store.h): --store's, or "sqlite:" and db_path.
 * Written into buf (len bytes, CONFIG_STORE_URL_BYTES is enough); returns
 * buf. */
#define CONFIG_STORE_URL_BYTES (CONFIG_PATH_BYTES + 16)
const char *config_store_url(const config_t *cfg, char *buf, size_t len);

/* This host's id: --host-id, or "<hostname>:<socket path>". Written into
 * buf (len bytes, CONFIG_HOST_ID_BYTES is enough); returns buf. */
const char *config_host_id(const config_t *cfg, char *buf, size_t len);

/* Parses argv into cfg (already holding defaults): first the file named by
 * --config, if any, then the flags, which override it (a list given by a
 * flag replaces the file's). Returns 0 to run, 1 if --help or --version
 * was printed to out (exit 0), or TOKEND_EINVAL after printing a reason
 * to err, naming FILE:LINE for a bad line of the file (exit 2). Not
 * thread-safe (getopt). */
int config_parse(config_t *cfg, int argc, char **argv, FILE *out,
                 FILE *err) TOKEND_MUST_CHECK;

/* Prints the settings cfg holds, one "key = value" line each, in the
 * file's syntax (--check-config): a store URL without its password. */
void config_print(const config_t *cfg, FILE *out);

/* Prints the settings cfg holds, one "key = value" line each, in the
 * file's syntax (--check-config): a store URL without its password. */
void config_print(const config_t *cfg, FILE *out);

/* Calls changed(ctx, key, was, now) for every setting whose value differs
 * between a and b, in config_print's order and terms (a list's values
 * joined by ", "; a store URL without its password). Returns 0 or
 * TOKEND_ENOMEM. */
typedef void (*config_changed_fn)(void *ctx, const char *key, const char *was,
                                  const char *now);
int config_diff(const config_t *a, const config_t *b, config_changed_fn changed,
                void *ctx) TOKEND_MUST_CHECK;

#endif
