// What podium-client sends again, against a real server whose key may make one request every
// two seconds (PODIUM_RATE_LIMIT): a 429 with Retry-After is waited out only for requests that
// are safe to repeat; a request that never reached the server is always sent again.
//
// The tests run in order and share the key's rate bucket; each says which request used the token.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { Podium, PodiumError } from "../dist/index.js";
import { freePort, PodiumServer } from "./server.js";

const T = { timeout: 60_000 };
const server = new PodiumServer({
  port: await freePort(),
  env: { PODIUM_RATE_LIMIT: "0.5", PODIUM_RATE_BURST: "1" },
});
const client = new Podium({ url: server.url, apiKey: server.key, retries: 30 });
/** No endpoint is deployed: an answer of 404 shows the request got past the rate limit. */
const nowhere = client.endpoint("no-such-endpoint");
const isNotFound = (e) => e instanceof PodiumError && e.status === 404 && e.code === "not_found";
const isRateLimited = (e) => e instanceof PodiumError && e.status === 429 && e.code === "rate_limited";

after(async () => {
  await server.stop();
});

describe("retries", () => {
  it("a request that never reached the server is sent again, even one that creates a job", T, async () => {
    const sent = nowhere.run({}); // the server is not listening yet: connection refused
    await server.spawn();
    await server.ready();
    await assert.rejects(sent, isNotFound); // it got through (and used the token)
  });

  it("a 429 on a request that is not safe to repeat is the caller's to handle", T, async () => {
    await assert.rejects(nowhere.run({}), isRateLimited);
    await assert.rejects(client.call("no-such-endpoint", "route", {}), isRateLimited);
  });

  it("a safe request waits out Retry-After and is sent again (without retries, its 429 is the caller's)", T, async () => {
    const once = new Podium({ url: server.url, apiKey: server.key, retries: 0 });
    await assert.rejects(once.endpoint("no-such-endpoint").health(), isRateLimited);
    await assert.rejects(nowhere.health(), isNotFound); // used the token
  });

  it("an Idempotency-Key makes a submission safe to send again", T, async () => {
    await assert.rejects(nowhere.run({}), isRateLimited);
    await assert.rejects(nowhere.run({}, { idempotencyKey: "retry-test" }), isNotFound); // used the token
  });

  it("aborting while waiting out Retry-After rejects at once", T, async () => {
    const controller = new AbortController();
    const reason = new Error("no more waiting");
    const waiting = nowhere.health({ signal: controller.signal });
    setTimeout(() => controller.abort(reason), 100);
    await assert.rejects(waiting, (e) => e === reason);
  });
});
