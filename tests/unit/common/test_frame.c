/* Unit tests for common/frame: the gRPC length-prefixed frame decoder. */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define MAX_BODY 64u

/* Writes a frame (flag 0, big-endian length, body) at out; returns its size. */
static size_t put_frame(uint8_t *out, const void *body, uint32_t body_len) {
  frame_encode_header(out, body_len);
  if (body_len > 0)
    memcpy(out + TOKEND_FRAME_HEADER_BYTES, body, body_len);
  return TOKEND_FRAME_HEADER_BYTES + (size_t)body_len;
}

/* Writes a raw 5-byte header with any flag and length. */
static void put_header(uint8_t out[TOKEND_FRAME_HEADER_BYTES], uint8_t flag,
                       uint32_t len) {
  out[0] = flag;
  out[1] = (uint8_t)(len >> 24);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
}

static void test_frame_whole_frame_ok(void **state) {
  static const char msg[] = "hello";
  uint8_t buf[32];
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed, n;

  n = put_frame(buf, msg, 5);
  assert_int_equal(n, 10);
  assert_int_equal(frame_decode(buf, n, MAX_BODY, &body, &body_len, &consumed),
                   FRAME_OK);
  assert_ptr_equal(body, buf + TOKEND_FRAME_HEADER_BYTES);
  assert_int_equal(body_len, 5);
  assert_int_equal(consumed, 10);
  assert_memory_equal(body, msg, 5);
}

/* Trailing bytes of the next frame must not change what is decoded. */
static void test_frame_trailing_bytes_not_consumed(void **state) {
  uint8_t buf[32];
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed, n;

  n = put_frame(buf, "abc", 3);
  buf[n] = 0;
  buf[n + 1] = 0;
  assert_int_equal(
      frame_decode(buf, n + 2, MAX_BODY, &body, &body_len, &consumed),
      FRAME_OK);
  assert_int_equal(body_len, 3);
  assert_int_equal(consumed, n);
  assert_memory_equal(body, "abc", 3);
}

static void test_frame_several_frames_in_one_buffer(void **state) {
  static const char *const bodies[] = {"first", "", "x",
                                       "a longer fourth body"};
  const size_t nbodies = sizeof(bodies) / sizeof(bodies[0]);
  uint8_t buf[128];
  size_t len = 0, off = 0, i, consumed;
  size_t starts[4];
  const uint8_t *body;
  uint32_t body_len;

  for (i = 0; i < nbodies; i++) {
    starts[i] = len;
    len += put_frame(buf + len, bodies[i], (uint32_t)strlen(bodies[i]));
  }
  /* The first two bytes of a fifth frame: must wait, not be misread. */
  buf[len++] = 0;
  buf[len++] = 0;

  /* The connection's loop: decode every complete frame, then stop. */
  for (i = 0; i < nbodies; i++) {
    assert_int_equal(off, starts[i]);
    assert_int_equal(frame_decode(buf + off, len - off, MAX_BODY, &body,
                                  &body_len, &consumed),
                     FRAME_OK);
    assert_int_equal(body_len, strlen(bodies[i]));
    assert_ptr_equal(body, buf + off + TOKEND_FRAME_HEADER_BYTES);
    assert_memory_equal(body, bodies[i], body_len);
    assert_int_equal(consumed, TOKEND_FRAME_HEADER_BYTES + body_len);
    off += consumed;
  }
  assert_int_equal(off, len - 2);
  assert_int_equal(
      frame_decode(buf + off, len - off, MAX_BODY, &body, &body_len, &consumed),
      FRAME_NEED_MORE);
  assert_int_equal(consumed, 0);
}

