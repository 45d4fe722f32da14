/**
 * podium-client: call Podium endpoints from TypeScript or JavaScript (Node 18+ and browsers).
 *
 * ```ts
 * import { Podium } from "podium-client";
 * const podium = new Podium({ url: "http://127.0.0.1:8000", apiKey: "pod_live_..." });
 * const out = await podium.endpoint("echo").runSync({ text: "hi" });
 * ```
 */

export { Podium } from "./podium.js";
export { Endpoint } from "./endpoint.js";
export type { PodiumOptions } from "./config.js";
export { JobFailed, JobTimeout, PodiumError, RouteError } from "./errors.js";
export type { ErrorInit } from "./errors.js";
export { FINAL_STATES } from "./types.js";
export { verifyWebhook } from "./webhooks.js";
export type { VerifyOptions, WebhookHeaders } from "./webhooks.js";
export type {
  CallOptions, Cancellable, GraphRunOutput, Health, JobRef, JobState, JobStatus, NodeChunk, NodeOutput,
  PipelineEvent, PipelineRunRequest, PipelineRunResponse, Policy, RunOptions, RunSyncOptions, S3Config,
  SubmitOptions, Waiting, WaitingFor, WaitingReason,
} from "./types.js";
