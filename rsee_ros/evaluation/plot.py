"""The accuracy-versus-GFLOPs plot of an ``rsee eval`` report (matplotlib, Agg canvas)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from rsee_ros.evaluation.methods import label_for

_MARKERS = "os^vD<>ph*X"


def _log_tick(value: float, _position: object) -> str:
    """Plain numbers on a log axis, only at 1, 2, 3 and 5 times a power of ten."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa, 6) in (1.0, 2.0, 3.0, 5.0) else ""


def _points(entries: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    items = [entries] if isinstance(entries, Mapping) else list(entries)
    points = []
    for e in items:
        x, y = e.get("gflops_per_video"), e.get("top1")
        if isinstance(x, int | float) and isinstance(y, int | float) and not (
            math.isnan(x) or math.isnan(y)
        ):
            points.append((float(x), float(y)))
    return sorted(points)


def plot_accuracy_vs_gflops(
    report: Mapping[str, Any], out: str | Path, *, title: str | None = None,
    log_x: bool = True,
) -> Path:
    """Draw top-1 against mean GFLOPs per video for RSEE (threshold sweep) and every baseline
    of ``report`` into a PNG at ``out``; returns the path."""
    fig = Figure(figsize=(7.5, 5.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    groups: list[tuple[str, Any]] = [("rsee", report.get("rsee", []))]
    groups += list((report.get("baselines") or {}).items())
    checkpoints = report.get("baseline_checkpoints") or {}
    for index, (name, entries) in enumerate(groups):
        points = _points(entries)
        if not points:
            continue
        xs, ys = zip(*points)
        marker = _MARKERS[index % len(_MARKERS)]
        style = {"linewidth": 2.2, "zorder": 5} if name == "rsee" else {"linewidth": 1.2}
        if len(points) > 1:
            ax.plot(xs, ys, marker=marker, label=label_for(name, checkpoints), **style)
        else:
            ax.scatter(xs, ys, marker=marker, s=55, label=label_for(name, checkpoints), zorder=4)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_log_tick))
        ax.xaxis.set_minor_formatter(FuncFormatter(_log_tick))
    ax.set_xlabel("mean GFLOPs per video (GMAC)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    frames, videos = report.get("frames"), report.get("num_videos")
    ax.set_title(title or f"{Path(str(report.get('data', ''))).name or 'data'} "
                 f"({report.get('split', '')}, {videos} videos, T={frames})")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


__all__ = ["plot_accuracy_vs_gflops"]
