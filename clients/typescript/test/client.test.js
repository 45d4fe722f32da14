// podium-client against a real Podium server (one for this file) and real workers.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { JobFailed, JobTimeout, Podium, PodiumError, RouteError } from "../dist/index.js";
import { exists, freePort, marker, PodiumServer, SERVICES, waitUntil } from "./server.js";

const T = { timeout: 60_000 };
const server = new PodiumServer();
/** @type {Podium} */
let podium;
let markers = 0;
/** name -> what `podium deploy --json` said */
const deployed = {};

/** A fresh marker path; tests/services/basic writes `<marker>.started.<attempt>` and waits for `<marker>.release`. */
function newMarker() {
  return marker(server, `m${markers++}`);
}

function release(path) {
  writeFileSync(`${path}.release`, "");
}

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

async function text(chunks) {
  const decoder = new TextDecoder();
  let out = "";
  for await (const chunk of chunks) {
    assert.ok(chunk instanceof Uint8Array);
    out += decoder.decode(chunk, { stream: true });
  }
  return out;
}

before(async () => {
  delete process.env.PODIUM_URL;
  delete process.env.PODIUM_API_KEY;
  delete process.env.PODIUM_PROJECT;
  await server.start();
  const services = {
    echo: ["handler.py"],
    rpstream: ["rpstream.py"],
    basic: ["basic"],
    blocker: ["basic", "--max-workers", "1"],
    answer: ["laminar/answer.py"],
    tokens: ["laminar/tokens.py"],
  };
  await Promise.all(Object.entries(services).map(async ([name, [path, ...args]]) => {
    deployed[name] = await server.deploy(join(SERVICES, path), name, ...args);
  }));
  podium = new Podium({ url: server.url, apiKey: server.key });
}, { timeout: 120_000 });

after(async () => {
  await server.stop();
});

describe("configuration", () => {
  it("reads PODIUM_URL and PODIUM_API_KEY when not given", T, async () => {
    process.env.PODIUM_URL = `${server.url}/`;
    process.env.PODIUM_API_KEY = server.key;
    try {
      const fromEnv = new Podium();
      assert.equal(fromEnv.url, server.url);
      assert.equal(await fromEnv.call("basic", "hello", { name: "env" }), "Hello, env! My favorite number is 42");
    } finally {
      delete process.env.PODIUM_URL;
      delete process.env.PODIUM_API_KEY;
    }
  });

  it("refuses to start without a key, or with a URL that is not http(s)", () => {
    assert.throws(() => new Podium({ url: server.url }), (e) => e instanceof PodiumError && e.code === "no_api_key");
    assert.throws(
      () => new Podium({ url: "ftp://example.org", apiKey: "k" }),
      (e) => e instanceof PodiumError && e.code === "invalid_url",
    );
  });
});

