"""Podium: a self-hosted serverless platform for Python.

Authoring::

    import podium

    @podium.service(name="hello")
    def init():
        return {"number": 42}

    @init.endpoint("/hello")
    def hello(number, message="Hello"):
        if number < 0:
            raise podium.BadRequest("number must be >= 0")  # answers 400 with this message
        return f"{message} {number}"
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from podium._version import __version__
from podium.errors import (
    APIError,
    BadRequest,
    BundleError,
    ConfigError,
    Conflict,
    DeploymentError,
    HTTPError,
    NotFound,
    PodiumError,
    RouteError,
    ServiceDefinitionError,
)
from podium.sdk import JobContext, Route, Service, ServiceConfig, context, handler, service, volume
from podium.timetable import Every, every

if _TYPE_CHECKING:
    from podium import aio
    from podium.client.deployment import Deployment, deploy, get_deployment
    from podium.client.jobs import Endpoint, Job, JobFailed, JobTimeout
    from podium.client.usage import usage

#: The clients are imported on first use: a worker imports `podium` for the authoring SDK and
#: should not pay for httpx and the client modules at every cold start.
_LAZY = {
    "aio": "podium.aio",
    "Deployment": "podium.client.deployment",
    "deploy": "podium.client.deployment",
    "get_deployment": "podium.client.deployment",
    "Endpoint": "podium.client.jobs",
    "Job": "podium.client.jobs",
    "JobFailed": "podium.client.jobs",
    "JobTimeout": "podium.client.jobs",
    "usage": "podium.client.usage",
}


def __getattr__(name: str) -> _Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'podium' has no attribute {name!r}")
    module = _importlib.import_module(_LAZY[name])
    value = module if name == "aio" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "APIError",
    "BadRequest",
    "BundleError",
    "ConfigError",
    "Conflict",
    "Deployment",
    "DeploymentError",
    "Endpoint",
    "Every",
    "HTTPError",
    "Job",
    "JobContext",
    "JobFailed",
    "JobTimeout",
    "NotFound",
    "PodiumError",
    "Route",
    "RouteError",
    "Service",
    "ServiceConfig",
    "ServiceDefinitionError",
    "__version__",
    "aio",
    "context",
    "deploy",
    "every",
    "get_deployment",
    "handler",
    "service",
    "usage",
    "volume",
]
