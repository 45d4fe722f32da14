"""The queue's SQL, built once: the clauses its statements share and the call path's hot statements."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, String, and_, bindparam, case, func, insert, literal_column, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from podium.dispatch.states import JobStatus
from podium.store.engine import Prepared
from podium.store.tables import endpoints, jobs

#: Columns a caller may see; `secret` (worker-only request fields) is deliberately absent.
PUBLIC_COLUMNS = [c for c in jobs.c if c.name != "secret"]

#: What is known of a job when it ends (for metrics, and to tell whether a webhook is due).
ENDED_COLUMNS = (
    jobs.c.id,
    jobs.c.endpoint_id,
    jobs.c.kind,
    jobs.c.status,
    jobs.c.delay_ms,
    jobs.c.execution_ms,
    jobs.c.webhook,
)


# -- the hot statements, built once: a statement object reused keeps its cache key, so executing
# it costs a compiled-cache hit instead of a rebuild and a fresh cache key on every call.

NOW = bindparam("b_now", type_=Float)
#: Live statuses spelled out in the SQL as the indexes over live jobs say them (store/tables.py):
#: with a bound value the planner could not use those indexes.
QUEUED = jobs.c.status == literal_column(f"'{JobStatus.IN_QUEUE.value}'")
RUNNING = jobs.c.status == literal_column(f"'{JobStatus.IN_PROGRESS.value}'")


def _alive_clause() -> ColumnElement[bool]:
    keep = case(
        (jobs.c.kind == "runsync", bindparam("b_keep_runsync", type_=Float)),
        else_=bindparam("b_keep_run", type_=Float),
    )
    return and_(
        or_(jobs.c.expires_at.is_(None), jobs.c.expires_at > NOW),
        or_(jobs.c.finished_at.is_(None), jobs.c.finished_at + keep > NOW),
    )


#: Not past its ttl, and not final for longer than its kind's retention (binds b_now, b_keep_*).
ALIVE = _alive_clause()
#: execution_ms of a job ending at b_now (from its started_at).
RAN_FOR = func.cast((NOW - jobs.c.started_at) * 1000, jobs.c.execution_ms.type)


def ending(status: Any, now: Any, **more: Any) -> dict[str, Any]:
    """The values every final transition sets: worker-only fields (s3Config, env) are dropped the
    moment a job ends, whichever way it ends."""
    return {"status": status, "finished_at": now, "lease_until": None, "secret": None, "stream_closed": True, **more}


_HELD = and_(
    jobs.c.id == bindparam("b_job"),
    jobs.c.worker_id == bindparam("b_worker"),
    RUNNING,
)
#: A job this worker holds (binds b_job, b_worker), and of this endpoint (also b_endpoint).
HELD_BY = {False: _HELD, True: and_(_HELD, jobs.c.endpoint_id == bindparam("b_endpoint"))}
GET = Prepared(select(*PUBLIC_COLUMNS).where(jobs.c.id == bindparam("b_job"), ALIVE))
#: How many of an endpoint's queued jobs were queued before `b_created` (taken before it).
AHEAD = Prepared(
    select(func.count().label("n")).where(
        jobs.c.endpoint_id == bindparam("b_endpoint"), QUEUED, jobs.c.created_at < bindparam("b_created", type_=Float)
    )
)
#: What enqueue stores of a new job (bound as `v_<column>`).
_NEW_JOB_COLUMNS = (
    "id",
    "project_id",
    "endpoint_id",
    "version_id",
    "route",
    "kind",
    "input",
    "status",
    "attempt",
    "max_attempts",
    "created_at",
    "webhook",
    "policy",
    "secret",
    "stream_closed",
    "expires_at",
    "low_priority",
    "timeout_ms",
    "retries",
)
INSERT_JOB = Prepared(insert(jobs).values({name: bindparam(f"v_{name}") for name in _NEW_JOB_COLUMNS}))
_CANARY = select(endpoints.c.canary_version).where(endpoints.c.id == bindparam("b_endpoint")).scalar_subquery()
_CURRENT = select(endpoints.c.version_id).where(endpoints.c.id == bindparam("b_endpoint")).scalar_subquery()
_VERSION = bindparam("b_version", type_=String)
#: Whether a worker of `b_version` takes the endpoint's jobs at all, read in the take itself: one
#: of a version the endpoint has left (a redeploy, a rollback) takes nothing new from the moment
#: the change is stored, whatever the worker's request saw of it (a worker that does not say: any).
_SERVES = or_(_VERSION.is_(None), _VERSION == _CURRENT, _VERSION == _CANARY)
#: Which queued jobs a worker of `b_version` may take, read from the store in the take itself
#: (not from a replica's cached view of the endpoint): with no canary rollout, any; during one,
#: a canary worker those routed to the canary, the others every other job (including jobs
#: pinned to a version the endpoint has left).
_ITS_LANE = or_(
    _CANARY.is_(None),
    and_(_VERSION == _CANARY, jobs.c.version_id == _CANARY),
    and_(
        or_(_VERSION.is_(None), _VERSION != _CANARY),
        or_(jobs.c.version_id.is_(None), jobs.c.version_id != _CANARY),
    ),
)


def _take_statement(*, by_route: bool) -> Prepared:
    """Claim the oldest queued jobs of an endpoint that a worker of its version may take (binds
    b_now, b_endpoint, b_worker, b_version, b_lease_until, b_limit), of one route only when
    `by_route` (also b_route: a batch)."""
    where = [
        jobs.c.endpoint_id == bindparam("b_endpoint"),
        QUEUED,
        or_(jobs.c.expires_at.is_(None), jobs.c.expires_at > NOW),
        or_(jobs.c.run_after.is_(None), jobs.c.run_after <= NOW),
        _SERVES,
        _ITS_LANE,
    ]
    if by_route:
        where.append(jobs.c.route == bindparam("b_route"))
    picked = (
        select(jobs.c.id)
        .where(*where)
        .order_by(jobs.c.created_at)
        .limit(bindparam("b_limit"))
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    return Prepared(
        update(jobs)
        .where(jobs.c.id == picked.c.id, QUEUED)
        .values(
            status=JobStatus.IN_PROGRESS,
            worker_id=bindparam("b_worker"),
            # The version that runs it (a worker that does not say keeps what the job said).
            version_id=func.coalesce(_VERSION, jobs.c.version_id),
            lease_until=bindparam("b_lease_until", type_=Float),
            attempt=jobs.c.attempt + 1,
            started_at=NOW,
            delay_ms=func.cast((NOW - jobs.c.created_at) * 1000, jobs.c.delay_ms.type),
            deadline_at=NOW + jobs.c.timeout_ms / 1000.0,
        )
        .returning(jobs)
    )


TAKE = _take_statement(by_route=False)
#: TAKE of one route's jobs (also binds b_route): what fills a batch.
TAKE_ROUTE = _take_statement(by_route=True)
#: The size of the batch a job runs in (binds b_job, b_size; executed for each job of it).
SET_BATCH_SIZE = update(jobs).where(jobs.c.id == bindparam("b_job")).values(batch_size=bindparam("b_size"))


def _finish_statement(by_endpoint: bool) -> Prepared:
    return Prepared(
        update(jobs)
        .where(HELD_BY[by_endpoint])
        .values(
            **ending(
                bindparam("b_status"),
                NOW,
                execution_ms=RAN_FOR,
                output=bindparam("b_output"),
                error=bindparam("b_error"),
                error_info=bindparam("b_error_info"),
            )
        )
        .returning(*PUBLIC_COLUMNS)
    )


def new_job_binds(**values: Any) -> dict[str, Any]:
    """A new job's values as INSERT_JOB binds them."""
    return {f"v_{name}": value for name, value in values.items()}


def held_binds(job_id: str, worker_id: str, endpoint_id: str | None) -> dict[str, str | None]:
    """The values HELD_BY[endpoint_id is not None] binds."""
    return {"b_job": job_id, "b_worker": worker_id, "b_endpoint": endpoint_id}


#: End a held job (binds b_now, b_job, b_worker, b_status, b_output, b_error, b_error_info, and
#: b_endpoint in the by-endpoint variant).
FINISH = {by_endpoint: _finish_statement(by_endpoint) for by_endpoint in (False, True)}
