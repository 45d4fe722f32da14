"""Podium's side of the model phase: the MLP (mlp.py) as two services, one worker each (one model
copy each), numpy from the version's own environment (`requirements`, built with uv):

- `mlp-batched`: `POST /mlp-batched/predict` batched, up to 32 calls per matmul, waiting up to
  5 ms for more only while other calls are about.
- `mlp-plain`: the same route unbatched, one matmul per call.

Deployed by bench/peers.py with `podium deploy bench/peers/model --entry podium_mlp.py --service ...`.
"""

from mlp import MLP

import podium


@podium.service(name="mlp-batched", requirements=["numpy"], min_workers=1, max_workers=1, idle_timeout=3600)
def batched():
    return {"model": MLP()}


@batched.endpoint("/predict", batch_size=32, batch_wait_ms=5)
def predict_batch(x: list[float], model) -> list[float]:
    # One element per call; the initializer's model is the same object in every place.
    return model[0](x)


@podium.service(name="mlp-plain", requirements=["numpy"], min_workers=1, max_workers=1, idle_timeout=3600)
def plain():
    return {"model": MLP()}


@plain.endpoint("/predict")
def predict(x: list[float], model) -> list[float]:
    return model([x])[0]
