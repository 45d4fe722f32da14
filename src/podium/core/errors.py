"""What can go wrong with a call, in the core's words: no status codes, no wire shapes.

    DomainError               (defined in `podium.errors`, so that checks below the core can raise one)
    ├── Unauthorized          no key, or a key that is unknown, revoked or expired
    ├── Forbidden             the key's role is too weak for the action
    ├── RateLimited           the key made too many requests (retry_after)
    ├── NotFound              an endpoint, job, project, worker… the caller may not see
    ├── InvalidName           an id or name a path would be built from has the wrong shape (podium.names)
    ├── InvalidRequest        the request itself is malformed (code says how)
    │   ├── InvalidArguments  arguments a route cannot take
    │   ├── NotRetryable      retry of a job that is not FAILED or TIMED_OUT
    │   └── InvalidSchedule   a cron expression, time zone or period that cannot be used
    ├── Conflict              an Idempotency-Key reused for another request
    ├── Clash                 a name taken, a thing in use, an upload offset that is not the server's
    ├── VolumeFull            a write would take a volume past its size limit
    ├── AmbiguousId           an id prefix that matches more than one version or job
    ├── QueueFull             the endpoint's queue cap is reached (retry_after)
    ├── EndpointUnavailable   the endpoint is stopped or cannot start its workers
    └── WorkerGone            a worker that has exited asks for work

Each router maps these to its own wire shape in one place: RunPod, routes and admin in
`server.errors`, Laminar's `error_code` in `server.laminar_api`.
"""

from __future__ import annotations

from podium.errors import DomainError as DomainError


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class RateLimited(DomainError):
    code = "rate_limited"


class NotFound(DomainError):
    """Also what a caller gets for what exists but is not theirs (so names do not leak)."""

    code = "not_found"

    def __init__(self, what: str, ref: str, *, detail: str | None = None) -> None:
        super().__init__(detail or f"no {what} {ref!r}")
        self.what = what
        self.ref = ref


class InvalidRequest(DomainError):
    code = "invalid_request"


class InvalidArguments(InvalidRequest):
    code = "invalid_arguments"


class NotRetryable(InvalidRequest):
    code = "not_retryable"


class InvalidSchedule(InvalidRequest):
    code = "invalid_schedule"


class Conflict(DomainError):
    code = "conflict"


class Clash(DomainError):
    """What is asked collides with what is there (a volume's name taken, a volume in use)."""

    code = "conflict"


class VolumeFull(DomainError):
    code = "volume_full"


class AmbiguousId(DomainError):
    """A prefix given for an id that more than one id starts with (`candidates`: how many)."""

    code = "ambiguous_id"


class QueueFull(DomainError):
    code = "queue_full"


class WorkerGone(DomainError):
    code = "worker_gone"


class EndpointUnavailable(DomainError):
    """`code` is endpoint_inactive (stopped) or endpoint_error (its version cannot start)."""

    code = "endpoint_unavailable"
