/* Unit tests for server/http: forward-auth's pure parts (the token in a
 * header, the scope rule). The HTTP face itself runs against real nginx in
 * tests/integration/test_http.c. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "http/http.h"

static void assert_token(const char *header, const char *value,
                         const char *want) {
  const char *tok = NULL;
  size_t len = 0;

  if (want == NULL) {
    assert_int_equal(http_token_from_header(header, value, &tok, &len),
                     TOKEND_ENOTFOUND);
    return;
  }
  assert_int_equal(http_token_from_header(header, value, &tok, &len), 0);
  assert_int_equal(len, strlen(want));
  assert_memory_equal(tok, want, len);
}

/* Authorization needs the Bearer scheme (any case); another header's whole
 * value is the token; blanks around it are not part of it. */
static void test_http_token_from_header(void **state) {
  (void)state;
  assert_token("Authorization", "Bearer tk_abc", "tk_abc");
  assert_token("authorization", "bearer  tk_abc \t", "tk_abc");
  assert_token("Authorization", "BEARER\ttk_abc", "tk_abc");
  assert_token("Authorization", "Basic dXNlcjpwYXNz", NULL);
  assert_token("Authorization", "Bearertk_abc", NULL);
  assert_token("Authorization", "Bearer ", NULL);
  assert_token("Authorization", "", NULL);
  assert_token("Authorization", NULL, NULL);
  assert_token("X-Api-Key", " tk_abc ", "tk_abc");
  assert_token("X-Api-Key", "Bearer tk_abc", "Bearer tk_abc");
  assert_token("X-Api-Key", "  ", NULL);
}

static void test_http_has_scope(void **state) {
  rpc_verify_result_t r;

  (void)state;
  memset(&r, 0, sizeof(r));
  r.scopes[0] = "read";
  r.scopes[1] = "write";
  r.n_scopes = 2;
  assert_true(http_has_scope(&r, "read"));
  assert_true(http_has_scope(&r, "write"));
  assert_false(http_has_scope(&r, "wri"));
  assert_false(http_has_scope(&r, "admin"));
  assert_false(http_has_scope(&r, ""));
  r.n_scopes = 0;
  assert_false(http_has_scope(&r, "read"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_http_token_from_header),
      cmocka_unit_test(test_http_has_scope),
  };

  return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
