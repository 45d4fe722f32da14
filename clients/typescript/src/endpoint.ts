/** Jobs on one endpoint, RunPod-style: /v2/{endpoint}/run, runsync, status, stream, cancel, ... */

import { JobFailed, JobTimeout } from "./errors.js";
import { type Call, pollDelays, type Repeat, retryAfter, sleep, type Transport } from "./transport.js";
import {
  type Cancellable, FINAL_STATES, type Health, type JobRef, type JobStatus, type RunOptions,
  type RunSyncOptions, type Waiting,
} from "./types.js";

/** /runsync holds the request at most this long (RunPod's bounds for `?wait=`, in ms). */
const WAIT_MIN_MS = 1_000;
const WAIT_MAX_MS = 300_000;
const RUNSYNC_DEFAULT_MS = 90_000;
/** A /status poll is given at least this long, past a wait's deadline if need be: the server
 * holds a queued job's answer until a worker takes it, up to 1 s, and must not be cut off. */
const POLL_FLOOR_MS = 2_000;

/** A final status answer's output; JobFailed unless it COMPLETED. */
function result<T>(body: JobStatus<T>): T {
  if (body.status !== "COMPLETED") {
    throw new JobFailed(body.id, body.status, body.error);
  }
  return body.output as T;
}

function still(jobId: string, status: string, timeoutMs: number | undefined): JobTimeout {
  return new JobTimeout(`job ${jobId} is still ${status} after ${(timeoutMs ?? 0) / 1000} s`, jobId);
}

/** The /run and /runsync body: options left out unless given, so the server's defaults apply. */
function jobBody(input: Record<string, unknown>, options: RunOptions): Record<string, unknown> {
  const body: Record<string, unknown> = { input };
  if (options.route !== undefined) body.route = options.route;
  if (options.webhook !== undefined) body.webhook = options.webhook;
  if (options.policy !== undefined) body.policy = options.policy;
  if (options.s3Config !== undefined) body.s3Config = options.s3Config;
  if (options.env !== undefined) body.env = options.env;
  return body;
}

/** With an Idempotency-Key a submission may be sent again: the server answers the first job. */
function submission(options: RunOptions): { headers: Record<string, string>; repeat: Repeat } {
  return options.idempotencyKey === undefined
    ? { headers: {}, repeat: "unsent" }
    : { headers: { "Idempotency-Key": options.idempotencyKey }, repeat: "safe" };
}

export class Endpoint {
  /** @param ref the endpoint's id or name. */
  constructor(private readonly transport: Transport, readonly ref: string) {}

  /** Queue a job on the endpoint's default route (or `options.route`); answers at once with its id. */
  run(input: Record<string, unknown>, options: RunOptions = {}): Promise<JobRef> {
    return this.transport.json<JobRef>(this.call("POST", "run", {
      ...submission(options), body: jobBody(input, options), signal: options.signal,
    }));
  }

  /** Run a job (on `options.route`, else the default route) and give its output: JobFailed if it
   * fails, JobTimeout after `timeoutMs` (90 s). */
  async runSync<T = unknown>(input: Record<string, unknown>, options: RunSyncOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? RUNSYNC_DEFAULT_MS;
    const deadline = Date.now() + timeoutMs;
    const wait = Math.max(WAIT_MIN_MS, Math.min(WAIT_MAX_MS, Math.floor(timeoutMs)));
    const sent = await this.transport.json<JobStatus<T>>(this.call("POST", "runsync", {
      ...submission(options),
      body: jobBody(input, options),
      query: { wait },
      // The server holds the request `wait` ms, then needs an ordinary request's time to answer.
      timeoutMs: wait + this.transport.timeoutMs,
      signal: options.signal,
    }));
    if (FINAL_STATES.has(sent.status)) {
      return result(sent);
    }
    // The server's wait ended first: go on asking until our own deadline.
    return result(await this.untilFinal<T>(sent.id, deadline, timeoutMs, options.signal));
  }

  /** The job's status: IN_QUEUE, IN_PROGRESS, COMPLETED (with output), FAILED (with error), ... */
  status<T = unknown>(jobId: string, options: Cancellable = {}): Promise<JobStatus<T>> {
    return this.transport.json(this.jobCall("GET", "status", jobId, "safe", options.signal));
  }

