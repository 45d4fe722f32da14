"""The schema, as SQLAlchemy Core tables. Alembic migrations in `migrations/` must match it.

Times are float UNIX seconds (one representation on SQLite and PostgreSQL, and easy to fake in
tests); JSON values are stored as text encoded by orjson.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

metadata = MetaData()

projects = Table(
    "projects",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(32), ForeignKey("projects.id"), nullable=False),
    # SHA-256 of the whole key; the key itself is never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(32), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", String(128), nullable=True),
    # Set for worker tokens: the one endpoint whose jobs the token may take.
    Column("endpoint_id", String(32), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),
    # The server's operator key (the bootstrap admin): may act in any project (X-Podium-Project).
    Column("operator", Boolean, nullable=False, server_default=false()),
)

versions = Table(
    "versions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(32), ForeignKey("projects.id"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("service", String(64), nullable=False),
    Column("entry", String(255), nullable=False),
    # How workers run it: "podium" (our worker loads the service) or "runpod" (the entry file is
    # an unmodified `runpod.serverless.start` worker, run as it is).
    Column("runtime", String(16), nullable=False, server_default="podium"),
    Column("routes", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Column("message", Text, nullable=True),
    Column("created_by", String(32), nullable=True),
    Column("created_at", Float, nullable=False),
    # Its own Python environment (podium.envs), when it brings requirements: the set (JSON), the
    # environment it names, and that environment's build: building -> ready | failed (+ error).
    Column("requirements", Text, nullable=True),
    Column("env_hash", String(64), nullable=True),
    Column("build_state", String(16), nullable=True),
    Column("build_error", Text, nullable=True),
    # Why its first worker could not start on an endpoint that kept serving another version (a
    # health-gated deploy that failed: the worker's error and log tail); cleared once it starts.
    Column("start_error", Text, nullable=True),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(32), ForeignKey("projects.id"), nullable=False),
    Column("name", String(63), nullable=False),
    Column("version_id", String(32), ForeignKey("versions.id"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("min_workers", Integer, nullable=False),
    Column("max_workers", Integer, nullable=False),
    Column("idle_timeout", Float, nullable=False),
    Column("concurrency", Integer, nullable=False),
    # request-count: workers = ceil((waiting + running) / target); queue-delay: add a worker when
    # the oldest waiting job has waited more than `target` seconds.
    Column("scaler", String(16), nullable=False, server_default="request-count"),
    Column("target", Float, nullable=True),
    # Recycle a worker after this many jobs / past this much memory (0: never).
    Column("max_jobs_per_worker", Integer, nullable=False, server_default="0"),
    Column("max_worker_memory_mb", Integer, nullable=False, server_default="0"),
    # Waiting jobs past which /run answers 429.
    Column("queue_cap", Integer, nullable=False, server_default="10000"),
    # What each worker asks of the machine or cluster it runs on (0 MB: no memory reservation).
    Column("cpus", Float, nullable=False, server_default="1"),
    Column("gpus", Integer, nullable=False, server_default="0"),
    Column("memory_mb", Integer, nullable=False, server_default="0"),
    # Idle workers kept beyond the jobs running, so a burst does not wait for cold starts.
    Column("warm_buffer", Integer, nullable=False, server_default="0"),
    # A deploy waiting for its version's environment (JSON: version_id, key_id, message): the
    # endpoint keeps serving `version_id` until the build succeeds, then points at it.
    Column("pending", Text, nullable=True),
    # A canary rollout: that share of new calls goes to `canary_version`, the rest to the
    # endpoint's own version (`rollout`, JSON: percent, max_failure_rate, key_id, started_at).
    # A take reads `canary_version` in its own statement: which jobs a worker may take follows
    # the store, not a replica's cached view of the endpoint.
    Column("canary_version", String(32), nullable=True),
    Column("rollout", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # When the leader stops it (INACTIVE), e.g. a Covalent executor's time limit; None: never.
    Column("expires_at", Float, nullable=True),
    # Why the leader's autoscaler does not start the workers it wants (e.g. no free GPU), for the
    # waiting reason of its queued jobs on every replica; None: nothing holds a start back.
    Column("waiting_for", Text, nullable=True),
    UniqueConstraint("project_id", "name", name="uq_endpoints_project_name"),
)

endpoint_history = Table(
    "endpoint_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(32), ForeignKey("endpoints.id"), nullable=False, index=True),
    Column("version_id", String(32), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("message", Text, nullable=True),
    Column("at", Float, nullable=False),
    # A deploy that never became current (its version's first worker failed), and why.
    Column("error", Text, nullable=True),
    # A step of a canary rollout (start, percent, promote, abort, guard); None: a re-pointing.
    Column("action", String(16), nullable=True),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(32), nullable=False),
    Column("endpoint_id", String(32), nullable=False),
    Column("version_id", String(32), nullable=True),
    Column("route", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("input", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("worker_id", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("delay_ms", Integer, nullable=True),
    Column("execution_ms", Integer, nullable=True),
    Column("output", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("error_info", Text, nullable=True),
    # Every attempt's error, oldest first (JSON list).
    Column("attempt_errors", Text, nullable=True),
    Column("progress", Text, nullable=True),
    Column("webhook", Text, nullable=True),
    Column("policy", Text, nullable=True),
    # Worker-only request fields (e.g. s3Config): handed to the worker, dropped when the job ends.
    Column("secret", Text, nullable=True),
    Column("stream_closed", Boolean, nullable=False, default=False),
    # End of the job's life from submission (policy.ttl): past it the job is gone, even mid-run.
    Column("expires_at", Float, nullable=True),
    # policy.lowPriority: waits for a worker that exists, never starts one.
    Column("low_priority", Boolean, nullable=False, server_default=false()),
    # policy.executionTimeout in ms; `deadline_at` is set from it when the job is taken.
    Column("timeout_ms", Integer, nullable=True),
    Column("deadline_at", Float, nullable=True),
    # Route errors that may be retried (the service's `retries`), and when the next try may start.
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("run_after", Float, nullable=True),
    # The part of delay_ms spent waiting for a worker to start (a cold start), when there was one.
    Column("cold_ms", Integer, nullable=True),
    # How many calls the batch it ran in held (a batched route's jobs only).
    Column("batch_size", Integer, nullable=True),
    # Only live jobs are in the indexes a job's transitions touch (the queue, the leases), so they
    # stay small however many ended jobs are kept for reading. Queries spell the status out
    # (`dispatch.statements.QUEUED`, `RUNNING`) so the planner can use them. Reading an endpoint's
    # ended jobs (counts, lists) scans the table, as its range of the old queue index was read.
    Index(
        "ix_jobs_queued",
        "endpoint_id",
        "created_at",
        sqlite_where=text("status = 'IN_QUEUE'"),
        postgresql_where=text("status = 'IN_QUEUE'"),
    ),
    Index(
        "ix_jobs_running",
        "lease_until",
        sqlite_where=text("status = 'IN_PROGRESS'"),
        postgresql_where=text("status = 'IN_PROGRESS'"),
    ),
)

stream_chunks = Table(
    "stream_chunks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("data", Text, nullable=False),
    Column("consumed", Boolean, nullable=False, default=False),
    UniqueConstraint("job_id", "seq", name="uq_stream_chunks_job_seq"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    # A durable outbox row, written with the job: the job's final envelope is POSTed to `url` once
    # the job ends, retried on failure; every attempt is appended to `attempts` (JSON list).
    Column("id", String(32), primary_key=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("url", Text, nullable=False),
    # waiting (job not final yet) -> pending -> delivered | failed; redeliver (asked for again,
    # sent once) -> delivered | failed
    Column("state", String(16), nullable=False),
    Column("tries", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=True),
    # The body, fixed at the first attempt so every retry sends the same bytes.
    Column("body", Text, nullable=True),
    Column("attempts", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    # The job's project, set with the body: its signing secret signs every attempt.
    Column("project_id", String(32), nullable=True),
    Index("ix_webhook_deliveries_due", "state", "next_at"),
)

webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    # Each project's webhook signing secret (store/webhook_secrets.py), a Fernet token like
    # endpoint secrets; after a rotation the previous one stays valid until `previous_until`.
    Column("project_id", String(32), ForeignKey("projects.id"), primary_key=True),
    Column("secret", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("previous", Text, nullable=True),
    Column("previous_until", Float, nullable=True),
)

endpoint_secrets = Table(
    "endpoint_secrets",
    metadata,
    # Values are Fernet tokens (encrypted at rest); workers get them as environment variables.
    Column("endpoint_id", String(32), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    # An Idempotency-Key of a project, the hash of the request it came with, and the job it made.
    Column("project_id", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("job_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False, index=True),
)

dh_entities = Table(
    "dh_entities",
    metadata,
    # DigitalHub's records (projects, functions, tasks, runs), kept as the SDK sent them (JSON)
    # inside a Podium project; a serve run points at the endpoint that serves it (podium.digitalhub).
    Column("id", String(64), primary_key=True),
    Column("project_id", String(32), ForeignKey("projects.id"), nullable=False),
    Column("dh_project", String(128), nullable=False),
    Column("type", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("endpoint_id", String(32), nullable=True),
    # A serve run's capability token (Fernet-sealed): its service URL answers without a key.
    Column("token", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_dh_entities_scope", "project_id", "dh_project", "type"),
)

# -- several replicas on one PostgreSQL ------------------------------------------------------------

#: Every running server: heartbeats, so status can list the live ones and say which leads.
replicas = Table(
    "replicas",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),
    Column("leader", Boolean, nullable=False, server_default=false()),
    #: False for `podium up --no-workers`: serves the API, never leads, starts no workers.
    Column("runs_workers", Boolean, nullable=False, server_default=false()),
)

#: Every worker as last seen by any replica: the one source of the counts status and health show.
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("endpoint_id", String(32), nullable=False, index=True),
    Column("version_id", String(32), nullable=True),
    #: The replica that last heard from it (the one that started it, for its own workers).
    Column("replica_id", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    #: Started by a replica (it owns the process or actor) rather than by hand.
    Column("owned", Boolean, nullable=False, server_default=false()),
    Column("started_at", Float, nullable=False),
    Column("ready_at", Float, nullable=True),
    Column("seen_at", Float, nullable=False),
    Column("jobs_done", Integer, nullable=False, server_default="0"),
    #: Where it runs (JSON: host/pid, or Ray node and actor), and why it failed.
    Column("placement", Text, nullable=True),
    Column("failure", Text, nullable=True),
)

#: Each key's request budget (a token bucket), shared by every replica.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("at", Float, nullable=False),
)

#: Version bundles, so every replica can serve every version (no shared disk is assumed).
blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)

#: Which projects may use a bundle: one that uploaded it or has a version of it. Knowing a
#: bundle's hash grants nothing in another project (no existence oracle, no deploy of it).
project_blobs = Table(
    "project_blobs",
    metadata,
    Column("project_id", String(32), ForeignKey("projects.id"), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
)

#: A project's volumes (`core.volumes`): directories its workers see, where weights and caches
#: live; the files are on disk under the volumes root, not in the store.
volumes = Table(
    "volumes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(32), ForeignKey("projects.id"), nullable=False),
    Column("name", String(63), nullable=False),
    # Bytes its files may take (writes through the API past it are refused); NULL: no limit.
    Column("max_size", BigInteger, nullable=True),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("project_id", "name", name="uq_volumes_project_name"),
)

#: Routes that run by themselves (store/schedules.py): declared in a version's code (source
#: "code", kept in step with the endpoint's current version by the leader) or added by an operator
#: ("api"). One per route of an endpoint. The leader moves `next_fire_at` on in the transaction
#: that stores the fire's job, so a tick fires once whichever replica leads.
schedules = Table(
    "schedules",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(32), nullable=False),
    Column("endpoint_id", String(32), nullable=False),
    # The route's path; "/" is the endpoint's default route (a RunPod worker file's handler).
    Column("route", String(255), nullable=False),
    Column("source", String(8), nullable=False),
    # Exactly one of cron (read in timezone) and every (seconds).
    Column("cron", String(255), nullable=True),
    Column("every", Float, nullable=True),
    Column("timezone", String(64), nullable=False),
    # JSON input of each fire's job; NULL: the route's defaults ({}).
    Column("input", Text, nullable=True),
    Column("overlap", Boolean, nullable=False, server_default=false()),
    # Where each fire's job posts its final status (signed, like any job's webhook).
    Column("webhook", Text, nullable=True),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("next_fire_at", Float, nullable=False),
    Column("last_fire_at", Float, nullable=True),
    Column("last_job_id", String(64), nullable=True),
    # Fires skipped because the previous fire's job still ran, and the last of them.
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("last_skipped_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("endpoint_id", "route", name="uq_schedules_endpoint_route"),
    Index("ix_schedules_next_fire_at", "next_fire_at"),
)

#: Console sign-ins (console/sessions.py), readable by every replica behind a load balancer.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    #: The API key, encrypted under a key derived from the cookie's token (never stored).
    Column("sealed_key", LargeBinary, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("project", String(64), nullable=True),
    #: JSON list of [kind, text] messages for the next page.
    Column("flash", Text, nullable=False, server_default="[]"),
    Column("created_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),
)

usage_hours = Table(
    "usage_hours",
    metadata,
    # What each project's endpoints used, per version and per hour (store/usage.py): jobs ended,
    # their execution seconds, and worker-seconds by resource (CPU cores x s, GPUs x s, memory
    # MB x s, from what each worker reserved, idle or busy). Rolled up by the leader.
    Column("project_id", String(32), primary_key=True),
    Column("endpoint_id", String(32), primary_key=True),
    Column("version_id", String(32), primary_key=True),
    # The hour's start, in Unix seconds.
    Column("hour", Float, primary_key=True),
    Column("jobs", Integer, nullable=False, server_default="0"),
    Column("execution_seconds", Float, nullable=False, server_default="0"),
    Column("cpu_seconds", Float, nullable=False, server_default="0"),
    Column("gpu_seconds", Float, nullable=False, server_default="0"),
    Column("memory_mb_seconds", Float, nullable=False, server_default="0"),
    Index("ix_usage_hours_project_hour", "project_id", "hour"),
)

usage_marks = Table(
    "usage_marks",
    metadata,
    # How far usage is rolled up (one row, "rollup"): moved in the transaction that adds what
    # came before it, so a restart or a new leader never counts a second twice.
    Column("name", String(32), primary_key=True),
    Column("at", Float, nullable=False),
)

#: Which Ray nodes hold a built copy of which environment (store/nodeenvs.py): each node builds
#: its own, under its PODIUM_NODE_HOME; the replica that starts a worker there records it.
node_envs = Table(
    "node_envs",
    metadata,
    Column("env_hash", String(24), primary_key=True),
    #: Ray's node id; `address` is the node's IP, as `podium status` shows workers'.
    Column("node_id", String(64), primary_key=True),
    Column("address", String(255), nullable=False),
    #: When a worker last started on it there.
    Column("used_at", Float, nullable=False),
)
