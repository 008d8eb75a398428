"""The figures of the cameras-per-core sweep (``rsee bench-node --cameras``): one level's counts
from the node's ``/diagnostics`` reports and results, the "held" rule, the sweep's stopping
rule, the per engine and policy summary and the two targets. Pure functions, no ROS.

A level is **held** when, over its measuring window, no frame was dropped from the node's
queues, none was estimated missing (``frames_missing``: holes in a camera's stamps), the
publishers kept up (frames arriving >= 95% of cameras x rate) and every camera got its share of
the results: at least one, and the counts within 10% of the largest (one result of slack: a
window in progress at either end of the measuring window falls on one side or the other).
The sweep stops at the first level not held; the cameras held are the levels below it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from rsee_ros.evaluation.node_bench.config import (
    INPUT_TOLERANCE,
    POLICY_METHODS,
    RESULTS_BALANCE,
    TARGET_CAMERAS_PER_CORE,
    TARGET_RSEE_OVER_UNIFORM,
)
from rsee_ros.evaluation.node_bench.metrics import Received

__all__ = [
    "camera_targets",
    "cameras_held",
    "held_reasons",
    "level_figures",
    "next_level",
    "results_balanced",
    "sweep_summary",
]

Report = tuple[float, Mapping[str, str]]
"""(monotonic receive time, key/values) of one ``/diagnostics`` status of the node."""


def _count(values: Mapping[str, str], key: str) -> int:
    return int(values.get(key, 0))


def level_figures(
    topics: Sequence[str], *, rate: float, reports: Sequence[Report],
    results: Sequence[Received], node_cpu_percent: float, publisher_cpu_percent: float,
) -> dict[str, Any]:
    """One level: what the node counted from the first to the last of ``reports`` (its
    ``/diagnostics`` over the measuring window: totals since start, differenced; frames/s
    averaged over the periods after the first), the results received in between per camera, and
    whether the level was held (:func:`held_reasons`)."""
    if len(reports) < 2:
        raise ValueError("a level needs at least two diagnostics reports")
    (t0, first), (t1, last) = reports[0], reports[-1]
    span = t1 - t0
    received = _count(last, "frames_received") - _count(first, "frames_received")
    dropped = {t: _count(last, f"dropped {t}") - _count(first, f"dropped {t}") for t in topics}
    missing = {t: _count(last, f"missing {t}") - _count(first, f"missing {t}") for t in topics}
    per_camera = {t: 0 for t in topics}
    for result in results:
        if t0 < result.monotonic <= t1 and result.source in per_camera:
            per_camera[result.source] += 1
    input_fps = received / span if span > 0 else math.nan
    level: dict[str, Any] = {
        "cameras": len(topics),
        "window_s": span,
        "frames_received": received,
        "input_fps": input_fps,
        "input_fps_per_camera": input_fps / len(topics),
        "publishers_kept_up": bool(input_fps >= (1 - INPUT_TOLERANCE) * len(topics) * rate),
        "frames_dropped": _count(last, "frames_dropped") - _count(first, "frames_dropped"),
        "dropped_per_camera": dropped,
        "frames_missing": (_count(last, "frames_missing_estimate")
                           - _count(first, "frames_missing_estimate")),
        "missing_per_camera": missing,
        "processed_fps": statistics.fmean(float(values.get("processed_fps", math.nan))
                                          for _, values in reports[1:]),
        "results": sum(per_camera.values()),
        "results_per_camera": per_camera,
        "node_cpu_percent": node_cpu_percent,
        "publisher_cpu_percent": publisher_cpu_percent,
    }
    level["reasons"] = held_reasons(level, rate)
    level["held"] = not level["reasons"]
    return level


def results_balanced(counts: Sequence[int], tolerance: float = RESULTS_BALANCE) -> bool:
    """Every camera got results, the counts within ``tolerance`` of the largest (at least one
    result of slack)."""
    if not counts or min(counts) <= 0:
        return False
    return max(counts) - min(counts) <= max(1.0, tolerance * max(counts))


def held_reasons(level: Mapping[str, Any], rate: float) -> list[str]:
    """Why a level was not held (module docstring); empty when it was."""
    reasons = []
    if level["frames_dropped"]:
        reasons.append(f"{level['frames_dropped']} frames dropped")
    if level["frames_missing"]:
        reasons.append(f"{level['frames_missing']} frames missing")
    counts = list(level["results_per_camera"].values())
    if not results_balanced(counts):
        reasons.append(f"results per camera {min(counts, default=0)}..{max(counts, default=0)} "
                       f"(not within {RESULTS_BALANCE:.0%})")
    if not level["publishers_kept_up"]:
        reasons.append(f"input {level['input_fps']:.1f} fps < {1 - INPUT_TOLERANCE:.0%} of "
                       f"{level['cameras']} x {rate:g} (publishers did not keep up)")
    return reasons


def next_level(levels: Sequence[Mapping[str, Any]], max_cameras: int) -> int | None:
    """The stopping rule: 1 first, one camera more after a held level, up to ``max_cameras``;
    None after the first level not held or at ``max_cameras``."""
    if not levels:
        return 1 if max_cameras >= 1 else None
    last = levels[-1]
    if not last["held"] or last["cameras"] >= max_cameras:
        return None
    return last["cameras"] + 1


def cameras_held(levels: Sequence[Mapping[str, Any]]) -> int:
    """The largest level held with every level below it held (0: not even one camera)."""
    held = 0
    for level in sorted(levels, key=lambda lv: lv["cameras"]):
        if not level["held"] or level["cameras"] != held + 1:
            break
        held = level["cameras"]
    return held


def sweep_summary(engine: str, policy: str, levels: Sequence[Mapping[str, Any]],
                  max_cameras: int) -> dict[str, Any]:
    """One engine and policy: the cameras held, where the sweep stopped and why, the node's CPU
    at the largest level held, and every level."""
    held = cameras_held(levels)
    top = next((lv for lv in levels if lv["cameras"] == held), None)
    failed = next((lv for lv in levels if not lv["held"]), None)
    return {
        "engine": engine,
        "policy": policy,
        "method": POLICY_METHODS[policy],
        "cameras_held": held,
        "capped": held >= max_cameras,  # held every level asked for: a lower bound
        "stopped_at": failed["cameras"] if failed else None,
        "stop_reasons": failed["reasons"] if failed else [],
        "node_cpu_percent_at_held": top["node_cpu_percent"] if top else math.nan,
        "input_fps_per_camera_mean": statistics.fmean(
            lv["input_fps_per_camera"] for lv in levels) if levels else math.nan,
        "levels": list(levels),
    }


def camera_targets(sweeps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``cameras_per_core_onnxruntime_rsee`` and ``rsee_cameras_over_uniform_cameras`` (per
    engine with both policies; passed when RSEE holds >= 1.5x the cameras of Uniform and at
    least one). Unmeasured is a miss."""
    held = {(s["engine"], s["method"]): s["cameras_held"] for s in sweeps}
    onnx = held.get(("onnxruntime", "rsee"))
    ratios: dict[str, float] = {}
    passed: list[bool] = []
    for engine in dict.fromkeys(s["engine"] for s in sweeps):
        rsee, uniform = held.get((engine, "rsee")), held.get((engine, "uniform"))
        if rsee is None or uniform is None:
            continue
        ratios[engine] = rsee / uniform if uniform else math.nan
        passed.append(rsee > 0 and rsee >= TARGET_RSEE_OVER_UNIFORM * uniform)
    return [
        {"name": "cameras_per_core_onnxruntime_rsee", "target": f">= {TARGET_CAMERAS_PER_CORE}",
         "value": onnx, "passed": onnx is not None and onnx >= TARGET_CAMERAS_PER_CORE},
        {"name": "rsee_cameras_over_uniform_cameras",
         "target": f">= {TARGET_RSEE_OVER_UNIFORM} (same engine)",
         "value": ratios or None, "passed": bool(passed) and all(passed)},
    ]
