"""DigitalHub entities (project, function, task, run) as the SDK sent them, in one table.

The body is kept whole so the SDK reads back what it wrote; the server adds ids, times and, for
runs, the endpoint that serves them and a sealed capability token for their service URL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from podium import _json
from podium.clock import Clock
from podium.core.errors import InvalidRequest
from podium.store.engine import Row, Store
from podium.store.tables import dh_entities


@dataclass(frozen=True)
class Entity:
    id: str
    project_id: str
    dh_project: str
    type: str
    name: str
    kind: str
    body: dict[str, Any]
    endpoint_id: str | None
    token: str | None
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, row: Row) -> Entity:
        return cls(
            row["id"],
            row["project_id"],
            row["dh_project"],
            row["type"],
            row["name"],
            row["kind"],
            _json.loads(row["body"]),
            row["endpoint_id"],
            row["token"],
            row["created_at"],
            row["updated_at"],
        )


class Duplicated(InvalidRequest):
    """An entity's id is taken (DigitalHub Core's words, which the SDK maps)."""


def new_entity_id() -> str:
    return uuid.uuid4().hex


class Records:
    """DigitalHub entities of one Podium project; `dh_project` is DigitalHub's project name."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def put(
        self,
        project_id: str,
        dh_project: str,
        type_: str,
        body: dict[str, Any],
        *,
        endpoint_id: str | None = None,
        token: str | None = None,
        row_id: str | None = None,
    ) -> Entity:
        """Insert, or replace the body of, the entity stored under `row_id` (default: `body["id"]`).

        Row ids are unique across Podium projects: a DigitalHub project, which the SDK names
        itself, is stored under an id of its own, so two Podium projects may each have a
        DigitalHub project of one name. Another id already taken is Duplicated."""
        row_id = row_id or body["id"]
        now = self.clock.now()
        values = {
            "name": str(body.get("name") or ""),
            "kind": str(body.get("kind") or ""),
            "body": _json.dumps(body),
            "updated_at": now,
        }
        try:
            async with self.store.tx() as conn:
                res = await conn.execute(
                    update(dh_entities)
                    .where(dh_entities.c.id == row_id, dh_entities.c.project_id == project_id)
                    .values(**values)
                )
                if not res.rowcount:
                    await conn.execute(
                        insert(dh_entities).values(
                            id=row_id,
                            project_id=project_id,
                            dh_project=dh_project,
                            type=type_,
                            endpoint_id=endpoint_id,
                            token=token,
                            created_at=now,
                            **values,
                        )
                    )
        except IntegrityError:  # the id is another's (of another Podium project, even)
            raise Duplicated(f"Duplicated entity: {type_} {body['id']}") from None
        found = await self.by_id(row_id)
        assert found is not None
        return found

    async def set_serving(self, project_id: str, entity_id: str, endpoint_id: str | None, token: str | None) -> None:
        async with self.store.tx() as conn:
            await conn.execute(
                update(dh_entities)
                .where(dh_entities.c.id == entity_id, dh_entities.c.project_id == project_id)
                .values(endpoint_id=endpoint_id, token=token, updated_at=self.clock.now())
            )

    async def get(self, project_id: str, dh_project: str, type_: str, ref: str) -> Entity | None:
        """By id, or (projects) by name."""
        key = dh_entities.c.name if type_ == "project" else dh_entities.c.id
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(dh_entities).where(
                    dh_entities.c.project_id == project_id,
                    dh_entities.c.dh_project == dh_project,
                    dh_entities.c.type == type_,
                    key == ref,
                )
            )
            row = res.mappings().first()
        return Entity.of(row) if row is not None else None

    async def by_id(self, entity_id: str) -> Entity | None:
        """Any entity by its id alone (a service URL carries no key, only the run id)."""
        async with self.store.tx() as conn:
            row = (await conn.execute(select(dh_entities).where(dh_entities.c.id == entity_id))).mappings().first()
        return Entity.of(row) if row is not None else None

    async def list(self, project_id: str, dh_project: str, type_: str) -> list[Entity]:
        """Newest first."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(dh_entities)
                .where(
                    dh_entities.c.project_id == project_id,
                    dh_entities.c.dh_project == dh_project,
                    dh_entities.c.type == type_,
                )
                .order_by(dh_entities.c.created_at.desc())
            )
            return [Entity.of(r) for r in res.mappings().all()]

    async def delete(self, project_id: str, entity_id: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(
                delete(dh_entities).where(dh_entities.c.project_id == project_id, dh_entities.c.id == entity_id)
            )
