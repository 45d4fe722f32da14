"""The records the `covalent-cloud` client sends and reads, as pydantic models.

Field names are Covalent's (`covalent_cloud/function_serve/models.py`); only what Podium uses is
declared, the rest of a request is ignored (and never stored: `executor.settings` carries the
client's own API key).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


class AssetRef(BaseModel):
    """An uploaded asset: `Asset` (a pickled object) or `JSON` (base64 JSON)."""

    type: Literal["Asset", "JSON"]
    id: str


class EndpointSpec(BaseModel):
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"] = "POST"
    route: str
    name: str = ""
    endpoint_fn: AssetRef
    streaming: bool = False
    description: str | None = ""


class ExecutorSpec(BaseModel):
    """Of the executor, only the service's lifetime is used (the client sends it in seconds)."""

    time_limit: float = Field(default=1800.0, gt=0)


class FunctionService(BaseModel):
    """`POST /fn/api/v0/functions`."""

    title: str | None = ""
    auth: bool | None = None
    description: str | None = ""
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    tags: str | list[str] | None = ""
    init_fn: AssetRef
    init_fn_args: AssetRef
    init_fn_kwargs: AssetRef
    endpoints: list[EndpointSpec]

    def tag_list(self) -> list[str]:
        if not self.tags:
            return []
        return [self.tags] if isinstance(self.tags, str) else list(self.tags)


class RouteRecord(BaseModel):
    """A route as the client reads it (`RouteInfo` and `FunctionEndpoint` both fit)."""

    route: str
    method: str
    streaming: bool
    name: str
    description: str


class CovalentConfig(BaseModel):
    """What a Covalent deployment keeps in its version's config under "covalent"."""

    title: str
    description: str
    tags: list[str]
    auth: bool
    routes: list[RouteRecord]
    #: Seconds after the deploy when the deployment stops (INACTIVE), as on Covalent.
    time_limit: float = 1800.0
    #: The deployment's first inference key, sealed with the server's secret key (the client
    #: reads it back as the deployment's token, as Covalent's function record carries it).
    token: str
