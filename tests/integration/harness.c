#define _GNU_SOURCE /* memmem, pipe2 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "frame.h"

#ifndef TOKEND_BIN
#error "TOKEND_BIN must name the tokend executable"
#endif
#ifndef TOKENCTL_BIN
#error "TOKENCTL_BIN must name the tokenctl executable"
#endif
#if !defined(TOKEND_CLIENT_LIB) || !defined(TOKEND_CLIENT_LIB_SONAME)
#error "TOKEND_CLIENT_LIB(_SONAME) must name libtokend-client and its soname"
#endif

/* Upper bound on a Response we are willing to read: far above any real one,
 * so a broken length field fails the test instead of allocating wildly. */
#define TH_MAX_RESPONSE_BYTES (16u * 1024u * 1024u)
#define TH_MAX_ARGS 64
#define TH_TOKENCTL_TIMEOUT_MS 10000

int64_t th_now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t th_mono_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

int th_wrapped(void) {
  const char *w = getenv(TH_WRAPPER_ENV);

  return w != NULL && w[strspn(w, " ")] != '\0';
}

int th_timeout_scale(void) { return th_wrapped() ? 10 : 1; }

int th_memory_measurable(void) {
#ifdef TOKEND_SANITIZE
  /* ASan keeps freed memory in quarantine: peak RSS says nothing. */
  return 0;
#else
  return !th_wrapped();
#endif
}

static int th_remaining(int64_t deadline) {
  int64_t left = deadline - th_mono_ms();

  return left <= 0 ? 0 : (int)left;
}

/* ---- tokend ---- */

int th_tokend_init(th_tokend_t *t) {
  const char *tmp = getenv("TMPDIR");

  memset(t, 0, sizeof(*t));
  /* Unix socket paths are short (108 bytes): fall back to /tmp when
   * $TMPDIR is long. */
  if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 60)
    tmp = "/tmp";
  snprintf(t->dir, sizeof(t->dir), "%s/tokend-it-XXXXXX", tmp);
  if (mkdtemp(t->dir) == NULL) {
    fprintf(stderr, "harness: mkdtemp %s: %s\n", t->dir, strerror(errno));
    return -1;
  }
  snprintf(t->socket_path, sizeof(t->socket_path), "%s/tokend.sock", t->dir);
  snprintf(t->db_path, sizeof(t->db_path), "%s/tokend.db", t->dir);
  snprintf(t->pepper_path, sizeof(t->pepper_path), "%s/pepper", t->dir);
  snprintf(t->log_path, sizeof(t->log_path), "%s/tokend.log", t->dir);
  return 0;
}

/* In the child, before exec: t->listen_fd becomes fd 3 (SD_LISTEN_FDS_START)
 * and the variables say so, naming this process, which exec keeps. */
static int th_pass_listen_fd(const th_tokend_t *t) {
  char pid[32], names[256];
  int second = t->listen_fd2 > 0, fd2 = t->listen_fd2;

  /* The second out of the way of fd 3 first. */
  if (second && fd2 == 3 && (fd2 = dup(fd2)) < 0)
    return -1;
  if (t->listen_fd != 3 && dup2(t->listen_fd, 3) != 3)
    return -1;
  /* dup2 clears FD_CLOEXEC on its copy; fd 3 itself may have it. */
  if (t->listen_fd == 3 && fcntl(3, F_SETFD, 0) != 0)
    return -1;
  if (second && fd2 != 4 && dup2(fd2, 4) != 4)
    return -1;
  if (second && fd2 == 4 && fcntl(4, F_SETFD, 0) != 0)
    return -1;
  snprintf(pid, sizeof(pid), "%ld", (long)getpid());
  if (setenv("LISTEN_FDS", second ? "2" : "1", 1) != 0 ||
      setenv("LISTEN_PID", pid, 1) != 0)
    return -1;
  if (second) {
    snprintf(names, sizeof(names), "%s:%s",
             t->listen_fdname != NULL ? t->listen_fdname : "unknown",
             t->listen_fdname2 != NULL ? t->listen_fdname2 : "unknown");
    return setenv("LISTEN_FDNAMES", names, 1);
  }
  if (t->listen_fdname != NULL)
    return setenv("LISTEN_FDNAMES", t->listen_fdname, 1);
  return unsetenv("LISTEN_FDNAMES");
}

