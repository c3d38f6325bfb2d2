/* Conformance vectors (tests/vectors/vectors.json, described in
 * tests/vectors/README.md): request frames in hex and the fields of the
 * answer each must get, replayed against a real tokend.
 *
 *   test_vectors                  replays the committed vectors (ctest)
 *   test_vectors --generate FILE  runs the cases below against a fresh
 *                                 tokend and writes what it answered
 *
 * An answer is compared as a flat map, "path" -> value, of every field it
 * holds that is not at its default (the same map the generator wrote):
 * the key sets must be equal, and so must the values, except "*" (present,
 * any value), "?" (any value or absent) and "{{name}}" (a value that
 * differs per run: bound by its first occurrence in an answer, or by a
 * case's "let" from the clock, then substituted wherever it appears, in
 * answers and in request hex). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "harness.h"
#include "token.h"
#include "tokend_error.h"

#define VECTORS_FILE TOKEND_VECTORS_DIR "/vectors.json"
#define DOMAIN "vectors.example"
#define MAX_VARS 8

/* ---- flattening a message ---- */

static void flatten_message(const ProtobufCMessage *m, const char *prefix,
                            json_t *out);

/* Adds the value of one (non-repeated, present) field at p. */
static void flatten_value(const ProtobufCFieldDescriptor *fd, const void *p,
                          const char *path, json_t *out) {
  switch (fd->type) {
  case PROTOBUF_C_TYPE_BOOL:
    json_object_set_new(out, path,
                        json_boolean(*(const protobuf_c_boolean *)p));
    break;
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_ENUM:
    json_object_set_new(out, path, json_integer(*(const int32_t *)p));
    break;
  case PROTOBUF_C_TYPE_UINT32:
    json_object_set_new(out, path, json_integer(*(const uint32_t *)p));
    break;
  case PROTOBUF_C_TYPE_INT64:
    json_object_set_new(out, path, json_integer(*(const int64_t *)p));
    break;
  case PROTOBUF_C_TYPE_UINT64:
    json_object_set_new(out, path,
                        json_integer((json_int_t) * (const uint64_t *)p));
    break;
  case PROTOBUF_C_TYPE_STRING:
    json_object_set_new(out, path, json_string(*(char *const *)p));
    break;
  case PROTOBUF_C_TYPE_MESSAGE:
    json_object_set_new(out, path, json_object());
    flatten_message(*(ProtobufCMessage *const *)p, path, out);
    break;
  default:
    fail_msg("%s: a field type the vectors do not handle", path);
  }
}

/* 1 if the (proto3, non-repeated) field at p holds its default. */
static int is_default(const ProtobufCFieldDescriptor *fd, const void *p) {
  switch (fd->type) {
  case PROTOBUF_C_TYPE_BOOL:
    return *(const protobuf_c_boolean *)p == 0;
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_ENUM:
  case PROTOBUF_C_TYPE_UINT32:
    return *(const uint32_t *)p == 0;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_UINT64:
    return *(const uint64_t *)p == 0;
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;

    return s == NULL || s[0] == '\0';
  }
  case PROTOBUF_C_TYPE_MESSAGE:
    return *(void *const *)p == NULL;
  default:
    return 0;
  }
}

static size_t field_size(const ProtobufCFieldDescriptor *fd) {
  switch (fd->type) {
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_UINT64:
    return 8;
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_MESSAGE:
    return sizeof(void *);
  default:
    return 4;
  }
}

/* Every field of m not at its default, as "prefix.name" (repeated:
 * "prefix.name[i]"); a present message is also a key, with value {}. */
static void flatten_message(const ProtobufCMessage *m, const char *prefix,
                            json_t *out) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  char path[256];
  unsigned i;
  size_t j, n;

  for (i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *fd = &d->fields[i];
    const char *base = (const char *)m;
    const void *p = base + fd->offset;

    snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "",
             fd->name);
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
      n = *(const size_t *)(base + fd->quantifier_offset);
      for (j = 0; j < n; j++) {
        char ipath[sizeof(path) + 24];

        snprintf(ipath, sizeof(ipath), "%s[%zu]", path, j);
        flatten_value(fd, *(char *const *)p + j * field_size(fd), ipath, out);
      }
      continue;
    }
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      if (*(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
        continue;
    } else if (is_default(fd, p)) {
      continue;
    }
    flatten_value(fd, p, path, out);
  }
}

