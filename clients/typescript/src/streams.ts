/** Reading a response body as it arrives: raw chunks, or server-sent events. */

/** The body's chunks as they arrive. Stopping the loop early cancels the rest of the body. */
export async function* bodyChunks(response: Response): AsyncGenerator<Uint8Array, void, undefined> {
  if (response.body === null) {
    return;
  }
  // getReader(), not `for await` over the body: Safari's ReadableStream is not async-iterable.
  const reader = response.body.getReader();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        return;
      }
      if (value.byteLength > 0) {
        yield value;
      }
    }
  } finally {
    if (!finished) {
      await reader.cancel().catch(() => undefined);
    }
  }
}

/** One server-sent event: its `event:` name ("message" when none) and its joined `data:` lines. */
export interface ServerEvent {
  event: string;
  data: string;
}

/** Server-sent events (the WHATWG event-stream format) from a stream of bytes. Comments (the
 * server's keep-alives) are skipped; an event the stream cut off before its blank line is dropped. */
export async function* serverEvents(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<ServerEvent, void, undefined> {
  const decoder = new TextDecoder();
  const parser = new EventParser();
  for await (const chunk of chunks) {
    yield* parser.feed(decoder.decode(chunk, { stream: true }));
  }
  yield* parser.feed(decoder.decode(), true);
}

class EventParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";

  *feed(text: string, end = false): Generator<ServerEvent> {
    this.buffer += text;
    for (;;) {
      const at = this.buffer.search(/[\r\n]/);
      // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
      if (at < 0 || (!end && at === this.buffer.length - 1 && this.buffer[at] === "\r")) {
        break;
      }
      const line = this.buffer.slice(0, at);
      this.buffer = this.buffer.slice(at + (this.buffer.startsWith("\r\n", at) ? 2 : 1));
      const event = this.line(line);
      if (event !== null) {
        yield event;
      }
    }
  }

  private line(line: string): ServerEvent | null {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return null;
      }
      const event = { event: this.event || "message", data: this.data.join("\n") };
      this.data = [];
      this.event = "";
      return event;
    }
    if (line.startsWith(":")) {
      return null;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) {
      value = value.slice(1);
    }
    if (field === "data") {
      this.data.push(value);
    } else if (field === "event") {
      this.event = value;
    }
    return null;
  }
}
