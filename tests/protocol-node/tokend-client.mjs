// A minimal tokend client in Node.js, written from docs/PROTOCOL.md and
// proto/tokend.proto alone (not from tokend's C code), to check that the
// document suffices. It speaks Verify, WhoAmI and Issue with a hand-written
// protobuf encoder and decoder (no npm package: the test runs offline).
//
//   const c = await TokendClient.connect("/path/to/tokend.sock");
//   const r = await c.verify(token);   // { valid, reason, tokenId, ... }
//   c.close();

import net from "node:net";

// ---- protobuf wire format: varints and length-delimited fields ----

const WIRE_VARINT = 0;
const WIRE_LEN = 2;

function varint(n) {
  let v = BigInt(n);
  const out = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    out.push(b);
  } while (v !== 0n);
  return Buffer.from(out);
}

function tag(field, wire) {
  return varint((field << 3) | wire);
}

function fieldVarint(field, n) {
  // proto3 leaves out a field at its default.
  return BigInt(n) === 0n ? Buffer.alloc(0) : Buffer.concat([tag(field, WIRE_VARINT), varint(n)]);
}

function fieldBytes(field, bytes, always = false) {
  if (bytes.length === 0 && !always) return Buffer.alloc(0);
  return Buffer.concat([tag(field, WIRE_LEN), varint(bytes.length), bytes]);
}

function fieldString(field, s) {
  return fieldBytes(field, Buffer.from(s, "utf8"));
}

// Decodes a message into { fieldNumber: [values] }: varints as BigInt,
// length-delimited fields as Buffers (strings and nested messages alike).
// Unknown fields and any field order are accepted, as PROTOCOL.md asks.
function decodeFields(buf) {
  const fields = {};
  let i = 0;
  const readVarint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error("truncated varint");
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = readVarint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    let value;
    if (wire === WIRE_VARINT) value = readVarint();
    else if (wire === WIRE_LEN) {
      const n = Number(readVarint());
      if (i + n > buf.length) throw new Error("truncated field");
      value = buf.subarray(i, i + n);
      i += n;
    } else if (wire === 1) {
      value = buf.subarray(i, i + 8);
      i += 8;
    } else if (wire === 5) {
      value = buf.subarray(i, i + 4);
      i += 4;
    } else throw new Error(`wire type ${wire} not handled`);
    (fields[field] ??= []).push(value);
  }
  return fields;
}

const last = (f, n) => (f[n] ? f[n][f[n].length - 1] : undefined);
const num = (f, n) => Number(last(f, n) ?? 0n);
const str = (f, n) => (last(f, n) ?? Buffer.alloc(0)).toString("utf8");
const bool = (f, n) => (last(f, n) ?? 0n) !== 0n;
const strs = (f, n) => (f[n] ?? []).map((b) => b.toString("utf8"));

// ---- tokend.v1 messages (field numbers from proto/tokend.proto) ----

// Request: call_id 1; oneof method { issue 2, verify 3, ..., who_am_i 10 }.
const REQUEST_METHOD = { issue: 2, verify: 3, whoAmI: 10 };
// Response: call_id 1, status 2; oneof result { issue 3, verify 4, ...,
// who_am_i 11 }: the same names, other numbers.
const RESPONSE_RESULT = { issue: 3, verify: 4, whoAmI: 11 };

export const REASONS = ["UNSPECIFIED", "MALFORMED", "UNKNOWN", "REVOKED", "EXPIRED", "VALID"];

function encodeMethod(method, args) {
  switch (method) {
    case "verify": // VerifyRequest { string token = 1; }
      return fieldString(1, args.token);
    case "whoAmI": // WhoAmIRequest {}
      return Buffer.alloc(0);
    case "issue": // IssueRequest { domain 1; label 2; expires_at 3; scopes 4 }
      return Buffer.concat([
        fieldString(1, args.domain),
        fieldString(2, args.label),
        fieldVarint(3, args.expiresAt ?? 0),
        ...(args.scopes ?? []).map((s) => fieldBytes(4, Buffer.from(s), true)),
      ]);
    default:
      throw new Error(`method ${method} not in this client`);
  }
}

