"""The model of `make bench-peers`' model phase, the same for every system: a two-layer numpy MLP,
W1 1024x4096 and W2 4096x1024 float32 made at start-up from a fixed seed; a call `{"x": [1024
floats]}` answers the first 4 values of relu(x @ W1) @ W2 (rounded to 3 decimals, so that a row
computed alone and one computed in a batch, whose sums BLAS may order differently, read the same).

BLAS is single-threaded everywhere (set here, before numpy loads, as well as by the bench for
every process it starts), so each system gets one core's worth of matmul per model copy.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402 - after the thread settings, which numpy reads when it loads

SEED = 2026
IN, HIDDEN, OUT = 1024, 4096, 1024
#: What each answer holds: the first values of the output row.
ANSWER = 4


class MLP:
    def __init__(self) -> None:
        rng = np.random.default_rng(SEED)
        # Scaled as a trained layer would be, so the outputs are of order one.
        self.w1 = rng.standard_normal((IN, HIDDEN), dtype=np.float32) / np.float32(IN**0.5)
        self.w2 = rng.standard_normal((HIDDEN, OUT), dtype=np.float32) / np.float32(HIDDEN**0.5)

    def __call__(self, xs: list[list[float]]) -> list[list[float]]:
        """One row per call in, its answer per call out: one matmul pair for the whole batch."""
        x = np.asarray(xs, dtype=np.float32)
        out = np.maximum(x @ self.w1, 0) @ self.w2
        return np.round(out[:, :ANSWER].astype(np.float64), 3).tolist()


def request_x() -> list[float]:
    """The input every bench call sends (short to write as JSON)."""
    return [((i % 17) - 8) / 8 for i in range(IN)]
