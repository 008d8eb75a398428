"""What an ``rsee eval`` report concludes: the data-set requirement and RSEE's curve against
every baseline's. Pure functions of the summaries (plain dicts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["REQUIRED_GAP_POINTS", "curve_comparisons", "data_set_checks"]

REQUIRED_GAP_POINTS = 10.0


def _gap(baselines: Mapping[str, Any], name: str, reference: float) -> float | None:
    entry = baselines.get(name)
    return None if not isinstance(entry, dict) else reference - entry["top1"]


def data_set_checks(baselines: Mapping[str, Any], resolutions: Sequence[int]) -> dict[str, Any]:
    """The data-set requirement: Uniform at the first frame only and Uniform at the lowest
    resolution each lose at least 10 points of top-1 against Uniform at full resolution."""
    uniform = baselines.get("uniform")
    if not isinstance(uniform, dict):
        return {}
    lowest = f"uniform_{resolutions[-1]}" if len(resolutions) > 1 else None
    first_gap = _gap(baselines, "uniform_first_frame", uniform["top1"])
    low_gap = _gap(baselines, lowest, uniform["top1"]) if lowest else None
    gaps = [g for g in (first_gap, low_gap) if g is not None]
    return {
        "required_gap_points": REQUIRED_GAP_POINTS,
        "uniform_first_frame_gap_points": first_gap,
        "uniform_lowest_resolution": resolutions[-1],
        "uniform_lowest_gap_points": low_gap,
        # None: a baseline the check needs was excluded, so it was not run
        "passed": bool(all(g >= REQUIRED_GAP_POINTS for g in gaps)) if len(gaps) == 2 else None,
    }


def _cheapest_reaching(points: Sequence[Mapping[str, Any]], top1: float) -> float | None:
    """Fewest GFLOPs per video among ``points`` with at least ``top1`` (None: none reach it)."""
    costs = [p["gflops_per_video"] for p in points if p["top1"] >= top1 - 1e-9]
    return min(costs) if costs else None


def curve_comparisons(
    rsee: Sequence[Mapping[str, Any]], baselines: Mapping[str, Any]
) -> dict[str, Any]:
    """RSEE's accuracy-versus-GFLOPs curve against every baseline's (one point or a sweep).

    For every RSEE operating point: the fewest GFLOPs the other method needs to reach the same
    top-1 on any of its points (its curve as a step function, no interpolation), and whether
    RSEE needs fewer ("ahead"; also when the other never reaches that accuracy).
    ``ahead_up_to_top1`` is the highest RSEE accuracy up to which RSEE is ahead at every point.
    """
    out: dict[str, Any] = {}
    if not rsee:
        return out
    for name, entry in baselines.items():
        others = entry if isinstance(entry, list) else [entry]
        points = []
        for point in sorted(rsee, key=lambda p: p["top1"]):
            needed = _cheapest_reaching(others, point["top1"])
            points.append({
                "threshold": point["threshold"], "top1": point["top1"],
                "rsee_gflops": point["gflops_per_video"], f"{name}_gflops": needed,
                "ahead": needed is None or point["gflops_per_video"] < needed,
            })
        ahead_up_to = None
        for point in points:
            if not point["ahead"]:
                break
            ahead_up_to = point["top1"]
        out[name] = {"points": points, "ahead_up_to_top1": ahead_up_to,
                     "ahead_everywhere": all(p["ahead"] for p in points)}
    return out
