// What podium-client sends again, against a real server whose key may make one request every
// ten seconds (PODIUM_RATE_LIMIT): a 429 with Retry-After is waited out only for requests that
// are safe to repeat; a request that never reached the server is always sent again.
//
// Each test that needs a 429 first spends the bucket's token itself (drain()), so no test counts on
// the one before it. The bucket refills once per ten seconds, not once per two: a machine that stalls
// a few seconds between drain() and the request cannot refill it and turn the 429 into a 404.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { Podium, PodiumError } from "../dist/index.js";
import { freePort, PodiumServer } from "./server.js";

const T = { timeout: 60_000 };
const server = new PodiumServer({
  port: await freePort(),
  env: { PODIUM_RATE_LIMIT: "0.1", PODIUM_RATE_BURST: "1" },
});
const client = new Podium({ url: server.url, apiKey: server.key, retries: 30 });
const once = new Podium({ url: server.url, apiKey: server.key, retries: 0 });
/** No endpoint is deployed: an answer of 404 shows the request got past the rate limit. */
const nowhere = client.endpoint("no-such-endpoint");
const isNotFound = (e) => e instanceof PodiumError && e.status === 404 && e.code === "not_found";
const isRateLimited = (e) => e instanceof PodiumError && e.status === 429 && e.code === "rate_limited";

/** Spend the key's token if the bucket holds one: the next request meets a 429. */
async function drain() {
  for (;;) {
    try {
      await once.endpoint("no-such-endpoint").health();
    } catch (e) {
      if (isRateLimited(e)) return;
      if (!isNotFound(e)) throw e; // a 404 spent the token: look again
    }
  }
}

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
    await drain();
    await assert.rejects(nowhere.run({}), isRateLimited);
    await assert.rejects(client.call("no-such-endpoint", "route", {}), isRateLimited);
  });

  it("a safe request waits out Retry-After and is sent again (without retries, its 429 is the caller's)", T, async () => {
    await drain();
    await assert.rejects(once.endpoint("no-such-endpoint").health(), isRateLimited);
    await assert.rejects(nowhere.health(), isNotFound); // used the token
  });

  it("an Idempotency-Key makes a submission safe to send again", T, async () => {
    await drain();
    await assert.rejects(nowhere.run({}), isRateLimited);
    await assert.rejects(nowhere.run({}, { idempotencyKey: "retry-test" }), isNotFound); // used the token
  });

  it("aborting while waiting out Retry-After rejects at once", T, async () => {
    const controller = new AbortController();
    const reason = new Error("no more waiting");
    await drain();
    const waiting = nowhere.health({ signal: controller.signal });
    setTimeout(() => controller.abort(reason), 100);
    await assert.rejects(waiting, (e) => e === reason);
  });
});
