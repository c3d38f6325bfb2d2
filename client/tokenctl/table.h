/* Output for people: times in UTC, scopes, text made safe for a terminal,
 * and tables whose columns line up (by display width, so CJK labels
 * count as two columns). Tables go to stdout. */
#ifndef TOKENCTL_TABLE_H
#define TOKENCTL_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <tokend/limits.h>

/* Room for one formatted cell: a label (400 bytes of UTF-8), a user with
 * its local name, or a status message. */
#define CTL_CELL_BYTES 512
#define CTL_MAX_COLS 16

/* Fills the cells of row i of rows (each CTL_CELL_BYTES, NUL-terminated). */
typedef void (*ctl_fill_row_t)(const void *rows, size_t i,
                               char (*cell)[CTL_CELL_BYTES]);

/* Unix ms into buf (len bytes): "2026-11-29T10:07:00Z", or "never" for 0. */
void ctl_fmt_iso(int64_t ms, char *buf, size_t len);

/* Unix ms into buf (len bytes): "2026-11-29 10:07", or "-" for 0. */
void ctl_fmt_short(int64_t ms, char *buf, size_t len);

/* Unix ms into buf (len bytes): "2026-11-29 10:07:03", or "-" for 0. */
void ctl_fmt_seconds(int64_t ms, char *buf, size_t len);

/* n scopes on f, comma-separated, "(none)" for none, then a newline. */
void ctl_print_scopes(FILE *f, const char (*scopes)[TOKEND_SCOPE_BYTES],
                      size_t n);

/* Copies the text src into dst (len bytes) with control characters and
 * bytes that are not UTF-8 replaced by '?', whole characters only. A
 * terminal must never get escapes from a table, and JSON must be UTF-8:
 * tokend's messages are text, but one cut short may end in half a
 * character. */
void ctl_copy_text(char *dst, size_t len, const char *src);

/* Prints a header of ncols names (at most CTL_MAX_COLS) and n rows, each
 * column as wide as its widest cell; fill is called twice per row. */
void ctl_print_table(const char *const *names, size_t ncols, const void *rows,
                     size_t n, ctl_fill_row_t fill);

#endif
