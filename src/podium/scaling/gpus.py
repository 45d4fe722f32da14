"""The machine's GPUs, handed out whole to local workers: never two workers on one device.

Which devices there are: `PODIUM_GPUS=0,1` declares them and wins (empty: none); else the
devices the server itself was given in `CUDA_VISIBLE_DEVICES`; else what `nvidia-smi -L` lists;
else none. A worker's devices reach it as `CUDA_VISIBLE_DEVICES` (see LocalBackend).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence

log = logging.getLogger("podium.scaling")

#: `GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-…)`. MIG lines (indented, `MIG 1g.10gb Device 0:`)
#: are slices of a GPU, not whole devices: they do not match.
_SMI_LINE = re.compile(r"^GPU (\d+): .* \(UUID: [^)]+\)\s*$")


def parse_nvidia_smi(text: str) -> tuple[str, ...]:
    """The device indices in the output of `nvidia-smi -L`, in its (PCI bus) order."""
    return tuple(m.group(1) for line in text.splitlines() if (m := _SMI_LINE.match(line)))


def _id_list(value: str) -> tuple[str, ...]:
    """`0, 1,,2` -> ("0", "1", "2"), each once. As CUDA does, the list ends at an id like `-1`
    (the usual way to hide every GPU)."""
    ids: dict[str, None] = {}
    for part in (p.strip() for p in value.split(",")):
        if part.startswith("-"):
            break
        if part:
            ids[part] = None
    return tuple(ids)


def detect(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The ids of the GPUs local workers may use (see the module's docstring for the order)."""
    env = os.environ if environ is None else environ
    for name in ("PODIUM_GPUS", "CUDA_VISIBLE_DEVICES"):
        if name in env:
            return _id_list(env[name])
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi is None:
        return ()
    try:
        res = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi -L failed (%s): no GPUs will be handed out", exc)
        return ()
    if res.returncode != 0:
        log.warning(
            "nvidia-smi -L exited with %d (%s): no GPUs will be handed out", res.returncode, res.stderr.strip()[:200]
        )
        return ()
    return parse_nvidia_smi(res.stdout)


def _gpus(n: int) -> str:
    return f"{n} GPU" if n == 1 else f"{n} GPUs"


class NoFreeGpu(Exception):
    """A worker asked for more devices than are free (the autoscaler checks `wait_reason` first)."""


class GpuPool:
    """Whole devices lent to workers by id, taken back when each worker exits.

    Parameters:
        devices: the device ids (`CUDA_VISIBLE_DEVICES` values) this machine may use.
    """

    def __init__(self, devices: Sequence[str]) -> None:
        self.devices = tuple(devices)
        self._held: dict[str, tuple[str, ...]] = {}

    def in_use(self) -> int:
        return sum(len(d) for d in self._held.values())

    def refusal(self, n: int) -> str | None:
        """Why a worker asking `n` GPUs can never start here (None: it can)."""
        if n <= len(self.devices):
            return None
        if not self.devices:
            return (
                f"asks for {_gpus(n)}; this machine has none (nvidia-smi finds none; "
                "declare devices with PODIUM_GPUS=0,1)"
            )
        return f"asks for {_gpus(n)}; this machine has {len(self.devices)} ({', '.join(self.devices)})"

    def wait_reason(self, n: int) -> str | None:
        """Why such a worker cannot start now (None: it can)."""
        never = self.refusal(n)
        if never is not None:
            return never
        used = self.in_use()
        if n > len(self.devices) - used:
            return f"waiting for {_gpus(n)} ({used} of {len(self.devices)} in use)"
        return None

    def take(self, owner: str, n: int) -> tuple[str, ...]:
        """Lend `n` free devices to `owner` (lowest ids first); NoFreeGpu when there are not enough."""
        reason = self.wait_reason(n)
        if reason is not None:
            raise NoFreeGpu(reason)
        held = {d for devices in self._held.values() for d in devices}
        mine = tuple(d for d in self.devices if d not in held)[:n]
        if mine:
            self._held[owner] = mine
        return mine

    def release(self, owner: str) -> None:
        """`owner` has exited: its devices are free again."""
        self._held.pop(owner, None)
