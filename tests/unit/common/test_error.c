/* Unit tests for common/tokend_error: the error table and its gRPC mapping. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "tokend_error.h"

/* Every code in the table, read from the table itself. */
static const int all_codes[] = {
#define XX(name, value, grpc, msg) TOKEND_##name,
    TOKEND_ERRNO_MAP(XX)
#undef XX
};
#define NCODES (sizeof(all_codes) / sizeof(all_codes[0]))

static void test_error_codes_negative_and_distinct(void **state) {
  size_t i, j;

  assert_true(NCODES > 0);
  for (i = 0; i < NCODES; i++) {
    assert_true(all_codes[i] < 0);
    for (j = i + 1; j < NCODES; j++)
      if (all_codes[i] == all_codes[j])
        fail_msg("%s and %s share value %d", tokend_err_name(all_codes[i]),
                 tokend_err_name(all_codes[j]), all_codes[i]);
  }
}

/* Clients compare against these numbers: they must never change. */
static void test_error_values_are_stable(void **state) {
  assert_int_equal(TOKEND_OK, 0);
  assert_int_equal(TOKEND_EINVAL, -1);
  assert_int_equal(TOKEND_ENOTFOUND, -2);
  assert_int_equal(TOKEND_EMSGSIZE, -3);
  assert_int_equal(TOKEND_ENOMEM, -4);
  assert_int_equal(TOKEND_EPROTO, -5);
  assert_int_equal(TOKEND_EUNIMPL, -6);
  assert_int_equal(TOKEND_EINTERNAL, -7);
  assert_int_equal(TOKEND_EUNAVAIL, -8);
  assert_int_equal(TOKEND_ETIMEDOUT, -9);
  assert_int_equal(TOKEND_EPERM, -10);
  assert_int_equal(TOKEND_ECLOSED, -11);
  assert_int_equal(TOKEND_EIO, -12);
  assert_int_equal(TOKEND_EEXIST, -13);
  assert_int_equal(TOKEND_ECONNECT, -14);
  assert_int_equal(TOKEND_ECONFIG, -15);
  assert_int_equal(TOKEND_ESTORE, -16);
  assert_int_equal(TOKEND_EUNAUTH, -17);
  assert_int_equal(TOKEND_ESTATUS, -18);
}

static void test_error_every_code_has_message_and_name(void **state) {
  size_t i, j;

  for (i = 0; i < NCODES; i++) {
    const char *msg = tokend_strerror(all_codes[i]);
    const char *name = tokend_err_name(all_codes[i]);

    assert_non_null(msg);
    assert_non_null(name);
    assert_true(strlen(msg) > 0);
    assert_string_not_equal(msg, "unknown error");
    assert_string_not_equal(name, "TOKEND_UNKNOWN");
    assert_int_equal(strncmp(name, "TOKEND_E", 8), 0);
    for (j = 0; j < i; j++) {
      assert_string_not_equal(name, tokend_err_name(all_codes[j]));
      assert_string_not_equal(msg, tokend_strerror(all_codes[j]));
    }
  }
  assert_string_equal(tokend_err_name(TOKEND_ENOTFOUND), "TOKEND_ENOTFOUND");
  assert_string_equal(tokend_strerror(TOKEND_ENOTFOUND), "not found");
}

static void test_error_every_code_maps_to_grpc_error(void **state) {
  size_t i;

  for (i = 0; i < NCODES; i++) {
    int g = tokend_err_grpc(all_codes[i]);
    if (g < 1 || g > 16)
      fail_msg("%s maps to gRPC %d", tokend_err_name(all_codes[i]), g);
  }
  assert_int_equal(tokend_err_grpc(TOKEND_OK), TOKEND_GRPC_OK);
  assert_int_equal(tokend_err_grpc(TOKEND_EINVAL),
                   TOKEND_GRPC_INVALID_ARGUMENT);
  assert_int_equal(tokend_err_grpc(TOKEND_ENOTFOUND), TOKEND_GRPC_NOT_FOUND);
  assert_int_equal(tokend_err_grpc(TOKEND_EMSGSIZE),
                   TOKEND_GRPC_RESOURCE_EXHAUSTED);
  assert_int_equal(tokend_err_grpc(TOKEND_EUNAUTH),
                   TOKEND_GRPC_UNAUTHENTICATED);
}

