/* tokend_uv_t: tokend calls on the caller's libuv loop (<tokend/uv.h>).
 *
 * The client is a small state machine: IDLE (no connection) -> CONNECTING
 * -> OPEN, and back to IDLE when the connection dies. Calls wait in one
 * list in the order they were made; each remembers the generation of the
 * connection it was written on (0: not written yet). A uv_prepare handle
 * writes every unwritten call in one write just before the loop waits, so
 * the calls of one turn are pipelined. A connection is its own allocation
 * (uv_conn_t), freed in its close callback: a new one can be made while
 * the old one is still closing.
 *
 * Deadlines (tokend_uv_set_timeout): each call made while a timeout is set
 * carries uv_now() + timeout; one timer, due at the earliest deadline,
 * fails the calls past theirs. A call that was written leaves a record of
 * itself (its call_id on that connection) in `forgotten`, so that its late
 * answer is read and dropped instead of looking like an answer to a call
 * never made (which would break the connection). */
#include <tokend/uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <sodium.h>

#include "clientlib.h"
#include "frame.h"
#include "tokend.pb-c.h"
#include "tokend_limits.h"
#include "verify_wire.h"

#define UV_CONTAINER_OF(ptr, type, member)                                     \
  ((type *)((char *)(ptr)-offsetof(type, member)))

/* As the blocking client (client.c): 5 ms doubling to 250 ms. */
#define UVC_BACKOFF_MIN_MS 5
#define UVC_BACKOFF_MAX_MS 250
/* What each read asks the loop for. */
#define UVC_READ_CHUNK 65536

typedef enum { UVC_IDLE, UVC_CONNECTING, UVC_OPEN } uvc_state_t;

typedef enum { UVC_VERIFY, UVC_ISSUE, UVC_REVOKE, UVC_LOOKUP } uvc_kind_t;

typedef struct uvc_call_s {
  struct uvc_call_s *prev, *next;
  uint64_t call_id;
  uvc_kind_t kind;
  int idempotent;
  int resent;        /* times sent again after a connection died */
  uint64_t sent_on;  /* generation of the connection written on; 0: not */
  uint64_t deadline; /* uv_now() ms past which it fails; 0: none */
  uint8_t *frame;    /* header + body; wiped when freed (it may hold a token) */
  size_t frame_len;
  union {
    tokend_uv_verify_cb verify;
    tokend_uv_issue_cb issue;
    tokend_uv_revoke_cb revoke;
    tokend_uv_lookup_cb lookup;
  } cb;
  void *data;
} uvc_call_t;

typedef struct {
  uvc_call_t *head, *tail;
} uvc_list_t;

typedef struct {
  uv_pipe_t pipe;
  uv_connect_t connect_req;
  tokend_uv_t *owner; /* NULL once the client let go of it (closing) */
  uint64_t gen;
  int answered; /* tokend answered anything on it */
  uint8_t *rbuf;
  size_t rlen, rcap;
} uvc_conn_t;

/* One write of the frames of every call written in one turn; owns a copy
 * of them, wiped when the write is over. */
typedef struct {
  uv_write_t req;
  size_t len;
  uint8_t bytes[];
} uvc_write_t;

struct tokend_uv_s {
  uv_loop_t *loop;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  int reconnect_wait_ms;
  uv_prepare_t flush;
  uv_timer_t backoff;
  uv_timer_t deadline; /* due at the earliest call's deadline */
  int handles_open;    /* flush, backoff, deadline: until their close cbs */
  int timeout_ms;      /* a new call's deadline; 0: none */
  int closing;
  int broken; /* a connection died with reconnecting off */
  tokend_uv_close_cb close_cb;
  void *close_data;
  uvc_state_t state;
  uvc_conn_t *conn; /* NULL in UVC_IDLE */
  uint64_t gen, last_call_id;
  int backoff_ms;
  uint64_t reconnect_until; /* uv_now() bound while waiting; 0: none */
  uvc_list_t calls;
  /* Calls that timed out after being written: call_id and sent_on only,
   * until their answers come or their connection dies. */
  uvc_list_t forgotten;
  size_t n_calls, n_unsent;
  char msg[TOKEND_STATUS_MESSAGE_BYTES]; /* for the callback being run */
};

static void uvc_start_connect(tokend_uv_t *c);

/* ---- calls ---- */

static void uvc_list_append(uvc_list_t *l, uvc_call_t *call) {
  call->next = NULL;
  call->prev = l->tail;
  if (l->tail != NULL)
    l->tail->next = call;
  else
    l->head = call;
  l->tail = call;
}

static void uvc_list_remove(uvc_list_t *l, uvc_call_t *call) {
  if (call->prev != NULL)
    call->prev->next = call->next;
  else
    l->head = call->next;
  if (call->next != NULL)
    call->next->prev = call->prev;
  else
    l->tail = call->prev;
  call->prev = call->next = NULL;
}

static void uvc_call_free(uvc_call_t *call) {
  if (call->frame != NULL) {
    sodium_memzero(call->frame, call->frame_len);
    free(call->frame);
  }
  free(call);
}

