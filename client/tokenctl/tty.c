/* Standard input and output for secrets (tty.h). */
#include "tty.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <tokend/error.h>

int ctl_write_all(int fd, const char *buf, size_t len) {
  ssize_t n;

  while (len > 0) {
    n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return TOKEND_EIO;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static struct termios ctl_saved_termios;
static volatile sig_atomic_t ctl_echo_off;

static void ctl_restore_echo_and_die(int sig) {
  if (ctl_echo_off)
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_saved_termios);
  signal(sig, SIG_DFL);
  raise(sig);
}

int ctl_read_token(char *buf, size_t len, size_t *out_len) {
  struct sigaction sa, old_int, old_term;
  struct termios noecho;
  size_t got = 0;
  ssize_t n;
  int rc = 0, tty = 0;

  if (isatty(STDIN_FILENO) &&
      tcgetattr(STDIN_FILENO, &ctl_saved_termios) == 0) {
    tty = 1;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ctl_restore_echo_and_die;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    noecho = ctl_saved_termios;
    noecho.c_lflag &= ~(tcflag_t)ECHO;
    ctl_echo_off = tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho) == 0;
    fputs("token (not echoed): ", stderr);
  }
  while (got < len) {
    n = read(STDIN_FILENO, buf + got, len - got);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = TOKEND_EIO;
      break;
    }
    if (n == 0 || memchr(buf + got, '\n', (size_t)n) != NULL) {
      got += (size_t)n;
      break;
    }
    got += (size_t)n;
  }
  if (tty) {
    if (ctl_echo_off)
      tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_saved_termios);
    ctl_echo_off = 0;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    fputc('\n', stderr);
  }
  if (rc != 0)
    return rc;
  if (got == len && memchr(buf, '\n', len) == NULL)
    return TOKEND_EMSGSIZE;
  *out_len = got;
  return 0;
}
