"""Projects and their API keys (stored as hashes: a key is shown once, never stored)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from sqlalchemy import delete, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from podium.clock import Clock
from podium.store.engine import Store
from podium.store.records import Key, Project
from podium.store.tables import api_keys, projects

DEFAULT_PROJECT = "default"
KEY_PREFIX = "pod_live_"
_ALPHABET = string.ascii_letters + string.digits


def new_id(n: int = 14) -> str:
    """A random lowercase id (endpoint ids look like RunPod's)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_key() -> str:
    """A recognisable prefix plus 40 base62 characters (~238 bits)."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def key_prefix(key: str) -> str:
    """The part of a key that may be shown and stored beside its hash."""
    return key[: len(KEY_PREFIX) + 4] if key.startswith(KEY_PREFIX) else key[:4]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Projects:
    """Projects and the keys that act in them."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or Clock()

    async def ping(self) -> None:
        """One round trip to the database (raises when it is unreachable)."""
        async with self.store.read() as conn:
            await conn.scalar(select(literal(1)))

    async def ensure_project(self, name: str = DEFAULT_PROJECT) -> str:
        async with self.store.tx() as conn:
            pid = await conn.scalar(select(projects.c.id).where(projects.c.name == name))
            if pid is not None:
                return str(pid)
        try:
            async with self.store.tx() as conn:
                pid = new_id(12)
                await conn.execute(insert(projects).values(id=pid, name=name, created_at=self.clock.now()))
                return pid
        except IntegrityError:  # created concurrently
            return await self.ensure_project(name)

    async def create_project(self, name: str) -> str | None:
        """A new project's id; None if the name is taken."""
        try:
            async with self.store.tx() as conn:
                pid = new_id(12)
                await conn.execute(insert(projects).values(id=pid, name=name, created_at=self.clock.now()))
                return pid
        except IntegrityError:
            return None

    async def list_projects(self) -> list[Project]:
        async with self.store.tx() as conn:
            res = await conn.execute(select(projects).order_by(projects.c.created_at))
            return [Project.from_row(r) for r in res.mappings().all()]

    async def project(self, ref: str) -> Project | None:
        """A project by id or name."""
        async with self.store.tx() as conn:
            res = await conn.execute(select(projects).where(or_(projects.c.id == ref, projects.c.name == ref)))
            row = res.mappings().first()
        return None if row is None else Project.from_row(row)

    async def create_key(
        self,
        project_id: str,
        role: str,
        *,
        name: str | None = None,
        endpoint_id: str | None = None,
        raw: str | None = None,
        expires_at: float | None = None,
        operator: bool = False,
    ) -> tuple[str, str]:
        """Store a key's hash; returns (key id, the key itself: shown once, never stored)."""
        key = raw or new_key()
        kid = new_id(12)
        async with self.store.tx() as conn:
            await conn.execute(
                insert(api_keys).values(
                    id=kid,
                    project_id=project_id,
                    key_hash=hash_key(key),
                    prefix=key_prefix(key),
                    role=role,
                    name=name,
                    endpoint_id=endpoint_id,
                    created_at=self.clock.now(),
                    expires_at=expires_at,
                    operator=operator,
                )
            )
        return kid, key

    async def key_by_hash(self, key_hash: str) -> Key | None:
        """A live key (not revoked, not expired) by its hash."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(api_keys).where(
                    api_keys.c.key_hash == key_hash,
                    api_keys.c.revoked_at.is_(None),
                    or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > self.clock.now()),
                )
            )
            row = res.mappings().first()
        # The lookup matched on the index; compare again in constant time all the same.
        return Key.from_row(row) if row is not None and hmac.compare_digest(row["key_hash"], key_hash) else None

    async def set_operator(self, key_id: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(operator=True))

    async def list_keys(self, project_id: str) -> list[Key]:
        """A project's user keys (never worker tokens), newest first: no hashes, only prefixes."""
        cols = [c for c in api_keys.c if c.name != "key_hash"]
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(*cols)
                .where(api_keys.c.project_id == project_id, api_keys.c.role != "worker")
                .order_by(api_keys.c.created_at.desc())
            )
            return [Key.from_row(r) for r in res.mappings().all()]

    async def revoke_key(self, project_id: str, key_id: str) -> bool:
        async with self.store.tx() as conn:
            res = await conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.id == key_id,
                    api_keys.c.project_id == project_id,
                    api_keys.c.role != "worker",
                    api_keys.c.revoked_at.is_(None),
                )
                .values(revoked_at=self.clock.now())
            )
        return bool(res.rowcount)

    async def touch_key(self, key_id: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=self.clock.now()))

    async def has_admin_key(self) -> bool:
        async with self.store.tx() as conn:
            found = await conn.scalar(
                select(api_keys.c.id).where(api_keys.c.role == "admin", api_keys.c.revoked_at.is_(None))
            )
            return found is not None

    async def delete_key(self, key_id: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(delete(api_keys).where(api_keys.c.id == key_id))

    async def delete_worker_keys(self) -> None:
        """Worker tokens die with their workers; a restarted server starts with none."""
        async with self.store.tx() as conn:
            await conn.execute(delete(api_keys).where(api_keys.c.role == "worker"))
