/* Unit tests for server/config: defaults and command-line flags. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define MAX_ARGS 16

/* What one config_parse call printed, and what it returned. */
typedef struct {
  config_t cfg;
  int rc;
  char *out; /* from open_memstream; freed by the next parse or teardown */
  char *err;
} fixture_t;

/* Fully reinitialises glibc's getopt (optind = 0), so that each test starts
 * from a clean state whatever the previous one left behind. */
static void getopt_reinit(void) {
  char *argv[] = {(char *)"reinit", NULL};

  optind = 0;
  opterr = 0;
  (void)getopt(1, argv, "");
}

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));

  if (fx == NULL)
    return -1;
  getopt_reinit();
  unsetenv(TOKEND_SOCKET_ENV);
  config_defaults(&fx->cfg);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture_t *fx = *state;

  free(fx->out);
  free(fx->err);
  free(fx);
  unsetenv(TOKEND_SOCKET_ENV);
  return 0;
}

/* Runs config_parse on "tokend" followed by the NULL-terminated args,
 * capturing both streams. */
static int parse_argv(fixture_t *fx, const char *const *args) {
  char *argv[MAX_ARGS + 2];
  size_t out_len = 0, err_len = 0;
  FILE *out, *err;
  int argc = 0;

  argv[argc++] = (char *)"tokend";
  while (*args != NULL && argc <= MAX_ARGS)
    argv[argc++] = (char *)*args++;
  argv[argc] = NULL;
  free(fx->out);
  free(fx->err);
  fx->out = fx->err = NULL;
  out = open_memstream(&fx->out, &out_len);
  err = open_memstream(&fx->err, &err_len);
  assert_non_null(out);
  assert_non_null(err);
  fx->rc = config_parse(&fx->cfg, argc, argv, out, err);
  fclose(out);
  fclose(err);
  return fx->rc;
}

#define PARSE(fx, ...)                                                         \
  parse_argv((fx), (const char *const[]){__VA_ARGS__, NULL})

/* A rejection prints exactly one line, starting "tokend: ", to err and
 * nothing to out. */
static void assert_one_line_error(const fixture_t *fx, const char *needle) {
  size_t n = strlen(fx->err);

  assert_int_equal(fx->rc, TOKEND_EINVAL);
  assert_string_equal(fx->out, "");
  assert_true(n > 0);
  assert_int_equal(strncmp(fx->err, "tokend: ", 8), 0);
  assert_ptr_equal(strchr(fx->err, '\n'), fx->err + n - 1);
  if (needle != NULL)
    assert_non_null(strstr(fx->err, needle));
}

static void test_config_defaults(void **state) {
  fixture_t *fx = *state;

  assert_string_equal(fx->cfg.socket_path, TOKEND_SOCKET_DEFAULT);
  assert_string_equal(fx->cfg.db_path, CONFIG_DB_DEFAULT);
  assert_string_equal(fx->cfg.pepper_path, CONFIG_PEPPER_DEFAULT);
  assert_string_equal(fx->cfg.token_prefix, TOKEND_PREFIX_DEFAULT);
  assert_int_equal(fx->cfg.max_frame_bytes, TOKEND_MAX_FRAME_BYTES_DEFAULT);
  assert_int_equal(fx->cfg.flush_interval_ms, CONFIG_FLUSH_INTERVAL_MS_DEFAULT);
  assert_int_equal(fx->cfg.last_used_granularity_ms,
                   CONFIG_LAST_USED_GRANULARITY_MS_DEFAULT);
  assert_int_equal(fx->cfg.busy_poll_us, CONFIG_BUSY_POLL_US_DEFAULT);
  assert_int_equal(fx->cfg.max_list_memory, CONFIG_MAX_LIST_MEMORY_DEFAULT);
  assert_int_equal(fx->cfg.shutdown_timeout_ms,
                   CONFIG_SHUTDOWN_TIMEOUT_MS_DEFAULT);
  assert_int_equal(fx->cfg.log_level, LOG_INFO);
}

/* Issue 11, item 6: the refusal-aggregation flags, at their edges. */
static void test_config_refusal_audit_flags(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(fx->cfg.refusal_audit_interval_ms,
                   CONFIG_REFUSAL_AUDIT_INTERVAL_MS_DEFAULT);
  assert_int_equal(fx->cfg.refusal_audit_max_keys,
                   CONFIG_REFUSAL_AUDIT_MAX_KEYS_DEFAULT);
  assert_int_equal(PARSE(fx, "--refusal-audit-interval-ms", "0"), 0);
  assert_int_equal(fx->cfg.refusal_audit_interval_ms, 0);
  assert_int_equal(PARSE(fx, "--refusal-audit-interval-ms", "3600000"), 0);
  assert_int_equal(fx->cfg.refusal_audit_interval_ms, 3600000);
  assert_int_equal(PARSE(fx, "--refusal-audit-interval-ms", "3600001"),
                   TOKEND_EINVAL);
  assert_one_line_error(fx, "--refusal-audit-interval-ms");
  assert_int_equal(PARSE(fx, "--refusal-audit-max-keys", "0"), TOKEND_EINVAL);
  assert_one_line_error(fx, "--refusal-audit-max-keys");
  assert_int_equal(PARSE(fx, "--refusal-audit-max-keys", "1"), 0);
  assert_int_equal(fx->cfg.refusal_audit_max_keys, 1);
  assert_int_equal(PARSE(fx, "--refusal-audit-max-keys", "1000000"), 0);
  assert_int_equal(PARSE(fx, "--refusal-audit-max-keys", "1000001"),
                   TOKEND_EINVAL);
}