/* Every prefix of a frame is incomplete; only the whole frame decodes. */
static void test_frame_split_at_every_byte(void **state) {
  uint8_t buf[TOKEND_FRAME_HEADER_BYTES + 23];
  uint8_t msg[23];
  const uint8_t *body;
  uint32_t body_len;
  size_t total, n, consumed, i;

  for (i = 0; i < sizeof(msg); i++)
    msg[i] = (uint8_t)(0xA0 + i);
  total = put_frame(buf, msg, sizeof(msg));
  for (n = 0; n < total; n++) {
    /* Stale values must be overwritten. */
    body = buf;
    body_len = 0xDEAD;
    consumed = 0xBEEF;
    assert_int_equal(
        frame_decode(buf, n, MAX_BODY, &body, &body_len, &consumed),
        FRAME_NEED_MORE);
    assert_null(body);
    assert_int_equal(body_len, 0);
    assert_int_equal(consumed, n < TOKEND_FRAME_HEADER_BYTES ? 0 : total);
  }
  assert_int_equal(
      frame_decode(buf, total, MAX_BODY, &body, &body_len, &consumed),
      FRAME_OK);
  assert_int_equal(body_len, sizeof(msg));
  assert_int_equal(consumed, total);
  assert_memory_equal(body, msg, sizeof(msg));
}

/* Feeding a reader's buffer one byte at a time yields the frame exactly once,
 * when its last byte arrives. */
static void test_frame_byte_by_byte_stream(void **state) {
  uint8_t wire[64], rx[64];
  size_t wire_len = 0, rx_len = 0, consumed, frames = 0, i;
  const uint8_t *body;
  uint32_t body_len;

  wire_len += put_frame(wire + wire_len, "ab", 2);
  wire_len += put_frame(wire + wire_len, "", 0);
  wire_len += put_frame(wire + wire_len, "cdef", 4);
  for (i = 0; i < wire_len; i++) {
    frame_result_t r;

    rx[rx_len++] = wire[i];
    r = frame_decode(rx, rx_len, MAX_BODY, &body, &body_len, &consumed);
    if (r == FRAME_NEED_MORE)
      continue;
    assert_int_equal(r, FRAME_OK);
    assert_int_equal(consumed, rx_len);
    switch (frames++) {
    case 0:
      assert_int_equal(i, 6);
      assert_memory_equal(body, "ab", 2);
      break;
    case 1:
      assert_int_equal(i, 11);
      assert_int_equal(body_len, 0);
      break;
    default:
      assert_int_equal(i, 20);
      assert_memory_equal(body, "cdef", 4);
      break;
    }
    /* Trim once, as the connection does. */
    memmove(rx, rx + consumed, rx_len - consumed);
    rx_len -= consumed;
  }
  assert_int_equal(frames, 3);
  assert_int_equal(rx_len, 0);
}

static void test_frame_zero_length_body_ok(void **state) {
  uint8_t buf[TOKEND_FRAME_HEADER_BYTES];
  const uint8_t *body;
  uint32_t body_len = 99;
  size_t consumed;

  put_header(buf, 0, 0);
  assert_int_equal(
      frame_decode(buf, sizeof(buf), MAX_BODY, &body, &body_len, &consumed),
      FRAME_OK);
  assert_int_equal(body_len, 0);
  assert_int_equal(consumed, TOKEND_FRAME_HEADER_BYTES);
  assert_ptr_equal(body, buf + TOKEND_FRAME_HEADER_BYTES);
  /* A zero limit still admits an empty body. */
  assert_int_equal(
      frame_decode(buf, sizeof(buf), 0, &body, &body_len, &consumed), FRAME_OK);
}

static void test_frame_length_exactly_max_ok(void **state) {
  uint8_t buf[TOKEND_FRAME_HEADER_BYTES + MAX_BODY];
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed;

  memset(buf, 'z', sizeof(buf));
  put_header(buf, 0, MAX_BODY);
  assert_int_equal(
      frame_decode(buf, sizeof(buf), MAX_BODY, &body, &body_len, &consumed),
      FRAME_OK);
  assert_int_equal(body_len, MAX_BODY);
  assert_int_equal(consumed, sizeof(buf));
}

