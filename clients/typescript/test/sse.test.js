// The server-sent-event parser on its own, with the byte splits and line endings a network and
// other servers may produce (the server tests only see Podium's own framing).

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { serverEvents } from "../dist/streams.js";

async function* pieces(text, size) {
  const bytes = new TextEncoder().encode(text);
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

async function parse(text, size) {
  const events = [];
  for await (const event of serverEvents(pieces(text, size))) events.push(event);
  return events;
}

describe("serverEvents", () => {
  const stream = [
    ": keep-alive",
    "",
    'data: {"type":"NodeChunk","content":"héllo"}',
    "",
    "event: note",
    "data: line one",
    "data:line two",
    "id: 7",
    "retry: 100",
    "",
    "",
    "data",
    "",
    "data: cut off before its blank line",
  ];

  for (const [ending, name] of [["\n", "LF"], ["\r\n", "CRLF"], ["\r", "CR"]]) {
    for (const size of [1, 2, 3, 1000]) {
      it(`${name} line endings, read ${size} byte(s) at a time`, async () => {
        assert.deepEqual(await parse(stream.join(ending), size), [
          { event: "message", data: '{"type":"NodeChunk","content":"héllo"}' },
          { event: "note", data: "line one\nline two" },
          { event: "message", data: "" },
        ]);
      });
    }
  }

  it("an empty stream has no events", async () => {
    assert.deepEqual(await parse("", 1), []);
  });
});
