/* pg_cluster.c: a throwaway PostgreSQL cluster for tests (pg_cluster.h). */
#define _GNU_SOURCE
#include "pg_cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The user the cluster runs as when the test is root (postgres refuses
 * root), or -1: the test's own. */
static int cluster_user(uid_t *uid, gid_t *gid) {
  struct passwd *pw;

  if (geteuid() != 0)
    return -1;
  if ((pw = getpwnam("nobody")) == NULL) {
    fprintf(stderr, "pg_cluster: no user 'nobody' to run postgres as\n");
    return -2;
  }
  *uid = pw->pw_uid;
  *gid = pw->pw_gid;
  return 0;
}

/* Runs argv (argv[0] a path) as the cluster's user, in dir, with stdout
 * and stderr appended to log; returns its exit status, or -1. */
static int run_as_cluster_user(const char *dir, const char *log,
                               char *const argv[]) {
  uid_t uid = 0;
  gid_t gid = 0;
  int status, fd, who = cluster_user(&uid, &gid);
  pid_t pid;

  if (who == -2)
    return -1;
  if ((pid = fork()) < 0)
    return -1;
  if (pid == 0) {
    if (who == 0 &&
        (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0))
      _exit(126);
    if (chdir(dir) != 0)
      _exit(126);
    if ((fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    /* The machine's cluster must never be named by the environment. */
    unsetenv("PGDATA");
    unsetenv("PGHOST");
    unsetenv("PGPORT");
    setenv("LC_ALL", "C", 1);
    execv(argv[0], argv);
    _exit(127);
  }
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int pg_cluster_available(void) {
  return access(PG_CLUSTER_BINDIR "/initdb", X_OK) == 0 &&
         access(PG_CLUSTER_BINDIR "/pg_ctl", X_OK) == 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

static int pg_ctl(const pg_cluster_t *c, const char *action, const char *mode) {
  char log[128];
  char *const argv_stop[] = {PG_CLUSTER_BINDIR "/pg_ctl",
                             "-D",
                             (char *)c->data,
                             "-w",
                             "-s",
                             "-m",
                             (char *)mode,
                             "stop",
                             NULL};
  char *const argv_start[] = {PG_CLUSTER_BINDIR "/pg_ctl",
                              "-D",
                              (char *)c->data,
                              "-w",
                              "-s",
                              "-t",
                              "60",
                              "-l",
                              log,
                              "start",
                              NULL};

  snprintf(log, sizeof(log), "%s/postgres.log", c->dir);
  return run_as_cluster_user(
      c->dir, log, strcmp(action, "stop") == 0 ? argv_stop : argv_start);
}

/* The reaper: waits for the test's end of the socket pair to close (or be
 * shut down), then stops the cluster and removes its directory. Detached
 * twice (its own session, and init's child) so that whatever kills the
 * test's process tree leaves it to clean up. */
static void reaper_main(const pg_cluster_t *c, int fd) {
  char b;

  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  for (;;) {
    ssize_t n = read(fd, &b, 1);

    if (n > 0 || (n < 0 && errno == EINTR))
      continue;
    break;
  }
  if (access(c->data, F_OK) == 0)
    pg_ctl(c, "stop", "immediate");
  nftw(c->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  _exit(0);
}

int pg_cluster_start(pg_cluster_t *c) {
  char conf[128], log[128];
  char *const initdb[] = {PG_CLUSTER_BINDIR "/initdb",
                          "-D",
                          c->data,
                          "-U",
                          "postgres",
                          "-A",
                          "trust",
                          "-E",
                          "UTF8",
                          "--locale=C",
                          "--no-sync",
                          "--no-instructions",
                          NULL};
  uid_t uid = 0;
  gid_t gid = 0;
  int sv[2], status;
  pid_t pid;
  FILE *f;

  memset(c, 0, sizeof(*c));
  c->reaper_fd = -1;
  snprintf(c->dir, sizeof(c->dir), "/tmp/tokend_pg_XXXXXX");
  if (mkdtemp(c->dir) == NULL) {
    perror("pg_cluster: mkdtemp");
    return -1;
  }
  snprintf(c->data, sizeof(c->data), "%s/data", c->dir);
  if (cluster_user(&uid, &gid) == 0 && chown(c->dir, uid, gid) != 0) {
    perror("pg_cluster: chown");
    return -1;
  }
  /* The reaper first: from here on, the directory goes away whatever
   * happens to the test. */
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return -1;
  if ((pid = fork()) < 0)
    return -1;
  if (pid == 0) {
    close(sv[0]);
    setsid();
    if (fork() == 0)
      reaper_main(c, sv[1]);
    _exit(0);
  }
  close(sv[1]);
  waitpid(pid, &status, 0);
  c->reaper_fd = sv[0];

  snprintf(log, sizeof(log), "%s/initdb.log", c->dir);
  if (run_as_cluster_user(c->dir, log, initdb) != 0) {
    fprintf(stderr, "pg_cluster: initdb failed (see %s)\n", log);
    return -1;
  }
  /* Only a Unix socket, in our own directory: no TCP, and nothing near the
   * machine's cluster's socket. fsync off: the tests never crash the
   * machine, and it keeps CI fast; synchronous_commit stays on. */
  snprintf(conf, sizeof(conf), "%s/postgresql.conf", c->data);
  if ((f = fopen(conf, "a")) == NULL)
    return -1;
  fprintf(f,
          "listen_addresses = ''\n"
          "unix_socket_directories = '%s'\n"
          "fsync = off\n"
          "full_page_writes = off\n"
          "max_connections = 50\n",
          c->dir);
  if (fclose(f) != 0)
    return -1;
  if (pg_ctl(c, "start", NULL) != 0) {
    fprintf(stderr,
            "pg_cluster: postgres did not start (see %s/postgres.log)\n",
            c->dir);
    return -1;
  }
  c->running = 1;
  return 0;
}

int pg_cluster_pause(pg_cluster_t *c) {
  if (pg_ctl(c, "stop", "fast") != 0)
    return -1;
  c->running = 0;
  return 0;
}

int pg_cluster_restart(pg_cluster_t *c) {
  if (pg_ctl(c, "start", NULL) != 0)
    return -1;
  c->running = 1;
  return 0;
}

void pg_cluster_stop(pg_cluster_t *c) {
  char b;

  if (c->reaper_fd < 0)
    return;
  /* The reaper stops and removes the cluster; its exit closes its end. */
  shutdown(c->reaper_fd, SHUT_WR);
  for (;;) {
    ssize_t n = read(c->reaper_fd, &b, 1);

    if (n > 0 || (n < 0 && errno == EINTR))
      continue;
    break;
  }
  close(c->reaper_fd);
  c->reaper_fd = -1;
  c->running = 0;
}

int pg_cluster_uri(const pg_cluster_t *c, const char *db, char *buf,
                   size_t len) {
  int n =
      snprintf(buf, len, "postgresql:///%s?host=%s&user=postgres", db, c->dir);

  return n > 0 && (size_t)n < len ? 0 : -1;
}

int pg_cluster_sql(const pg_cluster_t *c, const char *db, const char *sql) {
  char uri[256];
  PGconn *conn;
  PGresult *r;
  int ok;

  if (pg_cluster_uri(c, db, uri, sizeof(uri)) != 0)
    return -1;
  conn = PQconnectdb(uri);
  if (PQstatus(conn) != CONNECTION_OK) {
    fprintf(stderr, "pg_cluster: %s", PQerrorMessage(conn));
    PQfinish(conn);
    return -1;
  }
  r = PQexec(conn, sql);
  ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
       PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok)
    fprintf(stderr, "pg_cluster: %s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(conn);
  return ok ? 0 : -1;
}

int pg_cluster_sql_long(const pg_cluster_t *c, const char *db, const char *sql,
                        long *out) {
  char uri[256], *end;
  PGconn *conn;
  PGresult *r;
  int rc = -1;

  if (pg_cluster_uri(c, db, uri, sizeof(uri)) != 0)
    return -1;
  conn = PQconnectdb(uri);
  if (PQstatus(conn) != CONNECTION_OK) {
    fprintf(stderr, "pg_cluster: %s", PQerrorMessage(conn));
    PQfinish(conn);
    return -1;
  }
  r = PQexec(conn, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    fprintf(stderr, "pg_cluster: %s: %s", sql, PQresultErrorMessage(r));
  else if (PQntuples(r) < 1 || PQnfields(r) < 1 || PQgetisnull(r, 0, 0))
    fprintf(stderr, "pg_cluster: %s: no value\n", sql);
  else {
    errno = 0;
    *out = strtol(PQgetvalue(r, 0, 0), &end, 10);
    if (errno == 0 && end != PQgetvalue(r, 0, 0) && *end == '\0')
      rc = 0;
    else
      fprintf(stderr, "pg_cluster: %s: '%s' is not a number\n", sql,
              PQgetvalue(r, 0, 0));
  }
  PQclear(r);
  PQfinish(conn);
  return rc;
}
