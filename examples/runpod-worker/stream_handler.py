"""A streaming RunPod worker: a generator handler, run by Podium unchanged.

Input: {"stream": N} (default 3). Yields {"i": 0} ... {"i": N-1}; with `return_aggregate_stream`
the job's output is the list of them, for /run and /runsync callers that do not stream.
"""

import runpod


def handler(job):
    for i in range(int(job["input"].get("stream", 3))):
        yield {"i": i}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})
