// verifyWebhook against real deliveries: a real Podium server POSTs to a receiver on loopback.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";

import { Podium, verifyWebhook } from "../dist/index.js";
import { PODIUM, PodiumServer, SERVICES, waitUntil } from "./server.js";

const T = { timeout: 60_000 };
// The receiver is on loopback, which deliveries are refused by default.
const server = new PodiumServer({ env: { PODIUM_WEBHOOK_ALLOW_PRIVATE: "1" } });
/** Every delivery received: { headers, body } with the body's raw bytes. */
const received = [];
let receiver;
let hookUrl;
/** @type {Podium} */
let podium;

async function cli(...args) {
  const { stdout } = await promisify(execFile)(PODIUM, args, { env: server.env, timeout: 120_000 });
  return stdout.trim();
}

/** Run a job with a webhook; the delivery its end makes. */
async function delivery() {
  const seen = received.length;
  await podium.endpoint("rp").run({ value: 1 }, { webhook: hookUrl });
  return waitUntil(() => received[seen], "the webhook delivery");
}

before(async () => {
  receiver = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({ headers: req.headers, body: new Uint8Array(Buffer.concat(chunks)) });
      res.writeHead(200).end();
    });
  });
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
  hookUrl = `http://127.0.0.1:${receiver.address().port}/hook`;
  await server.start();
  await server.deploy(join(SERVICES, "rp.py"), "rp");
  podium = new Podium({ url: server.url, apiKey: server.key });
}, { timeout: 120_000 });

after(async () => {
  await server.stop();
  receiver.close();
});

describe("verifyWebhook", () => {
  it("accepts a delivery signed with the project's secret, and nothing else", T, async () => {
    const secret = await cli("webhook-secret");
    const { headers, body } = await delivery();
    assert.equal(await verifyWebhook(secret, headers, body), true);
    assert.equal(await verifyWebhook(secret, new Headers(headers), Buffer.from(body).toString()), true);
    assert.equal(await verifyWebhook("whsec_wrong", headers, body), false);
    assert.equal(await verifyWebhook(secret, headers, new Uint8Array([...body, 32])), false);
    assert.equal(await verifyWebhook(secret, { ...headers, "x-podium-timestamp": "1" }, body), false);
    assert.equal(await verifyWebhook(secret, headers, body, { now: Date.now() / 1000 + 3600 }), false, "a replay");
    assert.equal(await verifyWebhook(secret, {}, body), false);
  });

  it("after a rotation, a delivery verifies with the old secret and with the new one", T, async () => {
    const old = await cli("webhook-secret");
    const fresh = await cli("webhook-secret", "rotate");
    const { headers, body } = await delivery();
    assert.match(headers["x-podium-signature"], /^v1=[0-9a-f]{64}, v1=[0-9a-f]{64}$/);
    assert.equal(await verifyWebhook(fresh, headers, body), true);
    assert.equal(await verifyWebhook(old, headers, body), true);
  });

  it("matches the HMAC the Python side documents", T, async () => {
    const body = new TextEncoder().encode('{"id":"j"}');
    const mac = createHmac("sha256", "k").update('1000.{"id":"j"}').digest("hex");
    const headers = { "X-Podium-Timestamp": "1000", "X-Podium-Signature": `v1=${mac}` };
    assert.equal(await verifyWebhook("k", headers, body, { now: 1100 }), true);
    assert.equal(await verifyWebhook("k", headers, body, { now: 2000 }), false);
  });
});
