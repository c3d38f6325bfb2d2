/* Integration-test harness: runs a real tokend (TOKEND_BIN) as a child
 * process in a fresh temporary directory, and talks to it over raw sockets
 * and through the client library.
 *
 * Functions return 0 on success and -1 on failure unless they say otherwise;
 * on failure they print why on stderr (and, when tokend would not start, its
 * log), so a test only has to assert the result.
 *
 * Checks are the exception: a function whose comment says "Fails the test"
 * reports through cmocka (fail_msg) and does not return on failure, so it
 * may be called only from a cmocka test or its setup. */
#ifndef TOKEND_IT_HARNESS_H
#define TOKEND_IT_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tokend.pb-c.h"
#include "tokend_client.h"

/* Set TOKEND_TEST_WRAPPER to a command line (split on spaces) to run every
 * tokend under it, e.g.
 *   TOKEND_TEST_WRAPPER="valgrind -q --vgdb=no --error-exitcode=99
 *     --leak-check=full --errors-for-leak-kinds=definite,indirect"
 * tokend's exit status then also reports the wrapper's findings. */
#define TH_WRAPPER_ENV "TOKEND_TEST_WRAPPER"

/* 1 if tokend runs under TOKEND_TEST_WRAPPER. Checks that a wrapper distorts
 * (tokend's memory size) are skipped when it is set. */
int th_wrapped(void);

/* 1 if tokend's memory use can be judged from /proc: not under a wrapper,
 * not in a sanitizer build. */
int th_memory_measurable(void);

/* How much longer than usual to wait for tokend: 10 under a wrapper (valgrind
 * runs code 10-50 times slower), else 1. The timeouts below include it. */
int th_timeout_scale(void);

/* How long tokend may take to accept connections, and to exit on SIGTERM. */
#define TH_START_TIMEOUT_MS (5000 * th_timeout_scale())
#define TH_STOP_TIMEOUT_MS (10000 * th_timeout_scale())
/* Default bound on one read of a Response. */
#define TH_IO_TIMEOUT_MS (5000 * th_timeout_scale())

/* The directory name is short (a Unix socket path must fit in 108 bytes),
 * so every path made from it fits TH_PATH_BYTES. */
#define TH_DIR_BYTES 128
#define TH_PATH_BYTES 256

typedef struct {
  char dir[TH_DIR_BYTES]; /* the mkdtemp directory holding all below */
  char socket_path[TH_PATH_BYTES];
  char db_path[TH_PATH_BYTES];
  char pepper_path[TH_PATH_BYTES];
  char log_path[TH_PATH_BYTES]; /* tokend's stdout and stderr, appended */
  pid_t pid;                    /* 0 when no tokend runs */
  /* "NAME=value" strings (NULL-terminated; NULL: none) added to tokend's
   * environment, e.g. an LD_PRELOAD. Not copied: must outlive the spawn. */
  const char *const *env;
  /* 0: tokend runs as the test does. Else (the test being root) it runs as
   * this uid and gid, with no supplementary groups, from the copy made by
   * th_tokend_for_other_uids(), and th_tokend_spawn() gives it dir. */
  uid_t uid;
  /* 1: start without --create-db (which the harness passes by default, so
   * that a test's first start creates its database). */
  int no_create_db;
  /* > 0: a listening socket handed to tokend the way systemd's socket
   * activation does: as fd 3, with LISTEN_FDS=1, LISTEN_PID set to
   * tokend's own pid (in the child, after fork) and LISTEN_FDNAMES to
   * listen_fdname (unset when NULL). The test keeps its own copy. */
  int listen_fd;
  const char *listen_fdname;
  /* > 0 (with listen_fd): a second socket, passed as fd 4 under
   * listen_fdname2 (LISTEN_FDS=2, LISTEN_FDNAMES "name:name2"), as
   * systemd passes the sockets of two .socket units (issue 16: an HTTP
   * face's, "http"). */
  int listen_fd2;
  const char *listen_fdname2;
} th_tokend_t;

