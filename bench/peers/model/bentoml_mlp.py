"""BentoML's side of the model phase: the MLP (mlp.py) behind adaptive batching, one worker (one
model copy). Served by bench/peers.py with `bentoml serve bentoml_mlp:Mlp` from bench/.venv-bentoml.
A batchable API takes a batch per request and merges requests along the first dimension, so a
call sends one row, `{"x": [[1024 floats]]}`, and answers `[[4 values]]`."""

import bentoml
import numpy as np
from mlp import MLP


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Mlp:
    def __init__(self) -> None:
        self.model = MLP()

    @bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=10_000)
    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(x), dtype=np.float64)