int th_tokend_spawn(th_tokend_t *t, const char *const *extra_args) {
  const char *argv[TH_MAX_ARGS];
  const char *wrapper_env = getenv(TH_WRAPPER_ENV);
  char *wrapper = NULL, *word, *save = NULL;
  const char *bin;
  size_t n = 0, i;
  pid_t pid;
  int log_fd, null_fd;

  if (t->pid != 0) {
    fprintf(stderr, "harness: tokend already runs (pid %d)\n", (int)t->pid);
    return -1;
  }
  /* The wrapper's words come first: it runs tokend. */
  if (th_wrapped()) {
    wrapper = strdup(wrapper_env);
    if (wrapper == NULL)
      return -1;
    for (word = strtok_r(wrapper, " ", &save); word != NULL;
         word = strtok_r(NULL, " ", &save)) {
      if (n + 8 >= TH_MAX_ARGS) {
        fprintf(stderr, "harness: too many words in $%s\n", TH_WRAPPER_ENV);
        free(wrapper);
        return -1;
      }
      argv[n++] = word;
    }
  }
  bin = TOKEND_BIN;
  if (t->uid != 0 && (th_tokend_for_other_uids(&bin) != 0 ||
                      chown(t->dir, t->uid, (gid_t)t->uid) != 0)) {
    fprintf(stderr, "harness: cannot prepare tokend to run as uid %u\n",
            (unsigned)t->uid);
    free(wrapper);
    return -1;
  }
  argv[n++] = bin;
  argv[n++] = "--socket";
  argv[n++] = t->socket_path;
  argv[n++] = "--db";
  argv[n++] = t->db_path;
  argv[n++] = "--pepper-file";
  argv[n++] = t->pepper_path;
  if (!t->no_create_db)
    argv[n++] = "--create-db";
  for (i = 0; extra_args != NULL && extra_args[i] != NULL; i++) {
    if (n + 1 >= TH_MAX_ARGS) {
      fprintf(stderr, "harness: too many tokend arguments\n");
      free(wrapper);
      return -1;
    }
    argv[n++] = extra_args[i];
  }
  argv[n] = NULL;

  log_fd = open(t->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    fprintf(stderr, "harness: open %s: %s\n", t->log_path, strerror(errno));
    free(wrapper);
    return -1;
  }
  null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid = fork();
  if (pid < 0) {
    fprintf(stderr, "harness: fork: %s\n", strerror(errno));
    close(log_fd);
    close(null_fd);
    free(wrapper);
    return -1;
  }
  if (pid == 0) {
    /* A test that dies must not leave a daemon behind. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (null_fd >= 0)
      dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    /* Anything tokend creates by default lands in the temporary dir. */
    if (chdir(t->dir) != 0)
      _exit(126);
    if (t->uid != 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)t->uid) != 0 ||
                        setuid(t->uid) != 0))
      _exit(126);
    for (i = 0; t->env != NULL && t->env[i] != NULL; i++)
      putenv((char *)t->env[i]);
    if (t->listen_fd > 0 && th_pass_listen_fd(t) != 0)
      _exit(126);
    /* execvp: a wrapper is usually named, not given by path. */
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(log_fd);
  if (null_fd >= 0)
    close(null_fd);
  free(wrapper);
  t->pid = pid;
  return 0;
}

static int th_status_code(int wstatus) {
  if (WIFEXITED(wstatus))
    return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus))
    return 128 + WTERMSIG(wstatus);
  return -1;
}

int th_tokend_wait_exit(th_tokend_t *t, int timeout_ms) {
  int64_t deadline = th_mono_ms() + timeout_ms;
  int wstatus;
  pid_t r;

  if (t->pid == 0)
    return -1;
  for (;;) {
    r = waitpid(t->pid, &wstatus, WNOHANG);
    if (r == t->pid) {
      t->pid = 0;
      return th_status_code(wstatus);
    }
    if (r < 0 && errno != EINTR) {
      fprintf(stderr, "harness: waitpid: %s\n", strerror(errno));
      t->pid = 0;
      return -1;
    }
    if (th_mono_ms() >= deadline)
      return -1;
    th_sleep_ms(5);
  }
}

int th_tokend_start(th_tokend_t *t, const char *const *extra_args) {
  int64_t deadline;
  int fd, status;

  if (th_tokend_spawn(t, extra_args) != 0)
    return -1;
  deadline = th_mono_ms() + TH_START_TIMEOUT_MS;
  for (;;) {
    fd = th_connect(t->socket_path);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    status = th_tokend_wait_exit(t, 0);
    if (status >= 0) {
      fprintf(stderr, "harness: tokend exited with status %d while starting\n",
              status);
      th_tokend_dump_log(t);
      return -1;
    }
    if (th_mono_ms() >= deadline) {
      fprintf(stderr,
              "harness: tokend did not accept connections on %s within "
              "%d ms\n",
              t->socket_path, TH_START_TIMEOUT_MS);
      th_tokend_dump_log(t);
      th_tokend_kill(t);
      return -1;
    }
    th_sleep_ms(10);
  }
}

int th_tokend_stop(th_tokend_t *t) {
  int status;

  if (t->pid == 0) {
    fprintf(stderr, "harness: stop: tokend is not running\n");
    return -1;
  }
  kill(t->pid, SIGTERM);
  status = th_tokend_wait_exit(t, TH_STOP_TIMEOUT_MS);
  if (status < 0) {
    fprintf(stderr, "harness: tokend ignored SIGTERM for %d ms; killing it\n",
            TH_STOP_TIMEOUT_MS);
    th_tokend_dump_log(t);
    th_tokend_kill(t);
    return -1;
  }
  return status;
}

