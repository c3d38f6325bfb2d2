/* copy.c: `tokend-admin copy` (copy.h). */
#include "admin/copy.h"

#include <getopt.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pepper.h"
#include "store/store.h"

const char admin_copy_usage[] =
    "NAME\n"
    "  tokend-admin copy - copy a tokend store into a new, empty one\n"
    "\n"
    "SYNOPSIS\n"
    "  tokend-admin copy --from URL --to URL [--pepper-file PATH] "
    "[--check-only]\n"
    "\n"
    "DESCRIPTION\n"
    "  Copies everything tokend keeps from one store into another: every\n"
    "  token (its keyed hash as it is, so every token keeps working with the\n"
    "  same pepper), every domain admin, every audit row with its id, count\n"
    "  and chain hash (so `tokenctl audit --verify` still checks out), every\n"
    "  domain's Verify counters, every domain policy, and the pepper\n"
    "  fingerprint. It is the way from one host (SQLite) to many\n"
    "  (PostgreSQL): see \"Moving from one host to many\" in docs/STORE.md.\n"
    "\n"
    "  The source is opened read-only and read in one snapshot (one read\n"
    "  transaction): it is never written, and tokend may keep running on it\n"
    "  (what it writes after the snapshot began is not copied). A source\n"
    "  that needs migrating, or whose audit log has rows from before the\n"
    "  chain, is refused: start the new tokend on it once first. The target\n"
    "  is written in one transaction under its write lock: all of it or\n"
    "  nothing. A target that holds anything (a token, a domain admin, an\n"
    "  audit row, a Verify counter, a domain policy, or another pepper's\n"
    "  fingerprint) is refused and left as it was. The target's database\n"
    "  must exist; its tokend schema is created if it has none. A tokend\n"
    "  already running on the (empty) target learns of the copied tokens\n"
    "  through the change feed, as of any write.\n"
    "\n"
    "OPTIONS\n"
    "  --from URL          the source store: sqlite:PATH (or a bare path),\n"
    "                      or any store URL tokend takes with --store\n"
    "  --to URL            the target store, e.g.\n"
    "                      'postgresql:///tokend?host=/run/postgresql' (a\n"
    "                      libpq URI: keep the password in ~/.pgpass or\n"
    "                      PGPASSFILE, not in argv)\n"
    "  --pepper-file PATH  the pepper file of the source's tokend: it must\n"
    "                      match the fingerprint the source recorded, and it\n"
    "                      keys the audit chain check below. Read only, never\n"
    "                      created; recommended\n"
    "  --check-only        check that the source can be read, the pepper\n"
    "                      matches and the target is empty, and say what\n"
    "                      would be copied; write nothing\n"
    "  -h, --help          show this text\n"
    "\n"
    "WHAT IS CHECKED\n"
    "  Before: the pepper file's fingerprint against the source's, and that\n"
    "  the target is empty. After the commit, reading the target back: as\n"
    "  many tokens, domain admins, audit rows, Verify counters and domain\n"
    "  policies as were copied, the newest audit row's id and hash as in\n"
    "  the source, the pepper fingerprint as copied; and with --pepper-file,\n"
    "  the whole audit chain, recomputed row by row with the key derived\n"
    "  from the pepper, up to the source's newest row (what `tokenctl audit\n"
    "  --verify` does).\n"
    "  Without --pepper-file the chain is not recomputed.\n"
    "\n"
    "EXIT STATUS\n"
    "  0 copied and checked (or, with --check-only, a copy would proceed);\n"
    "  1 refused, failed, or the check found a difference; 2 bad usage.\n"
    "\n"
    "EXAMPLE\n"
    "  tokend-admin copy --from sqlite:/var/lib/tokend/tokend.db \\\n"
    "      --to 'postgresql://tokend@db.example/tokend?sslmode=verify-full' "
    "\\\n"
    "      --pepper-file /var/lib/tokend/pepper\n";

