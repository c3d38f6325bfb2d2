/* Unit tests for common/token: token format, checksum, hash, hint and ids. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "token.h"

#define TAIL_CHARS (1 + TOKEND_TOKEN_BODY_CHARS + TOKEND_TOKEN_CHECKSUM_CHARS)
#define ROUND_TRIPS 2000

static const char base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* A token built independently of token.c (Python's zlib.crc32 and the
 * documented base62 encoding, most significant digit first). */
static const char known_token[] = "tkd_0123456789ABCDEFGHIJKLMNOPQRSTUV1QUYSM";

static int setup_sodium(void **state) { return sodium_init() < 0 ? -1 : 0; }

static int is_base62(char c) { return c != '\0' && strchr(base62, c) != NULL; }

static void generate_ok(const char *prefix, char out[TOKEND_TOKEN_BYTES]) {
  assert_int_equal(token_generate(prefix, out), 0);
}

/* Appends to head the checksum token.c would give it, so that a test can
 * build a token whose only fault is its shape. */
static void append_checksum(char *head, size_t head_len) {
  uint32_t crc = token_crc32((const uint8_t *)head, head_len);
  int i;

  for (i = TOKEND_TOKEN_CHECKSUM_CHARS - 1; i >= 0; i--) {
    head[head_len + (size_t)i] = base62[crc % 62];
    crc /= 62;
  }
  head[head_len + TOKEND_TOKEN_CHECKSUM_CHARS] = '\0';
}

static void test_token_known_token_accepted(void **state) {
  assert_int_equal(token_check(known_token, strlen(known_token)), 0);
}

static void test_token_generate_then_check_round_trip(void **state) {
  static const char *const prefixes[] = {"tkd", "a", "0123456789abcdef", "z9"};
  char tok[TOKEND_TOKEN_BYTES];
  size_t p, k, plen;
  int n;

  for (p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
    plen = strlen(prefixes[p]);
    for (n = 0; n < ROUND_TRIPS; n++) {
      generate_ok(prefixes[p], tok);
      assert_int_equal(strlen(tok), plen + TAIL_CHARS);
      assert_memory_equal(tok, prefixes[p], plen);
      assert_int_equal(tok[plen], '_');
      for (k = plen + 1; k < plen + TAIL_CHARS; k++)
        assert_true(is_base62(tok[k]));
      assert_int_equal(token_check(tok, strlen(tok)), 0);
    }
  }
}

/* The checksum is the CRC32 of "<prefix>_<body>" in 6 base62 digits. */
static void test_token_checksum_is_crc32_of_prefix_and_body(void **state) {
  char tok[TOKEND_TOKEN_BYTES];
  size_t len, k;
  uint64_t sum;
  int n;

  for (n = 0; n < 100; n++) {
    generate_ok("tkd", tok);
    len = strlen(tok);
    sum = 0;
    for (k = len - TOKEND_TOKEN_CHECKSUM_CHARS; k < len; k++)
      sum = sum * 62 + (uint64_t)(strchr(base62, tok[k]) - base62);
    assert_int_equal(sum, token_crc32((const uint8_t *)tok,
                                      len - TOKEND_TOKEN_CHECKSUM_CHARS));
  }
}

static void test_token_prefix_1_and_16_chars_accepted(void **state) {
  char tok[TOKEND_TOKEN_BYTES];

  assert_int_equal(token_prefix_check("a"), 0);
  assert_int_equal(token_prefix_check("0"), 0);
  assert_int_equal(token_prefix_check("0123456789abcdef"), 0);
  assert_int_equal(token_prefix_check(TOKEND_PREFIX_DEFAULT), 0);
  generate_ok("0123456789abcdef", tok);
  assert_int_equal(strlen(tok), TOKEND_TOKEN_MAX_CHARS);
  assert_int_equal(token_check(tok, strlen(tok)), 0);
}

static void test_token_prefix_empty_and_17_chars_rejected(void **state) {
  char tok[TOKEND_TOKEN_BYTES];

  assert_int_equal(token_prefix_check(""), TOKEND_EINVAL);
  assert_int_equal(token_prefix_check("0123456789abcdefg"), TOKEND_EINVAL);
  assert_int_equal(token_generate("", tok), TOKEND_EINVAL);
  assert_int_equal(token_generate("0123456789abcdefg", tok), TOKEND_EINVAL);
}

