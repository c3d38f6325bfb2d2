/* tokend error codes: one table for the server, the client library and the
 * CLI. The table is public API (a client compares against the codes), so it
 * lives in the installed header client/include/tokend/error.h, which this
 * includes; common/ code includes this name. */
#ifndef TOKEND_COMMON_ERROR_H
#define TOKEND_COMMON_ERROR_H

#include "tokend/error.h"

#endif