static void test_config_defaults_honour_socket_env(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(setenv(TOKEND_SOCKET_ENV, "/run/tokend/api.sock", 1), 0);
  config_defaults(&fx->cfg);
  assert_string_equal(fx->cfg.socket_path, "/run/tokend/api.sock");

  /* Set but empty: the built-in default. */
  assert_int_equal(setenv(TOKEND_SOCKET_ENV, "", 1), 0);
  config_defaults(&fx->cfg);
  assert_string_equal(fx->cfg.socket_path, TOKEND_SOCKET_DEFAULT);

  /* --socket still wins over the variable. */
  assert_int_equal(setenv(TOKEND_SOCKET_ENV, "/run/env.sock", 1), 0);
  config_defaults(&fx->cfg);
  assert_int_equal(PARSE(fx, "--socket", "/run/flag.sock"), 0);
  assert_string_equal(fx->cfg.socket_path, "/run/flag.sock");
}

static void test_config_no_args_keeps_defaults(void **state) {
  fixture_t *fx = *state;
  char *argv[] = {(char *)"tokend", NULL};
  config_t before = fx->cfg;

  assert_int_equal(config_parse(&fx->cfg, 1, argv, stdout, stderr), 0);
  assert_int_equal(fx->cfg.default_dir, 1);
  fx->cfg.default_dir = before.default_dir;
  assert_memory_equal(&fx->cfg, &before, sizeof(before));
}

static void test_config_parses_every_flag(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--socket", "/tmp/s.sock", "--db", "/tmp/t.db",
                         "--pepper-file", "/tmp/pep", "--token-prefix", "acme2",
                         "--max-frame-bytes", "4096", "--flush-interval-ms",
                         "250", "--shutdown-timeout-ms", "0", "--log-level",
                         "debug"),
                   0);
  assert_string_equal(fx->out, "");
  assert_string_equal(fx->err, "");
  assert_string_equal(fx->cfg.socket_path, "/tmp/s.sock");
  assert_string_equal(fx->cfg.db_path, "/tmp/t.db");
  assert_string_equal(fx->cfg.pepper_path, "/tmp/pep");
  assert_string_equal(fx->cfg.token_prefix, "acme2");
  assert_int_equal(fx->cfg.max_frame_bytes, 4096);
  assert_int_equal(fx->cfg.flush_interval_ms, 250);
  assert_int_equal(fx->cfg.shutdown_timeout_ms, 0);
  assert_int_equal(fx->cfg.log_level, LOG_DEBUG);
  assert_int_equal(fx->cfg.default_dir, 0);
}

static void test_config_db_flags(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--log-level", "info"), 0);
  assert_int_equal(fx->cfg.create_db, 0);
  assert_int_equal(fx->cfg.read_only, 0);
  assert_int_equal(fx->cfg.check_db, 0);
  assert_int_equal(PARSE(fx, "--create-db", "--check-db"), 0);
  assert_int_equal(fx->cfg.create_db, 1);
  assert_int_equal(fx->cfg.check_db, 1);
  config_defaults(&fx->cfg);
  assert_int_equal(PARSE(fx, "--read-only"), 0);
  assert_int_equal(fx->cfg.read_only, 1);
  /* Creating a database tokend may not write makes no sense. */
  config_defaults(&fx->cfg);
  assert_int_equal(PARSE(fx, "--create-db", "--read-only"), TOKEND_EINVAL);
  assert_one_line_error(fx, "--read-only");
}

static void test_config_flag_equals_form(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--log-level=error", "--max-frame-bytes=128",
                         "--token-prefix=x"),
                   0);
  assert_int_equal(fx->cfg.log_level, LOG_ERROR);
  assert_int_equal(fx->cfg.max_frame_bytes, 128);
  assert_string_equal(fx->cfg.token_prefix, "x");
}

static void test_config_max_frame_bytes_edges(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--max-frame-bytes", "63"), TOKEND_EINVAL);
  assert_one_line_error(fx, "--max-frame-bytes");
  assert_int_equal(fx->cfg.max_frame_bytes, TOKEND_MAX_FRAME_BYTES_DEFAULT);

  assert_int_equal(PARSE(fx, "--max-frame-bytes", "64"), 0);
  assert_int_equal(fx->cfg.max_frame_bytes, 64);

  assert_int_equal(PARSE(fx, "--max-frame-bytes", "67108864"), 0);
  assert_int_equal(fx->cfg.max_frame_bytes, TOKEND_MAX_FRAME_BYTES_LIMIT);

  assert_int_equal(PARSE(fx, "--max-frame-bytes", "67108865"), TOKEND_EINVAL);
  assert_one_line_error(fx, "67108865");
  assert_int_equal(fx->cfg.max_frame_bytes, TOKEND_MAX_FRAME_BYTES_LIMIT);
}

static void test_config_max_frame_bytes_not_a_number(void **state) {
  static const char *const bad[] = {
      "12x", "-1", "", " 64", "+64", "0x40", "1e6", "99999999999999999999"};
  fixture_t *fx = *state;
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(PARSE(fx, "--max-frame-bytes", bad[i]), TOKEND_EINVAL);
    assert_one_line_error(fx, "--max-frame-bytes");
    assert_int_equal(fx->cfg.max_frame_bytes, TOKEND_MAX_FRAME_BYTES_DEFAULT);
  }
}

