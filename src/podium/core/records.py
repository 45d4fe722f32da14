"""The records the layers pass to each other, defined once.

A version's route table is JSON (stored with the version, sent to workers and clients); these
TypedDicts name its shape so that the SDK that builds it, deploy validation, the routers, the
worker that checks it and the clients all agree on it. Only the standard library is imported here:
the authoring SDK uses these records too.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

# pydantic validates these (deploy) and needs typing_extensions.TypedDict before Python 3.12.
from typing_extensions import TypedDict

#: route: a function of keyword arguments; handler: RunPod-style `handler(job)`; http: an ASGI or
#: WSGI app that receives whole HTTP requests.
RouteKind = Literal["route", "handler", "http"]


class Param(TypedDict):
    """One keyword argument of a route."""

    name: str
    required: bool
    default: NotRequired[Any]
    #: JSON Schema of its annotation, when it has one the server can describe.
    schema: NotRequired[dict[str, Any]]


class RouteRecord(TypedDict):
    """One route of a version's route table."""

    path: str
    #: The client method name (`/custom-endpoint` -> `custom_endpoint`).
    method: str
    kind: RouteKind
    streaming: bool
    is_async: bool
    params: list[Param]
    #: Takes any keyword (`**kwargs`): arguments are not checked against `params`.
    var_keyword: bool
    #: The route /run and /runsync call.
    default: NotRequired[bool]
    returns: NotRequired[dict[str, Any]]


class VersionInfo(TypedDict):
    """What the call path needs of a version, parsed once and kept (versions never change)."""

    routes: list[RouteRecord]
    config: dict[str, Any]
    #: "podium" (a Podium service) or "runpod" (an unmodified RunPod worker file).
    runtime: str
    #: The version's requirement set and the hash of the environment built for it, if any.
    requirements: Any
    env_hash: str | None
