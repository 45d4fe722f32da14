"""When a schedule fires: a cron expression in a time zone, or a fixed period.

Shared by the authoring SDK (a route's `schedule=` is checked where it is declared), the admin
API (a 422 that names the bad expression or zone) and the leader that fires schedules. Cron
expressions are read by cronsim (five fields, as cron(8) reads them), in the schedule's zone with
zoneinfo, so "0 9 * * *" in Europe/Rome is 09:00 there across daylight-saving changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The shortest period a schedule may have: the leader looks at schedules about once a second.
MIN_EVERY_SECONDS = 1.0
#: The longest: a year (longer periods are cron expressions).
MAX_EVERY_SECONDS = 366 * 86400.0
#: `--every` durations: a number and a unit (s, m, h or d).
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class InvalidSchedule(ValueError):
    """A cron expression, time zone or period that cannot be used; `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Every:
    """A fixed period (`podium.every(seconds=30)`), counted from when the schedule was made."""

    seconds: float

    def __post_init__(self) -> None:
        if not MIN_EVERY_SECONDS <= self.seconds <= MAX_EVERY_SECONDS:
            raise InvalidSchedule(
                "every",
                f"a schedule's period must be at least {MIN_EVERY_SECONDS:g} s and at most a year "
                f"(got {self.seconds!r})",
            )


def every(*, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0) -> Every:
    """A period for `schedule=`: `podium.every(seconds=30)`, `podium.every(hours=1)`."""
    return Every(seconds + 60 * minutes + 3600 * hours + 86400 * days)


def parse_duration(text: str) -> float:
    """`30s`, `5m`, `2h` or `1d` in seconds (the CLI's `--every`)."""
    found = _DURATION.match(text)
    if found is None:
        raise InvalidSchedule("every", f"invalid period {text!r}: use a number and a unit, like 30s, 5m, 2h or 1d")
    return Every(float(found.group(1)) * _UNITS[found.group(2)]).seconds


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule("timezone", f"unknown time zone {name!r} (an IANA name, like Europe/Rome)") from None


def check_cron(expr: str, timezone: str = "UTC") -> None:
    """Raise InvalidSchedule naming the expression or zone that cannot be used."""
    next_cron(expr, timezone, 0.0)


def next_cron(expr: str, timezone: str, after: float) -> float:
    """The first time after `after` (UNIX seconds) that `expr` matches in `timezone`; raises
    ModuleNotFoundError where cronsim is not installed (a worker's environment: see the SDK)."""
    tz = zone(timezone)
    from cronsim import CronSim, CronSimError  # imported here: a worker's environment has no cronsim

    start = datetime.fromtimestamp(after, tz).replace(microsecond=0)
    try:
        return next(CronSim(expr, start)).timestamp()
    except (CronSimError, StopIteration) as exc:
        raise InvalidSchedule("cron", f"invalid cron expression {expr!r}: {exc or 'it never matches'}") from None


def next_fire(cron: str | None, every_s: float | None, timezone: str, after: float) -> float:
    """When a schedule fires next after `after`: missed ticks are not caught up, so a schedule
    that was due long ago fires once and then at its next tick from now."""
    if cron is not None:
        return next_cron(cron, timezone, after)
    assert every_s is not None
    return after + every_s
