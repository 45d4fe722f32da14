"""What the queue's waiters listen on (Notifier keys): workers, callers, the scaler and the outbox."""

#: Woken when a job is stored that no waiting worker is there to take (scale-up signal).
SCALE_KEY = "scale"
#: What held polls listen on: woken only by `notify_all` (the server closing, a relay's sweep).
HOLD_KEY = "hold"
#: Woken when jobs end, for the webhook outbox.
ENDED_KEY = "ended"


def ep_key(endpoint_id: str, canary: str | None = None) -> str:
    """What an endpoint's workers wait on; a canary rollout's workers wait on their own key
    (`canary`: its version), woken by the jobs routed to them."""
    return f"ep:{endpoint_id}" if canary is None else f"ep:{endpoint_id}:{canary}"


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def taken_key(job_id: str) -> str:
    """Woken when a job is taken: only a /status held while it waits listens (a caller waiting
    for the result has nothing to read then)."""
    return f"taken:{job_id}"


def stop_key(worker_id: str) -> str:
    return f"stop:{worker_id}"
