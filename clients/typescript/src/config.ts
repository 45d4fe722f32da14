/** Where the server is and which key to send: options first, then the environment on Node. */

import { PodiumError } from "./errors.js";

export interface PodiumOptions {
  /** Server URL; else `PODIUM_URL` (Node), else the page's origin (browser), else http://127.0.0.1:8000. */
  url?: string;
  /** API key; else `PODIUM_API_KEY` (Node). */
  apiKey?: string;
  /** Project to act in (sent as `X-Podium-Project`); else `PODIUM_PROJECT` (Node), else the key's own. */
  project?: string;
  /** Milliseconds one job-API request may take (runSync adds its wait on top). Default 30 000. */
  timeoutMs?: number;
  /** Milliseconds a route call or pipeline run may take to answer. Default 330 000 (the server
   * holds a route call up to 300 s). */
  callTimeoutMs?: number;
  /** Extra attempts for a request that failed where repeating it is safe. Default 3. */
  retries?: number;
}

export interface Settings {
  url: string;
  headers: Record<string, string>;
  timeoutMs: number;
  callTimeoutMs: number;
  retries: number;
}

export const DEFAULT_URL = "http://127.0.0.1:8000";

/** An environment variable on Node (or Deno, Bun); undefined in a browser. */
function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name] || undefined;
}

function pageOrigin(): string | undefined {
  const loc = (globalThis as { location?: { origin?: string; protocol?: string } }).location;
  return loc?.protocol === "http:" || loc?.protocol === "https:" ? loc.origin : undefined;
}

export function resolve(options: PodiumOptions): Settings {
  const url = (options.url ?? env("PODIUM_URL") ?? pageOrigin() ?? DEFAULT_URL).replace(/\/+$/, "");
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
    throw new PodiumError(`not a Podium URL: ${JSON.stringify(url)} (it needs http:// or https://)`, {
      code: "invalid_url",
    });
  }
  const apiKey = options.apiKey ?? env("PODIUM_API_KEY");
  if (!apiKey) {
    throw new PodiumError("no API key: pass { apiKey } or set PODIUM_API_KEY", { code: "no_api_key" });
  }
  const headers: Record<string, string> = { Authorization: `Bearer ${apiKey}` };
  const project = options.project ?? env("PODIUM_PROJECT");
  if (project) {
    headers["X-Podium-Project"] = project;
  }
  return {
    url,
    headers,
    timeoutMs: options.timeoutMs ?? 30_000,
    callTimeoutMs: options.callTimeoutMs ?? 330_000,
    retries: options.retries ?? 3,
  };
}
