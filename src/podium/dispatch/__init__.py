"""Dispatch: job-queue semantics (enqueue, take with lease, heartbeat, finish, recover) on the store."""

from podium.dispatch.notify import Notifier
from podium.dispatch.queue import JobQueue
from podium.dispatch.states import FINAL, JobStatus
from podium.dispatch.submit import NewJob

__all__ = ["FINAL", "JobQueue", "JobStatus", "NewJob", "Notifier"]
