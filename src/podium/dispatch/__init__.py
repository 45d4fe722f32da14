"""Dispatch: job-queue semantics (enqueue, take with lease, heartbeat, finish, recover) on the store."""

from podium.dispatch.clock import Clock, FakeClock
from podium.dispatch.notify import Notifier
from podium.dispatch.queue import JobQueue, NewJob
from podium.dispatch.states import FINAL, JobStatus

__all__ = ["FINAL", "Clock", "FakeClock", "JobQueue", "JobStatus", "NewJob", "Notifier"]
