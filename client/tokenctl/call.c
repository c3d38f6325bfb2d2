/* Talking to tokend for a command (call.h). */
/* reallocarray(). */
#define _GNU_SOURCE

#include "call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "user.h"

static const char ctl_start_hint[] =
    "start tokend, or pass --socket / set TOKEND_SOCKET to where it listens";

static const char *ctl_socket_path(const ctl_opts_t *opts) {
  const char *env;

  if (opts->socket_path != NULL)
    return opts->socket_path;
  env = getenv(TOKEND_SOCKET_ENV);
  return env != NULL && env[0] != '\0' ? env : TOKEND_SOCKET_DEFAULT;
}

/* Makes every later call on client act for --actor, if given; with client
 * NULL only checks that --actor names a user (saying why not on stderr). */
static int ctl_set_actor(const ctl_opts_t *opts, tokend_client_t *client) {
  char user[TOKEND_USER_BYTES], why[TOKEND_USER_BYTES + 128];
  int rc;

  if (opts->actor == NULL)
    return 0;
  /* An empty actor would quietly make an operator's call break-glass: it
   * is refused with the rest. */
  rc = ctl_resolve_user(opts->actor, opts->identity, user, NULL, why,
                        sizeof(why));
  if (rc == 0 && client != NULL &&
      (rc = tokend_client_set_actor(client, user)) != 0)
    snprintf(why, sizeof(why),
             "give a local user name, a uid, or an identity of at most %d "
             "characters",
             TOKEND_USER_MAX_CHARS);
  if (rc != 0)
    fprintf(stderr, "tokenctl: --actor '%s' is not a user: %s\n", opts->actor,
            why);
  return rc;
}

int ctl_connect(const ctl_opts_t *opts, tokend_client_t **client) {
  const char *path = ctl_socket_path(opts);
  char why[TOKEND_CONNECT_ERRMSG_BYTES];
  int rc;

  /* A mistyped --actor is the user's to fix before tokend is asked. */
  *client = NULL;
  if ((rc = ctl_set_actor(opts, NULL)) != 0)
    return rc;
  rc = tokend_client_open(path, opts->timeout_ms, TOKEND_CONNECT_CHECK_PEER,
                          client, why, sizeof(why));
  switch (rc) {
  case 0:
    rc = ctl_set_actor(opts, *client);
    if (rc != 0) {
      tokend_client_close(*client);
      *client = NULL;
    }
    return rc;
  case TOKEND_ETIMEDOUT:
    fprintf(stderr, "tokenctl: %s; try again or pass a larger --timeout\n",
            why);
    return rc;
  case TOKEND_ENOSOCKET:
  case TOKEND_ECONNECT:
    fprintf(stderr, "tokenctl: cannot connect to tokend: %s (%s)\n", why,
            ctl_start_hint);
    return rc;
  default:
    fprintf(stderr, "tokenctl: cannot connect to tokend: %s\n", why);
    return rc;
  }
}

void ctl_report(const char *what, tokend_client_t *client, int rc,
                const char *hint) {
  const char *msg = tokend_client_errmsg(client);

  if (msg[0] == '\0')
    msg = tokend_strerror(rc);
  if (hint == NULL) {
    switch (rc) {
    case TOKEND_ETIMEDOUT:
      hint = "tokend did not answer in time; pass a larger --timeout "
             "(0 waits forever)";
      break;
    case TOKEND_ECLOSED:
    case TOKEND_EIO:
      hint = "tokend's log may say why";
      break;
    case TOKEND_EPROTO: /* only ever local: tokend's statuses never map to it */
      hint = "are tokenctl and tokend the same version?";
      break;
    case TOKEND_EUNAVAIL:
      hint = "tokend may be shutting down; try again";
      break;
    case TOKEND_EINDOUBT:
      hint = "look (tokenctl list) before trying again";
      break;
    }
  }
  fprintf(stderr, "tokenctl: %s failed: %s: %s%s%s%s\n", what,
          tokend_grpc_name(tokend_client_grpc_status(client)), msg,
          hint != NULL ? " (" : "", hint != NULL ? hint : "",
          hint != NULL ? ")" : "");
}

int ctl_end_call(const char *what, tokend_client_t *client, int rc,
                 const char *hint) {
  tokend_propagation_t p;

  if (rc != 0)
    ctl_report(what, client, rc, hint);
  /* Done and durable, but not yet in effect on every live host: the
   * stragglers stop answering once their lease runs out. */
  if (rc == 0 && tokend_client_last_propagation(client, &p) &&
      p.hosts_pending > 0)
    fprintf(stderr,
            "tokenctl: %s: warning: in effect on %lu live host(s), not yet on "
            "%lu when tokend's --propagation-timeout-ms ran out; those "
            "answer Verify UNAVAILABLE once their lease runs out unless they "
            "catch up (`tokenctl status` on each host shows it)\n",
            what, (unsigned long)p.hosts_applied,
            (unsigned long)p.hosts_pending);
  tokend_client_close(client);
  return rc != 0 ? CTL_EXIT_ERROR : CTL_EXIT_OK;
}

const char *ctl_domain_perm_hint(const ctl_opts_t *opts, const char *domain,
                                 char *buf, size_t len) {
  char user[TOKEND_USER_BYTES], why[TOKEND_USER_BYTES + 128];

  if (opts->actor != NULL) {
    if (ctl_resolve_user(opts->actor, opts->identity, user, NULL, why,
                         sizeof(why)) != 0)
      snprintf(user, sizeof(user), "U");
    snprintf(buf, len,
             "only operators may use --actor, and the user they act for must "
             "be an admin of the domain: tokenctl admins grant --domain %s "
             "--user %s",
             domain, user);
  } else {
    snprintf(buf, len,
             "ask an operator to grant you admin of this domain: tokenctl "
             "admins grant --domain %s --user uid:%lu",
             domain, (unsigned long)getuid());
  }
  return buf;
}

int ctl_pages_add(ctl_pages_t *pages, const char *what, const void *items,
                  size_t n_items,
                  const char next_page_token[TOKEND_PAGE_TOKEN_BYTES]) {
  size_t cap;
  void *grown;

  /* A page that makes no progress would have us loop forever. */
  if (next_page_token[0] != '\0' &&
      (n_items == 0 || strcmp(next_page_token, pages->page_token) == 0)) {
    fprintf(stderr,
            "tokenctl: %s failed: tokend's pages do not advance (are "
            "tokenctl and tokend the same version?)\n",
            what);
    return CTL_EXIT_ERROR;
  }
  if (n_items > pages->cap - pages->n) {
    cap = pages->cap * 2 > pages->n + n_items ? pages->cap * 2
                                              : pages->n + n_items;
    grown = reallocarray(pages->items, cap, pages->size);
    if (grown == NULL) {
      fprintf(stderr, "tokenctl: %s failed: out of memory\n", what);
      return CTL_EXIT_ERROR;
    }
    pages->items = grown;
    pages->cap = cap;
  }
  if (n_items > 0)
    memcpy((char *)pages->items + pages->n * pages->size, items,
           n_items * pages->size);
  pages->n += n_items;
  memcpy(pages->page_token, next_page_token, sizeof(pages->page_token));
  return CTL_EXIT_OK;
}

json_t *ctl_json_propagation(const tokend_propagation_t *p) {
  return json_pack("{s:I, s:I, s:I}", "revision", (json_int_t)p->revision,
                   "hosts_applied", (json_int_t)p->hosts_applied,
                   "hosts_pending", (json_int_t)p->hosts_pending);
}