static void test_token_prefix_bad_chars_rejected(void **state) {
  static const char *const bad[] = {"Tkd",  "tkD",        "TKD",    "tk_d",
                                    "tkd_", "_tkd",       "tk-d",   "tk d",
                                    "tk.d", "tk\xc3\xa9", "tk\x7f", "tk\td"};
  char tok[TOKEND_TOKEN_BYTES];
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(token_prefix_check(bad[i]), TOKEND_EINVAL);
    assert_int_equal(token_generate(bad[i], tok), TOKEND_EINVAL);
  }
}

/* Replaces each character in turn by every other base62 character (and the
 * '_' by each of them): no such typo may pass token_check. */
static void check_every_mutation_rejected(const char *orig) {
  char tok[TOKEND_TOKEN_BYTES];
  size_t len = strlen(orig), pos, k;

  memcpy(tok, orig, len + 1);
  for (pos = 0; pos < len; pos++) {
    for (k = 0; k < sizeof(base62) - 1; k++) {
      if (base62[k] == orig[pos])
        continue;
      tok[pos] = base62[k];
      if (token_check(tok, len) != TOKEND_EINVAL)
        fail_msg("mutation accepted: %s (position %zu of %s)", tok, pos, orig);
    }
    tok[pos] = orig[pos];
  }
  /* The buffer is restored: the original still passes. */
  assert_int_equal(token_check(tok, len), 0);
}

static void test_token_every_single_char_mutation_rejected(void **state) {
  char tok[TOKEND_TOKEN_BYTES];
  int n;

  check_every_mutation_rejected(known_token);
  for (n = 0; n < 50; n++) {
    generate_ok("tkd", tok);
    check_every_mutation_rejected(tok);
    generate_ok("x", tok);
    check_every_mutation_rejected(tok);
    generate_ok("0123456789abcdef", tok);
    check_every_mutation_rejected(tok);
  }
}

static void test_token_truncated_or_extended_rejected(void **state) {
  static const char *const prefixes[] = {"tkd", "a", "0123456789abcdef"};
  char tok[TOKEND_TOKEN_BYTES], buf[TOKEND_TOKEN_BYTES + 2];
  size_t p, len, k;

  for (p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
    generate_ok(prefixes[p], tok);
    len = strlen(tok);
    /* One character short, at either end. */
    assert_int_equal(token_check(tok, len - 1), TOKEND_EINVAL);
    assert_int_equal(token_check(tok + 1, len - 1), TOKEND_EINVAL);
    /* One character more, at the end or in the body. */
    for (k = 0; k < sizeof(base62) - 1; k++) {
      memcpy(buf, tok, len);
      buf[len] = base62[k];
      assert_int_equal(token_check(buf, len + 1), TOKEND_EINVAL);
      memcpy(buf, tok, len - 1);
      buf[len - 1] = base62[k];
      buf[len] = tok[len - 1];
      assert_int_equal(token_check(buf, len + 1), TOKEND_EINVAL);
    }
    /* Body without checksum, and prefix alone. */
    assert_int_equal(token_check(tok, len - TOKEND_TOKEN_CHECKSUM_CHARS),
                     TOKEND_EINVAL);
    assert_int_equal(token_check(tok, strlen(prefixes[p]) + 1), TOKEND_EINVAL);
  }
}

static void test_token_check_rejects_malformed(void **state) {
  char tok[TOKEND_TOKEN_BYTES];
  size_t len = strlen(known_token);

  assert_int_equal(token_check("", 0), TOKEND_EINVAL);
  /* No prefix at all: "_" + body + checksum. */
  assert_int_equal(token_check(known_token + 3, len - 3), TOKEND_EINVAL);
  /* No separator. */
  assert_int_equal(token_check(known_token + 4, len - 4), TOKEND_EINVAL);
  /* Non-base62 characters and an embedded NUL. */
  memcpy(tok, known_token, len + 1);
  tok[10] = '-';
  assert_int_equal(token_check(tok, len), TOKEND_EINVAL);
  tok[10] = '+';
  assert_int_equal(token_check(tok, len), TOKEND_EINVAL);
  tok[10] = '\0';
  assert_int_equal(token_check(tok, len), TOKEND_EINVAL);
  tok[10] = known_token[10];
  tok[1] = 'K';
  assert_int_equal(token_check(tok, len), TOKEND_EINVAL);
}

