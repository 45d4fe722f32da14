"""Keys, projects and the webhook signing secret."""

from __future__ import annotations

from fastapi import APIRouter, Request

from podium.core.access import KEY_ROLES, METRICS
from podium.server.admin.common import (
    ENDPOINT_NAME,
    admin_caller,
    parse_duration,
    require_operator,
)
from podium.server.admin.models import KeyIn, ProjectIn, RotateIn, parse
from podium.server.body import read_object
from podium.server.errors import HTTPError, not_found
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.store.projects import key_prefix
from podium.store.webhook_secrets import SigningSecret, WebhookSecrets

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/webhook-secret")
async def webhook_secret(request: Request) -> JSONAnswer:
    """The project's webhook signing secret, for its receivers to verify deliveries (its admins
    only: to another project's, the project does not exist)."""
    rt, principal = await admin_caller(request, "admin")
    return await _secret_answer(rt, principal.project_id, await _hooks(rt).get(principal.project_id))


@router.post("/webhook-secret/rotate")
async def rotate_webhook_secret(request: Request) -> JSONAnswer:
    """A new signing secret for the project. Deliveries are signed with it from now on, and also
    with the one it replaces until `window` has passed (the server's setting unless given)."""
    rt, principal = await admin_caller(request, "admin")
    window = parse(RotateIn, await read_object(request, 64 * 1024), "rotation").window
    seconds = None if window is None else parse_duration(window, "window", zero=True)
    return await _secret_answer(rt, principal.project_id, await _hooks(rt).rotate(principal.project_id, seconds))


def _hooks(rt: Runtime) -> WebhookSecrets:
    assert rt.webhooks is not None  # made at start-up
    return rt.webhooks.secrets


async def _secret_answer(rt: Runtime, project_id: str, current: SigningSecret) -> JSONAnswer:
    project = await rt.catalog.project(project_id)
    return JSONAnswer(
        {
            "project": project.name if project else project_id,
            "secret": current.secret,
            "created_at": current.created_at,
            "previous_valid_until": current.previous_until,
        }
    )


@router.post("/keys")
async def create_key(request: Request) -> JSONAnswer:
    """Create an API key in the caller's project; the key itself is in this answer and nowhere
    else, ever. `expires` is a duration like 30d, 12h or 90m."""
    rt, principal = await admin_caller(request, "admin")
    body = parse(KeyIn, await read_object(request, 64 * 1024), "key")
    role = body.role
    if role not in KEY_ROLES:
        raise HTTPError(400, "invalid_role", f"role must be one of {', '.join(KEY_ROLES)}")
    if role == METRICS:  # metrics show every project's endpoints
        require_operator(principal, "may create metrics keys")
    expires_at = None if body.expires is None else rt.clock.now() + parse_duration(body.expires)
    kid, key = await rt.catalog.create_key(principal.project_id, role, name=body.name, expires_at=expires_at)
    project = await rt.catalog.project(principal.project_id)
    return JSONAnswer(
        {
            "id": kid,
            "key": key,
            "prefix": key_prefix(key),
            "role": role,
            "project": project.name if project else principal.project_id,
            "expires_at": expires_at,
        }
    )


@router.get("/keys")
async def list_keys(request: Request) -> JSONAnswer:
    """The project's keys: prefix, name, role, created, last used; never the keys or their hashes."""
    rt, principal = await admin_caller(request, "admin")
    return JSONAnswer({"keys": [k.as_dict() for k in await rt.catalog.list_keys(principal.project_id)]})


@router.delete("/keys/{key_id}")
async def revoke_key(request: Request, key_id: str) -> JSONAnswer:
    """Revoke a key: refused from the next request on."""
    rt, principal = await admin_caller(request, "admin")
    if not await rt.catalog.revoke_key(principal.project_id, key_id):
        raise not_found("key", key_id)
    rt.access.forget()
    return JSONAnswer({"id": key_id, "revoked": True})


@router.post("/projects")
async def create_project(request: Request) -> JSONAnswer:
    """A new project, with its first admin key (shown once). Operator only."""
    rt, principal = await admin_caller(request, "admin")
    require_operator(principal, "may manage projects")
    name = parse(ProjectIn, await read_object(request, 64 * 1024), "project").name
    if not ENDPOINT_NAME.match(name):
        raise HTTPError(400, "invalid_name", f"project name {name!r} must match [a-z0-9][a-z0-9-]{{0,62}}")
    pid = await rt.catalog.create_project(name)
    if pid is None:
        raise HTTPError(409, "exists", f"a project named {name} exists")
    await _hooks(rt).ensure(pid)
    kid, key = await rt.catalog.create_key(pid, "admin", name=f"admin of {name}")
    return JSONAnswer({"id": pid, "name": name, "admin_key": {"id": kid, "key": key, "prefix": key_prefix(key)}})


@router.get("/projects")
async def list_projects(request: Request) -> JSONAnswer:
    """Every project (operator), or the caller's own."""
    rt, principal = await admin_caller(request, "read")
    rows = await rt.catalog.list_projects()
    if not principal.operator:
        rows = [r for r in rows if r.id == principal.project_id]
    return JSONAnswer({"projects": [r.as_dict() for r in rows]})