/* Frees the records of calls forgotten (their connection is gone). */
static void uvc_forget_all(tokend_uv_t *c) {
  uvc_call_t *call;

  while ((call = c->forgotten.head) != NULL) {
    uvc_list_remove(&c->forgotten, call);
    uvc_call_free(call);
  }
}

/* Takes call out of the client's list. */
static void uvc_detach(tokend_uv_t *c, uvc_call_t *call) {
  uvc_list_remove(&c->calls, call);
  c->n_calls--;
  if (call->sent_on == 0)
    c->n_unsent--;
}

/* Runs a detached call's callback with a failure, then frees it. */
static void uvc_fail(tokend_uv_t *c, uvc_call_t *call, int err,
                     const char *msg) {
  snprintf(c->msg, sizeof(c->msg), "%s", msg);
  switch (call->kind) {
  case UVC_VERIFY:
    call->cb.verify(c, err, c->msg, NULL, call->data);
    break;
  case UVC_ISSUE:
    call->cb.issue(c, err, c->msg, NULL, call->data);
    break;
  case UVC_REVOKE:
    call->cb.revoke(c, err, c->msg, 0, 0, call->data);
    break;
  case UVC_LOOKUP:
    call->cb.lookup(c, err, c->msg, NULL, call->data);
    break;
  }
  uvc_call_free(call);
}

/* Fails every call in l (already detached from the client). A callback
 * may make new calls or close the client: they never touch l. */
static void uvc_fail_list(tokend_uv_t *c, uvc_list_t *l, int err,
                          const char *msg) {
  uvc_call_t *call;

  while ((call = l->head) != NULL) {
    uvc_list_remove(l, call);
    uvc_fail(c, call, err, msg);
  }
}

/* Detaches into *out the calls not yet written. */
static void uvc_take_unsent(tokend_uv_t *c, uvc_list_t *out) {
  uvc_call_t *call, *next;

  for (call = c->calls.head; call != NULL; call = next) {
    next = call->next;
    if (call->sent_on == 0) {
      uvc_detach(c, call);
      uvc_list_append(out, call);
    }
  }
}

/* The pipe keeps the loop alive only while a call waits for it. */
static void uvc_update_ref(tokend_uv_t *c) {
  if (c->conn == NULL)
    return;
  if (c->n_calls > 0)
    uv_ref((uv_handle_t *)&c->conn->pipe);
  else
    uv_unref((uv_handle_t *)&c->conn->pipe);
}

/* ---- the connection ---- */

/* How many times an idempotent call is sent again: once after a
 * connection that answered something died (so tokend may have read it and
 * died of it: no more than once), and up to this many times in all while
 * connections are reset before answering anything (made to a tokend that
 * was dying: a SIGKILLed tokend resets those in its backlog). */
#define UVC_MAX_RESENDS 3

static void uvc_on_conn_closed(uv_handle_t *h) {
  uvc_conn_t *conn = UV_CONTAINER_OF(h, uvc_conn_t, pipe);

  free(conn->rbuf);
  free(conn);
}

/* The client lets go of its connection; it is freed once closed. */
static void uvc_drop_conn(tokend_uv_t *c) {
  uvc_conn_t *conn = c->conn;

  if (conn == NULL)
    return;
  c->conn = NULL;
  c->state = UVC_IDLE;
  conn->owner = NULL;
  uv_close((uv_handle_t *)&conn->pipe, uvc_on_conn_closed);
}

/* The connection died (err, msg). definitive: tokend refused what it was
 * sent (a status under call_id 0), so nothing is sent again. Otherwise
 * the calls written on it are sent again or fail as <tokend/uv.h> says,
 * and a new connection is made for what is left. unanswered_reset: it was
 * reset without ever answering (see UVC_MAX_RESENDS). */
static void uvc_conn_died_as(tokend_uv_t *c, int err, const char *msg,
                             int definitive, int unanswered_reset) {
  uvc_list_t doubt = {NULL, NULL}, closed = {NULL, NULL},
             refused = {NULL, NULL}, rest = {NULL, NULL};
  uvc_call_t *call, *next;
  uint64_t gen = c->conn != NULL ? c->conn->gen : 0;

  uvc_drop_conn(c);
  uvc_forget_all(c);
  for (call = c->calls.head; call != NULL; call = next) {
    next = call->next;
    if (call->sent_on != gen)
      continue;
    if (definitive) {
      uvc_detach(c, call);
      uvc_list_append(&refused, call);
    } else if (call->idempotent && c->reconnect_wait_ms > 0 &&
               (call->resent == 0 ||
                (unanswered_reset && call->resent < UVC_MAX_RESENDS))) {
      call->resent++;
      call->sent_on = 0;
      c->n_unsent++;
    } else {
      uvc_detach(c, call);
      uvc_list_append(call->idempotent ? &closed : &doubt, call);
    }
  }
  if (c->reconnect_wait_ms <= 0) {
    c->broken = 1;
    uvc_take_unsent(c, &rest);
  } else if (c->n_unsent > 0) {
    uvc_start_connect(c);
  }
  uvc_fail_list(c, &refused, err, msg);
  uvc_fail_list(c, &doubt, TOKEND_EINDOUBT,
                "the connection to tokend broke after the request was sent "
                "and before its answer: it may or may not have taken "
                "effect; check before trying again");
  uvc_fail_list(c, &closed, err, msg);
  uvc_fail_list(c, &rest, TOKEND_ECLOSED, msg);
}

