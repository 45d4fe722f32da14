"""The trivial Podium service the benchmark deploys: returns its input unchanged.

Two workers, always up, so the concurrency-32 case measures Podium's dispatch through a small
fixed pool rather than one worker's queue (and never waits for a scale-up).
"""

import podium


@podium.handler(name="bench", min_workers=2, max_workers=2)
def handler(job):
    return job["input"]
