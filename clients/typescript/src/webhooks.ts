/**
 * Checking a webhook delivery on the receiving side: Podium signs each one with the secret of the
 * job's project (`podium webhook-secret` shows it to the project's admins), as
 * `X-Podium-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` beside
 * `X-Podium-Timestamp`. After a rotation the header lists a signature per valid secret
 * (`v1=<new>, v1=<old>`); a delivery is genuine when any of them was made with your secret.
 * The twin of the Python `podium.signing.verify`.
 */

/** A request's headers: the fetch API's `Headers`, or a plain object such as Node's `req.headers`. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

export interface VerifyOptions {
  /** Seconds a delivery's timestamp may be away from now (default 300): older ones are replays. */
  toleranceSeconds?: number;
  /** Now, in UNIX seconds (default: the clock). */
  now?: number;
}

/**
 * Whether `body` (the raw bytes received, before any JSON parsing) was signed with `secret`
 * less than `toleranceSeconds` ago. Needs Web Crypto: browsers, and Node 19+ (Node 18 with
 * `--experimental-global-webcrypto`).
 */
export async function verifyWebhook(
  secret: string, headers: WebhookHeaders, body: string | Uint8Array | ArrayBuffer, options: VerifyOptions = {},
): Promise<boolean> {
  const timestamp = header(headers, "x-podium-timestamp") ?? "";
  const listed = (header(headers, "x-podium-signature") ?? "").split(/[,\s]+/).filter((s) => s.startsWith("v1="));
  if (!/^\d+$/.test(timestamp) || listed.length === 0) return false;
  const now = options.now ?? Date.now() / 1000;
  if (Math.abs(now - Number(timestamp)) > (options.toleranceSeconds ?? 300)) return false;
  const subtle = globalThis.crypto?.subtle;
  if (subtle === undefined) {
    throw new Error("verifyWebhook needs Web Crypto (globalThis.crypto.subtle): Node 19+, or a browser");
  }
  const encoder = new TextEncoder();
  const key = await subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false,
    ["verify"]);
  const signed = concat(encoder.encode(`${timestamp}.`), typeof body === "string" ? encoder.encode(body) : body);
  let genuine = false;
  for (const signature of listed) {
    const mac = fromHex(signature.slice(3));
    // subtle.verify compares in constant time; every listed signature is checked.
    if (mac !== null && await subtle.verify("HMAC", key, mac, signed)) genuine = true;
  }
  return genuine;
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof Headers !== "undefined" && headers instanceof Headers) return headers.get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(record).find((k) => k.toLowerCase() === name);
  const value = key === undefined ? undefined : record[key];
  return Array.isArray(value) ? value.join(", ") : value;
}

function concat(head: Uint8Array, tail: Uint8Array | ArrayBuffer): Uint8Array<ArrayBuffer> {
  const rest = tail instanceof Uint8Array ? tail : new Uint8Array(tail);
  const out = new Uint8Array(head.length + rest.length);
  out.set(head);
  out.set(rest, head.length);
  return out;
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> | null {
  if (!/^(?:[0-9a-f]{2})+$/i.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
