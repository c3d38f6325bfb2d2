/* The installed headers (client/include/tokend/) against the tables tokend
 * itself is built from (common/): the same error codes, names, messages
 * and gRPC statuses, the same limits, and none of the daemon's internals.
 * Both tables are one copy (common/tokend_error.h and tokend_limits.h
 * include the public headers); this proves the public headers alone, as
 * an installed program sees them, carry them all and nothing internal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "public_headers.h"
#include "tokend_error.h"
#include "tokend_limits.h"

static const public_entry_t internal_errors[] = {
#define XX(name, value, grpc, msg)                                             \
  {#name, TOKEND_##name, TOKEND_GRPC_##grpc, msg},
    TOKEND_ERRNO_MAP(XX)
#undef XX
        {NULL, 0, 0, NULL}};

static const public_entry_t internal_grpc[] = {
#define XX(name, num) {#name, TOKEND_GRPC_##name, num, NULL},
    TOKEND_GRPC_STATUS_MAP(XX)
#undef XX
        {NULL, 0, 0, NULL}};

static const public_entry_t internal_limits[] = {
#define X(name) {#name, (long)(TOKEND_##name), 0, NULL},
    PUBLIC_LIMITS(X)
#undef X
        {NULL, 0, 0, NULL}};

static void assert_same_table(const public_entry_t *pub,
                              const public_entry_t *in) {
  size_t i;

  for (i = 0; pub[i].name != NULL && in[i].name != NULL; i++) {
    assert_string_equal(pub[i].name, in[i].name);
    if (pub[i].value != in[i].value || pub[i].grpc != in[i].grpc)
      fail_msg("%s: public %ld (gRPC %ld), tokend %ld (gRPC %ld)", pub[i].name,
               pub[i].value, pub[i].grpc, in[i].value, in[i].grpc);
    if (pub[i].message != NULL || in[i].message != NULL)
      assert_string_equal(pub[i].message, in[i].message);
  }
  /* Neither table has an entry the other lacks. */
  assert_null(pub[i].name);
  assert_null(in[i].name);
}

static void test_error_codes_match_tokend(void **state) {
  (void)state;
  assert_same_table(public_errors, internal_errors);
}

static void test_grpc_statuses_match_tokend(void **state) {
  (void)state;
  assert_same_table(public_grpc, internal_grpc);
}

static void test_limits_match_tokend(void **state) {
  (void)state;
  assert_same_table(public_limits, internal_limits);
}

static void test_no_daemon_internals_installed(void **state) {
  size_t i;

  (void)state;
  for (i = 0; public_leaks[i].name != NULL; i++)
    if (public_leaks[i].value != 0)
      fail_msg("<tokend/client.h> defines TOKEND_%s, which is not API",
               public_leaks[i].name);
  assert_true(i > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_codes_match_tokend),
      cmocka_unit_test(test_grpc_statuses_match_tokend),
      cmocka_unit_test(test_limits_match_tokend),
      cmocka_unit_test(test_no_daemon_internals_installed),
  };
  return cmocka_run_group_tests_name("public_headers", tests, NULL, NULL);
}
