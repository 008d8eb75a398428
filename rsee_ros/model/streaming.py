"""Streaming API: one video, one frame at a time, as the ROS node feeds it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rsee_ros.model.outputs import VideoState
from rsee_ros.model.rsee import RSEEModel
from rsee_ros.model.settings import InferenceSettings


@dataclass(frozen=True)
class FrameStep:
    """The outcome of pushing one frame into a :class:`StreamingSession`."""

    frame_index: int
    looked_at: bool
    resolution: int
    skipped: bool
    exited: bool
    probabilities: torch.Tensor
    gmacs: float


class StreamingSession:
    """Per-video state for frame-by-frame inference.

    Settings are read at every :meth:`push`, so changing :attr:`settings` between frames applies
    from the next frame. After the gate exits, later frames are ignored (reported as skipped).
    """

    def __init__(
        self,
        model: RSEEModel,
        settings: InferenceSettings | None = None,
        *,
        exit_threshold: float | None = None,
        allowed_resolutions: Sequence[int] | None = None,
        skip_enabled: bool | None = None,
    ) -> None:
        settings = settings or InferenceSettings()
        changes: dict[str, object] = {}
        if exit_threshold is not None:
            changes["exit_threshold"] = float(exit_threshold)
        if allowed_resolutions is not None:
            changes["allowed_resolutions"] = tuple(int(r) for r in allowed_resolutions)
        if skip_enabled is not None:
            changes["skip_enabled"] = bool(skip_enabled)
        self.model = model
        self.settings = settings.with_changes(**changes)
        self.reset()

    def reset(self) -> None:
        """Forget the current video and start a new one."""
        self._state: VideoState = self.model.initial_state(1, self.settings)
        self._mask_key: InferenceSettings | None = None
        self._mask: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        """True once the exit gate has stopped this video."""
        return bool(self._state.exited[0])

    @property
    def frames_seen(self) -> int:
        """Frames pushed so far (looked at or not)."""
        return self._state.step

    @property
    def frames_processed(self) -> int:
        """Frames that went through the backbone."""
        return int(self._state.processed[0])

    @property
    def gmacs(self) -> float:
        """Total GMACs spent on this video so far."""
        return float(self._state.gmacs[0])

    @property
    def probabilities(self) -> torch.Tensor:
        """The accumulated prediction ``(num_classes,)`` (uniform-ish before any frame)."""
        return torch.softmax(self._state.logits[0], -1)

    def _action_mask(self) -> torch.Tensor:
        if self._mask is None or self._mask_key != self.settings:
            self._mask = self.model.action_mask(self.settings)
            self._mask_key = self.settings
        return self._mask

    def push(self, frame: torch.Tensor | np.ndarray) -> FrameStep:
        """Feed the next frame, a ``(3, S, S)`` normalised tensor (see ``preprocess``)."""
        tensor = torch.as_tensor(frame).to(self.model.device, torch.float32).unsqueeze(0)
        size = self.model.config.max_resolution
        if tensor.shape[1:] != (1, 3, size, size)[1:]:
            raise ValueError(f"expected a (3, {size}, {size}) frame, got {tuple(frame.shape)}")
        result = self.model.advance(self._state, tensor, self.settings, self._action_mask())
        return FrameStep(
            frame_index=result.step,
            looked_at=bool(result.looked_at[0]),
            resolution=int(result.resolution[0]),
            skipped=not bool(result.processed[0]),
            exited=bool(result.exited[0]),
            probabilities=torch.softmax(result.logits[0], -1),
            gmacs=float(result.gmacs[0]),
        )