/* The default limit, with a real buffer of that size. */
static void test_frame_length_exactly_default_max_ok(void **state) {
  const uint32_t max = TOKEND_MAX_FRAME_BYTES_DEFAULT;
  const size_t total = TOKEND_FRAME_HEADER_BYTES + (size_t)max;
  uint8_t *buf = calloc(1, total);
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed;

  assert_non_null(buf);
  put_header(buf, 0, max);
  assert_int_equal(
      frame_decode(buf, total - 1, max, &body, &body_len, &consumed),
      FRAME_NEED_MORE);
  assert_int_equal(consumed, total);
  assert_int_equal(frame_decode(buf, total, max, &body, &body_len, &consumed),
                   FRAME_OK);
  assert_int_equal(body_len, max);
  assert_int_equal(consumed, total);
  free(buf);
}

/* Rejected from the header alone: no body bytes are needed to know. */
static void test_frame_length_max_plus_one_too_large(void **state) {
  uint8_t buf[TOKEND_FRAME_HEADER_BYTES];
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed;

  put_header(buf, 0, MAX_BODY + 1);
  assert_int_equal(
      frame_decode(buf, sizeof(buf), MAX_BODY, &body, &body_len, &consumed),
      FRAME_ERR_TOO_LARGE);
  assert_int_equal(body_len, MAX_BODY + 1);
  assert_null(body);
  assert_int_equal(consumed, 0);

  put_header(buf, 0, TOKEND_MAX_FRAME_BYTES_DEFAULT + 1);
  assert_int_equal(frame_decode(buf, sizeof(buf),
                                TOKEND_MAX_FRAME_BYTES_DEFAULT, &body,
                                &body_len, &consumed),
                   FRAME_ERR_TOO_LARGE);
  assert_int_equal(body_len, TOKEND_MAX_FRAME_BYTES_DEFAULT + 1);
}

static void test_frame_length_all_ones_too_large(void **state) {
  uint8_t buf[TOKEND_FRAME_HEADER_BYTES];
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed;

  put_header(buf, 0, 0xFFFFFFFFu);
  assert_int_equal(frame_decode(buf, sizeof(buf), TOKEND_MAX_FRAME_BYTES_LIMIT,
                                &body, &body_len, &consumed),
                   FRAME_ERR_TOO_LARGE);
  assert_int_equal(body_len, 0xFFFFFFFFu);
  assert_int_equal(consumed, 0);
}

static void test_frame_bad_flag_rejected(void **state) {
  static const uint8_t flags[] = {0x01, 0x02, 0x80, 0xFF};
  uint8_t buf[TOKEND_FRAME_HEADER_BYTES + 3];
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed, i;

  for (i = 0; i < sizeof(flags); i++) {
    put_header(buf, flags[i], 3);
    memcpy(buf + TOKEND_FRAME_HEADER_BYTES, "abc", 3);
    assert_int_equal(
        frame_decode(buf, sizeof(buf), MAX_BODY, &body, &body_len, &consumed),
        FRAME_ERR_BAD_FLAG);
    assert_null(body);
    assert_int_equal(consumed, 0);
  }
}

/* A compressed-flag byte is judged before the rest of the header arrives. */
static void test_frame_bad_flag_rejected_from_first_byte(void **state) {
  uint8_t buf[1] = {0x01};
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed;

  assert_int_equal(frame_decode(buf, 1, MAX_BODY, &body, &body_len, &consumed),
                   FRAME_ERR_BAD_FLAG);
}

/* A frame that is wrong on two counts is still closed, as a bad flag. */
static void test_frame_bad_flag_checked_before_length(void **state) {
  uint8_t buf[TOKEND_FRAME_HEADER_BYTES];
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed;

  put_header(buf, 0x01, 0xFFFFFFFFu);
  assert_int_equal(
      frame_decode(buf, sizeof(buf), MAX_BODY, &body, &body_len, &consumed),
      FRAME_ERR_BAD_FLAG);
}