/* A correct checksum does not excuse a bad shape. */
static void
test_token_check_rejects_bad_shape_with_valid_checksum(void **state) {
  static const char *const heads[] = {
      "tkd-0123456789ABCDEFGHIJKLMNOPQRSTUV", /* separator */
      "tkdx0123456789ABCDEFGHIJKLMNOPQRSTUV", /* separator */
      "Tkd_0123456789ABCDEFGHIJKLMNOPQRSTUV", /* uppercase prefix */
      "t_d_0123456789ABCDEFGHIJKLMNOPQRSTUV", /* '_' in prefix */
      "tkd_0123456789ABCDEFGHIJKLMNOPQRST+V", /* non-base62 body */
  };
  char tok[TOKEND_TOKEN_BYTES];
  size_t i, len;

  /* The helper agrees with token.c on a good head. */
  memcpy(tok, known_token, 36);
  append_checksum(tok, 36);
  assert_string_equal(tok, known_token);
  for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
    len = strlen(heads[i]);
    memcpy(tok, heads[i], len);
    append_checksum(tok, len);
    if (token_check(tok, strlen(tok)) != TOKEND_EINVAL)
      fail_msg("accepted %s", tok);
  }
}

/* token_check reads exactly len bytes: no NUL needed, trailing bytes ignored.
 */
static void test_token_check_uses_len_not_nul(void **state) {
  char buf[TOKEND_TOKEN_BYTES + 8];
  size_t len = strlen(known_token);

  memcpy(buf, known_token, len);
  memset(buf + len, 'Q', sizeof(buf) - len);
  assert_int_equal(token_check(buf, len), 0);
}