static void uvc_conn_died(tokend_uv_t *c, int err, const char *msg,
                          int definitive) {
  uvc_conn_died_as(c, err, msg, definitive, 0);
}

static void uvc_on_write(uv_write_t *req, int status) {
  uvc_write_t *w = UV_CONTAINER_OF(req, uvc_write_t, req);
  uvc_conn_t *conn = UV_CONTAINER_OF(req->handle, uvc_conn_t, pipe);

  sodium_memzero(w->bytes, w->len);
  free(w);
  /* ECANCELED: the connection was already let go of. */
  if (status < 0 && conn->owner != NULL)
    uvc_conn_died(conn->owner, TOKEND_ECLOSED, "tokend closed the connection",
                  0);
}

/* Writes every call not yet written, in the order made, in one write. */
static void uvc_on_flush(uv_prepare_t *h) {
  tokend_uv_t *c = UV_CONTAINER_OF(h, tokend_uv_t, flush);
  uvc_call_t *call;
  uvc_write_t *w;
  uv_buf_t buf;
  size_t len = 0, off = 0;

  uv_prepare_stop(h);
  if (c->state != UVC_OPEN || c->n_unsent == 0)
    return;
  for (call = c->calls.head; call != NULL; call = call->next)
    if (call->sent_on == 0)
      len += call->frame_len;
  w = malloc(sizeof(*w) + len);
  if (w == NULL) {
    uvc_conn_died(c, TOKEND_ENOMEM, "no memory for the requests", 1);
    return;
  }
  w->len = len;
  for (call = c->calls.head; call != NULL; call = call->next)
    if (call->sent_on == 0) {
      memcpy(w->bytes + off, call->frame, call->frame_len);
      off += call->frame_len;
      call->sent_on = c->conn->gen;
    }
  c->n_unsent = 0;
  buf = uv_buf_init((char *)w->bytes, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->conn->pipe, &buf, 1, uvc_on_write) !=
      0) {
    sodium_memzero(w->bytes, w->len);
    free(w);
    uvc_conn_died(c, TOKEND_ECLOSED, "tokend closed the connection", 0);
  }
}

static void uvc_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  uvc_conn_t *conn = UV_CONTAINER_OF(h, uvc_conn_t, pipe);
  uint8_t *grown;
  size_t cap;

  (void)suggested;
  if (conn->rcap - conn->rlen < UVC_READ_CHUNK) {
    /* Bounded: a frame longer than the cap is refused by frame_decode
     * before the buffer grows for it. */
    cap = conn->rlen + UVC_READ_CHUNK;
    grown = realloc(conn->rbuf, cap);
    if (grown == NULL) {
      *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
      return;
    }
    conn->rbuf = grown;
    conn->rcap = cap;
  }
  *buf = uv_buf_init((char *)conn->rbuf + conn->rlen,
                     (unsigned)(conn->rcap - conn->rlen));
}

/* The call written on this connection with call_id, or NULL. */
static uvc_call_t *uvc_find(tokend_uv_t *c, uint64_t gen, uint64_t call_id) {
  uvc_call_t *call;

  /* Oldest first: tokend mostly answers in order. */
  for (call = c->calls.head; call != NULL; call = call->next)
    if (call->call_id == call_id && call->sent_on == gen)
      return call;
  return NULL;
}

/* 1 if call_id on connection gen is a call that timed out after it was
 * written: its record is dropped, as is the answer. */
static int uvc_forgotten_answer(tokend_uv_t *c, uint64_t gen,
                                uint64_t call_id) {
  uvc_call_t *call;

  for (call = c->forgotten.head; call != NULL; call = call->next)
    if (call->call_id == call_id && call->sent_on == gen) {
      uvc_list_remove(&c->forgotten, call);
      uvc_call_free(call);
      return 1;
    }
  return 0;
}