/* ---- hex ---- */

static char *to_hex(const uint8_t *b, size_t n) {
  char *s = malloc(2 * n + 1);
  size_t i;

  assert_non_null(s);
  for (i = 0; i < n; i++)
    sprintf(s + 2 * i, "%02x", b[i]);
  s[2 * n] = '\0';
  return s;
}

static uint8_t *from_hex(const char *s, size_t *n) {
  size_t len = strlen(s), i;
  uint8_t *b;
  unsigned x;

  if (len % 2 != 0)
    fail_msg("odd-length hex: %s", s);
  b = malloc(len / 2 + 1);
  assert_non_null(b);
  for (i = 0; i < len / 2; i++) {
    if (sscanf(s + 2 * i, "%2x", &x) != 1)
      fail_msg("bad hex at %zu: %s", 2 * i, s);
    b[i] = (uint8_t)x;
  }
  *n = len / 2;
  return b;
}

/* ---- variables ---- */

/* A string bound by an answer (its bytes go into requests), or an integer
 * bound by "let" (its protobuf varint goes into requests; answers hold it
 * as a JSON number). */
typedef struct {
  char name[32];
  char value[128];
  int is_int;
  int64_t num;
} var_t;

typedef struct {
  var_t v[MAX_VARS];
  size_t n;
} vars_t;

static const var_t *var_find(const vars_t *vs, const char *name) {
  size_t i;

  for (i = 0; i < vs->n; i++)
    if (strcmp(vs->v[i].name, name) == 0)
      return &vs->v[i];
  return NULL;
}

static const char *var_get(const vars_t *vs, const char *name) {
  const var_t *v = var_find(vs, name);

  return v != NULL && !v->is_int ? v->value : NULL;
}

static void var_set(vars_t *vs, const char *name, const char *value) {
  assert_true(vs->n < MAX_VARS);
  snprintf(vs->v[vs->n].name, sizeof(vs->v[vs->n].name), "%s", name);
  snprintf(vs->v[vs->n].value, sizeof(vs->v[vs->n].value), "%s", value);
  vs->v[vs->n].is_int = 0;
  vs->n++;
}

static void var_set_int(vars_t *vs, const char *name, int64_t num) {
  assert_true(vs->n < MAX_VARS);
  snprintf(vs->v[vs->n].name, sizeof(vs->v[vs->n].name), "%s", name);
  vs->v[vs->n].value[0] = '\0';
  vs->v[vs->n].is_int = 1;
  vs->v[vs->n].num = num;
  vs->n++;
}

/* The protobuf varint of a (non-negative) integer, as lower-case hex. */
static void varint_hex(int64_t num, char *out, size_t size) {
  uint64_t u = (uint64_t)num;
  size_t o = 0;

  do {
    uint8_t b = (uint8_t)(u & 0x7f);

    u >>= 7;
    if (u != 0)
      b |= 0x80;
    assert_true(o + 3 <= size);
    snprintf(out + o, size - o, "%02x", b);
    o += 2;
  } while (u != 0);
}

/* A case's "let": {"name": MS} binds each name to the wall clock plus MS
 * milliseconds, before its request is built (a time in the future, e.g.
 * an expiry). */
static void case_let(json_t *c, vars_t *vs) {
  json_t *let = json_object_get(c, "let"), *ms;
  const char *name;

  json_object_foreach(let, name, ms) {
    assert_true(json_is_integer(ms));
    var_set_int(vs, name, th_now_ms() + json_integer_value(ms));
  }
}

/* A case's "after": "name" waits until the wall clock is past the integer
 * variable name before the request is sent. */
static void case_after(json_t *c, const vars_t *vs) {
  const char *name = json_string_value(json_object_get(c, "after"));
  const var_t *v;

  if (name == NULL)
    return;
  v = var_find(vs, name);
  if (v == NULL || !v->is_int)
    fail_msg("\"after\": %s is not an integer variable", name);
  while (th_now_ms() <= v->num)
    th_sleep_ms(10);
}

