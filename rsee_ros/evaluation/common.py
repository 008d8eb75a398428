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
NEVER = 1.0
"""The exit threshold that never exits early. Exit thresholds lie in [0, 1] and 1.0 is the
model's own "never" (``rsee_ros.model.gate.NEVER_EXIT``); written out here so that this module
stays free of torch. ``--thresholds inf`` / ``never`` parse to it; reports write it ``"inf"``."""
NEVER_WORDS = ("inf", "never", "none")
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
    """A threshold as the reports write it: ``"inf"`` for :data:`NEVER` (never exiting)."""
    return "inf" if value >= NEVER else float(value)


def parse_threshold(text: str | float) -> float:
    """``0.9``, or ``inf`` / ``never`` (:data:`NEVER`: no early exit) -> a threshold in [0, 1]."""
    if isinstance(text, str) and text.strip().lower() in NEVER_WORDS:
        return NEVER
    value = float(text)
    if not 0.0 <= value <= NEVER:  # NaN fails too
        raise ValueError(f"exit threshold must be in [0, 1] (1, inf or never: no early exit), "
                         f"got {text!r}")
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


def operating_entry(report: Any) -> dict[str, Any] | None:
    """The RSEE entry of an ``rsee eval`` report at its operating point (None: no RSEE entry
    there)."""
    point = report.get("operating_point") or {}
    if point.get("rsee_index") is not None:
        return report["rsee"][point["rsee_index"]]
    return point.get("entry")


def write_json_report(path: str | Path, report: Any) -> None:
    """Write a report as strict JSON (NaN not allowed: pass it through :func:`jsonable` first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