static void test_config_interval_edges(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--flush-interval-ms", "9"), TOKEND_EINVAL);
  assert_int_equal(PARSE(fx, "--flush-interval-ms", "10"), 0);
  assert_int_equal(fx->cfg.flush_interval_ms, 10);
  assert_int_equal(PARSE(fx, "--flush-interval-ms", "3600000"), 0);
  assert_int_equal(PARSE(fx, "--flush-interval-ms", "3600001"), TOKEND_EINVAL);
  assert_int_equal(fx->cfg.flush_interval_ms, 3600000);
  assert_int_equal(PARSE(fx, "--last-used-granularity-ms", "0"), 0);
  assert_int_equal(fx->cfg.last_used_granularity_ms, 0);
  assert_int_equal(PARSE(fx, "--last-used-granularity-ms", "86400000"), 0);
  assert_int_equal(fx->cfg.last_used_granularity_ms, 86400000);
  assert_int_equal(PARSE(fx, "--last-used-granularity-ms", "86400001"),
                   TOKEND_EINVAL);
  assert_int_equal(PARSE(fx, "--last-used-granularity-ms", "-1"),
                   TOKEND_EINVAL);
  assert_int_equal(PARSE(fx, "--max-list-memory", "65535"), TOKEND_EINVAL);
  assert_one_line_error(fx, "--max-list-memory");
  assert_int_equal(PARSE(fx, "--max-list-memory", "65536"), 0);
  assert_int_equal(fx->cfg.max_list_memory, 65536);
  assert_int_equal(PARSE(fx, "--max-list-memory", "4294967295"), 0);
  assert_int_equal(fx->cfg.max_list_memory, 4294967295u);
  assert_int_equal(PARSE(fx, "--max-list-memory", "4294967296"), TOKEND_EINVAL);
  assert_int_equal(PARSE(fx, "--busy-poll-us", "0"), 0);
  assert_int_equal(fx->cfg.busy_poll_us, 0);
  assert_int_equal(PARSE(fx, "--busy-poll-us", "10000"), 0);
  assert_int_equal(fx->cfg.busy_poll_us, 10000);
  assert_int_equal(PARSE(fx, "--busy-poll-us", "10001"), TOKEND_EINVAL);
  assert_one_line_error(fx, "--busy-poll-us");
  assert_int_equal(PARSE(fx, "--busy-poll-us", "50us"), TOKEND_EINVAL);
  assert_int_equal(PARSE(fx, "--shutdown-timeout-ms", "600000"), 0);
  assert_int_equal(fx->cfg.shutdown_timeout_ms, 600000);
  assert_int_equal(PARSE(fx, "--shutdown-timeout-ms", "600001"), TOKEND_EINVAL);
  assert_one_line_error(fx, "--shutdown-timeout-ms");
}

static void test_config_bad_token_prefix_rejected(void **state) {
  static const char *const bad[] = {"", "Acme", "ac-me", "ac_me",
                                    "abcdefghijklmnopq"};
  fixture_t *fx = *state;
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(PARSE(fx, "--token-prefix", bad[i]), TOKEND_EINVAL);
    assert_one_line_error(fx, "--token-prefix");
    assert_string_equal(fx->cfg.token_prefix, TOKEND_PREFIX_DEFAULT);
  }
  /* 16 characters is the longest accepted. */
  assert_int_equal(PARSE(fx, "--token-prefix", "abcdefghijklmnop"), 0);
  assert_string_equal(fx->cfg.token_prefix, "abcdefghijklmnop");
}

static void test_config_bad_log_level_rejected(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--log-level", "verbose"), TOKEND_EINVAL);
  assert_one_line_error(fx, "--log-level");
  assert_int_equal(fx->cfg.log_level, LOG_INFO);
  assert_int_equal(PARSE(fx, "--log-level", "warn"), 0);
  assert_int_equal(fx->cfg.log_level, LOG_WARN);
}

static void test_config_empty_path_rejected(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--db="), TOKEND_EINVAL);
  assert_one_line_error(fx, "--db");
  assert_string_equal(fx->cfg.db_path, CONFIG_DB_DEFAULT);
}

static void test_config_too_long_path_rejected(void **state) {
  fixture_t *fx = *state;
  static char path[CONFIG_PATH_BYTES + 1];

  memset(path, 'p', CONFIG_PATH_BYTES);
  path[CONFIG_PATH_BYTES] = '\0';
  assert_int_equal(PARSE(fx, "--db", path), TOKEND_EINVAL);
  assert_one_line_error(fx, "--db");
  /* One character shorter fits. */
  path[CONFIG_PATH_BYTES - 1] = '\0';
  assert_int_equal(PARSE(fx, "--db", path), 0);
  assert_string_equal(fx->cfg.db_path, path);
}

/* A socket path must fit sun_path (107 bytes and a NUL): refused at parse
 * time, before any file is created. */
static void test_config_socket_path_must_fit_sun_path(void **state) {
  fixture_t *fx = *state;
  char path[109];

  memset(path, 's', 107);
  path[107] = '\0';
  assert_int_equal(PARSE(fx, "--socket", path), 0);
  path[107] = 's';
  path[108] = '\0';
  assert_int_equal(PARSE(fx, "--socket", path), TOKEND_EINVAL);
  assert_one_line_error(fx, "--socket");
}

static void test_config_help_prints_usage(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--help"), 1);
  assert_non_null(strstr(fx->out, "Usage: tokend"));
  assert_non_null(strstr(fx->out, "--max-frame-bytes"));
  assert_string_equal(fx->err, "");

  assert_int_equal(PARSE(fx, "-h"), 1);
  assert_non_null(strstr(fx->out, "Usage: tokend"));
}

static void test_config_version_prints_version(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--version"), 1);
  assert_string_equal(fx->out, "tokend " TOKEND_VERSION "\n");
  assert_string_equal(fx->err, "");
}

static void test_config_unknown_flag_rejected(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--bogus"), TOKEND_EINVAL);
  assert_one_line_error(fx, "'--bogus'");
  assert_int_equal(PARSE(fx, "-x"), TOKEND_EINVAL);
  assert_one_line_error(fx, "'-x'");
}

/* In a cluster of short options the unknown one is named, not argv[0]. */
static void test_config_unknown_short_option_in_cluster_named(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "-xh"), TOKEND_EINVAL);
  assert_one_line_error(fx, "'-x'");
}

static void test_config_stray_argument_rejected(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--db", "/tmp/t.db", "extra"), TOKEND_EINVAL);
  assert_one_line_error(fx, "'extra'");
  assert_int_equal(PARSE(fx, "extra"), TOKEND_EINVAL);
  assert_one_line_error(fx, "'extra'");
}

