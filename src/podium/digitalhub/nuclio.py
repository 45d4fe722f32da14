"""What runs in the worker for a DigitalHub Python serve function: Nuclio's handler model as a WSGI
app, so every HTTP method and path under the run's service URL reaches `serve`.

The bundle holds the user's source (`function.py`), `digitalhub.json` (handler, init function,
init parameters) and an entry `app.py` that calls `wsgi_app(__file__)`. Importing the entry runs
`init(context, **init_parameters)` once per worker (a failure there is the endpoint's ERROR
reason); each request calls `serve(context, event)` and its return value is the answer.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCE = "function.py"
SETTINGS = "digitalhub.json"
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class Response:
    """Nuclio's `context.Response(body, headers, content_type, status_code)`."""

    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    status_code: int = 200


@dataclass
class Event:
    """Nuclio's event: a JSON body arrives parsed, any other body as bytes."""

    body: Any
    headers: dict[str, str]
    content_type: str
    method: str
    path: str
    fields: dict[str, str]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)


class Context:
    """Nuclio's context: a logger, `user_data` for what init prepares, and `Response`.
    Attributes set on it by init (`context.model = ...`) stay for every request."""

    Response = Response

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self.user_data = type("UserData", (), {})()
        self.worker_id = 0


def _function(module: Any, name: str, what: str) -> Callable[..., Any]:
    attr = name.rpartition(":")[2].rpartition(".")[2]  # "module:serve" or "serve"
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise RuntimeError(f"the function's source defines no {what} {attr!r}")
    return fn  # type: ignore[no-any-return]


def _event(environ: dict[str, Any]) -> Event:
    size = int(environ.get("CONTENT_LENGTH") or 0)
    raw: bytes = environ["wsgi.input"].read(size) if size else b""
    content_type = str(environ.get("CONTENT_TYPE") or "")
    body: Any = raw
    if raw and "json" in content_type:
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
    headers = {k[5:].replace("_", "-").title(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    if content_type:
        headers["Content-Type"] = content_type
    query = str(environ.get("QUERY_STRING") or "")
    fields = dict(p.partition("=")[::2] for p in query.split("&") if p)
    return Event(
        body, headers, content_type, str(environ["REQUEST_METHOD"]), str(environ.get("PATH_INFO") or "/"), fields
    )


def _answer(value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A handler's return value as (status, headers, body), the way Nuclio turns it into one."""
    status, headers, content_type, body = 200, {}, None, value
    if isinstance(value, Response):
        status, headers, content_type, body = value.status_code, dict(value.headers), value.content_type, value.body
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], int):
        status, body = value
    if body is None:
        data, default = b"", "text/plain"
    elif isinstance(body, bytes):
        data, default = body, "application/octet-stream"
    elif isinstance(body, str):
        data, default = body.encode(), "text/plain"
    else:
        data, default = json.dumps(body).encode(), "application/json"
    headers.setdefault("Content-Type", content_type or default)
    return status, list(headers.items()), data


class NuclioApp:
    """A WSGI app over `serve(context, event)`, initialized once by `init(context, **params)`."""

    def __init__(self, root: Path) -> None:
        settings = json.loads((root / SETTINGS).read_text())
        spec = importlib.util.spec_from_file_location("function", root / SOURCE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["function"] = module
        spec.loader.exec_module(module)
        self.context = Context(settings.get("name") or "function")
        self.serve = _function(module, settings["handler"], "handler")
        if settings.get("init_function"):
            init = _function(module, settings["init_function"], "init function")
            init(self.context, **settings.get("init_parameters", {}))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, headers, data = _answer(self.serve(self.context, _event(environ)))
        except Exception as exc:
            traceback.print_exc()
            status, headers = 500, [("Content-Type", "text/plain")]
            data = f"{type(exc).__name__}: {exc}".encode()
        start_response(f"{status} {'OK' if status < 400 else 'Error'}", headers)
        return [data]


def wsgi_app(entry_file: str) -> NuclioApp:
    return NuclioApp(Path(entry_file).parent)
