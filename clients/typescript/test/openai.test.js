// The real `openai` npm package against Podium's OpenAI-compatible routes
// (/v2/{endpoint}/openai/v1/...): a RunPod worker written the way worker-vllm handles OpenAI routes,
// and a Podium service whose openai=True routes yield text (tests/services/openai).

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import OpenAI from "openai";

import { PodiumServer, SERVICES } from "./server.js";

const T = { timeout: 60_000 };
const server = new PodiumServer();
const ids = {};
const HELLO = [{ role: "user", content: "one two three" }];

function client(name, apiKey = server.key) {
  return new OpenAI({ baseURL: `${server.url}/v2/${ids[name] ?? name}/openai/v1`, apiKey, maxRetries: 0 });
}

before(async () => {
  await server.start();
  const files = { rp: "openai/rp_worker.py", svc: "openai/service.py" };
  await Promise.all(Object.entries(files).map(async ([name, path]) => {
    ids[name] = (await server.deploy(join(SERVICES, path), name)).endpoint_id;
  }));
}, { timeout: 180_000 });

after(async () => {
  await server.stop();
});

describe("the openai package", () => {
  for (const name of ["rp", "svc"]) {
    it(`${name}: a chat completion, whole and streamed`, T, async () => {
      const answer = await client(name).chat.completions.create({ model: "tiny-reverse", messages: HELLO });
      assert.equal(answer.object, "chat.completion");
      assert.equal(answer.choices[0].message.content, "three two one");
      const stream = await client(name).chat.completions.create({ model: "tiny-reverse", messages: HELLO, stream: true });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      assert.equal(chunks.map((c) => c.choices[0].delta.content ?? "").join(""), "three two one");
      assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
    });
  }

  it("models.list", T, async () => {
    const rp = [];
    for await (const model of client("rp").models.list()) rp.push(model.id);
    assert.deepEqual(rp, ["tiny-reverse"]);
    const svc = [];
    for await (const model of client("svc").models.list()) svc.push(model.id);
    assert.deepEqual(svc, ["tiny-reverse", "tiny-embed"]);
  });

  it("embeddings", T, async () => {
    const answer = await client("svc").embeddings.create({ model: "tiny-embed", input: "ab c" });
    assert.deepEqual(answer.data[0].embedding, [4, 2, 3]);
  });

  it("errors are the package's typed errors", T, async () => {
    await assert.rejects(client("rp", "pk-not-a-key").models.list(), OpenAI.AuthenticationError);
    await assert.rejects(client("no-such-endpoint").models.list(), OpenAI.NotFoundError);
    await assert.rejects(
      client("rp").chat.completions.create({ model: "m", messages: HELLO, temperature: 3 }),
      (error) => error instanceof OpenAI.BadRequestError && /temperature must be at most 2/.test(error.message),
    );
    await assert.rejects(
      client("rp").chat.completions.create({ model: "crash", messages: HELLO }),
      (error) => error instanceof OpenAI.InternalServerError && /the model crashed/.test(error.message),
    );
  });
});
