/* Users on the command line (--user, --actor) and in answers: a local user
 * name, a uid, or a platform identity. */
#ifndef TOKENCTL_USER_H
#define TOKENCTL_USER_H

#include <stddef.h>

#include <tokend/limits.h>

/* Which form a user given on the command line took. */
typedef enum {
  CTL_USER_UID,     /* a number N or "uid:N" */
  CTL_USER_LOCAL,   /* a local user name, looked up */
  CTL_USER_IDENTITY /* a platform identity, sent as given */
} ctl_user_form_t;

/* The user tokend knows U as, into out (TOKEND_USER_BYTES): a uid number N
 * or "uid:N" is "uid:N"; with `identity` (--identity), or when U contains
 * '@', U is a platform identity sent as given for tokend to check; else U
 * must be a local user name this system knows, "uid:<its uid>". A name that
 * is none of these is refused rather than sent as an identity: a mistyped
 * local user must not silently name someone else. *form (may be NULL) gets
 * the form. Returns 0, or TOKEND_EINVAL with why (why_len bytes) saying
 * what to write instead. */
int ctl_resolve_user(const char *u, int identity, char out[TOKEND_USER_BYTES],
                     ctl_user_form_t *form, char *why, size_t why_len);

/* user (as ctl_resolve_user made it) and the form it took, for the answer,
 * into buf (len bytes): "uid:1000 (local user alice)", "uid:12345 (uid, no
 * local user)", "bob@example.com (platform identity)". */
void ctl_describe_user(const char *user, ctl_user_form_t form, char *buf,
                       size_t len);

/* The name of a form, for --json (a static string). */
const char *ctl_user_form_name(ctl_user_form_t form);

/* A user for people to read, into buf (len bytes): "uid:1000 (alice)" where
 * this system knows the uid, the user as is otherwise, "-" for none. */
void ctl_fmt_user(const char *user, char *buf, size_t len);

#endif
