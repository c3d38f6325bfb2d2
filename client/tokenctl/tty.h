/* Standard input and output for secrets: a token is read without stdio
 * (and without echo on a terminal) and written without stdio, so that no
 * stdio buffer keeps a copy of it. */
#ifndef TOKENCTL_TTY_H
#define TOKENCTL_TTY_H

#include <stddef.h>

/* Writes all of buf (len bytes) to fd, retrying after EINTR. Returns 0 or
 * TOKEND_EIO (errno says why). */
int ctl_write_all(int fd, const char *buf, size_t len);

/* Reads the first line of stdin into buf (len bytes; not NUL-terminated),
 * *out_len getting how many bytes were read. When stdin is a terminal the
 * token is typed without echo, so it does not stay on screen; SIGINT and
 * SIGTERM restore the echo before the process dies. Returns 0,
 * TOKEND_EIO, or TOKEND_EMSGSIZE if the first line does not fit. The
 * caller wipes buf. */
int ctl_read_token(char *buf, size_t len, size_t *out_len);

#endif
