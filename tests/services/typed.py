"""Annotated routes, for the per-endpoint OpenAPI description."""

from pydantic import BaseModel

import podium


class Point(BaseModel):
    x: float
    y: float


@podium.service(name="typed")
def init():
    return {}


@init.endpoint("/distance")
def distance(a: Point, b: Point, scale: float = 1.0) -> float:
    return scale * ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5


@init.endpoint("/tags")
def tags(names: list[str], upper: bool = False, note=None) -> dict[str, int]:
    return {(n.upper() if upper else n): len(n) for n in names}


@init.endpoint("/count", streaming=True)
def count(n: int = 3):
    yield from (str(i) for i in range(n))
