"""Choosing the worker backend `settings.backend` names (Ray's module, and Ray, loaded only when
chosen); apart from `backend`, which the backends themselves build on."""

from __future__ import annotations

from podium.config import Settings
from podium.scaling.backend import Backend, ExitCallback, WorkerSocket
from podium.store.nodeenvs import NodeEnvs


def make_backend(settings: Settings, on_exit: ExitCallback, worker_socket: WorkerSocket, envs: NodeEnvs) -> Backend:
    """The backend `settings.backend` names (Ray's module, and Ray, loaded only when chosen).
    `worker_socket` is told to workers started on this machine; `envs` records which Ray nodes
    hold which environment."""
    if settings.backend == "ray":
        from podium.scaling.ray import RayBackend

        return RayBackend(settings, on_exit, envs.node_holds)
    from podium.scaling.local import LocalBackend

    return LocalBackend(settings, on_exit, worker_socket)