static void test_config_missing_value_rejected(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--db"), TOKEND_EINVAL);
  assert_one_line_error(fx, "--db needs a value");
  assert_int_equal(PARSE(fx, "--log-level", "info", "--max-frame-bytes"),
                   TOKEND_EINVAL);
  assert_one_line_error(fx, "--max-frame-bytes needs a value");
}

static void test_config_default_dir_only_without_paths(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--socket", "/tmp/s.sock"), 0);
  assert_int_equal(fx->cfg.default_dir, 1);
  assert_int_equal(PARSE(fx, "--db", "/tmp/t.db"), 0);
  assert_int_equal(fx->cfg.default_dir, 0);
  assert_int_equal(PARSE(fx, "--pepper-file", "/tmp/pep"), 0);
  assert_int_equal(fx->cfg.default_dir, 0);
  assert_int_equal(PARSE(fx, "--log-level", "info"), 0);
  assert_int_equal(fx->cfg.default_dir, 1);
}

/* config_parse resets getopt itself: a second call parses its own argv from
 * the start, whatever the first one left behind. */
static void test_config_parse_twice_starts_over(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--db", "/tmp/a.db", "stray"), TOKEND_EINVAL);
  assert_int_equal(PARSE(fx, "--db", "/tmp/b.db"), 0);
  assert_string_equal(fx->cfg.db_path, "/tmp/b.db");

  /* A parse that stopped inside a cluster of short options ("-xh": 'x'
   * rejected, 'h' not yet read) must not leak the rest into the next. */
  assert_int_equal(PARSE(fx, "-xh"), TOKEND_EINVAL);
  assert_int_equal(PARSE(fx, "--db", "/tmp/c.db"), 0);
  assert_string_equal(fx->out, "");
  assert_string_equal(fx->cfg.db_path, "/tmp/c.db");
}

/* --store URL picks the backend; --db PATH is --store sqlite:PATH; the last
 * of them wins; messages keep naming the database by its path. */
static void test_config_store_url_and_db_synonym(void **state) {
  fixture_t *fx = *state;
  char url[CONFIG_STORE_URL_BYTES];

  assert_string_equal(config_store_url(&fx->cfg, url, sizeof(url)),
                      "sqlite:" CONFIG_DB_DEFAULT);
  assert_int_equal(PARSE(fx, "--store", "sqlite:/tmp/s.db"), 0);
  assert_string_equal(config_store_url(&fx->cfg, url, sizeof(url)),
                      "sqlite:/tmp/s.db");
  assert_string_equal(fx->cfg.db_path, "/tmp/s.db");
  assert_int_equal(fx->cfg.default_dir, 0);
  assert_int_equal(
      PARSE(fx, "--store", "sqlite:/tmp/s.db", "--db", "/tmp/d.db"), 0);
  assert_string_equal(config_store_url(&fx->cfg, url, sizeof(url)),
                      "sqlite:/tmp/d.db");
  assert_int_equal(PARSE(fx, "--db", "/tmp/d.db", "--store", "/tmp/bare.db"),
                   0);
  assert_string_equal(config_store_url(&fx->cfg, url, sizeof(url)),
                      "/tmp/bare.db");
  assert_string_equal(fx->cfg.db_path, "/tmp/bare.db");
}

/* A PostgreSQL URI is kept whole for the store, but what messages call the
 * database (db_path) never holds its password, in the authority or as a
 * query parameter; a mistyped scheme's error hides it too. */
static void test_config_store_password_never_in_messages(void **state) {
  fixture_t *fx = *state;
  char url[CONFIG_STORE_URL_BYTES];

  assert_int_equal(
      PARSE(fx, "--store", "postgresql://tok:s3cret@db.example/tokend"), 0);
  assert_string_equal(config_store_url(&fx->cfg, url, sizeof(url)),
                      "postgresql://tok:s3cret@db.example/tokend");
  assert_string_equal(fx->cfg.db_path, "postgresql://tok@db.example/tokend");
  assert_int_equal(PARSE(fx, "--store",
                         "postgres://tok@h/db?sslmode=require&password="
                         "s3cret&connect_timeout=3"),
                   0);
  assert_string_equal(fx->cfg.db_path, "postgres://tok@h/db?sslmode=require&"
                                       "password=xxx&connect_timeout=3");
  assert_int_equal(PARSE(fx, "--store", "postgresql:///tokend?host=/run/pg"),
                   0);
  assert_string_equal(fx->cfg.db_path, "postgresql:///tokend?host=/run/pg");
  PARSE(fx, "--store", "postgresq://tok:s3cret@h/db");
  assert_one_line_error(fx, "postgresq://tok@h/db");
  assert_null(strstr(fx->err, "s3cret"));
}

/* An unknown scheme is a one-line start-up error naming the schemes this
 * build has. */
static void test_config_store_unknown_scheme_rejected(void **state) {
  fixture_t *fx = *state;

  PARSE(fx, "--store", "foo:bar");
  assert_one_line_error(fx, "unknown store scheme 'foo' in --store foo:bar; "
                            "this build has: sqlite, postgresql, postgres");
  PARSE(fx, "--store", "");
  assert_one_line_error(fx, "--store");
  PARSE(fx, "--store", "sqlite:");
  assert_one_line_error(fx, "--store");
}

/* --store-file: the URL from a file's first line, so no password sits in
 * argv (ps, /proc/PID/cmdline); a file others may read is refused, and
 * what messages call the database still hides the password. */
