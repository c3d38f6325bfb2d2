/* copy: `tokend-admin copy`, the whole of one store copied into another,
 * empty one (an SQLite file into PostgreSQL: moving from one host to many;
 * docs/STORE.md). Backend-neutral: it reads and writes through store.h
 * only (the snapshot, load and import members).
 *
 * The source is opened read-only and read in one snapshot (a running
 * tokend may keep writing to it). The target gets every token (its hash as
 * it is, so tokens keep working with the same pepper), every domain admin,
 * every audit row with its id, count and chain hash, every domain's Verify
 * counters and the pepper fingerprint, in one transaction under its write
 * lock; a target that holds anything (a token, an admin, an audit row, a
 * counter, or another pepper's fingerprint) is refused and left as it was.
 * Then the target is read back and checked (admin_copy_usage says what). */
#ifndef TOKEND_ADMIN_COPY_H
#define TOKEND_ADMIN_COPY_H

#include <stdio.h>

/* Exit statuses of tokend-admin. */
#define ADMIN_EXIT_OK 0
#define ADMIN_EXIT_FAILED 1 /* refused, failed, or the check found a fault */
#define ADMIN_EXIT_USAGE 2

/* The copy sub-command's usage text (static). */
extern const char admin_copy_usage[];

/* Runs `tokend-admin copy` with argv[0] "copy" and its options: writes
 * what it copied and checked to out, failures (one line each, never a
 * secret or a password) to err. Returns an ADMIN_EXIT_* status. */
int admin_copy(int argc, char **argv, FILE *out, FILE *err);

#endif
