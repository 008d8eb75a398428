"""Phase 1 of ``rsee bench-node``: the frames ``video_source`` will publish, and the node's
pipeline run over them in this process as fast as it goes (the reference of the node)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rsee_ros.evaluation.clock import now
from rsee_ros.evaluation.node_bench.config import SOURCES, WARMUP_FRAMES, BenchNodeError
from rsee_ros.evaluation.node_bench.metrics import steady_rate

__all__ = ["bench_frames", "run_in_process"]


def _frame_source(source: str) -> Any:
    """The frame source ``video_source`` runs for ``source:=<source>`` (defaults otherwise)."""
    # The one import of the frame sources.
    from rsee_ros.data.sources import SyntheticClips, VideoFileSource

    if source == "demo":
        from rsee_ros.resources import DEMO_LABELS, load_clip_labels

        clips = load_clip_labels(DEMO_LABELS)
        return VideoFileSource(clips.video, clips)
    if source == "synthetic":
        return SyntheticClips()
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


def bench_frames(source: str, count: int) -> list[np.ndarray]:
    """The first ``count`` frames ``video_source`` publishes for ``source:=<source>`` with
    ``loop:=true`` (defaults otherwise), as (H, W, 3) uint8 RGB."""
    src = _frame_source(source)
    frames: list[np.ndarray] = []
    while len(frames) < count:
        before = len(frames)
        for frame in src.frames():
            frames.append(np.ascontiguousarray(frame.rgb))
            if len(frames) == count:
                break
        if len(frames) == before:
            raise BenchNodeError(f"source {source!r} has no frames")
    src.close()
    return frames


def run_in_process(
    model: Any,
    class_names: Sequence[str],
    frames: Sequence[np.ndarray],
    settings: Any,
    rate: float,
) -> tuple[dict[str, Any], list[int]]:
    """The pipeline with ``settings`` over ``frames`` (stamped at ``rate``) as fast as possible,
    after an untimed warm-up; returns its figures and the class id of every result."""
    from rsee_ros.pipeline.runner import RecognitionPipeline

    pipe = RecognitionPipeline(model, list(class_names), settings)
    for i, frame in enumerate(frames[:WARMUP_FRAMES]):
        pipe.push("warmup", i / rate, frame)
    pipe.close("warmup")
    pipe = RecognitionPipeline(model, list(class_names), settings)
    device = model.device
    times: list[float] = []
    class_ids: list[int] = []
    start = now(device)
    for i, frame in enumerate(frames):
        for result in pipe.push("bench", i / rate, frame):
            times.append(now(device))
            class_ids.append(result.class_id)
    seconds = now(device) - start
    stats = pipe.stats()
    figures = {
        "frames": len(frames),
        "results": len(times),
        "seconds": seconds,
        "frames_per_s": len(frames) / seconds if seconds > 0 else math.nan,
        "results_per_s": len(times) / seconds if seconds > 0 else math.nan,
        "steady_results_per_s": steady_rate(times),
        "frame_outcomes": dict(stats.outcomes),
        "settings": settings.to_dict(),
    }
    return figures, class_ids
