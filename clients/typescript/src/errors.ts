/**
 * Every error this client throws on purpose is a {@link PodiumError}:
 *
 * ```text
 * PodiumError    the server answered an error (status, code, detail), or none came (status null)
 * ├── RouteError the route raised on the worker (errorType, errorMessage, traceback)
 * ├── JobFailed  the job ended FAILED, CANCELLED or TIMED_OUT (jobId, jobStatus, error)
 * └── JobTimeout a job, or one request, took longer than allowed (jobId when known)
 * ```
 *
 * An aborted call rejects with its `AbortSignal`'s reason (an `AbortError` unless you gave one),
 * not with a PodiumError, as `fetch` does.
 */

/** What a PodiumError carries besides its message. */
export interface ErrorInit {
  /** HTTP status of the answer; null when no answer came (unreachable, timed out, stream cut). */
  status?: number | null;
  /** Short machine-readable reason: `not_found`, `unauthorized`, `api.noTargetPipeline`, `unreachable`, ... */
  code: string;
  /** The server's explanation, usually a string. */
  detail?: unknown;
  /** The whole JSON error answer, for fields beyond `error` and `detail` (a job's `id`, ...). */
  body?: Record<string, unknown>;
  cause?: unknown;
}

export class PodiumError extends Error {
  override name = "PodiumError";
  readonly status: number | null;
  readonly code: string;
  readonly detail: unknown;
  readonly body: Record<string, unknown>;

  constructor(message: string, init: ErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.status = init.status ?? null;
    this.code = init.code;
    this.detail = init.detail;
    this.body = init.body ?? {};
  }
}

/** The route raised an exception on the worker (a route call answered 500 `route_error`). */
export class RouteError extends PodiumError {
  override name = "RouteError";
  /** The exception's class name on the worker, e.g. `ValueError`. */
  readonly errorType: string;
  readonly errorMessage: string;
  readonly traceback: string | null;
  readonly jobId: string | null;

  constructor(status: number, body: Record<string, unknown>) {
    const errorType = typeof body.type === "string" ? body.type : "Exception";
    const errorMessage = typeof body.message === "string" ? body.message : String(body.detail ?? "");
    super(`${errorType}: ${errorMessage} (HTTP ${status})`, {
      status, code: "route_error", detail: body.detail, body,
    });
    this.errorType = errorType;
    this.errorMessage = errorMessage;
    this.traceback = typeof body.traceback === "string" ? body.traceback : null;
    this.jobId = typeof body.id === "string" ? body.id : null;
  }
}

/** The job ended without completing: FAILED, CANCELLED or TIMED_OUT. */
export class JobFailed extends PodiumError {
  override name = "JobFailed";
  readonly jobId: string;
  readonly jobStatus: string;
  /** The job's error, as the server reports it (a string such as `ValueError: boom`). */
  readonly error: unknown;

  constructor(jobId: string, jobStatus: string, error?: unknown) {
    const text = `job ${jobId} ended ${jobStatus}`;
    const shown = error === undefined || error === null || error === "" ? text : `${text}: ${String(error)}`;
    super(shown, { code: jobStatus.toLowerCase(), detail: error });
    this.jobId = jobId;
    this.jobStatus = jobStatus;
    this.error = error;
  }
}

/** A job, or a single request, did not finish in time. `jobId` is null when a request timed out
 * before the server named its job. */
export class JobTimeout extends PodiumError {
  override name = "JobTimeout";
  readonly jobId: string | null;

  constructor(message: string, jobId: string | null = null, status: number | null = null) {
    super(message, { code: "timeout", status, detail: message });
    this.jobId = jobId;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The error for an error answer. Podium answers `{"error", "detail", ...}`; its Laminar surface
 * answers `{"error_code", "error_message"}`; anything else (a proxy's HTML page) keeps its text.
 */
export function answerError(status: number, text: string): PodiumError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!isObject(body)) {
    const detail = text.slice(0, 500);
    return new PodiumError(`HTTP ${status}${detail ? `: ${detail}` : ""}`, {
      status, code: `http_${status}`, detail,
    });
  }
  if (body.error === "route_error") {
    return new RouteError(status, body);
  }
  const laminar = "error_code" in body;
  const code = String(laminar ? body.error_code : body.error ?? `http_${status}`);
  const detail = laminar ? body.error_message : body.detail;
  const jobId = typeof body.id === "string" ? body.id : null;
  const shown = detail === undefined || detail === null || detail === "" ? code : `${code}: ${describe(detail)}`;
  if (status === 504 && (code === "timeout" || code === "api.timeout")) {
    return new JobTimeout(`${shown} (HTTP ${status})`, jobId, status);
  }
  return new PodiumError(`${shown} (HTTP ${status})`, { status, code, detail, body });
}

function describe(detail: unknown): string {
  return typeof detail === "string" ? detail : JSON.stringify(detail);
}
