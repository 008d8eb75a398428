"""Videos fed frame by frame through the node's
:class:`~rsee_ros.pipeline.runner.RecognitionPipeline`, one method's settings at a time (the
streaming half of ``rsee bench``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rsee_ros.engine.base import Engine
from rsee_ros.evaluation.clock import stopwatch
from rsee_ros.model import InferenceSettings, RSEEModel

__all__ = ["BACKEND", "FRAME_PERIOD_S", "SOURCE", "StreamRunner", "VideoOutcome", "node_pipeline"]

BACKEND = "pipeline"
"""What the streaming figures run through (the report's ``backend``): the node's pipeline."""
SOURCE = "bench"
FRAME_PERIOD_S = 1.0 / 30.0  # stamps of the fed frames (the windowing only needs them to grow)


@dataclass
class VideoOutcome:
    """One streamed video: prediction, cost, frames and time."""

    prediction: int
    gflops: float
    frames_pushed: int
    frames_processed: int
    exited_early: bool
    seconds: float
    resolutions: list[int] = field(default_factory=list)


def node_pipeline(
    model: RSEEModel | Engine, class_names: Sequence[str], frames: int,
    settings: InferenceSettings,
) -> Any:
    """The node's pipeline on ``model`` (a model: the torch engine; or any engine) with one
    tumbling window of ``frames`` per video, running exactly ``settings`` (``RuntimeError`` if
    it would not)."""
    from rsee_ros.pipeline.runner import PipelineSettings, RecognitionPipeline

    pipe_settings = PipelineSettings(
        window_size=frames, stride=0, frame_step=1, max_gap_s=0.0,
        exit_threshold=settings.exit_threshold, skip_enabled=settings.skip_enabled,
        allowed_resolutions=tuple(settings.allowed_resolutions or ()), top_k=1,
        policy=settings.policy, gate=settings.gate or "",
    )
    pipe = RecognitionPipeline(model, list(class_names), pipe_settings)
    if pipe.inference_settings != settings:
        raise RuntimeError(f"pipeline runs with {pipe.inference_settings}, wanted {settings}")
    return pipe


class StreamRunner:
    """Feeds videos frame by frame with one method's settings, the way the node does, through
    the node's :class:`~rsee_ros.pipeline.runner.RecognitionPipeline`."""

    def __init__(
        self,
        model: RSEEModel | Engine,
        class_names: Sequence[str],
        frames: int,
        settings: InferenceSettings,
    ) -> None:
        self.settings = settings
        self.pipeline = node_pipeline(model, class_names, frames, settings)
        self.device = self.pipeline.engine.device
        self._stamp = 0.0

    def run(self, clip: np.ndarray) -> VideoOutcome:
        """Stream one ``(T, H, W, 3)`` uint8 RGB clip to its result; timed from the first pushed
        frame to the result (frames after the exit are not pushed)."""
        results: list[Any] = []
        pushed = 0
        with stopwatch(self.device) as span:
            for frame in clip:
                self._stamp += FRAME_PERIOD_S
                results = self.pipeline.push(SOURCE, self._stamp, frame)
                pushed += 1
                if results:
                    break
        self.pipeline.close(SOURCE)  # ends this video (untimed): the next clip opens a fresh window
        if len(results) != 1:
            raise RuntimeError(f"expected one window result per video, got {len(results)}")
        r = results[0]
        return VideoOutcome(
            prediction=r.class_id, gflops=r.gflops, frames_pushed=pushed,
            frames_processed=r.frames_processed, exited_early=r.exited_early,
            seconds=span.seconds, resolutions=list(r.resolutions),
        )