typedef struct {
  const char *from;
  const char *to;
  const char *pepper_path; /* NULL: none given */
  int check_only;
} copy_opts_t;

/* What a walk of one store counted. */
typedef struct {
  int64_t tokens;
  int64_t revoked;
  int64_t admins;
  int64_t audit_rows;
  int64_t counters;
  int64_t policies;
  int64_t audit_head_id; /* the newest audit row (0: none) */
  int audit_head_hashed; /* it has a chain hash: audit_head */
  uint8_t audit_head[STORE_AUDIT_HASH_BYTES];
} copy_tally_t;

/* One copy's state, handed to the load callbacks. dst is NULL while only
 * counting. */
typedef struct {
  store_t *dst;
  copy_tally_t n;
  int source;     /* walking the source: refuse what cannot be copied */
  int dst_failed; /* the failure came from dst (its errmsg says why) */
  char why[512];  /* the reason of such a refusal, "" if none */
} copy_walk_t;

static int walk_token(void *arg, const store_token_t *row) {
  copy_walk_t *w = arg;
  int err;

  if (w->dst != NULL && (err = store_token_import(w->dst, row)) != 0) {
    w->dst_failed = 1;
    return err;
  }
  w->n.tokens++;
  if (row->revoked_at != 0)
    w->n.revoked++;
  return 0;
}

static int walk_admin(void *arg, const store_admin_t *a) {
  copy_walk_t *w = arg;
  int64_t at;
  int already, err;

  /* A grant keeps its time and grantor: they are admin_grant's now and by. */
  if (w->dst != NULL) {
    err = store_admin_grant(w->dst, a->domain, a->user, a->granted_at,
                            a->granted_by, &at, &already);
    if (err == 0 && already) {
      snprintf(w->why, sizeof(w->why),
               "domain admin %s of %s is in the target already", a->user,
               a->domain);
      err = TOKEND_EEXIST;
    }
    if (err != 0) {
      w->dst_failed = 1;
      return err;
    }
  }
  w->n.admins++;
  return 0;
}

static int walk_audit(void *arg, const store_audit_t *ev, const uint8_t *hash) {
  copy_walk_t *w = arg;
  int err;

  /* Only a log from before the chain existed has rows without a hash, and
   * only a tokend that can write chains them (at its start): a copy would
   * carry them unchained into a store that never chains old rows. */
  if (w->source && hash == NULL) {
    snprintf(w->why, sizeof(w->why),
             "audit row %lld of the source has no chain hash (its log "
             "predates the chain); start tokend once on the source, which "
             "chains it, then copy",
             (long long)ev->id);
    return TOKEND_ECONFIG;
  }
  if (w->dst != NULL && (err = store_audit_import(w->dst, ev, hash)) != 0) {
    w->dst_failed = 1;
    return err;
  }
  w->n.audit_rows++;
  w->n.audit_head_id = ev->id;
  w->n.audit_head_hashed = hash != NULL;
  if (hash != NULL)
    memcpy(w->n.audit_head, hash, STORE_AUDIT_HASH_BYTES);
  return 0;
}

static int walk_counts(void *arg, const store_counts_t *c) {
  copy_walk_t *w = arg;
  int err;

  if (w->dst != NULL && (err = store_counts_import(w->dst, c)) != 0) {
    w->dst_failed = 1;
    return err;
  }
  w->n.counters++;
  return 0;
}

static int walk_policy(void *arg, const store_policy_t *p) {
  copy_walk_t *w = arg;
  int err;

  /* As set: its updated_at and updated_by are the operator's Set's. */
  if (w->dst != NULL && (err = store_policy_set(w->dst, p)) != 0) {
    w->dst_failed = 1;
    return err;
  }
  w->n.policies++;
  return 0;
}

/* Walks every record of src, importing each into w->dst when it is set.
 * On failure *what names the step and w->dst_failed says which store's
 * errmsg explains it. */