/* Runs a detached call's callback with its answer, then frees it. */
static void uvc_complete(tokend_uv_t *c, uvc_call_t *call,
                         const Tokend__V1__Response *resp) {
  static const Tokend__V1__Response__ResultCase want[] = {
      [UVC_VERIFY] = TOKEND__V1__RESPONSE__RESULT_VERIFY,
      [UVC_ISSUE] = TOKEND__V1__RESPONSE__RESULT_ISSUE,
      [UVC_REVOKE] = TOKEND__V1__RESPONSE__RESULT_REVOKE,
      [UVC_LOOKUP] = TOKEND__V1__RESPONSE__RESULT_LOOKUP};
  tokend_verify_result_t vr;
  tokend_token_info_t info;
  tokend_issued_t issued;
  const char *why = "";
  int code, rc;

  code = resp->status != NULL ? resp->status->code : TOKEND_GRPC_OK;
  if (code != TOKEND_GRPC_OK) {
    uvc_fail(c, call, tokend_err_from_grpc(code),
             resp->status->message != NULL ? resp->status->message : "");
    return;
  }
  if (resp->result_case != want[call->kind]) {
    uvc_fail(c, call, TOKEND_EPROTO,
             "tokend answered with the wrong kind of result");
    return;
  }
  c->msg[0] = '\0';
  switch (call->kind) {
  case UVC_VERIFY:
    memset(&vr, 0, sizeof(vr));
    rc = clientlib_verify_result(resp->verify, &vr, &why);
    if (rc != 0) {
      uvc_fail(c, call, rc, why);
      return;
    }
    call->cb.verify(c, 0, c->msg, &vr, call->data);
    break;
  case UVC_ISSUE:
    memset(&issued, 0, sizeof(issued));
    rc = clientlib_issued(resp->issue, &issued, &why);
    if (rc != 0) {
      uvc_fail(c, call, rc, why);
      return;
    }
    call->cb.issue(c, 0, c->msg, &issued, call->data);
    sodium_memzero(&issued, sizeof(issued));
    break;
  case UVC_REVOKE:
    call->cb.revoke(c, 0, c->msg, resp->revoke->revoked_at,
                    resp->revoke->already_revoked ? 1 : 0, call->data);
    break;
  case UVC_LOOKUP:
    rc = clientlib_token_info(resp->lookup->info, &info, &why);
    if (rc != 0) {
      uvc_fail(c, call, rc, why);
      return;
    }
    call->cb.lookup(c, 0, c->msg, &info, call->data);
    break;
  }
  uvc_call_free(call);
}

/* Copies s (up to its first NUL, as protobuf-c's unpack and strlen would
 * read it) into dst[size]; -1 if it does not fit. */
static int uvc_copy_vw(char *dst, size_t size, vw_str_t s) {
  const char *nul = memchr(s.p, '\0', s.len);
  size_t n = nul != NULL ? (size_t)(nul - s.p) : s.len;

  if (n >= size)
    return -1;
  memcpy(dst, s.p, n);
  dst[n] = '\0';
  return 0;
}

/* An OK Verify answer decoded by verify_wire, into *out (zeroed) as
 * clientlib_verify_result() would fill it from protobuf-c's: 0, or
 * TOKEND_EPROTO with *why. */
static int uvc_verify_result_vw(const vw_response_t *r,
                                tokend_verify_result_t *out, const char **why) {
  size_t i;

  out->valid = r->valid ? 1 : 0;
  if (r->valid)
    out->reason = TOKEND_VERIFY_VALID;
  else {
    switch (r->reason) {
    case TOKEND__V1__INVALID_REASON__INVALID_REASON_MALFORMED:
      out->reason = TOKEND_VERIFY_MALFORMED;
      break;
    case TOKEND__V1__INVALID_REASON__INVALID_REASON_UNKNOWN:
      out->reason = TOKEND_VERIFY_UNKNOWN;
      break;
    case TOKEND__V1__INVALID_REASON__INVALID_REASON_REVOKED:
      out->reason = TOKEND_VERIFY_REVOKED;
      break;
    case TOKEND__V1__INVALID_REASON__INVALID_REASON_EXPIRED:
      out->reason = TOKEND_VERIFY_EXPIRED;
      break;
    default:
      *why = "tokend said the token is invalid without a reason";
      goto err_clear;
    }
  }
  if (uvc_copy_vw(out->token_id, sizeof(out->token_id), r->token_id) != 0 ||
      uvc_copy_vw(out->domain, sizeof(out->domain), r->domain) != 0 ||
      uvc_copy_vw(out->label, sizeof(out->label), r->label) != 0)
    goto err_details;
  for (i = 0; i < r->n_scopes; i++)
    if (uvc_copy_vw(out->scopes[i], sizeof(out->scopes[i]), r->scopes[i]) != 0)
      goto err_details;
  out->n_scopes = r->n_scopes;
  out->expires_at = r->expires_at;
  return 0;

err_details:
  *why = "tokend sent token details that are too long or malformed";
err_clear:
  memset(out, 0, sizeof(*out));
  return TOKEND_EPROTO;
}

/* An answer to call_id that no waiting call claims: a forgotten call's is
 * dropped (0); anything else breaks the connection (-1). */
static int uvc_unclaimed(tokend_uv_t *c, uvc_conn_t *conn, uint64_t call_id) {
  char msg[TOKEND_STATUS_MESSAGE_BYTES];

  if (uvc_forgotten_answer(c, conn->gen, call_id))
    return 0;
  snprintf(msg, sizeof(msg), "tokend answered call %llu, which is not waiting",
           (unsigned long long)call_id);
  uvc_conn_died(c, TOKEND_EPROTO, msg, 1);
  return -1;
}

