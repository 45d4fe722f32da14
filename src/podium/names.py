"""The ids and names Podium builds file paths from (log folders, bundles, environments, staged
assets), checked in one place: a value that does not have its kind's shape is refused with
InvalidName (answered 400) naming it, before any path is built from it, so no id can lead out of
its folder. It sits below every layer: the store checks what it builds paths from too.

Shapes are those Podium itself generates, so a check never refuses a value Podium made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from podium.errors import DomainError


class InvalidName(DomainError):
    """An id or name does not have its kind's shape."""

    code = "invalid_name"


@dataclass(frozen=True)
class Shape:
    """Parameters:
    kind: what the value is, as the error names it ("endpoint id").
    pattern: the whole value must match it.
    looks: what a valid value looks like, for the error.
    """

    kind: str
    pattern: str
    looks: str
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def match(self, value: object) -> bool:
        return isinstance(value, str) and self._regex.fullmatch(value) is not None

    def check(self, value: object) -> str:
        """The value, if it has this shape; else InvalidName naming it."""
        if not self.match(value):
            shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80] + "…")
            code = "invalid_" + self.kind.lower().replace(" ", "_")
            raise InvalidName(f"invalid {self.kind} {shown}: {self.looks}", code=code)
        assert isinstance(value, str)
        return value


ENDPOINT_ID = Shape("endpoint id", r"[a-z0-9]{1,64}", "lowercase letters and digits")
ENDPOINT_NAME = Shape(
    "endpoint name",
    r"[a-z0-9][a-z0-9-]{0,62}",
    "lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters",
)
VOLUME_NAME = Shape(
    "volume name",
    r"[a-z0-9][a-z0-9-]{0,62}",
    "lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters",
)


def volume_env(name: str) -> str:
    """`$PODIUM_VOLUME_<NAME>`, where a worker finds a volume: `hf-cache` -> `PODIUM_VOLUME_` + `HF_CACHE`."""
    return "PODIUM_VOLUME_" + name.upper().replace("-", "_")


VERSION_ID = Shape("version id", r"[0-9a-f]{16}", "16 hexadecimal digits")
WORKER_ID = Shape("worker id", r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", "letters, digits, '-' and '_'")
ENV_HASH = Shape("environment hash", r"[0-9a-f]{24}", "24 hexadecimal digits")
SHA256 = Shape("sha256", r"[0-9a-f]{64}", "64 lowercase hexadecimal digits")
ASSET_ID = Shape("asset id", r"[0-9a-f]{24}", "24 hexadecimal digits")
DIGITALHUB_ID = Shape(
    "DigitalHub id",
    r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}",
    "letters, digits, '-' and '_', starting with a letter or digit, at most 128 characters",
)