/* Creates the temporary directory and fills in the paths. A test may change
 * the paths (e.g. point socket_path into another instance's directory)
 * before th_tokend_start(). */
int th_tokend_init(th_tokend_t *t);

/* Starts tokend with --socket/--db/--pepper-file (and --create-db unless
 * t->no_create_db) plus extra_args
 * (NULL-terminated; may be NULL). Does not wait for it to be ready. */
int th_tokend_spawn(th_tokend_t *t, const char *const *extra_args);

/* th_tokend_spawn(), then waits until the socket accepts a connection.
 * Fails (printing the log) if tokend exits or TH_START_TIMEOUT_MS passes. */
int th_tokend_start(th_tokend_t *t, const char *const *extra_args);

/* Waits up to timeout_ms for tokend to exit. Returns its exit code, 128 +
 * signal number if a signal killed it, or -1 on timeout (tokend is left
 * running). */
int th_tokend_wait_exit(th_tokend_t *t, int timeout_ms);

/* SIGTERM and wait: the result of th_tokend_wait_exit(), after SIGKILL on
 * timeout (so it never leaves a child behind). */
int th_tokend_stop(th_tokend_t *t);

/* th_tokend_stop(), for a tokend that must stop cleanly: 0 if it exited 0;
 * otherwise prints its exit status and its log and returns -1. */
int th_tokend_stop_clean(th_tokend_t *t);

/* th_tokend_stop_clean(). Fails the test unless tokend exited 0. */
void th_tokend_stop_ok(th_tokend_t *t);

/* SIGKILL and wait, as a crash would. Returns 128 + SIGKILL when it worked. */
int th_tokend_kill(th_tokend_t *t);

/* A field of /proc/PID/status in KiB (e.g. "VmRSS", "VmHWM"), or -1. */
long th_proc_status_kib(pid_t pid, const char *field);

/* CPU time (user + system, all threads) pid has used, in ms, or -1. */
long th_proc_cpu_ms(pid_t pid);

/* Kills tokend if it still runs and removes the directory with all in it. */
void th_tokend_destroy(th_tokend_t *t);

/* Prints tokend's log to stderr, to explain a failure. */
void th_tokend_dump_log(const th_tokend_t *t);

/* The whole of a file, NUL-terminated (the NUL is not counted in *len),
 * malloc'd for the caller to free. NULL if it cannot be read. */
char *th_read_file(const char *path, size_t *len);

/* 1 if needle[0..n) occurs in the file, 0 if not (or no such file). */
int th_file_contains(const char *path, const void *needle, size_t n);

/* Lines of the log at level error ("<time> error <message>"). */
int th_log_count_errors(const th_tokend_t *t);

/* 1 if path names anything (a dangling link too), 0 if not. */
int th_path_exists(const char *path);

/* Creates or truncates path and writes data[0..len) to it; its mode is
 * exactly `mode`, whatever the umask. Fails the test if it cannot. */
void th_write_file_ok(const char *path, const void *data, size_t len,
                      mode_t mode);

/* Opens the SQLite database read-only (so the check cannot be what recovers
 * or repairs it) and runs PRAGMA integrity_check: 0 if it says "ok", else
 * -1 after printing what it says. */
int th_db_integrity(const char *db_path);

/* Opens the database read-only and runs sql, a SELECT count(...) or the
 * like: the number in the first column of its first row, or -1. */
long th_db_count(const char *db_path, const char *sql);

/* ---- fixtures ---- */

/* What a test's setup hands it in *state. Each setup below fills in what its
 * name says; th_fixture_teardown() ends any of them. */
typedef struct {
  th_tokend_t tokend;
  tokend_client_t *client;        /* NULL unless the setup connected one */
  char token[TOKEND_TOKEN_BYTES]; /* "" unless the setup issued one */
} th_fixture_t;

/* A cmocka setup: *state becomes a new th_fixture_t (calloc'd) whose tokend
 * is initialised (th_tokend_init) but not started. */