/* The Verify answers' short road (most of what a pipelining service
 * reads): decoded by verify_wire with no allocation. Returns 1 if it took
 * body (then *rc is 0, or -1 once the connection was let go of), 0 if body
 * is anything else, for protobuf-c. */
static int uvc_dispatch_verify(tokend_uv_t *c, uvc_conn_t *conn,
                               const uint8_t *body, uint32_t len, int *rc) {
  vw_response_t r;
  tokend_verify_result_t vr;
  uvc_call_t *call;
  const char *why = "";

  if (vw_response_decode(body, len, &r) != VW_VERIFY)
    return 0;
  conn->answered = 1;
  *rc = 0;
  if ((call = uvc_find(c, conn->gen, r.call_id)) == NULL) {
    *rc = uvc_unclaimed(c, conn, r.call_id);
    return 1;
  }
  uvc_detach(c, call);
  if (call->kind != UVC_VERIFY)
    uvc_fail(c, call, TOKEND_EPROTO,
             "tokend answered with the wrong kind of result");
  else {
    memset(&vr, 0, sizeof(vr));
    if (uvc_verify_result_vw(&r, &vr, &why) != 0)
      uvc_fail(c, call, TOKEND_EPROTO, why);
    else {
      c->msg[0] = '\0';
      call->cb.verify(c, 0, c->msg, &vr, call->data);
      uvc_call_free(call);
    }
  }
  *rc = conn->owner == c ? 0 : -1;
  return 1;
}

/* Handles one Response; 0, or -1 once the connection was let go of. */
static int uvc_dispatch(tokend_uv_t *c, uvc_conn_t *conn, const uint8_t *body,
                        uint32_t len) {
  Tokend__V1__Response *resp;
  uvc_call_t *call;
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  int code, rc;

  if (uvc_dispatch_verify(c, conn, body, len, &rc))
    return rc;
  resp = tokend__v1__response__unpack(NULL, len, body);
  if (resp == NULL) {
    uvc_conn_died(c, TOKEND_EPROTO, "could not decode tokend's response", 1);
    return -1;
  }
  code = resp->status != NULL ? resp->status->code : TOKEND_GRPC_OK;
  if (resp->call_id == 0 && code != TOKEND_GRPC_OK) {
    /* A connection-level refusal: tokend closes after it. */
    snprintf(msg, sizeof(msg), "tokend closed the connection: %s",
             resp->status->message);
    tokend__v1__response__free_unpacked(resp, NULL);
    uvc_conn_died(c, tokend_err_from_grpc(code), msg, 1);
    return -1;
  }
  conn->answered = 1;
  call = uvc_find(c, conn->gen, resp->call_id);
  if (call == NULL) {
    uint64_t call_id = resp->call_id;

    tokend__v1__response__free_unpacked(resp, NULL);
    return uvc_unclaimed(c, conn, call_id);
  }
  uvc_detach(c, call);
  uvc_complete(c, call, resp);
  if (resp->result_case == TOKEND__V1__RESPONSE__RESULT_ISSUE &&
      resp->issue != NULL && resp->issue->token != NULL)
    sodium_memzero(resp->issue->token, strlen(resp->issue->token));
  tokend__v1__response__free_unpacked(resp, NULL);
  return conn->owner == c ? 0 : -1;
}

static void uvc_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  uvc_conn_t *conn = UV_CONTAINER_OF(s, uvc_conn_t, pipe);
  tokend_uv_t *c = conn->owner;
  const uint8_t *body;
  uint32_t body_len;
  size_t used = 0, consumed;
  frame_result_t fr;

  (void)buf;
  if (c == NULL)
    return;
  if (nread < 0) {
    uvc_conn_died_as(c, nread == UV_ENOBUFS ? TOKEND_ENOMEM : TOKEND_ECLOSED,
                     nread == UV_ENOBUFS ? "no memory for tokend's answers"
                                         : "tokend closed the connection",
                     nread == UV_ENOBUFS,
                     nread == UV_ECONNRESET && !conn->answered);
    return;
  }
  conn->rlen += (size_t)nread;
  for (;;) {
    fr =
        frame_decode(conn->rbuf + used, conn->rlen - used,
                     TOKEND_MAX_FRAME_BYTES_LIMIT, &body, &body_len, &consumed);
    if (fr == FRAME_NEED_MORE)
      break;
    if (fr != FRAME_OK) {
      uvc_conn_died(c,
                    fr == FRAME_ERR_TOO_LARGE ? TOKEND_EMSGSIZE : TOKEND_EPROTO,
                    "tokend sent a frame that is too large or malformed", 1);
      return;
    }
    used += consumed;
    if (uvc_dispatch(c, conn, body, body_len) != 0)
      return;
  }
  /* Trimmed once per read. */
  if (used > 0) {
    memmove(conn->rbuf, conn->rbuf + used, conn->rlen - used);
    conn->rlen -= used;
  }
  uvc_update_ref(c);
}

/* ---- connecting ---- */

/* Turns a failed connect into a code and sentence, as tokend_client_open()
 * does. */