static void test_error_unknown_code_reported_as_unknown(void **state) {
  static const int unknown[] = {1, 42, -1000, -99999};
  size_t i;

  for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    assert_string_equal(tokend_strerror(unknown[i]), "unknown error");
    assert_string_equal(tokend_err_name(unknown[i]), "TOKEND_UNKNOWN");
    assert_int_equal(tokend_err_grpc(unknown[i]), TOKEND_GRPC_UNKNOWN);
  }
  assert_string_equal(tokend_strerror(TOKEND_OK), "success");
  assert_string_equal(tokend_err_name(TOKEND_OK), "OK");
}

/* A status received from a peer comes back as the error the server sent. */
static void test_error_from_grpc_round_trips_main_codes(void **state) {
  static const int main_codes[] = {
      TOKEND_EINVAL,    TOKEND_ENOTFOUND, TOKEND_EMSGSIZE,  TOKEND_EUNIMPL,
      TOKEND_EINTERNAL, TOKEND_EUNAVAIL,  TOKEND_ETIMEDOUT, TOKEND_EPERM,
      TOKEND_EEXIST,    TOKEND_ECONFIG,   TOKEND_EUNAUTH,   TOKEND_ESTATUS};
  size_t i;

  assert_int_equal(tokend_err_from_grpc(TOKEND_GRPC_OK), TOKEND_OK);
  for (i = 0; i < sizeof(main_codes) / sizeof(main_codes[0]); i++)
    assert_int_equal(tokend_err_from_grpc(tokend_err_grpc(main_codes[i])),
                     main_codes[i]);
}

/* Codes that share a gRPC status come back as a code with the same status. */
static void test_error_from_grpc_keeps_status_of_every_code(void **state) {
  size_t i;

  for (i = 0; i < NCODES; i++) {
    int g = tokend_err_grpc(all_codes[i]);
    assert_int_equal(tokend_err_grpc(tokend_err_from_grpc(g)), g);
  }
}

/* Any non-OK status from a peer is an error in the table, never success. */
static void test_error_from_grpc_every_status_is_error(void **state) {
  int g, e;

  for (g = 1; g <= 16; g++) {
    e = tokend_err_from_grpc(g);
    assert_true(e < 0);
    assert_string_not_equal(tokend_strerror(e), "unknown error");
  }
  assert_int_equal(tokend_err_from_grpc(17), TOKEND_ESTATUS);
  assert_int_equal(tokend_err_from_grpc(-1), TOKEND_ESTATUS);
  assert_int_equal(tokend_err_from_grpc(TOKEND_GRPC_OUT_OF_RANGE),
                   TOKEND_EINVAL);
  assert_int_equal(tokend_err_from_grpc(TOKEND_GRPC_DATA_LOSS),
                   TOKEND_EINTERNAL);
}

static void test_error_grpc_names(void **state) {
  int g, h;

  assert_string_equal(tokend_grpc_name(5), "NOT_FOUND");
  assert_string_equal(tokend_grpc_name(0), "OK");
  assert_string_equal(tokend_grpc_name(3), "INVALID_ARGUMENT");
  assert_string_equal(tokend_grpc_name(16), "UNAUTHENTICATED");
  assert_string_equal(tokend_grpc_name(17), "UNKNOWN");
  assert_string_equal(tokend_grpc_name(-1), "UNKNOWN");
  for (g = 0; g <= 16; g++)
    for (h = 0; h < g; h++)
      assert_string_not_equal(tokend_grpc_name(g), tokend_grpc_name(h));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_codes_negative_and_distinct),
      cmocka_unit_test(test_error_values_are_stable),
      cmocka_unit_test(test_error_every_code_has_message_and_name),
      cmocka_unit_test(test_error_every_code_maps_to_grpc_error),
      cmocka_unit_test(test_error_unknown_code_reported_as_unknown),
      cmocka_unit_test(test_error_from_grpc_round_trips_main_codes),
      cmocka_unit_test(test_error_from_grpc_keeps_status_of_every_code),
      cmocka_unit_test(test_error_from_grpc_every_status_is_error),
      cmocka_unit_test(test_error_grpc_names),
  };

  return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
