/* --json output, built with jansson. Times are Unix ms, or null when not
 * set. The builders return a new reference, or NULL when jansson could not
 * build the value; json_pack()'s "o"/"o*" take that reference. */
#ifndef TOKENCTL_JSON_H
#define TOKENCTL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <tokend/client.h>

/* One JSON value for row i of rows; NULL on failure. */
typedef json_t *(*ctl_json_row_t)(const void *rows, size_t i);

/* ms as an integer, or null for 0 (not set). */
json_t *ctl_json_time(int64_t ms);

/* A JSON array of n rows, or NULL if any of it cannot be built. */
json_t *ctl_json_rows(const void *rows, size_t n, ctl_json_row_t to_json);

/* An array of n scope strings. */
json_t *ctl_json_scopes(const char (*scopes)[TOKEND_SCOPE_BYTES], size_t n);

/* A string, or null when it is empty (a user, domain or id not set). */
json_t *ctl_json_text(const char *s);

/* An object with every field of a token's metadata. */
json_t *ctl_json_info(const tokend_token_info_t *t);

/* Prints one JSON value and a newline on stdout. Takes the reference to
 * root, so a json_pack() result goes straight in; NULL (building it
 * failed) is reported. Returns CTL_EXIT_OK or CTL_EXIT_ERROR. */
int ctl_print_json(json_t *root);

#endif
