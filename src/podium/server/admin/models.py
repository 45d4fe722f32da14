"""The admin API's request bodies as pydantic models: checked once, in one place, against the same
typed records the SDK builds (a route table is a list of `RouteRecord`)."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podium.records import RouteRecord
from podium.server.errors import HTTPError

Model = TypeVar("Model", bound=BaseModel)


class VersionIn(BaseModel):
    """A version as `podium deploy` describes it (the bundle itself is uploaded before)."""

    model_config = ConfigDict(extra="allow")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    service: str
    entry: str
    routes: list[RouteRecord] = Field(min_length=1)
    config: dict[str, Any]
    size: int = Field(ge=0)
    runtime: Literal["podium", "runpod"] = "podium"
    requirements: dict[str, Any] | None = None


class DeployIn(BaseModel):
    name: str
    version: VersionIn
    message: str | None = None


class RollbackIn(BaseModel):
    #: A version id; none: the one before the current one.
    version: str | None = None
    message: str | None = None


class KeyIn(BaseModel):
    role: str = "invoke"
    name: str | None = Field(default=None, max_length=128)
    #: A duration like 30d, 12h, 90m or 45s.
    expires: str | None = None


class ProjectIn(BaseModel):
    name: str


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: How long the replaced webhook secret stays valid: a duration like 24h, or 0 (not at all);
    #: none: the server's setting (PODIUM_WEBHOOK_ROTATION_WINDOW).
    window: str | float | None = None


def parse(model: type[Model], body: Any, what: str) -> Model:
    """The body as `model`, or a 400 that says which field is wrong and why."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise HTTPError(400, "invalid_request", f"{what}: {problems}") from None
