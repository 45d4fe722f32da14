"""Settings: environment variables, overridable by CLI flags. One object, read once at start."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from podium.errors import ConfigError

#: Worker backends (podium.scaling): `PODIUM_BACKEND` / `podium up --backend`.
BACKENDS = ("local", "ray")


def _number(name: str, default: float, kind: type = float) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None


def _switch(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("on", "1", "true", "yes"):
        return True
    if raw in ("off", "0", "false", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know; `Settings.from_env()` reads PODIUM_* variables."""

    home: Path = field(default_factory=lambda: Path(".podium"))
    database_url: str = ""
    admin_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    #: How long a taken job stays assigned without a heartbeat before it is recovered.
    lease_seconds: float = 30.0
    #: How often workers ping (they are told this when spawned).
    ping_interval: float = 5.0
    #: How long a job-take long-poll is held before answering 204.
    take_timeout: float = 20.0
    #: Default wait of /runsync and route calls before answering with the job id to poll.
    runsync_wait: float = 90.0
    route_wait: float = 300.0
    #: Attempts per job, crash-lost claims included.
    max_attempts: int = 3
    #: How often leases are checked and the autoscaler re-evaluates (it also wakes on new jobs).
    tick: float = 1.0
    #: Seconds a stopping worker gets to finish its job before it is killed.
    drain_grace: float = 30.0
    #: Seconds a final job stays readable: after /run (and route calls), after /runsync (RunPod's).
    retention_run: float = 1800.0
    retention_runsync: float = 60.0
    #: Seconds between webhook attempts, and how long one attempt may take.
    webhook_retry_delay: float = 10.0
    webhook_timeout: float = 10.0
    #: Seconds between the leader's roll-ups of usage, and days the hourly usage is kept.
    usage_rollup: float = 60.0
    usage_retention_days: float = 400.0
    #: Requests per second each API key may make on average, and in a burst (0: no limit).
    rate_limit: float = 1000.0
    rate_burst: float = 2000.0
    #: SQLite: seconds to wait for another process's lock before a request fails with 503.
    db_busy_timeout: float = 10.0
    #: Seconds before the first retry of a route error (doubles each attempt, with jitter).
    retry_base: float = 1.0
    #: Seconds of silence after which an SSE stream sends a keep-alive comment.
    sse_keepalive: float = 15.0
    #: Seconds /status holds its answer for a running job, answering the moment it ends (a
    #: queued job until it is taken, at most 1 s): a client polling in a tight loop then costs
    #: about one request per job, not hundreds.
    status_hold: float = 0.05
    #: MiB a call's request body may hold (route calls, /runsync, Covalent calls; /run takes half,
    #: so the defaults are RunPod's own 20 and 10 MB). Past it: 413.
    max_body_mb: float = 20.0
    #: The `default` project's first webhook signing secret, for receivers set up before each
    #: project had its own (default: the secret file earlier versions kept, else a new one).
    webhook_secret: str | None = None
    #: Seconds a project's previous webhook secret stays valid after a rotation.
    webhook_rotation_window: float = 86400.0
    #: Fernet key endpoint secrets are encrypted with (default: generated once under `home`).
    secret_key: str | None = None
    #: False (`podium up --no-workers`): a replica that serves the API only; it never leads, so
    #: it starts no workers and runs none of the installation's background duties.
    workers: bool = True
    #: Replicas: seconds between safety sweeps that re-check the store for wake-ups a dropped
    #: LISTEN connection may have missed (NOTIFY itself wakes waiters at once).
    relay_sweep: float = 5.0
    #: PostgreSQL: connections each replica keeps open (mind the server's max_connections).
    db_pool: int = 40
    #: Where workers run: `local` (subprocesses of this server) or `ray` (actors on a Ray cluster).
    backend: str = "local"
    #: The Ray cluster to place workers on (default: RAY_ADDRESS, else one running on this machine).
    ray_address: str | None = None
    #: The address workers on other machines reach the servers at (default: `url`).
    public_url: str | None = None
    #: A version whose first local worker takes longer than this (seconds) to become ready gets a
    #: pre-imported parent its next workers are forked from (0: every version; negative: none).
    fork_after: float = 1.0
    #: True (`PODIUM_METRICS_PUBLIC=1`): /metrics answers without a key. Otherwise it needs the
    #: operator key or a metrics key (they list every project's endpoints and job counts).
    metrics_public: bool = False
    #: A separate origin for user content (`https://content.example.com`), pointed by the operator
    #: at this same server: the URLs Podium hands out for endpoints, route calls and DigitalHub
    #: services use it, and the console is not served there. (Answers with user content are
    #: sandboxed on every origin; this keeps them off the console's origin altogether.)
    user_content_url: str | None = None
    #: Run local workers (and Ray workers on nodes that have bwrap) in a bubblewrap sandbox
    #: (`podium.sandbox`) when bwrap works here; `PODIUM_SANDBOX=off` turns it off.
    sandbox: bool = True
    #: Where volumes' files live (default: `home`/volumes). The Ray backend needs one that every
    #: node mounts at the same path (NFS, CephFS): its workers use the files there.
    volumes_root: Path | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        home = Path(os.environ.get("PODIUM_HOME") or ".podium")
        s = cls(
            home=home,
            database_url=os.environ.get("PODIUM_DATABASE_URL", ""),
            admin_key=os.environ.get("PODIUM_ADMIN_KEY") or None,
            host=os.environ.get("PODIUM_HOST", "127.0.0.1"),
            port=_number("PODIUM_PORT", 8000, int),
            lease_seconds=_number("PODIUM_LEASE_SECONDS", 30.0),
            ping_interval=_number("PODIUM_PING_INTERVAL", 5.0),
            take_timeout=_number("PODIUM_TAKE_TIMEOUT", 20.0),
            runsync_wait=_number("PODIUM_RUNSYNC_WAIT", 90.0),
            route_wait=_number("PODIUM_ROUTE_WAIT", 300.0),
            max_attempts=_number("PODIUM_MAX_ATTEMPTS", 3, int),
            tick=_number("PODIUM_TICK", 1.0),
            drain_grace=_number("PODIUM_DRAIN_GRACE", 30.0),
            retention_run=_number("PODIUM_RETENTION_RUN", 1800.0),
            retention_runsync=_number("PODIUM_RETENTION_RUNSYNC", 60.0),
            webhook_retry_delay=_number("PODIUM_WEBHOOK_RETRY_DELAY", 10.0),
            webhook_timeout=_number("PODIUM_WEBHOOK_TIMEOUT", 10.0),
            usage_rollup=_number("PODIUM_USAGE_ROLLUP", 60.0),
            usage_retention_days=_number("PODIUM_USAGE_RETENTION_DAYS", 400.0),
            retry_base=_number("PODIUM_RETRY_BASE", 1.0),
            rate_limit=_number("PODIUM_RATE_LIMIT", 1000.0),
            rate_burst=_number("PODIUM_RATE_BURST", 2000.0),
            db_busy_timeout=_number("PODIUM_DB_BUSY_TIMEOUT", 10.0),
            sse_keepalive=_number("PODIUM_SSE_KEEPALIVE", 15.0),
            status_hold=_number("PODIUM_STATUS_HOLD", 0.05),
            max_body_mb=_number("PODIUM_MAX_BODY_MB", 20.0),
            webhook_secret=os.environ.get("PODIUM_WEBHOOK_SECRET") or None,
            webhook_rotation_window=_number("PODIUM_WEBHOOK_ROTATION_WINDOW", 86400.0),
            secret_key=os.environ.get("PODIUM_SECRET_KEY") or None,
            relay_sweep=_number("PODIUM_RELAY_SWEEP", 5.0),
            db_pool=_number("PODIUM_DB_POOL", 40, int),
            workers=os.environ.get("PODIUM_NO_WORKERS", "") in ("", "0", "false"),
            backend=os.environ.get("PODIUM_BACKEND") or "local",
            ray_address=os.environ.get("RAY_ADDRESS") or None,
            public_url=os.environ.get("PODIUM_PUBLIC_URL") or None,
            fork_after=_number("PODIUM_FORK_AFTER", 1.0),
            metrics_public=os.environ.get("PODIUM_METRICS_PUBLIC", "") not in ("", "0", "false"),
            user_content_url=os.environ.get("PODIUM_USER_CONTENT_URL") or None,
            sandbox=_switch("PODIUM_SANDBOX", True),
            volumes_root=Path(os.environ["PODIUM_VOLUMES_ROOT"]) if os.environ.get("PODIUM_VOLUMES_ROOT") else None,
        )
        s = replace(s, **{k: v for k, v in overrides.items() if v is not None})
        if s.user_content_url is not None and not re.fullmatch(r"https?://[^/?#]+/?", s.user_content_url):
            raise ConfigError(
                "PODIUM_USER_CONTENT_URL must be an origin like https://content.example.com, "
                f"got {s.user_content_url!r}"
            )
        if not s.max_body_mb > 0:
            raise ConfigError(f"PODIUM_MAX_BODY_MB must be more than 0, got {s.max_body_mb:g}")
        if s.backend not in BACKENDS:
            raise ConfigError(f"the worker backend must be one of {', '.join(BACKENDS)}, got {s.backend!r}")
        return s

    @property
    def max_body(self) -> int:
        """Bytes a call's request body may hold."""
        return int(self.max_body_mb * 2**20)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home.resolve() / 'podium.db'}"

    @property
    def url(self) -> str:
        """Where local workers and the CLI reach this server."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def worker_url(self) -> str:
        """Where workers placed on other machines (Ray actors) reach the servers."""
        return (self.public_url or self.url).rstrip("/")

    @property
    def blobs(self) -> Path:
        return self.home / "blobs"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def envs(self) -> Path:
        """Per-version Python environments (podium.envs), one directory per requirement set."""
        return self.home / "envs"

    @property
    def volumes(self) -> Path:
        """Volumes' files: `<volumes>/<project id>/<volume name>/`."""
        return (self.volumes_root or self.home / "volumes").resolve()

    @property
    def secret_key_file(self) -> Path:
        return self.home / "secret.key"

    @property
    def webhook_secret_file(self) -> Path:
        """Where versions before per-project secrets kept the installation's webhook secret."""
        return self.home / "webhook_secret"

    @property
    def credentials(self) -> Path:
        return self.home / "credentials.json"