static int walk_store(store_t *src, copy_walk_t *w, const char **what) {
  int err;

  *what = "domain admins";
  if ((err = store_admin_load(src, walk_admin, w)) != 0)
    return err;
  *what = "tokens";
  if ((err = store_load(src, walk_token, w)) != 0)
    return err;
  *what = "audit rows";
  if ((err = store_audit_load(src, walk_audit, w)) != 0)
    return err;
  *what = "Verify counters";
  if ((err = store_counts_load(src, walk_counts, w)) != 0)
    return err;
  *what = "domain policies";
  return store_policy_load(src, walk_policy, w);
}

static void tally_print(FILE *out, const char *verb, const copy_tally_t *n,
                        int fingerprint) {
  fprintf(out,
          "%s %lld tokens (%lld revoked), %lld domain admins, %lld audit "
          "rows (newest id %lld), %lld Verify counters, %lld domain "
          "policies%s\n",
          verb, (long long)n->tokens, (long long)n->revoked,
          (long long)n->admins, (long long)n->audit_rows,
          (long long)n->audit_head_id, (long long)n->counters,
          (long long)n->policies,
          fingerprint ? ", the pepper fingerprint" : ", no pepper fingerprint");
}

static int parse_opts(int argc, char **argv, copy_opts_t *o, FILE *out,
                      FILE *err) {
  enum { OPT_FROM = 256, OPT_TO, OPT_PEPPER, OPT_CHECK_ONLY };
  static const struct option long_options[] = {
      {"from", required_argument, NULL, OPT_FROM},
      {"to", required_argument, NULL, OPT_TO},
      {"pepper-file", required_argument, NULL, OPT_PEPPER},
      {"check-only", no_argument, NULL, OPT_CHECK_ONLY},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int c;

  memset(o, 0, sizeof(*o));
  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_FROM:
      o->from = optarg;
      break;
    case OPT_TO:
      o->to = optarg;
      break;
    case OPT_PEPPER:
      o->pepper_path = optarg;
      break;
    case OPT_CHECK_ONLY:
      o->check_only = 1;
      break;
    case 'h':
      fputs(admin_copy_usage, out);
      return 1;
    case ':':
      fprintf(err, "tokend-admin copy: %s needs a value\n", argv[optind - 1]);
      return -1;
    default:
      fprintf(err, "tokend-admin copy: unknown option %s\n", argv[optind - 1]);
      return -1;
    }
  }
  if (optind < argc) {
    fprintf(err, "tokend-admin copy: unexpected argument '%s'\n", argv[optind]);
    return -1;
  }
  if (o->from == NULL || o->to == NULL) {
    fprintf(err, "tokend-admin copy: both --from and --to are needed\n");
    return -1;
  }
  if (strcmp(o->from, o->to) == 0) {
    fprintf(err, "tokend-admin copy: --from and --to name the same store\n");
    return -1;
  }
  return 0;
}

/* Reads the pepper into the fingerprint and the audit key; the pepper
 * itself lives only in guarded memory, wiped before this returns. */
static int pepper_derive(const char *path, uint8_t fp[STORE_FINGERPRINT_BYTES],
                         uint8_t key[STORE_AUDIT_KEY_BYTES], FILE *err) {
  uint8_t *pepper = sodium_malloc(TOKEND_PEPPER_BYTES);
  char why[512];
  int rc;

  if (pepper == NULL) {
    fprintf(err, "tokend-admin copy: out of memory for the pepper\n");
    return TOKEND_ENOMEM;
  }
  rc = pepper_read(path, pepper, why, sizeof(why));
  if (rc == TOKEND_ENOTFOUND)
    fprintf(err, "tokend-admin copy: no pepper file at %s\n", path);
  else if (rc != 0)
    fprintf(err, "tokend-admin copy: %s\n", why);
  if (rc == 0) {
    pepper_fingerprint(pepper, fp);
    pepper_audit_key(pepper, key);
  }
  sodium_free(pepper);
  return rc;
}

