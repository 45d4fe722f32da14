// A real Podium server in a subprocess on a free loopback port, with a temporary PODIUM_HOME
// (the node twin of tests/server.py). Every wait here is bounded.

import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository's root (clients/typescript/test/ is three levels down). */
export const REPO = resolve(here, "..", "..", "..");
/** The sample services the Python tests deploy; ours reuse them. */
export const SERVICES = join(REPO, "tests", "services");
/** The podium CLI of the repository's venv (`make venv`), unless PODIUM_BIN names another. */
export const PODIUM = process.env.PODIUM_BIN ?? join(REPO, ".venv", "bin", "podium");
export const ADMIN_KEY = "pod_live_test_admin_key_0123456789abcdefghijklmnop";

/**
 * Short leases and ticks, as tests/server.py has them. Workers run unboxed, as in the Python tests
 * not marked `boxed`: the tests' marker files live under the server's home, which a boxed worker
 * cannot see.
 */
const FAST = {
  PODIUM_SANDBOX: "off",
  PODIUM_LEASE_SECONDS: "2",
  PODIUM_PING_INTERVAL: "0.4",
  PODIUM_TAKE_TIMEOUT: "5",
  PODIUM_TICK: "0.2",
  PODIUM_DRAIN_GRACE: "5",
  PODIUM_RETRY_BASE: "0.2",
};

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `predicate` until it gives something truthy; fail after `timeoutMs`. */
export async function waitUntil(predicate, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await pause(50);
  }
}

export class PodiumServer {
  /** @param {{port?: number, env?: Record<string, string>}} options */
  constructor({ port, env = {} } = {}) {
    if (!existsSync(PODIUM)) {
      throw new Error(`${PODIUM} is missing: run \`make venv\` in ${REPO} first`);
    }
    this.home = mkdtempSync(join(tmpdir(), "podium-ts-"));
    this.port = port;
    this.key = ADMIN_KEY;
    this.extraEnv = env;
    this.proc = null;
  }

  get running() {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get env() {
    const env = {
      ...process.env, ...FAST, ...this.extraEnv, PODIUM_HOME: this.home, PODIUM_ADMIN_KEY: ADMIN_KEY,
      PODIUM_URL: this.url, PODIUM_API_KEY: ADMIN_KEY,
    };
    delete env.PODIUM_DATABASE_URL;
    delete env.PODIUM_PROJECT;
    return env;
  }

  /** Spawn `podium up` (without waiting for it: see ready()). */
  async spawn() {
    this.port ??= await freePort();
    this.proc = spawn(PODIUM, ["up", "--port", String(this.port)], {
      env: this.env, stdio: ["ignore", "pipe", "pipe"],
    });
    this.log = [];
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      stream.on("data", (chunk) => this.log.push(chunk));
    }
    this.exited = new Promise((r) => this.proc.once("exit", r));
    // A test run that dies must not leave a server behind.
    this.onExit = () => this.proc?.kill("SIGKILL");
    process.once("exit", this.onExit);
  }

  /** Wait for /healthz (30 s at most). */
  async ready() {
    await waitUntil(async () => {
      if (!this.running) {
        throw new Error(`podium up exited (${this.proc.exitCode}):\n${this.logTail()}`);
      }
      try {
        return (await fetch(`${this.url}/healthz`)).status === 200;
      } catch {
        return false;
      }
    }, "server /healthz");
  }

  async start() {
    await this.spawn();
    await this.ready();
    return this;
  }

  logTail() {
    return Buffer.concat(this.log).toString().slice(-3000);
  }

  /** `podium deploy PATH --name NAME --json ...args`: the deploy's JSON. */
  async deploy(path, name, ...args) {
    const { stdout } = await promisify(execFile)(
      PODIUM, ["deploy", path, "--name", name, "--json", ...args], { env: this.env, timeout: 120_000 },
    );
    return JSON.parse(stdout);
  }

  /** SIGTERM, then SIGKILL after 20 s; removes the temporary home. */
  async stop() {
    if (this.running) {
      this.proc.kill("SIGTERM");
      const killer = setTimeout(() => this.proc.kill("SIGKILL"), 20_000);
      await this.exited;
      clearTimeout(killer);
    }
    process.removeListener("exit", this.onExit);
    rmSync(this.home, { recursive: true, force: true });
  }
}

/** A file path under the server's home, for the marker files tests/services/basic waits on. */
export function marker(server, name) {
  return join(server.home, name);
}

export function exists(path) {
  return existsSync(path);
}

export function read(path) {
  return readFileSync(path, "utf8");
}
