"""BentoML's side of `make bench-peers`: the trivial echo as a BentoML service, two workers like
Podium's two. Served by bench/peers.py with `bentoml serve bentoml_echo:Echo` from its own venv
(bench/.venv-bentoml); `POST /echo` with `{"input": {...}}` answers `{"input": {...}}`.
Measured at its best, like the floor and Podium: an async api (a sync one runs in a thread
pool) and no access log (BentoML writes one line per request by default)."""

import bentoml


@bentoml.service(workers=2, logging={"access": {"enabled": False}})
class Echo:
    @bentoml.api
    async def echo(self, input: dict) -> dict:
        return {"input": input}