/* issue 16: a store that went through a pepper rotation chains its audit
 * log with a key sealed under the current pepper (core/pepper.h), not one
 * derived from it: with the source's sealed key, *key becomes that key,
 * opened with the pepper at path. 0 also when the source has none (key
 * unchanged). */
static int pepper_open_sealed(store_t *src, const char *path,
                              uint8_t key[STORE_AUDIT_KEY_BYTES], FILE *err) {
  uint8_t sealed[PEPPER_AUDIT_KEY_SEALED_BYTES];
  uint8_t *pepper;
  char why[512];
  size_t len = 0;
  int rc = store_meta_get(src, STORE_META_AUDIT_KEY_SEALED, sealed,
                          sizeof(sealed), &len);

  if (rc == TOKEND_ENOTFOUND)
    return 0;
  if (rc != 0 || len != sizeof(sealed)) {
    fprintf(err,
            "tokend-admin copy: cannot read the source's sealed audit "
            "key: %s\n",
            rc != 0 ? store_errmsg(src) : "a bad size");
    return rc != 0 ? rc : TOKEND_ESTORE;
  }
  if ((pepper = sodium_malloc(TOKEND_PEPPER_BYTES)) == NULL) {
    fprintf(err, "tokend-admin copy: out of memory for the pepper\n");
    return TOKEND_ENOMEM;
  }
  if ((rc = pepper_read(path, pepper, why, sizeof(why))) != 0)
    fprintf(err, "tokend-admin copy: %s\n", why);
  else if ((rc = pepper_audit_key_open(pepper, sealed, key)) != 0)
    fprintf(err,
            "tokend-admin copy: the source's sealed audit key does not "
            "open with the pepper %s\n",
            path);
  sodium_free(pepper);
  return rc;
}

/* issue 16: the pepper rotation's facts (meta), copied as they are, so
 * the target is on the same pepper generation, knows the pepper it may
 * still be rotating from, and chains its log with the same key. */
static int copy_rotation_meta(store_t *src, store_t *dst, FILE *err) {
  static const char *const keys[] = {STORE_META_PEPPER_GEN,
                                     STORE_META_PEPPER_PREVIOUS,
                                     STORE_META_AUDIT_KEY_SEALED};
  uint8_t buf[STORE_META_VALUE_MAX];
  size_t i, len;
  int rc;

  for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    len = 0;
    rc = store_meta_get(src, keys[i], buf, sizeof(buf), &len);
    if (rc == TOKEND_ENOTFOUND)
      continue;
    if (rc != 0) {
      fprintf(err, "tokend-admin copy: cannot read the source's %s: %s\n",
              keys[i], store_errmsg(src));
      return rc;
    }
    if ((rc = store_meta_set(dst, keys[i], buf, len)) != 0) {
      fprintf(err, "tokend-admin copy: cannot record %s: %s\n", keys[i],
              store_errmsg(dst));
      return rc;
    }
  }
  return 0;
}

/* Nothing in dst: no row, no counter, and no fingerprint but want's
 * (NULL: none wanted). Says what it found on err otherwise. */
static int target_empty(store_t *dst, const char *name, const uint8_t *want_fp,
                        FILE *err) {
  uint8_t fp[STORE_FINGERPRINT_BYTES];
  copy_walk_t w;
  int64_t rows = 0;
  int rc, present = 0;

  memset(&w, 0, sizeof(w));
  if ((rc = store_count_rows(dst, &rows)) != 0 ||
      (rc = store_counts_load(dst, walk_counts, &w)) != 0 ||
      (rc = store_policy_load(dst, walk_policy, &w)) != 0 ||
      (rc = store_fingerprint_get(dst, fp, &present)) != 0) {
    fprintf(err, "tokend-admin copy: cannot read the target %s: %s\n", name,
            store_errmsg(dst));
    return rc;
  }
  if (rows > 0 || w.n.counters > 0 || w.n.policies > 0) {
    fprintf(err,
            "tokend-admin copy: the target %s is not empty: it holds %lld "
            "tokens, domain admins and audit rows, %lld Verify counters and "
            "%lld domain policies; a copy goes only into an empty store. "
            "Nothing was changed\n",
            name, (long long)rows, (long long)w.n.counters,
            (long long)w.n.policies);
    return TOKEND_EEXIST;
  }
  if (present && (want_fp == NULL ||
                  sodium_memcmp(fp, want_fp, STORE_FINGERPRINT_BYTES) != 0)) {
    fprintf(err,
            "tokend-admin copy: the target %s records the fingerprint of "
            "another pepper (a tokend was started on it with another pepper "
            "file); a copy would make its tokens fail there. Nothing was "
            "changed\n",
            name);
    return TOKEND_EEXIST;
  }
  return 0;
}

