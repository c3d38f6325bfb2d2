/* Source compatibility: programs written against the first releases
 * include <tokend_client.h>; the API now lives in <tokend/client.h>. */
#ifndef TOKEND_CLIENT_COMPAT_H
#define TOKEND_CLIENT_COMPAT_H

#include <tokend/client.h>

#endif