  /** Poll the job's status, backing off, until it is final; its final status (whatever it is),
   * or JobTimeout after `timeoutMs`. */
  waitFor<T = unknown>(jobId: string, options: Waiting = {}): Promise<JobStatus<T>> {
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    return this.untilFinal<T>(jobId, deadline, options.timeoutMs, options.signal);
  }

  /** Each chunk a streaming (generator) handler yields, once, until the job ends; JobFailed at
   * the end if it did not complete, JobTimeout after `timeoutMs`. */
  async *stream<T = unknown>(jobId: string, options: Waiting = {}): AsyncGenerator<T, void, undefined> {
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    let delays = pollDelays();
    // Each answer drains what it returns: never sent again once it may have left.
    const call = this.jobCall("GET", "stream", jobId, "unsent", options.signal);
    for (;;) {
      const body = await this.transport.json<JobStatus & { stream?: { output: T }[] }>(call);
      const chunks = body.stream ?? [];
      for (const chunk of chunks) {
        yield chunk.output;
      }
      if (FINAL_STATES.has(body.status)) {
        result(body);
        return;
      }
      if (deadline !== undefined && Date.now() >= deadline) {
        throw still(jobId, body.status, options.timeoutMs);
      }
      if (chunks.length > 0) {
        delays = pollDelays(); // output is flowing: ask again soon
      }
      await sleep(delays.next().value, options.signal);
    }
  }

  /** Stop the job (a queued one never runs); its status after, normally CANCELLED. */
  cancel(jobId: string, options: Cancellable = {}): Promise<JobRef> {
    return this.transport.json(this.jobCall("POST", "cancel", jobId, "safe", options.signal));
  }

  /** Queue a FAILED or TIMED_OUT job again under the same id. */
  retry(jobId: string, options: Cancellable = {}): Promise<JobRef> {
    return this.transport.json(this.jobCall("POST", "retry", jobId, "unsent", options.signal));
  }

  /** Cancel every queued job (running ones go on); how many were removed. */
  async purgeQueue(options: Cancellable = {}): Promise<number> {
    const body = await this.transport.json<{ removed: number }>(
      this.call("POST", "purge-queue", { signal: options.signal }),
    );
    return body.removed;
  }

  /** Job counts by state and worker counts. */
  health(options: Cancellable = {}): Promise<Health> {
    return this.transport.json(this.call("GET", "health", { repeat: "safe", signal: options.signal }));
  }

  private call(method: Call["method"], op: string, rest: Partial<Call> = {}): Call {
    return {
      method,
      path: `/v2/${encodeURIComponent(this.ref)}/${op}`,
      timeoutMs: this.transport.timeoutMs,
      repeat: "unsent",
      ...rest,
    };
  }

  private jobCall(method: Call["method"], op: string, jobId: string, repeat: Repeat, signal?: AbortSignal): Call {
    return this.call(method, `${op}/${encodeURIComponent(jobId)}`, { repeat, signal });
  }

  /** Poll /status until the job is final (its answer) or the deadline passes (JobTimeout). */
  private async untilFinal<T>(
    jobId: string, deadline: number | undefined, timeoutMs: number | undefined, signal: AbortSignal | undefined,
  ): Promise<JobStatus<T>> {
    const delays = pollDelays();
    for (;;) {
      let left = deadline === undefined ? undefined : deadline - Date.now();
      // A poll never outlasts the deadline by more than POLL_FLOOR_MS, however slow the server.
      const limit = left === undefined ? this.transport.timeoutMs : Math.min(this.transport.timeoutMs, Math.max(left, POLL_FLOOR_MS));
      const { body, headers } = await this.transport.answer<JobStatus<T>>({
        ...this.jobCall("GET", "status", jobId, "safe", signal), timeoutMs: limit,
      });
      if (FINAL_STATES.has(body.status)) {
        return body;
      }
      left = deadline === undefined ? undefined : deadline - Date.now();
      if (left !== undefined && left <= 0) {
        throw still(jobId, body.status, timeoutMs);
      }
      // A job waiting for a worker to start answers when to ask again (Retry-After).
      const pause = Math.max(delays.next().value, retryAfter(headers.get("Retry-After")) ?? 0);
      await sleep(left === undefined ? pause : Math.min(pause, left), signal);
    }
  }
}
