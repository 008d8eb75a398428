"""Holding a target frame rate by trading accuracy for speed (the node's ``target_fps`` mode).

The controlled quantity is the frame rate the pipeline can sustain, its *capacity*: frames
handled per second of processing time (``frames / busy seconds`` over a measuring period). A
capacity at or above the camera's rate means no frame is dropped; measuring busy time instead of
wall time makes the figure independent of how fast frames happen to arrive. In a period in which
frames were dropped, the node was overloaded and the capacity is the rate it really handled,
``frames / period seconds``: time lost between frames (the callback thread holding the GIL,
bursty delivery into a short queue, CPU contention) then counts as well.

One knob, the *level* ``u`` in [0, 1], maps to the two settings that cut compute:

* ``u`` from 0 to ``split`` lowers the exit threshold linearly from the user's value
  (``max_threshold``) to ``min_threshold``: windows exit after fewer frames;
* above ``split``, the resolution cap steps down through the other allowed resolutions, one
  equal band of ``u`` each, the last band (up to ``u = 1``) holding the lowest.

Every ``period_s`` the controller compares capacity with the target: below it, ``u`` rises by
``gain * ln(target / capacity)`` (at least ``min_step``); above ``target * (1 + headroom)``, ``u``
falls by half that rule (relaxing slowly towards full accuracy avoids oscillation); in between,
``u`` holds. Pure Python with an injectable clock, so it is tested with a simulated one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["ControlOutput", "TargetFpsController"]


@dataclass(frozen=True)
class ControlOutput:
    """Settings chosen by the controller."""

    exit_threshold: float
    max_resolution: int
    level: float


class TargetFpsController:
    """Steers exit threshold and resolution cap to keep capacity at ``target_fps`` or above.

    ``resolutions``: the resolutions the user allows (any order; the cap walks down from the
    highest). ``max_threshold``: the user's exit threshold, used at level 0. Call
    :meth:`record` after each frame (or batch of frames) with the processing time spent; it
    returns a new :class:`ControlOutput` when the settings should change, else None.
    """

    def __init__(
        self,
        target_fps: float,
        resolutions: Sequence[int],
        max_threshold: float,
        *,
        min_threshold: float = 0.5,
        split: float = 0.5,
        period_s: float = 1.0,
        gain: float = 0.5,
        min_step: float = 0.02,
        headroom: float = 0.1,
        min_frames: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < split <= 1.0 or period_s <= 0 or gain <= 0 or headroom < 0:
            raise ValueError("need 0 < split <= 1, period_s > 0, gain > 0, headroom >= 0")
        self.split = split
        self.period_s = period_s
        self.gain = gain
        self.min_step = min_step
        self.headroom = headroom
        self.min_frames = min_frames
        self._clock = clock
        self.level = 0.0
        self.capacity_fps = math.nan
        self.set_target(target_fps)
        self.floor = float(min_threshold)
        """The lowest exit threshold the controller may go to (below a lower user value)."""
        self.set_limits(resolutions, max_threshold)
        self._start = clock()
        self._frames = 0
        self._busy = 0.0
        self._dropped = 0
        self._output = self._compute()

    # Configuration ----------------------------------------------------------------------------

    def set_target(self, target_fps: float) -> None:
        """Change the target (> 0)."""
        if not target_fps > 0 or not math.isfinite(target_fps):
            raise ValueError(f"target_fps must be > 0, got {target_fps}")
        self.target_fps = float(target_fps)

    def set_limits(
        self, resolutions: Sequence[int], max_threshold: float, min_threshold: float | None = None
    ) -> ControlOutput:
        """Change the user's limits (allowed resolutions, exit threshold; ``min_threshold`` sets
        :attr:`floor`); returns the output. The threshold range is ``[min(floor, max_threshold),
        max_threshold]``, recomputed each time: raising the user's threshold raises the range
        again."""
        if not resolutions:
            raise ValueError("resolutions must not be empty")
        self.resolutions = tuple(sorted({int(r) for r in resolutions}, reverse=True))
        self.max_threshold = float(max_threshold)
        if min_threshold is not None:
            self.floor = float(min_threshold)
        self.min_threshold = min(self.floor, self.max_threshold)
        self._output = self._compute()
        return self._output

    @property
    def output(self) -> ControlOutput:
        """The settings in effect."""
        return self._output

    def reset(self, level: float = 0.0) -> ControlOutput:
        """Start over at ``level`` (0: full accuracy) with a fresh measuring period."""
        self.level = min(1.0, max(0.0, level))
        self._start, self._frames, self._busy, self._dropped = self._clock(), 0, 0.0, 0
        self._output = self._compute()
        return self._output

    # Control ----------------------------------------------------------------------------------

    def record(self, frames: int, busy_s: float, dropped: int = 0) -> ControlOutput | None:
        """Account ``frames`` handled in ``busy_s`` seconds (and ``dropped`` frames lost since
        the last call); a new output when it changed."""
        self._frames += frames
        self._busy += max(0.0, busy_s)
        self._dropped += dropped
        now = self._clock()
        if now - self._start < self.period_s or self._frames < self.min_frames:
            return None
        if self._dropped:
            capacity = self._frames / (now - self._start)
        else:
            capacity = self._frames / self._busy if self._busy > 0 else math.inf
        self.capacity_fps = capacity
        self._start, self._frames, self._busy, self._dropped = now, 0, 0.0, 0
        error = math.log(self.target_fps / capacity) if math.isfinite(capacity) else -math.inf
        level = self.level
        if error > 0:
            level += max(self.min_step, self.gain * error)
        elif capacity > self.target_fps * (1 + self.headroom):
            level -= max(self.min_step, 0.5 * self.gain * min(-error, 1.0))
        self.level = min(1.0, max(0.0, level))
        previous = self._output
        self._output = self._compute()
        if (self._output.exit_threshold, self._output.max_resolution) == (
            previous.exit_threshold, previous.max_resolution
        ):
            return None
        return self._output

    def _compute(self) -> ControlOutput:
        u = self.level
        fraction = min(1.0, u / self.split)
        threshold = self.max_threshold - (self.max_threshold - self.min_threshold) * fraction
        n = len(self.resolutions)
        index = 0
        if u > self.split and n > 1 and self.split < 1.0:
            index = min(n - 1, 1 + int((u - self.split) / (1.0 - self.split) * (n - 1)))
        return ControlOutput(round(threshold, 4), self.resolutions[index], u)
