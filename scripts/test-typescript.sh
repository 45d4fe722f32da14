#!/usr/bin/env bash
# The TypeScript client (clients/typescript): build it with tsc, run its node --test suite against
# a real server (the repo's .venv/bin/podium, made by `make venv`), then check that the `npm pack`
# tarball installs, imports and type-checks in an empty directory. Called by `make test`.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PKG="$ROOT/clients/typescript"

# Node and npm from apt only when missing: Debian's nodejs package conflicts with an npm that was
# installed another way.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "node and npm are needed for the TypeScript client's tests: install them (Node 18+)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if (( major < 18 )); then
    echo "node $(node --version) is too old: podium-client needs Node 18 or newer" >&2
    exit 1
fi
if [[ ! -x "$ROOT/.venv/bin/podium" ]]; then
    echo "$ROOT/.venv/bin/podium is missing: run \`make venv\` first" >&2
    exit 1
fi

cd "$PKG"
npm ci --no-audit --no-fund --loglevel=error
npx tsc -p tsconfig.json
PODIUM_BIN="$ROOT/.venv/bin/podium" timeout 900 node --test test/*.test.js

# The packed tarball, on its own: installs, imports as ESM, and its types resolve for a TS user.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tarball="$(npm pack --silent --pack-destination "$tmp" | tail -n 1)"
cd "$tmp"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error "./$tarball"
node --input-type=module -e '
import { Podium, PodiumError, JobFailed, JobTimeout, RouteError, FINAL_STATES, verifyWebhook } from "podium-client";
const podium = new Podium({ url: "http://127.0.0.1:8000/", apiKey: "k" });
if (podium.url !== "http://127.0.0.1:8000") throw new Error(`url: ${podium.url}`);
if (!(new JobFailed("j", "FAILED", "boom") instanceof PodiumError)) throw new Error("error tree");
if (typeof podium.endpoint("e").runSync !== "function" || !FINAL_STATES.has("COMPLETED")) throw new Error("api");
if (typeof verifyWebhook !== "function") throw new Error("verifyWebhook");
console.log("podium-client imports:", [Podium, PodiumError, JobFailed, JobTimeout, RouteError].map((c) => c.name).join(", "));
'
cat > check.mts <<'EOF'
import { Podium, PodiumError, type JobStatus, type PipelineEvent } from "podium-client";

async function main(): Promise<void> {
  const podium = new Podium({ apiKey: "k" });
  const status: JobStatus<{ text: string }> = await podium.endpoint("echo").status("job");
  const text: string | undefined = status.output?.text;
  for await (const event of podium.pipelineRun({ pipeline: "p", stream: true })) {
    const e: PipelineEvent = event;
    if (e.type === "GraphRunOutput") console.log(e.runId, text);
  }
  const chunks: AsyncIterable<Uint8Array> = podium.callStream("svc", "/tokens", { n: 3 });
  void chunks;
  const error: unknown = null;
  if (error instanceof PodiumError) console.log(error.status, error.code, error.detail);
}
void main;
EOF
"$PKG/node_modules/.bin/tsc" --noEmit --strict --target es2022 --module nodenext --moduleResolution nodenext \
    --lib es2022,dom --types "" check.mts
echo "podium-client: the packed tarball installs, imports and type-checks"
