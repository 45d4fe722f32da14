/** The client: endpoints' jobs, route calls (plain and streaming) and Laminar-style pipeline runs. */

import { type PodiumOptions, resolve } from "./config.js";
import { Endpoint } from "./endpoint.js";
import { JobFailed, PodiumError } from "./errors.js";
import { bodyChunks, serverEvents } from "./streams.js";
import { type Call, Transport } from "./transport.js";
import {
  type CallOptions, FINAL_STATES, type GraphRunOutput, type JobRef, type NodeChunk, type PipelineEvent,
  type PipelineRunRequest, type PipelineRunResponse, type SubmitOptions,
} from "./types.js";

/** The header a route call's `env` travels in (the body is the route's keyword arguments). */
const ENV_HEADER = "X-Podium-Env";
/** The header naming the job behind a streamed answer. */
const JOB_HEADER = "X-Podium-Job-Id";
/** The header a submitted route call's webhook URL travels in. */
const WEBHOOK_HEADER = "X-Podium-Webhook";

/** `/hello`, `hello` and `a/b` all name a route; each segment is escaped. */
function routePath(endpoint: string, route: string): string {
  const segments = route.replace(/^\/+/, "").split("/").map(encodeURIComponent);
  return `/${encodeURIComponent(endpoint)}/${segments.join("/")}`;
}