static void test_config_store_file(void **state) {
  fixture_t *fx = *state;
  char path[] = "/tmp/tokend_store_file_XXXXXX", url[CONFIG_STORE_URL_BYTES];
  int fd = mkstemp(path);
  static const char line[] = "postgresql://tok:s3cret@db.example/tokend\n";

  assert_true(fd >= 0);
  assert_int_equal(write(fd, line, sizeof(line) - 1), (int)sizeof(line) - 1);
  close(fd);
  assert_int_equal(chmod(path, 0600), 0);
  assert_int_equal(PARSE(fx, "--store-file", path), 0);
  assert_string_equal(config_store_url(&fx->cfg, url, sizeof(url)),
                      "postgresql://tok:s3cret@db.example/tokend");
  assert_string_equal(fx->cfg.db_path, "postgresql://tok@db.example/tokend");
  assert_int_equal(chmod(path, 0644), 0);
  PARSE(fx, "--store-file", path);
  assert_one_line_error(fx, "readable by others");
  assert_null(strstr(fx->err, "s3cret"));
  unlink(path);
  PARSE(fx, "--store-file", path);
  assert_one_line_error(fx, "No such file");
}

/* The multi-host flags: defaults, bounds, and a host id that is one word. */
static void test_config_multi_host_flags(void **state) {
  fixture_t *fx = *state;
  char id[CONFIG_HOST_ID_BYTES];

  assert_int_equal(fx->cfg.lease_ms, CONFIG_LEASE_MS_DEFAULT);
  assert_int_equal(fx->cfg.propagation_timeout_ms,
                   CONFIG_PROPAGATION_TIMEOUT_MS_DEFAULT);
  assert_int_equal(fx->cfg.issue_no_wait, 0);
  assert_non_null(strstr(config_host_id(&fx->cfg, id, sizeof(id)), ":"));
  assert_int_equal(PARSE(fx, "--host-id", "api-7", "--lease-ms", "1500",
                         "--propagation-timeout-ms", "0", "--no-issue-wait"),
                   0);
  assert_string_equal(config_host_id(&fx->cfg, id, sizeof(id)), "api-7");
  assert_int_equal(fx->cfg.lease_ms, 1500);
  assert_int_equal(fx->cfg.propagation_timeout_ms, 0);
  assert_int_equal(fx->cfg.issue_no_wait, 1);
  PARSE(fx, "--host-id", "two words");
  assert_one_line_error(fx, "--host-id");
  PARSE(fx, "--host-id", "");
  assert_one_line_error(fx, "--host-id");
  PARSE(fx, "--lease-ms", "50");
  assert_one_line_error(fx, "--lease-ms");
}

static void test_config_feed_keep_edges(void **state) {
  fixture_t *fx = *state;
  char over[24];

  assert_int_equal(fx->cfg.feed_keep, CONFIG_FEED_KEEP_DEFAULT);
  assert_int_equal(fx->cfg.feed_keep_minutes, CONFIG_FEED_KEEP_MINUTES_DEFAULT);
  /* 0 and 0: never pruned; and the largest of each. */
  assert_int_equal(PARSE(fx, "--feed-keep", "0", "--feed-keep-minutes", "0"),
                   0);
  assert_int_equal(fx->cfg.feed_keep, 0);
  assert_int_equal(fx->cfg.feed_keep_minutes, 0);
  snprintf(over, sizeof(over), "%u", (unsigned)CONFIG_FEED_KEEP_MAX);
  assert_int_equal(PARSE(fx, "--feed-keep", over), 0);
  assert_int_equal(fx->cfg.feed_keep, CONFIG_FEED_KEEP_MAX);
  snprintf(over, sizeof(over), "%u", (unsigned)CONFIG_FEED_KEEP_MAX + 1);
  PARSE(fx, "--feed-keep", over);
  assert_one_line_error(fx, "--feed-keep");
  snprintf(over, sizeof(over), "%u", (unsigned)CONFIG_FEED_KEEP_MINUTES_MAX);
  assert_int_equal(PARSE(fx, "--feed-keep-minutes", over), 0);
  snprintf(over, sizeof(over), "%u",
           (unsigned)CONFIG_FEED_KEEP_MINUTES_MAX + 1);
  PARSE(fx, "--feed-keep-minutes", over);
  assert_one_line_error(fx, "--feed-keep-minutes");
}

#define CONFIG_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static void test_config_limit_flags_parsed(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--max-connections", "7", "--read-timeout-ms",
                         "300", "--idle-timeout-ms", "0", "--max-queued-bytes",
                         "65536", "--max-queued-bytes-hard", "131072",
                         "--max-request-memory", "8192"),
                   0);
  assert_int_equal(fx->cfg.max_connections, 7);
  assert_int_equal(fx->cfg.read_timeout_ms, 300);
  assert_int_equal(fx->cfg.idle_timeout_ms, 0);
  assert_int_equal(fx->cfg.max_queued_bytes, 65536);
  assert_int_equal(fx->cfg.max_queued_bytes_hard, 131072);
  assert_int_equal(fx->cfg.max_request_memory, 8192);
}

static void test_config_hard_queue_below_soft_rejected(void **state) {
  fixture_t *fx = *state;

  PARSE(fx, "--max-queued-bytes", "65536", "--max-queued-bytes-hard", "8192");
  assert_one_line_error(fx, "--max-queued-bytes-hard");
  PARSE(fx, "--max-connections", "0");
  assert_one_line_error(fx, "--max-connections");
}

/* The connection shares (issue 11): defaults, flags, the default operators'
 * reserve shrinking to a quarter of a small --max-connections, and an
 * explicit reserve that would leave non-operators nothing refused. */
