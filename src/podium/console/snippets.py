"""The "Use API" samples of an endpoint page: filled-in calls, the key left as a placeholder."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from podium.console.data import EndpointDetail, RouteInfo

KEY = "$PODIUM_API_KEY"


@dataclass(frozen=True)
class Snippet:
    id: str
    title: str
    language: str
    code: str


def _main_route(ep: EndpointDetail) -> RouteInfo | None:
    """The route the samples call: the default one (RunPod's and Laminar's calls use it)."""
    callable_routes = [r for r in ep.routes if r.kind != "http"]
    return next((r for r in callable_routes if r.default), callable_routes[0] if callable_routes else None)


#: What the `openai` sample calls on each OpenAI route (a RunPod handler: a chat completion).
OPENAI_CALLS = {
    "/v1/chat/completions": 'chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}])',
    "/v1/completions": 'completions.create(model=model, prompt="Hello")',
    "/v1/embeddings": 'embeddings.create(model=model, input="Hello")',
}


def openai_snippet(ep: EndpointDetail, base_url: str) -> Snippet | None:
    """The `openai` package's call of the endpoint's first OpenAI-compatible route, if it has one
    (a RunPod worker's model is the first one its /models lists)."""
    route = next((r for r in ep.routes if r.openai), None)
    if route is None:
        return None
    model = repr(route.model) if route.model else "client.models.list().data[0].id"
    call = OPENAI_CALLS.get(route.path, OPENAI_CALLS["/v1/chat/completions"])
    return Snippet(
        "openai",
        "Python (openai)",
        "python",
        "import os\nfrom openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base_url}/v2/{ep.endpoint_id}/openai/v1", api_key=os.environ["PODIUM_API_KEY"])\n'
        f"model = {model}\n"
        f"print(client.{call})",
    )


def snippets(ep: EndpointDetail, base_url: str) -> list[Snippet]:
    openai = openai_snippet(ep, base_url)
    return [openai, *_calls(ep, base_url)] if openai is not None else _calls(ep, base_url)


def _calls(ep: EndpointDetail, base_url: str) -> list[Snippet]:
    route = _main_route(ep)
    if route is None:  # an HTTP-app service: plain HTTP requests to its paths
        url = f"{base_url}/{ep.name}/"
        return [
            Snippet("curl", "curl", "shell", f'curl -H "x-api-key: {KEY}" {shlex.quote(url)}'),
            Snippet(
                "python",
                "Python (httpx)",
                "python",
                "import os, httpx\n\n"
                f'r = httpx.get({url!r}, headers={{"x-api-key": os.environ["PODIUM_API_KEY"]}})\n'
                "print(r.status_code, r.text)",
            ),
        ]
    args = route.sample
    body = json.dumps(args)
    route_url = f"{base_url}/{ep.name}{route.path}"
    method = route.path.strip("/").replace("-", "_").replace("/", "_") or "call"
    kwargs = ", ".join(f"{k}={v!r}" for k, v in args.items())
    ts_args = json.dumps(args)
    return [
        Snippet(
            "curl",
            "curl",
            "shell",
            f'curl -H "x-api-key: {KEY}" -H "Content-Type: application/json" \\\n'
            f"     -d {shlex.quote(body)} {shlex.quote(route_url)}",
        ),
        Snippet(
            "python",
            "Python (podium)",
            "python",
            "import podium\n\n"
            f"# PODIUM_URL={base_url} and PODIUM_API_KEY set in the environment\n"
            f"client = podium.get_deployment({ep.name!r})\n"
            f"print(client.{method}({kwargs}))",
        ),
        Snippet(
            "runpod",
            "Python (runpod)",
            "python",
            "import os, runpod\n\n"
            f'runpod.endpoint_url_base = "{base_url}/v2"\n'
            f'ep = runpod.Endpoint({ep.endpoint_id!r}, api_key=os.environ["PODIUM_API_KEY"])\n'
            f"print(ep.run_sync({args!r}, timeout=60))",
        ),
        Snippet(
            "typescript",
            "TypeScript (podium-client)",
            "typescript",
            'import { Podium } from "podium-client";\n\n'
            f'const podium = new Podium({{ url: "{base_url}", apiKey: process.env.PODIUM_API_KEY }});\n'
            f'console.log(await podium.call("{ep.name}", "{route.path}", {ts_args}));',
        ),
        Snippet(
            "laminar",
            "Laminar-style",
            "shell",
            f'curl -H "Authorization: Bearer {KEY}" -H "Content-Type: application/json" \\\n'
            f"     -d {shlex.quote(json.dumps({'endpoint': ep.name, 'inputs': args, 'env': {}}))} \\\n"
            f"     {shlex.quote(base_url + '/v2/endpoint/run')}",
        ),
    ]
