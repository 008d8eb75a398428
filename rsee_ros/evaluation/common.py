"""Names, defaults and JSON helpers shared by ``rsee eval`` and ``rsee bench``.

Imports nothing heavy (no torch, no numpy), so the command line can build its parser cheaply.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
NEVER = math.inf
DATA_KINDS = ("synthetic", "ucf101", "hmdb51", "folder", "rosbag")
BASELINE_MODES = ("uniform", "learned", "exit")
GFLOPS_UNIT = "GMAC (1e9 multiply-accumulates, the papers' 'GFLOPs')"


@dataclass
class BaselineCheckpoint:
    """A separately trained baseline: its label, file and how to run it (None: from metadata)."""

    name: str
    path: str
    mode: str | None = None


def default_threads() -> int:
    """All the cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threshold_json(value: float) -> float | str:
    """A threshold as JSON can hold it (``"inf"`` for never exiting)."""
    return "inf" if math.isinf(value) else float(value)


def parse_threshold(text: str | float) -> float:
    """``0.9``, ``inf`` or ``never`` -> float (``inf``: no early exit)."""
    if isinstance(text, str) and text.strip().lower() in ("inf", "never", "none"):
        return NEVER
    value = float(text)
    if value < 0 or math.isnan(value):
        raise ValueError(f"exit threshold must be >= 0 or inf, got {text!r}")
    return value


def jsonable(value: Any) -> Any:
    """A copy that strict JSON can hold: NaN becomes None, infinities ``"inf"``/``"-inf"``,
    numpy scalars plain numbers, tuples lists, keys strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def write_json_report(path: str | Path, report: Any) -> None:
    """Write a report as strict JSON (NaN not allowed: pass it through :func:`jsonable` first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