/* Once the header is complete, NEED_MORE tells the reader the full size. */
static void test_frame_need_more_reports_total_size(void **state) {
  uint8_t buf[TOKEND_FRAME_HEADER_BYTES + 10];
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed;

  memset(buf, 0, sizeof(buf));
  put_header(buf, 0, 1000);
  assert_int_equal(frame_decode(buf, TOKEND_FRAME_HEADER_BYTES, 1000, &body,
                                &body_len, &consumed),
                   FRAME_NEED_MORE);
  assert_int_equal(consumed, TOKEND_FRAME_HEADER_BYTES + 1000);
  assert_int_equal(
      frame_decode(buf, sizeof(buf), 1000, &body, &body_len, &consumed),
      FRAME_NEED_MORE);
  assert_int_equal(consumed, TOKEND_FRAME_HEADER_BYTES + 1000);
  assert_int_equal(frame_decode(buf, TOKEND_FRAME_HEADER_BYTES - 1, 1000, &body,
                                &body_len, &consumed),
                   FRAME_NEED_MORE);
  assert_int_equal(consumed, 0);
}

static void test_frame_encode_header_round_trip(void **state) {
  static const uint32_t lens[] = {0,     1,      0x7F,    0x80,        0xFF,
                                  0x100, 0xFFFF, 0x10000, MAX_BODY - 1};
  uint8_t hdr[TOKEND_FRAME_HEADER_BYTES];
  uint8_t buf[TOKEND_FRAME_HEADER_BYTES + MAX_BODY];
  const uint8_t *body;
  uint32_t body_len;
  size_t consumed, i;

  /* Big-endian, flag 0. */
  frame_encode_header(hdr, 0x01020304u);
  assert_memory_equal(hdr, "\x00\x01\x02\x03\x04", TOKEND_FRAME_HEADER_BYTES);
  frame_encode_header(hdr, 0xFFFFFFFFu);
  assert_memory_equal(hdr, "\x00\xFF\xFF\xFF\xFF", TOKEND_FRAME_HEADER_BYTES);

  for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    frame_encode_header(hdr, lens[i]);
    assert_int_equal(hdr[0], 0);
    /* The header alone decodes to the declared length... */
    assert_int_equal(
        frame_decode(hdr, sizeof(hdr), 0xFFFFFFu, &body, &body_len, &consumed),
        lens[i] == 0 ? FRAME_OK : FRAME_NEED_MORE);
    assert_int_equal(consumed, TOKEND_FRAME_HEADER_BYTES + (size_t)lens[i]);
    if (lens[i] > MAX_BODY)
      continue;
    /* ...and with its body, to the frame. */
    memset(buf, 0x5A, sizeof(buf));
    frame_encode_header(buf, lens[i]);
    assert_int_equal(frame_decode(buf, TOKEND_FRAME_HEADER_BYTES + lens[i],
                                  MAX_BODY, &body, &body_len, &consumed),
                     FRAME_OK);
    assert_int_equal(body_len, lens[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_frame_whole_frame_ok),
      cmocka_unit_test(test_frame_trailing_bytes_not_consumed),
      cmocka_unit_test(test_frame_several_frames_in_one_buffer),
      cmocka_unit_test(test_frame_split_at_every_byte),
      cmocka_unit_test(test_frame_byte_by_byte_stream),
      cmocka_unit_test(test_frame_zero_length_body_ok),
      cmocka_unit_test(test_frame_length_exactly_max_ok),
      cmocka_unit_test(test_frame_length_exactly_default_max_ok),
      cmocka_unit_test(test_frame_length_max_plus_one_too_large),
      cmocka_unit_test(test_frame_length_all_ones_too_large),
      cmocka_unit_test(test_frame_bad_flag_rejected),
      cmocka_unit_test(test_frame_bad_flag_rejected_from_first_byte),
      cmocka_unit_test(test_frame_bad_flag_checked_before_length),
      cmocka_unit_test(test_frame_need_more_reports_total_size),
      cmocka_unit_test(test_frame_encode_header_round_trip),
  };

  return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
