/* gRPC Length-Prefixed-Message framing: 1 flag byte (must be 0), a 4-byte
 * big-endian body length, then the body. Pure code: no I/O, no allocation. */
#ifndef TOKEND_FRAME_H
#define TOKEND_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "tokend_limits.h"

typedef enum {
  FRAME_OK = 0,        /* one whole frame is at the start of the buffer */
  FRAME_NEED_MORE,     /* the buffer holds only part of a frame: wait */
  FRAME_ERR_TOO_LARGE, /* declared length exceeds max_body: close */
  FRAME_ERR_BAD_FLAG   /* compressed flag is not 0: close */
} frame_result_t;

/* Looks for one frame at the start of buf[0..len).
 *
 * On FRAME_OK, *body points into buf (no copy; valid as long as buf is),
 * *body_len is its length and *consumed the bytes of header + body.
 * On FRAME_NEED_MORE, *consumed is the number of bytes the whole frame needs
 * once its header is complete (0 while the header itself is incomplete), so
 * a reader can size its buffer. On FRAME_ERR_TOO_LARGE, *body_len is the
 * length the peer declared. The length is checked against max_body before
 * any arithmetic, so a hostile length never causes an allocation or wrap. */
frame_result_t frame_decode(const uint8_t *buf, size_t len, uint32_t max_body,
                            const uint8_t **body, uint32_t *body_len,
                            size_t *consumed);

/* Writes the 5-byte header for a body of body_len bytes into out. */
void frame_encode_header(uint8_t out[TOKEND_FRAME_HEADER_BYTES],
                         uint32_t body_len);

#endif
