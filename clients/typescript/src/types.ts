/** The records the server answers with, and the options each call takes. */

export type JobState = "IN_QUEUE" | "IN_PROGRESS" | "COMPLETED" | "FAILED" | "CANCELLED" | "TIMED_OUT";

/** States a job never leaves (retry aside). */
export const FINAL_STATES: ReadonlySet<string> = new Set(["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]);

/** What `run`, `cancel` and `retry` answer. */
export interface JobRef {
  id: string;
  status: JobState;
}

/** Why a queued job waits: a cold start, busy workers, no free GPU, an environment being built,
 * an initializer that fails, a stopped endpoint, or its low priority. */
export type WaitingReason =
  | "starting" | "at_capacity" | "no_gpu" | "building" | "init_failing" | "stopped" | "low_priority";

/** What a queued job waits for, a sentence saying so, and since when (Unix seconds). */
export interface WaitingFor {
  reason: WaitingReason;
  detail: string;
  since: number;
}

/** A job's status answer, in RunPod's shape. `output` is the result once COMPLETED (or the last
 * progress update while IN_PROGRESS); `error` says why it did not complete; `waiting`, on every
 * IN_QUEUE answer, why the job waits. */
export interface JobStatus<T = unknown> {
  id: string;
  status: JobState;
  delayTime: number;
  executionTime: number;
  output?: T;
  error?: string;
  waiting?: WaitingFor;
}

export interface Health {
  jobs: { completed: number; failed: number; inProgress: number; inQueue: number; retried: number };
  workers: Record<string, number>;
}

/** RunPod's per-job policy, in milliseconds. */
export interface Policy {
  executionTimeout?: number;
  ttl?: number;
  lowPriority?: boolean;
}

export interface S3Config {
  accessId: string;
  accessSecret: string;
  bucketName: string;
  endpointUrl: string;
}

export interface Cancellable {
  signal?: AbortSignal;
}

export interface Waiting extends Cancellable {
  /** Give up (JobTimeout) after this many ms; no limit when absent. */
  timeoutMs?: number;
}

export interface RunOptions extends Cancellable {
  /** The route to run (`"/predict_batch"`), `input` being its keyword arguments; the endpoint's
   * default route when absent. */
  route?: string;
  /** URL the server POSTs the final status to. */
  webhook?: string;
  policy?: Policy;
  /** Bucket credentials for the worker (never stored where a caller can read them back). */
  s3Config?: S3Config;
  /** Environment variables for this job only (worker-only, like s3Config). */
  env?: Record<string, string>;
  /** Sent as `Idempotency-Key`: the same key and request within 24 h gives the first job back
   * instead of a new one, which also makes the request safe to send again after a failure. */
  idempotencyKey?: string;
}

export interface RunSyncOptions extends RunOptions {
  /** How long to wait for the output before JobTimeout. Default 90 000 ms. */
  timeoutMs?: number;
}

export interface CallOptions extends Cancellable {
  /** Environment variables for this call only (sent as `X-Podium-Env`). */
  env?: Record<string, string>;
  idempotencyKey?: string;
  /** Overrides the client's `callTimeoutMs` (for a stream: the wait for its first chunk). */
  timeoutMs?: number;
}

export interface SubmitOptions extends CallOptions {
  /** URL the server POSTs the job's final status to (sent as `X-Podium-Webhook`). */
  webhook?: string;
}

/** A value of a Laminar output: a string, a list of chat messages, or any other value as its JSON text. */
export interface NodeOutput {
  value: unknown;
}

export interface PipelineRunRequest extends Cancellable {
  /** The endpoint's name (Laminar's pipeline). */
  pipeline: string;
  /** Keyword arguments of the endpoint's default route. */
  inputs?: Record<string, unknown>;
  /** Environment variables for this run only. Default {}. */
  env?: Record<string, string>;
  metadata?: Record<string, string>;
  /** Answer as server-sent events (an async iterator) instead of one response. */
  stream?: boolean;
  timeoutMs?: number;
}

export interface PipelineRunResponse {
  outputs: Record<string, NodeOutput>;
  runId: string;
}

/** One chunk the route yielded, as it was produced. */
export interface NodeChunk {
  type: "NodeChunk";
  content: unknown;
}

/** The run's result; always the last event of a run that completed. */
export interface GraphRunOutput {
  type: "GraphRunOutput";
  outputs: Record<string, NodeOutput>;
  runId: string;
}

export type PipelineEvent = NodeChunk | GraphRunOutput;
