"""Podium: a self-hosted serverless platform for Python.

Authoring::

    import podium

    @podium.service(name="hello")
    def init():
        return {"number": 42}

    @init.endpoint("/hello")
    def hello(number, message="Hello"):
        return f"{message} {number}"
"""

from podium._version import __version__
from podium.errors import (
    APIError,
    BundleError,
    ConfigError,
    DeploymentError,
    PodiumError,
    RouteError,
    ServiceDefinitionError,
)
from podium import aio
from podium.client.deployment import Deployment, deploy, get_deployment
from podium.client.jobs import Endpoint, Job, JobFailed, JobTimeout
from podium.sdk import JobContext, Route, Service, ServiceConfig, context, handler, service

__all__ = [
    "APIError",
    "BundleError",
    "ConfigError",
    "Deployment",
    "DeploymentError",
    "Endpoint",
    "Job",
    "JobContext",
    "JobFailed",
    "JobTimeout",
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
    "get_deployment",
    "handler",
    "service",
]