static int uvc_connect_error(const tokend_uv_t *c, int status, char *msg,
                             size_t len) {
  struct stat st;

  switch (status) {
  case UV_ENOENT:
  case UV_ENOTDIR:
    snprintf(msg, len, "no such socket %s: is tokend running?", c->path);
    return TOKEND_ENOSOCKET;
  case UV_EACCES:
  case UV_EPERM:
    snprintf(msg, len, "permission denied on %s: ask tokend's operator",
             c->path);
    return TOKEND_ESOCKPERM;
  case UV_ECONNREFUSED:
    if (stat(c->path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
      snprintf(msg, len, "%s is not a tokend: it is not a socket", c->path);
      return TOKEND_ENOTTOKEND;
    }
    snprintf(msg, len, "nothing listens on %s: is tokend running?", c->path);
    return TOKEND_ECONNECT;
  default:
    snprintf(msg, len, "cannot connect to %s: %s", c->path,
             uv_strerror(status));
    return TOKEND_ECONNECT;
  }
}

static void uvc_on_backoff(uv_timer_t *t) {
  tokend_uv_t *c = UV_CONTAINER_OF(t, tokend_uv_t, backoff);

  if (!c->closing && c->state == UVC_IDLE && c->n_unsent > 0)
    uvc_start_connect(c);
}

static void uvc_on_connect(uv_connect_t *req, int status) {
  uvc_conn_t *conn = UV_CONTAINER_OF(req, uvc_conn_t, connect_req);
  tokend_uv_t *c = conn->owner;
  uvc_list_t waiting = {NULL, NULL};
  char msg[TOKEND_STATUS_MESSAGE_BYTES];
  int err, delay;

  if (c == NULL)
    return; /* let go of while connecting: its close is under way */
  if (status == 0) {
    c->state = UVC_OPEN;
    c->backoff_ms = 0;
    c->reconnect_until = 0;
    if (uv_read_start((uv_stream_t *)&conn->pipe, uvc_on_alloc, uvc_on_read) !=
        0) {
      uvc_conn_died(c, TOKEND_ECLOSED, "cannot read from tokend", 0);
      return;
    }
    uvc_update_ref(c);
    uv_prepare_start(&c->flush, uvc_on_flush);
    return;
  }
  uvc_drop_conn(c);
  err = uvc_connect_error(c, status, msg, sizeof(msg));
  if (c->reconnect_until == 0)
    c->reconnect_until = uv_now(c->loop) + (uint64_t)c->reconnect_wait_ms;
  /* Only "nobody there yet" is waited out. */
  delay = c->backoff_ms == 0 ? UVC_BACKOFF_MIN_MS : c->backoff_ms * 2;
  if (delay > UVC_BACKOFF_MAX_MS)
    delay = UVC_BACKOFF_MAX_MS;
  if ((err == TOKEND_ENOSOCKET || err == TOKEND_ECONNECT) &&
      uv_now(c->loop) + (uint64_t)delay < c->reconnect_until) {
    c->backoff_ms = delay;
    uv_timer_start(&c->backoff, uvc_on_backoff, (uint64_t)delay, 0);
    return;
  }
  c->backoff_ms = 0;
  c->reconnect_until = 0;
  uvc_take_unsent(c, &waiting);
  uvc_fail_list(c, &waiting, err, msg);
}

static void uvc_start_connect(tokend_uv_t *c) {
  uvc_conn_t *conn;
  uvc_list_t waiting = {NULL, NULL};

  if (c->state != UVC_IDLE || uv_is_active((uv_handle_t *)&c->backoff))
    return;
  conn = calloc(1, sizeof(*conn));
  if (conn == NULL || uv_pipe_init(c->loop, &conn->pipe, 0) != 0) {
    free(conn);
    uvc_take_unsent(c, &waiting);
    uvc_fail_list(c, &waiting, TOKEND_ENOMEM, "no memory for a connection");
    return;
  }
  conn->owner = c;
  conn->gen = ++c->gen;
  c->conn = conn;
  c->state = UVC_CONNECTING;
  uv_pipe_connect(&conn->connect_req, &conn->pipe, c->path, uvc_on_connect);
}

/* ---- deadlines ---- */

static void uvc_on_deadline(uv_timer_t *t);

/* Sets the timer for the earliest deadline of a waiting call, or stops it
 * when none has one. */
static void uvc_arm_deadline(tokend_uv_t *c) {
  uint64_t first = 0, now = uv_now(c->loop);
  uvc_call_t *call;

  for (call = c->calls.head; call != NULL; call = call->next)
    if (call->deadline != 0 && (first == 0 || call->deadline < first))
      first = call->deadline;
  if (first == 0)
    uv_timer_stop(&c->deadline);
  else
    uv_timer_start(&c->deadline, uvc_on_deadline, first > now ? first - now : 0,
                   0);
}

/* Fails every call past its deadline with TOKEND_ETIMEDOUT. One not yet
 * written is simply never sent; one written is remembered in `forgotten`
 * (see the top of this file). */
static void uvc_on_deadline(uv_timer_t *t) {
  tokend_uv_t *c = UV_CONTAINER_OF(t, tokend_uv_t, deadline);
  uvc_list_t expired = {NULL, NULL};
  uvc_call_t *call, *next, *ghost;
  uint64_t now = uv_now(c->loop);
  char msg[TOKEND_STATUS_MESSAGE_BYTES];

  for (call = c->calls.head; call != NULL; call = next) {
    next = call->next;
    if (call->deadline == 0 || call->deadline > now)
      continue;
    if (call->sent_on != 0 && c->conn != NULL &&
        call->sent_on == c->conn->gen) {
      /* Out of memory for the record: its late answer breaks the
       * connection, and what was on it is retried or in doubt as after
       * any broken connection. */
      if ((ghost = calloc(1, sizeof(*ghost))) != NULL) {
        ghost->call_id = call->call_id;
        ghost->sent_on = call->sent_on;
        uvc_list_append(&c->forgotten, ghost);
      }
    }
    uvc_detach(c, call);
    uvc_list_append(&expired, call);
  }
  uvc_arm_deadline(c);
  uvc_update_ref(c);
  snprintf(msg, sizeof(msg), "no answer from tokend within %d ms",
           c->timeout_ms);
  uvc_fail_list(c, &expired, TOKEND_ETIMEDOUT, msg);
}

/* ---- the API ---- */

int tokend_uv_open(uv_loop_t *loop, const char *socket_path, tokend_uv_t **out,
                   char *why, size_t why_len) {
  tokend_uv_t *c;
  size_t len;

  if (why_len > 0)
    why[0] = '\0';
  if (loop == NULL || out == NULL) {
    if (why_len > 0)
      snprintf(why, why_len, "invalid argument");
    return TOKEND_EINVAL;
  }
  *out = NULL;
  if (socket_path == NULL) {
    socket_path = getenv(TOKEND_SOCKET_ENV);
    if (socket_path == NULL || socket_path[0] == '\0')
      socket_path = TOKEND_SOCKET_DEFAULT;
  }
  len = strlen(socket_path);
  if (len == 0 || len >= sizeof(c->path)) {
    if (why_len > 0)
      snprintf(why, why_len, "socket path is empty or longer than %zu bytes",
               sizeof(c->path) - 1);
    return TOKEND_EINVAL;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL) {
    if (why_len > 0)
      snprintf(why, why_len, "out of memory");
    return TOKEND_ENOMEM;
  }
  c->loop = loop;
  memcpy(c->path, socket_path, len);
  c->reconnect_wait_ms = TOKEND_RECONNECT_WAIT_MS_DEFAULT;
  /* Neither handle keeps the loop alive by itself. */
  uv_prepare_init(loop, &c->flush);
  uv_unref((uv_handle_t *)&c->flush);
  uv_timer_init(loop, &c->backoff);
  uv_timer_init(loop, &c->deadline);
  uv_unref((uv_handle_t *)&c->deadline);
  c->handles_open = 3;
  *out = c;
  return 0;
}

int tokend_uv_set_reconnect(tokend_uv_t *client, int max_wait_ms) {
  if (client == NULL || max_wait_ms < 0)
    return TOKEND_EINVAL;
  client->reconnect_wait_ms = max_wait_ms;
  return 0;
}

int tokend_uv_set_timeout(tokend_uv_t *client, int timeout_ms) {
  if (client == NULL || timeout_ms < 0)
    return TOKEND_EINVAL;
  client->timeout_ms = timeout_ms;
  return 0;
}

size_t tokend_uv_pending(const tokend_uv_t *client) {
  return client == NULL ? 0 : client->n_calls;
}

/* Frames req into a new call and queues it; it is written before the loop
 * next waits. */
static int uvc_submit(tokend_uv_t *c, Tokend__V1__Request *req, uvc_kind_t kind,
                      void *cb, void *data) {
  uvc_call_t *call;
  size_t len;

  if (c->closing || c->broken)
    return TOKEND_ECLOSED;
  req->call_id = ++c->last_call_id;
  /* A Verify (no actor, no cached hits) by common/verify_wire's encoder:
   * the bytes protobuf-c would write, without its reflection. */
  if (kind == UVC_VERIFY)
    len = vw_request_size(req->call_id, strlen(req->verify->token));
  else
    len = tokend__v1__request__get_packed_size(req);
  if (len > TOKEND_MAX_FRAME_BYTES_LIMIT)
    return TOKEND_EMSGSIZE;
  call = calloc(1, sizeof(*call));
  if (call == NULL)
    return TOKEND_ENOMEM;
  call->frame = malloc(TOKEND_FRAME_HEADER_BYTES + len);
  if (call->frame == NULL) {
    free(call);
    return TOKEND_ENOMEM;
  }
  call->frame_len = TOKEND_FRAME_HEADER_BYTES + len;
  frame_encode_header(call->frame, (uint32_t)len);
  if (kind == UVC_VERIFY)
    vw_request_encode(call->frame + TOKEND_FRAME_HEADER_BYTES, req->call_id,
                      req->verify->token, strlen(req->verify->token));
  else
    tokend__v1__request__pack(req, call->frame + TOKEND_FRAME_HEADER_BYTES);
  call->call_id = req->call_id;
  call->kind = kind;
  call->idempotent = clientlib_method_idempotent(req->method_case);
  switch (kind) {
  case UVC_VERIFY:
    call->cb.verify = (tokend_uv_verify_cb)cb;
    break;
  case UVC_ISSUE:
    call->cb.issue = (tokend_uv_issue_cb)cb;
    break;
  case UVC_REVOKE:
    call->cb.revoke = (tokend_uv_revoke_cb)cb;
    break;
  case UVC_LOOKUP:
    call->cb.lookup = (tokend_uv_lookup_cb)cb;
    break;
  }
  call->data = data;
  uvc_list_append(&c->calls, call);
  c->n_calls++;
  c->n_unsent++;
  if (c->timeout_ms > 0) {
    call->deadline = uv_now(c->loop) + (uint64_t)c->timeout_ms;
    /* Deadlines come in the order calls are made, unless the timeout was
     * made shorter meanwhile. */
    if (!uv_is_active((uv_handle_t *)&c->deadline) ||
        uv_timer_get_due_in(&c->deadline) > (uint64_t)c->timeout_ms)
      uv_timer_start(&c->deadline, uvc_on_deadline, (uint64_t)c->timeout_ms, 0);
  }
  if (c->state == UVC_OPEN)
    uv_prepare_start(&c->flush, uvc_on_flush);
  else if (c->state == UVC_IDLE)
    uvc_start_connect(c);
  uvc_update_ref(c);
  return 0;
}

int tokend_uv_verify(tokend_uv_t *client, const char *token,
                     tokend_uv_verify_cb cb, void *data) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__VerifyRequest verify = TOKEND__V1__VERIFY_REQUEST__INIT;

  if (client == NULL || token == NULL || cb == NULL)
    return TOKEND_EINVAL;
  verify.token = (char *)token;
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &verify;
  return uvc_submit(client, &req, UVC_VERIFY, (void *)cb, data);
}

