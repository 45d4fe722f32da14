"""A project's volumes as the catalog keeps them: name and size limit. Their files are on disk
(`core.volumes`), under a directory named by the project's id and the volume's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from podium.clock import Clock
from podium.store.engine import Row, Store
from podium.store.projects import new_id
from podium.store.tables import volumes


@dataclass(frozen=True, slots=True)
class Volume:
    id: str
    project_id: str
    name: str
    #: Bytes its files may take (None: no limit).
    max_size: int | None
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> Volume:
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            name=row["name"],
            max_size=row["max_size"],
            created_at=row["created_at"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "max_size": self.max_size, "created_at": self.created_at}


class Volumes:
    """Create, find, list and delete a project's volumes."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or Clock()

    async def create_volume(self, project_id: str, name: str, max_size: int | None) -> Volume | None:
        """The new volume; None when the project has one of that name already."""
        row: dict[str, Any] = {"id": new_id(12), "project_id": project_id, "name": name, "max_size": max_size}
        row["created_at"] = self.clock.now()
        try:
            async with self.store.tx() as conn:
                await conn.execute(insert(volumes).values(**row))
        except IntegrityError:
            return None
        return Volume.from_row(row)

    async def get_volume(self, project_id: str, name: str) -> Volume | None:
        q = select(volumes).where(volumes.c.project_id == project_id, volumes.c.name == name)
        async with self.store.tx() as conn:
            row = (await conn.execute(q)).mappings().first()
        return None if row is None else Volume.from_row(row)

    async def list_volumes(self, project_id: str) -> list[Volume]:
        q = select(volumes).where(volumes.c.project_id == project_id).order_by(volumes.c.name)
        async with self.store.tx() as conn:
            return [Volume.from_row(r) for r in (await conn.execute(q)).mappings().all()]

    async def delete_volume(self, volume_id: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(delete(volumes).where(volumes.c.id == volume_id))
