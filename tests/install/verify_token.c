/* verify_token: a program outside tokend's tree that verifies one token
 * through an installed libtokend-client, as a sibling service would. The
 * install tests build it against an installed prefix, once with pkg-config
 * and once with find_package(tokend-client), and scripts/test-deb.sh
 * against the Debian packages.
 *
 *   verify_token [SOCKET] < TOKEN
 *
 * SOCKET absent or "": the library's default ($TOKEND_SOCKET, else the
 * socket tokend was built with). Prints "valid DOMAIN" or "invalid
 * REASON". Exit 0 valid, 1 invalid, 2 error. */
#include <stdio.h>
#include <string.h>
#include <tokend/client.h>

int main(int argc, char **argv) {
  char token[256];
  char why[TOKEND_CONNECT_ERRMSG_BYTES];
  const char *socket_path = argc > 1 && argv[1][0] != '\0' ? argv[1] : NULL;
  tokend_client_t *client = NULL;
  tokend_verify_result_t res;
  int rc, status = 2;

  if (fgets(token, sizeof(token), stdin) == NULL) {
    fprintf(stderr, "verify_token: no token on standard input\n");
    return 2;
  }
  token[strcspn(token, "\r\n")] = '\0';
  rc = tokend_client_open(socket_path, 10000, 0, &client, why, sizeof(why));
  if (rc != 0) {
    fprintf(stderr, "verify_token: %s\n", why);
    goto cleanup;
  }
  rc = tokend_client_verify(client, token, &res);
  if (rc != 0) {
    fprintf(stderr, "verify_token: %s: %s\n", tokend_err_name(rc),
            tokend_client_errmsg(client));
    goto cleanup;
  }
  if (res.valid) {
    printf("valid %s\n", res.domain);
    status = 0;
  } else {
    printf("invalid %s\n", tokend_verify_reason_name(res.reason));
    status = 1;
  }
cleanup:
  memset(token, 0, sizeof(token));
  tokend_client_close(client);
  return status;
}
