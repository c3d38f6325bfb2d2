/* --json output (json.h). */
#include "json.h"

#include <stdio.h>

#include "ctl.h"

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

int ctl_print_json(json_t *root) {
  int rc = CTL_EXIT_OK;

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