static void test_token_crc32_known_vectors(void **state) {
  assert_int_equal(token_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
  assert_int_equal(token_crc32((const uint8_t *)"", 0), 0);
  assert_int_equal(token_crc32((const uint8_t *)"a", 1), 0xE8B7BE43u);
  assert_int_equal(
      token_crc32(
          (const uint8_t *)"The quick brown fox jumps over the lazy dog", 43),
      0x414FA339u);
}

static void test_token_hash_known_vector(void **state) {
  /* Python: hashlib.blake2b(tok, key=bytes(range(32)), digest_size=32). The
   * stored hashes depend on this never changing. */
  static const uint8_t expect[TOKEND_HASH_BYTES] = {
      0x8c, 0xa9, 0xd5, 0x07, 0x03, 0xcb, 0x15, 0x69, 0x74, 0x59, 0x53,
      0xd0, 0x18, 0xef, 0xa9, 0x53, 0x75, 0x89, 0x95, 0x18, 0x9d, 0xfb,
      0xb5, 0x5e, 0xfe, 0xf0, 0x68, 0xf2, 0x45, 0xa1, 0xb4, 0xfa};
  uint8_t pepper[TOKEND_PEPPER_BYTES], out[TOKEND_HASH_BYTES];
  size_t i;

  for (i = 0; i < sizeof(pepper); i++)
    pepper[i] = (uint8_t)i;
  /* The hashed bytes: prefix and body of known_token. */
  token_hash(known_token, 36, pepper, out);
  assert_memory_equal(out, expect, sizeof(expect));
}

static void test_token_hash_deterministic(void **state) {
  uint8_t pepper[TOKEND_PEPPER_BYTES], a[TOKEND_HASH_BYTES],
      b[TOKEND_HASH_BYTES];
  char tok[TOKEND_TOKEN_BYTES];

  randombytes_buf(pepper, sizeof(pepper));
  generate_ok("tkd", tok);
  token_hash(tok, strlen(tok), pepper, a);
  token_hash(tok, strlen(tok), pepper, b);
  assert_memory_equal(a, b, sizeof(a));
}

static void test_token_hash_depends_on_pepper(void **state) {
  uint8_t pepper[TOKEND_PEPPER_BYTES], a[TOKEND_HASH_BYTES],
      b[TOKEND_HASH_BYTES];
  size_t i;

  randombytes_buf(pepper, sizeof(pepper));
  token_hash(known_token, strlen(known_token), pepper, a);
  /* Every byte of the pepper counts, down to one bit. */
  for (i = 0; i < sizeof(pepper); i++) {
    pepper[i] ^= 0x01;
    token_hash(known_token, strlen(known_token), pepper, b);
    assert_memory_not_equal(a, b, sizeof(a));
    pepper[i] ^= 0x01;
  }
  token_hash(known_token, strlen(known_token), pepper, b);
  assert_memory_equal(a, b, sizeof(a));
}

static void test_token_hash_depends_on_token(void **state) {
  uint8_t pepper[TOKEND_PEPPER_BYTES], a[TOKEND_HASH_BYTES],
      b[TOKEND_HASH_BYTES];
  char tok[TOKEND_TOKEN_BYTES];
  size_t len = strlen(known_token);

  randombytes_buf(pepper, sizeof(pepper));
  memcpy(tok, known_token, len + 1);
  token_hash(tok, len, pepper, a);
  tok[len - 1] ^= 0x01;
  token_hash(tok, len, pepper, b);
  assert_memory_not_equal(a, b, sizeof(a));
  /* Length counts too: a prefix of the token hashes differently. */
  token_hash(known_token, len - 1, pepper, b);
  assert_memory_not_equal(a, b, sizeof(a));
}

static void test_token_hint_shape(void **state) {
  char hint[TOKEND_HINT_BYTES];
  char tok[TOKEND_TOKEN_BYTES], expect[TOKEND_HINT_BYTES];
  size_t len;

  token_hint(known_token, strlen(known_token), hint);
  assert_string_equal(hint, "tkd_...UYSM");

  /* The longest prefix fits TOKEND_HINT_BYTES exactly. */
  generate_ok("0123456789abcdef", tok);
  len = strlen(tok);
  memset(hint, 'X', sizeof(hint));
  token_hint(tok, len, hint);
  snprintf(expect, sizeof(expect), "0123456789abcdef_...%s", tok + len - 4);
  assert_string_equal(hint, expect);
  assert_int_equal(strlen(hint), TOKEND_HINT_BYTES - 1);

  generate_ok("a", tok);
  len = strlen(tok);
  token_hint(tok, len, hint);
  snprintf(expect, sizeof(expect), "a_...%s", tok + len - 4);
  assert_string_equal(hint, expect);
}

static void test_token_id_generate_then_check(void **state) {
  char id[TOKEND_TOKEN_ID_BYTES], prev[TOKEND_TOKEN_ID_BYTES] = "";
  size_t k;
  int n;

  for (n = 0; n < ROUND_TRIPS; n++) {
    token_id_generate(id);
    assert_int_equal(strlen(id), TOKEND_TOKEN_ID_CHARS);
    assert_memory_equal(id, "tok_", 4);
    for (k = 4; k < TOKEND_TOKEN_ID_CHARS; k++)
      assert_true(is_base62(id[k]));
    assert_int_equal(token_id_check(id, strlen(id)), 0);
    assert_string_not_equal(id, prev);
    memcpy(prev, id, sizeof(id));
  }
}

static void test_token_id_check_rejects_malformed(void **state) {
  char id[TOKEND_TOKEN_ID_BYTES + 1];

  token_id_generate(id);
  assert_int_equal(token_id_check(id, TOKEND_TOKEN_ID_CHARS - 1),
                   TOKEND_EINVAL);
  id[TOKEND_TOKEN_ID_CHARS] = 'a';
  assert_int_equal(token_id_check(id, TOKEND_TOKEN_ID_CHARS + 1),
                   TOKEND_EINVAL);
  assert_int_equal(token_id_check("", 0), TOKEND_EINVAL);
  id[TOKEND_TOKEN_ID_CHARS] = '\0';
  id[0] = 'T';
  assert_int_equal(token_id_check(id, TOKEND_TOKEN_ID_CHARS), TOKEND_EINVAL);
  id[0] = 't';
  id[3] = '-';
  assert_int_equal(token_id_check(id, TOKEND_TOKEN_ID_CHARS), TOKEND_EINVAL);
  id[3] = '_';
  id[10] = '_';
  assert_int_equal(token_id_check(id, TOKEND_TOKEN_ID_CHARS), TOKEND_EINVAL);
  id[10] = '\0';
  assert_int_equal(token_id_check(id, TOKEND_TOKEN_ID_CHARS), TOKEND_EINVAL);
  /* A token is not an id. */
  assert_int_equal(token_id_check(known_token, strlen(known_token)),
                   TOKEND_EINVAL);
}

static void test_token_generate_gives_distinct_tokens(void **state) {
  enum { N = 256 };
  static char toks[N][TOKEND_TOKEN_BYTES];
  size_t i, j;

  for (i = 0; i < N; i++)
    generate_ok("tkd", toks[i]);
  for (i = 0; i < N; i++)
    for (j = i + 1; j < N; j++)
      assert_string_not_equal(toks[i], toks[j]);
}

/* Over 64000 body characters every base62 digit appears (about 1000 times
 * each if uniform); a generator stuck on a subset of the alphabet fails. */
static void test_token_body_uses_whole_alphabet(void **state) {
  unsigned count[62] = {0};
  char tok[TOKEND_TOKEN_BYTES];
  size_t k;
  int n;

  for (n = 0; n < ROUND_TRIPS; n++) {
    generate_ok("tkd", tok);
    for (k = 4; k < 4 + TOKEND_TOKEN_BODY_CHARS; k++)
      count[strchr(base62, tok[k]) - base62]++;
  }
  for (k = 0; k < 62; k++) {
    if (count[k] < 500 || count[k] > 1600)
      fail_msg("base62 digit '%c' drawn %u times of %d", base62[k], count[k],
               ROUND_TRIPS * TOKEND_TOKEN_BODY_CHARS);
  }
}

/* A token is found alone, at either end of a longer string, behind a
 * longer run of prefix characters, and with any prefix length. */
static void test_token_find_embedded_finds_token_anywhere(void **state) {
  char tok[TOKEND_TOKEN_BYTES], buf[256];
  const char *prefixes[] = {"a", "tkd", "0123456789abcdef"};
  size_t i, n;

  for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
    assert_int_equal(token_generate(prefixes[i], tok), 0);
    n = strlen(tok);
    assert_int_equal(token_find_embedded(tok, n), 1);
    n = (size_t)snprintf(buf, sizeof(buf), "%s@example.com", tok);
    assert_int_equal(token_find_embedded(buf, n), 1);
    n = (size_t)snprintf(buf, sizeof(buf), "uid:%s", tok);
    assert_int_equal(token_find_embedded(buf, n), 1);
    /* Glued to more prefix characters before and body characters after. */
    n = (size_t)snprintf(buf, sizeof(buf), "zz9%sXYZ", tok);
    assert_int_equal(token_find_embedded(buf, n), 1);
    n = (size_t)snprintf(buf, sizeof(buf), "domain.%s.example", tok);
    assert_int_equal(token_find_embedded(buf, n), 1);
  }
}