static void test_config_connection_shares(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--socket", "/tmp/x.sock"), 0);
  assert_int_equal(fx->cfg.max_connections_per_uid, 256);
  assert_int_equal(fx->cfg.reserved_operator_connections, 8);
  assert_int_equal(fx->cfg.max_read_memory, 256u * 1024u * 1024u);
  assert_int_equal(PARSE(fx, "--max-connections", "4"), 0);
  assert_int_equal(fx->cfg.reserved_operator_connections, 1);
  assert_int_equal(PARSE(fx, "--max-connections", "10",
                         "--max-connections-per-uid", "3",
                         "--reserved-operator-connections", "9",
                         "--max-read-memory", "65536"),
                   0);
  assert_int_equal(fx->cfg.max_connections_per_uid, 3);
  assert_int_equal(fx->cfg.reserved_operator_connections, 9);
  assert_int_equal(fx->cfg.max_read_memory, 65536);
  PARSE(fx, "--max-connections", "10", "--reserved-operator-connections", "10");
  assert_one_line_error(fx, "--reserved-operator-connections");
  PARSE(fx, "--max-connections-per-uid", "0");
  assert_one_line_error(fx, "--max-connections-per-uid");
  PARSE(fx, "--max-read-memory", "65535");
  assert_one_line_error(fx, "--max-read-memory");
}

/* --conn-buffer-pool: 64 by default, 0 (keep none) up to 1,000,000. */
static void test_config_conn_buffer_pool(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--socket", "/tmp/x.sock"), 0);
  assert_int_equal(fx->cfg.conn_buffer_pool, 64);
  assert_int_equal(PARSE(fx, "--conn-buffer-pool", "0"), 0);
  assert_int_equal(fx->cfg.conn_buffer_pool, 0);
  assert_int_equal(PARSE(fx, "--conn-buffer-pool", "1000000"), 0);
  assert_int_equal(fx->cfg.conn_buffer_pool, 1000000);
  PARSE(fx, "--conn-buffer-pool", "1000001");
  assert_one_line_error(fx, "--conn-buffer-pool");
}

/* By default root (and tokend's own user) are operators and everyone may
 * verify; naming an operator replaces the defaults; naming a verifier
 * restricts Verify to the named. */
static void test_config_policy_defaults_and_flags(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(PARSE(fx, "--log-level", "info"), 0);
  assert_true(fx->cfg.operators.n_uids >= 1);
  assert_int_equal(fx->cfg.operators.uids[0], 0);
  assert_int_equal(fx->cfg.any_verifier, 1);

  assert_int_equal(PARSE(fx, "--operator-uid", "1234", "--operator-group", "55",
                         "--verifier-uid", "root", "--verifier-group", "0"),
                   0);
  assert_int_equal(fx->cfg.operators.n_uids, 1);
  assert_int_equal(fx->cfg.operators.uids[0], 1234);
  assert_int_equal(fx->cfg.operators.n_gids, 1);
  assert_int_equal(fx->cfg.operators.gids[0], 55);
  assert_int_equal(fx->cfg.any_verifier, 0);
  assert_int_equal(fx->cfg.verifiers.n_uids, 1);
  assert_int_equal(fx->cfg.verifiers.uids[0], 0); /* "root" resolved */
  assert_int_equal(fx->cfg.verifiers.gids[0], 0);
}

static void test_config_unknown_user_or_group_rejected(void **state) {
  fixture_t *fx = *state;

  PARSE(fx, "--operator-uid", "no-such-user-tokend-test");
  assert_one_line_error(fx, "no such user");
  PARSE(fx, "--verifier-group", "no-such-group-tokend-test");
  assert_one_line_error(fx, "no such group");
}

static void test_config_socket_mode_and_group(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(fx->cfg.socket_mode, 0600);
  assert_int_equal(fx->cfg.socket_gid, -1);
  assert_int_equal(PARSE(fx, "--socket-mode", "0660", "--socket-group", "0"),
                   0);
  assert_int_equal(fx->cfg.socket_mode, 0660);
  assert_int_equal(fx->cfg.socket_gid, 0);
  /* Not octal, too wide, or shutting tokend's own user out. */
  PARSE(fx, "--socket-mode", "0698");
  assert_one_line_error(fx, "--socket-mode");
  PARSE(fx, "--socket-mode", "01777");
  assert_one_line_error(fx, "--socket-mode");
  PARSE(fx, "--socket-mode", "0066");
  assert_one_line_error(fx, "--socket-mode");
}

/* The HTTP face's flags (issue 14): off by default; repeatable
 * --http-listen with unix: and IPv4 addresses; each bad value one line. */
static void test_config_http_flags(void **state) {
  fixture_t *fx = *state;

  assert_int_equal(fx->cfg.n_http_listen, 0);
  assert_string_equal(fx->cfg.http_verify_path, "/verify");
  assert_string_equal(fx->cfg.http_token_header, "Authorization");
  assert_int_equal(fx->cfg.http_tcp_verify, 0);
  assert_int_equal(PARSE(fx, "--http-listen", "unix:/run/t/http.sock",
                         "--http-listen", "127.0.0.1:8080",
                         "--http-verify-path", "/auth", "--http-token-header",
                         "X-Api-Key", "--http-tcp-verify"),
                   0);
  assert_int_equal(fx->cfg.n_http_listen, 2);
  assert_string_equal(fx->cfg.http_listen[0], "unix:/run/t/http.sock");
  assert_string_equal(fx->cfg.http_listen[1], "127.0.0.1:8080");
  assert_string_equal(fx->cfg.http_verify_path, "/auth");
  assert_string_equal(fx->cfg.http_token_header, "X-Api-Key");
  assert_int_equal(fx->cfg.http_tcp_verify, 1);
}

