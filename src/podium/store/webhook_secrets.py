"""Each project's webhook signing secret, sealed in the store so that every replica signs alike.

One secret per project: a project's receivers verify only what that project's jobs sent, and no
other tenant can make a signature they accept. A project gets its secret when it is created
(projects older than this, on first use). Rotating makes a new secret and keeps the one it
replaces valid for a window (one previous secret at most): meanwhile deliveries are signed with
both, so a receiver still holding the old one keeps verifying while it moves over.

Seeds are the first secret of given projects: the server seeds `default` with PODIUM_WEBHOOK_SECRET
(or the installation-wide secret earlier versions kept), so receivers set up then keep verifying.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from podium.clock import Clock
from podium.store.engine import Row, Store
from podium.store.records import from_columns
from podium.store.secretbox import SecretBox
from podium.store.tables import webhook_secrets


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class SealedSecrets:
    """A project's row: its secrets as stored, sealed (never opened here)."""

    project_id: str
    secret: str = field(repr=False)
    created_at: float
    previous: str | None = field(repr=False)
    previous_until: float | None

    @classmethod
    def from_row(cls, row: Row) -> SealedSecrets:
        return from_columns(cls, row)


@dataclass(frozen=True)
class SigningSecret:
    """A project's secret as it stands now: the current one, and the previous one while it is
    still valid (None otherwise). Secrets are left out of the repr, so a log line cannot carry them."""

    secret: str = field(repr=False)
    created_at: float
    previous: str | None = field(repr=False)
    previous_until: float | None

    @classmethod
    def opened(cls, sealed: SealedSecrets, box: SecretBox, now: float) -> SigningSecret:
        live = sealed.previous_until is not None and sealed.previous_until > now
        previous = sealed.previous if live else None
        return cls(
            secret=box.open(sealed.secret),
            created_at=sealed.created_at,
            previous=None if previous is None else box.open(previous),
            previous_until=None if previous is None else sealed.previous_until,
        )

    @property
    def signing(self) -> tuple[str, ...]:
        """What a delivery is signed with now: the current secret, then the previous one."""
        return (self.secret,) if self.previous is None else (self.secret, self.previous)


class WebhookSecrets:
    """Parameters:
    store: where the secrets live, sealed.
    box: the server's secret box, which seals and opens them.
    clock: time source.
    window: seconds a rotated-out secret stays valid unless the rotation says otherwise.
    seeds: the first secret of some projects (by id), for when they have none yet.
    """

    def __init__(
        self,
        store: Store,
        box: SecretBox,
        clock: Clock,
        *,
        window: float,
        seeds: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.box = box
        self.clock = clock
        self.window = window
        self._seeds = dict(seeds or {})

    async def ensure(self, project_id: str) -> SealedSecrets:
        """The project's sealed secrets, its secret made now if it has none."""
        row = await self._read(project_id)
        if row is not None:
            return row
        made = SealedSecrets(
            project_id=project_id,
            secret=self.box.seal(self._seeds.get(project_id) or new_secret()),
            created_at=self.clock.now(),
            previous=None,
            previous_until=None,
        )
        try:
            async with self.store.tx() as conn:
                await conn.execute(insert(webhook_secrets).values(**dataclasses.asdict(made)))
            return made
        except IntegrityError:  # made at the same moment by another request or replica
            row = await self._read(project_id)
            if row is None:  # no such project: callers pass only projects the catalog found
                raise LookupError(f"project {project_id} does not exist") from None
            return row

    async def get(self, project_id: str) -> SigningSecret:
        return SigningSecret.opened(await self.ensure(project_id), self.box, self.clock.now())

    async def rotate(self, project_id: str, window: float | None = None) -> SigningSecret:
        """A new secret for the project; the one it replaces stays valid `window` seconds
        (default: the server's setting; 0: not at all, for a secret that leaked)."""
        keep = self.window if window is None else window
        while True:
            row = await self.ensure(project_id)
            now = self.clock.now()
            made = SealedSecrets(
                project_id=project_id,
                secret=self.box.seal(new_secret()),
                created_at=now,
                previous=row.secret if keep > 0 else None,
                previous_until=now + keep if keep > 0 else None,
            )
            async with self.store.tx() as conn:
                res = await conn.execute(
                    update(webhook_secrets)
                    .where(webhook_secrets.c.project_id == project_id, webhook_secrets.c.secret == row.secret)
                    .values(**dataclasses.asdict(made))
                )
            if res.rowcount == 1:  # else another rotation came first: rotate what it made
                return SigningSecret.opened(made, self.box, now)

    async def _read(self, project_id: str) -> SealedSecrets | None:
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(select(webhook_secrets).where(webhook_secrets.c.project_id == project_id))
            row = res.mappings().first()
        return None if row is None else SealedSecrets.from_row(row)
