#include "tokend_error.h"

const char *tokend_strerror(int err) {
  switch (err) {
  case TOKEND_OK:
    return "success";
#define XX(name, value, grpc, msg)                                             \
  case TOKEND_##name:                                                          \
    return msg;
    TOKEND_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown error";
}

const char *tokend_err_name(int err) {
  switch (err) {
  case TOKEND_OK:
    return "OK";
#define XX(name, value, grpc, msg)                                             \
  case TOKEND_##name:                                                          \
    return "TOKEND_" #name;
    TOKEND_ERRNO_MAP(XX)
#undef XX
  }
  return "TOKEND_UNKNOWN";
}

int tokend_err_grpc(int err) {
  switch (err) {
  case TOKEND_OK:
    return TOKEND_GRPC_OK;
#define XX(name, value, grpc, msg)                                             \
  case TOKEND_##name:                                                          \
    return TOKEND_GRPC_##grpc;
    TOKEND_ERRNO_MAP(XX)
#undef XX
  }
  return TOKEND_GRPC_UNKNOWN;
}

int tokend_err_from_grpc(int grpc_code) {
  switch (grpc_code) {
  case TOKEND_GRPC_OK:
    return TOKEND_OK;
  case TOKEND_GRPC_INVALID_ARGUMENT:
  case TOKEND_GRPC_OUT_OF_RANGE:
    return TOKEND_EINVAL;
  case TOKEND_GRPC_NOT_FOUND:
    return TOKEND_ENOTFOUND;
  case TOKEND_GRPC_ALREADY_EXISTS:
    return TOKEND_EEXIST;
  case TOKEND_GRPC_PERMISSION_DENIED:
    return TOKEND_EPERM;
  case TOKEND_GRPC_RESOURCE_EXHAUSTED:
    return TOKEND_EMSGSIZE;
  case TOKEND_GRPC_UNIMPLEMENTED:
    return TOKEND_EUNIMPL;
  case TOKEND_GRPC_INTERNAL:
  case TOKEND_GRPC_DATA_LOSS:
    return TOKEND_EINTERNAL;
  case TOKEND_GRPC_UNAVAILABLE:
    return TOKEND_EUNAVAIL;
  case TOKEND_GRPC_DEADLINE_EXCEEDED:
    return TOKEND_ETIMEDOUT;
  case TOKEND_GRPC_UNAUTHENTICATED:
    return TOKEND_EUNAUTH;
  case TOKEND_GRPC_FAILED_PRECONDITION:
    return TOKEND_ECONFIG;
  default:
    return TOKEND_ESTATUS;
  }
}

const char *tokend_grpc_name(int grpc_code) {
  switch (grpc_code) {
#define XX(name, num)                                                          \
  case num:                                                                    \
    return #name;
    TOKEND_GRPC_STATUS_MAP(XX)
#undef XX
  }
  return "UNKNOWN";
}
