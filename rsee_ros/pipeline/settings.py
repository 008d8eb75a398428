"""The live settings of a :class:`~rsee_ros.pipeline.runner.RecognitionPipeline`: windowing,
inference and reporting, validated once on construction, turned into the windowing's and the
model's settings (the one way settings flow: node -> pipeline -> session -> model)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rsee_ros.model import InferenceSettings
from rsee_ros.model.config import GATES
from rsee_ros.pipeline.windowing import WindowSettings

__all__ = ["PIPELINE_POLICIES", "UNKNOWN", "PipelineSettings"]

PIPELINE_POLICIES = ("learned", "uniform")
UNKNOWN = "unknown"
"""``WindowResult.label`` (``class_id`` -1) of a result below ``min_confidence``."""


@dataclass(frozen=True)
class PipelineSettings:
    """Live settings of a :class:`RecognitionPipeline`; validated on construction.

    Windowing (see :mod:`rsee_ros.pipeline.windowing`): ``window_size`` frames per window,
    ``stride`` frames between window starts (0: tumbling windows, the next opens when the last
    is full), ``frame_step`` keep every n-th frame, ``max_gap_s`` a longer stamp gap starts a new
    video (0: off). Inference: ``exit_threshold`` (0..1; the gate exits once the score reaches
    it), ``allowed_resolutions`` (empty: all of the model's), ``max_resolution`` (cap; 0: none),
    ``skip_enabled`` (the selector may skip frames), ``top_k`` labels per result,
    ``min_confidence`` (0..1): a result less confident than this says :data:`UNKNOWN`
    (``class_id`` -1; its ``top_k`` still lists the model's best guesses). ``policy``:
    ``learned`` (the selector) or ``uniform`` (every frame at the highest resolution left, no
    selector: the Uniform baseline); ``gate``: the exit rule, ``""`` for the model's own,
    ``confidence`` or ``learned``.
    """

    window_size: int = 16
    stride: int = 0
    frame_step: int = 1
    max_gap_s: float = 1.0
    exit_threshold: float = 0.9
    allowed_resolutions: tuple[int, ...] = ()
    max_resolution: int = 0
    skip_enabled: bool = True
    top_k: int = 5
    min_confidence: float = 0.0
    policy: str = "learned"
    gate: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "allowed_resolutions", tuple(_as_int(r, "allowed_resolutions")
                                               for r in self.allowed_resolutions)
        )
        for name in ("max_resolution", "top_k"):
            _as_int(getattr(self, name), name)
        if not isinstance(self.skip_enabled, bool):
            raise ValueError(f"skip_enabled must be a bool, got {self.skip_enabled!r}")
        for name in ("max_gap_s", "exit_threshold", "min_confidence"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        self.window_settings()  # window_size, stride, frame_step, max_gap_s
        if not 0.0 <= self.exit_threshold <= 1.0:
            raise ValueError(f"exit_threshold must be in [0, 1], got {self.exit_threshold}")
        if self.max_resolution < 0:
            raise ValueError(f"max_resolution must be >= 0 (0 = no cap), got {self.max_resolution}")
        if any(r <= 0 for r in self.allowed_resolutions):
            raise ValueError(f"allowed_resolutions must be positive: {self.allowed_resolutions}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.policy not in PIPELINE_POLICIES:
            raise ValueError(f"policy must be one of {PIPELINE_POLICIES}, got {self.policy!r}")
        if self.gate not in ("", *GATES):
            raise ValueError(f"gate must be '' (the model's) or one of {GATES}, got "
                             f"{self.gate!r}")

    def window_settings(self) -> WindowSettings:
        """The windowing part."""
        return WindowSettings(self.window_size, self.stride, self.frame_step, self.max_gap_s)

    def resolutions_for(self, model_resolutions: Sequence[int]) -> tuple[int, ...]:
        """The resolutions the selector may choose for a model: allowed and not above the cap.

        Raises ``ValueError`` naming the problem when one is unknown or none is left.
        """
        model_resolutions = tuple(model_resolutions)
        allowed = self.allowed_resolutions or model_resolutions
        unknown = sorted(set(allowed) - set(model_resolutions))
        if unknown:
            raise ValueError(
                f"allowed_resolutions {unknown} are not among the model's {list(model_resolutions)}"
            )
        kept = tuple(r for r in model_resolutions
                     if r in allowed and (not self.max_resolution or r <= self.max_resolution))
        if not kept:
            raise ValueError(
                f"no resolution left: allowed {list(allowed)} with max_resolution "
                f"{self.max_resolution} (the model has {list(model_resolutions)})"
            )
        return kept

    def inference_settings(self, model_resolutions: Sequence[int]) -> InferenceSettings:
        """The model's :class:`InferenceSettings` for these settings."""
        kept = self.resolutions_for(model_resolutions)
        uniform = self.policy == "uniform"
        return InferenceSettings(
            exit_threshold=self.exit_threshold,
            allowed_resolutions=None if kept == tuple(model_resolutions) else kept,
            skip_enabled=self.skip_enabled,
            policy=self.policy,
            fixed_resolution=max(kept) if uniform else None,
            gate=self.gate or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        data = asdict(self)
        data["allowed_resolutions"] = list(self.allowed_resolutions)
        return data


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)