/* Near misses are not tokens: a bad checksum, a cut token, ordinary names
 * with underscores. */
static void test_token_find_embedded_ignores_near_misses(void **state) {
  char tok[TOKEND_TOKEN_BYTES];
  size_t n;
  const char *plain[] = {"example.com", "my_service.example",
                         "a_b_c_d",     "alice@example.com",
                         "uid:1000",    "",
                         "_",           "tok_KsI7RZcXHoZwNqX5K9Av"};
  size_t i;

  for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
    assert_int_equal(token_find_embedded(plain[i], strlen(plain[i])), 0);
  assert_int_equal(token_generate("tkd", tok), 0);
  n = strlen(tok);
  assert_int_equal(token_find_embedded(tok, n - 1), 0);
  assert_int_equal(token_find_embedded(tok + 1 + 3, n - 4), 0);
  tok[n - 1] = tok[n - 1] == 'a' ? 'b' : 'a';
  assert_int_equal(token_find_embedded(tok, n), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_token_known_token_accepted),
      cmocka_unit_test(test_token_generate_then_check_round_trip),
      cmocka_unit_test(test_token_checksum_is_crc32_of_prefix_and_body),
      cmocka_unit_test(test_token_prefix_1_and_16_chars_accepted),
      cmocka_unit_test(test_token_prefix_empty_and_17_chars_rejected),
      cmocka_unit_test(test_token_prefix_bad_chars_rejected),
      cmocka_unit_test(test_token_every_single_char_mutation_rejected),
      cmocka_unit_test(test_token_truncated_or_extended_rejected),
      cmocka_unit_test(test_token_check_rejects_malformed),
      cmocka_unit_test(test_token_check_rejects_bad_shape_with_valid_checksum),
      cmocka_unit_test(test_token_check_uses_len_not_nul),
      cmocka_unit_test(test_token_crc32_known_vectors),
      cmocka_unit_test(test_token_hash_known_vector),
      cmocka_unit_test(test_token_hash_deterministic),
      cmocka_unit_test(test_token_hash_depends_on_pepper),
      cmocka_unit_test(test_token_hash_depends_on_token),
      cmocka_unit_test(test_token_hint_shape),
      cmocka_unit_test(test_token_id_generate_then_check),
      cmocka_unit_test(test_token_id_check_rejects_malformed),
      cmocka_unit_test(test_token_generate_gives_distinct_tokens),
      cmocka_unit_test(test_token_body_uses_whole_alphabet),
      cmocka_unit_test(test_token_find_embedded_finds_token_anywhere),
      cmocka_unit_test(test_token_find_embedded_ignores_near_misses),
  };

  return cmocka_run_group_tests_name("token", tests, setup_sodium, NULL);
}
