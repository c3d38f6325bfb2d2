/* --json output, built with jansson. Times are Unix ms, or null when not
 * set, under keys ending in "_at" (or "time", "since"); on the way out
 * (ctl_print_json) each gets an RFC 3339 sibling "<key>_rfc3339" right
 * after it, so a new command's times get one by being named so. Keys are
 * only ever added: scripts read the existing ones. The builders return a
 * new reference, or NULL when jansson could not build the value;
 * json_pack()'s "o"/"o*" take that reference. */
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

/* Whether an object's key holds a time (Unix ms): ends in "_at", or is
 * "time" or "since". */
int ctl_json_is_time_key(const char *key);

/* Unix ms (>= 0) into buf (len bytes) as RFC 3339 in UTC with
 * milliseconds: "2027-01-31T12:00:00.000Z". Returns 0 or TOKEND_EINVAL
 * (negative, beyond gmtime, or buf too small). */
int ctl_fmt_rfc3339(int64_t ms, char *buf, size_t len);

/* A copy of v (a new reference; NULL for NULL or on failure) where every
 * object, at any depth, has after each time key (ctl_json_is_time_key)
 * holding an integer or null a "<key>_rfc3339" key holding the time as
 * RFC 3339 (ctl_fmt_rfc3339) or null. Values are shared with v, not
 * copied (a token's secret gets no second copy). v is not changed. */
json_t *ctl_json_with_rfc3339(json_t *v);

/* Prints one JSON value, with ctl_json_with_rfc3339's additions, and a
 * newline on stdout. Takes the reference to
 * root, so a json_pack() result goes straight in; NULL (building it
 * failed) is reported. Returns CTL_EXIT_OK or CTL_EXIT_ERROR. */
int ctl_print_json(json_t *root);

/* As ctl_print_json, for an answer that holds a token's secret: root (may
 * be NULL: building it failed) must hold token (a string, set with
 * json_object_set so the caller's reference stays). The text is written
 * with write(2), never through stdio's buffer, and wiped, and so is
 * jansson's copy of the secret. Takes both references. */
int ctl_print_secret_json(json_t *root, json_t *token);

#endif
