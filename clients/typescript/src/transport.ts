/**
 * One request to the server: sent with the key, timed out, aborted with the caller's signal, sent
 * again only where that is safe, and an error answer turned into a {@link PodiumError}.
 *
 * Mirrors the Python client (podium/client/jobs.py): a call that never reached the server may
 * always go again; a call marked `safe` (asking twice changes nothing: a status, a cancel, a
 * request with an Idempotency-Key) also after a network error or a 429/503 answer, after the
 * server's Retry-After. Creating a job twice, or losing a drained /stream chunk, is worse than an
 * error, so nothing else is repeated.
 */

import type { Settings } from "./config.js";
import { answerError, JobTimeout, PodiumError } from "./errors.js";

/** When a call may be sent again: `safe` after any failure that left nothing done, `unsent` only
 * when it never reached the server. */
export type Repeat = "safe" | "unsent";

export interface Call {
  method: "GET" | "POST";
  path: string;
  query?: Record<string, string | number>;
  /** Sent as JSON when present. */
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs: number;
  repeat: Repeat;
  signal?: AbortSignal | undefined;
}

/** An answer whose headers came and whose body is for the caller to read; `done()` after. */
export interface Opened {
  response: Response;
  done(): void;
}

/** Answers that mean "not now, nothing done". */
const RETRY_STATUSES = new Set([429, 503]);
/** First and largest pause between attempts of one call, in ms (jittered). */
const RETRY_BASE_MS = 250;
const RETRY_CAP_MS = 4_000;
/** A server's Retry-After is honoured up to this long. */
const RETRY_AFTER_CAP_MS = 10_000;
/** Pauses between polls of a job: quick for short jobs, gentle for long ones. */
const POLL_FIRST_MS = 50;
const POLL_CAP_MS = 1_000;
/** Node's error codes for a connection that was never made: the request never left. */
const UNSENT_CODES = new Set([
  "ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
]);

export function describeCall(call: Call): string {
  return `${call.method} ${call.path}`;
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Exponential backoff with jitter, so clients that failed together do not return together. */
export function backoff(attempt: number): number {
  const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Pauses between polls of one job. */
export function* pollDelays(): Generator<number, never> {
  for (let n = 0; ; n++) {
    yield Math.min(POLL_CAP_MS, POLL_FIRST_MS * 2 ** n);
  }
}

/** Milliseconds a Retry-After header asks for (seconds or an HTTP date), capped; null if absent or bad. */
export function retryAfter(value: string | null): number | null {
  if (!value) {
    return null;
  }
  let ms = Number(value) * 1000;
  if (Number.isNaN(ms)) {
    ms = Date.parse(value) - Date.now();
    if (Number.isNaN(ms)) {
      return null;
    }
  }
  return Math.min(Math.max(ms, 0), RETRY_AFTER_CAP_MS);
}

/** A timer and the caller's signal as one signal for fetch, remembering which one fired. */
class Watch {
  readonly signal: AbortSignal;
  timedOut = false;
  private readonly controller = new AbortController();
  private readonly timer: ReturnType<typeof setTimeout>;
  private readonly onAbort: () => void;

  constructor(private readonly outer: AbortSignal | undefined, ms: number) {
    this.signal = this.controller.signal;
    this.onAbort = () => this.controller.abort(outer?.reason);
    if (outer?.aborted) {
      this.onAbort();
    } else {
      outer?.addEventListener("abort", this.onAbort, { once: true });
    }
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, ms);
  }

  stopTimer(): void {
    clearTimeout(this.timer);
  }

  dispose(): void {
    this.stopTimer();
    this.outer?.removeEventListener("abort", this.onAbort);
  }
}

type Outcome =
  | { kind: "answer"; response: Response; text: string | null }
  | { kind: "failed"; error: unknown };

function errorCode(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown; errors?: { code?: unknown }[] } } | null)?.cause;
  const code = cause?.code ?? cause?.errors?.[0]?.code;
  return typeof code === "string" ? code : undefined;
}

export class Transport {
  readonly url: string;

  constructor(private readonly settings: Settings) {
    this.url = settings.url;
  }

  get timeoutMs(): number {
    return this.settings.timeoutMs;
  }

  get callTimeoutMs(): number {
    return this.settings.callTimeoutMs;
  }