int th_tokend_stop_clean(th_tokend_t *t) {
  int status = th_tokend_stop(t);

  if (status == 0)
    return 0;
  fprintf(stderr, "harness: tokend exited with status %d on SIGTERM, want 0\n",
          status);
  th_tokend_dump_log(t);
  return -1;
}

void th_tokend_stop_ok(th_tokend_t *t) {
  if (th_tokend_stop_clean(t) != 0)
    fail_msg("tokend did not stop cleanly on SIGTERM (its log is above)");
}

int th_tokend_kill(th_tokend_t *t) {
  if (t->pid == 0)
    return -1;
  kill(t->pid, SIGKILL);
  return th_tokend_wait_exit(t, TH_STOP_TIMEOUT_MS);
}

long th_proc_status_kib(pid_t pid, const char *field) {
  char path[64], line[256];
  size_t flen = strlen(field);
  long kib = -1;
  FILE *fp;

  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  fp = fopen(path, "r");
  if (fp == NULL)
    return -1;
  while (fgets(line, sizeof(line), fp) != NULL)
    if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
      if (sscanf(line + flen + 1, "%ld", &kib) != 1)
        kib = -1;
      break;
    }
  fclose(fp);
  return kib;
}

long th_proc_cpu_ms(pid_t pid) {
  char path[64], buf[1024], *p;
  unsigned long utime, stime;
  long tck = sysconf(_SC_CLK_TCK);
  FILE *fp;
  size_t n;

  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  fp = fopen(path, "r");
  if (fp == NULL)
    return -1;
  n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  /* Fields 14 and 15, counted after the ")" that ends the command name. */
  p = strrchr(buf, ')');
  if (p == NULL || tck <= 0 ||
      sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
             &utime, &stime) != 2)
    return -1;
  return (long)((utime + stime) * 1000 / (unsigned long)tck);
}