int tokend_uv_issue(tokend_uv_t *client, const tokend_issue_params_t *params,
                    tokend_uv_issue_cb cb, void *data) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest issue = TOKEND__V1__ISSUE_REQUEST__INIT;
  const char *why;

  if (client == NULL || params == NULL || cb == NULL)
    return TOKEND_EINVAL;
  if (clientlib_issue_request(params, &issue, &why) != 0)
    return TOKEND_EINVAL;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &issue;
  return uvc_submit(client, &req, UVC_ISSUE, (void *)cb, data);
}

int tokend_uv_revoke(tokend_uv_t *client, const char *domain,
                     const char *token_id, tokend_uv_revoke_cb cb, void *data) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__RevokeRequest revoke = TOKEND__V1__REVOKE_REQUEST__INIT;

  if (client == NULL || domain == NULL || token_id == NULL || cb == NULL)
    return TOKEND_EINVAL;
  revoke.domain = (char *)domain;
  revoke.token_id = (char *)token_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE;
  req.revoke = &revoke;
  return uvc_submit(client, &req, UVC_REVOKE, (void *)cb, data);
}

int tokend_uv_lookup(tokend_uv_t *client, const char *domain,
                     const char *token_id, tokend_uv_lookup_cb cb, void *data) {
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__LookupRequest lookup = TOKEND__V1__LOOKUP_REQUEST__INIT;

  if (client == NULL || domain == NULL || token_id == NULL || cb == NULL)
    return TOKEND_EINVAL;
  lookup.domain = (char *)domain;
  lookup.token_id = (char *)token_id;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LOOKUP;
  req.lookup = &lookup;
  return uvc_submit(client, &req, UVC_LOOKUP, (void *)cb, data);
}

static void uvc_on_handle_closed(uv_handle_t *h) {
  tokend_uv_t *c = h->data;

  if (--c->handles_open > 0)
    return;
  if (c->close_cb != NULL)
    c->close_cb(c->close_data);
  free(c);
}

void tokend_uv_close(tokend_uv_t *client, tokend_uv_close_cb cb, void *data) {
  uvc_list_t all;

  if (client == NULL || client->closing)
    return;
  client->closing = 1;
  client->close_cb = cb;
  client->close_data = data;
  uvc_drop_conn(client);
  uvc_forget_all(client);
  all = client->calls;
  client->calls.head = client->calls.tail = NULL;
  client->n_calls = client->n_unsent = 0;
  uvc_fail_list(client, &all, TOKEND_ECLOSED, "the client was closed");
  client->flush.data = client;
  client->backoff.data = client;
  client->deadline.data = client;
  uv_close((uv_handle_t *)&client->flush, uvc_on_handle_closed);
  uv_close((uv_handle_t *)&client->backoff, uvc_on_handle_closed);
  uv_close((uv_handle_t *)&client->deadline, uvc_on_handle_closed);
}