describe("endpoint jobs (RunPod surface)", () => {
  it("run answers at once; waitFor and status give the final status with the output", T, async () => {
    const echo = podium.endpoint("echo");
    const job = await echo.run({ text: "hi" });
    assert.equal(job.status, "IN_QUEUE");
    assert.equal(typeof job.id, "string");
    const final = await echo.waitFor(job.id, { timeoutMs: 30_000 });
    assert.equal(final.status, "COMPLETED");
    assert.deepEqual(final.output, { echo: { text: "hi" }, id: job.id });
    const status = await echo.status(job.id);
    assert.equal(status.id, job.id);
    assert.equal(status.status, "COMPLETED");
    assert.equal(typeof status.executionTime, "number");
  });

  it("runSync gives the output; an endpoint is found by id as well as by name", T, async () => {
    assert.deepEqual((await podium.endpoint("echo").runSync({ n: 1 })).echo, { n: 1 });
    const id = deployed.echo.endpoint_id;
    assert.notEqual(id, "echo");
    assert.deepEqual((await podium.endpoint(id).runSync({ n: 2 })).echo, { n: 2 });
  });

  it("a failed job: runSync throws JobFailed, waitFor gives FAILED, retry queues it again", T, async () => {
    const echo = podium.endpoint("echo");
    const failed = await echo.runSync({ fail: "yes" }).then(
      () => assert.fail("runSync of a failing job resolved"),
      (e) => e,
    );
    assert.ok(failed instanceof JobFailed, String(failed));
    assert.ok(failed instanceof PodiumError);
    assert.equal(failed.jobStatus, "FAILED");
    assert.match(String(failed.error), /asked to fail: yes/);
    const final = await echo.waitFor(failed.jobId);
    assert.equal(final.status, "FAILED");
    assert.match(final.error, /asked to fail: yes/);
    const again = await echo.retry(failed.jobId);
    assert.deepEqual(again, { id: failed.jobId, status: "IN_QUEUE" });
    assert.equal((await echo.waitFor(failed.jobId)).status, "FAILED");
  });

  it("stream gives each chunk a generator handler yields, then ends with the job", T, async () => {
    const rp = podium.endpoint("rpstream");
    const job = await rp.run({ n: 4 });
    assert.deepEqual(await collect(rp.stream(job.id, { timeoutMs: 30_000 })), [{ i: 0 }, { i: 1 }, { i: 2 }, { i: 3 }]);
    assert.equal((await rp.status(job.id)).status, "COMPLETED");
  });

  it("health counts jobs by state and workers", T, async () => {
    const health = await podium.endpoint("echo").health();
    assert.ok(health.jobs.completed >= 1);
    assert.ok(health.jobs.failed >= 1);
    assert.equal(typeof health.jobs.inQueue, "number");
    assert.equal(typeof health.workers, "object");
  });

  it("a queued job: JobTimeout from runSync and waitFor, purgeQueue removes it, cancel stops the running one", T, async () => {
    const blocker = podium.endpoint("blocker"); // one worker at most
    const m = newMarker();
    const running = await blocker.run({ marker: m, block: true });
    await waitUntil(() => exists(`${m}.started.1`), "the blocking job to start");

    const late = await blocker.runSync({ value: 1 }, { timeoutMs: 1_000 }).then(
      () => assert.fail("runSync behind a blocked worker resolved"),
      (e) => e,
    );
    assert.ok(late instanceof JobTimeout, String(late));
    assert.equal(typeof late.jobId, "string");
    assert.equal((await blocker.status(late.jobId)).status, "IN_QUEUE");
    await assert.rejects(blocker.waitFor(running.id, { timeoutMs: 300 }),
      (e) => e instanceof JobTimeout && e.jobId === running.id);

    assert.equal(await blocker.purgeQueue(), 1);
    assert.equal((await blocker.status(late.jobId)).status, "CANCELLED");

    assert.deepEqual(await blocker.cancel(running.id), { id: running.id, status: "CANCELLED" });
    assert.equal((await blocker.waitFor(running.id)).status, "CANCELLED");
    release(m);
  });

  it("a stream of a cancelled job ends with JobFailed", T, async () => {
    const blocker = podium.endpoint("blocker");
    const m = newMarker();
    const job = await blocker.run({ marker: m, block: true });
    await waitUntil(() => exists(`${m}.started.1`), "the blocking job to start");
    const chunks = [];
    const reading = (async () => {
      for await (const chunk of blocker.stream(job.id)) chunks.push(chunk);
    })();
    await blocker.cancel(job.id);
    await assert.rejects(reading, (e) => e instanceof JobFailed && e.jobStatus === "CANCELLED" && e.jobId === job.id);
    assert.deepEqual(chunks, []);
    release(m);
  });
});

