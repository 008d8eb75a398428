"""Estimating frames lost before they reached the node, from each camera's stamp cadence.

A camera publishes at a steady rate; frames lost in transport (best-effort DDS drops fragments of
large images without telling anyone) leave holes in the stamps the node receives. Per source,
:class:`CadenceMonitor` keeps the median of the recent stamp intervals as the camera's period and
counts, for each interval longer than ``1.5`` periods, the frames that should have been in it
(the holes among the first intervals too, once enough are known to give a period).
Intervals longer than ``max_gap_s`` (the camera paused: a new video), steps back and the
interval that follows one (it spans the discontinuity: a late frame stands in for its own slot)
are not counted. An estimate, not a count: a camera with an irregular rate gives a rough figure,
and a camera whose rate drops for good is counted until the median follows it. Pure Python.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque

__all__ = ["CadenceMonitor"]


class _Track:
    __slots__ = ("after_step_back", "intervals", "last_ns", "missing", "primed")

    def __init__(self, history: int) -> None:
        self.last_ns: int | None = None
        self.intervals: deque[int] = deque(maxlen=history)
        self.missing = 0
        self.primed = False  # the holes among the first intervals have been counted
        self.after_step_back = False  # the last frame stepped back: skip the next interval


def _holes(intervals: deque[int] | list[int], period: float) -> int:
    """Frames missing in ``intervals`` at ``period``: those longer than 1.5 periods."""
    if not period > 0:
        return 0
    return sum(round(i / period) - 1 for i in intervals if i > 1.5 * period)


class CadenceMonitor:
    """Per-source estimate of frames missing from the stamp sequence; thread-safe."""

    def __init__(self, history: int = 30, min_intervals: int = 5) -> None:
        self.history = history
        self.min_intervals = min_intervals
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.Lock()

    def observe(self, source: str, stamp_ns: int, max_gap_s: float = 1.0) -> int:
        """Account one received frame's stamp; returns the frames estimated missing before it."""
        with self._lock:
            track = self._tracks.get(source)
            if track is None:
                track = self._tracks[source] = _Track(self.history)
            last, track.last_ns = track.last_ns, stamp_ns
            if last is None or stamp_ns <= last:
                # a first frame, a late frame or a restart: the interval to the next frame spans
                # the discontinuity, so it is neither counted nor taken for the period
                track.after_step_back = last is not None
                return 0
            interval = stamp_ns - last
            if track.after_step_back:
                track.after_step_back = False
                return 0
            if max_gap_s > 0 and interval > max_gap_s * 1e9:
                return 0  # a pause: the camera (or the stream) started again
            if track.primed:
                missing = _holes([interval], statistics.median(track.intervals))
                track.intervals.append(interval)
            else:
                track.intervals.append(interval)
                if len(track.intervals) < self.min_intervals:
                    return 0
                # the first period known: the holes of every interval so far
                track.primed = True
                missing = _holes(track.intervals, statistics.median(track.intervals))
            track.missing += missing
            return missing

    def missing(self) -> dict[str, int]:
        """Frames estimated missing so far, per source."""
        with self._lock:
            return {source: t.missing for source, t in self._tracks.items()}

    @property
    def total(self) -> int:
        """Frames estimated missing so far, all sources."""
        with self._lock:
            return sum(t.missing for t in self._tracks.values())
