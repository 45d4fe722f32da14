"""Ids given by their first characters, as git takes commits: `podium rollback NAME 3ee4e1c2`.

A reference that is an id is that id; otherwise one of at least `MIN_PREFIX` characters stands for
the one id that starts with it. None is not found; several is an error that says how many, so the
caller knows to give more characters.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from podium.core.errors import AmbiguousId, NotFound

#: Fewer characters would match too much to be worth looking up.
MIN_PREFIX = 4
#: What an id of a version (hex) or a job (a UUID, or a client's own id) may start with.
PREFIX = re.compile(r"[0-9A-Za-z_-]+")
#: Candidates counted at most (the error says "N or more" past this).
COUNTED = 50


async def by_prefix(what: str, ref: str, starting: Callable[[str, int], Awaitable[list[str]]]) -> str:
    """The one id that starts with `ref` (which is not an id itself), as `starting(ref, limit)`
    lists them. Raises NotFound (none, or a prefix too short) or AmbiguousId (several)."""
    if len(ref) < MIN_PREFIX or not PREFIX.fullmatch(ref):
        hint = f" (a prefix needs at least {MIN_PREFIX} characters)" if len(ref) < MIN_PREFIX else ""
        raise NotFound(what, ref, detail=f"no {what} {ref!r}{hint}")
    found = await starting(ref, COUNTED + 1)
    if not found:
        raise NotFound(what, ref)
    if len(found) > 1:
        many = f"{COUNTED} or more" if len(found) > COUNTED else str(len(found))
        raise AmbiguousId(
            f"{what} prefix {ref!r} matches {many} {what}s; give more characters",
            extra={"candidates": len(found)},
        )
    return found[0]
