"""A recognition worker's health as one snapshot: rates, losses, latency, compute, settings.

The node publishes it as ``RseeStatus`` and ``/diagnostics``; the demo and ``rsee bench-node``
read those messages, so every reader sees the same figures. Rates are per period: since the
previous :meth:`StatusReporter.snapshot`. Latency and compute are over the pipeline's most recent
results. Pure Python: no ROS.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rsee_ros.pipeline.percentiles import percentile
from rsee_ros.pipeline.worker import RecognitionWorker

__all__ = ["StatusReporter", "StatusSnapshot"]


@dataclass(frozen=True)
class StatusSnapshot:
    """See the module docstring; counts are totals since start unless named ``period_*``."""

    period_s: float
    input_fps: float
    processed_fps: float
    capacity_fps: float
    """Frames per second of processing time the pipeline sustains (the target_fps controller's
    estimate while it runs, else over the whole run)."""
    target_fps: float
    frames_received: int
    frames_handled: int
    frames_dropped: int
    frames_rejected: int
    frames_missing: int
    """Estimated lost before arrival (stamp cadence, :mod:`rsee_ros.pipeline.cadence`)."""
    results_published: int
    results_unknown: int
    """Results below ``min_confidence`` (published as ``unknown``)."""
    period_frames: int
    period_dropped: int
    period_rejected: int
    period_missing: int
    latency_p50_ms: float
    latency_p99_ms: float
    mean_gflops: float
    mean_uniform_gflops: float
    exit_threshold: float
    max_resolution: int
    received_per_source: dict[str, int] = field(default_factory=dict)
    drops_per_source: dict[str, int] = field(default_factory=dict)
    missing_per_source: dict[str, int] = field(default_factory=dict)
    rejects_per_reason: dict[str, int] = field(default_factory=dict)
    resolution_histogram: dict[int, int] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """No frame dropped, rejected or estimated missing in the period."""
        return not (self.period_dropped or self.period_rejected or self.period_missing)


class StatusReporter:
    """Makes :class:`StatusSnapshot` s of a worker, each covering the time since the last."""

    def __init__(self, worker: RecognitionWorker, clock: Callable[[], float] = time.monotonic):
        self.worker = worker
        self._clock = clock
        self._then = clock()
        self._received = self._handled = self._dropped = self._rejected = self._missing = 0

    def snapshot(self) -> StatusSnapshot:
        """The state now, rates since the previous snapshot."""
        w = self.worker
        now = self._clock()
        elapsed = max(now - self._then, 1e-9)
        received, handled = w.frames_received, w.frames_handled
        dropped, rejected, missing = w.queue.dropped, w.rejects.total, w.cadence.total
        pipe = w.pipeline
        stats = pipe.stats()
        recent = pipe.recent_results()
        latencies = [r.latency_s for r in recent]
        settings = pipe.settings
        capacity = w.control.capacity_fps
        if math.isnan(capacity):
            capacity = stats.frames / stats.busy_s if stats.busy_s > 0 else 0.0
        snap = StatusSnapshot(
            period_s=elapsed,
            input_fps=(received - self._received) / elapsed,
            processed_fps=(handled - self._handled) / elapsed,
            capacity_fps=capacity,
            target_fps=w.control.target_fps,
            frames_received=received,
            frames_handled=handled,
            frames_dropped=dropped,
            frames_rejected=rejected,
            frames_missing=missing,
            results_published=w.results_published,
            results_unknown=stats.unknown,
            period_frames=received - self._received,
            period_dropped=dropped - self._dropped,
            period_rejected=rejected - self._rejected,
            period_missing=missing - self._missing,
            latency_p50_ms=percentile(latencies, 50) * 1e3 if latencies else 0.0,
            latency_p99_ms=percentile(latencies, 99) * 1e3 if latencies else 0.0,
            mean_gflops=_mean([r.gflops for r in recent]),
            mean_uniform_gflops=_mean([r.uniform_gflops for r in recent]),
            exit_threshold=settings.exit_threshold,
            max_resolution=max(settings.resolutions_for(pipe.resolutions)),
            received_per_source=w.received_per_source(),
            drops_per_source={str(k): v for k, v in w.queue.drops().items()},
            missing_per_source=w.cadence.missing(),
            rejects_per_reason=w.rejects.counts,
            resolution_histogram=dict(stats.resolution_histogram),
        )
        self._then, self._received, self._handled = now, received, handled
        self._dropped, self._rejected, self._missing = dropped, rejected, missing
        return snap


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