function why(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class Podium {
  /** The server's base URL, without a trailing slash. */
  readonly url: string;
  private readonly transport: Transport;

  constructor(options: PodiumOptions = {}) {
    this.transport = new Transport(resolve(options));
    this.url = this.transport.url;
  }

  /** The jobs API of one endpoint, by id or name. */
  endpoint(idOrName: string): Endpoint {
    return new Endpoint(this.transport, idOrName);
  }

  /** Call a route with keyword arguments and give its JSON answer (RouteError if it raised). */
  async call<T = unknown>(
    endpoint: string, route: string, kwargs: Record<string, unknown> = {}, options: CallOptions = {},
  ): Promise<T> {
    const opened = await this.transport.open(this.routeCall(endpoint, route, kwargs, options));
    let text: string;
    try {
      const type = opened.response.headers.get("Content-Type") ?? "";
      if (!type.includes("json")) {
        await opened.response.body?.cancel();
        throw new PodiumError(
          `route ${route} of ${endpoint} answered ${type || "no content type"}, not JSON; ` +
            "a streaming route is read with callStream()",
          { status: opened.response.status, code: "not_json" },
        );
      }
      text = await opened.response.text();
    } catch (error) {
      throw await this.streamError(error, options.signal, endpoint, null);
    } finally {
      opened.done();
    }
    try {
      return (text ? JSON.parse(text) : null) as T;
    } catch {
      throw new PodiumError(`route ${route} of ${endpoint} answered malformed JSON: ${text.slice(0, 200)}`, {
        status: opened.response.status, code: "not_json",
      });
    }
  }

  /** Run a route as a job (`Prefer: respond-async`): answers at once with its id, to follow with
   * `endpoint(endpoint).waitFor(id)`, `stream`, `cancel`. Bad arguments and unknown routes are
   * refused here, as `call` refuses them. */
  submit(endpoint: string, route: string, kwargs: Record<string, unknown> = {}, options: SubmitOptions = {}): Promise<JobRef> {
    const call = this.routeCall(endpoint, route, kwargs, options);
    const headers: Record<string, string> = { ...call.headers, Prefer: "respond-async" };
    if (options.webhook !== undefined) headers[WEBHOOK_HEADER] = options.webhook;
    return this.transport.json<JobRef>({ ...call, headers, timeoutMs: options.timeoutMs ?? this.transport.timeoutMs });
  }

  /** Call a streaming route: the bytes it yields, chunk by chunk, as it yields them. JobFailed if
   * the route fails after its first chunk (RouteError if before). */
  async *callStream(
    endpoint: string, route: string, kwargs: Record<string, unknown> = {}, options: CallOptions = {},
  ): AsyncGenerator<Uint8Array, void, undefined> {
    const opened = await this.transport.open(this.routeCall(endpoint, route, kwargs, options));
    try {
      yield* bodyChunks(opened.response);
    } catch (error) {
      throw await this.streamError(error, options.signal, endpoint, opened.response.headers.get(JOB_HEADER));
    } finally {
      opened.done();
    }
  }

  /** Call a route with its answer as server-sent events (`Accept: text/event-stream`): a
   * NodeChunk for each chunk it yields (bytes as text), then one GraphRunOutput with its result.
   * A route that fails throws JobFailed. */
  callEvents(
    endpoint: string, route: string, kwargs: Record<string, unknown> = {}, options: CallOptions = {},
  ): AsyncGenerator<PipelineEvent, void, undefined> {
    const call = this.routeCall(endpoint, route, kwargs, options);
    return this.events({ ...call, headers: { ...call.headers, Accept: "text/event-stream" } }, endpoint);
  }

  /**
   * Run the endpoint named `pipeline` with `inputs` as keyword arguments, Laminar-style.
   * Without `stream`, its outputs once it is done; with `stream: true`, its events as they come:
   * NodeChunk for each chunk the route yields, then one GraphRunOutput. A run that fails throws
   * JobFailed (streaming) or a PodiumError with Laminar's code (`api.GraphRunningError`, ...).
   */
  pipelineRun(request: PipelineRunRequest & { stream: true }): AsyncGenerator<PipelineEvent, void, undefined>;
  pipelineRun(request: PipelineRunRequest & { stream?: false }): Promise<PipelineRunResponse>;
  pipelineRun(request: PipelineRunRequest): Promise<PipelineRunResponse> | AsyncGenerator<PipelineEvent, void, undefined>;
  pipelineRun(request: PipelineRunRequest): Promise<PipelineRunResponse> | AsyncGenerator<PipelineEvent, void, undefined> {
    const call = this.pipelineCall(request);
    return request.stream ? this.events(call, request.pipeline) : this.transport.json(call);
  }

  /** A job's server-sent events, typed; the terminal error frame thrown as JobFailed. */
  private async *events(call: Call, endpoint: string): AsyncGenerator<PipelineEvent, void, undefined> {
    const opened = await this.transport.open(call);
    const jobId = opened.response.headers.get(JOB_HEADER);
    try {
      for await (const frame of serverEvents(bodyChunks(opened.response))) {
        const event = parseEvent(frame.data);
        if (event.type === "NodeChunk") {
          yield { type: "NodeChunk", content: event.content } satisfies NodeChunk;
        } else if (event.type === "GraphRunOutput") {
          yield { type: "GraphRunOutput", outputs: event.outputs, runId: event.runId } as GraphRunOutput;
          return;
        } else if (event.type === "RunEndpointEventError") {
          throw new JobFailed(String(event.runId ?? jobId), "FAILED", event.error);
        }
        // Any other frame (Laminar's NodeEnd) carries nothing a caller needs.
      }
    } catch (error) {
      throw await this.streamError(error, call.signal, endpoint, jobId);
    } finally {
      opened.done();
    }
    throw new PodiumError(`the event stream of job ${jobId} ended before the job did`, { code: "stream_broken" });
  }

  private routeCall(endpoint: string, route: string, kwargs: Record<string, unknown>, options: CallOptions): Call {
    const headers: Record<string, string> = {};
    if (options.env !== undefined) headers[ENV_HEADER] = JSON.stringify(options.env);
    if (options.idempotencyKey !== undefined) headers["Idempotency-Key"] = options.idempotencyKey;
    return {
      method: "POST",
      path: routePath(endpoint, route),
      body: kwargs,
      headers,
      timeoutMs: options.timeoutMs ?? this.transport.callTimeoutMs,
      // Calling a route twice runs it twice, unless the server can tell it is the same request.
      repeat: options.idempotencyKey === undefined ? "unsent" : "safe",
      signal: options.signal,
    };
  }

  private pipelineCall(request: PipelineRunRequest): Call {
    const body: Record<string, unknown> = {
      pipeline: request.pipeline,
      inputs: request.inputs ?? {},
      env: request.env ?? {},
      stream: request.stream === true,
    };
    if (request.metadata !== undefined) body.metadata = request.metadata;
    return {
      method: "POST",
      path: "/v1/pipeline/run",
      body,
      headers: request.stream ? { Accept: "text/event-stream" } : {},
      timeoutMs: request.timeoutMs ?? this.transport.callTimeoutMs,
      repeat: "unsent",
      signal: request.signal,
    };
  }

  /** What a stream that broke off means: the caller's abort, the job's own failure (asked of the
   * server, since a failure after the first chunk can only cut the stream), or a lost connection. */
  private async streamError(error: unknown, signal: AbortSignal | undefined, endpoint: string, jobId: string | null): Promise<unknown> {
    if (signal?.aborted) {
      return signal.reason;
    }
    if (error instanceof PodiumError) {
      return error;
    }
    if (jobId !== null) {
      const status = await this.endpoint(endpoint).status(jobId, { signal }).catch(() => null);
      if (status !== null && FINAL_STATES.has(status.status) && status.status !== "COMPLETED") {
        return new JobFailed(jobId, status.status, status.error);
      }
    }
    return new PodiumError(`the answer${jobId ? ` of job ${jobId}` : ""} broke off: ${why(error)}`, {
      code: "stream_broken", cause: error,
    });
  }
}

interface Frame {
  type?: unknown;
  content?: unknown;
  outputs?: GraphRunOutput["outputs"];
  runId?: string | null;
  error?: unknown;
}

function parseEvent(data: string): Frame {
  try {
    const value: unknown = JSON.parse(data);
    if (typeof value === "object" && value !== null) {
      return value as Frame;
    }
  } catch {
    // fall through: reported below
  }
  throw new PodiumError(`the server sent an event that is not a JSON object: ${data.slice(0, 200)}`, {
    code: "bad_event",
  });
}
