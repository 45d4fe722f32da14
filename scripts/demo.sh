#!/usr/bin/env bash
# make demo: start Podium, deploy examples/hello, call it three ways, stop. Everything under ./.podium.
set -euo pipefail
cd "$(dirname "$0")/.."
PODIUM=.venv/bin/podium
export PODIUM_HOME="${PODIUM_HOME:-$PWD/.podium}"
port="${PODIUM_PORT:-8000}"
if ! .venv/bin/python -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $port))" 2>/dev/null; then
  port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  echo "demo: port ${PODIUM_PORT:-8000} is busy, using $port"
fi
export PODIUM_URL="http://127.0.0.1:$port"
mkdir -p "$PODIUM_HOME"
$PODIUM up --port "$port" > "$PODIUM_HOME/demo-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "$PODIUM_URL/healthz" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { cat "$PODIUM_HOME/demo-server.log"; exit 1; }
  sleep 0.1
done
echo "== podium up (server log: $PODIUM_HOME/demo-server.log)"
grep -v -i deprecat "$PODIUM_HOME/demo-server.log" | head -5
echo
echo "== podium deploy examples/hello --name hello"
$PODIUM deploy examples/hello --name hello
endpoint=$($PODIUM ls --json | .venv/bin/python -c "import json,sys; print(next(e['endpoint_id'] for e in json.load(sys.stdin) if e['name']=='hello'))")
key=$(.venv/bin/python -c "import json; print(json.load(open('$PODIUM_HOME/credentials.json'))['api_key'])")
echo
echo "== podium call hello /hello -d '{\"number\": 7}'"
$PODIUM call hello /hello -d '{"number": 7}'
echo
echo "== curl -N .../hello/stream (chunks as they are produced)"
curl -sN -H "x-api-key: $key" -d '{"items": [1, 2, 3], "delay": 0.3}' "$PODIUM_URL/hello/stream"
echo
echo "== curl .../v2/$endpoint/runsync (RunPod protocol)"
curl -s -H "Authorization: Bearer $key" -d '{"input": {"prompt": "hi"}}' "$PODIUM_URL/v2/$endpoint/runsync"
echo
echo
echo "demo done. Keep a server running with: PODIUM_HOME=$PODIUM_HOME $PODIUM up"
