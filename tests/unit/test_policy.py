"""The scaler policies, as plain functions."""

from __future__ import annotations

from podium.scaling.policy import Load, desired


def settings(**kw):
    return {"scaler": "request-count", "target": None, "concurrency": 1, "min_workers": 0, "max_workers": 4, **kw}


def load(queued=0, oldest=0.0, running=0, workers=0, busy=0):
    return Load(queued=queued, oldest_wait=oldest, running=running, workers=workers, busy=busy)


def test_request_count_is_ceil_of_waiting_plus_running_over_target():
    assert desired(settings(), load(queued=3, running=1, workers=1, busy=1), creating=False) == 4
    assert desired(settings(concurrency=4), load(queued=5, running=2), creating=False) == 2
    assert desired(settings(target=3), load(queued=7), creating=False) == 3
    assert desired(settings(), load(queued=100), creating=False) == 4, "capped at max_workers"
    assert desired(settings(min_workers=2), load(), creating=False) == 2, "min_workers stay warm"
    assert desired(settings(), load(), creating=False) == 0, "scale to zero"
    assert desired(settings(), load(), creating=True) == 1, "one worker proves a new version loads"


def test_queue_delay_adds_a_worker_only_when_the_oldest_job_waited_too_long():
    s = settings(scaler="queue-delay", target=2.0)
    assert desired(s, load(queued=5, oldest=0.1), creating=False) == 1, "first worker at once"
    assert desired(s, load(queued=5, oldest=1.0, workers=1, busy=1, running=1), creating=False) == 1
    assert desired(s, load(queued=5, oldest=2.5, workers=1, busy=1, running=1), creating=False) == 2
    assert desired(s, load(queued=5, oldest=9.0, workers=4, busy=4, running=4), creating=False) == 4
    assert desired(s, load(workers=3, busy=1, running=1), creating=False) == 1, "idle ones may go"


def test_warm_buffer_adds_idle_workers_beyond_the_demand_within_max_workers():
    assert desired(settings(warm_buffer=1), load(), creating=False) == 1, "one idle worker at rest"
    assert desired(settings(warm_buffer=1), load(running=1, workers=1, busy=1), creating=False) == 2
    assert desired(settings(warm_buffer=2), load(queued=3, running=1), creating=False) == 4, "capped"
    q = settings(scaler="queue-delay", target=2.0, warm_buffer=1)
    assert desired(q, load(workers=2, busy=1, running=1), creating=False) == 2, "the busy one and one idle"