/* The name inside "{{name}}", or NULL if s is not one. */
static int placeholder(const char *s, char *name, size_t size) {
  size_t len = strlen(s);

  if (len < 5 || strncmp(s, "{{", 2) != 0 || strcmp(s + len - 2, "}}") != 0 ||
      len - 4 >= size)
    return 0;
  memcpy(name, s + 2, len - 4);
  name[len - 4] = '\0';
  return 1;
}

/* The request hex with each {{name}} replaced by the hex of its value. */
static char *request_hex(const char *tmpl, const vars_t *vs, const char *what) {
  char *out = calloc(1, strlen(tmpl) * 4 + 1), *hex;
  const char *p = tmpl, *open, *close;
  const var_t *val;
  char name[32], num[24];

  assert_non_null(out);
  while ((open = strstr(p, "{{")) != NULL) {
    strncat(out, p, (size_t)(open - p));
    close = strstr(open, "}}");
    if (close == NULL || (size_t)(close - open - 2) >= sizeof(name))
      fail_msg("%s: bad placeholder in request", what);
    memcpy(name, open + 2, (size_t)(close - open - 2));
    name[close - open - 2] = '\0';
    if ((val = var_find(vs, name)) == NULL)
      fail_msg("%s: request uses {{%s}} before an answer bound it", what, name);
    if (val->is_int) {
      varint_hex(val->num, num, sizeof(num));
      strcat(out, num);
    } else {
      hex = to_hex((const uint8_t *)val->value, strlen(val->value));
      strcat(out, hex);
      free(hex);
    }
    p = close + 2;
  }
  strcat(out, p);
  return out;
}

/* ---- replay ---- */

/* Checks got (a flattened answer) against want; binds new variables. */
static void check_answer(const char *what, json_t *want, json_t *got,
                         vars_t *vs) {
  const char *key, *s;
  const var_t *bound;
  json_t *w, *g;
  char name[32], *ws, *gs;

  json_object_foreach(want, key, w) {
    g = json_object_get(got, key);
    s = json_is_string(w) ? json_string_value(w) : NULL;
    if (s != NULL && strcmp(s, "?") == 0)
      continue;
    if (g == NULL)
      fail_msg("%s: answer lacks %s", what, key);
    if (s != NULL && strcmp(s, "*") == 0)
      continue;
    if (s != NULL && placeholder(s, name, sizeof(name))) {
      bound = var_find(vs, name);
      if (bound != NULL && bound->is_int) {
        if (!json_is_integer(g) || json_integer_value(g) != bound->num)
          fail_msg("%s: %s is not {{%s}} = %lld", what, key, name,
                   (long long)bound->num);
        continue;
      }
      if (!json_is_string(g))
        fail_msg("%s: %s is not a string", what, key);
      if (bound == NULL)
        var_set(vs, name, json_string_value(g));
      else if (strcmp(bound->value, json_string_value(g)) != 0)
        fail_msg("%s: %s is \"%s\", want {{%s}} = \"%s\"", what, key,
                 json_string_value(g), name, bound->value);
      continue;
    }
    if (!json_equal(w, g)) {
      ws = json_dumps(w, JSON_ENCODE_ANY);
      gs = json_dumps(g, JSON_ENCODE_ANY);
      fail_msg("%s: %s is %s, want %s", what, key, gs, ws);
    }
  }
  json_object_foreach(got, key, g) {
    if (json_object_get(want, key) == NULL) {
      gs = json_dumps(g, JSON_ENCODE_ANY);
      fail_msg("%s: answer has %s = %s, which the vector does not expect", what,
               key, gs);
    }
  }
}