  /** The decoded JSON answer to `call` (null for an empty body). */
  async json<T>(call: Call): Promise<T> {
    return (await this.answer<T>(call)).body;
  }

  /** The decoded JSON answer to `call` and the answer's headers. */
  async answer<T>(call: Call): Promise<{ body: T; headers: Headers }> {
    const { response, text, watch } = await this.exchange(call, true);
    watch.dispose();
    if (!text) {
      return { body: null as T, headers: response.headers };
    }
    try {
      return { body: JSON.parse(text) as T, headers: response.headers };
    } catch {
      throw new PodiumError(
        `${describeCall(call)} answered HTTP ${response.status} without JSON: is ${this.url} a Podium server?`,
        { status: response.status, code: "not_json", detail: text.slice(0, 500) },
      );
    }
  }

  /** The answer to `call` once its headers came, body unread. The timeout covers the wait for
   * the headers only; the caller's signal covers the body too, until `done()`. */
  async open(call: Call): Promise<Opened> {
    const { response, watch } = await this.exchange(call, false);
    watch.stopTimer();
    return { response, done: () => watch.dispose() };
  }

  private async exchange(call: Call, readBody: boolean): Promise<{ response: Response; text: string | null; watch: Watch }> {
    for (let attempt = 0; ; attempt++) {
      call.signal?.throwIfAborted();
      const watch = new Watch(call.signal, call.timeoutMs);
      const outcome = await this.send(call, watch, readBody);
      const delay = attempt < this.settings.retries ? this.retryDelay(call, outcome, watch) : null;
      if (delay === null) {
        if (outcome.kind === "answer" && outcome.response.status < 400) {
          return { response: outcome.response, text: outcome.text, watch };
        }
        watch.dispose();
        throw this.failure(call, outcome, watch);
      }
      watch.dispose();
      await sleep(Math.max(delay, backoff(attempt)), call.signal);
    }
  }

  private async send(call: Call, watch: Watch, readBody: boolean): Promise<Outcome> {
    const headers: Record<string, string> = { ...this.settings.headers, ...call.headers };
    let body: string | undefined;
    if (call.body !== undefined) {
      body = JSON.stringify(call.body);
      headers["Content-Type"] = "application/json";
    }
    try {
      const response = await fetch(this.address(call), { method: call.method, headers, body, signal: watch.signal });
      const text = readBody || response.status >= 400 ? await response.text() : null;
      return { kind: "answer", response, text };
    } catch (error) {
      return { kind: "failed", error };
    }
  }

  private address(call: Call): string {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(call.query ?? {})) {
      query.set(name, String(value));
    }
    const q = query.toString();
    return `${this.url}${call.path}${q ? `?${q}` : ""}`;
  }

  /** How long to wait before sending `call` again, or null if it must not be sent again. */
  private retryDelay(call: Call, outcome: Outcome, watch: Watch): number | null {
    if (outcome.kind === "answer") {
      if (call.repeat === "safe" && RETRY_STATUSES.has(outcome.response.status)) {
        return retryAfter(outcome.response.headers.get("Retry-After")) ?? 0;
      }
      return null;
    }
    if (call.signal?.aborted || watch.timedOut) {
      return null;
    }
    if (UNSENT_CODES.has(errorCode(outcome.error) ?? "") || call.repeat === "safe") {
      return 0;
    }
    return null;
  }

  /** The error to throw for an outcome that is not a good answer. */
  private failure(call: Call, outcome: Outcome, watch: Watch): unknown {
    if (outcome.kind === "answer") {
      return answerError(outcome.response.status, outcome.text ?? "");
    }
    if (call.signal?.aborted) {
      return call.signal.reason;
    }
    if (watch.timedOut) {
      return new JobTimeout(`${describeCall(call)} timed out after ${call.timeoutMs / 1000} s`);
    }
    const code = errorCode(outcome.error);
    if (code !== undefined && UNSENT_CODES.has(code)) {
      return new PodiumError(`cannot reach Podium at ${this.url} (${code}): is \`podium up\` running?`, {
        code: "unreachable", cause: outcome.error,
      });
    }
    const why = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
    return new PodiumError(`${describeCall(call)} failed: ${why}${code ? ` (${code})` : ""}`, {
      code: "network_error", cause: outcome.error,
    });
  }
}
