/* Users on the command line and in answers (user.h). */
#include "user.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <tokend/error.h>

#include "ctl.h"

int ctl_resolve_user(const char *u, int identity, char out[TOKEND_USER_BYTES],
                     ctl_user_form_t *form, char *why, size_t why_len) {
  unsigned long long v;
  struct passwd *pw;
  const char *p, *digits = strncmp(u, "uid:", 4) == 0 ? u + 4 : u;
  ctl_user_form_t f;

  if (strlen(u) > TOKEND_USER_MAX_CHARS || u[0] == '\0') {
    snprintf(why, why_len,
             "a user is 1-%d characters: a local user name, a uid, or a "
             "platform identity",
             TOKEND_USER_MAX_CHARS);
    return TOKEND_EINVAL;
  }
  if (identity) {
    snprintf(out, TOKEND_USER_BYTES, "%s", u);
    f = CTL_USER_IDENTITY;
    goto out_form;
  }
  for (p = digits; *p >= '0' && *p <= '9'; p++)
    ;
  if (*digits != '\0' && *p == '\0') {
    /* (uid_t)-1 is no uid: chown() and setreuid() read it as "unchanged". */
    if (ctl_parse_uint(digits, (uid_t)-1 - 1, &v) != 0) {
      snprintf(why, why_len, "%s is not a uid (0 to %lu)", u,
               (unsigned long)((uid_t)-1 - 1));
      return TOKEND_EINVAL;
    }
    snprintf(out, TOKEND_USER_BYTES, "uid:%llu", v);
    f = CTL_USER_UID;
  } else if (strchr(u, '@') != NULL) {
    snprintf(out, TOKEND_USER_BYTES, "%s", u);
    f = CTL_USER_IDENTITY;
  } else if (strchr(u, ':') == NULL && (pw = getpwnam(u)) != NULL) {
    snprintf(out, TOKEND_USER_BYTES, "uid:%lu", (unsigned long)pw->pw_uid);
    f = CTL_USER_LOCAL;
  } else {
    snprintf(why, why_len,
             "no local user %s; write a platform identity with @, or pass "
             "--identity",
             u);
    return TOKEND_EINVAL;
  }
out_form:
  if (form != NULL)
    *form = f;
  return 0;
}

void ctl_describe_user(const char *user, ctl_user_form_t form, char *buf,
                       size_t len) {
  struct passwd *pw;

  if (form == CTL_USER_IDENTITY)
    snprintf(buf, len, "%s (platform identity)", user);
  else if ((pw = getpwuid((uid_t)strtoul(user + 4, NULL, 10))) != NULL)
    snprintf(buf, len, "%s (local user %s)", user, pw->pw_name);
  else
    snprintf(buf, len, "%s (uid, no local user)", user);
}

const char *ctl_user_form_name(ctl_user_form_t form) {
  return form == CTL_USER_IDENTITY ? "identity"
         : form == CTL_USER_LOCAL  ? "local user"
                                   : "uid";
}

void ctl_fmt_user(const char *user, char *buf, size_t len) {
  unsigned long long v;
  struct passwd *pw;

  if (user[0] == '\0')
    snprintf(buf, len, "-");
  else if (strncmp(user, "uid:", 4) == 0 &&
           ctl_parse_uint(user + 4, (uid_t)-1 - 1, &v) == 0 &&
           (pw = getpwuid((uid_t)v)) != NULL)
    snprintf(buf, len, "%s (%s)", user, pw->pw_name);
  else
    snprintf(buf, len, "%s", user);
}