int th_fixture_setup(void **state);

/* th_fixture_setup(), then th_tokend_start() with extra_args (may be NULL).
 * On failure cleans up, leaves *state NULL and returns -1; so do the two
 * below. */
int th_fixture_setup_start(void **state, const char *const *extra_args);

/* th_fixture_setup_start(), then connects f->client (TH_IO_TIMEOUT_MS). */
int th_fixture_setup_client(void **state, const char *const *extra_args);

/* th_fixture_setup_start(), then issues a token in domain with label over a
 * raw connection (call_id 1) into f->token. */
int th_fixture_setup_token(void **state, const char *const *extra_args,
                           const char *domain, const char *label);

/* A cmocka teardown for any th_fixture_t (one a test calloc'd itself too):
 * closes f->client, stops tokend if it still runs, destroys it and frees f.
 * Returns -1 if tokend did not exit 0 on SIGTERM, so that a test after which
 * tokend crashed or hung fails; 0 otherwise (also when the test stopped
 * tokend itself). */
int th_fixture_teardown(void **state);

/* ---- raw sockets ---- */

/* A connected, blocking Unix stream socket, or -1. */
int th_connect(const char *socket_path);

int th_write_all(int fd, const void *buf, size_t len);

/* The frame (5-byte header + packed req), malloc'd; *len gets its size. */
uint8_t *th_frame_request(const Tokend__V1__Request *req, size_t *len);

/* Frames and writes req in one write. */
int th_send_request(int fd, const Tokend__V1__Request *req);

/* Frames req and appends the frame to *buf (realloc'd; the caller frees it),
 * whose length *len grows by the frame's. On failure *buf and *len are as
 * they were. */
int th_frame_append(uint8_t **buf, size_t *len, const Tokend__V1__Request *req);

/* th_frame_append() of n copies of req, with call ids first_call_id,
 * first_call_id + 1, ... (req->call_id is left at the last). Fails the test
 * if it cannot. */
void th_frame_repeat(uint8_t **buf, size_t *len, Tokend__V1__Request *req,
                     uint64_t first_call_id, size_t n);

/* Convenience senders for the common requests. */
int th_send_verify(int fd, uint64_t call_id, const char *token);
int th_send_issue(int fd, uint64_t call_id, const char *domain,
                  const char *label);

/* th_recv_response() results besides 0. */
#define TH_RECV_EOF 1      /* the server closed before a new frame began */
#define TH_RECV_TIMEOUT -2 /* nothing complete within timeout_ms */
#define TH_RECV_ERROR -1   /* read error, bad frame, or EOF inside a frame */

/* Reads exactly one framed Response (no more bytes than it needs). On 0 *out
 * is the unpacked Response, freed with tokend__v1__response__free_unpacked. */
int th_recv_response(int fd, int timeout_ms, Tokend__V1__Response **out);

/* Waits for the server to close fd: 1 on EOF (or a reset), 0 if data came
 * instead, -1 on timeout. */
int th_wait_eof(int fd, int timeout_ms);

/* Reads exactly len bytes from fd (a socket or a pipe) within timeout_ms: 0,
 * or TH_RECV_EOF, TH_RECV_ERROR or TH_RECV_TIMEOUT as above. */
int th_read_all(int fd, void *buf, size_t len, int timeout_ms);

/* The gRPC status code of a Response: 0 when it carries no status. */
int th_response_code(const Tokend__V1__Response *r);

/* What a non-zero th_recv_response() result means, for messages. */
const char *th_recv_name(int rc);

/* Issues a token in domain with label on fd and reads the answer, which
 * must carry call_id, status OK and a token; out gets the token. */
int th_raw_issue(int fd, uint64_t call_id, const char *domain,
                 const char *label, char out[TOKEND_TOKEN_BYTES]);

/* Verifies token on fd: 0 when the answer carries call_id and says valid;
 * the answer's gRPC status when it has one; -1 otherwise (no answer, or an
 * answer that is not a valid Verify). */
