// The Node client written from docs/PROTOCOL.md (tokend-client.mjs)
// against a real tokend: ctest entry protocol_node. TOKEND_BIN names the
// tokend binary, TOKEND_VECTORS tests/vectors/vectors.json.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

import { TokendClient, TokendError, encodeRequest } from "./tokend-client.mjs";

const BIN = process.env.TOKEND_BIN;
const VECTORS = process.env.TOKEND_VECTORS;
let dir;
let sockPath;
let proc;
let exited;

function canConnect(p) {
  return new Promise((resolve) => {
    const s = net.createConnection(p);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

before(async () => {
  assert.ok(BIN, "TOKEND_BIN is not set");
  dir = fs.mkdtempSync(path.join("/tmp", "tokend-node-"));
  sockPath = path.join(dir, "tokend.sock");
  const log = fs.openSync(path.join(dir, "tokend.log"), "w");
  proc = spawn(
    BIN,
    ["--socket", sockPath, "--db", path.join(dir, "tokend.db"), "--pepper-file", path.join(dir, "pepper"), "--create-db"],
    { stdio: ["ignore", log, log] },
  );
  exited = new Promise((resolve) => proc.once("exit", (code, sig) => resolve({ code, sig })));
  const deadline = Date.now() + 30000;
  while (!(await canConnect(sockPath))) {
    assert.equal(proc.exitCode, null, "tokend exited while starting");
    assert.ok(Date.now() < deadline, "tokend did not start");
    await new Promise((r) => setTimeout(r, 10));
  }
});

after(async () => {
  proc.kill("SIGTERM");
  const { code } = await exited;
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(code, 0, "tokend did not exit 0");
});

test("requests encode to the conformance vectors' bytes", () => {
  const cases = JSON.parse(fs.readFileSync(VECTORS, "utf8")).cases;
  const byName = Object.fromEntries(cases.map((c) => [c.name, c]));
  assert.equal(encodeRequest(1, "whoAmI").toString("hex"), byName.whoami.request);
  assert.equal(
    encodeRequest(4, "verify", { token: "tkd_notatoken" }).toString("hex"),
    byName.verify_malformed.request,
  );
  assert.equal(
    encodeRequest(2, "issue", { domain: "vectors.example", label: "CI deploy", scopes: ["read", "write:deploy"] }).toString("hex"),
    byName.issue.request,
  );
});

test("whoami", async () => {
  const c = await TokendClient.connect(sockPath);
  const me = await c.whoAmI();
  c.close();
  assert.equal(me.operator, true);
  assert.equal(me.verifier, true);
  assert.match(me.user, /^uid:\d+$/);
  assert.equal(me.uid, process.getuid());
});

test("issue, then pipelined verifies matched by call_id", async () => {
  const c = await TokendClient.connect(sockPath);
  const issued = await c.issue("node.example", "from node", ["read"]);
  assert.match(issued.token, /^tkd_/);
  const tokens = [];
  for (let i = 0; i < 50; i++) tokens.push(i % 2 === 0 ? issued.token : `tkd_bad${i}`);
  const results = await Promise.all(tokens.map((t) => c.verify(t)));
  c.close();
  results.forEach((r, i) => {
    if (i % 2 === 0) {
      assert.deepEqual(r, {
        valid: true,
        reason: "VALID",
        tokenId: issued.id,
        domain: "node.example",
        label: "from node",
        scopes: ["read"],
        expiresAt: 0,
      });
    } else {
      assert.equal(r.valid, false);
      assert.equal(r.reason, "MALFORMED");
    }
  });
});

test("an error carries its gRPC code", async () => {
  const c = await TokendClient.connect(sockPath);
  await assert.rejects(c.issue("bad domain", "x"), (e) => e instanceof TokendError && e.code === 3);
  c.close();
});

test("call_id 0 is a connection-level error, then close", async () => {
  const c = await TokendClient.connect(sockPath);
  // The three frames in one write: sent separately, the last could meet a
  // closed socket (EPIPE), and Node drops what it had not read yet.
  c.sock.cork();
  const first = c.whoAmI(); // answered: received before the bad frame
  c.sock.write(Buffer.from("0000000000", "hex")); // an empty Request: call_id 0
  const lost = c.whoAmI(); // received after: lost with the connection
  c.sock.uncork();
  assert.equal((await first).operator, true);
  await assert.rejects(lost, (e) => e.code === 3 && /call_id 0 is reserved/.test(e.tokendMessage));
});