// One whole frame: flag 0x00, 4-byte big-endian length, the Request.
export function encodeRequest(callId, method, args = {}) {
  const body = Buffer.concat([
    fieldVarint(1, callId),
    // The oneof member is written even when empty (WhoAmI): its presence
    // names the method.
    fieldBytes(REQUEST_METHOD[method], encodeMethod(method, args), true),
  ]);
  const header = Buffer.alloc(5);
  header.writeUInt8(0, 0);
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

function decodeResult(method, buf) {
  const f = decodeFields(buf);
  switch (method) {
    case "verify": {
      const reason = REASONS[num(f, 2)] ?? String(num(f, 2));
      return {
        valid: bool(f, 1),
        // A tokend before issue 14 sent UNSPECIFIED for a valid token:
        // `valid` is the authority.
        reason: bool(f, 1) ? "VALID" : reason,
        tokenId: str(f, 3),
        domain: str(f, 4),
        label: str(f, 5),
        scopes: strs(f, 6),
        expiresAt: num(f, 7),
      };
    }
    case "whoAmI":
      return {
        uid: num(f, 1),
        gid: num(f, 2),
        pid: num(f, 3),
        user: str(f, 4),
        operator: bool(f, 5),
        verifier: bool(f, 6),
      };
    case "issue": {
      const info = decodeFields(last(f, 2) ?? Buffer.alloc(0));
      return { token: str(f, 1), id: str(info, 1), domain: str(info, 2) };
    }
    default:
      throw new Error(`method ${method} not in this client`);
  }
}

// Response -> { callId, code, message, fields } (fields: the raw oneof).
export function decodeResponse(body) {
  const f = decodeFields(body);
  const status = decodeFields(last(f, 2) ?? Buffer.alloc(0));
  return { callId: num(f, 1), code: num(status, 1), message: str(status, 2), f };
}

export class TokendError extends Error {
  constructor(code, message) {
    super(`tokend: code ${code}: ${message}`);
    this.code = code; // a gRPC canonical status code
    this.tokendMessage = message;
  }
}

const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

export class TokendClient {
  static connect(path) {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(path);
      sock.once("connect", () => resolve(new TokendClient(sock)));
      sock.once("error", reject);
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.nextId = 1; // call_id 0 is reserved for connection-level errors
    this.pending = new Map();
    this.buf = Buffer.alloc(0);
    this.closedWith = null;
    sock.on("data", (d) => this.onData(d));
    sock.on("close", () => this.failAll(this.closedWith ?? new TokendError(14, "connection closed")));
    sock.on("error", () => {});
  }

  onData(d) {
    this.buf = Buffer.concat([this.buf, d]);
    // Every complete frame in the buffer; an incomplete one waits.
    while (this.buf.length >= 5) {
      if (this.buf[0] !== 0) return this.abort(new TokendError(13, "answer frame with a flag byte"));
      const n = this.buf.readUInt32BE(1);
      if (n > MAX_ANSWER_BYTES) return this.abort(new TokendError(13, "answer frame too large"));
      if (this.buf.length < 5 + n) return;
      const resp = decodeResponse(this.buf.subarray(5, 5 + n));
      this.buf = this.buf.subarray(5 + n);
      if (resp.callId === 0) {
        // tokend says why it closes the connection; every call is lost.
        this.closedWith = new TokendError(resp.code, resp.message);
        continue;
      }
      const p = this.pending.get(resp.callId);
      if (!p) continue;
      this.pending.delete(resp.callId);
      if (resp.code !== 0) p.reject(new TokendError(resp.code, resp.message));
      else p.resolve(decodeResult(p.method, last(resp.f, RESPONSE_RESULT[p.method]) ?? Buffer.alloc(0)));
    }
  }

  abort(err) {
    this.closedWith = err;
    this.sock.destroy();
  }

  failAll(err) {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  call(method, args) {
    const callId = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(callId, { method, resolve, reject });
      this.sock.write(encodeRequest(callId, method, args));
    });
  }

  verify(token) {
    return this.call("verify", { token });
  }

  whoAmI() {
    return this.call("whoAmI");
  }

  issue(domain, label, scopes = [], expiresAt = 0) {
    return this.call("issue", { domain, label, scopes, expiresAt });
  }

  close() {
    this.sock.end();
  }
}
