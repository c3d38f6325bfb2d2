/* What the blocking client (client.c) and the libuv client (uv.c) share:
 * turning public parameters into requests and responses into public
 * results. Internal to libtokend-client: the names carry no tokend_ prefix,
 * so the symbol map keeps them out of the library's API. */
#ifndef TOKEND_CLIENTLIB_H
#define TOKEND_CLIENTLIB_H

#include <tokend/client.h>

#include "tokend.pb-c.h"

/* Fills *issue from params (its strings point into params: no copy).
 * Returns 0, or TOKEND_EINVAL with *why a static sentence. */
int clientlib_issue_request(const tokend_issue_params_t *params,
                            Tokend__V1__IssueRequest *issue, const char **why);

/* Copies an IssueResponse into *out (which must be zeroed). Returns 0, or
 * TOKEND_EPROTO with *why a static sentence and *out wiped. */
int clientlib_issued(const Tokend__V1__IssueResponse *res, tokend_issued_t *out,
                     const char **why);

/* Copies a VerifyResponse into *out (which must be zeroed). Returns 0, or
 * TOKEND_EPROTO with *why a static sentence and *out zeroed. */
int clientlib_verify_result(const Tokend__V1__VerifyResponse *res,
                            tokend_verify_result_t *out, const char **why);

/* Copies a TokenInfo (Lookup's, Edit's, ...) into *out. Returns 0, or
 * TOKEND_EPROTO with *why a static sentence (src missing, too long or
 * malformed). */
int clientlib_token_info(const Tokend__V1__TokenInfo *src,
                         tokend_token_info_t *out, const char **why);

/* 1 if a second copy of a request of method m cannot change anything. */
int clientlib_method_idempotent(Tokend__V1__Request__MethodCase m);

#endif
