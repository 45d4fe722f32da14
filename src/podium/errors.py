"""Every error Podium raises on purpose derives from :class:`PodiumError`.

The tree::

    PodiumError
    ├── ServiceDefinitionError   a service, route or handler is declared wrongly (authoring SDK)
    ├── BundleError              `deploy` cannot bundle a path or find the service in it
    ├── ConfigError              a setting is missing or malformed
    ├── DomainError              a call's error in the core's words (`podium.core.errors` draws its tree)
    ├── DeploymentError          a deployment failed (ERROR), was torn down, or never got ready
    ├── JobFailed                a job ended FAILED, CANCELLED or TIMED_OUT (job client)
    ├── JobTimeout               a job (or a call) did not finish in time; also a TimeoutError
    ├── UploadError              podium.storage could not put a file in the request's bucket
    ├── HTTPError                route code answers an HTTP error status (no traceback shown)
    │   ├── BadRequest           400
    │   ├── NotFound             404
    │   └── Conflict             409
    └── APIError                 the server answered an error (carries status_code, error, detail)
        └── RouteError           the remote route raised (carries remote type, message, traceback)

The message of each class defaults to its docstring, so ``raise BundleError()`` still says something.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class PodiumError(Exception):
    """Podium error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ServiceDefinitionError(PodiumError):
    """The service is declared wrongly."""


class BundleError(PodiumError):
    """Cannot bundle the service."""


class ConfigError(PodiumError):
    """A setting is missing or malformed."""


class DeploymentError(PodiumError):
    """The deployment is not usable."""


class JobFailed(PodiumError):
    """The job ended without completing."""

    def __init__(self, job_id: str, status: str, error: Any = None) -> None:
        self.job_id = job_id
        self.status = status
        self.error = error
        text = f"job {job_id} ended {status}"
        super().__init__(f"{text}: {error}" if error not in (None, "") else text)


class JobTimeout(PodiumError, TimeoutError):
    """The job did not finish in time.

    Also a :class:`TimeoutError`, so code written for RunPod's client (which raises that) still
    catches it. ``job_id`` is None when a request timed out before the server named the job.
    """

    def __init__(self, message: str | None = None, job_id: str | None = None) -> None:
        self.job_id = job_id
        super().__init__(message)


class UploadError(PodiumError):
    """The upload to the bucket failed."""


class HTTPError(PodiumError):
    """Raised by a route: its call answers `status_code` with `detail` (default: the status's
    phrase), and its job fails with that message, without a traceback. Not retried.

    Parameters:
        status_code: 400 to 599.
        detail: what the caller is told; no secret belongs here.
    """

    def __init__(self, status_code: int, detail: str | None = None) -> None:
        if not 400 <= status_code <= 599:
            raise ValueError(f"an HTTP error status is 400 to 599, not {status_code}")
        self.status_code = status_code
        self.detail = detail or _phrase(status_code)
        super().__init__(self.detail)


def _phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return f"HTTP {status_code}"


class BadRequest(HTTPError):
    """The route refuses its input: 400."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(400, detail)


class NotFound(HTTPError):
    """What the route was asked for does not exist: 404."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(404, detail)


class Conflict(HTTPError):
    """The request conflicts with the state it acts on: 409."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(409, detail)


class APIError(PodiumError):
    """The Podium server answered with an error."""

    def __init__(self, status_code: int, error: str, detail: Any = None) -> None:
        self.status_code = status_code
        self.error = error
        self.detail = detail
        text = f"{error}: {detail}" if detail not in (None, "") else error
        super().__init__(f"{text} (HTTP {status_code})")


class RouteError(APIError):
    """The route raised an exception on the worker."""

    def __init__(self, status_code: int, error_type: str, error_message: str, traceback: str | None = None) -> None:
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        super().__init__(status_code, error_type, error_message)


class DomainError(PodiumError):
    """What went wrong with a call, in the core's words (no status code, no wire shape).

    Parameters:
    detail: the human sentence shown to the caller (never a secret).
    code: short machine-readable name (`queue_full`, `invalid_wait`, …).
    retry_after: seconds after which the same request may succeed.
    extra: more fields for the answer (a job id, a traceback).
    """

    code = "error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        retry_after: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.extra = extra or {}