static void test_vectors_replay(void **state) {
  th_fixture_t *f = *state;
  json_error_t jerr;
  json_t *root = json_load_file(VECTORS_FILE, 0, &jerr), *cases, *c;
  vars_t vs = {.n = 0};
  size_t i, n;
  int fd = th_connect(f->tokend.socket_path);

  if (root == NULL)
    fail_msg("%s: %s (line %d)", VECTORS_FILE, jerr.text, jerr.line);
  assert_true(fd >= 0);
  cases = json_object_get(root, "cases");
  assert_true(json_is_array(cases) && json_array_size(cases) > 0);
  json_array_foreach(cases, i, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    const char *then = json_string_value(json_object_get(c, "then"));
    char *hex;
    uint8_t *frame;
    Tokend__V1__Response *r = NULL;
    json_t *got = json_object();
    int rc;

    case_let(c, &vs);
    hex = request_hex(json_string_value(json_object_get(c, "request")), &vs,
                      name);
    frame = from_hex(hex, &n);
    case_after(c, &vs);
    assert_int_equal(th_write_all(fd, frame, n), 0);
    rc = th_recv_response(fd, TH_IO_TIMEOUT_MS, &r);
    if (rc != 0)
      fail_msg("%s: no answer (%s)", name, th_recv_name(rc));
    flatten_message(&r->base, "", got);
    check_answer(name, json_object_get(c, "response"), got, &vs);
    tokend__v1__response__free_unpacked(r, NULL);
    json_decref(got);
    free(frame);
    free(hex);
    if (then != NULL && strcmp(then, "close") == 0) {
      if (th_wait_eof(fd, TH_IO_TIMEOUT_MS) != 1)
        fail_msg("%s: tokend did not close the connection", name);
      close(fd);
      fd = th_connect(f->tokend.socket_path);
      assert_true(fd >= 0);
    }
  }
  close(fd);
  json_decref(root);
}

static int setup(void **state) { return th_fixture_setup_start(state, NULL); }

/* ---- generation ---- */

typedef struct {
  int fd;
  uint64_t next_id;
  vars_t vars;
  json_t *cases;
  /* For the next case only: its "let" and "after" (see case_let). */
  const char *let_name;
  int64_t let_ms;
  const char *after;
} gen_t;

/* Binds name to the clock plus ms for the next case, which records it as
 * its "let". */
static void gen_let(gen_t *g, const char *name, int64_t ms) {
  var_set_int(&g->vars, name, th_now_ms() + ms);
  g->let_name = name;
  g->let_ms = ms;
}

/* A response key whose value differs per run whatever the request: "*"
 * (always present) or "?" (may be absent: 0 when run as root). */
static const char *volatile_key(const char *key) {
  static const char *const always[] = {
      "_at",       ".hint",           "_by", ".time", ".peer_pid",
      "head_hash", "next_page_token",
  };
  static const char *const maybe[] = {"who_am_i.uid", "who_am_i.gid",
                                      "who_am_i.pid", "who_am_i.user"};
  /* The audit log records who ran the test: uid 0 is absent. */
  static const char *const maybe_suffix = ".peer_uid";
  size_t i, kl = strlen(key), sl;

  for (i = 0; i < sizeof(maybe) / sizeof(maybe[0]); i++)
    if (strcmp(key, maybe[i]) == 0)
      return "?";
  sl = strlen(maybe_suffix);
  if (kl >= sl && strcmp(key + kl - sl, maybe_suffix) == 0)
    return "?";
  for (i = 0; i < sizeof(always) / sizeof(always[0]); i++) {
    sl = strlen(always[i]);
    if (kl >= sl && strcmp(key + kl - sl, always[i]) == 0)
      return "*";
  }
  return NULL;
}