describe("route calls", () => {
  it("call gives the route's JSON answer; the route is named with or without its slash", T, async () => {
    assert.equal(await podium.call("basic", "/hello", { name: "TS" }), "Hello, TS! My favorite number is 42");
    assert.equal(await podium.call("basic", "hello", { greeting: "Hi" }), "Hi, world! My favorite number is 42");
    const work = await podium.call("basic", "work", { value: [1, "two", { three: 3 }] });
    assert.deepEqual(work.value, [1, "two", { three: 3 }]);
  });

  it("env reaches the route for this call only", T, async () => {
    const out = await podium.call("answer", "answer", { question: "why" }, { env: { TOKEN: "s3cret" } });
    assert.deepEqual(out, { answer: "plain: why?", env_names: ["TOKEN"], env_len: 6 });
    assert.deepEqual((await podium.call("answer", "answer", { question: "why" })).env_names, []);
  });

  it("an Idempotency-Key gives the first job back instead of running the route again", T, async () => {
    const key = `ts-${Date.now()}-${Math.random()}`;
    const first = await podium.call("basic", "work", { value: 7 }, { idempotencyKey: key });
    const second = await podium.call("basic", "work", { value: 7 }, { idempotencyKey: key });
    assert.equal(second.job, first.job);
    const third = await podium.call("basic", "work", { value: 7 });
    assert.notEqual(third.job, first.job);

    const echo = podium.endpoint("echo");
    const runKey = `${key}-run`;
    const a = await echo.run({ n: 3 }, { idempotencyKey: runKey });
    const b = await echo.run({ n: 3 }, { idempotencyKey: runKey });
    assert.equal(b.id, a.id);
  });

  it("a route that raises gives RouteError with the remote type, message and job", T, async () => {
    const error = await podium.call("basic", "fail", { message: "nope" }).then(
      () => assert.fail("a failing route resolved"),
      (e) => e,
    );
    assert.ok(error instanceof RouteError, String(error));
    assert.equal(error.status, 500);
    assert.equal(error.code, "route_error");
    assert.equal(error.errorType, "ValueError");
    assert.equal(error.errorMessage, "nope");
    assert.match(error.traceback, /ValueError/);
    assert.equal(typeof error.jobId, "string");
  });

  it("a route raising podium.NotFound or HTTPError gives a PodiumError of that status", T, async () => {
    await assert.rejects(podium.call("basic", "item", { id: 2 }),
      (e) => e instanceof PodiumError && !(e instanceof RouteError) && e.status === 404 && e.code === "not_found"
        && e.detail === "no item 2");
    await assert.rejects(podium.call("basic", "fail", { message: "taken", status: 409 }),
      (e) => e instanceof PodiumError && e.status === 409 && e.code === "conflict" && e.detail === "taken");
  });

  it("bad arguments and unknown routes are 4xx PodiumErrors", T, async () => {
    await assert.rejects(podium.call("basic", "hello", { colour: "red" }),
      (e) => e instanceof PodiumError && e.status === 400 && e.code === "invalid_arguments" && /colour/.test(e.detail));
    await assert.rejects(podium.call("basic", "nowhere", {}),
      (e) => e instanceof PodiumError && e.status === 404 && e.code === "not_found" && /nowhere/.test(e.detail));
  });

  it("call on a streaming route points at callStream", T, async () => {
    await assert.rejects(podium.call("tokens", "tokens", { n: 2 }),
      (e) => e instanceof PodiumError && e.code === "not_json" && /callStream/.test(e.message));
  });
});