/* Reads dst back and compares it with what was copied; with a key, also
 * recomputes the audit chain up to the source's newest row. */
static int target_check(store_t *dst, const char *name, const copy_tally_t *n,
                        const uint8_t *fp, const uint8_t *key, FILE *out,
                        FILE *err) {
  uint8_t got_fp[STORE_FINGERPRINT_BYTES], zero[STORE_AUDIT_HASH_BYTES] = {0};
  char hex[2 * STORE_AUDIT_HASH_BYTES + 1];
  store_audit_check_t check;
  const char *what;
  copy_walk_t w;
  int rc, present = 0, bad = 0;

  memset(&w, 0, sizeof(w));
  if ((rc = walk_store(dst, &w, &what)) != 0 ||
      (rc = store_fingerprint_get(dst, got_fp, &present)) != 0) {
    fprintf(err, "tokend-admin copy: cannot read the target back: %s\n",
            store_errmsg(dst));
    return rc;
  }
  if (w.n.tokens != n->tokens || w.n.revoked != n->revoked ||
      w.n.admins != n->admins || w.n.audit_rows != n->audit_rows ||
      w.n.counters != n->counters || w.n.policies != n->policies ||
      w.n.audit_head_id != n->audit_head_id ||
      w.n.audit_head_hashed != n->audit_head_hashed ||
      (n->audit_head_hashed &&
       memcmp(w.n.audit_head, n->audit_head, STORE_AUDIT_HASH_BYTES) != 0)) {
    tally_print(err, "tokend-admin copy: CHECK FAILED: the target holds", &w.n,
                present);
    bad = 1;
  }
  if (present != (fp != NULL) ||
      (fp != NULL && memcmp(got_fp, fp, STORE_FINGERPRINT_BYTES) != 0)) {
    fprintf(err, "tokend-admin copy: CHECK FAILED: the target's pepper "
                 "fingerprint is not the one copied\n");
    bad = 1;
  }
  if (!bad)
    tally_print(out, "checked: the target holds", &w.n, present);
  if (key == NULL) {
    fprintf(out, "audit chain not recomputed (no --pepper-file); run "
                 "`tokenctl audit --verify` once tokend runs on the target\n");
    return bad ? TOKEND_ESTORE : 0;
  }
  if ((rc = store_audit_key_set(dst, key)) != 0 ||
      (rc = store_audit_verify(dst, n->audit_head_hashed ? n->audit_head_id : 0,
                               n->audit_head_hashed ? n->audit_head : zero,
                               &check)) != 0) {
    fprintf(err,
            "tokend-admin copy: cannot check the target's audit chain: "
            "%s\n",
            store_errmsg(dst));
    return rc;
  }
  if (check.first_bad_id != 0) {
    fprintf(err,
            "tokend-admin copy: CHECK FAILED: the audit chain does not verify "
            "with this pepper: first bad row %lld: %s (rows are copied as "
            "they are: the source's chain is the same; check it with "
            "`tokenctl audit --verify` against tokend on the source)\n",
            (long long)check.first_bad_id, check.why);
    return TOKEND_ESTORE;
  }
  sodium_bin2hex(hex, sizeof(hex), check.head_hash, sizeof(check.head_hash));
  fprintf(out,
          "checked: the audit chain verifies with the pepper: %lld rows, "
          "head %lld:%s\n",
          (long long)check.rows_checked, (long long)check.head_id,
          check.head_id != 0 ? hex : "");
  return bad ? TOKEND_ESTORE : 0;
}

