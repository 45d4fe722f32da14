"""JSON answers rendered by orjson (fast, and the same encoder the store uses)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from podium import _json


class JSONAnswer(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _json.dumpb(content)