static int th_rm_entry(const char *path, const struct stat *st, int flag,
                       struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

void th_tokend_destroy(th_tokend_t *t) {
  if (t->pid != 0)
    th_tokend_kill(t);
  if (t->dir[0] != '\0')
    nftw(t->dir, th_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  t->dir[0] = '\0';
}

/* Copies the regular file src to dst (created, mode 0755). */
static int th_copy_file(const char *src, const char *dst) {
  char buf[65536];
  ssize_t n;
  int in, out, rc = 0;

  if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
    fprintf(stderr, "harness: open %s: %s\n", src, strerror(errno));
    return -1;
  }
  out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
  if (out < 0) {
    fprintf(stderr, "harness: create %s: %s\n", dst, strerror(errno));
    close(in);
    return -1;
  }
  while ((n = read(in, buf, sizeof(buf))) > 0)
    if (th_write_all(out, buf, (size_t)n) != 0) {
      rc = -1;
      break;
    }
  if (n < 0 || fchmod(out, 0755) != 0)
    rc = -1;
  if (close(out) != 0)
    rc = -1;
  close(in);
  if (rc != 0)
    fprintf(stderr, "harness: copy %s to %s failed\n", src, dst);
  return rc;
}

static char th_other_uid_dir[TH_DIR_BYTES];

static void th_other_uid_dir_remove(void) {
  /* Forked children exit with _exit(): only the test process gets here. */
  if (th_other_uid_dir[0] != '\0')
    nftw(th_other_uid_dir, th_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  th_other_uid_dir[0] = '\0';
}

static char th_other_uid_tokenctl[TH_PATH_BYTES];
static char th_other_uid_tokend[TH_PATH_BYTES];

/* Makes th_other_uid_dir with copies of tokenctl, its library and tokend,
 * once. */
static int th_other_uid_dir_make(void) {
  char lib_path[TH_PATH_BYTES];

  if (th_other_uid_dir[0] == '\0') {
    /* Not $TMPDIR: it may be as private as the build tree. */
    snprintf(th_other_uid_dir, sizeof(th_other_uid_dir),
             "/tmp/tokend-bin-XXXXXX");
    if (mkdtemp(th_other_uid_dir) == NULL) {
      fprintf(stderr, "harness: mkdtemp %s: %s\n", th_other_uid_dir,
              strerror(errno));
      th_other_uid_dir[0] = '\0';
      return -1;
    }
    atexit(th_other_uid_dir_remove);
    snprintf(th_other_uid_tokenctl, sizeof(th_other_uid_tokenctl),
             "%s/tokenctl", th_other_uid_dir);
    snprintf(th_other_uid_tokend, sizeof(th_other_uid_tokend), "%s/tokend",
             th_other_uid_dir);
    snprintf(lib_path, sizeof(lib_path), "%s/%s", th_other_uid_dir,
             TOKEND_CLIENT_LIB_SONAME);
    if (chmod(th_other_uid_dir, 0755) != 0 ||
        th_copy_file(TOKENCTL_BIN, th_other_uid_tokenctl) != 0 ||
        th_copy_file(TOKEND_CLIENT_LIB, lib_path) != 0 ||
        th_copy_file(TOKEND_BIN, th_other_uid_tokend) != 0) {
      fprintf(stderr, "harness: cannot make copies of tokend and tokenctl "
                      "other uids can run\n");
      th_other_uid_dir_remove();
      return -1;
    }
  }
  return 0;
}

int th_tokenctl_for_other_uids(const char **bin, const char **ld_env) {
  static char env[TH_PATH_BYTES + 32];

  if (th_other_uid_dir_make() != 0)
    return -1;
  snprintf(env, sizeof(env), "LD_LIBRARY_PATH=%s", th_other_uid_dir);
  *bin = th_other_uid_tokenctl;
  *ld_env = env;
  return 0;
}

int th_tokend_for_other_uids(const char **bin) {
  if (th_other_uid_dir_make() != 0)
    return -1;
  *bin = th_other_uid_tokend;
  return 0;
}

void th_tokend_dump_log(const th_tokend_t *t) {
  size_t len;
  char *log = th_read_file(t->log_path, &len);

  fprintf(stderr, "---- %s ----\n%s---- end of log ----\n", t->log_path,
          log != NULL ? log : "(no log)\n");
  free(log);
}

char *th_read_file(const char *path, size_t *len) {
  size_t cap = 4096, n = 0;
  char *buf, *grown;
  ssize_t r;
  int fd;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  buf = malloc(cap);
  while (buf != NULL) {
    if (n + 1 >= cap) {
      grown = realloc(buf, cap * 2);
      if (grown == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = grown;
      cap *= 2;
    }
    r = read(fd, buf + n, cap - n - 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      free(buf);
      buf = NULL;
      break;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  if (buf != NULL) {
    buf[n] = '\0';
    if (len != NULL)
      *len = n;
  }
  return buf;
}

int th_file_contains(const char *path, const void *needle, size_t n) {
  size_t len;
  char *buf = th_read_file(path, &len);
  int found;

  if (buf == NULL)
    return 0;
  found = memmem(buf, len, needle, n) != NULL;
  free(buf);
  return found;
}

int th_log_count_errors(const th_tokend_t *t) {
  char *log = th_read_file(t->log_path, NULL), *line, *save = NULL;
  char level[16];
  int count = 0;

  if (log == NULL)
    return 0;
  for (line = strtok_r(log, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save))
    if (sscanf(line, "%*s %15s", level) == 1 && strcmp(level, "error") == 0)
      count++;
  free(log);
  return count;
}

int th_path_exists(const char *path) {
  struct stat st;

  return lstat(path, &st) == 0;
}

void th_write_file_ok(const char *path, const void *data, size_t len,
                      mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

  if (fd < 0)
    fail_msg("open %s: %s", path, strerror(errno));
  if (write(fd, data, len) != (ssize_t)len)
    fail_msg("write %zu bytes to %s: %s", len, path, strerror(errno));
  /* Whatever the umask, the mode is exactly `mode`. */
  if (fchmod(fd, mode) != 0)
    fail_msg("fchmod %s: %s", path, strerror(errno));
  close(fd);
}

/* Runs sql on the database opened read-only and copies the first column of
 * its first row into out. 0, or -1 after printing why. */
static int db_query_first(const char *db_path, const char *sql, char *out,
                          size_t out_len) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  const char *res = NULL;
  int rc = -1;

  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fprintf(stderr, "harness: open %s: %s\n", db_path, sqlite3_errmsg(db));
    goto err_close_db;
  }
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    fprintf(stderr, "harness: %s on %s: %s\n", sql, db_path,
            sqlite3_errmsg(db));
    goto err_close_db;
  }
  if (sqlite3_step(st) == SQLITE_ROW)
    res = (const char *)sqlite3_column_text(st, 0);
  if (res != NULL) {
    snprintf(out, out_len, "%s", res);
    rc = 0;
  } else {
    fprintf(stderr, "harness: %s on %s: no result: %s\n", sql, db_path,
            sqlite3_errmsg(db));
  }
  sqlite3_finalize(st);
err_close_db:
  sqlite3_close(db);
  return rc;
}

int th_db_integrity(const char *db_path) {
  char res[256];

  if (db_query_first(db_path, "PRAGMA integrity_check", res, sizeof(res)) != 0)
    return -1;
  if (strcmp(res, "ok") == 0)
    return 0;
  fprintf(stderr, "harness: integrity_check on %s: %s\n", db_path, res);
  return -1;
}

long th_db_count(const char *db_path, const char *sql) {
  char res[32], *end;
  long n;

  if (db_query_first(db_path, sql, res, sizeof(res)) != 0)
    return -1;
  n = strtol(res, &end, 10);
  return *end == '\0' && n >= 0 ? n : -1;
}

/* ---- fixtures ---- */

/* Ends a fixture whose setup failed: no verdict on tokend. */
static void th_fixture_discard(void **state) {
  th_fixture_t *f = *state;

  tokend_client_close(f->client);
  th_tokend_destroy(&f->tokend);
  free(f);
  *state = NULL;
}

int th_fixture_setup(void **state) {
  th_fixture_t *f = calloc(1, sizeof(*f));

  *state = NULL;
  if (f == NULL)
    return -1;
  if (th_tokend_init(&f->tokend) != 0) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

int th_fixture_setup_start(void **state, const char *const *extra_args) {
  th_fixture_t *f;

  if (th_fixture_setup(state) != 0)
    return -1;
  f = *state;
  if (th_tokend_start(&f->tokend, extra_args) != 0) {
    th_fixture_discard(state);
    return -1;
  }
  return 0;
}

int th_fixture_setup_client(void **state, const char *const *extra_args) {
  th_fixture_t *f;
  int rc;

  if (th_fixture_setup_start(state, extra_args) != 0)
    return -1;
  f = *state;
  rc = tokend_client_connect(f->tokend.socket_path, TH_IO_TIMEOUT_MS,
                             &f->client);
  if (rc != 0) {
    fprintf(stderr, "harness: cannot connect a client to %s: %s\n",
            f->tokend.socket_path, tokend_strerror(rc));
    th_fixture_discard(state);
    return -1;
  }
  return 0;
}

int th_fixture_setup_token(void **state, const char *const *extra_args,
                           const char *domain, const char *label) {
  th_fixture_t *f;
  int fd, rc = -1;

  if (th_fixture_setup_start(state, extra_args) != 0)
    return -1;
  f = *state;
  fd = th_connect(f->tokend.socket_path);
  if (fd >= 0) {
    rc = th_raw_issue(fd, 1, domain, label, f->token);
    close(fd);
  } else {
    fprintf(stderr, "harness: cannot connect to %s\n", f->tokend.socket_path);
  }
  if (rc != 0)
    th_fixture_discard(state);
  return rc;
}

int th_fixture_teardown(void **state) {
  th_fixture_t *f = *state;
  int rc = 0;

  tokend_client_close(f->client);
  if (f->tokend.pid != 0)
    rc = th_tokend_stop_clean(&f->tokend);
  th_tokend_destroy(&f->tokend);
  free(f);
  *state = NULL;
  return rc;
}

/* ---- raw sockets ---- */

int th_connect(const char *socket_path) {
  struct sockaddr_un sa;
  int fd;

  if (strlen(socket_path) >= sizeof(sa.sun_path))
    return -1;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int th_write_all(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;
  ssize_t n;

  while (len > 0) {
    /* MSG_NOSIGNAL: a server that hung up fails the write, not the test. */
    n = send(fd, p, len, MSG_NOSIGNAL);
    /* A pipe (th_run's stdin): th_run ignores SIGPIPE instead. */
    if (n < 0 && errno == ENOTSOCK)
      n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

uint8_t *th_frame_request(const Tokend__V1__Request *req, size_t *len) {
  size_t body = tokend__v1__request__get_packed_size(req);
  uint8_t *frame = malloc(TOKEND_FRAME_HEADER_BYTES + body);

  if (frame == NULL)
    return NULL;
  frame_encode_header(frame, (uint32_t)body);
  tokend__v1__request__pack(req, frame + TOKEND_FRAME_HEADER_BYTES);
  *len = TOKEND_FRAME_HEADER_BYTES + body;
  return frame;
}

int th_send_request(int fd, const Tokend__V1__Request *req) {
  size_t len;
  uint8_t *frame = th_frame_request(req, &len);
  int rc;

  if (frame == NULL)
    return -1;
  rc = th_write_all(fd, frame, len);
  free(frame);
  return rc;
}

int th_frame_append(uint8_t **buf, size_t *len,
                    const Tokend__V1__Request *req) {
  size_t body = tokend__v1__request__get_packed_size(req);
  uint8_t *grown = realloc(*buf, *len + TOKEND_FRAME_HEADER_BYTES + body);

  if (grown == NULL)
    return -1;
  frame_encode_header(grown + *len, (uint32_t)body);
  tokend__v1__request__pack(req, grown + *len + TOKEND_FRAME_HEADER_BYTES);
  *buf = grown;
  *len += TOKEND_FRAME_HEADER_BYTES + body;
  return 0;
}

void th_frame_repeat(uint8_t **buf, size_t *len, Tokend__V1__Request *req,
                     uint64_t first_call_id, size_t n) {
  size_t i;

  for (i = 0; i < n; i++) {
    req->call_id = first_call_id + i;
    if (th_frame_append(buf, len, req) != 0)
      fail_msg("out of memory framing %zu requests", n);
  }
}

int th_send_verify(int fd, uint64_t call_id, const char *token) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest v = TOKEND__V1__VERIFY_REQUEST__INIT;

  v.token = (char *)token;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &v;
  return th_send_request(fd, &req);
}

int th_send_issue(int fd, uint64_t call_id, const char *domain,
                  const char *label) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest is = TOKEND__V1__ISSUE_REQUEST__INIT;

  is.domain = (char *)domain;
  is.label = (char *)label;
  req.call_id = call_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &is;
  return th_send_request(fd, &req);
}

/* Reads exactly len bytes before deadline. Returns 0, TH_RECV_EOF if the
 * peer closed before the first byte, TH_RECV_ERROR if it closed after it or
 * the read failed, TH_RECV_TIMEOUT. */
static int th_read_exact(int fd, void *buf, size_t len, int64_t deadline) {
  struct pollfd pfd = {fd, POLLIN, 0};
  size_t got = 0;
  ssize_t n;
  int r;

  while (got < len) {
    r = poll(&pfd, 1, th_remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return TH_RECV_ERROR;
    if (r == 0)
      return TH_RECV_TIMEOUT;
    n = read(fd, (uint8_t *)buf + got, len - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0 || (n < 0 && errno == ECONNRESET))
      return got == 0 ? TH_RECV_EOF : TH_RECV_ERROR;
    if (n < 0)
      return TH_RECV_ERROR;
    got += (size_t)n;
  }
  return 0;
}

int th_recv_response(int fd, int timeout_ms, Tokend__V1__Response **out) {
  int64_t deadline = th_mono_ms() + timeout_ms;
  uint8_t hdr[TOKEND_FRAME_HEADER_BYTES];
  uint8_t *body;
  uint32_t len;
  int rc;

  *out = NULL;
  rc = th_read_exact(fd, hdr, sizeof(hdr), deadline);
  if (rc != 0)
    return rc;
  len = (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 |
        (uint32_t)hdr[3] << 8 | hdr[4];
  if (hdr[0] != 0 || len > TH_MAX_RESPONSE_BYTES) {
    fprintf(stderr, "harness: bad response frame header (flag %u, length %u)\n",
            hdr[0], len);
    return TH_RECV_ERROR;
  }
  body = malloc(len > 0 ? len : 1);
  if (body == NULL)
    return TH_RECV_ERROR;
  rc = th_read_exact(fd, body, len, deadline);
  /* A close between header and body is a broken frame, not a clean EOF. */
  if (rc == TH_RECV_EOF)
    rc = TH_RECV_ERROR;
  if (rc == 0) {
    *out = tokend__v1__response__unpack(NULL, len, body);
    if (*out == NULL) {
      fprintf(stderr, "harness: response of %u bytes does not decode\n", len);
      rc = TH_RECV_ERROR;
    }
  }
  free(body);
  return rc;
}

int th_wait_eof(int fd, int timeout_ms) {
  int64_t deadline = th_mono_ms() + timeout_ms;
  struct pollfd pfd = {fd, POLLIN, 0};
  char c;
  ssize_t n;
  int r;

  for (;;) {
    r = poll(&pfd, 1, th_remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0 || (n < 0 && errno == ECONNRESET))
      return 1;
    return n > 0 ? 0 : -1;
  }
}

int th_read_all(int fd, void *buf, size_t len, int timeout_ms) {
  return th_read_exact(fd, buf, len, th_mono_ms() + timeout_ms);
}

int th_response_code(const Tokend__V1__Response *r) {
  return r->status != NULL ? r->status->code : 0;
}

const char *th_recv_name(int rc) {
  return rc == TH_RECV_EOF       ? "a bare close"
         : rc == TH_RECV_TIMEOUT ? "nothing (timeout)"
                                 : "a broken frame";
}

int th_raw_issue(int fd, uint64_t call_id, const char *domain,
                 const char *label, char out[TOKEND_TOKEN_BYTES]) {
  Tokend__V1__Response *r = NULL;
  size_t len;
  int rc;

  if (th_send_issue(fd, call_id, domain, label) != 0) {
    fprintf(stderr, "harness: cannot send an Issue\n");
    return -1;
  }
  rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);
  if (rc != 0) {
    fprintf(stderr, "harness: Issue call %llu: got %s\n",
            (unsigned long long)call_id, th_recv_name(rc));
    return -1;
  }
  rc = -1;
  if (r->call_id != call_id)
    fprintf(stderr, "harness: Issue call %llu answered as call %llu\n",
            (unsigned long long)call_id, (unsigned long long)r->call_id);
  else if (th_response_code(r) != 0)
    fprintf(stderr, "harness: Issue failed: %d %s\n", th_response_code(r),
            r->status->message);
  else if (r->result_case != TOKEND__V1__RESPONSE__RESULT_ISSUE)
    fprintf(stderr, "harness: Issue answered without an Issue result\n");
  else if ((len = strlen(r->issue->token)) >= TOKEND_TOKEN_BYTES)
    fprintf(stderr, "harness: issued token of %zu bytes is too long\n", len);
  else {
    memcpy(out, r->issue->token, len + 1);
    rc = 0;
  }
  tokend__v1__response__free_unpacked(r, NULL);
  return rc;
}

int th_raw_verify(int fd, uint64_t call_id, const char *token) {
  Tokend__V1__Response *r = NULL;
  int rc;

  if (th_send_verify(fd, call_id, token) != 0)
    return -1;
  rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);
  if (rc != 0) {
    fprintf(stderr, "harness: Verify call %llu: got %s\n",
            (unsigned long long)call_id, th_recv_name(rc));
    return -1;
  }
  if (th_response_code(r) != 0) {
    rc = th_response_code(r);
  } else if (r->call_id != call_id ||
             r->result_case != TOKEND__V1__RESPONSE__RESULT_VERIFY ||
             !r->verify->valid) {
    fprintf(stderr,
            "harness: Verify call %llu: answered as call %llu, result %d, "
            "valid %d\n",
            (unsigned long long)call_id, (unsigned long long)r->call_id,
            (int)r->result_case,
            r->result_case == TOKEND__V1__RESPONSE__RESULT_VERIFY
                ? (int)r->verify->valid
                : -1);
    rc = -1;
  }
  tokend__v1__response__free_unpacked(r, NULL);
  return rc;
}

void th_expect_valid_raw(int fd, uint64_t call_id, const char *token) {
  int rc = th_raw_verify(fd, call_id, token);

  if (rc != 0)
    fail_msg("call %llu: want a valid Verify, got %d",
             (unsigned long long)call_id, rc);
}

void th_expect_error_then_eof(int fd, int code) {
  Tokend__V1__Response *r = NULL;
  int rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);

  if (rc != 0)
    fail_msg("want a status %d response before the close, got %s", code,
             th_recv_name(rc));
  if (th_response_code(r) != code)
    fail_msg("want status %d, got %d (%s)", code, th_response_code(r),
             r->status != NULL ? r->status->message : "");
  assert_int_equal(r->call_id, 0);
  assert_int_equal(r->result_case, TOKEND__V1__RESPONSE__RESULT__NOT_SET);
  assert_true(r->status->message != NULL && r->status->message[0] != '\0');
  tokend__v1__response__free_unpacked(r, NULL);
  if (th_wait_eof(fd, TH_IO_TIMEOUT_MS) != 1)
    fail_msg("tokend did not close the connection after status %d", code);
}

/* ---- the client library ---- */

tokend_client_t *th_client_connect_ok(const th_tokend_t *t) {
  tokend_client_t *c = NULL;
  int rc = tokend_client_connect(t->socket_path, TH_IO_TIMEOUT_MS, &c);

  if (rc != 0)
    fail_msg("connect to %s: %s", t->socket_path, tokend_err_name(rc));
  return c;
}

void th_client_issue_ok(tokend_client_t *c, const char *domain,
                        const char *label, int64_t expires_at,
                        tokend_issued_t *out) {
  tokend_issue_params_t p = {domain, label, expires_at, NULL, 0, NULL};
  int rc = tokend_client_issue(c, &p, out);

  if (rc != 0)
    fail_msg("issue %s/%s: %s (%s)", domain, label, tokend_err_name(rc),
             tokend_client_errmsg(c));
}

void th_client_verify_ok(tokend_client_t *c, const char *token,
                         tokend_verify_result_t *out) {
  int rc = tokend_client_verify(c, token, out);

  if (rc != 0)
    fail_msg("verify: %s (%s)", tokend_err_name(rc), tokend_client_errmsg(c));
}

void th_expect_verify(tokend_client_t *c, const char *token, int valid,
                      tokend_verify_reason_t reason) {
  tokend_verify_result_t v;

  th_client_verify_ok(c, token, &v);
  if (v.valid != valid || v.reason != reason)
    fail_msg("verify: got valid=%d %s, want valid=%d %s", v.valid,
             tokend_verify_reason_name(v.reason), valid,
             tokend_verify_reason_name(reason));
}

/* ---- other programs ---- */

static int th_append(char **buf, size_t *len, size_t *cap, const char *data,
                     size_t n) {
  char *grown;

  if (*len + n + 1 > *cap) {
    size_t want = (*len + n + 1) * 2;

    grown = realloc(*buf, want);
    if (grown == NULL)
      return -1;
    *buf = grown;
    *cap = want;
  }
  memcpy(*buf + *len, data, n);
  *len += n;
  (*buf)[*len] = '\0';
  return 0;
}

int th_run(const char *const *argv, const char *const *env_extra,
           const char *in_data, int timeout_ms, th_run_result_t *r) {
  int in_pipe[2], out_pipe[2], err_pipe[2];
  size_t out_cap = 0, err_cap = 0, i;
  int64_t deadline = th_mono_ms() + timeout_ms;
  struct pollfd pfd[2];
  char chunk[4096];
  int wstatus, open_fds = 2, timed_out = 0;
  ssize_t n;
  pid_t pid;

  memset(r, 0, sizeof(*r));
  /* A program that exits without reading its input must fail our write to
   * the pipe, not kill the test. */
  signal(SIGPIPE, SIG_IGN);
  if (th_append(&r->out, &r->out_len, &out_cap, "", 0) != 0 ||
      th_append(&r->err, &r->err_len, &err_cap, "", 0) != 0)
    goto err_free_result;
  if (pipe2(in_pipe, O_CLOEXEC) != 0)
    goto err_free_result;
  if (pipe2(out_pipe, O_CLOEXEC) != 0)
    goto err_close_in;
  if (pipe2(err_pipe, O_CLOEXEC) != 0)
    goto err_close_out;
  pid = fork();
  if (pid < 0)
    goto err_close_err;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(in_pipe[0], STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    for (i = 0; env_extra != NULL && env_extra[i] != NULL; i++)
      putenv((char *)env_extra[i]);
    execv(argv[0], (char *const *)argv);
    fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  /* The input is a line or two: it fits the pipe buffer, so writing it all
   * before reading cannot deadlock. */
  if (in_data != NULL)
    (void)th_write_all(in_pipe[1], in_data, strlen(in_data));
  close(in_pipe[1]);

  pfd[0].fd = out_pipe[0];
  pfd[1].fd = err_pipe[0];
  pfd[0].events = pfd[1].events = POLLIN;
  while (open_fds > 0) {
    int pr = poll(pfd, 2, th_remaining(deadline));

    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0) {
      timed_out = 1;
      break;
    }
    for (i = 0; i < 2; i++) {
      if (pfd[i].fd < 0 || pfd[i].revents == 0)
        continue;
      n = read(pfd[i].fd, chunk, sizeof(chunk));
      if (n > 0) {
        if (i == 0)
          th_append(&r->out, &r->out_len, &out_cap, chunk, (size_t)n);
        else
          th_append(&r->err, &r->err_len, &err_cap, chunk, (size_t)n);
      } else if (n == 0 || errno != EINTR) {
        close(pfd[i].fd);
        pfd[i].fd = -1;
        open_fds--;
      }
    }
  }
  for (i = 0; i < 2; i++)
    if (pfd[i].fd >= 0)
      close(pfd[i].fd);
  if (timed_out) {
    fprintf(stderr, "harness: %s ran over %d ms; killing it\n", argv[0],
            timeout_ms);
    kill(pid, SIGKILL);
  }
  while (waitpid(pid, &wstatus, 0) < 0)
    if (errno != EINTR)
      return -1;
  r->status = timed_out ? -1 : th_status_code(wstatus);
  return 0;

err_close_err:
  close(err_pipe[0]);
  close(err_pipe[1]);
err_close_out:
  close(out_pipe[0]);
  close(out_pipe[1]);
err_close_in:
  close(in_pipe[0]);
  close(in_pipe[1]);
err_free_result:
  fprintf(stderr, "harness: cannot run %s: %s\n", argv[0], strerror(errno));
  th_run_result_free(r);
  return -1;
}

void th_run_result_free(th_run_result_t *r) {
  free(r->out);
  free(r->err);
  memset(r, 0, sizeof(*r));
}

int th_run_va(const char *const *head, va_list tail, const char *in_data,
              int timeout_ms, th_run_result_t *r) {
  const char *argv[TH_MAX_ARGS];
  const char *a;
  size_t n = 0;

  memset(r, 0, sizeof(*r));
  for (; *head != NULL; head++) {
    if (n + 1 >= TH_MAX_ARGS)
      goto err_too_many;
    argv[n++] = *head;
  }
  while ((a = va_arg(tail, const char *)) != NULL) {
    if (n + 1 >= TH_MAX_ARGS)
      goto err_too_many;
    argv[n++] = a;
  }
  argv[n] = NULL;
  return th_run(argv, NULL, in_data, timeout_ms, r);

err_too_many:
  fprintf(stderr, "harness: more than %d arguments for %s\n", TH_MAX_ARGS - 1,
          argv[0]);
  return -1;
}

void th_tokenctl(const th_tokend_t *t, const char *in_data, th_run_result_t *r,
                 ...) {
  const char *const head[] = {TOKENCTL_BIN, "--socket", t->socket_path, NULL};
  va_list ap;
  int rc;

  va_start(ap, r);
  rc = th_run_va(head, ap, in_data, TH_TOKENCTL_TIMEOUT_MS, r);
  va_end(ap);
  if (rc != 0)
    fail_msg("cannot run %s", TOKENCTL_BIN);
}

void th_expect_exit(const th_run_result_t *r, int status, const char *what) {
  if (r->status != status)
    fail_msg("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, r->status,
             status, r->out, r->err);
}