describe("routes as jobs", () => {
  it("submit runs a route as a job (202, respond-async), followed with waitFor", T, async () => {
    const job = await podium.submit("basic", "/hello", { name: "Async" });
    assert.equal(job.status, "IN_QUEUE");
    const final = await podium.endpoint("basic").waitFor(job.id, { timeoutMs: 30_000 });
    assert.equal(final.status, "COMPLETED");
    assert.equal(final.output, "Hello, Async! My favorite number is 42");
  });

  it("run and runSync take a route beside the input", T, async () => {
    const basic = podium.endpoint("basic");
    const job = await basic.run({ name: "Run" }, { route: "/hello" });
    assert.equal((await basic.waitFor(job.id, { timeoutMs: 30_000 })).output, "Hello, Run! My favorite number is 42");
    assert.equal(await basic.runSync({ number: 3 }, { route: "hello" }), "Hello, world! My favorite number is 3");
  });

  it("bad arguments and unknown routes are refused at submit", T, async () => {
    await assert.rejects(podium.submit("basic", "hello", { colour: "red" }),
      (e) => e instanceof PodiumError && e.status === 400 && e.code === "invalid_arguments");
    await assert.rejects(podium.submit("basic", "nowhere", {}),
      (e) => e instanceof PodiumError && e.status === 404 && e.code === "not_found");
    await assert.rejects(podium.endpoint("basic").run({}, { route: "/nowhere" }),
      (e) => e instanceof PodiumError && e.status === 404 && /\/hello/.test(e.detail));
  });

  it("a job behind a cold start says it waits for a worker to start, then completes", T, async () => {
    const dir = mkdtempSync(join(tmpdir(), "podium-ts-cold-"));
    const gate = join(dir, "gate");
    writeFileSync(join(dir, "app.py"), [
      "import time, pathlib, podium",
      `GATE = pathlib.Path(${JSON.stringify(gate)})`,
      "@podium.service(name='cold', min_workers=0, max_workers=1)",
      "def init():",
      "    while not GATE.exists():",
      "        time.sleep(0.02)",
      "    return {}",
      "@init.endpoint('/echo', default=True)",
      "def echo(value=None):",
      "    return {'value': value}",
      "",
    ].join("\n"));
    const cold = podium.endpoint("cold");
    let job;
    try {
      await server.deploy(join(dir, "app.py"), "cold", "--no-wait");
      job = await cold.run({ value: 1 });
      const waiting = await waitUntil(async () => (await cold.status(job.id)).waiting, "the waiting reason");
      assert.equal(waiting.reason, "starting");
      assert.match(waiting.detail, /cold start/);
      assert.equal(typeof waiting.since, "number");
    } finally {
      writeFileSync(gate, "");
    }
    const final = await cold.waitFor(job.id, { timeoutMs: 30_000 });
    assert.deepEqual(final.output, { value: 1 });
    assert.equal(final.waiting, undefined);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe("streaming route calls", () => {
  it("callStream gives the bytes the route yields", T, async () => {
    assert.equal(await text(podium.callStream("tokens", "tokens", { n: 3 })), "t0 t1 t2 ");
  });

  it("a chunk arrives while the route is still running", T, async () => {
    const m = newMarker();
    const stream = podium.callStream("basic", "stream", { marker: m, items: 2 });
    const decoder = new TextDecoder();
    const first = await stream.next();
    assert.equal(decoder.decode(first.value), "first\n");
    release(m);
    let rest = "";
    for await (const chunk of stream) rest += decoder.decode(chunk, { stream: true });
    assert.equal(rest, "item 0\nitem 1\n");
  });

  it("a route that fails before its first chunk gives RouteError", T, async () => {
    await assert.rejects(text(podium.callStream("tokens", "tokens", { n: 3, fail_at: 0 })),
      (e) => e instanceof RouteError && e.errorType === "ValueError" && /token 0/.test(e.errorMessage));
  });

  it("a route that fails mid-stream gives its chunks, then JobFailed with the route's error", T, async () => {
    const got = [];
    const failed = await (async () => {
      for await (const chunk of podium.callStream("tokens", "tokens", { n: 4, fail_at: 2 })) got.push(chunk);
    })().then(() => assert.fail("a failing stream ended cleanly"), (e) => e);
    assert.ok(failed instanceof JobFailed, String(failed));
    assert.equal(failed.jobStatus, "FAILED");
    assert.match(String(failed.error), /failed at token 2/);
    assert.equal(new TextDecoder().decode(Buffer.concat(got)), "t0 t1 ");
  });
});

describe("route calls as server-sent events", () => {
  it("callEvents gives a NodeChunk per chunk, then the GraphRunOutput", T, async () => {
    const events = await collect(podium.callEvents("tokens", "/tokens", { n: 2 }));
    assert.deepEqual(events.slice(0, 2), [{ type: "NodeChunk", content: "t0 " }, { type: "NodeChunk", content: "t1 " }]);
    assert.equal(events.length, 3);
    assert.equal(events[2].type, "GraphRunOutput");
  });

  it("a plain route's answer is one GraphRunOutput; env reaches it", T, async () => {
    const events = await collect(podium.callEvents("answer", "answer", { question: "how" }, { env: { A: "1" } }));
    assert.equal(events.length, 1);
    assert.deepEqual(events[0].outputs, { answer: { value: "plain: how?" }, env_names: { value: '["A"]' }, env_len: { value: "1" } });
  });

  it("a route that fails ends the events with JobFailed", T, async () => {
    await assert.rejects(collect(podium.callEvents("basic", "fail", { message: "sse" })),
      (e) => e instanceof JobFailed && /ValueError: sse/.test(String(e.error)));
  });
});

describe("pipeline runs (Laminar surface)", () => {
  it("pipelineRun gives the outputs and the run id", T, async () => {
    const res = await podium.pipelineRun({ pipeline: "answer", inputs: { question: "why" }, env: { KEY: "abc" } });
    assert.equal(typeof res.runId, "string");
    assert.deepEqual(res.outputs, {
      answer: { value: "plain: why?" }, env_names: { value: '["KEY"]' }, env_len: { value: "3" },
    });
  });

  it("stream: true gives NodeChunk events, then one GraphRunOutput", T, async () => {
    const events = await collect(podium.pipelineRun({ pipeline: "tokens", inputs: { n: 3 }, stream: true }));
    assert.deepEqual(events.slice(0, 3), [
      { type: "NodeChunk", content: "t0 " }, { type: "NodeChunk", content: "t1 " }, { type: "NodeChunk", content: "t2 " },
    ]);
    assert.equal(events.length, 4);
    assert.equal(events[3].type, "GraphRunOutput");
    assert.deepEqual(events[3].outputs, { output: { value: "null" } });
    assert.equal(typeof events[3].runId, "string");
  });

  it("a run that fails mid-stream gives its chunks, then JobFailed", T, async () => {
    const events = [];
    const failed = await (async () => {
      for await (const event of podium.pipelineRun({ pipeline: "tokens", inputs: { n: 3, fail_at: 1 }, stream: true })) {
        events.push(event);
      }
    })().then(() => assert.fail("a failing run ended cleanly"), (e) => e);
    assert.deepEqual(events, [{ type: "NodeChunk", content: "t0 " }]);
    assert.ok(failed instanceof JobFailed, String(failed));
    assert.match(String(failed.error), /failed at token 1/);
    assert.equal(typeof failed.jobId, "string");
  });

  it("Laminar's error codes: an unknown pipeline, a missing input", T, async () => {
    await assert.rejects(podium.pipelineRun({ pipeline: "nope" }),
      (e) => e instanceof PodiumError && e.status === 400 && e.code === "api.noTargetPipeline" && /nope/.test(e.detail));
    await assert.rejects(podium.pipelineRun({ pipeline: "nope", stream: true }).next(),
      (e) => e instanceof PodiumError && e.status === 400 && e.code === "api.noTargetPipeline");
    await assert.rejects(podium.pipelineRun({ pipeline: "answer", inputs: {} }),
      (e) => e instanceof PodiumError && e.status === 400 && e.code === "api.missingGraphInput" && /question/.test(e.detail));
  });
});

describe("errors", () => {
  it("a bad key is 401 unauthorized, everywhere", T, async () => {
    const bad = new Podium({ url: server.url, apiKey: "pod_live_not_a_key" });
    const isUnauthorized = (e) => e instanceof PodiumError && e.status === 401 && e.code === "unauthorized";
    await assert.rejects(bad.endpoint("echo").run({}), isUnauthorized);
    await assert.rejects(bad.endpoint("echo").health(), isUnauthorized);
    await assert.rejects(bad.call("basic", "hello", {}), isUnauthorized);
    await assert.rejects(bad.callStream("tokens", "tokens", {}).next(), isUnauthorized);
    await assert.rejects(bad.callEvents("tokens", "tokens", {}).next(), isUnauthorized);
    await assert.rejects(bad.pipelineRun({ pipeline: "answer", inputs: { question: "q" } }), isUnauthorized);
    const caught = await bad.endpoint("echo").health().catch((e) => e);
    assert.ok(!String(caught.message).includes("pod_live_not_a_key"), "the key is not echoed");
  });

  it("an unknown endpoint or job is 404 not_found", T, async () => {
    const isNotFound = (e) => e instanceof PodiumError && e.status === 404 && e.code === "not_found";
    await assert.rejects(podium.endpoint("no-such-endpoint").run({}), isNotFound);
    await assert.rejects(podium.endpoint("no-such-endpoint").runSync({}), isNotFound);
    await assert.rejects(podium.endpoint("no-such-endpoint").health(), isNotFound);
    await assert.rejects(podium.call("no-such-endpoint", "hello", {}), isNotFound);
    await assert.rejects(podium.endpoint("echo").status("no-such-job"), isNotFound);
    await assert.rejects(podium.endpoint("echo").cancel("no-such-job"), isNotFound);
  });

  it("retrying a job that completed is 400 not_retryable", T, async () => {
    const echo = podium.endpoint("echo");
    const job = await echo.run({});
    await echo.waitFor(job.id);
    await assert.rejects(echo.retry(job.id), (e) => e instanceof PodiumError && e.status === 400 && e.code === "not_retryable");
  });

  it("malformed job options are 400s with the server's explanation", T, async () => {
    await assert.rejects(podium.endpoint("echo").run({}, { policy: { executionTimeout: 1 } }),
      (e) => e instanceof PodiumError && e.status === 400 && e.code === "invalid_policy");
    await assert.rejects(podium.endpoint("echo").run({}, { webhook: "not a url" }),
      (e) => e instanceof PodiumError && e.status === 400 && e.code === "invalid_webhook");
  });

  it("an unreachable server is a PodiumError that says so", T, async () => {
    const nowhere = new Podium({ url: `http://127.0.0.1:${await freePort()}`, apiKey: "k", retries: 1 });
    await assert.rejects(nowhere.endpoint("echo").health(),
      (e) => e instanceof PodiumError && e.code === "unreachable" && e.status === null && /podium up/.test(e.message));
  });
});

describe("abort and timeouts", () => {
  const isAbort = (e) => e instanceof Error && e.name === "AbortError" && !(e instanceof PodiumError);

  it("an already aborted signal rejects at once with its reason", T, async () => {
    const controller = new AbortController();
    const reason = new Error("changed my mind");
    controller.abort(reason);
    await assert.rejects(podium.endpoint("echo").health({ signal: controller.signal }), (e) => e === reason);
    await assert.rejects(podium.call("basic", "hello", {}, { signal: controller.signal }), (e) => e === reason);
  });

  it("aborting a runSync that waits on the server rejects it; the job goes on", T, async () => {
    const basic = podium.endpoint("basic");
    const m = newMarker();
    const controller = new AbortController();
    const waiting = basic.runSync({ marker: m, block: true, value: "kept" }, { signal: controller.signal });
    await waitUntil(() => exists(`${m}.started.1`), "the job to start");
    controller.abort();
    await assert.rejects(waiting, isAbort);
    release(m);
  });

  it("aborting waitFor and stream while they poll rejects them", T, async () => {
    const blocker = podium.endpoint("blocker");
    const m = newMarker();
    const job = await blocker.run({ marker: m, block: true });
    await waitUntil(() => exists(`${m}.started.1`), "the blocking job to start");
    const controller = new AbortController();
    const waiting = blocker.waitFor(job.id, { signal: controller.signal });
    const streaming = collect(blocker.stream(job.id, { signal: controller.signal }));
    setTimeout(() => controller.abort(), 200);
    await assert.rejects(waiting, isAbort);
    await assert.rejects(streaming, isAbort);
    release(m);
    assert.equal((await blocker.waitFor(job.id, { timeoutMs: 30_000 })).status, "COMPLETED");
  });

  it("aborting a callStream mid-stream rejects the next read", T, async () => {
    const m = newMarker();
    const controller = new AbortController();
    const stream = podium.callStream("basic", "stream", { marker: m }, { signal: controller.signal });
    assert.equal(new TextDecoder().decode((await stream.next()).value), "first\n");
    const next = stream.next();
    controller.abort();
    await assert.rejects(next, isAbort);
    release(m);
  });

  it("aborting a pipeline event stream rejects it", T, async () => {
    const controller = new AbortController();
    const events = podium.pipelineRun({ pipeline: "tokens", inputs: { n: 2, pause: 2 }, stream: true, signal: controller.signal });
    assert.equal((await events.next()).value.type, "NodeChunk");
    const next = events.next();
    controller.abort();
    await assert.rejects(next, isAbort);
  });

  it("a call that outlasts its timeoutMs is a JobTimeout", T, async () => {
    const m = newMarker();
    await assert.rejects(podium.call("basic", "work", { marker: m, block: true }, { timeoutMs: 500 }),
      (e) => e instanceof JobTimeout && e.jobId === null && /timed out/.test(e.message));
    release(m);
  });
});
