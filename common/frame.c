#include "frame.h"

frame_result_t frame_decode(const uint8_t *buf, size_t len, uint32_t max_body,
                            const uint8_t **body, uint32_t *body_len,
                            size_t *consumed) {
  uint32_t n;

  *body = NULL;
  *body_len = 0;
  *consumed = 0;
  /* The flag byte can be judged alone, before the rest of the header. */
  if (len >= 1 && buf[0] != 0)
    return FRAME_ERR_BAD_FLAG;
  if (len < TOKEND_FRAME_HEADER_BYTES)
    return FRAME_NEED_MORE;
  n = ((uint32_t)buf[1] << 24) | ((uint32_t)buf[2] << 16) |
      ((uint32_t)buf[3] << 8) | (uint32_t)buf[4];
  if (n > max_body) {
    *body_len = n;
    return FRAME_ERR_TOO_LARGE;
  }
  /* n <= max_body <= TOKEND_MAX_FRAME_BYTES_LIMIT: the sum cannot wrap. */
  if (len - TOKEND_FRAME_HEADER_BYTES < n) {
    *consumed = TOKEND_FRAME_HEADER_BYTES + (size_t)n;
    return FRAME_NEED_MORE;
  }
  *body = buf + TOKEND_FRAME_HEADER_BYTES;
  *body_len = n;
  *consumed = TOKEND_FRAME_HEADER_BYTES + (size_t)n;
  return FRAME_OK;
}

void frame_encode_header(uint8_t out[TOKEND_FRAME_HEADER_BYTES],
                         uint32_t body_len) {
  out[0] = 0;
  out[1] = (uint8_t)(body_len >> 24);
  out[2] = (uint8_t)(body_len >> 16);
  out[3] = (uint8_t)(body_len >> 8);
  out[4] = (uint8_t)body_len;
}
