/* --json output (json.h). */
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "ctl.h"
#include "tty.h"

json_t *ctl_json_time(int64_t ms) {
  return ms != 0 ? json_integer((json_int_t)ms) : json_null();
}

json_t *ctl_json_rows(const void *rows, size_t n, ctl_json_row_t to_json) {
  json_t *arr = json_array();
  size_t i;

  for (i = 0; arr != NULL && i < n; i++) {
    if (json_array_append_new(arr, to_json(rows, i)) != 0) {
      json_decref(arr);
      arr = NULL;
    }
  }
  return arr;
}

static json_t *ctl_json_scope_at(const void *rows, size_t i) {
  return json_string(((const char(*)[TOKEND_SCOPE_BYTES])rows)[i]);
}

json_t *ctl_json_scopes(const char (*scopes)[TOKEND_SCOPE_BYTES], size_t n) {
  return ctl_json_rows(scopes, n, ctl_json_scope_at);
}

json_t *ctl_json_text(const char *s) {
  return s[0] != '\0' ? json_string(s) : json_null();
}

/* issue 17: a token's metadata as the JSON object it is, or null. */
static json_t *ctl_json_metadata(const char *metadata) {
  json_t *v;

  if (metadata[0] == '\0')
    return json_null();
  v = json_loads(metadata, 0, NULL);
  /* tokend sends a JSON object; anything else is shown as its text. */
  return v != NULL ? v : json_string(metadata);
}

json_t *ctl_json_info(const tokend_token_info_t *t) {
  return json_pack(
      "{s:s, s:s, s:s, s:s, s:o*, s:s, s:o*, s:o*, s:o*, s:o*, "
      "s:o*, s:o*, s:o*, s:o*, s:o*}",
      "id", t->id, "domain", t->domain, "label", t->label, "hint", t->hint,
      "scopes", ctl_json_scopes(t->scopes, t->n_scopes), "status",
      tokend_token_status_name(t->status), "created_at",
      ctl_json_time(t->created_at), "expires_at", ctl_json_time(t->expires_at),
      "last_used_at", ctl_json_time(t->last_used_at), "revoked_at",
      ctl_json_time(t->revoked_at), "created_by", ctl_json_text(t->created_by),
      "revoked_by", ctl_json_text(t->revoked_by), "metadata",
      ctl_json_metadata(t->metadata), "rolled_from",
      ctl_json_text(t->rolled_from), "rolled_to", ctl_json_text(t->rolled_to));
}

int ctl_json_is_time_key(const char *key) {
  size_t len = strlen(key);

  return (len > 3 && strcmp(key + len - 3, "_at") == 0) ||
         strcmp(key, "time") == 0 || strcmp(key, "since") == 0;
}

int ctl_fmt_rfc3339(int64_t ms, char *buf, size_t len) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  char date[32];

  if (ms < 0 || gmtime_r(&t, &tm) == NULL ||
      strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
    return TOKEND_EINVAL;
  if ((size_t)snprintf(buf, len, "%s.%03dZ", date, (int)(ms % 1000)) >= len)
    return TOKEND_EINVAL;
  return 0;
}

/* The RFC 3339 sibling of a time value: a string, or null for null (not
 * set) and for what cannot be shown. */
static json_t *ctl_json_rfc3339(const json_t *v) {
  char buf[48];

  if (!json_is_integer(v) ||
      ctl_fmt_rfc3339((int64_t)json_integer_value(v), buf, sizeof(buf)) != 0)
    return json_null();
  return json_string(buf);
}

json_t *ctl_json_with_rfc3339(json_t *v) {
  json_t *out, *item, *sib;
  const char *key;
  char name[128];
  size_t i;

  if (v == NULL)
    return NULL;
  if (json_is_array(v)) {
    out = json_array();
    json_array_foreach(v, i, item) {
      if (out != NULL &&
          json_array_append_new(out, ctl_json_with_rfc3339(item)) != 0) {
        json_decref(out);
        out = NULL;
      }
    }
    return out;
  }
  if (!json_is_object(v))
    return json_incref(v);
  /* A new object, key order kept, each time's sibling right after it.
   * Values are shared, not copied: a secret gets no second copy. */
  out = json_object();
  json_object_foreach(v, key, item) {
    if (out == NULL)
      break;
    if (json_object_set_new(out, key, ctl_json_with_rfc3339(item)) != 0)
      goto fail;
    if (!ctl_json_is_time_key(key) ||
        (!json_is_integer(item) && !json_is_null(item)) ||
        (size_t)snprintf(name, sizeof(name), "%s_rfc3339", key) >=
            sizeof(name) ||
        json_object_get(v, name) != NULL)
      continue;
    sib = ctl_json_rfc3339(item);
    if (json_object_set_new(out, name, sib) != 0)
      goto fail;
  }
  return out;

fail:
  json_decref(out);
  return NULL;
}

int ctl_print_json(json_t *root) {
  json_t *orig = root;
  int rc = CTL_EXIT_OK;

  root = ctl_json_with_rfc3339(orig);
  json_decref(orig);
  if (root == NULL ||
      json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
    fputs("tokenctl: cannot encode the result as JSON\n", stderr);
    rc = CTL_EXIT_ERROR;
  } else {
    fputc('\n', stdout);
  }
  json_decref(root);
  return rc;
}

int ctl_print_secret_json(json_t *root, json_t *token) {
  json_t *out = root != NULL ? ctl_json_with_rfc3339(root) : NULL;
  const char *copy;
  char *text = NULL;
  int rc = CTL_EXIT_ERROR;

  if (out != NULL)
    text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (text == NULL)
    fputs("tokenctl: cannot encode the result as JSON\n", stderr);
  else if (ctl_write_all(STDOUT_FILENO, text, strlen(text)) != 0 ||
           ctl_write_all(STDOUT_FILENO, "\n", 1) != 0)
    fprintf(stderr, "tokenctl: cannot write to standard output: %s\n",
            strerror(errno));
  else
    rc = CTL_EXIT_OK;
  if (text != NULL) {
    sodium_memzero(text, strlen(text));
    free(text);
  }
  /* jansson holds its own copy of the secret. */
  copy = json_string_value(token);
  if (copy != NULL)
    sodium_memzero((char *)copy, strlen(copy));
  json_decref(token);
  json_decref(out);
  json_decref(root);
  return rc;
}
