// RunPod's own JavaScript SDK (`runpod-sdk`, pinned) against a real Podium server and real workers.
// It is pointed at Podium by its `baseUrl` option (it reads no environment variable). Its runSync
// posts /runsync?wait=<timeout> and, if the job has not ended by then, polls
// /status-sync/{id}?wait=<remaining, 1000..90000> until it has.

import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import runpodSdk from "runpod-sdk";

import { marker, PodiumServer, SERVICES, waitUntil } from "./server.js";

const T = { timeout: 60_000 };
const server = new PodiumServer();
let endpoint;
let markers = 0;

/** tests/services/rp.py writes `<marker>.started` and, with `block`, waits for `<marker>.release`. */
function newMarker() {
  return marker(server, `rp${markers++}`);
}

/**
 * Every request the SDK makes (it calls the global fetch through xior), and a hook on each answer:
 * a spy on the real traffic, which passes every request and answer through unchanged.
 */
const requests = [];
let onAnswer = async () => {};
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init) => {
  requests.push(`${init?.method ?? "GET"} ${String(url).slice(server.url.length)}`);
  const answer = await realFetch(url, init);
  await onAnswer(String(url), answer.clone());
  return answer;
};

before(async () => {
  await server.start();
  const { endpoint_id: id } = await server.deploy(join(SERVICES, "rp.py"), "rpsdk");
  endpoint = runpodSdk(server.key, { baseUrl: `${server.url}/v2` }).endpoint(id);
  // A warm worker, so a job released below ends at once rather than after a cold start.
  const warm = await endpoint.runSync({ input: { value: "warm" } }, 30_000);
  assert.equal(warm.status, "COMPLETED", JSON.stringify(warm));
}, { timeout: 120_000 });

after(async () => {
  globalThis.fetch = realFetch;
  await server.stop();
});

describe("runpod-sdk", () => {
  it("runSync of a job longer than its /runsync wait resolves through /status-sync", T, async () => {
    const path = newMarker();
    const id = endpoint.endpointId;
    // The job blocks until /runsync has answered it unfinished; then it is let go.
    let answered = null;
    onAnswer = async (url, answer) => {
      if (url.includes("/runsync")) {
        answered = await answer.json();
        writeFileSync(`${path}.release`, "");
      }
    };
    requests.length = 0;
    try {
      const result = await endpoint.runSync({ input: { marker: path, block: true, value: "slow" } }, 3000);
      assert.ok(["IN_QUEUE", "IN_PROGRESS"].includes(answered.status), JSON.stringify(answered));
      assert.equal(result.status, "COMPLETED", JSON.stringify(result));
      assert.equal(result.output.value, "slow");
      assert.equal(result.id, answered.id);
      assert.equal(result.completed, true);
      assert.equal(result.succeeded, true);
      assert.deepEqual(requests[0], `POST /v2/${id}/runsync?wait=3000`);
      assert.match(requests[1], new RegExp(`^GET /v2/${id}/status-sync/${answered.id}\\?wait=\\d+$`));
    } finally {
      onAnswer = async () => {};
      writeFileSync(`${path}.release`, "");
    }
  });

  it("statusSync holds a running job up to its wait, and answers it final once it ends", T, async () => {
    const path = newMarker();
    const job = await endpoint.run({ input: { marker: path, block: true, value: "held" } });
    assert.equal(job.status, "IN_QUEUE");
    try {
      await waitUntil(() => existsSync(`${path}.started`), "the job to start");
      // Its least wait (1000 ms) passes with the job still blocked: the answer is the job as it is.
      const running = await endpoint.statusSync(job.id, 1);
      assert.equal(running.status, "IN_PROGRESS", JSON.stringify(running));
      assert.equal(running.completed, false);
      assert.equal(requests.at(-1), `GET /v2/${endpoint.endpointId}/status-sync/${job.id}?wait=1000`);
    } finally {
      writeFileSync(`${path}.release`, "");
    }
    const done = await endpoint.statusSync(job.id);
    assert.equal(done.status, "COMPLETED", JSON.stringify(done));
    assert.equal(done.output.value, "held");
    assert.equal(typeof done.executionTime, "number");
    assert.equal(done.succeeded, true);
  });

  it("a queued job's answer carries Podium's waiting, which the SDK takes in its stride", T, async () => {
    const path = newMarker();
    let raw = null;
    onAnswer = async (url, answer) => {
      if (url.endsWith("/run")) raw = await answer.json();
    };
    try {
      const job = await endpoint.run({ input: { marker: path, value: "queued" } });
      assert.equal(job.status, "IN_QUEUE", JSON.stringify(job));
      assert.equal(raw.status, "IN_QUEUE");
      assert.ok(["starting", "at_capacity"].includes(raw.waiting.reason), JSON.stringify(raw));
      assert.equal(typeof raw.waiting.detail, "string");
      assert.equal(typeof raw.waiting.since, "number");
      const done = await endpoint.statusSync(job.id);
      assert.equal(done.status, "COMPLETED", JSON.stringify(done));
    } finally {
      onAnswer = async () => {};
    }
  });

  it("an unknown job is /status's 404, which the SDK throws", T, async () => {
    const error = await endpoint.statusSync("nosuchjob", 1000).then(
      (answer) => assert.fail(`statusSync of an unknown job resolved: ${JSON.stringify(answer)}`),
      (e) => e,
    );
    assert.equal(error.response?.status, 404, String(error));
    assert.match(error.response.data.detail, /job 'nosuchjob'/, JSON.stringify(error.response.data));
  });
});
