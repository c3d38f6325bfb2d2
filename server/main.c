/* tokend: the API-token daemon. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "log_json.h"
#include "server.h"
#include "store/store.h"

/* Lines for journald or a log shipper: json by --log-format; else, when
 * stderr is the stream systemd connected to the journal ($JOURNAL_STREAM
 * names its device and inode, sd-daemon(3)), lines with their priority. */
static void log_setup(const config_t *cfg) {
  const char *env = getenv("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;

  if (cfg->log_format == LOG_FORMAT_JSON) {
    log_set_writer(log_json_write);
    return;
  }
  log_set_journal(env != NULL && sscanf(env, "%llu:%llu", &dev, &ino) == 2 &&
                  fstat(STDERR_FILENO, &st) == 0 &&
                  (unsigned long long)st.st_dev == dev &&
                  (unsigned long long)st.st_ino == ino);
}

int main(int argc, char **argv) {
  config_t cfg;
  server_t *s;
  int rc;

  /* A peer that hangs up mid-write must never kill the daemon. */
  signal(SIGPIPE, SIG_IGN);
  /* The database, its WAL and the pepper are readable by tokend alone. */
  umask(0077);
  config_defaults(&cfg);
  rc = config_parse(&cfg, argc, argv, stdout, stderr);
  if (rc == 1)
    return 0;
  if (rc != 0)
    return 2;
  /* --check-config: the settings are valid (config_parse said so); show
   * what they come to, and touch nothing. */
  if (cfg.check_config) {
    config_print(&cfg, stdout);
    return 0;
  }
  log_setup(&cfg);
  log_set_level(cfg.log_level);
  /* --check-db reads and reports; it never serves or writes. */
  if (cfg.check_db) {
    char url[CONFIG_STORE_URL_BYTES];

    rc = store_check_url(config_store_url(&cfg, url, sizeof(url)), stdout);
    printf("%s: %s\n", cfg.db_path,
           rc == 0 ? "ok" : "FAILED the integrity check (see above)");
    return rc == 0 ? 0 : 1;
  }
  log_set_repeat_interval(cfg.log_repeat_interval_ms);
  /* A core dump would hold the pepper's and tokens' neighbours in memory;
   * not dumpable also keeps processes of tokend's own uid from ptrace-ing
   * it or reading /proc/PID/mem. The core size limit too, for kernels set
   * to dump even non-dumpable processes (fs.suid_dumpable=1). */
  if (!cfg.allow_core_dumps) {
    struct rlimit no_core = {0, 0};

    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 ||
        setrlimit(RLIMIT_CORE, &no_core) != 0) {
      log_error("cannot disable core dumps: %s (or pass --allow-core-dumps)",
                strerror(errno));
      return 1;
    }
  }

  s = calloc(1, sizeof(*s));
  if (s == NULL) {
    log_error("out of memory");
    return 1;
  }
  /* The composition root: config -> store -> rpc -> net (and http) ->
   * loop. */
  rc = server_init(s, &cfg);
  /* SIGHUP reads the file and these flags again (server_reload). */
  s->argc = argc;
  s->argv = argv;
  if (rc == 0)
    rc = server_rpc_new(s);
  if (rc == 0)
    rc = server_net_new(s);
  if (rc == 0)
    rc = server_http_new(s);
  /* The HTTP face first: once the main socket accepts, everything does
   * (tests and supervisors take that as the sign tokend is up). */
  if (rc == 0)
    rc = server_http_listen(s);
  if (rc == 0)
    rc = server_listen(s);
  if (rc == 0)
    rc = server_run(s);
  server_cleanup(s);
  free(s);
  if (rc != 0)
    return 1;
  log_info("tokend stopped");
  return 0;
}
