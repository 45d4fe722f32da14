"""GPU detection (`PODIUM_GPUS`, `CUDA_VISIBLE_DEVICES`, `nvidia-smi -L`), the pool that lends whole
devices, and the resource settings of a service."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import podium
from podium.errors import ServiceDefinitionError
from podium.scaling.gpus import GpuPool, NoFreeGpu, detect, parse_nvidia_smi
from podium.scaling.resources import Resources
from podium.store.endpoints import scaling_columns

#: What `nvidia-smi -L` prints on a machine with two whole GPUs, the first split into MIG slices.
SMI_OUTPUT = """\
GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-5b0b3c4e-8a1f-2c3d-9e4f-0a1b2c3d4e5f)
  MIG 3g.40gb     Device  0: (UUID: MIG-1f2e3d4c-5b6a-5978-8a9b-0c1d2e3f4a5b)
  MIG 3g.40gb     Device  1: (UUID: MIG-2a3b4c5d-6e7f-5081-9a2b-3c4d5e6f7a8b)
GPU 1: NVIDIA GeForce RTX 4090 (UUID: GPU-0e9d8c7b-6a59-4837-a261-5f4e3d2c1b0a)
"""


def fake_smi(tmp_path: Path, body: str) -> dict[str, str]:
    """A real `nvidia-smi` script on a PATH of its own; the environment that finds it."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_nvidia_smi_output_lists_whole_gpus_in_order():
    assert parse_nvidia_smi(SMI_OUTPUT) == ("0", "1")
    assert parse_nvidia_smi("No devices were found\n") == ()


def test_detect_runs_nvidia_smi_found_on_path(tmp_path):
    printed = tmp_path / "smi.txt"
    printed.write_text(SMI_OUTPUT)
    env = fake_smi(tmp_path, f'[ "$1" = "-L" ] || exit 9\ncat "{printed}"')
    assert detect(env) == ("0", "1")


def test_podium_gpus_wins_over_what_nvidia_smi_finds(tmp_path):
    env = fake_smi(tmp_path, 'echo "GPU 0: Tesla T4 (UUID: GPU-aaaa)"')
    assert detect({**env, "PODIUM_GPUS": "2, 3,,3"}) == ("2", "3")
    assert detect({**env, "PODIUM_GPUS": ""}) == (), "declared empty: no GPUs"
    assert detect({**env, "CUDA_VISIBLE_DEVICES": "1"}) == ("1",), "the server's own devices, when it was given some"
    assert detect({**env, "CUDA_VISIBLE_DEVICES": "-1"}) == (), "hidden, as CUDA reads it"
    assert detect({**env, "CUDA_VISIBLE_DEVICES": "1,-1,0"}) == ("1",)


def test_no_gpus_without_nvidia_smi_or_when_it_fails(tmp_path):
    assert detect({"PATH": str(tmp_path)}) == ()
    failing = fake_smi(
        tmp_path, 'echo "NVIDIA-SMI has failed because it could not communicate with the driver" >&2\nexit 9'
    )
    assert detect(failing) == ()


def test_pool_lends_whole_devices_once_and_takes_them_back():
    pool = GpuPool(("0", "1"))
    assert pool.take("w1", 1) == ("0",)
    assert pool.take("w2", 1) == ("1",)
    assert pool.take("cpu", 0) == ()
    assert pool.wait_reason(1) == "waiting for 1 GPU (2 of 2 in use)"
    with pytest.raises(NoFreeGpu, match="2 of 2 in use"):
        pool.take("w3", 1)
    pool.release("w1")
    assert pool.wait_reason(1) is None and pool.wait_reason(2) == "waiting for 2 GPUs (1 of 2 in use)"
    assert pool.take("w3", 1) == ("0",)
    pool.release("w2")
    pool.release("w3")
    assert pool.take("w4", 2) == ("0", "1")


def test_pool_refuses_more_gpus_than_the_machine_has():
    assert GpuPool(("0", "1")).refusal(3) == "asks for 3 GPUs; this machine has 2 (0, 1)"
    assert GpuPool(("0", "1")).wait_reason(3) == "asks for 3 GPUs; this machine has 2 (0, 1)"
    assert "this machine has none" in (GpuPool(()).refusal(1) or "")
    assert GpuPool(()).refusal(0) is None


def test_service_resources_flow_into_the_endpoint_columns():
    @podium.service(cpus=2, gpus=1, memory_mb=8000)
    def svc():
        return {}

    config = svc.config.as_dict()
    assert Resources.of(scaling_columns(config)) == Resources(cpus=2.0, gpus=1, memory_mb=8000)
    assert Resources.of(scaling_columns({})) == Resources(), "older versions' configs: 1 CPU, no GPU"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cpus": 0}, "cpus must be a number > 0"),
        ({"cpus": "2"}, "cpus must be a number > 0"),
        ({"gpus": 1.5}, "gpus must be a whole number"),
        ({"gpus": -1}, "gpus must be a whole number"),
        ({"gpus": True}, "gpus must be a whole number"),
        ({"memory_mb": -5}, "memory_mb must be a whole number >= 0"),
    ],
)
def test_bad_resources_are_clear_errors(settings, message):
    with pytest.raises(ServiceDefinitionError, match=message):
        podium.service(**settings)
