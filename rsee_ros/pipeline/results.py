"""What a :class:`~rsee_ros.pipeline.runner.RecognitionPipeline` gives back: one
:class:`WindowResult` per window, one :class:`FrameReport` per pushed frame (with its outcome,
one of :data:`FRAME_OUTCOMES`), and the running :class:`PipelineStats`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from rsee_ros.pipeline.windowing import FrameEvent

__all__ = [
    "AFTER_EXIT", "BETWEEN_WINDOWS", "EXIT", "FRAME_OUTCOMES", "LATE", "MODEL_OUTCOMES",
    "NOT_KEPT", "PROCESSED", "SKIPPED", "FrameReport", "PipelineStats", "RecentResult",
    "WindowResult",
]

EXIT = "exit"  # WindowResult.end_reason of a window stopped by the exit gate

# What happened to a pushed frame (FrameReport.outcome); every frame gets exactly one.
PROCESSED = "processed"  # went through the backbone for at least one window
SKIPPED = "skipped"  # fed to its windows, but the selector skipped it in every one
AFTER_EXIT = "after_exit"  # every window holding it had already exited: not looked at
NOT_KEPT = "not_kept"  # dropped by frame_step subsampling
LATE = "late"  # stamp before the previous frame's (within max_gap_s): dropped, out of order
BETWEEN_WINDOWS = "between_windows"  # kept, but in no window (stride larger than window_size)
FRAME_OUTCOMES = (PROCESSED, SKIPPED, AFTER_EXIT, NOT_KEPT, BETWEEN_WINDOWS, LATE)
MODEL_OUTCOMES = (PROCESSED, SKIPPED)
"""Outcomes of frames that went to the model (whatever the selector then chose)."""


@dataclass
class WindowResult:
    """The recognition result of one window (see the module docstring for the rules)."""

    source: str
    window_id: int
    video: int
    """Index of the video (gap-free stretch) of its source the window belongs to."""
    label: str
    class_id: int
    confidence: float
    top_k: list[tuple[str, float]]
    first_stamp: float
    last_stamp: float
    """Stamps (s) of the window's first frame and of the last frame it used."""
    first_stamp_ns: int
    last_stamp_ns: int
    frame_id: str
    """frame_id of the last frame used."""
    resolutions: list[int]
    frames_processed: int
    window_length: int
    exited_early: bool
    complete: bool
    end_reason: str
    gflops: float
    uniform_gflops: float
    latency_s: float
    probabilities: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        data = asdict(self)
        data["top_k"] = [[label, score] for label, score in self.top_k]
        return data


@dataclass(frozen=True)
class FrameReport:
    """What :meth:`RecognitionPipeline.process` did with one frame."""

    results: list[WindowResult]
    outcome: str
    """One of :data:`FRAME_OUTCOMES`."""
    event: FrameEvent = field(repr=False)


@dataclass
class PipelineStats:
    """Counters since the pipeline was made (a snapshot: see :meth:`RecognitionPipeline.stats`).

    ``resolution_histogram`` counts (window, frame) steps by the resolution used, 0 for frames the
    selector skipped; ``backbone_frames`` is the number of such steps with a resolution.
    ``busy_s`` is the time spent inside :meth:`RecognitionPipeline.process`; ``restarts``
    counts new videos started by a stamp, per reason (``gap``, ``backwards``).
    """

    frames: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FRAME_OUTCOMES, 0))
    backbone_frames: int = 0
    resolution_histogram: dict[int, int] = field(default_factory=dict)
    windows_opened: int = 0
    results: int = 0
    exited_early: int = 0
    unknown: int = 0
    windows_without_result: int = 0
    gflops: float = 0.0
    uniform_gflops: float = 0.0
    busy_s: float = 0.0
    restarts: dict[str, int] = field(default_factory=dict)

    @property
    def mean_gflops(self) -> float:
        """Mean GFLOPs per result (0 before the first)."""
        return self.gflops / self.results if self.results else 0.0

    @property
    def mean_uniform_gflops(self) -> float:
        """Mean Uniform-baseline GFLOPs per result."""
        return self.uniform_gflops / self.results if self.results else 0.0


class RecentResult(NamedTuple):
    """What the status reports keep of a recent result."""

    latency_s: float
    gflops: float
    uniform_gflops: float
