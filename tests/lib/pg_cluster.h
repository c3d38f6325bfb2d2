/* pg_cluster: a throwaway PostgreSQL cluster for tests (the store contract
 * suite and the integration tests), never the machine's own.
 *
 * pg_cluster_start() runs initdb into a fresh temporary directory and starts
 * postgres listening only on a Unix socket in that directory (no TCP), with
 * trust authentication for local connections. As root, the cluster belongs
 * to the unprivileged user "nobody" (initdb and postgres refuse to run as
 * root); otherwise to the test's own user. The binaries are those of
 * PG_CLUSTER_BINDIR (Debian's postgresql-15).
 *
 * Clean-up does not depend on the test ending well: start forks a reaper
 * process that holds one end of a pipe whose other end only the test holds
 * (close-on-exec). However the test ends (returns, fails, crashes, is
 * killed by ctest's timeout), the reaper sees the pipe close, stops the
 * cluster (pg_ctl stop -m immediate) and removes the directory.
 *
 * Functions return 0 or -1 (having said why on stderr). */
#ifndef TOKEND_TEST_PG_CLUSTER_H
#define TOKEND_TEST_PG_CLUSTER_H

#include <stddef.h>
#include <sys/types.h>

#define PG_CLUSTER_BINDIR "/usr/lib/postgresql/15/bin"

typedef struct {
  char dir[64];  /* the temporary directory: data/ and the socket */
  char data[96]; /* dir/data, the cluster */
  pid_t reaper;  /* stops and removes the cluster when the test ends */
  int reaper_fd; /* the test's end of the reaper's pipe */
  int running;   /* postgres was started and not stopped since */
} pg_cluster_t;

/* 1 if the PostgreSQL server binaries are installed, else 0. */
int pg_cluster_available(void);

/* Creates and starts a cluster in a new temporary directory. */
int pg_cluster_start(pg_cluster_t *c);

/* Stops the cluster (fast shutdown: sessions are ended), keeping its files;
 * pg_cluster_restart() starts it again. */
int pg_cluster_pause(pg_cluster_t *c);
int pg_cluster_restart(pg_cluster_t *c);

/* Stops the cluster and removes its directory (what the reaper would do),
 * waiting for it. Idempotent. */
void pg_cluster_stop(pg_cluster_t *c);

/* Writes into buf the libpq URI of database db in the cluster
 * ("postgresql:///db?host=DIR&user=postgres"). */
int pg_cluster_uri(const pg_cluster_t *c, const char *db, char *buf,
                   size_t len);

/* Runs one SQL command (no parameters) on database db of the cluster as
 * its superuser. */
int pg_cluster_sql(const pg_cluster_t *c, const char *db, const char *sql);

/* Runs one query (no parameters) on database db as the superuser; *out gets
 * its first row's first column as a number (e.g. a count: how many sessions
 * a pg_terminate_backend() ended). -1 if the query fails, returns no row or
 * the value is not a number. */
int pg_cluster_sql_long(const pg_cluster_t *c, const char *db, const char *sql,
                        long *out);

#endif