/* The copy itself, in dst's transaction: checks dst is empty (under its
 * write lock, so no writer slips in between), then imports. */
static int copy_into(store_t *src, store_t *dst, const char *dst_name,
                     const uint8_t *fp, copy_tally_t *n, FILE *err) {
  copy_walk_t w;
  const char *what;
  int rc;

  memset(&w, 0, sizeof(w));
  w.dst = dst;
  w.source = 1;
  if ((rc = store_begin(dst)) != 0) {
    fprintf(err,
            "tokend-admin copy: cannot start the target's transaction: "
            "%s\n",
            store_errmsg(dst));
    return rc;
  }
  if ((rc = target_empty(dst, dst_name, fp, err)) != 0)
    goto err_rollback;
  if (fp != NULL && (rc = store_fingerprint_set(dst, fp)) != 0) {
    fprintf(err,
            "tokend-admin copy: cannot record the pepper fingerprint: "
            "%s\n",
            store_errmsg(dst));
    goto err_rollback;
  }
  if ((rc = copy_rotation_meta(src, dst, err)) != 0)
    goto err_rollback;
  if ((rc = walk_store(src, &w, &what)) != 0 && w.why[0] != '\0') {
    fprintf(err, "tokend-admin copy: %s. Nothing was changed\n", w.why);
    goto err_rollback;
  }
  if (rc != 0) {
    fprintf(err,
            "tokend-admin copy: cannot %s the %s: %s. Nothing was "
            "changed\n",
            w.dst_failed ? "write into the target" : "read from the source",
            what, w.dst_failed ? store_errmsg(dst) : store_errmsg(src));
    goto err_rollback;
  }
  rc = store_commit(dst);
  if (rc == TOKEND_EINDOUBT) {
    fprintf(err,
            "tokend-admin copy: the target's commit was cut off and its "
            "outcome is unknown (%s). Run the same copy again: it is refused "
            "if this one landed, and copies if it did not\n",
            store_errmsg(dst));
    return rc;
  }
  if (rc != 0) {
    fprintf(err,
            "tokend-admin copy: the target refused the commit: %s. "
            "Nothing was changed\n",
            store_errmsg(dst));
    return rc;
  }
  *n = w.n;
  return 0;

err_rollback:
  store_rollback(dst);
  return rc;
}

/* Opens the source read-only. */
static int open_source(const char *url, const char *name, store_t **src,
                       FILE *err) {
  char why[1024];
  int rc = store_open_url(url, STORE_OPEN_READ_ONLY, src, why, sizeof(why));

  if (rc == TOKEND_ENOTFOUND)
    fprintf(err,
            "tokend-admin copy: the source %s does not exist (no store "
            "there). Nothing was copied\n",
            name);
  else if (rc != 0)
    fprintf(err, "tokend-admin copy: cannot open the source %s: %s\n", name,
            why);
  return rc;
}

/* Opens the target; with create, its schema is made if it has none. Without
 * create (--check-only) a target with no schema is empty: *dst is NULL. */
static int open_target(const char *url, const char *name, int create,
                       store_t **dst, FILE *err) {
  char why[1024];
  int rc = store_open_url(url, create ? STORE_OPEN_CREATE : 0, dst, why,
                          sizeof(why));

  if (rc == TOKEND_ENOTFOUND && !create)
    return 0;
  if (rc != 0)
    fprintf(err, "tokend-admin copy: cannot open the target %s: %s\n", name,
            why);
  return rc;
}

