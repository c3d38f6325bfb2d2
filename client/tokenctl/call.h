/* Talking to tokend for a command: connecting (acting for --actor),
 * reporting a failed call with what to do about it, and gathering a
 * listing's pages. Everything goes through the public client library. */
#ifndef TOKENCTL_CALL_H
#define TOKENCTL_CALL_H

#include <stddef.h>

#include <jansson.h>
#include <tokend/client.h>

#include "ctl.h"

/* Connects (acting for --actor), or says on stderr why not and what to
 * do; on failure *client is NULL. On success the caller closes *client
 * with tokend_client_close(). The library tells a missing socket, one we
 * may not open and one that is not tokend's apart (asking the peer WhoAmI
 * first, so that the last is caught here rather than as a strange failure
 * of the command's call). Returns 0 or the library's negative code. */
int ctl_connect(const ctl_opts_t *opts, tokend_client_t **client);

/* One line on stderr: what failed, tokend's status code name and message,
 * and what to do about it (hint, or one we can tell from rc; hint may be
 * NULL). */
void ctl_report(const char *what, tokend_client_t *client, int rc,
                const char *hint);

/* Ends a command's one call to tokend: reports its failure (rc != 0) with
 * hint, then closes (and frees) client. Returns CTL_EXIT_OK or
 * CTL_EXIT_ERROR. */
int ctl_end_call(const char *what, tokend_client_t *client, int rc,
                 const char *hint);

/* What to do about PERMISSION_DENIED from a call on domain's tokens or
 * audit log, into buf (len bytes). Returns buf. */
const char *ctl_domain_perm_hint(const ctl_opts_t *opts, const char *domain,
                                 char *buf, size_t len);

/* The items of every page of a listing, gathered into one array: tokend
 * hands out a long list a page at a time. */
typedef struct {
  void *items; /* n items of size bytes each; the caller frees it */
  size_t n, cap, size;
  /* The page to ask for next: "" for the first, and after the last. */
  char page_token[TOKEND_PAGE_TOKEN_BYTES];
} ctl_pages_t;

/* Appends one page's n_items items (pages->size bytes each, copied) and
 * moves on to the page after it. what names the command in messages.
 * Returns CTL_EXIT_OK, or CTL_EXIT_ERROR after saying why on stderr (out
 * of memory, or pages that do not advance). */
int ctl_pages_add(ctl_pages_t *pages, const char *what, const void *items,
                  size_t n_items,
                  const char next_page_token[TOKEND_PAGE_TOKEN_BYTES]);

/* A write's Propagation as a JSON object (a new reference), for --json:
 * {"revision", "hosts_applied", "hosts_pending"}. */
json_t *ctl_json_propagation(const tokend_propagation_t *p);

#endif