/* Sends req (call_id assigned here unless keep_id), records the case. */
static void gen_case(gen_t *g, const char *name, Tokend__V1__Request *req,
                     int keep_id, const char *then) {
  Tokend__V1__Response *r = NULL;
  size_t len, i;
  uint8_t *frame;
  char *hex, *vhex, *pos, *tmpl;
  json_t *c = json_object(), *flat = json_object(), *v, *extra;
  const char *key, *vol;

  if (!keep_id)
    req->call_id = ++g->next_id;
  frame = th_frame_request(req, &len);
  assert_non_null(frame);
  hex = to_hex(frame, len);
  /* Values bound earlier appear in the request as {{name}}. */
  for (i = 0; i < g->vars.n; i++) {
    if (g->vars.v[i].is_int) {
      vhex = malloc(24);
      assert_non_null(vhex);
      varint_hex(g->vars.v[i].num, vhex, 24);
    } else {
      vhex = to_hex((const uint8_t *)g->vars.v[i].value,
                    strlen(g->vars.v[i].value));
    }
    while ((pos = strstr(hex, vhex)) != NULL) {
      tmpl = malloc(strlen(hex) + 64);
      assert_non_null(tmpl);
      sprintf(tmpl, "%.*s{{%s}}%s", (int)(pos - hex), hex, g->vars.v[i].name,
              pos + strlen(vhex));
      free(hex);
      hex = tmpl;
    }
    free(vhex);
  }
  if (g->after != NULL)
    while (th_now_ms() <= var_find(&g->vars, g->after)->num)
      th_sleep_ms(10);
  assert_int_equal(th_write_all(g->fd, frame, len), 0);
  assert_int_equal(th_recv_response(g->fd, TH_IO_TIMEOUT_MS, &r), 0);
  flatten_message(&r->base, "", flat);
  /* Who the caller is depends on who runs the test: uid and gid 0 (root)
   * are absent, any other present. */
  if (json_object_get(flat, "who_am_i") != NULL)
    for (i = 0; i < 4; i++)
      json_object_set_new(flat,
                          (const char *[]){"who_am_i.uid", "who_am_i.gid",
                                           "who_am_i.pid", "who_am_i.user"}[i],
                          json_string("?"));
  /* The audit log records the caller's uid: absent for root, present for
   * anyone else. */
  extra = json_object();
  json_object_foreach(flat, key, v) {
    size_t kl = strlen(key);
    char upath[256];

    if (json_is_object(v) && kl > 0 && key[kl - 1] == ']' &&
        strstr(key, ".events[") != NULL) {
      snprintf(upath, sizeof(upath), "%s.peer_uid", key);
      json_object_set_new(extra, upath, json_string("?"));
    }
  }
  json_object_update(flat, extra);
  json_decref(extra);
  json_object_foreach(flat, key, v) {
    /* An integer variable (a time the case chose) before the volatile
     * keys: an expires_at is that value, not any time. */
    for (i = 0; i < g->vars.n; i++)
      if (g->vars.v[i].is_int && json_is_integer(v) &&
          json_integer_value(v) == g->vars.v[i].num)
        break;
    if (i < g->vars.n) {
      char ph[40];

      snprintf(ph, sizeof(ph), "{{%s}}", g->vars.v[i].name);
      json_object_set_new(flat, key, json_string(ph));
      continue;
    }
    if ((vol = volatile_key(key)) != NULL) {
      json_object_set_new(flat, key, json_string(vol));
      continue;
    }
    if (!json_is_string(v))
      continue;
    for (i = 0; i < g->vars.n; i++)
      if (!g->vars.v[i].is_int &&
          strcmp(json_string_value(v), g->vars.v[i].value) == 0) {
        char ph[40];

        snprintf(ph, sizeof(ph), "{{%s}}", g->vars.v[i].name);
        json_object_set_new(flat, key, json_string(ph));
        break;
      }
  }
  json_object_set_new(c, "name", json_string(name));
  if (g->let_name != NULL)
    json_object_set_new(c, "let",
                        json_pack("{s:I}", g->let_name, (json_int_t)g->let_ms));
  if (g->after != NULL)
    json_object_set_new(c, "after", json_string(g->after));
  g->let_name = NULL;
  g->after = NULL;
  json_object_set_new(c, "request", json_string(hex));
  json_object_set_new(c, "response", flat);
  if (then != NULL)
    json_object_set_new(c, "then", json_string(then));
  json_array_append_new(g->cases, c);
  tokend__v1__response__free_unpacked(r, NULL);
  free(frame);
  free(hex);
}

/* Binds name to the value at key of the last case's answer (a value that
 * differs per run), and rewrites that answer with the placeholder. */
static void gen_bind(gen_t *g, const char *name, const char *key) {
  json_t *c = json_array_get(g->cases, json_array_size(g->cases) - 1);
  json_t *resp = json_object_get(c, "response");
  const char *v = json_string_value(json_object_get(resp, key));
  char ph[40];

  assert_non_null(v);
  var_set(&g->vars, name, v);
  snprintf(ph, sizeof(ph), "{{%s}}", name);
  json_object_set_new(resp, key, json_string(ph));
}

