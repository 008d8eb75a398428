"""The one clock of ``rsee eval``, ``rsee bench`` and ``rsee bench-node``, and the machine it
runs on.

A reading waits for the device's queued work first (CUDA kernels run asynchronously), so a time
span covers the work done inside it. Torch is imported only when needed (a CUDA device, the
machine description), so this module stays cheap to import.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Span", "machine_info", "now", "stopwatch", "synchronize"]


def synchronize(device: Any) -> None:
    """Wait until ``device`` (a ``torch.device`` or its name, e.g. ``"cuda:0"``; None: the CPU)
    has finished its queued work."""
    if device is not None and str(getattr(device, "type", device)).startswith("cuda"):
        import torch

        torch.cuda.synchronize(torch.device(str(device)) if ":" in str(device) else None)


def now(device: Any = None) -> float:
    """``time.perf_counter()`` once ``device`` has finished its queued work."""
    synchronize(device)
    return time.perf_counter()


@dataclass
class Span:
    """The seconds a :func:`stopwatch` block took (set when the block ends)."""

    seconds: float = 0.0


@contextmanager
def stopwatch(device: Any = None) -> Iterator[Span]:
    """Time a block on ``device``: ``with stopwatch(dev) as span: ...``, then ``span.seconds``.

    Only a block that ends normally is measured (an exception leaves ``seconds`` at 0).
    """
    span = Span()
    start = now(device)
    yield span
    span.seconds = now(device) - start


def machine_info(device: Any) -> dict[str, Any]:
    """Where the figures were measured: CPU model, cores, torch threads and version, device."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.device(device)
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
