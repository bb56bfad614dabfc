"""What every run record says about its costs and provenance: peak memory, versions, times."""

from __future__ import annotations

import platform
from datetime import datetime, timezone

import numpy as np
import torch

from ..core.version import VERSION


class PeakMemory:
    """Peak memory of the run in MB: on a GPU, CUDA's max allocated bytes above the level at the
    start. On the CPU nothing is recorded (None, shown as n/a): the resident set's growth over a
    run measures the process's history more than the method. The peak RSS rise (VmHWM) of the
    same debug run was 17-25 MB as a process's first run, 3-7 MB after another run, 2-7 MB when
    repeated (caches warm), against differences of 2-5 MB between methods; the 5 ms sampling it
    replaces gave 0.0-12.5 MB for one run."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb: float | None = None
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "not_measured_on_cpu"

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        return False


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {
        "ctta": VERSION,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": version("timm"),
        "numpy": np.__version__,
    }
    if torch.cuda.is_available():
        out["cuda_device"] = torch.cuda.get_device_name()
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