static void test_config_http_bad_values_rejected(void **state) {
  fixture_t *fx = *state;

  PARSE(fx, "--http-listen", "localhost:80");
  assert_one_line_error(fx, "--http-listen");
  PARSE(fx, "--http-listen", "127.0.0.1:65536");
  assert_one_line_error(fx, "--http-listen");
  PARSE(fx, "--http-listen", "127.0.0.1:");
  assert_one_line_error(fx, "--http-listen");
  PARSE(fx, "--http-listen", "unix:");
  assert_one_line_error(fx, "--http-listen");
  PARSE(fx, "--http-listen", "/run/http.sock");
  assert_one_line_error(fx, "--http-listen");
  PARSE(fx, "--http-listen", "unix:/a", "--http-listen", "unix:/b",
        "--http-listen", "unix:/c", "--http-listen", "unix:/d", "--http-listen",
        "unix:/e");
  assert_one_line_error(fx, "at most 4");
  PARSE(fx, "--http-verify-path", "verify");
  assert_one_line_error(fx, "--http-verify-path");
  PARSE(fx, "--http-token-header", "X Key");
  assert_one_line_error(fx, "--http-token-header");
}

/* The parsed form: the port, 0 included, and the path after unix:. */
static void test_config_http_addr_parse(void **state) {
  config_http_addr_t a;
  char why[160];

  (void)state;
  assert_int_equal(
      config_http_addr_parse("unix:/x/h.sock", &a, why, sizeof(why)), 0);
  assert_true(a.is_unix);
  assert_string_equal(a.path, "/x/h.sock");
  assert_int_equal(config_http_addr_parse("127.0.0.1:0", &a, why, sizeof(why)),
                   0);
  assert_false(a.is_unix);
  assert_string_equal(a.host, "127.0.0.1");
  assert_int_equal(a.port, 0);
  assert_int_equal(
      config_http_addr_parse("10.1.2.3:65535", &a, why, sizeof(why)), 0);
  assert_int_equal(a.port, 65535);
  assert_int_equal(config_http_addr_parse("127.0.0.1:-1", &a, why, sizeof(why)),
                   TOKEND_EINVAL);
  assert_int_equal(config_http_addr_parse("1.2.3:80", &a, why, sizeof(why)),
                   TOKEND_EINVAL);
}

/* ---- --config FILE (issue 16) ---- */

/* Writes text to a new temporary file; its path goes into path (freed
 * with unlink by the caller). */
