"""The authoring SDK: what a user's code imports. No server code is imported from here."""

from podium.records import ServiceConfig
from podium.sdk.context import JobContext, context
from podium.sdk.service import Route, Service, handler, service
from podium.sdk.volumes import volume

__all__ = ["JobContext", "Route", "Service", "ServiceConfig", "context", "handler", "service", "volume"]