int admin_copy(int argc, char **argv, FILE *out, FILE *err) {
  uint8_t fp_given[STORE_FINGERPRINT_BYTES], fp_src[STORE_FINGERPRINT_BYTES];
  uint8_t key[STORE_AUDIT_KEY_BYTES];
  char from_name[512], to_name[512];
  const uint8_t *fp = NULL;
  store_t *src = NULL, *dst = NULL;
  copy_tally_t n;
  copy_walk_t w;
  copy_opts_t o;
  const char *what;
  int rc, present = 0, have_pepper = 0;
  int64_t src_rev;

  rc = parse_opts(argc, argv, &o, out, err);
  if (rc != 0) {
    if (rc < 0)
      fputs("Usage: tokend-admin copy --from URL --to URL [--pepper-file "
            "PATH] [--check-only]\nRun `tokend-admin copy --help` for the "
            "manual.\n",
            err);
    return rc > 0 ? ADMIN_EXIT_OK : ADMIN_EXIT_USAGE;
  }
  if (sodium_init() < 0) {
    fprintf(err, "tokend-admin copy: libsodium failed to initialise\n");
    return ADMIN_EXIT_FAILED;
  }
  store_url_redact(o.from, from_name, sizeof(from_name));
  store_url_redact(o.to, to_name, sizeof(to_name));
  if (o.pepper_path != NULL) {
    if ((rc = pepper_derive(o.pepper_path, fp_given, key, err)) != 0)
      goto out;
    have_pepper = 1;
  }
  if ((rc = open_source(o.from, from_name, &src, err)) != 0)
    goto out;
  if ((rc = store_snapshot_begin(src, &src_rev)) != 0) {
    fprintf(err,
            "tokend-admin copy: cannot take a snapshot of the source: "
            "%s\n",
            store_errmsg(src));
    goto out;
  }
  if ((rc = store_fingerprint_get(src, fp_src, &present)) != 0) {
    fprintf(err, "tokend-admin copy: cannot read the source: %s\n",
            store_errmsg(src));
    goto out;
  }
  if (present && have_pepper &&
      sodium_memcmp(fp_src, fp_given, STORE_FINGERPRINT_BYTES) != 0) {
    fprintf(err,
            "tokend-admin copy: the pepper file %s is not the pepper of the "
            "source %s (their fingerprints differ); give the pepper file of "
            "the source's tokend. Nothing was copied\n",
            o.pepper_path, from_name);
    rc = TOKEND_ECONFIG;
    goto out;
  }
  if (have_pepper &&
      (rc = pepper_open_sealed(src, o.pepper_path, key, err)) != 0)
    goto out;
  /* The source's own fingerprint; else the pepper the operator named. */
  fp = present ? fp_src : have_pepper ? fp_given : NULL;
  if ((rc = open_target(o.to, to_name, !o.check_only, &dst, err)) != 0)
    goto out;
  fprintf(out, "copying %s (read-only, one snapshot) into %s\n", from_name,
          to_name);
  if (o.check_only) {
    if (dst != NULL && (rc = target_empty(dst, to_name, fp, err)) != 0)
      goto out;
    memset(&w, 0, sizeof(w));
    w.source = 1;
    if ((rc = walk_store(src, &w, &what)) != 0) {
      if (w.why[0] != '\0')
        fprintf(err, "tokend-admin copy: %s\n", w.why);
      else
        fprintf(err,
                "tokend-admin copy: cannot read the %s of the source: %s\n",
                what, store_errmsg(src));
      goto out;
    }
    tally_print(out, "would copy", &w.n, fp != NULL);
    fprintf(out, "the target is empty; nothing was written (--check-only)\n");
    goto out;
  }
  if ((rc = copy_into(src, dst, to_name, fp, &n, err)) != 0)
    goto out;
  store_snapshot_end(src);
  tally_print(out, "copied in one transaction:", &n, fp != NULL);
  rc = target_check(dst, to_name, &n, fp, have_pepper ? key : NULL, out, err);

out:
  sodium_memzero(key, sizeof(key));
  store_close(dst);
  if (src != NULL)
    store_snapshot_end(src);
  store_close(src);
  return rc == 0 ? ADMIN_EXIT_OK : ADMIN_EXIT_FAILED;
}