static void test_vectors_generate(void **state) {
  th_fixture_t *f = *state;
  const char *out = getenv("TOKEND_VECTORS_OUT");
  gen_t g = {.fd = th_connect(f->tokend.socket_path), .next_id = 0};
  /* method is a union: each case sets its member again. */
  Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
  Tokend__V1__IssueRequest ir = TOKEND__V1__ISSUE_REQUEST__INIT;
  Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
  Tokend__V1__RevokeRequest rr = TOKEND__V1__REVOKE_REQUEST__INIT;
  Tokend__V1__ListRequest lr = TOKEND__V1__LIST_REQUEST__INIT;
  Tokend__V1__WhoAmIRequest wr = TOKEND__V1__WHO_AM_IREQUEST__INIT;
  Tokend__V1__GrantDomainAdminRequest gr =
      TOKEND__V1__GRANT_DOMAIN_ADMIN_REQUEST__INIT;
  Tokend__V1__ListDomainAdminsRequest la =
      TOKEND__V1__LIST_DOMAIN_ADMINS_REQUEST__INIT;
  Tokend__V1__RevokeDomainAdminRequest ra =
      TOKEND__V1__REVOKE_DOMAIN_ADMIN_REQUEST__INIT;
  Tokend__V1__ListAuditEventsRequest ae =
      TOKEND__V1__LIST_AUDIT_EVENTS_REQUEST__INIT;
  Tokend__V1__VerifyAuditLogRequest va =
      TOKEND__V1__VERIFY_AUDIT_LOG_REQUEST__INIT;
  Tokend__V1__IssueRequest xr = TOKEND__V1__ISSUE_REQUEST__INIT;
  char *scopes[] = {"read", "write:deploy"};
  char never[TOKEND_TOKEN_BYTES];
  json_t *root;

  assert_non_null(out);
  assert_true(g.fd >= 0);
  g.cases = json_array();

  req.method_case = TOKEND__V1__REQUEST__METHOD_WHO_AM_I;
  req.who_am_i = &wr;
  gen_case(&g, "whoami", &req, 0, NULL);

  ir.domain = DOMAIN;
  ir.label = "CI deploy";
  ir.n_scopes = 2;
  ir.scopes = scopes;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &ir;
  gen_case(&g, "issue", &req, 0, NULL);
  gen_bind(&g, "token", "issue.token");
  gen_bind(&g, "token_id", "issue.info.id");

  vr.token = (char *)var_get(&g.vars, "token");
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  gen_case(&g, "verify_valid", &req, 0, NULL);

  vr.token = "tkd_notatoken";
  gen_case(&g, "verify_malformed", &req, 0, NULL);

  /* Well formed, never issued by any tokend (a fixed value: the checksum
   * is right, the index does not have it). */
  assert_int_equal(token_generate(TOKEND_PREFIX_DEFAULT, never), 0);
  vr.token = never;
  gen_case(&g, "verify_unknown", &req, 0, NULL);

  lr.domain = DOMAIN;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST;
  req.list = &lr;
  gen_case(&g, "list", &req, 0, NULL);

  /* A token that expires a second from now; verify_expired, near the end,
   * waits for that time to pass (its "after"). */
  gen_let(&g, "expires_at", 1000);
  xr.domain = DOMAIN;
  xr.label = "short-lived";
  xr.expires_at = var_find(&g.vars, "expires_at")->num;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &xr;
  gen_case(&g, "issue_expiring", &req, 0, NULL);
  gen_bind(&g, "expiring_token", "issue.token");
  gen_bind(&g, "expiring_token_id", "issue.info.id");

  rr.domain = DOMAIN;
  rr.token_id = (char *)var_get(&g.vars, "token_id");
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE;
  req.revoke = &rr;
  gen_case(&g, "revoke", &req, 0, NULL);
  gen_case(&g, "revoke_again", &req, 0, NULL);

  vr.token = (char *)var_get(&g.vars, "token");
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  gen_case(&g, "verify_revoked", &req, 0, NULL);

  rr.token_id = "tok_AAAAAAAAAAAAAAAAAAAA";
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE;
  req.revoke = &rr;
  gen_case(&g, "revoke_not_found", &req, 0, NULL);

  rr.token_id = "not-an-id";
  gen_case(&g, "revoke_bad_token_id", &req, 0, NULL);

  ir.domain = "bad domain";
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &ir;
  gen_case(&g, "issue_bad_domain", &req, 0, NULL);

  gr.domain = DOMAIN;
  gr.user = "alice@example.com";
  req.method_case = TOKEND__V1__REQUEST__METHOD_GRANT_DOMAIN_ADMIN;
  req.grant_domain_admin = &gr;
  gen_case(&g, "grant_domain_admin", &req, 0, NULL);

  la.domain = DOMAIN;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST_DOMAIN_ADMINS;
  req.list_domain_admins = &la;
  gen_case(&g, "list_domain_admins", &req, 0, NULL);

  /* The operator acting for alice: her token goes with her below. */
  ir.domain = DOMAIN;
  ir.label = "alice's";
  ir.n_scopes = 0;
  req.method_case = TOKEND__V1__REQUEST__METHOD_ISSUE;
  req.issue = &ir;
  req.actor = "alice@example.com";
  gen_case(&g, "issue_as_domain_admin", &req, 0, NULL);
  gen_bind(&g, "alice_token", "issue.token");
  gen_bind(&g, "alice_token_id", "issue.info.id");
  req.actor = NULL;

  ra.domain = DOMAIN;
  ra.user = "alice@example.com";
  ra.revoke_their_tokens = 1;
  req.method_case = TOKEND__V1__REQUEST__METHOD_REVOKE_DOMAIN_ADMIN;
  req.revoke_domain_admin = &ra;
  gen_case(&g, "revoke_domain_admin", &req, 0, NULL);
  gen_case(&g, "revoke_domain_admin_not_found", &req, 0, NULL);

  ae.domain = DOMAIN;
  ae.page_size = 3;
  req.method_case = TOKEND__V1__REQUEST__METHOD_LIST_AUDIT_EVENTS;
  req.list_audit_events = &ae;
  gen_case(&g, "list_audit_events", &req, 0, NULL);

  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY_AUDIT_LOG;
  req.verify_audit_log = &va;
  gen_case(&g, "verify_audit_log", &req, 0, NULL);

  vr.token = (char *)var_get(&g.vars, "expiring_token");
  req.method_case = TOKEND__V1__REQUEST__METHOD_VERIFY;
  req.verify = &vr;
  g.after = "expires_at";
  gen_case(&g, "verify_expired", &req, 0, NULL);

  req.method_case = TOKEND__V1__REQUEST__METHOD__NOT_SET;
  gen_case(&g, "no_method", &req, 0, NULL);

  /* Connection-level: answered on call_id 0, then closed. */
  req.call_id = 0;
  req.method_case = TOKEND__V1__REQUEST__METHOD_WHO_AM_I;
  req.who_am_i = &wr;
  gen_case(&g, "call_id_zero", &req, 1, "close");

  root = json_pack("{s:s, s:o}", "about",
                   "tokend conformance vectors: see tests/vectors/README.md; "
                   "written by tests/integration/test_vectors.c --generate",
                   "cases", g.cases);
  assert_int_equal(json_dump_file(root, out, JSON_INDENT(1)), 0);
  json_decref(root);
  close(g.fd);
}

int main(int argc, char **argv) {
  const struct CMUnitTest replay[] = {
      cmocka_unit_test_setup_teardown(test_vectors_replay, setup,
                                      th_fixture_teardown),
  };
  const struct CMUnitTest generate[] = {
      cmocka_unit_test_setup_teardown(test_vectors_generate, setup,
                                      th_fixture_teardown),
  };

  if (argc == 3 && strcmp(argv[1], "--generate") == 0) {
    setenv("TOKEND_VECTORS_OUT", argv[2], 1);
    return cmocka_run_group_tests(generate, NULL, NULL);
  }
  return cmocka_run_group_tests(replay, NULL, NULL);
}
