"""The admin API's request bodies as pydantic models: checked once, in one place, against the same
typed records the SDK builds (a route table is a list of `RouteRecord`).

Every model refuses fields it does not name (a 422 that names them): what the server derives
(a version's `env_hash`, its id) can never be set by a request. Only Podium's own clients send
these bodies; the surfaces of other platforms' clients (Covalent, DigitalHub, RunPod, Laminar)
accept what those packages send, as their wire models must.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podium.records import RouteRecord
from podium.server.errors import HTTPError

Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionIn(Strict):
    """A version as `podium deploy` describes it (the bundle itself is uploaded before)."""

    #: The id the client computed for its own use; the server derives the version's id itself.
    id: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    service: str
    entry: str
    routes: list[RouteRecord] = Field(min_length=1)
    config: dict[str, Any]
    size: int = Field(ge=0)
    runtime: Literal["podium", "runpod"] = "podium"
    requirements: dict[str, Any] | None = None


class DeployIn(Strict):
    name: str
    version: VersionIn
    message: str | None = None
    #: Deploy the version as a canary taking this percent of the endpoint's calls (see RolloutIn).
    canary: int | None = Field(default=None, ge=1, le=99)
    max_failure_rate: float | None = Field(default=None, ge=0, lt=1)


class RolloutIn(Strict):
    """Start a canary rollout of `version` (one of the project's, by id or a unique prefix), or
    change the share of the one under way (no version)."""

    version: str | None = None
    #: The canary's share of new calls, 1 to 99 percent.
    percent: int = Field(ge=1, le=99)
    #: The leader aborts the rollout once the canary fails more often than this (over >= 20 calls).
    max_failure_rate: float | None = Field(default=None, ge=0, lt=1)


class RollbackIn(Strict):
    #: A version id; none: the one before the current one.
    version: str | None = None
    message: str | None = None


class KeyIn(Strict):
    role: str = "invoke"
    name: str | None = Field(default=None, max_length=128)
    #: A duration like 30d, 12h, 90m or 45s.
    expires: str | None = None


class ProjectIn(Strict):
    name: str


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: How long the replaced webhook secret stays valid: a duration like 24h, or 0 (not at all);
    #: none: the server's setting (PODIUM_WEBHOOK_ROTATION_WINDOW).
    window: str | float | None = None


class VolumeIn(Strict):
    """A new volume: its name, and its size limit in bytes or with a unit ("50G"; none: no limit)."""

    name: str
    max_size: int | str | None = None


def parse(model: type[Model], body: Any, what: str) -> Model:
    """The body as `model`; a 422 naming the fields it does not take, or else a 400 that says
    which field is wrong and why."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        unknown = [".".join(str(p) for p in e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
        if unknown:
            raise HTTPError(422, "unknown_field", f"{what}: unknown field {', '.join(unknown)}") from None
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in errors[:5])
        raise HTTPError(400, "invalid_request", f"{what}: {problems}") from None
