"""The settings a pipeline runs with: the user's, and with a target frame rate the controller's.

Settings flow one way: the user's :class:`~rsee_ros.pipeline.runner.PipelineSettings` (node
parameters, command-line options) go into a :class:`SettingsControl`; with ``target_fps`` > 0 a
:class:`~rsee_ros.pipeline.target_fps.TargetFpsController` may lower ``exit_threshold`` and
``max_resolution`` below the user's values (never above them); the result is handed to
:meth:`RecognitionPipeline.update`, which applies it from the next frame to every window's
session and so to the model. Validation happens once, when the user's settings are built
(``PipelineSettings`` and the model's resolutions); the controller only moves inside them.
Thread-safe: settings may change from a parameter callback while a worker records frames.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from rsee_ros.pipeline.runner import PipelineSettings, RecognitionPipeline
from rsee_ros.pipeline.target_fps import TargetFpsController

__all__ = ["SettingsControl"]


class SettingsControl:
    """Owns a pipeline's settings: the user's, the target frame rate, what is in effect."""

    def __init__(
        self,
        pipeline: RecognitionPipeline,
        user: PipelineSettings,
        target_fps: float = 0.0,
        *,
        controller_factory: Callable[..., TargetFpsController] = TargetFpsController,
    ) -> None:
        self._pipeline = pipeline
        self._factory = controller_factory
        self._lock = threading.Lock()
        self._controller: TargetFpsController | None = None
        self._user = self.check(user)
        self._target_fps = 0.0
        self.apply(target_fps=target_fps)

    # Reading ----------------------------------------------------------------------------------

    @property
    def user(self) -> PipelineSettings:
        """The user's settings (the controller's upper limits)."""
        with self._lock:
            return self._user

    @property
    def target_fps(self) -> float:
        """The frame rate to sustain; 0: off."""
        with self._lock:
            return self._target_fps

    @property
    def capacity_fps(self) -> float:
        """The controller's last capacity estimate (NaN when off or not measured yet)."""
        with self._lock:
            return self._controller.capacity_fps if self._controller else math.nan

    @property
    def controller(self) -> TargetFpsController | None:
        """The target-frame-rate controller while ``target_fps`` > 0."""
        return self._controller

    # Changing ---------------------------------------------------------------------------------

    def check(self, user: PipelineSettings | None = None, **changes: Any) -> PipelineSettings:
        """The user settings ``changes`` give (on ``user``, default the current ones), checked
        against the model; ``ValueError`` with the reason when they are not valid."""
        base = user if user is not None else self.user
        new = replace(base, **changes) if changes else base
        return self._pipeline.check(**asdict(new))

    def apply(
        self, user: PipelineSettings | None = None, *, target_fps: float | None = None
    ) -> PipelineSettings:
        """Make ``user`` (checked with :meth:`check`) and ``target_fps`` the settings; returns
        what the pipeline runs with from its next frame."""
        if target_fps is not None and (not math.isfinite(target_fps) or target_fps < 0):
            raise ValueError(f"target_fps must be >= 0, got {target_fps}")
        with self._lock:
            if user is not None:
                self._user = user
            if target_fps is not None:
                self._target_fps = float(target_fps)
            if self._target_fps > 0:
                allowed = self._user.resolutions_for(self._pipeline.resolutions)
                if self._controller is None:
                    self._controller = self._factory(
                        self._target_fps, allowed, self._user.exit_threshold
                    )
                else:
                    self._controller.set_target(self._target_fps)
                    self._controller.set_limits(allowed, self._user.exit_threshold)
            else:
                self._controller = None
            return self._push()

    def record(self, frames: int, busy_s: float, dropped: int = 0) -> PipelineSettings | None:
        """Tell the controller about work done; the new settings when it changed them."""
        with self._lock:
            if self._controller is None or self._controller.record(frames, busy_s, dropped) is None:
                return None
            return self._push()

    def _push(self) -> PipelineSettings:
        """Hand the effective settings to the pipeline (caller holds the lock)."""
        effective = self._user
        if self._controller is not None:
            out = self._controller.output
            effective = replace(effective, exit_threshold=out.exit_threshold,
                                max_resolution=out.max_resolution)
        return self._pipeline.update(**asdict(effective))