static void write_conf(char *path, size_t len, const char *text) {
  FILE *f;
  int fd;

  snprintf(path, len, "/tmp/tokend-test-conf-XXXXXX");
  fd = mkstemp(path);
  assert_true(fd >= 0);
  f = fdopen(fd, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static void test_config_file_then_flags_override_it(void **state) {
  fixture_t *fx = *state;
  char path[64];

  write_conf(path, sizeof(path),
             "# tokend.conf\n"
             "max-connections = 100\n"
             "\n"
             "log-level = debug\n"
             "  pepper-file = /tmp/p  \n"
             "create-db = yes\n");
  assert_int_equal(PARSE(fx, "--max-connections", "50", "--config", path), 0);
  assert_string_equal(fx->err, "");
  assert_int_equal(fx->cfg.max_connections, 50);
  assert_int_equal(fx->cfg.log_level, LOG_DEBUG);
  assert_string_equal(fx->cfg.pepper_path, "/tmp/p");
  assert_int_equal(fx->cfg.create_db, 1);
  assert_string_equal(fx->cfg.config_path, path);
  /* A path from the file is explicit: var/ is not created by itself. */
  assert_int_equal(fx->cfg.default_dir, 0);
  unlink(path);
}

static void test_config_file_unknown_key_names_file_and_line(void **state) {
  fixture_t *fx = *state;
  char path[64], want[128];

  write_conf(path, sizeof(path),
             "max-connections = 100\n# a comment\nmax-conections = 5\n");
  assert_int_equal(PARSE(fx, "--config", path), TOKEND_EINVAL);
  snprintf(want, sizeof(want), "%s:3: max-conections: unknown key", path);
  assert_one_line_error(fx, want);
  unlink(path);
}

static void test_config_file_bad_value_names_file_and_line(void **state) {
  fixture_t *fx = *state;
  char path[64], want[128];

  write_conf(path, sizeof(path), "\n\nlease-ms = 5s\n");
  assert_int_equal(PARSE(fx, "--config", path), TOKEND_EINVAL);
  snprintf(want, sizeof(want), "%s:3: lease-ms: '5s' is not a number", path);
  assert_one_line_error(fx, want);
  unlink(path);

  /* Actions and the file itself are not keys. */
  write_conf(path, sizeof(path), "check-config = yes\n");
  assert_int_equal(PARSE(fx, "--config", path), TOKEND_EINVAL);
  snprintf(want, sizeof(want), "%s:1: check-config: unknown key", path);
  assert_one_line_error(fx, want);
  unlink(path);

  write_conf(path, sizeof(path), "read-only = maybe\n");
  assert_int_equal(PARSE(fx, "--config", path), TOKEND_EINVAL);
  snprintf(want, sizeof(want), "%s:1: read-only: 'maybe' is not yes or no",
           path);
  assert_one_line_error(fx, want);
  unlink(path);

  write_conf(path, sizeof(path), "socket = /tmp/s\nno equals sign\n");
  assert_int_equal(PARSE(fx, "--config", path), TOKEND_EINVAL);
  snprintf(want, sizeof(want), "%s:2: not a `key = value` line", path);
  assert_one_line_error(fx, want);
  unlink(path);

  assert_int_equal(PARSE(fx, "--config", "/nonexistent/tokend.conf"),
                   TOKEND_EINVAL);
  assert_one_line_error(fx, "/nonexistent/tokend.conf");
}

static void test_config_file_repeated_keys_make_a_list(void **state) {
  fixture_t *fx = *state;
  char path[64];

  write_conf(path, sizeof(path),
             "operator-uid = 5\noperator-uid = 6\nverifier-uid = 7\n"
             "verifier-group = 8\nread-only = no\n");
  assert_int_equal(PARSE(fx, "--config", path), 0);
  assert_int_equal(fx->cfg.operators.n_uids, 2);
  assert_int_equal(fx->cfg.operators.uids[0], 5);
  assert_int_equal(fx->cfg.operators.uids[1], 6);
  assert_int_equal(fx->cfg.verifiers.n_uids, 1);
  assert_int_equal(fx->cfg.verifiers.n_gids, 1);
  assert_int_equal(fx->cfg.any_verifier, 0);
  assert_int_equal(fx->cfg.read_only, 0);

  /* A list given by flags replaces the file's. */
  config_defaults(&fx->cfg);
  assert_int_equal(PARSE(fx, "--config", path, "--operator-uid", "9",
                         "--verifier-uid", "10"),
                   0);
  assert_int_equal(fx->cfg.operators.n_uids, 1);
  assert_int_equal(fx->cfg.operators.uids[0], 9);
  assert_int_equal(fx->cfg.verifiers.n_uids, 1);
  assert_int_equal(fx->cfg.verifiers.uids[0], 10);
  assert_int_equal(fx->cfg.verifiers.n_gids, 0);
  unlink(path);
}

/* What --check-config prints is a valid file that gives the same
 * settings back. */
static void test_config_print_reads_back_the_same(void **state) {
  fixture_t *fx = *state;
  char path[64], *text = NULL;
  size_t len = 0;
  config_t first;
  FILE *f;

  assert_int_equal(PARSE(fx, "--socket", "/tmp/x.sock", "--operator-uid", "3",
                         "--verifier-group", "4", "--max-connections", "99",
                         "--log-format", "json", "--no-issue-wait",
                         "--check-config"),
                   0);
  assert_int_equal(fx->cfg.check_config, 1);
  first = fx->cfg;
  f = open_memstream(&text, &len);
  assert_non_null(f);
  config_print(&first, f);
  fclose(f);
  assert_non_null(strstr(text, "max-connections = 99\n"));
  assert_non_null(strstr(text, "log-format = json\n"));
  write_conf(path, sizeof(path), text);
  free(text);
  config_defaults(&fx->cfg);
  assert_int_equal(PARSE(fx, "--config", path), 0);
  assert_string_equal(fx->err, "");
  memcpy(fx->cfg.config_path, first.config_path, sizeof(first.config_path));
  fx->cfg.check_config = first.check_config;
  /* The printout names every path: read back, none is a default. */
  assert_int_equal(fx->cfg.default_dir, 0);
  fx->cfg.default_dir = first.default_dir;
  assert_memory_equal(&fx->cfg, &first, sizeof(first));
  unlink(path);
}

static void test_config_check_config_hides_the_store_password(void **state) {
  fixture_t *fx = *state;
  char *text = NULL;
  size_t len = 0;
  FILE *f;

  assert_int_equal(PARSE(fx, "--store", "postgresql://u:hunter2@h/db"), 0);
  f = open_memstream(&text, &len);
  assert_non_null(f);
  config_print(&fx->cfg, f);
  fclose(f);
  assert_null(strstr(text, "hunter2"));
  assert_non_null(strstr(text, "store = postgresql://u"));
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      CONFIG_TEST(test_config_defaults),
      CONFIG_TEST(test_config_db_flags),
      CONFIG_TEST(test_config_refusal_audit_flags),
      CONFIG_TEST(test_config_defaults_honour_socket_env),
      CONFIG_TEST(test_config_no_args_keeps_defaults),
      CONFIG_TEST(test_config_parses_every_flag),
      CONFIG_TEST(test_config_limit_flags_parsed),
      CONFIG_TEST(test_config_socket_path_must_fit_sun_path),
      CONFIG_TEST(test_config_hard_queue_below_soft_rejected),
      CONFIG_TEST(test_config_connection_shares),
      CONFIG_TEST(test_config_http_flags),
      CONFIG_TEST(test_config_http_bad_values_rejected),
      CONFIG_TEST(test_config_http_addr_parse),
      CONFIG_TEST(test_config_conn_buffer_pool),
      CONFIG_TEST(test_config_policy_defaults_and_flags),
      CONFIG_TEST(test_config_unknown_user_or_group_rejected),
      CONFIG_TEST(test_config_socket_mode_and_group),
      CONFIG_TEST(test_config_store_file),
      CONFIG_TEST(test_config_multi_host_flags),
      CONFIG_TEST(test_config_feed_keep_edges),
      CONFIG_TEST(test_config_flag_equals_form),
      CONFIG_TEST(test_config_max_frame_bytes_edges),
      CONFIG_TEST(test_config_max_frame_bytes_not_a_number),
      CONFIG_TEST(test_config_interval_edges),
      CONFIG_TEST(test_config_bad_token_prefix_rejected),
      CONFIG_TEST(test_config_bad_log_level_rejected),
      CONFIG_TEST(test_config_empty_path_rejected),
      CONFIG_TEST(test_config_too_long_path_rejected),
      CONFIG_TEST(test_config_help_prints_usage),
      CONFIG_TEST(test_config_version_prints_version),
      CONFIG_TEST(test_config_unknown_flag_rejected),
      CONFIG_TEST(test_config_unknown_short_option_in_cluster_named),
      CONFIG_TEST(test_config_stray_argument_rejected),
      CONFIG_TEST(test_config_missing_value_rejected),
      CONFIG_TEST(test_config_default_dir_only_without_paths),
      CONFIG_TEST(test_config_parse_twice_starts_over),
      CONFIG_TEST(test_config_store_url_and_db_synonym),
      CONFIG_TEST(test_config_store_unknown_scheme_rejected),
      CONFIG_TEST(test_config_store_password_never_in_messages),
      CONFIG_TEST(test_config_file_then_flags_override_it),
      CONFIG_TEST(test_config_file_unknown_key_names_file_and_line),
      CONFIG_TEST(test_config_file_bad_value_names_file_and_line),
      CONFIG_TEST(test_config_file_repeated_keys_make_a_list),
      CONFIG_TEST(test_config_print_reads_back_the_same),
      CONFIG_TEST(test_config_check_config_hides_the_store_password),
  };

  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
