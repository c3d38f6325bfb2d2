/* pepper: the server secret that keys the token hash. A file of exactly
 * TOKEND_PEPPER_BYTES random bytes, mode 0600, created on first start. */
#ifndef TOKEND_PEPPER_H
#define TOKEND_PEPPER_H

#include <stddef.h>
#include <stdint.h>

#include "tokend_error.h"
#include "tokend_limits.h"

/* Reads the pepper at path into out, or creates it (0600, from the CSPRNG,
 * fsync-ed) if path does not exist. Refuses a file that is not a regular
 * file, is readable or writable by group or others, or has the wrong size:
 * returns TOKEND_ECONFIG (or TOKEND_EIO) and writes the reason into why. */
int pepper_load(const char *path, uint8_t out[TOKEND_PEPPER_BYTES], char *why,
                size_t why_len) TOKEND_MUST_CHECK;

#endif
