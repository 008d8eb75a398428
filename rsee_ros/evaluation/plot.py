"""The plots of an ``rsee eval`` report: accuracy versus GFLOPs, and the confusion matrix of one
entry (matplotlib, Agg canvas)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from rsee_ros.evaluation.common import operating_entry
from rsee_ros.evaluation.methods import label_for
from rsee_ros.evaluation.metrics import confusion_matrix

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
    _mark_operating_point(ax, report)
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
    return _save(fig, out)


def _mark_operating_point(ax: Any, report: Mapping[str, Any]) -> None:
    """A star on RSEE's operating point (the threshold the node and ``rsee bench`` default to:
    the calibrated one when the checkpoint has it), labelled with that threshold."""
    point = report.get("operating_point") or {}
    entry = operating_entry(report)
    if not entry or not _points([entry]):
        return
    (x, y), = _points([entry])
    calibrated = "calibrated " if point.get("source") == "calibrated" else ""
    ax.scatter([x], [y], marker="*", s=260, color="gold", edgecolors="black", zorder=6,
               label=f"RSEE {calibrated}operating point (threshold {point.get('threshold')})")


def _save(fig: Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def plot_confusion_matrix(
    videos: Sequence[Mapping[str, Any]], classes: Sequence[str], out: str | Path, *,
    title: str = "confusion matrix",
) -> Path:
    """Draw the confusion matrix of an entry's per-video records (``label``, ``predicted``
    class names) into a PNG at ``out``: rows the true class, columns the predicted one, colour
    the fraction of the row's videos, counts written in the cells up to 30 classes."""
    index = {name: i for i, name in enumerate(classes)}
    matrix = confusion_matrix([index[v["predicted"]] for v in videos],
                              [index[v["label"]] for v in videos], len(classes))
    rows = matrix.sum(axis=1, keepdims=True)
    shares = matrix / rows.clip(min=1)
    side = min(max(4.0 + 0.22 * len(classes), 5.5), 30.0)
    fig = Figure(figsize=(side + 1.2, side), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    font = max(3.0, min(8.0, 240.0 / max(len(classes), 1)))
    ticks = range(len(classes))
    ax.set_xticks(ticks, labels=list(classes), rotation=90, fontsize=font)
    ax.set_yticks(ticks, labels=list(classes), fontsize=font)
    if len(classes) <= 30:
        for row, col in zip(*matrix.nonzero(), strict=True):
            colour = "white" if shares[row, col] > 0.5 else "black"
            ax.text(col, row, str(matrix[row, col]), ha="center", va="center", fontsize=font,
                    color=colour)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title} ({len(videos)} videos)")
    fig.tight_layout()
    return _save(fig, out)


__all__ = ["plot_accuracy_vs_gflops", "plot_confusion_matrix"]