int th_raw_verify(int fd, uint64_t call_id, const char *token);

/* th_raw_verify(). Fails the test unless it returns 0. */
void th_expect_valid_raw(int fd, uint64_t call_id, const char *token);

/* Reads one Response, which must be status `code` with a message, call_id 0
 * and no result; then the server must close fd. Fails the test if not. */
void th_expect_error_then_eof(int fd, int code);

/* ---- the client library ---- */

/* A client connected to t (TH_IO_TIMEOUT_MS), for the caller to close.
 * Fails the test if it cannot connect. */
tokend_client_t *th_client_connect_ok(const th_tokend_t *t);

/* Issues a token (no scopes; expires_at 0: never) into *out. Fails the test
 * if the call fails. */
void th_client_issue_ok(tokend_client_t *c, const char *domain,
                        const char *label, int64_t expires_at,
                        tokend_issued_t *out);

/* Verifies token into *out. Fails the test if the call fails (an invalid
 * token is an answer, not a failure). */
void th_client_verify_ok(tokend_client_t *c, const char *token,
                         tokend_verify_result_t *out);

/* Verifies token. Fails the test unless the answer is exactly valid and
 * reason. */
void th_expect_verify(tokend_client_t *c, const char *token, int valid,
                      tokend_verify_reason_t reason);

/* ---- other programs ---- */

typedef struct {
  int status; /* exit code, 128 + signal, or -1 on timeout */
  char *out;  /* stdout, NUL-terminated */
  size_t out_len;
  char *err; /* stderr, NUL-terminated */
  size_t err_len;
} th_run_result_t;

/* Runs argv (argv[0] is the program's path) with env_extra ("NAME=value",
 * NULL-terminated; may be NULL) added to the environment, in_data on stdin
 * (NULL: empty), and collects stdout and stderr. Kills it after timeout_ms.
 * Returns 0 once it has exited (see r->status); free r with
 * th_run_result_free(). */
int th_run(const char *const *argv, const char *const *env_extra,
           const char *in_data, int timeout_ms, th_run_result_t *r);
void th_run_result_free(th_run_result_t *r);

/* th_run() of head (NULL-terminated; head[0] is the program's path) followed
 * by the strings of tail up to a NULL, with no extra environment. */
int th_run_va(const char *const *head, va_list tail, const char *in_data,
              int timeout_ms, th_run_result_t *r);

/* Runs `tokenctl --socket <t's socket> args...` (NULL-terminated) with
 * in_data on stdin (NULL: empty), allowing it 10 s. Fails the test if
 * tokenctl cannot be run; its exit status is the caller's to check. */
void th_tokenctl(const th_tokend_t *t, const char *in_data, th_run_result_t *r,
                 ...) __attribute__((sentinel));

/* Programs run as another uid must be where that uid can reach them: the
 * build tree may not be (a clone under /root, mode 0700). This copies
 * TOKENCTL_BIN and the libtokend-client it loads into a new directory under
 * /tmp (mode 0755; /tmp is reachable by every uid), once per process;
 * *bin gets the copy's path and *ld_env "LD_LIBRARY_PATH=<that directory>"
 * (so the copy loads the copied library first, ahead of its RUNPATH), both
 * valid until the process exits, which removes the directory. Returns 0, or
 * -1 after printing why (the caller then skips what needed it, saying so). */
int th_tokenctl_for_other_uids(const char **bin, const char **ld_env);

/* The same for tokend (which needs no library of the build tree): *bin gets
 * the path of a copy in that directory. */
int th_tokend_for_other_uids(const char **bin);

/* Fails the test, showing r's output, unless r exited with status. */
void th_expect_exit(const th_run_result_t *r, int status, const char *what);

/* Milliseconds: wall clock (the unit of tokend's timestamps) and a monotonic
 * clock for deadlines. */
int64_t th_now_ms(void);
int64_t th_mono_ms(void);
void th_sleep_ms(int ms);

#endif
