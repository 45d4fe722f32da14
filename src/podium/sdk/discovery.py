"""Finding the service a module defines: a `Service`, a `@podium.handler`, a plain `handler(job)`,
or an ASGI/WSGI app (kept apart from `service` so that it may import `httpapp`, which builds on it)."""

from __future__ import annotations

from typing import Any

from podium.sdk.httpapp import find_app, http_service
from podium.sdk.service import HANDLER_ATTR, Service, default_name, handler_service, pick_service


def _marked(value: Any) -> Any:
    """The service a `@podium.handler` mark holds; None for anything else, even an object that
    raises on attribute access (Flask's `request` proxy outside a request does)."""
    try:
        return getattr(value, HANDLER_ATTR, None)
    except Exception:
        return None


def find_service(namespace: dict[str, Any], name: str | None = None) -> Service:
    """Find the one service a module defines (or the one called `name`).

    Looks for :class:`Service` objects, then functions marked `@podium.handler`, then a plain
    top-level function called `handler` (RunPod's convention).
    """
    found: dict[str, Service] = {}
    for value in list(namespace.values()):
        svc = value if isinstance(value, Service) else _marked(value)
        if isinstance(svc, Service):
            found.setdefault(svc.name, svc)
    if not found and callable(namespace.get("handler")):
        svc = handler_service(namespace["handler"])
        found[svc.name] = svc
    if not found:
        app = find_app(namespace)
        if app is not None:
            svc = http_service(app[1], app[0], default_name(str(namespace.get("__name__", "app"))))
            found[svc.name] = svc
    return pick_service(
        found,
        name,
        "no service found: decorate an initializer with @podium.service, "
        "a handler with @podium.handler, define a top-level `handler(job)`, "
        "or expose an ASGI/WSGI app as `app`",
    )
